"""Build the small lung CT sample pair shipped in ``regsuite/data/sample/``.

The source is the baseline/follow-up chest CT pair from the elastix test data (Apache-2.0),
found in ``../shared/data/lung_ct_pair`` relative to the repository root. Each image is
smoothed with a Gaussian whose width matches the resolution loss (anti-aliasing), resampled
onto a grid of about 2.7 x 2.7 x 5 mm that covers the same physical extent (same direction,
origin moved by half the spacing change so that the grid edges stay in place), rounded back to
int16 HU and written as compressed MetaImage. The fixed lung mask is resampled on the same grid
(linear interpolation of the 0/1 mask, then threshold at 0.5). The landmark files are in world
(LPS mm) coordinates, so they are copied unchanged.

Example:
    $ python3 benchmarks/make_sample.py            # writes RegistrationSuite/regsuite/data/sample
    $ python3 benchmarks/make_sample.py --source ../shared/data/lung_ct_pair --output /tmp/s
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "lung_ct_pair"
DEFAULT_OUTPUT = ROOT / "RegistrationSuite" / "regsuite" / "data" / "sample"
FACTOR = (2, 2, 2)  # 1.366 x 1.366 x 2.5 mm -> 2.732 x 2.732 x 5 mm

# Gaussian FWHM = 2 * sqrt(2 ln 2) * sigma.
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def coarse_grid(image: sitk.Image, factor: tuple[int, int, int]) -> sitk.Image:
    """Return an empty image whose grid covers the same world extent with coarser voxels.

    The index-space box ``[-0.5, size - 0.5]`` of ``image`` is kept: the new origin (world, LPS
    mm) is the old one moved by half a new voxel minus half an old voxel along each index axis.
    """
    old_spacing = np.array(image.GetSpacing())
    new_spacing = old_spacing * np.array(factor, dtype=float)
    old_size = np.array(image.GetSize())
    new_size = np.maximum(1, np.round(old_size * old_spacing / new_spacing)).astype(int)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    shift_world = direction @ (0.5 * (new_spacing - old_spacing))
    grid = sitk.Image([int(s) for s in new_size], image.GetPixelID())
    grid.SetSpacing([float(s) for s in new_spacing])
    grid.SetDirection(image.GetDirection())
    grid.SetOrigin([float(o) for o in np.array(image.GetOrigin()) + shift_world])
    return grid


def antialias_sigma_mm(old_spacing: tuple[float, ...], new_spacing: tuple[float, ...]) -> list[float]:
    """Gaussian sigma (world mm) per axis so that the blur brings the FWHM from old to new spacing."""
    return [
        math.sqrt(max(new * new - old * old, 0.0)) / _FWHM_PER_SIGMA
        for old, new in zip(old_spacing, new_spacing)
    ]


def downsample_ct(image: sitk.Image, factor: tuple[int, int, int]) -> sitk.Image:
    """Anti-aliased downsampling of a CT volume; the result is int16 HU on the coarse grid."""
    grid = coarse_grid(image, factor)
    sigma = antialias_sigma_mm(image.GetSpacing(), grid.GetSpacing())
    smooth = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), sigma)
    low = sitk.Resample(smooth, grid, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    array = np.clip(np.rint(sitk.GetArrayFromImage(low)), -32768, 32767).astype(np.int16)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(grid)
    return out


def downsample_mask(mask: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Resample a 0/1 mask onto ``reference``: linear interpolation, then threshold at 0.5."""
    soft = sitk.Resample(sitk.Cast(mask > 0, sitk.sitkFloat32), reference, sitk.Transform(),
                         sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.Cast(soft >= 0.5, sitk.sitkUInt8)


def make_sample(source: Path, output: Path) -> dict[str, Path]:
    """Write the sample files into ``output`` and return their paths by role."""
    output.mkdir(parents=True, exist_ok=True)
    fixed = sitk.ReadImage(str(source / "3DCT_lung_baseline.mha"))
    moving = sitk.ReadImage(str(source / "3DCT_lung_followup.mha"))
    mask = sitk.ReadImage(str(source / "3DCT_lung_baseline_mask.mha"))
    fixed_low = downsample_ct(fixed, FACTOR)
    moving_low = downsample_ct(moving, FACTOR)
    mask_low = downsample_mask(mask, fixed_low)
    paths = {
        "fixed": output / "lung_fixed.mha",
        "moving": output / "lung_moving.mha",
        "fixed_mask": output / "lung_fixed_mask.mha",
        "fixed_points": output / "lung_fixed_points.txt",
        "moving_points": output / "lung_moving_points.txt",
    }
    sitk.WriteImage(fixed_low, str(paths["fixed"]), True)
    sitk.WriteImage(moving_low, str(paths["moving"]), True)
    sitk.WriteImage(mask_low, str(paths["fixed_mask"]), True)
    shutil.copyfile(source / "landmarks51_baseline_fixed.txt", paths["fixed_points"])
    shutil.copyfile(source / "landmarks51_followup_moving.txt", paths["moving_points"])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    for role, path in make_sample(args.source, args.output).items():
        info = ""
        if path.suffix == ".mha":
            image = sitk.ReadImage(str(path))
            info = f" size={image.GetSize()} spacing={tuple(round(s, 3) for s in image.GetSpacing())}"
        print(f"{role:14s} {path} ({path.stat().st_size / 1024:.0f} KiB){info}")


if __name__ == "__main__":
    main()
