"""Tests of regsuite.visualize: display planes in world space, radiological orientation, PNG."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from regsuite.errors import InputError
from regsuite.visualize import _VIEWS, _displacement_in_plane, _sample, save_overview, slice_reference

VIEWS = {view.name: view for view in _VIEWS}


def blob_image(direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1),
               spacing: tuple[float, float, float] = (2.0, 2.0, 3.0),
               centre_world: tuple[float, float, float] = (20.0, -20.0, 20.0)) -> sitk.Image:
    """A 32^3 grid centred on world 0 holding a bright ball (radius 8 mm) at ``centre_world``."""
    size = (32, 32, 32)
    image = sitk.Image(size, sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    matrix = np.array(direction, dtype=float).reshape(3, 3) @ np.diag(spacing)
    centre_index = (np.array(size) - 1) / 2.0
    image.SetOrigin((-(matrix @ centre_index)).tolist())
    k, j, i = np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")
    index = np.stack([i, j, k], axis=-1).reshape(-1, 3).astype(float)
    world = index @ matrix.T + np.array(image.GetOrigin())
    inside = np.linalg.norm(world - np.array(centre_world), axis=1) < 8.0
    values = np.where(inside, 1000.0, 0.0).reshape(size[::-1]).astype(np.float32)
    out = sitk.GetImageFromArray(values)
    out.CopyInformation(image)
    return out


def blob_quadrant(image: sitk.Image, view_name: str) -> tuple[str, str]:
    """Which half (left/right, top/bottom) of the displayed slice holds the blob's centroid."""
    view = VIEWS[view_name]
    array = _sample(image, slice_reference(image, view))
    rows, cols = np.nonzero(np.nan_to_num(array) > 500)
    assert rows.size > 0, f"blob not visible in the {view_name} plane"
    horizontal = "left" if cols.mean() < array.shape[1] / 2 else "right"
    vertical = "top" if rows.mean() < array.shape[0] / 2 else "bottom"
    return horizontal, vertical


# The ball is at world (20, -20, 20) LPS: patient left, anterior, superior; each plane goes
# through the image centre (world 0), so move the ball onto each plane for its check.
@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, -1, 0, 0, 0, 1),
                                       (0, 1, 0, 1, 0, 0, 0, 0, -1)])
def test_radiological_orientation_whatever_the_direction_matrix(direction):
    axial = blob_image(direction, centre_world=(20.0, -20.0, 0.0))
    assert blob_quadrant(axial, "axial") == ("right", "top")        # left on the right, anterior up
    coronal = blob_image(direction, centre_world=(20.0, 0.0, 20.0))
    assert blob_quadrant(coronal, "coronal") == ("right", "top")    # left on the right, superior up
    sagittal = blob_image(direction, centre_world=(0.0, -20.0, 20.0))
    assert blob_quadrant(sagittal, "sagittal") == ("left", "top")   # anterior on the left, superior up


def test_slice_reference_square_pixels_cover_the_image():
    image = blob_image(spacing=(1.0, 1.5, 4.0))
    reference = slice_reference(image, VIEWS["coronal"])
    assert reference.GetSize()[2] == 1
    assert reference.GetSpacing()[0] == reference.GetSpacing()[1] == pytest.approx(1.0)
    # coronal plane spans x (32 mm) by z (128 mm): width and height follow the physical extent
    assert reference.GetSize()[0] == 32
    assert reference.GetSize()[1] == 128
    # first row is the most superior one
    top = reference.TransformIndexToPhysicalPoint((0, 0, 0))
    bottom = reference.TransformIndexToPhysicalPoint((0, reference.GetSize()[1] - 1, 0))
    assert top[2] > bottom[2]


def test_displacement_in_plane_of_a_translation():
    image = blob_image(spacing=(2.0, 2.0, 2.0))
    reference = slice_reference(image, VIEWS["axial"])
    du, dv, magnitude = _displacement_in_plane(sitk.TranslationTransform(3, (4.0, -2.0, 7.0)), reference)
    assert np.allclose(du, 4.0 / 2.0)      # +x is the column direction, 2 mm pixels
    assert np.allclose(dv, -2.0 / 2.0)     # +y (posterior) is the row direction
    assert np.allclose(magnitude, np.sqrt(16 + 4 + 49))


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_save_overview_writes_a_png(tmp_path):
    fixed = blob_image(centre_world=(0.0, 0.0, 0.0))
    moving = blob_image(centre_world=(6.0, 0.0, 0.0))
    path = save_overview(fixed, moving, sitk.TranslationTransform(3, (6.0, 0.0, 0.0)),
                         tmp_path / "overview.png", title="blob")
    assert path == tmp_path / "overview.png"
    width, height = png_size(path)
    assert width >= 1000 and height >= 600
    assert path.stat().st_size > 20_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overview.png"]  # no temporary left


def test_save_overview_rejects_bad_inputs(tmp_path):
    image = blob_image()
    with pytest.raises(InputError, match="must end in"):
        save_overview(image, image, None, tmp_path / "overview.jpeg")
    flat = sitk.Image([8, 8], sitk.sitkFloat32)
    with pytest.raises(InputError, match="3D scalar"):
        save_overview(flat, image, None, tmp_path / "overview.png")
    assert list(tmp_path.iterdir()) == []
