"""Tests of regsuite.io.images: reading with clear errors, masks, atomic writing, overlap."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from regsuite.errors import InputError
from regsuite.io.images import (
    check_overlap,
    read_image,
    read_label_image,
    read_mask,
    require_overlap,
    write_image,
)


def _oblique_image(size=(12, 10, 8), pixel=sitk.sitkInt16) -> sitk.Image:
    image = sitk.Image(list(size), pixel)
    image.SetSpacing((0.8, 1.3, 2.1))
    image.SetOrigin((-12.0, 5.5, 30.25))
    image.SetDirection(sitk.VersorTransform((0.2, -0.4, 0.9), 0.6).GetMatrix())
    values = np.arange(np.prod(size)).reshape(size[::-1]) % 97
    filled = sitk.GetImageFromArray(values.astype(sitk.GetArrayViewFromImage(image).dtype))
    filled.CopyInformation(image)
    return filled


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _same_geometry(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing())
            and np.allclose(a.GetOrigin(), b.GetOrigin()) and np.allclose(a.GetDirection(), b.GetDirection()))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_read_image_float32_and_geometry_kept(tmp_path, suffix):
    original = _oblique_image()
    path = tmp_path / f"img{suffix}"
    write_image(original, path)
    image = read_image(path, "fixed image")
    assert image.GetPixelID() == sitk.sitkFloat32
    assert _same_geometry(image, original)
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(original), atol=1e-5)


def test_missing_file_names_role_and_path(tmp_path):
    missing = tmp_path / "nope.nii.gz"
    with pytest.raises(InputError, match=r"moving image '.*nope\.nii\.gz' does not exist"):
        read_image(missing, "moving image")


def test_unreadable_file(tmp_path):
    path = tmp_path / "text.nii.gz"
    path.write_text("this is not an image")
    with pytest.raises(InputError, match="fixed image .* cannot be read as an image"):
        read_image(path, "fixed image")


def test_2d_image_rejected(tmp_path):
    path = tmp_path / "slice.nrrd"
    sitk.WriteImage(sitk.Image([16, 16], sitk.sitkFloat32), str(path))
    with pytest.raises(InputError, match="is 2D .*a 3D image is needed"):
        read_image(path, "fixed image")


def test_single_slice_3d_rejected():
    with pytest.raises(InputError, match="single voxel along an axis"):
        read_image(sitk.Image([16, 16, 1], sitk.sitkFloat32), "fixed image")


def test_4d_image_rejected_and_singleton_4d_squeezed(tmp_path):
    path = tmp_path / "series.nii.gz"
    sitk.WriteImage(sitk.Image([6, 6, 6, 3], sitk.sitkFloat32), str(path))
    with pytest.raises(InputError, match="is 4D"):
        read_image(path, "moving image")

    volume = sitk.JoinSeries([_oblique_image((6, 7, 8))])  # 4D, last size 1
    squeezed = read_image(volume, "moving image")
    assert squeezed.GetDimension() == 3 and squeezed.GetSize() == (6, 7, 8)
    reference = _oblique_image((6, 7, 8))
    assert _same_geometry(squeezed, reference)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(squeezed), sitk.GetArrayFromImage(reference))


def test_vector_image_rejected(tmp_path):
    path = tmp_path / "rgb.mha"
    sitk.WriteImage(sitk.Image([5, 5, 5], sitk.sitkVectorFloat32, 3), str(path))
    with pytest.raises(InputError, match="3 components per voxel"):
        read_image(path, "fixed image")
    with pytest.raises(InputError, match="components per voxel"):
        read_label_image(path, "fixed labels")


def test_nan_voxels_rejected_and_input_unchanged():
    image = sitk.Image([5, 5, 5], sitk.sitkFloat32)
    image[1, 2, 3] = float("nan")
    image[0, 0, 0] = float("inf")
    with pytest.raises(InputError, match="2 NaN/Inf voxels"):
        read_image(image, "fixed image")
    assert np.isnan(image[1, 2, 3])  # the caller's image is untouched


def test_read_image_does_not_modify_input_image():
    image = _oblique_image()
    before = sitk.GetArrayFromImage(image).copy()
    converted = read_image(image)
    converted[0, 0, 0] = 1000.0
    assert image.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), before)


def test_label_image_keeps_integers(tmp_path):
    labels = _oblique_image(pixel=sitk.sitkUInt16)
    path = tmp_path / "labels.nii.gz"
    write_image(labels, path)
    read_back = read_label_image(path, "fixed labels")
    assert read_back.GetPixelID() == sitk.sitkUInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_back), sitk.GetArrayFromImage(labels))

    as_float = sitk.Cast(labels, sitk.sitkFloat32)
    cast = read_label_image(as_float)
    assert cast.GetPixelID() == sitk.sitkInt32
    np.testing.assert_array_equal(sitk.GetArrayFromImage(cast), sitk.GetArrayFromImage(labels))

    fractional = as_float + 0.5
    with pytest.raises(InputError, match="non-integer values"):
        read_label_image(fractional, "fixed labels")


def test_dicom_folder_reads_largest_series(tmp_path):
    def write_series(uid: str, slices: int, prefix: str) -> None:
        for k in range(slices):
            plane = sitk.GetImageFromArray(np.full((6, 7), 10 * slices + k, np.int16))
            plane.SetSpacing((0.5, 0.5))
            tags = {"0020|000e": uid, "0020|0032": f"0\\0\\{2.0 * k}", "0020|0037": "1\\0\\0\\0\\1\\0",
                    "0008|0060": "CT", "0020|0013": str(k + 1), "0008|0018": f"{uid}.{k + 1}"}
            for tag, value in tags.items():
                plane.SetMetaData(tag, value)
            writer = sitk.ImageFileWriter()
            writer.KeepOriginalImageUIDOn()
            writer.SetFileName(str(tmp_path / f"{prefix}{k:02d}.dcm"))
            writer.Execute(plane)

    write_series("1.2.826.0.1.3680043.2.1125.71", 5, "a")
    write_series("1.2.826.0.1.3680043.2.1125.72", 3, "b")
    image = read_image(tmp_path, "fixed image")
    assert image.GetSize() == (7, 6, 5)
    assert image.GetSpacing()[2] == pytest.approx(2.0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image)[:, 0, 0], [50, 51, 52, 53, 54])


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="fixed image folder .* holds no DICOM series"):
        read_image(tmp_path, "fixed image")


# ---------------------------------------------------------------- masks


def test_mask_is_binary_uint8(tmp_path):
    reference = _oblique_image()
    mask = sitk.Image(reference.GetSize(), sitk.sitkInt16)
    mask.CopyInformation(reference)
    mask[2, 3, 4] = 7
    mask[5, 5, 5] = -2
    path = tmp_path / "mask.nrrd"
    write_image(mask, path)
    result = read_mask(path, reference, "fixed mask")
    assert result.GetPixelID() == sitk.sitkUInt8
    values = sitk.GetArrayFromImage(result)
    assert set(np.unique(values)) == {0, 1} and values.sum() == 2
    assert _same_geometry(result, reference)


def test_empty_mask_rejected():
    reference = _oblique_image()
    mask = sitk.Image(reference.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(reference)
    with pytest.raises(InputError, match="fixed mask image is empty"):
        read_mask(mask, reference, "fixed mask")


@pytest.mark.parametrize("change,word", [
    (lambda m: m.SetSpacing((0.8, 1.3, 2.2)), "spacing"),
    (lambda m: m.SetOrigin((-12.0, 5.5, 30.3)), "origin"),
    (lambda m: m.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1)), "direction"),
])
def test_mask_geometry_mismatch_says_what_differs(change, word):
    reference = _oblique_image()
    mask = sitk.Image(reference.GetSize(), sitk.sitkUInt8) + 1
    mask.CopyInformation(reference)
    change(mask)
    with pytest.raises(InputError, match=f"not on the grid of its image: {word}"):
        read_mask(mask, reference, "moving mask")


def test_mask_size_mismatch_and_small_origin_difference_tolerated():
    reference = _oblique_image()
    mask = sitk.Image([12, 10, 9], sitk.sitkUInt8) + 1
    mask.SetSpacing(reference.GetSpacing())
    mask.SetOrigin(reference.GetOrigin())
    mask.SetDirection(reference.GetDirection())
    with pytest.raises(InputError, match=r"size \(12, 10, 9\) vs \(12, 10, 8\)"):
        read_mask(mask, reference)
    close = sitk.Image(reference.GetSize(), sitk.sitkUInt8) + 1
    close.CopyInformation(reference)
    close.SetOrigin(tuple(np.array(reference.GetOrigin()) + 1e-4))
    assert sitk.GetArrayFromImage(read_mask(close, reference)).all()


# ---------------------------------------------------------------- atomic writing


def test_failed_write_keeps_existing_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "result.unknownext"
    target.write_bytes(b"previous content")
    digest = _digest(target)
    with pytest.raises(InputError, match="has extension '.unknownext'"):
        write_image(_oblique_image(), target)
    assert _digest(target) == digest
    assert sorted(os.listdir(tmp_path)) == ["result.unknownext"]


def test_write_into_missing_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        write_image(_oblique_image(), tmp_path / "missing" / "a.nii.gz")


def test_write_replaces_existing_file(tmp_path):
    target = tmp_path / "a.nii.gz"
    write_image(sitk.Image([4, 4, 4], sitk.sitkFloat32), target)
    write_image(sitk.Image([5, 5, 5], sitk.sitkFloat32) + 2.0, target)
    assert read_image(target).GetSize() == (5, 5, 5)
    assert sorted(os.listdir(tmp_path)) == ["a.nii.gz"]


# ---------------------------------------------------------------- overlap


def _cube(size=20, spacing=1.0) -> sitk.Image:
    image = sitk.Image([size] * 3, sitk.sitkFloat32)
    image.SetSpacing((spacing,) * 3)
    return image


def test_overlap_identity_half_and_none():
    image = _cube()
    assert check_overlap(image, image, None) == 1.0
    half = sitk.TranslationTransform(3, (10.0, 0.0, 0.0))  # samples at x=0..19 land at 10..29
    assert check_overlap(image, image, half) == pytest.approx(0.5)
    far = sitk.TranslationTransform(3, (0.0, 0.0, 500.0))
    assert check_overlap(image, image, far) == 0.0
    with pytest.raises(InputError, match="fixed and moving images do not overlap in physical space after initialization"):
        require_overlap(image, image, far)
    assert require_overlap(image, image, half) == pytest.approx(0.5)


def test_overlap_uses_moving_direction_and_origin():
    fixed = _cube()
    moving = _cube()
    moving.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # flipped axes: extends to negative x, y
    assert check_overlap(fixed, moving, None) < 0.1
    moving.SetOrigin((19.0, 19.0, 0.0))
    assert check_overlap(fixed, moving, None) == 1.0
