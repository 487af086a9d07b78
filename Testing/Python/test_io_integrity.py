"""Hostile files: truncated or sheared inputs, broken DICOM series, full disks, odd output names.

Every refusal is an :class:`InputError`/:class:`RegSuiteError` with one line naming the file;
inputs keep their bytes and a failed write leaves nothing (no hidden temporary) in the folder.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from regsuite.data import sample_paths
from regsuite.errors import InputError
from regsuite.io.images import read_image, read_mask, write_image
from regsuite.io.transforms import read_transform, write_transform

ROOT = Path(__file__).resolve().parents[2]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text, text
    return text


@pytest.fixture()
def lung() -> sitk.Image:
    """The shipped sample CT (int16, 2.7 x 2.7 x 5 mm): real data for the truncation tests."""
    return sitk.ReadImage(str(sample_paths()["fixed"]))


# ----------------------------------------------------------------------------- truncated NIfTI
@pytest.mark.parametrize("name", ["ct.nii", "ct.nii.gz"])
def test_truncated_nifti_is_refused(tmp_path, lung, name):
    whole = tmp_path / name
    sitk.WriteImage(lung, str(whole))
    data = whole.read_bytes()
    cut = tmp_path / f"cut_{name}"
    cut.write_bytes(data[: int(len(data) * 0.3)])  # an interrupted copy: 30 % of the bytes
    digest = _digest(cut)
    # ITK itself reads the cut file and fills the missing voxels with zeros
    assert (sitk.GetArrayFromImage(sitk.ReadImage(str(cut))) == 0).mean() > 0.5
    with pytest.raises(InputError, match="truncated") as caught:
        read_image(cut, "moving image")
    assert "moving image" in _one_line(caught.value) and cut.name in str(caught.value)
    assert _digest(cut) == digest
    assert read_image(whole).GetSize() == lung.GetSize()  # the whole file still reads


def test_gzip_with_bad_crc_is_refused(tmp_path, lung):
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(lung, str(path))
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the CRC-32 in the gzip trailer: the data decompress but do not check
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="damaged gzip"):
        read_image(path, "fixed image")


# ----------------------------------------------------------------------------- direction
def _sheared_nifti(tmp_path: Path) -> Path:
    """A NIfTI-1 file whose sform has a shear (ITK falls back to the qform with a warning)."""
    image = sitk.Image([20, 20, 20], sitk.sitkInt16)
    image.SetSpacing((2.0, 2.0, 2.0))
    path = tmp_path / "sheared.nii"
    sitk.WriteImage(image, str(path))
    header = bytearray(path.read_bytes())
    assert struct.unpack("<h", header[254:256])[0] > 0  # the sform is in use
    rows = list(struct.unpack("<12f", header[280:328]))
    rows[1] = 0.5  # srow_x[1]: x now depends on the j index
    header[280:328] = struct.pack("<12f", *rows)
    path.write_bytes(bytes(header))
    return path


def test_non_orthonormal_direction_is_refused(tmp_path):
    skewed = sitk.Image([8, 8, 8], sitk.sitkFloat32)
    skewed.SetDirection((1.0, 0.0, 0.0, 0.2, 1.0, 0.0, 0.0, 0.0, 1.0))
    for name in ("skew.mha", "skew.nrrd"):
        sitk.WriteImage(skewed, str(tmp_path / name))
        with pytest.raises(InputError, match="not orthonormal") as caught:
            read_image(tmp_path / name, "fixed image")
        assert name in _one_line(caught.value)
        with pytest.raises(InputError, match="not orthonormal"):
            read_mask(tmp_path / name, skewed, "fixed mask")
    sheared = _sheared_nifti(tmp_path)
    with pytest.raises(InputError, match="sform that is not orthonormal"):
        read_image(sheared, "moving image")
    # a rotation stored in float32 (NIfTI) is orthonormal to ~1e-7 and reads
    rotated = sitk.Image([8, 8, 8], sitk.sitkFloat32)
    rotated.SetDirection(sitk.VersorTransform((0.2, -0.4, 0.9), 0.6).GetMatrix())
    sitk.WriteImage(rotated, str(tmp_path / "rotated.nii.gz"))
    assert read_image(tmp_path / "rotated.nii.gz").GetSize() == (8, 8, 8)


# ----------------------------------------------------------------------------- DICOM
def _write_dicom_series(folder: Path, volume: sitk.Image) -> list[Path]:
    """One file per slice with position/orientation tags, as a scanner would write them."""
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = "1.2.826.0.1.3680043.2.1125.1.99"
    direction = volume.GetDirection()
    files = []
    for k in range(volume.GetDepth()):
        slice_ = volume[:, :, k]
        position = volume.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {"0008|0060": "CT", "0020|000d": series + ".0", "0020|000e": series,
                "0008|0018": f"{series}.{k + 1}", "0020|0013": str(k + 1),
                "0020|0032": "\\".join(f"{v:.6f}" for v in position),
                "0020|0037": "\\".join(f"{v:.6f}" for v in direction[0:7:3] + direction[1:8:3]),
                "0028|0030": f"{volume.GetSpacing()[1]:.6f}\\{volume.GetSpacing()[0]:.6f}",
                "0018|0050": f"{volume.GetSpacing()[2]:.6f}"}
        for key, value in tags.items():
            slice_.SetMetaData(key, value)
        path = folder / f"slice{k:03d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(slice_)
        files.append(path)
    return files


def test_dicom_series_with_a_missing_or_corrupt_slice_is_refused(tmp_path):
    values = np.random.default_rng(1).integers(-1000, 1000, (12, 16, 16)).astype(np.int16)
    volume = sitk.GetImageFromArray(values)
    volume.SetSpacing((0.7, 0.7, 2.5))
    volume.SetOrigin((-5.0, 3.0, 40.0))
    files = _write_dicom_series(tmp_path / "series", volume)
    whole = read_image(tmp_path / "series", "fixed image")
    assert whole.GetSize() == (16, 16, 12) and np.allclose(whole.GetSpacing(), (0.7, 0.7, 2.5), atol=1e-4)
    files[5].write_bytes(b"\0" * 300)  # slice 6 corrupt: GDCM drops it from the series
    digests = {path: _digest(path) for path in files}
    with pytest.raises(InputError, match="uneven slice positions") as caught:
        read_image(tmp_path / "series", "fixed image")
    assert "5 mm between" in _one_line(caught.value)  # twice the 2.5 mm spacing: one slice missing
    files[5].unlink()  # the slice is missing altogether
    with pytest.raises(InputError, match="uneven slice positions"):
        read_image(tmp_path / "series", "fixed image")
    assert all(_digest(path) == digest for path, digest in digests.items() if path.exists())


# ----------------------------------------------------------------------------- output names
@pytest.mark.parametrize("name, meta_file, data_file", [
    ("warped.MHA", None, None),
    ("warped.MHD", "warped.MHD", "warped.zraw"),
    ("warped.mhd", "warped.mhd", "warped.zraw"),
    ("warped.nhdr", "warped.nhdr", "warped.raw.gz"),
    ("warped.NII.GZ", None, None),
])
def test_output_suffix_case_and_detached_headers(tmp_path, lung, name, meta_file, data_file):
    write_image(lung, tmp_path / name)
    expected = sorted([name] + ([data_file] if data_file else []))
    assert sorted(os.listdir(tmp_path)) == expected  # no hidden temporary left
    if meta_file:  # the header names the data file that was moved beside it
        header = (tmp_path / meta_file).read_text(errors="replace")
        assert data_file in header and ".tmp" not in header
    # read back through a lower-case name (ITK picks readers by lower-case suffix)
    lower = tmp_path / "check" / name.lower()
    lower.parent.mkdir()
    for item in expected:
        (lower.parent / (item.lower() if item == name else item)).write_bytes((tmp_path / item).read_bytes())
    back = sitk.ReadImage(str(lower))
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(lung))


def test_upper_case_outputs_read_back_as_inputs(tmp_path, lung):
    for name in ("W.MHA", "W.MHD", "W.NRRD", "W.NHDR", "W.NII.GZ"):
        write_image(lung, tmp_path / name)
        back = read_image(tmp_path / name, "moving image")
        assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(lung).astype(np.float32)), name


def test_mixed_case_nifti_suffix_is_refused(tmp_path, lung):
    with pytest.raises(InputError, match="mixed-case"):
        write_image(lung, tmp_path / "warped.nii.GZ")
    assert os.listdir(tmp_path) == []


def test_upper_case_transform_suffix(tmp_path):
    affine = sitk.AffineTransform((1.1, 0.1, 0.0, 0.0, 0.9, 0.2, 0.0, 0.0, 1.0), (1.0, 2.0, 3.0))
    write_transform(affine, tmp_path / "t.H5")
    assert os.listdir(tmp_path) == ["t.H5"]
    assert (tmp_path / "t.H5").read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    assert np.allclose(read_transform(tmp_path / "t.H5").GetParameters(), affine.GetParameters())


def test_output_onto_existing_folder_is_refused(tmp_path, lung):
    (tmp_path / "out.nii.gz").mkdir()
    with pytest.raises(InputError, match="existing folder"):
        write_image(lung, tmp_path / "out.nii.gz")
    assert os.listdir(tmp_path) == ["out.nii.gz"]


# ----------------------------------------------------------------------------- full disk
FULL_DISK_CHILD = textwrap.dedent("""
    import resource, signal, sys
    import numpy as np, SimpleITK as sitk
    from regsuite.errors import RegSuiteError
    from regsuite.io.images import write_image
    from regsuite.io.transforms import write_transform
    kind, path, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    values = np.random.default_rng(0).random((48, 48, 48, 3))
    if kind == "image":
        obj = sitk.GetImageFromArray(values[..., 0].astype(np.float32))
    else:
        obj = sitk.DisplacementFieldTransform(sitk.GetImageFromArray(values, isVector=True))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        (write_image if kind == "image" else write_transform)(obj, path)
    except RegSuiteError as error:
        print("refused:", error)
        sys.exit(1)
    print("written")
""")


def _write_with_file_size_limit(kind: str, path: Path, limit: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "RegistrationSuite")}
    return subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, kind, str(path), str(limit)],
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.skipif(not hasattr(os, "setrlimit") and sys.platform == "win32", reason="needs RLIMIT_FSIZE")
@pytest.mark.parametrize("kind, name", [("image", "w.nii.gz"), ("image", "w.nii"), ("image", "w.mha"),
                                        ("transform", "t.h5")])
def test_full_disk_leaves_previous_output_and_no_temporary(tmp_path, kind, name):
    # A 100 kB file size limit stands in for a full disk: 48^3 float voxels compress to far more.
    target = tmp_path / name
    target.write_bytes(b"previous result")
    result = _write_with_file_size_limit(kind, target, 100_000)
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)  # no crash
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("refused:") and name in lines[0], result.stdout
    assert target.read_bytes() == b"previous result"
    assert os.listdir(tmp_path) == [name]
    # without the limit the same child writes the file
    assert _write_with_file_size_limit(kind, target, 2**40).returncode == 0
    assert target.stat().st_size > 100_000
