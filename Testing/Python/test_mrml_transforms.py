"""Tests of regsuite.mrml.transforms with the real MRML classes of slicer-core (no mocks).

Fixed and moving images are oblique and anisotropic, on different grids. Every check compares
Slicer's view of a stored result (node mapping, files written by Slicer's storage node, hardened or
resampled volumes, scenes reloaded from .mrml/.mrb) with SimpleITK's view of the same transform.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from optional_modules import require_module
from phantoms import make_grid, rotation, sample_phantom

slicer = require_module("slicer", "the MRML bridge tests need slicer-core")
vtk = require_module("vtk", "slicer-core brings vtk")

from regsuite.errors import InputError  # noqa: E402
from regsuite.mrml import sitk_to_volume, volume_to_sitk  # noqa: E402
from regsuite.mrml.transforms import (node_to_sitk_transform, plan_result, result_to_node,  # noqa: E402
                                      set_registration_roles, transform_points)

FLIP = np.array([-1.0, -1.0, 1.0])  # LPS <-> RAS on row vectors
KINDS = ["linear", "bspline", "composite", "field"]
NODE_CLASS = {"linear": "vtkMRMLLinearTransformNode", "bspline": "vtkMRMLBSplineTransformNode",
              "composite": "vtkMRMLTransformNode", "field": "vtkMRMLGridTransformNode"}
MM = 0.01  # point tolerance (mm)


# ----------------------------------------------------------------------------- synthetic data


def _fixed_grid() -> sitk.Image:
    return make_grid((28, 24, 20), (2.2, 2.0, 2.6), direction=rotation((0.15, -0.1, 0.25)))


def _moving_grid() -> sitk.Image:
    return make_grid((24, 30, 18), (2.6, 1.7, 3.0), direction=rotation((-0.2, 0.1, -0.15)))


def _image(grid: sitk.Image, seed: int) -> sitk.Image:
    return sitk.Cast(sample_phantom(grid, seed=seed) * 100.0 + 10.0, sitk.sitkFloat32)  # background 10: 0 = outside


def _affine() -> sitk.AffineTransform:
    matrix = rotation((0.08, -0.05, 0.1)) @ np.diag([1.04, 0.97, 1.02])
    return sitk.AffineTransform(matrix.ravel().tolist(), (2.5, -1.5, 3.0), (1.0, 2.0, -3.0))


def _bspline(fixed: sitk.Image, mesh: tuple[int, int, int] = (3, 3, 2)) -> sitk.BSplineTransform:
    transform = sitk.BSplineTransformInitializer(fixed, list(mesh), 3)
    rng = np.random.default_rng(1)
    transform.SetParameters(rng.normal(0.0, 1.5, transform.GetNumberOfParameters()).tolist())
    return transform


def _voxel_centres(image: sitk.Image) -> np.ndarray:
    """LPS centres of every voxel, numpy (k, j, i) order flattened."""
    size = image.GetSize()
    k, j, i = np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")
    index = np.stack([i, j, k], -1).reshape(-1, 3)
    axes = np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    return index @ axes.T + np.array(image.GetOrigin())


def _field(fixed: sitk.Image) -> sitk.DisplacementFieldTransform:
    """A smooth analytic displacement field (LPS mm) on the fixed grid."""
    x = _voxel_centres(fixed)
    d = np.stack([3.0 * np.sin(x[:, 1] / 15.0), 2.0 * np.cos(x[:, 0] / 12.0),
                  1.5 * np.sin((x[:, 0] + x[:, 2]) / 20.0)], -1)
    image = sitk.GetImageFromArray(d.reshape(tuple(fixed.GetSize()[::-1]) + (3,)), isVector=True)
    image.CopyInformation(fixed)
    return sitk.DisplacementFieldTransform(image)


def _result(kind: str, fixed: sitk.Image) -> sitk.Transform:
    """The engine-style result (fixed LPS -> moving LPS) of each kind."""
    if kind == "linear":
        return _affine()
    if kind == "bspline":
        return _bspline(fixed)
    if kind == "composite":
        return sitk.CompositeTransform([_affine(), _bspline(fixed)])
    return sitk.CompositeTransform([_affine(), _field(fixed)])  # a field after a linear stage


def _inside_points(fixed: sitk.Image, count: int = 300) -> np.ndarray:
    """Random LPS points inside the fixed image's voxel-centre box, plus its corner centres."""
    size = np.array(fixed.GetSize(), dtype=float)
    rng = np.random.default_rng(7)
    index = np.vstack([rng.uniform(0.0, 1.0, (count, 3)) * (size - 1),
                       [[a, b, c] for a in (0, size[0] - 1) for b in (0, size[1] - 1) for c in (0, size[2] - 1)]])
    return np.array([fixed.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in index])


def _sitk_map(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    return np.array([transform.TransformPoint(p.tolist()) for p in points])


def _vtk_map(vtk_transform: Any, points_lps: np.ndarray) -> np.ndarray:
    """A RAS VTK transform applied point by point (independent of the module's own helper)."""
    return np.array([vtk_transform.TransformPoint((p * FLIP).tolist()) for p in points_lps]) * FLIP


def _assert_same_mapping(got: np.ndarray, expected: np.ndarray) -> None:
    error = np.abs(got - expected).max()
    assert error < MM, f"max point difference {error:.4g} mm"


@pytest.fixture()
def case(mrml: Any) -> Any:
    """Fixed/moving images and volume nodes on different oblique, anisotropic grids."""
    fixed, moving = _image(_fixed_grid(), 0), _image(_moving_grid(), 0)
    return types.SimpleNamespace(scene=mrml.scene, fixed=fixed, moving=moving,
                                 fixed_node=sitk_to_volume(fixed, mrml.scene, "fixed"),
                                 moving_node=sitk_to_volume(moving, mrml.scene, "moving"))


def _snapshot(node: Any) -> tuple[Any, ...]:
    """What a volume node looks like: modification time, parent, geometry and voxels."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    geometry = [matrix.GetElement(i, j) for i in range(4) for j in range(4)]
    return (node.GetMTime(), node.GetTransformNodeID(), str(geometry),
            slicer.util.arrayFromVolume(node).tobytes())


# ----------------------------------------------------------------------------- (1) node mapping


@pytest.mark.parametrize("kind", KINDS)
def test_node_maps_points_like_sitk(case: Any, kind: str) -> None:
    transform = _result(kind, case.fixed)
    node = result_to_node(transform, case.scene, case.fixed)
    assert node.GetClassName() == NODE_CLASS[kind]
    assert node.GetName() == "Registration" and node.GetDisplayNode() is not None
    points = _inside_points(case.fixed)
    expected = _sitk_map(transform, points)
    _assert_same_mapping(_vtk_map(node.GetTransformFromParent(), points), expected)
    _assert_same_mapping(transform_points(node, points), expected)
    # the list of parts gives the same node content as the composite
    parts = [transform] if kind in ("linear", "bspline") else [transform.GetNthTransform(n) for n in range(2)]
    again = result_to_node(parts, case.scene, case.fixed, name="parts")
    assert again.GetClassName() == NODE_CLASS[kind] and again.GetName() == "parts"
    _assert_same_mapping(transform_points(again, points), expected)


# ----------------------------------------------------------------------------- (2) files


@pytest.mark.parametrize("kind", KINDS)
def test_storage_node_files_read_by_sitk(case: Any, kind: str, tmp_path: Path) -> None:
    transform = _result(kind, case.fixed)
    node = result_to_node(transform, case.scene, case.fixed)
    points = _inside_points(case.fixed)
    expected = _sitk_map(transform, points)
    for suffix in (".h5", ".tfm") if kind == "linear" else (".h5",):
        storage = node.CreateDefaultStorageNode()
        storage.SetFileName(str(tmp_path / f"{kind}{suffix}"))
        assert storage.WriteData(node) == 1
        read = sitk.ReadTransform(str(tmp_path / f"{kind}{suffix}"))  # an Inverse* type would raise here
        _assert_same_mapping(_sitk_map(read, points), expected)


# ----------------------------------------------------------------------------- (3) harden / resample


def _in_domain(image: sitk.Image, domain: sitk.Image) -> np.ndarray:
    """(k, j, i) mask of ``image`` voxels whose centres lie in ``domain``'s voxel-centre box."""
    index = [domain.TransformPhysicalPointToContinuousIndex(p.tolist()) for p in _voxel_centres(image)]
    index = np.array(index)
    inside = np.all((index >= 0) & (index <= np.array(domain.GetSize()) - 1), axis=1)
    return inside.reshape(tuple(image.GetSize()[::-1]))


def _assert_same_voxels(got: np.ndarray, expected: np.ndarray, mask: np.ndarray, moving: sitk.Image) -> None:
    values = sitk.GetArrayViewFromImage(moving)
    tolerance = 1e-4 * float(values.max() - values.min())
    compared = mask & (got != 0) & (expected != 0)  # 0 = outside the moving image in either resampler
    assert compared.sum() > 0.3 * mask.sum() > 0
    error = np.abs(got - expected)[compared].max()
    assert error < tolerance, f"max intensity difference {error:.4g} (tolerance {tolerance:.3g})"


@pytest.mark.parametrize("kind", KINDS)
def test_hardening_and_resampling_match_sitk_resample(case: Any, kind: str) -> None:
    transform = _result(kind, case.fixed)
    before = _snapshot(case.fixed_node), _snapshot(case.moving_node)
    node = result_to_node(transform, case.scene, case.fixed)
    set_registration_roles(node, case.fixed_node, case.moving_node)
    assert (_snapshot(case.fixed_node), _snapshot(case.moving_node)) == before  # inputs untouched

    expected = sitk.GetArrayFromImage(sitk.Resample(case.moving, case.fixed, transform, sitk.sitkLinear, 0.0))
    case.moving_node.SetAndObserveTransformNodeID(node.GetID())
    resampled = slicer.vtkSlicerVolumesLogic.ResampleVolumeToReferenceVolume(case.moving_node, case.fixed_node)
    got = slicer.util.arrayFromVolume(resampled)
    _assert_same_voxels(got, expected, np.ones(expected.shape, bool), case.moving)

    # Hardening a non-linear transform resamples the volume onto a new, larger grid (a linear one
    # only moves the grid), so compare on the hardened grid: its voxels must equal
    # sitk.Resample(moving, <hardened grid>, transform), where the transform is defined (inside
    # the fixed image; beyond it VTK and ITK extrapolate differently).
    hardened_node = sitk_to_volume(case.moving, case.scene, "hardened")
    hardened_node.SetAndObserveTransformNodeID(node.GetID())
    assert slicer.vtkSlicerTransformLogic.hardenTransform(hardened_node)
    assert hardened_node.GetParentTransformNode() is None
    hardened = volume_to_sitk(hardened_node)
    # A grid node interpolates cubically (as Slicer reads grid files) and ITK trilinearly: equal at
    # the fixed voxel centres (checked above), not between them, where the hardened grid's voxels
    # lie. There the node's own mapping (sampled at those voxels) is what hardening must apply.
    mapping = node_to_sitk_transform(node, hardened) if kind == "field" else transform
    expected = sitk.GetArrayFromImage(sitk.Resample(case.moving, hardened, mapping, sitk.sitkLinear, 0.0))
    mask = np.ones(expected.shape, bool) if kind == "linear" else _in_domain(hardened, case.fixed)
    _assert_same_voxels(sitk.GetArrayFromImage(hardened), expected, mask, case.moving)


# ----------------------------------------------------------------------------- (4) scenes


def _fresh_scene(cache: Path) -> tuple[Any, list[Any]]:
    """A new scene wired as Slicer does for reading: application logic, then the data I/O managers."""
    scene = slicer.vtkMRMLScene()
    application = slicer.vtkSlicerApplicationLogic()
    application.SetMRMLScene(scene)
    remote = slicer.vtkMRMLRemoteIOLogic()
    data = slicer.vtkDataIOManagerLogic()
    for logic in (remote, data):
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(application)
    cache.mkdir(exist_ok=True)
    remote.GetCacheManager().SetRemoteCacheDirectory(str(cache))
    data.SetAndObserveDataIOManager(remote.GetDataIOManager())
    remote.AddDataIOToScene()
    return scene, [application, remote, data]


def _check_reloaded(scene: Any, transform: sitk.Transform, kind: str, points: np.ndarray) -> None:
    node = scene.GetFirstNodeByName("Registration")
    moving = scene.GetFirstNodeByName("moving")
    assert node is not None and moving is not None and node.GetClassName() == NODE_CLASS[kind]
    assert moving.GetParentTransformNode() is node and moving.GetImageData() is not None
    assert node.GetNodeReference(node.GetFixedNodeReferenceRole()).GetName() == "fixed"
    assert node.GetNodeReference(node.GetMovingNodeReferenceRole()) is moving
    _assert_same_mapping(transform_points(node, points), _sitk_map(transform, points))


@pytest.mark.parametrize("kind", KINDS)
def test_scene_saved_as_mrml_and_mrb_reloads(case: Any, kind: str, tmp_path: Path) -> None:
    transform = _result(kind, case.fixed)
    node = result_to_node(transform, case.scene, case.fixed)
    set_registration_roles(node, case.fixed_node, case.moving_node)
    case.moving_node.SetAndObserveTransformNodeID(node.GetID())
    folder = tmp_path / "scene"
    folder.mkdir()
    case.scene.SetRootDirectory(str(folder))
    files = ((case.fixed_node, "fixed.nrrd"), (case.moving_node, "moving.nrrd"), (node, "Registration.h5"))
    for item, file_name in files:
        item.AddDefaultStorageNode()
        item.GetStorageNode().SetFileName(str(folder / file_name))
        assert item.GetStorageNode().WriteData(item) == 1
    case.scene.SetURL(str(folder / "scene.mrml"))
    assert case.scene.Commit() == 1
    assert case.scene.WriteToMRB(str(tmp_path / "scene.mrb"))
    points = _inside_points(case.fixed, 100)

    loaded, _keep = _fresh_scene(tmp_path / "cache")
    loaded.SetURL(str(folder / "scene.mrml"))
    assert loaded.Import()
    _check_reloaded(loaded, transform, kind, points)
    bundle, _keep_bundle = _fresh_scene(tmp_path / "cache")
    assert bundle.ReadFromMRB(str(tmp_path / "scene.mrb"))
    _check_reloaded(bundle, transform, kind, points)


def _curved_field(fixed: sitk.Image) -> sitk.DisplacementFieldTransform:
    """A field that bends within a few voxels, so that cubic and trilinear interpolation differ."""
    x = _voxel_centres(fixed)
    d = np.stack([2.0 * np.sin(x[:, 1] / 3.0), 1.5 * np.cos(x[:, 0] / 2.5), np.sin((x[:, 0] - x[:, 2]) / 3.5)], -1)
    image = sitk.GetImageFromArray(d.reshape(tuple(fixed.GetSize()[::-1]) + (3,)), isVector=True)
    image.CopyInformation(fixed)
    return sitk.DisplacementFieldTransform(image)


def test_grid_node_is_the_transform_slicer_reads_back(case: Any, tmp_path: Path) -> None:
    """Node before save == node after .mrb reload == the result's compact .h5 loaded into Slicer."""
    from regsuite.io.transforms import read_transform, write_transform

    write_transform(sitk.CompositeTransform([_affine(), _curved_field(case.fixed)]), tmp_path / "result.h5")
    result = read_transform(tmp_path / "result.h5")  # as the module loads a job's result
    node = result_to_node(result, case.scene, case.fixed)
    assert node.GetClassName() == "vtkMRMLGridTransformNode"
    points = _inside_points(case.fixed)  # between voxel centres
    before, itk = transform_points(node, points), _sitk_map(result, points)
    # ITK reads the file trilinearly, Slicer cubically: on this field they differ between voxel
    # centres (so the checks below tell the two apart) and agree at the centres
    assert np.abs(before - itk).max() > 0.05
    centres = _voxel_centres(case.fixed)[::5]
    np.testing.assert_allclose(transform_points(node, centres), _sitk_map(result, centres), atol=1e-6)

    loaded = case.scene.AddNewNodeByClass("vtkMRMLTransformNode", "loaded")
    storage = slicer.vtkMRMLTransformStorageNode()
    storage.SetFileName(str(tmp_path / "result.h5"))
    assert storage.ReadData(loaded) == 1
    # the node holds the composite sampled on the grid, Slicer the affine after the field: equal
    # because VTK's cubic interpolation reproduces affine functions (measured: < 5e-6 mm apart,
    # rounding of the two evaluation orders; 2e-5 mm leaves room for other CPUs)
    np.testing.assert_allclose(transform_points(loaded, points), before, atol=2e-5)

    node.AddDefaultStorageNode()
    node.GetStorageNode().SetFileName(str(tmp_path / "Registration.h5"))
    case.scene.SetRootDirectory(str(tmp_path))
    case.scene.SetURL(str(tmp_path / "scene.mrml"))
    assert case.scene.WriteToMRB(str(tmp_path / "scene.mrb"))
    bundle, _keep = _fresh_scene(tmp_path / "cache")
    assert bundle.ReadFromMRB(str(tmp_path / "scene.mrb"))
    reloaded = bundle.GetFirstNodeByName("Registration")
    np.testing.assert_allclose(transform_points(reloaded, points), before, atol=1e-6)


# ----------------------------------------------------------------------------- (5) node -> sitk


def test_node_to_sitk_transform_linear_is_exact(case: Any) -> None:
    affine = _affine()
    node = result_to_node(affine, case.scene, case.fixed)
    back = node_to_sitk_transform(node)
    assert back.GetName() == "AffineTransform"
    points = _inside_points(case.fixed, 50)
    np.testing.assert_allclose(_sitk_map(back, points), _sitk_map(affine, points), atol=1e-9)
    # under a linear parent the world -> node mapping applies the parent's from-parent first
    parent = case.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "parent")
    shift = vtk.vtkMatrix4x4()
    shift.SetElement(0, 3, 5.0)  # to parent: +5 mm R, so from parent: x_LPS + 5
    parent.SetMatrixTransformToParent(shift)
    node.SetAndObserveTransformNodeID(parent.GetID())
    shifted = points + np.array([5.0, 0.0, 0.0])
    np.testing.assert_allclose(_sitk_map(node_to_sitk_transform(node), points), _sitk_map(affine, shifted), atol=1e-9)
    np.testing.assert_allclose(transform_points(node, points), _sitk_map(affine, shifted), atol=1e-9)


@pytest.mark.parametrize("kind", ["bspline", "field"])
def test_node_to_sitk_transform_samples_nonlinear_nodes(case: Any, kind: str) -> None:
    transform = _result(kind, case.fixed)
    node = result_to_node(transform, case.scene, case.fixed)
    back = node_to_sitk_transform(node, case.fixed)
    assert back.GetName() == "DisplacementFieldTransform"
    centres = _voxel_centres(case.fixed)
    _assert_same_mapping(_sitk_map(back, centres), _sitk_map(transform, centres))
    # a field on the fixed grid is reproduced between voxel centres too: the (cubic) node equals
    # the field at the voxel centres, and ITK interpolates both fields' samples the same way
    if kind == "field":
        points = _inside_points(case.fixed)
        _assert_same_mapping(_sitk_map(back, points), _sitk_map(transform, points))


def test_node_to_sitk_transform_of_grid_stored_to_parent(case: Any) -> None:
    """A grid stored TO parent (e.g. a loaded inverse) is sampled through its from-parent inverse."""
    grid_source = result_to_node(_field(case.fixed), case.scene, case.fixed, name="source")
    grid = slicer.vtkOrientedGridTransform()
    grid.DeepCopy(grid_source.GetTransformFromParent())
    node = case.scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "to parent")
    node.SetAndObserveTransformToParent(grid)
    back = node_to_sitk_transform(node, case.fixed)
    centres = _voxel_centres(case.fixed)
    mapped = _sitk_map(back, centres)
    # to-parent(from-parent(x)) == x, checked where the inverse stays inside the grid
    inside = np.all(np.abs(mapped - centres) < 4.0, axis=1)
    to_parent = node.GetTransformToParent()
    _assert_same_mapping(_vtk_map(to_parent, mapped[inside][::7]), centres[inside][::7])


# ----------------------------------------------------------------------------- node choice and reuse


def test_grid_when_asked_or_when_not_exact(case: Any) -> None:
    bspline = _bspline(case.fixed)
    centres = _voxel_centres(case.fixed)
    forced = result_to_node(bspline, case.scene, case.fixed, force_grid=True)
    assert forced.GetClassName() == "vtkMRMLGridTransformNode"
    _assert_same_mapping(transform_points(forced, centres), _sitk_map(bspline, centres))
    # a non-linear initial transform before the linear and B-spline stages: one field on the fixed grid
    parts = [_field(case.fixed), _affine(), bspline]
    chained = result_to_node(parts, case.scene, case.fixed)
    assert chained.GetClassName() == "vtkMRMLGridTransformNode"
    _assert_same_mapping(transform_points(chained, centres), _sitk_map(sitk.CompositeTransform(parts), centres))
    # a B-spline over part of the fixed image: ITK is 0 outside its region, so a grid reproduces it
    half = sitk.RegionOfInterest(case.fixed, [14, 24, 20], [0, 0, 0])
    partial = _bspline(half, (2, 2, 2))
    node = result_to_node(partial, case.scene, case.fixed)
    assert node.GetClassName() == "vtkMRMLGridTransformNode"
    _assert_same_mapping(transform_points(node, centres), _sitk_map(partial, centres))
    # an identity linear stage before a B-spline adds nothing: a plain B-spline node
    plain = result_to_node([sitk.AffineTransform(3), bspline], case.scene, case.fixed)
    assert plain.GetClassName() == "vtkMRMLBSplineTransformNode"


def test_given_node_is_reused_and_others_are_untouched(case: Any, tmp_path: Path) -> None:
    first = result_to_node(_affine(), case.scene, case.fixed, name="mine")
    other = result_to_node(_affine(), case.scene, case.fixed, name="other")
    other_matrix = str(other.GetTransformFromParent().GetMatrix())
    identifier = first.GetID()
    again = result_to_node(sitk.TranslationTransform(3, (1.0, 2.0, 3.0)), case.scene, case.fixed, node=first, name="x")
    assert again is first and again.GetID() == identifier and again.GetName() == "mine"
    np.testing.assert_allclose(transform_points(again, [[0.0, 0.0, 0.0]]), [[1.0, 2.0, 3.0]], atol=1e-12)

    general = case.scene.AddNewNodeByClass("vtkMRMLTransformNode", "general")
    general.AddDefaultStorageNode()
    general.GetStorageNode().SetFileName(str(tmp_path / "general.tfm"))
    count = case.scene.GetNumberOfNodes()
    transform = _result("composite", case.fixed)
    assert result_to_node(transform, case.scene, case.fixed, node=general) is general
    assert general.GetStorageNode().GetFileName().endswith("general.h5")  # .tfm cannot hold it
    result_to_node(_affine(), case.scene, case.fixed, node=general)  # non-linear -> linear content
    assert general.IsLinear()
    result_to_node(transform, case.scene, case.fixed, node=general, force_grid=True)
    centres = _voxel_centres(case.fixed)  # a sampled B-spline is exact at the samples only
    _assert_same_mapping(transform_points(general, centres), _sitk_map(transform, centres))
    assert case.scene.GetNumberOfNodes() == count + 1  # only general's display node was added
    assert str(other.GetTransformFromParent().GetMatrix()) == other_matrix


# ----------------------------------------------------------------------------- (6) bad input


def test_bad_input_raises_one_line_input_errors(case: Any) -> None:
    linear_node = result_to_node(_affine(), case.scene, case.fixed, name="rigid")
    before = _snapshot(case.fixed_node), _snapshot(case.moving_node)
    linear_state = linear_node.GetMTime(), str(linear_node.GetTransformFromParent().GetMatrix())
    count = case.scene.GetNumberOfNodes()
    errors = []
    for call in (
        lambda: result_to_node(_bspline(case.fixed), case.scene, case.fixed, node=linear_node),
        lambda: node_to_sitk_transform(None),
        lambda: transform_points(None, [[0.0, 0.0, 0.0]]),
        lambda: node_to_sitk_transform(result_to_node(_bspline(case.fixed), case.scene, case.fixed, name="b")),
        lambda: node_to_sitk_transform(case.fixed_node),
        lambda: result_to_node(None, case.scene, case.fixed),
        lambda: result_to_node(sitk.Euler2DTransform(), case.scene, case.fixed),
        lambda: result_to_node(_affine(), case.scene, sitk.Image([4, 4], sitk.sitkFloat32)),
        lambda: result_to_node(_affine(), None, case.fixed),
        lambda: result_to_node(_affine(), case.scene, case.fixed, node=case.moving_node),
        lambda: transform_points(linear_node, np.zeros((3, 2))),
    ):
        with pytest.raises(InputError) as error:
            call()
        errors.append(str(error.value))
    assert all("\n" not in message for message in errors)
    assert "'rigid'" in errors[0] and "linear" in errors[0] and "pick" in errors[0]
    assert "no transform node" in errors[1]
    assert "reference" in errors[3]
    assert (_snapshot(case.fixed_node), _snapshot(case.moving_node)) == before
    assert (linear_node.GetMTime(), str(linear_node.GetTransformFromParent().GetMatrix())) == linear_state
    assert case.scene.GetNumberOfNodes() == count + 2  # only the B-spline node "b" and its display node


def test_registration_roles(case: Any) -> None:
    node = result_to_node(_affine(), case.scene, case.fixed)
    set_registration_roles(node, case.fixed_node, case.moving_node)
    assert node.GetNodeReference(node.GetFixedNodeReferenceRole()) is case.fixed_node
    assert node.GetNodeReference(node.GetMovingNodeReferenceRole()) is case.moving_node
    set_registration_roles(node, case.fixed_node, None)
    assert node.GetNodeReference(node.GetMovingNodeReferenceRole()) is None
    with pytest.raises(InputError, match="no transform node"):
        set_registration_roles(None, case.fixed_node, case.moving_node)



def test_planned_field_equals_itk_sampling_and_is_stored_as_planned(case: Any) -> None:
    """A field on the fixed grid after linear parts is composed with NumPy (fast path): the same
    vectors as ITK sampling the composite at every voxel centre; ``planned`` is stored as it is."""
    from vtkmodules.util import numpy_support

    from regsuite.io.transforms import displacement_field

    parts = [_affine(), _field(case.fixed)]
    kind, content = plan_result(parts, case.fixed)
    assert kind == "grid" and content.IsA("vtkOrientedGridTransform")
    got = numpy_support.vtk_to_numpy(content.GetDisplacementGrid().GetPointData().GetScalars())
    expected = sitk.GetArrayFromImage(displacement_field(sitk.CompositeTransform(parts), case.fixed)).reshape(-1, 3)
    assert np.abs(got - expected * FLIP).max() < 1e-9
    node = result_to_node(parts, case.scene, case.fixed, planned=(kind, content))
    assert node.IsA("vtkMRMLGridTransformNode") and node.GetTransformFromParent() is content
