"""The ``ct-mr`` preset on a real head CT against an MR-like image with a known transform.

No same-subject CT/MR pair with a ground truth is available, so the moving image is made from the
real CT (``../shared/data/ct_head``): a non-monotonic intensity map (air dark, soft tissue
bright, bone dark, as in a T2-weighted MR), a smooth multiplicative bias field and noise, on a
coarser anisotropic grid, seen through a known rigid motion plus a smooth deformation. The
registration (fixed = CT, moving = MR-like) must recover that map; the error is the distance
between the recovered and the true map at points inside the head.

Run from the repository root::

    python benchmarks/ct_mr_check.py [--data ../shared/data] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from regsuite.engine.registration import register


def true_map(points: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Fixed (CT) world point -> moving (MR-like) world point: rotation + shift + smooth warp."""
    angles = np.radians([4.0, -3.0, 6.0])
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rotation = (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
                @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))
    p = (points - center) @ rotation.T + center + np.array([6.0, -4.0, 3.0])
    q = points - center
    warp = np.stack([2.5 * np.sin(q[:, 1] / 25.0), 2.0 * np.cos(q[:, 0] / 30.0), 1.5 * np.sin(q[:, 2] / 20.0)], 1)
    return p + warp


def mr_like(ct: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A T2-like contrast from Hounsfield units: air 0, fluid/soft tissue bright, bone dark."""
    soft = np.exp(-((ct - 40.0) / 60.0) ** 2)
    fat = np.exp(-((ct + 90.0) / 40.0) ** 2)
    bone = np.clip((ct - 200.0) / 800.0, 0.0, 1.0)
    image = 800.0 * soft + 500.0 * fat + 120.0 * (ct > -500) * (1.0 - bone)
    return image


def make_moving(ct: sitk.Image, center: np.ndarray, seed: int = 0) -> sitk.Image:
    """The MR-like image on its own coarser grid: moving(y) = g(CT(map^-1(y)))."""
    rng = np.random.default_rng(seed)
    grid = sitk.Image([int(s * 0.96 / 1.2) for s in ct.GetSize()[:2]] + [int(ct.GetSize()[2] * 1.5 / 2.0)],
                      sitk.sitkFloat32)
    grid.SetSpacing((1.2, 1.2, 2.0))
    grid.SetDirection(ct.GetDirection())
    extent = np.array(ct.GetSize()) * np.array(ct.GetSpacing())
    grid.SetOrigin(tuple(np.array(ct.GetOrigin()) + np.array(ct.GetDirection()).reshape(3, 3) @ (
        (extent - np.array(grid.GetSize()) * np.array(grid.GetSpacing())) / 2.0)))
    size = grid.GetSize()
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")[::-1], -1).reshape(-1, 3)
    direction = np.array(grid.GetDirection()).reshape(3, 3)
    world = index * np.array(grid.GetSpacing()) @ direction.T + np.array(grid.GetOrigin())
    source = world.copy()
    for _ in range(20):  # invert the map by fixed-point iteration: x = x + (y - map(x))
        source = source + (world - true_map(source, center))
    field = sitk.GetImageFromArray((source - world).reshape(tuple(size[::-1]) + (3,)), isVector=True)
    field.CopyInformation(grid)
    ct_on_grid = sitk.Resample(ct, grid, sitk.DisplacementFieldTransform(field), sitk.sitkLinear, -1000.0)
    values = mr_like(sitk.GetArrayFromImage(ct_on_grid), rng)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, n) for n in size[::-1]], indexing="ij")
    bias = 1.0 + 0.25 * xx - 0.15 * yy + 0.1 * zz * xx
    values = values * bias + rng.normal(0.0, 15.0, values.shape)
    moving = sitk.GetImageFromArray(values.astype(np.float32))
    moving.CopyInformation(grid)
    return moving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    ct = sitk.ReadImage(str(Path(args.data) / "ct_head" / "Cranium_CT_ProMED0051.nii.gz"), sitk.sitkFloat32)
    head = sitk.GetArrayFromImage(ct) > -500
    center = np.array(ct.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in ct.GetSize()]))
    moving = make_moving(ct, center)
    rng = np.random.default_rng(1)
    index = np.argwhere(head)[:, ::-1]
    index = index[rng.choice(len(index), size=min(5000, len(index)), replace=False)]
    points = np.array([ct.TransformIndexToPhysicalPoint([int(v) for v in i]) for i in index])
    truth = true_map(points, center)

    def errors(transform: sitk.Transform) -> np.ndarray:
        mapped = np.array([transform.TransformPoint(tuple(p)) for p in points])
        return np.linalg.norm(mapped - truth, axis=1)

    report = {"before_mm": float(errors(sitk.Transform()).mean())}
    for preset in ("multimodal-rigid", "ct-mr"):
        start = time.perf_counter()
        result = register(ct, moving, preset, threads=args.threads)
        error = errors(result.transform)
        report[preset] = {"mean_mm": round(float(error.mean()), 3), "p95_mm": round(float(np.percentile(error, 95)), 3),
                          "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
