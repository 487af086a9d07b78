"""Deformable result files: size, write and read times, and mapping error of the compact ``.h5``.

From a registration result (a transform file, or a registration run here) it writes the
transform in the old form (``sitk.WriteTransform``: float64, uncompressed) and in the compact
form of :mod:`regsuite.io.compact_h5` (quantized float32, shuffled, gzipped), reads both back
with SimpleITK and with slicer-core's ``vtkMRMLTransformStorageNode`` (when installed), and
compares point mappings over points inside the fixed brain (voxels above ``--threshold``, each
moved by a random sub-voxel offset, so most lie between grid nodes):

* compact vs full-precision file, both read by SimpleITK (ITK's trilinear field interpolation);
* Slicer's reading of the compact file (cubic grid interpolation) vs ITK's reading of it;
* the bridge's node (``regsuite.mrml.result_to_node``) vs the same node after a ``.mrb``
  save/reload, and vs the compact ``.h5`` loaded into Slicer.

Run from the repository root (a few minutes for a 1 mm brain; a registration adds a few more)::

    python benchmarks/result_files.py --fixed F.nii.gz --transform result.h5
    python benchmarks/result_files.py --fixed F.nii.gz --moving M.nii.gz --preset brain-mri

Example:
    >>> summary(np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]]))
    {'max_mm': 5.0, 'mean_mm': 2.5, 'p99_mm': 4.95}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
for entry in (REPO, REPO / "RegistrationSuite"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from regsuite.io.compact_h5 import FIELD_QUANTUM_MM, leaves  # noqa: E402
from regsuite.io.transforms import read_transform, write_composite_from_parts, write_transform  # noqa: E402


def summary(differences: np.ndarray) -> dict[str, float]:
    """Max, mean and 99th percentile of the lengths of difference vectors ``(N, 3)`` (mm)."""
    length = np.linalg.norm(differences, axis=1)
    return {"max_mm": float(length.max()), "mean_mm": float(length.mean()),
            "p99_mm": float(np.percentile(length, 99))}


def brain_points(fixed: sitk.Image, count: int, threshold: float, seed: int = 0) -> np.ndarray:
    """``count`` random LPS points in voxels of ``fixed`` above ``threshold``, jittered by +-0.5 voxel."""
    values = sitk.GetArrayViewFromImage(fixed)
    k, j, i = np.nonzero(values > threshold)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(i), size=min(count, len(i)), replace=False)
    index = np.column_stack([i[pick], j[pick], k[pick]]) + rng.uniform(-0.5, 0.5, (len(pick), 3))
    axes = np.array(fixed.GetDirection()).reshape(3, 3) @ np.diag(fixed.GetSpacing())
    return index @ axes.T + np.array(fixed.GetOrigin())


def sitk_map(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    return np.array([transform.TransformPoint(p.tolist()) for p in points])


def timed(action: Callable[[], Any], report: dict[str, Any] | None = None, key: str = "", repeat: int = 1) -> Any:
    """Run ``action`` ``repeat`` times; store its least wall and CPU seconds (this process, all
    threads) under ``key`` (the least time is the one least disturbed by other work on the machine)."""
    value = None
    for _ in range(max(1, repeat)):
        wall, cpu = time.perf_counter(), time.process_time()
        value = action()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if report is not None:
            report[f"{key}_s"] = round(min(wall, report.get(f"{key}_s", wall)), 3)
            report[f"{key}_cpu_s"] = round(min(cpu, report.get(f"{key}_cpu_s", cpu)), 3)
    return value


def _slicer_scene() -> tuple[Any, Any]:
    import slicer  # noqa: PLC0415

    from regsuite.mrml.transforms import transform_points  # noqa: PLC0415

    return slicer, transform_points


def slicer_read(path: str, points: np.ndarray, report: dict[str, Any], key: str, repeat: int = 1) -> np.ndarray:
    """Read ``path`` with slicer-core's transform storage node; map ``points`` (LPS) from parent."""
    slicer, transform_points = _slicer_scene()
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLTransformNode", "read")
    storage = slicer.vtkMRMLTransformStorageNode()
    storage.SetFileName(path)
    if timed(lambda: storage.ReadData(node), report, key, repeat) != 1:
        raise RuntimeError(f"slicer-core cannot read {path}")
    return transform_points(node, points)


def mrb_round_trip(transform: sitk.Transform, fixed: sitk.Image, points: np.ndarray, folder: str) -> dict[str, Any]:
    """Bridge node before a .mrb save vs after reload, and vs the compact .h5 read by Slicer."""
    slicer, transform_points = _slicer_scene()
    from regsuite.mrml.transforms import result_to_node  # noqa: PLC0415

    scene = slicer.vtkMRMLScene()
    node = result_to_node(transform, scene, fixed)
    before = transform_points(node, points)
    node.AddDefaultStorageNode()
    node.GetStorageNode().SetFileName(os.path.join(folder, "Registration.h5"))
    scene.SetRootDirectory(folder)
    scene.SetURL(os.path.join(folder, "scene.mrml"))
    bundle = os.path.join(folder, "scene.mrb")
    if not scene.WriteToMRB(bundle):
        raise RuntimeError("WriteToMRB failed")
    loaded = slicer.vtkMRMLScene()
    application = slicer.vtkSlicerApplicationLogic()
    application.SetMRMLScene(loaded)
    remote, data = slicer.vtkMRMLRemoteIOLogic(), slicer.vtkDataIOManagerLogic()
    for logic in (remote, data):
        logic.SetMRMLScene(loaded)
        logic.SetMRMLApplicationLogic(application)
    os.makedirs(os.path.join(folder, "cache"), exist_ok=True)
    remote.GetCacheManager().SetRemoteCacheDirectory(os.path.join(folder, "cache"))
    data.SetAndObserveDataIOManager(remote.GetDataIOManager())
    remote.AddDataIOToScene()
    if not loaded.ReadFromMRB(bundle):
        raise RuntimeError("ReadFromMRB failed")
    after = transform_points(loaded.GetFirstNodeByName(node.GetName()), points)
    return {"node_class": node.GetClassName(), "mrb_bytes": os.path.getsize(bundle),
            "before_vs_after_mrb": summary(after - before), "_before": before}


def measure(transform: sitk.Transform, fixed: sitk.Image, points: np.ndarray, quantum: float,
            folder: str, repeat: int = 1) -> dict[str, Any]:
    """Every number of the benchmark for one result ``transform`` on its ``fixed`` image; times
    are the least of ``repeat`` runs."""
    full_path, compact_path = os.path.join(folder, "full.h5"), os.path.join(folder, "compact.h5")
    report: dict[str, Any] = {"points": len(points), "quantum_mm": quantum, "repeat": repeat}
    timed(lambda: write_transform(transform, full_path, field_quantum=None), report, "full_write", repeat)
    timed(lambda: write_transform(transform, compact_path, field_quantum=quantum), report, "compact_write", repeat)
    report["full_bytes"], report["compact_bytes"] = os.path.getsize(full_path), os.path.getsize(compact_path)
    parts = leaves(transform)  # the job worker's files: each part, then the composite from them
    part_paths = [os.path.join(folder, f"part-{n}.{'tfm' if part.IsLinear() else 'h5'}") for n, part in enumerate(parts)]
    for part, part_path in zip(parts, part_paths):
        write_transform(part, part_path, field_quantum=quantum)
    timed(lambda: write_composite_from_parts(parts, part_paths, os.path.join(folder, "job.h5")), report,
          "composite_from_parts_write", repeat)
    full = timed(lambda: read_transform(full_path), report, "full_read_sitk", repeat)
    compact = timed(lambda: read_transform(compact_path), report, "compact_read_sitk", repeat)
    reference = sitk_map(full, points)
    itk_compact = sitk_map(compact, points)
    report["compact_vs_full_itk"] = summary(itk_compact - reference)
    try:
        _slicer_scene()
    except ImportError:
        report["slicer"] = "slicer-core not installed"
        return report
    slicer_full = slicer_read(full_path, points, report, "full_read_slicer", repeat)
    slicer_compact = slicer_read(compact_path, points, report, "compact_read_slicer", repeat)
    report["compact_vs_full_slicer"] = summary(slicer_compact - slicer_full)
    report["slicer_vs_itk_same_compact_file"] = summary(slicer_compact - itk_compact)
    scene_report = mrb_round_trip(compact, fixed, points, folder)
    before = scene_report.pop("_before")
    scene_report["node_vs_compact_h5_in_slicer"] = summary(before - slicer_compact)
    scene_report["node_vs_itk_compact"] = summary(before - itk_compact)
    report["scene"] = scene_report
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixed", required=True, help="fixed image of the result (its brain gives the points)")
    parser.add_argument("--transform", help="result transform file (.h5); else register --moving")
    parser.add_argument("--moving", help="moving image to register onto --fixed")
    parser.add_argument("--preset", default="brain-mri")
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--threshold", type=float, default=0.0, help="brain = fixed voxels above this")
    parser.add_argument("--quantum", type=float, default=FIELD_QUANTUM_MM, help="field quantum (mm)")
    parser.add_argument("--repeat", type=int, default=3, help="time each write/read this often, keep the least")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    fixed = sitk.ReadImage(args.fixed, sitk.sitkFloat32)
    if args.transform:
        transform = read_transform(args.transform)
    elif args.moving:
        from regsuite.engine.registration import register  # noqa: PLC0415

        transform = register(fixed, sitk.ReadImage(args.moving, sitk.sitkFloat32), args.preset).transform
    else:
        parser.error("give --transform or --moving")
    points = brain_points(fixed, args.points, args.threshold)
    with tempfile.TemporaryDirectory(prefix="regsuite-result-files-") as folder:
        report = measure(transform, fixed, points, args.quantum, folder, args.repeat)
    report["grid"] = list(fixed.GetSize())
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
