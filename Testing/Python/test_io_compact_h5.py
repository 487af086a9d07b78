"""Tests of regsuite.io.compact_h5: compact displacement-field .h5 files that ITK readers accept.

The field is a smooth analytic one with zeros over a third of the grid (as a registration leaves
outside its region), on an oblique anisotropic grid. Tolerances follow from the quantum q: every
stored component is within q/2 of the true value, ITK's trilinear interpolation is a convex
combination, so a mapped point moves by at most sqrt(3) q/2 (q = 2**-10 mm: 0.00085 mm).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from regsuite.errors import InputError, RegSuiteError, TransformFileError
from regsuite.io.compact_h5 import FIELD_QUANTUM_MM, quantize, verify_compact_h5, write_compact_h5
from regsuite.io.transforms import read_transform, write_composite_from_parts, write_transform

import h5py  # noqa: E402  (a dependency of the package)

BOUND = np.sqrt(3.0) * FIELD_QUANTUM_MM / 2.0 + 1e-9  # largest point shift of a quantized field (mm)


def _reference(size=(40, 36, 30)) -> sitk.Image:
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing((1.1, 0.9, 1.3))
    image.SetOrigin((-20.0, 15.0, -8.0))
    image.SetDirection(sitk.VersorTransform((0.2, -0.4, 0.3), 0.6).GetMatrix())
    return image


def _field(reference: sitk.Image) -> sitk.DisplacementFieldTransform:
    z, y, x = np.indices(tuple(reversed(reference.GetSize()))).astype(float)
    values = np.stack([3.0 * np.sin(x / 6.0) + 0.7 * np.cos(y / 4.0), 2.0 * np.cos(y / 5.0) * np.sin(z / 7.0),
                       1.5 * np.sin((x + z) / 9.0)], -1)
    values[: values.shape[0] // 3] = 0.0  # outside the registered region
    image = sitk.GetImageFromArray(values, isVector=True)
    image.CopyInformation(reference)
    return sitk.DisplacementFieldTransform(image)


def _points(reference: sitk.Image, count: int = 400) -> np.ndarray:
    """Random points between voxel centres, over the whole grid."""
    rng = np.random.default_rng(3)
    index = rng.uniform(0.0, 1.0, (count, 3)) * (np.array(reference.GetSize()) - 1.0)
    return np.array([reference.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in index])


def _map(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    return np.array([transform.TransformPoint(p.tolist()) for p in points])


def _shift(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(got - expected, axis=1).max())


def test_quantize_rounds_to_the_nearest_multiple() -> None:
    values = np.array([0.3, -1.0004, 2.0 ** -11 + 1e-9, 0.0, 7.49999])
    out = quantize(values, 0.5)
    assert out.dtype == np.float32
    assert out.tolist() == [0.5, -1.0, 0.0, 0.0, 7.5]
    fine = quantize(values, FIELD_QUANTUM_MM)
    assert np.all(np.abs(fine - values) <= FIELD_QUANTUM_MM / 2.0)
    assert np.all(np.rint(fine / FIELD_QUANTUM_MM) * FIELD_QUANTUM_MM == fine)


def test_compact_field_is_smaller_and_maps_within_half_a_quantum(tmp_path: Path) -> None:
    reference = _reference()
    field = _field(reference)
    write_transform(field, tmp_path / "full.h5", field_quantum=None)
    write_transform(field, tmp_path / "compact.h5")
    # float64 (8 bytes a value) vs quantized float32, shuffled and gzipped: at least 4x smaller
    # here (9x on a registered brain: BENCHMARKS.md); 4x leaves room for zlib builds that differ
    assert os.path.getsize(tmp_path / "compact.h5") < os.path.getsize(tmp_path / "full.h5") / 4
    full, compact = read_transform(tmp_path / "full.h5"), read_transform(tmp_path / "compact.h5")
    assert compact.GetName() == "DisplacementFieldTransform"
    points = _points(reference)
    assert _shift(_map(full, points), _map(field, points)) < 1e-9  # the old form is exact
    shift = _shift(_map(compact, points), _map(field, points))
    assert 0.0 < shift <= BOUND  # quantized (not exact), within the stated bound
    assert np.array_equal(np.array(compact.GetFixedParameters()), np.array(field.GetFixedParameters()))


def test_layout_is_itks_with_a_compressed_float32_field(tmp_path: Path) -> None:
    reference = _reference((12, 10, 8))
    affine = sitk.AffineTransform((1.05, 0.02, 0.0, -0.03, 0.97, 0.04, 0.0, 0.01, 1.02), (2.0, -1.0, 0.5))
    composite = sitk.CompositeTransform([affine, _field(reference)])
    write_transform(composite, tmp_path / "full.h5", field_quantum=None)
    write_transform(composite, tmp_path / "compact.h5")
    with h5py.File(tmp_path / "full.h5", "r") as full, h5py.File(tmp_path / "compact.h5", "r") as compact:
        assert sorted(compact["TransformGroup"]) == sorted(full["TransformGroup"]) == ["0", "1", "2"]
        for group in ("0", "1", "2"):
            name = f"TransformGroup/{group}/TransformType"
            assert compact[name][0] == full[name][0]
        assert compact["TransformGroup/2/TransformType"][0].startswith(b"DisplacementFieldTransform")
        for group in ("1", "2"):  # the affine is ITK's own; the field's grid is kept exactly
            fixed = f"TransformGroup/{group}/TransformFixedParameters"
            assert np.array_equal(compact[fixed][()], full[fixed][()])
        assert np.array_equal(compact["TransformGroup/1/TransformParameters"][()],
                              full["TransformGroup/1/TransformParameters"][()])
        stored = compact["TransformGroup/2/TransformParameters"]
        assert stored.dtype == np.float32 and stored.compression == "gzip" and stored.shuffle
        difference = stored[()].astype(np.float64) - full["TransformGroup/2/TransformParameters"][()]
        assert np.abs(difference).max() <= FIELD_QUANTUM_MM / 2.0
    read_back = read_transform(tmp_path / "compact.h5")
    points = _points(reference, 100)
    # the affine (largest singular value < 1.1) stretches the field's shift by at most 1.1
    assert _shift(_map(read_back, points), _map(composite, points)) <= 1.1 * BOUND


def test_composite_from_part_files_reuses_the_stored_field(tmp_path: Path) -> None:
    """The job worker's transform.h5: the parts' compressed field copied, the same mapping."""
    reference = _reference((14, 12, 10))
    parts = [sitk.AffineTransform((1.02, 0.0, 0.01, 0.0, 0.98, 0.0, 0.02, 0.0, 1.0), (1.0, 2.0, -1.0)),
             _field(reference)]
    paths = [tmp_path / "part-1-linear.tfm", tmp_path / "part-2-field.h5"]
    for part, path in zip(parts, paths):
        write_transform(part, path)
    write_composite_from_parts(parts, paths, tmp_path / "transform.h5")
    write_transform(sitk.CompositeTransform(parts), tmp_path / "direct.h5")
    with h5py.File(tmp_path / "transform.h5", "r") as built, h5py.File(tmp_path / "direct.h5", "r") as direct:
        for name in ("0/TransformType", "1/TransformParameters", "2/TransformType", "2/TransformParameters",
                     "2/TransformFixedParameters"):
            assert np.array_equal(built[f"TransformGroup/{name}"][()], direct[f"TransformGroup/{name}"][()]), name
        assert built["TransformGroup/2/TransformParameters"].compression == "gzip"
    points = _points(reference, 100)
    whole, part_field = read_transform(tmp_path / "transform.h5"), read_transform(paths[1])
    expected = _map(sitk.CompositeTransform([read_transform(paths[0]), part_field]), points)
    assert _shift(_map(whole, points), expected) < 1e-9  # exactly the part files' transform
    assert sorted(os.listdir(tmp_path)) == ["direct.h5", "part-1-linear.tfm", "part-2-field.h5", "transform.h5"]


@pytest.mark.slow  # importing ITK Python's transform I/O takes ~40 s on 2 busy cores
def test_itk_python_reads_the_compact_file(tmp_path: Path) -> None:
    """ITK itself (ANTs' reader is the same ITK code) reads the file; ITK Python comes with itk-elastix."""
    itk = pytest.importorskip("itk")
    reference = _reference((16, 14, 12))
    field = _field(reference)
    write_transform(field, tmp_path / "compact.h5")
    transforms = itk.transformread(str(tmp_path / "compact.h5"))
    assert len(transforms) == 1 and transforms[0].GetNameOfClass() == "DisplacementFieldTransform"
    points = _points(reference, 100)
    mapped = np.array([list(transforms[0].TransformPoint(p.tolist())) for p in points])
    assert _shift(mapped, _map(field, points)) <= BOUND


def test_unstorable_fields_fail_with_one_line_and_leave_nothing(tmp_path: Path) -> None:
    reference = _reference((6, 5, 4))
    values = sitk.GetArrayFromImage(_field(reference).GetDisplacementField())
    values[1, 2, 3, 0] = np.nan
    image = sitk.GetImageFromArray(values, isVector=True)
    image.CopyInformation(reference)
    with pytest.raises(TransformFileError, match="NaN/Inf"):
        write_transform(sitk.DisplacementFieldTransform(image), tmp_path / "nan.h5")
    values[1, 2, 3, 0] = 1e5  # 100 m: beyond float32's exact multiples of the quantum
    image = sitk.GetImageFromArray(values, isVector=True)
    with pytest.raises(TransformFileError, match="100000 mm"):
        write_transform(sitk.DisplacementFieldTransform(image), tmp_path / "far.h5")
    with pytest.raises(InputError, match="quantum"):
        write_transform(_field(reference), tmp_path / "bad.h5", field_quantum=-1.0)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("threads", [1, 2])
def test_field_over_several_chunks_is_stored_exactly_quantized(tmp_path: Path, threads: int) -> None:
    """The chunks are shuffled and compressed by the writer itself (on SimpleITK's threads) and
    stored raw: HDF5 and ITK must decode them to exactly the quantized values, the last (partial,
    zero-padded) chunk included. 60x50x40 vectors: 360 000 values, a chunk and a third."""
    reference = _reference((60, 50, 40))
    field = _field(reference)
    saved = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    try:
        write_transform(field, tmp_path / "compact.h5")
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(saved)
    expected = quantize(sitk.GetArrayViewFromImage(field.GetDisplacementField()), FIELD_QUANTUM_MM)
    with h5py.File(tmp_path / "compact.h5", "r") as store:
        stored = store["TransformGroup/0/TransformParameters"]
        assert stored.chunks[0] < stored.shape[0] < 2 * stored.chunks[0]
        assert np.array_equal(stored[()], expected)
    back = sitk.DisplacementFieldTransform(read_transform(tmp_path / "compact.h5")).GetDisplacementField()
    assert np.array_equal(sitk.GetArrayViewFromImage(back).reshape(-1), expected.astype(np.float64))


def test_verification_compares_the_stored_chunks(tmp_path: Path) -> None:
    """A changed chunk, a changed linear piece and a file cut short are each caught."""
    reference = _reference((60, 50, 40))
    pieces = [sitk.AffineTransform((1.02, 0.0, 0.01, 0.0, 0.98, 0.0, 0.02, 0.0, 1.0), (1.0, 2.0, -1.0)),
              _field(reference)]
    path = tmp_path / "t.h5"
    stored = write_compact_h5(pieces, path)
    verify_compact_h5(path, pieces, stored, "t.h5")  # as written: no error
    name, chunks = next(iter(stored.items()))
    damaged = bytearray(chunks[0][1])
    damaged[len(damaged) // 2] ^= 0xFF
    with h5py.File(path, "r+") as store:  # one byte of the first chunk flipped
        store[name].id.write_direct_chunk((0,), bytes(damaged), 0)
    with pytest.raises(RegSuiteError, match="'t.h5' reads back different"):
        verify_compact_h5(path, pieces, stored, "t.h5")
    stored = write_compact_h5(pieces, path)
    moved = [sitk.AffineTransform(pieces[0]), pieces[1]]
    moved[0].SetTranslation((1.0, 2.0, -1.0 + 1e-12))
    with pytest.raises(RegSuiteError, match="reads back different"):
        verify_compact_h5(path, moved, stored, "t.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RegSuiteError, match="'t.h5' was not written completely"):
        verify_compact_h5(path, pieces, stored, "t.h5")
