"""Time of one HyperMorph lambda change, as the Slicer slider pays it (without the scene update).

After one ``brain-mri-hypermorph`` registration of a validation pair, a
:class:`regsuite.learning.session.LambdaSession` recomputes the field for each lambda and
:func:`regsuite.mrml.transforms.plan_result` turns the result into the grid transform Slicer
stores (the step the panel runs off the main thread; the main-thread store is ~0.02 s more).
Slicer has its own modules and VTK loaded from start-up, so they are imported here before any
timing (slicer-core's import alone took 4-5 s of the first change before); the first change is
still reported apart, in case something else warms up there.

Usage (from the repository root)::

    python benchmarks/lambda_latency.py [--pair 8-9] [--threads 2] [--lambdas 0.2,0.8,0.5,0.3,0.9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "RegistrationSuite"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default="8-9", help="FIXED-MOVING OASIS-TRT-20 subjects")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lambdas", default="0.2,0.8,0.5,0.3,0.9")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "oasis_trt20")
    args = parser.parse_args(argv)
    import SimpleITK as sitk
    import torch

    from regsuite.engine.registration import register
    from regsuite.learning.session import LambdaSession
    from regsuite.mrml.transforms import plan_result

    import slicer  # noqa: F401  (loaded at Slicer's start-up: not part of a slider move)
    import vtk  # noqa: F401

    torch.set_num_threads(args.threads)
    fixed_id, moving_id = args.pair.split("-")
    read = lambda s: sitk.ReadImage(str(args.data / f"OASIS-TRT-20-{s}" / "t1weighted_brain.nii.gz"))
    fixed, moving = read(fixed_id), read(moving_id)
    result = register(fixed, moving, "brain-mri-hypermorph", threads=args.threads)
    start = time.perf_counter()
    session = LambdaSession.from_registration(result, fixed, moving)
    print(f"session (network loaded, pair on its grid): {time.perf_counter() - start:.2f} s")
    times = []
    for lam in [float(v) for v in args.lambdas.split(",")]:
        start = time.perf_counter()
        plan_result([session.affine, session.displacement(lam)], fixed)
        times.append(time.perf_counter() - start)
        print(f"lambda {lam:g}: {times[-1]:.2f} s")
    later = times[1:] or times
    print(f"first change {times[0]:.2f} s; later changes {statistics.mean(later):.2f} s mean, {max(later):.2f} s max")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
