"""Tests of regsuite.io.points and regsuite.io.transforms."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from regsuite.errors import InputError, TransformFileError
from regsuite.io.points import read_points, write_points
from regsuite.io.transforms import (
    displacement_field,
    flatten_linear,
    is_linear,
    read_transform,
    write_displacement_field,
    write_transform,
)

POINTS = np.array([[1.5, -2.25, 3.0], [-10.0, 20.125, -30.5], [0.0, 0.0, 1e-3]])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _oblique_reference(size=(9, 8, 7)) -> sitk.Image:
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing((0.7, 1.1, 2.5))
    image.SetOrigin((10.0, -20.0, 5.0))
    image.SetDirection(sitk.VersorTransform((0.3, 0.5, -0.2), 0.8).GetMatrix())
    return image


def _affine() -> sitk.AffineTransform:
    matrix = [1.1, 0.05, 0.0, -0.02, 0.95, 0.1, 0.0, 0.03, 1.05]
    return sitk.AffineTransform(matrix, (2.0, -3.0, 1.5), (5.0, 5.0, 5.0))


def _probe_points(reference: sitk.Image) -> list[tuple[float, ...]]:
    size = reference.GetSize()
    indices = [(0, 0, 0), (size[0] - 1, 1, 2), (3, size[1] - 1, size[2] - 1), (4, 4, 3)]
    return [reference.TransformIndexToPhysicalPoint(index) for index in indices]


# ---------------------------------------------------------------- points


@pytest.mark.parametrize("fmt,name", [("elastix", "p.txt"), ("csv", "p.csv")])
def test_points_round_trip(tmp_path, fmt, name):
    path = tmp_path / name
    write_points(POINTS, path, format=fmt)
    np.testing.assert_array_equal(read_points(path), POINTS)


def test_csv_without_header_is_lps(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("1,2,3\n4,5,6\n")
    np.testing.assert_array_equal(read_points(path), [[1, 2, 3], [4, 5, 6]])


def test_slicer_markups_csv_ras_and_lps(tmp_path):
    ras = tmp_path / "ras.csv"
    ras.write_text("label,x,y,z,defined\nF-1,1.0,2.0,3.0,1\nF-2,-4.0,5.0,-6.0,1\n")
    np.testing.assert_array_equal(read_points(ras), [[-1, -2, 3], [4, -5, -6]])
    ras_explicit = tmp_path / "ras2.csv"
    ras_explicit.write_text("label,r,a,s\nF-1,1.0,2.0,3.0\n")
    np.testing.assert_array_equal(read_points(ras_explicit), [[-1, -2, 3]])
    lps = tmp_path / "lps.csv"
    lps.write_text("label,l,p,s,defined\nF-1,1.0,2.0,3.0,1\n")
    np.testing.assert_array_equal(read_points(lps), [[1, 2, 3]])
    np.testing.assert_array_equal(read_points(ras, frame="LPS"), [[1, 2, 3], [-4, 5, -6]])


def test_fcsv_ras_default_and_lps(tmp_path):
    header = "# Markups fiducial file version = 4.11\n# CoordinateSystem = {}\n" \
             "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n"
    row = "vtkMRMLMarkupsFiducialNode_0,1.5,-2,3,0,0,0,1,1,1,0,F-1,,\n"
    ras = tmp_path / "ras.fcsv"
    ras.write_text(header.format("0") + row)
    np.testing.assert_array_equal(read_points(ras), [[-1.5, 2, 3]])
    lps = tmp_path / "lps.fcsv"
    lps.write_text(header.format("LPS") + row)
    np.testing.assert_array_equal(read_points(lps), [[1.5, -2, 3]])


def test_markups_json_coordinate_system(tmp_path):
    def document(system):
        markup = {"type": "Fiducial", "controlPoints": [
            {"label": "a", "position": [1.0, 2.0, 3.0]}, {"label": "b", "position": [-1.0, 0.5, 7.0]}]}
        if system:
            markup["coordinateSystem"] = system
        return json.dumps({"markups": [markup]})

    lps = tmp_path / "a.mrk.json"
    lps.write_text(document("LPS"))
    np.testing.assert_array_equal(read_points(lps), [[1, 2, 3], [-1, 0.5, 7]])
    ras = tmp_path / "b.mrk.json"
    ras.write_text(document("RAS"))
    np.testing.assert_array_equal(read_points(ras), [[-1, -2, 3], [1, -0.5, 7]])
    default = tmp_path / "c.mrk.json"
    default.write_text(document(None))
    np.testing.assert_array_equal(read_points(default), read_points(ras))


@pytest.mark.parametrize("document, words", [
    ('{"markups": [5]}', "markup 1 is not a JSON object"),
    ('{"markups": [{"controlPoints": {"position": [1, 2, 3]}}]}', "is not a list"),
    ('{"markups": [{"controlPoints": 7}]}', "is not a list"),
    ('{"markups": [{"controlPoints": ["a"]}]}', "without a 3D 'position'"),
    ('{"markups": [{"controlPoints": [{"position": [1, "x", 3]}]}]}', "non-numeric"),
    ('{"markups": [{"controlPoints": [{"position": [1, true, 3]}]}]}', "non-numeric"),
    ('{"markups": [{"controlPoints": [{"position": [1, 1' + "0" * 400 + ', 3]}]}]}', "non-numeric"),
    ('[1, 2]', "no 'markups' list"),
    ('{"markups": [{"controlPoints": [{"position": [1, 2, 3]}', "not valid JSON"),
])
def test_malformed_markups_json_gives_one_line(tmp_path, document, words):
    path = tmp_path / "bad.mrk.json"
    path.write_text(document)
    with pytest.raises(InputError, match="bad.mrk.json") as caught:
        read_points(path)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_elastix_index_points_on_oblique_reference(tmp_path):
    reference = _oblique_reference()
    indices = np.array([[0.0, 0.0, 0.0], [2.5, 3.25, 1.0], [8.0, 7.0, 6.0]])
    path = tmp_path / "index.txt"
    path.write_text("index\n3\n" + "\n".join(" ".join(str(v) for v in row) for row in indices) + "\n")
    expected = [reference.TransformContinuousIndexToPhysicalPoint(tuple(row)) for row in indices]
    np.testing.assert_allclose(read_points(path, reference), expected, atol=1e-9)
    with pytest.raises(InputError, match="reference image is needed"):
        read_points(path)
    # written back as world points, they read the same
    out = tmp_path / "world.txt"
    write_points(read_points(path, reference), out)
    np.testing.assert_allclose(read_points(out), expected, atol=1e-9)


@pytest.mark.parametrize("text,words", [
    ("point\n3\n1 2 3\n4 5 6\n", "announces 3 points but holds 2"),
    ("point\n2\n1 2 3\n4 five 6\n", "non-numeric"),
    ("point\ntwo\n1 2 3\n", "not an integer"),
    ("point\n1\n1 2\n", "expected 3 coordinates"),
    ("x,y,z\n1,2,abc\n", "non-numeric"),
    ("1,2,3,4\n", "expected 3 columns"),
    ("name,value\na,1\n", "no x,y,z"),
])
def test_malformed_point_files(tmp_path, text, words):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(InputError, match=words):
        read_points(path)


def test_missing_point_file_and_bad_write(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_points(tmp_path / "none.txt")
    with pytest.raises(InputError, match=r"\(N, 3\)"):
        write_points(np.zeros((4, 2)), tmp_path / "out.txt")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- transforms


@pytest.mark.parametrize("name", ["t.tfm", "t.txt", "t.h5", "t.mat"])
def test_linear_round_trip(tmp_path, name):
    transform = _affine()
    write_transform(transform, tmp_path / name)
    read_back = read_transform(tmp_path / name)
    for point in [(0.0, 0.0, 0.0), (10.0, -5.0, 3.0), (-40.0, 22.0, 100.0)]:
        np.testing.assert_allclose(read_back.TransformPoint(point), transform.TransformPoint(point), atol=1e-6)


def test_euler_keeps_its_type(tmp_path):
    euler = sitk.Euler3DTransform((1.0, 2.0, 3.0), 0.1, -0.2, 0.3, (4.0, 5.0, 6.0))
    write_transform(euler, tmp_path / "rigid.tfm")
    read_back = read_transform(tmp_path / "rigid.tfm")
    assert read_back.GetName() == "Euler3DTransform"
    np.testing.assert_allclose(read_back.GetParameters(), euler.GetParameters(), atol=1e-12)


def test_flatten_composite_order(tmp_path):
    first = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.0, 0.0, np.pi / 2, (0.0, 0.0, 0.0))
    second = sitk.TranslationTransform(3, (10.0, 0.0, 0.0))
    composite = sitk.CompositeTransform([first, second])  # second (last added) acts first
    point = (1.0, 2.0, 3.0)
    manual = first.TransformPoint(second.TransformPoint(point))
    np.testing.assert_allclose(manual, (-2.0, 11.0, 3.0), atol=1e-12)
    flat = flatten_linear(composite)
    assert isinstance(flat, sitk.AffineTransform)
    np.testing.assert_allclose(flat.TransformPoint(point), manual, atol=1e-12)
    write_transform(composite, tmp_path / "composite.tfm")
    read_back = read_transform(tmp_path / "composite.tfm")
    assert read_back.GetName() == "AffineTransform"
    np.testing.assert_allclose(read_back.TransformPoint(point), manual, atol=1e-9)


def test_is_linear():
    field = sitk.DisplacementFieldTransform(sitk.Image([4, 4, 4], sitk.sitkVectorFloat64, 3))
    assert is_linear(_affine()) and is_linear(sitk.VersorRigid3DTransform()) and is_linear(sitk.Similarity3DTransform())
    assert not is_linear(field)
    assert not is_linear(sitk.BSplineTransform(3))
    assert not is_linear(sitk.CompositeTransform([_affine(), field]))
    assert is_linear(sitk.CompositeTransform([_affine(), sitk.TranslationTransform(3)]))
    with pytest.raises(InputError, match="not linear"):
        flatten_linear(sitk.BSplineTransform(3))


def _field_transform(reference: sitk.Image) -> sitk.DisplacementFieldTransform:
    array = np.zeros(tuple(reversed(reference.GetSize())) + (3,))
    z, y, x = np.indices(array.shape[:3])
    array[..., 0] = 0.5 * np.sin(x / 3.0)
    array[..., 1] = 0.2 * y
    array[..., 2] = -0.1 * z * x
    field = sitk.GetImageFromArray(array, isVector=True)
    field.CopyInformation(reference)
    return sitk.DisplacementFieldTransform(field)


@pytest.mark.parametrize("name", ["nonlinear.tfm", "nonlinear.txt", "nonlinear.mat"])
def test_nonlinear_to_linear_file_refused_and_file_kept(tmp_path, name):
    target = tmp_path / name
    write_transform(sitk.TranslationTransform(3, (1.0, 2.0, 3.0)), target)
    digest = _digest(target)
    composite = sitk.CompositeTransform([_affine(), _field_transform(_oblique_reference())])
    with pytest.raises(TransformFileError, match="non-linear .* use .h5"):
        write_transform(composite, target)
    assert _digest(target) == digest
    assert os.listdir(tmp_path) == [name]


def test_bad_transform_extension(tmp_path):
    with pytest.raises(TransformFileError, match="extension '.json'"):
        write_transform(_affine(), tmp_path / "t.json")
    assert os.listdir(tmp_path) == []


def test_nonlinear_h5_round_trip(tmp_path):
    reference = _oblique_reference()
    composite = sitk.CompositeTransform([_affine(), _field_transform(reference)])
    write_transform(composite, tmp_path / "both.h5")
    read_back = read_transform(tmp_path / "both.h5")
    # the field is stored to the nearest 2**-10 mm: a displacement moves by at most 2**-11 per
    # axis, which the affine (largest singular value < 1.2) stretches to < 0.0012 mm
    for point in _probe_points(reference):
        np.testing.assert_allclose(read_back.TransformPoint(point), composite.TransformPoint(point), atol=1.2e-3)
    write_transform(composite, tmp_path / "exact.h5", field_quantum=None)  # SimpleITK's float64 file
    exact = read_transform(tmp_path / "exact.h5")
    for point in _probe_points(reference):
        np.testing.assert_allclose(exact.TransformPoint(point), composite.TransformPoint(point), atol=1e-9)


def test_read_transform_errors(tmp_path):
    with pytest.raises(TransformFileError, match="does not exist"):
        read_transform(tmp_path / "missing.tfm")
    garbage = tmp_path / "garbage.tfm"
    garbage.write_text("hello world\n")
    with pytest.raises(TransformFileError, match="not a readable ITK transform"):
        read_transform(garbage)
    image = tmp_path / "scalar.nii.gz"
    sitk.WriteImage(sitk.Image([5, 5, 5], sitk.sitkFloat32), str(image))
    with pytest.raises(TransformFileError, match="1 component.* not a 3D displacement field"):
        read_transform(image)
    flat = tmp_path / "flat.tfm"
    sitk.WriteTransform(sitk.Euler2DTransform(), str(flat))
    with pytest.raises(TransformFileError, match="2D transform"):
        read_transform(flat)
    inverse = tmp_path / "inverse.tfm"
    inverse.write_text("#Insight Transform File V1.0\n#Transform 0\n"
                       "Transform: InverseBSplineTransform_double_3_3\nParameters: 0\nFixedParameters: 0\n")
    with pytest.raises(TransformFileError, match="Inverse.*SimpleITK cannot read it"):
        read_transform(inverse)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_displacement_field_write_and_read_as_transform(tmp_path, suffix):
    reference = _oblique_reference()
    affine = _affine()
    path = tmp_path / f"field{suffix}"
    write_displacement_field(affine, reference, path)
    assert sitk.ReadImage(str(path)).GetPixelID() == sitk.sitkVectorFloat32  # as ANTs and Greedy write them
    transform = read_transform(path)
    assert transform.GetName() == "DisplacementFieldTransform"
    for point in _probe_points(reference):  # exact at voxel centres
        np.testing.assert_allclose(transform.TransformPoint(point), affine.TransformPoint(point), atol=1e-5)
    assert os.listdir(tmp_path) == [path.name]


def test_displacement_field_convention_and_input_untouched(tmp_path):
    reference = _oblique_reference()
    affine = _affine()
    field = displacement_field(affine, reference)
    assert field.GetPixelID() == sitk.sitkVectorFloat64
    assert field.GetSize() == reference.GetSize()
    np.testing.assert_allclose(field.GetDirection(), reference.GetDirection())
    index = (3, 2, 5)
    point = np.array(reference.TransformIndexToPhysicalPoint(index))
    np.testing.assert_allclose(field[index], np.array(affine.TransformPoint(tuple(point))) - point, atol=1e-9)
    # writing a field image keeps the caller's image usable
    write_displacement_field(field, None, tmp_path / "f.mha")
    assert field.GetSize() == reference.GetSize()
    with pytest.raises(TransformFileError, match="extension '.tfm'"):
        write_displacement_field(field, None, tmp_path / "f.tfm")
    with pytest.raises(InputError, match="reference grid is needed"):
        write_displacement_field(affine, None, tmp_path / "g.mha")
    assert sorted(os.listdir(tmp_path)) == ["f.mha"]
