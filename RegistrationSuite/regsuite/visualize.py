"""Overview figure of a registration: mid-slices of fixed, moving, result, checkerboard, grid.

Every panel is sampled directly in world space (LPS mm) on a square-pixel plane through the
centre of the fixed image, so the aspect ratio is physical whatever the voxel spacing or the
direction matrix. Display follows the radiological convention: axial seen from the feet
(patient right on the image left, anterior at the top), coronal seen from the front (right on
the left, superior at the top), sagittal with anterior on the left and superior at the top.

Example:
    >>> import SimpleITK as sitk
    >>> from regsuite.visualize import save_overview
    >>> fixed = sitk.ReadImage("fixed.nii.gz", sitk.sitkFloat32)        # doctest: +SKIP
    >>> moving = sitk.ReadImage("moving.nii.gz", sitk.sitkFloat32)      # doctest: +SKIP
    >>> save_overview(fixed, moving, sitk.TranslationTransform(3), "overview.png")  # doctest: +SKIP
    PosixPath('overview.png')
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .io.atomic import atomic_output

PathLike = Union[str, "os.PathLike[str]"]

#: Longest side of a displayed slice, in pixels (the display spacing grows beyond it).
MAX_PIXELS = 384
#: Intensity window percentiles of the finite voxels of the three displayed slices.
WINDOW_PERCENTILES = (1.0, 99.0)
#: Number of checkerboard tiles along the longer side of a slice.
CHECKER_TILES = 8
#: Number of deformation-grid lines along the longer side of a slice.
GRID_LINES = 20

_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}


@dataclass(frozen=True)
class _View:
    """A display plane: world directions of the image columns (u), rows (v) and the normal."""

    name: str
    u: tuple[float, float, float]
    v: tuple[float, float, float]
    normal: tuple[float, float, float]
    labels: tuple[str, str, str, str]  # left, right, top, bottom


# LPS world: +x = patient left, +y = posterior, +z = superior.
_VIEWS = (
    _View("axial", (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), ("R", "L", "A", "P")),
    _View("coronal", (1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0), ("R", "L", "S", "I")),
    _View("sagittal", (0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (1.0, 0.0, 0.0), ("A", "P", "S", "I")),
)


def _corners_world(image: sitk.Image) -> np.ndarray:
    """World coordinates (8, 3) of the outer corners (index -0.5 and size - 0.5) of a grid."""
    size = np.array(image.GetSize(), dtype=float)
    lows, highs = -0.5 * np.ones(3), size - 0.5
    corners = np.array([[lows[0] if a == 0 else highs[0], lows[1] if b == 0 else highs[1],
                         lows[2] if c == 0 else highs[2]]
                        for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    return corners @ (direction @ np.diag(image.GetSpacing())).T + np.array(image.GetOrigin())


def slice_reference(fixed: sitk.Image, view: _View) -> sitk.Image:
    """A one-slice 3D grid on the ``view`` plane through the centre of ``fixed``.

    Pixels are square (spacing = smallest voxel spacing of ``fixed``, coarser when the slice
    would exceed :data:`MAX_PIXELS`); the grid covers the projection of the fixed image's box.
    Index axes: i along ``view.u`` (columns), j along ``view.v`` (rows), k along the normal.
    """
    centre_index = (np.array(fixed.GetSize(), dtype=float) - 1.0) / 2.0
    centre = np.array(fixed.TransformContinuousIndexToPhysicalPoint(centre_index.tolist()))
    offsets = _corners_world(fixed) - centre
    u, v, normal = (np.array(axis) for axis in (view.u, view.v, view.normal))
    low_u, high_u = float((offsets @ u).min()), float((offsets @ u).max())
    low_v, high_v = float((offsets @ v).min()), float((offsets @ v).max())
    spacing = max(min(fixed.GetSpacing()), max(high_u - low_u, high_v - low_v) / MAX_PIXELS)
    size_u = max(2, int(math.ceil((high_u - low_u) / spacing)))
    size_v = max(2, int(math.ceil((high_v - low_v) / spacing)))
    origin = centre + u * (low_u + 0.5 * spacing) + v * (low_v + 0.5 * spacing)
    reference = sitk.Image([size_u, size_v, 1], sitk.sitkFloat32)
    reference.SetSpacing([spacing, spacing, spacing])
    reference.SetOrigin(origin.tolist())
    reference.SetDirection(np.column_stack([u, v, normal]).ravel().tolist())
    return reference


def _sample(image: sitk.Image, reference: sitk.Image,
            transform: sitk.Transform | None = None) -> np.ndarray:
    """Sample ``image`` (linear) at the world points of ``reference`` mapped by ``transform``.

    Points outside ``image`` are NaN. Returns a (rows, columns) float array.
    """
    scalar = sitk.Cast(image, sitk.sitkFloat32)
    warp = transform if transform is not None else sitk.Transform()
    out = sitk.Resample(scalar, reference, warp, sitk.sitkLinear, float("nan"), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)[0]


def _displacement_in_plane(transform: sitk.Transform, reference: sitk.Image) -> tuple[np.ndarray, ...]:
    """Displacement of ``transform`` on the slice: in-plane (du, dv) in pixels, |d| in mm."""
    field = sitk.TransformToDisplacementField(
        transform, sitk.sitkVectorFloat64, reference.GetSize(), reference.GetOrigin(),
        reference.GetSpacing(), reference.GetDirection())
    vectors = sitk.GetArrayFromImage(field)[0]  # (rows, columns, 3) world mm, (x, y, z)
    direction = np.array(reference.GetDirection(), dtype=float).reshape(3, 3)
    spacing = reference.GetSpacing()[0]
    du = vectors @ direction[:, 0] / spacing
    dv = vectors @ direction[:, 1] / spacing
    return du, dv, np.linalg.norm(vectors, axis=-1)


def _window(slices: list[np.ndarray]) -> tuple[float, float]:
    """Display window from percentiles of the finite values of ``slices``."""
    values = np.concatenate([s[np.isfinite(s)].ravel() for s in slices])
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, WINDOW_PERCENTILES)
    if not high > low:
        high = low + 1.0
    return float(low), float(high)


def _normalize(array: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    low, high = window
    return np.clip((array - low) / (high - low), 0.0, 1.0)


def _checkerboard(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Alternate square tiles of two normalized slices (NaN stays NaN)."""
    rows, columns = first.shape
    tile = max(1, int(math.ceil(max(rows, columns) / CHECKER_TILES)))
    jj, ii = np.meshgrid(np.arange(rows) // tile, np.arange(columns) // tile, indexing="ij")
    return np.where((ii + jj) % 2 == 0, first, second)


def _grid_lines(du: np.ndarray, dv: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Polylines (x = column, y = row, in pixels) of a regular grid displaced by (du, dv)."""
    rows, columns = du.shape
    step = max(1, int(round(max(rows, columns) / GRID_LINES)))
    lines: list[tuple[np.ndarray, np.ndarray]] = []
    cols = np.arange(columns)
    for row in range(step // 2, rows, step):
        lines.append((cols + du[row, :], row + dv[row, :]))
    rws = np.arange(rows)
    for column in range(step // 2, columns, step):
        lines.append((column + du[:, column], rws + dv[:, column]))
    return lines


def _check_image(image: object, role: str) -> sitk.Image:
    if not isinstance(image, sitk.Image):
        raise InputError(f"{role} for the overview must be a SimpleITK image, not {type(image).__name__}")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{role} for the overview must be a 3D scalar image")
    return image


def save_overview(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform | None,
                  path: PathLike, *, title: str | None = None) -> Path:
    """Write the overview figure of a registration to ``path`` (PNG; .pdf/.svg also work).

    Rows: axial, coronal, sagittal planes through the centre of ``fixed``. Columns: fixed,
    moving on the fixed grid without the transform, moving warped by ``transform`` (fixed world
    -> moving world; ``None`` is the identity), checkerboard of fixed and result, and the
    deformation grid (a regular grid on the fixed plane moved by the in-plane part of the
    displacement, drawn over the fixed image, with the largest |displacement| in mm).
    The file is written atomically.

    Example:
        >>> save_overview(fixed, moving, result.transform, "overview.png", title="lung")  # doctest: +SKIP
    """
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state

    fixed = _check_image(fixed, "fixed image")
    moving = _check_image(moving, "moving image")
    target = Path(path)
    fmt = _FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise InputError(f"overview figure '{target}' must end in .png, .pdf or .svg")
    warp = transform if transform is not None else sitk.Transform()

    panels = []
    for view in _VIEWS:
        reference = slice_reference(fixed, view)
        du, dv, magnitude = _displacement_in_plane(warp, reference)
        panels.append({
            "view": view,
            "fixed": _sample(fixed, reference),
            "moving": _sample(moving, reference),
            "result": _sample(moving, reference, warp),
            "du": du, "dv": dv, "magnitude": magnitude,
        })
    fixed_window = _window([p["fixed"] for p in panels])
    moving_window = _window([p["moving"] for p in panels] + [p["result"] for p in panels])

    columns = ("fixed", "moving (no transform)", "result (warped moving)",
               "checkerboard fixed / result", "deformation grid")
    heights = [p["fixed"].shape[0] / p["fixed"].shape[1] for p in panels]
    panel_width = 2.8
    header = 0.75 if title else 0.35  # inches above the panels (figure title, column titles)
    height = panel_width * sum(heights) * 1.03 + header + 0.1
    figure = Figure(figsize=(panel_width * len(columns), height), dpi=100, facecolor="black")
    grid = figure.add_gridspec(len(panels), len(columns), height_ratios=heights,
                               hspace=0.05, wspace=0.04, left=0.01, right=0.99,
                               top=1.0 - header / height, bottom=0.1 / height)
    import matplotlib

    gray = matplotlib.colormaps["gray"].with_extremes(bad="black")
    for row, panel in enumerate(panels):
        view = panel["view"]
        fixed_n = _normalize(panel["fixed"], fixed_window)
        result_n = _normalize(panel["result"], moving_window)
        images = (
            (panel["fixed"], fixed_window),
            (panel["moving"], moving_window),
            (panel["result"], moving_window),
            (_checkerboard(np.where(np.isfinite(panel["fixed"]), fixed_n, np.nan),
                           np.where(np.isfinite(panel["result"]), result_n, np.nan)), (0.0, 1.0)),
            (panel["fixed"], fixed_window),
        )
        for column, (array, window) in enumerate(images):
            axes = figure.add_subplot(grid[row, column])
            axes.imshow(array, cmap=gray, vmin=window[0], vmax=window[1], origin="upper",
                        interpolation="nearest", aspect="equal")
            axes.set_xticks([])
            axes.set_yticks([])
            for spine in axes.spines.values():
                spine.set_color("0.3")
            rows_n, cols_n = array.shape
            if row == 0:
                axes.set_title(columns[column], color="white", fontsize=9)
            if column == 0:
                axes.text(0.02, 0.98, view.name, transform=axes.transAxes, color="yellow",
                          fontsize=8, va="top", ha="left")
            left, right, top, bottom = view.labels
            style = dict(color="orange", fontsize=7, transform=axes.transAxes)
            axes.text(0.01, 0.5, left, va="center", ha="left", **style)
            axes.text(0.99, 0.5, right, va="center", ha="right", **style)
            axes.text(0.5, 0.99, top, va="top", ha="center", **style)
            axes.text(0.5, 0.01, bottom, va="bottom", ha="center", **style)
            if column == len(images) - 1:
                for xs, ys in _grid_lines(panel["du"], panel["dv"]):
                    axes.plot(xs, ys, color="#33ccff", linewidth=0.6)
                axes.set_xlim(-0.5, cols_n - 0.5)
                axes.set_ylim(rows_n - 0.5, -0.5)
                axes.text(0.98, 0.02, f"max |u| {np.nanmax(panel['magnitude']):.1f} mm",
                          transform=axes.transAxes, color="white", fontsize=7,
                          va="bottom", ha="right")
    if title:
        figure.suptitle(title, color="white", fontsize=11, y=1.0 - 0.12 / height, va="top")
    with atomic_output(target) as tmp:
        figure.savefig(tmp, format=fmt, facecolor=figure.get_facecolor())
    return target


__all__ = ["save_overview", "slice_reference"]
