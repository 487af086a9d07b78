"""``regsuite demo``: register the shipped lung CT sample pair and write every kind of output.

The sample (``regsuite.data.sample_paths()``) is a downsampled baseline/follow-up chest CT pair
from the elastix test data with a lung mask and 51 landmark pairs. The demo runs the
``lung-ct`` preset with the fixed lung mask, writes the transform (``.h5``), the warped moving
image, the displacement field, the Jacobian determinant, an overview PNG and the evaluation as
JSON, and prints the landmark error before/after and the time taken.

Example:
    $ regsuite demo --output-dir /tmp/demo
    >>> from regsuite.cli.main import main
    >>> main(["demo", "--quick", "--output-dir", "/tmp/demo"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from ..errors import InputError
from ..io.atomic import check_output_path

DEMO_PRESET = "lung-ct"
#: Iterations per pyramid level with ``--quick`` (a smoke run, not a good registration).
QUICK_ITERATIONS = 3

DEMO_FILES = {
    "transform": "transform.h5",
    "warped": "moving_warped.nii.gz",
    "field": "displacement.nii.gz",
    "jacobian": "jacobian.nii.gz",
    "overview": "overview.png",
    "evaluation": "evaluation.json",
    "log": "registration_log.json",
}


def quick_config(config: Any, iterations: int = QUICK_ITERATIONS) -> dict[str, Any]:
    """The preset as a dict with at most ``iterations`` iterations per level."""
    data = config.to_dict()
    for stage in data["stages"]:
        for level in stage["levels"]:
            level["iterations"] = max(1, min(int(level["iterations"]), iterations))
    return data


def cmd_demo(args: argparse.Namespace) -> int:
    from ..data import sample_paths
    from ..engine.config import load_preset
    from ..evaluation.jacobian import jacobian_determinant
    from ..evaluation.report import evaluate, format_table
    from ..io.images import read_image, read_mask, write_image
    from ..io.points import read_points
    from ..io.transforms import write_displacement_field, write_transform
    from ..visualize import save_overview
    from ..io.images import cast_like
    from .main import run_registration, stage_outputs, write_json
    from ..io.safety import usable_threads

    args.threads = usable_threads(args.threads)
    paths = sample_paths()
    folder = Path(args.output_dir)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"demo output folder '{folder}' exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    out = {key: folder / name for key, name in DEMO_FILES.items()}
    for path in out.values():
        check_output_path(path, "demo output")  # before the registration, not after it

    fixed = read_image(paths["fixed"], "sample fixed image")
    moving = read_image(paths["moving"], "sample moving image")
    fixed_mask = read_mask(paths["fixed_mask"], fixed, "sample fixed mask")
    fixed_points = read_points(paths["fixed_points"])
    moving_points = read_points(paths["moving_points"])
    config = load_preset(DEMO_PRESET)
    run_config: Any = quick_config(config) if args.quick else config
    say = (lambda text: None) if args.quiet else print
    say(f"registering the sample lung CT pair with preset '{DEMO_PRESET}'"
        f"{' (quick: ' + str(QUICK_ITERATIONS) + ' iterations per level)' if args.quick else ''}")

    run_args = argparse.Namespace(quiet=args.quiet, device=args.device, threads=args.threads, seed=0)
    result, elapsed = run_registration(fixed, moving, run_config, run_args, fixed_mask=fixed_mask,
                                       moving_mask=None, initial=None)
    results = evaluate(transform=result.transform, fixed=fixed, fixed_points=fixed_points,
                       moving_points=moving_points, mask=fixed_mask)
    log = {"preset": DEMO_PRESET, "quick": bool(args.quick), "elapsed_s": elapsed,
           "metrics": result.metrics, "history": result.history}
    moving_type = sitk.ReadImage(str(paths["moving"])).GetPixelID()
    title = (f"regsuite demo: lung CT, preset {DEMO_PRESET}{' (quick)' if args.quick else ''}, "
             f"landmark error {results['landmarks']['before']['mean']:.1f} -> "
             f"{results['landmarks']['after']['mean']:.1f} mm")
    with contextlib.ExitStack() as stack:
        stage_outputs(stack, [
            (str(out["transform"]), lambda tmp: write_transform(result.transform, tmp)),
            (str(out["warped"]), lambda tmp: write_image(cast_like(result.resample(moving), moving_type), tmp)),
            (str(out["field"]), lambda tmp: write_displacement_field(result.transform, fixed, tmp)),
            (str(out["jacobian"]), lambda tmp: write_image(jacobian_determinant(result.transform, fixed), tmp)),
            (str(out["overview"]), lambda tmp: save_overview(fixed, moving, result.transform, tmp, title=title)),
            (str(out["evaluation"]), lambda tmp: write_json(results, tmp)),
            (str(out["log"]), lambda tmp: write_json(log, tmp)),
        ])
    if not args.quiet:
        print(format_table(results))
        before, after = results["landmarks"]["before"]["mean"], results["landmarks"]["after"]["mean"]
        print(f"landmark error: {before:.2f} mm before, {after:.2f} mm after registration "
              f"({len(fixed_points)} landmarks)")
        print(f"registration time: {elapsed:.1f} s")
        for path in out.values():
            print(f"wrote {path}")
    return 0


__all__ = ["cmd_demo", "quick_config", "DEMO_FILES", "QUICK_ITERATIONS"]
