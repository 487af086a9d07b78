"""Registration Quality module: Logic, result tables and slice-view display on real MRML nodes.

Fixed and moving volumes are small synthetic oblique, anisotropic grids that differ from each
other; transforms are analytic (scaling, translation, a folding displacement field), so the
expected answers are known: J = s^3 and a volume change of (s^3 - 1) * 100 % for a scaling by s,
J = 1, zero landmark error and Dice 1 for a translation, folding > 0 for the folding field.
"""

from __future__ import annotations

import ast
import math
import re
import subprocess
import sys
import types
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest

from optional_modules import require_module

require_module("slicer", "the Quality module tests need slicer-core")
import SimpleITK as sitk  # noqa: E402
import slicer  # noqa: E402
import vtk  # noqa: E402
from vtkmodules.util import numpy_support  # noqa: E402

from regsuite.errors import InputError  # noqa: E402
from regsuite.mrml.display import checkerboard_image, difference_image, show_checkerboard, show_fusion  # noqa: E402
from regsuite.mrml.tables import read_table, write_table  # noqa: E402
from regsuite.mrml.volumes import numpy_to_vtk_matrix  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "RegistrationSuite" / "RegSuiteQuality"
LUNG = ROOT.parent / "shared" / "data" / "lung_ct_pair"
LPS = np.array([-1.0, -1.0, 1.0])


# ----------------------------------------------------------------------------- synthetic scene


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    return (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
            @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))


def _homogeneous(matrix3: np.ndarray) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = matrix3
    return matrix


class Grid:
    """A volume geometry in RAS: size (i, j, k), spacing, direction columns, centred on ``centre``."""

    def __init__(self, size, spacing, angles, centre=(0.0, 0.0, 0.0)):
        self.size, self.spacing = np.array(size), np.array(spacing, dtype=float)
        self.direction = _rotation(*angles)
        self.origin = np.array(centre) - self.direction @ ((self.size - 1) * self.spacing / 2)

    def shifted(self, offset) -> "Grid":
        grid = Grid(self.size, self.spacing, (0, 0, 0))
        grid.direction, grid.origin = self.direction, self.origin + np.asarray(offset, dtype=float)
        return grid

    def points(self) -> np.ndarray:
        """RAS centres of all voxels, numpy (k, j, i, 3)."""
        k, j, i = np.meshgrid(*[np.arange(n) for n in self.size[::-1]], indexing="ij")
        return np.stack([i, j, k], -1) * self.spacing @ self.direction.T + self.origin

    def volume(self, scene, name, values, cls="vtkMRMLScalarVolumeNode"):
        node = scene.AddNewNodeByClass(cls, name)
        node.SetSpacing(*self.spacing)
        node.SetOrigin(*self.origin)
        node.SetIJKToRASDirectionMatrix(numpy_to_vtk_matrix(_homogeneous(self.direction)))
        slicer.util.updateVolumeFromArray(node, values)
        node.CreateDefaultDisplayNodes()
        return node


FIXED = Grid((30, 26, 14), (1.2, 1.0, 2.5), (0.2, -0.1, 0.15))
MOVING = Grid((34, 30, 12), (1.0, 1.1, 3.0), (-0.1, 0.12, -0.2), centre=(1.0, -1.0, 0.5))
SHIFT = np.array([3.0, -2.0, 2.5])  # RAS; translation from-parent: fixed x -> moving x + SHIFT
SPHERE = (np.array([-3.0, 2.0, 1.0]), 8.0)
BOX = (np.array([6.0, -4.0, -3.0]), np.array([5.0, 4.0, 6.0]))  # centre, half sizes


def _intensity(points: np.ndarray) -> np.ndarray:
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return (100 * np.exp(-((x + 3) ** 2 + (y - 2) ** 2 + (z - 1) ** 2) / 60)
            + 40 * np.sin(x / 4.0) * np.cos(y / 5.0) + 0.5 * z).astype(np.float32)


def _shapes(points: np.ndarray, offset=np.zeros(3)) -> dict[str, np.ndarray]:
    centre, radius = SPHERE
    box_centre, half = BOX
    return {"sphere": np.linalg.norm(points - centre - offset, axis=-1) <= radius,
            "box": np.all(np.abs(points - box_centre - offset) <= half, axis=-1)}


def _segmentation(scene, mrml, name, grid: Grid, masks: dict[str, np.ndarray]):
    reference = grid.volume(scene, f"{name} geometry", np.zeros(tuple(grid.size[::-1]), np.float32))
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    for segment, mask in masks.items():
        labels = grid.volume(scene, segment, mask.astype(np.uint8), "vtkMRMLLabelMapVolumeNode")
        assert mrml.logics["segmentations"].ImportLabelmapToSegmentationNode(labels, node)
        segmentation = node.GetSegmentation()
        segmentation.GetNthSegment(segmentation.GetNumberOfSegments() - 1).SetName(segment)
        scene.RemoveNode(labels)
    scene.RemoveNode(reference)
    return node


def _points(scene, name, ras: np.ndarray):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    for index, point in enumerate(ras):
        node.AddControlPoint(vtk.vtkVector3d(*point), f"{name}-{index + 1}")
    return node


def _linear(scene, name, matrix_from_parent: np.ndarray):
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    node.SetMatrixTransformFromParent(numpy_to_vtk_matrix(matrix_from_parent))
    return node


def _scaling(scale: float, centre=np.zeros(3)) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] *= scale
    matrix[:3, 3] = (1 - scale) * centre
    return matrix


def _translation(offset) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, 3] = offset
    return matrix


def _field(scene, name, grid: Grid, displacement):
    """A grid transform node whose from-parent mapping is x -> x + displacement(x) (RAS)."""
    values = displacement(grid.points())
    image = vtk.vtkImageData()
    image.SetDimensions(*[int(n) for n in grid.size])
    image.SetSpacing(*grid.spacing)
    image.SetOrigin(*grid.origin)
    array = numpy_support.numpy_to_vtk(values.reshape(-1, 3).copy(), deep=True, array_type=vtk.VTK_DOUBLE)
    array.SetNumberOfComponents(3)
    image.GetPointData().SetScalars(array)
    transform = slicer.vtkOrientedGridTransform()
    transform.SetDisplacementGridData(image)
    transform.SetGridDirectionMatrix(numpy_to_vtk_matrix(_homogeneous(grid.direction)))
    node = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", name)
    node.SetAndObserveTransformFromParent(transform)
    return node


@pytest.fixture()
def logic(mrml):
    from RegSuiteQualityLib import RegSuiteQualityLogic

    return RegSuiteQualityLogic()


@pytest.fixture()
def case(mrml):
    """Fixed/moving volumes, segmentations and point lists related by the translation SHIFT."""
    scene = mrml.scene
    fixed_points, moving_points = FIXED.points(), MOVING.points()
    landmarks = np.array([[-5.0, 3.0, 2.0], [4.0, -2.0, -6.0], [0.0, 6.0, 8.0], [8.0, 1.0, -1.0]])
    return dict(
        scene=scene,
        fixed=FIXED.volume(scene, "fixed", _intensity(fixed_points)),
        moving=MOVING.volume(scene, "moving", _intensity(moving_points - SHIFT)),
        fixedSeg=_segmentation(scene, mrml, "fixed seg", FIXED, _shapes(fixed_points)),
        # on the fixed lattice moved by SHIFT: the translation maps it onto the fixed segments exactly
        movingSegExact=_segmentation(scene, mrml, "moving seg exact", FIXED.shifted(SHIFT),
                                     {**_shapes(fixed_points), "extra": _shapes(fixed_points)["box"]}),
        movingSeg=_segmentation(scene, mrml, "moving seg", MOVING, _shapes(moving_points, SHIFT)),
        fixedPoints=_points(scene, "F", landmarks),
        movingPoints=_points(scene, "M", landmarks + SHIFT),
        shift=_linear(scene, "shift", _translation(SHIFT)),
    )


def _state(node) -> tuple:
    """What an input node looks like: its modification time and, for volumes, its voxels."""
    voxels = slicer.util.arrayFromVolume(node).copy() if node.IsA("vtkMRMLVolumeNode") else None
    return node.GetMTime(), node.GetParentTransformNode(), voxels


def _assert_untouched(before: dict, nodes: dict) -> None:
    for key, node in nodes.items():
        mtime, parent, voxels = _state(node)
        assert (mtime, parent) == before[key][:2], f"input {key} was modified"
        if voxels is not None:
            assert np.array_equal(voxels, before[key][2]), f"voxels of input {key} changed"


# ----------------------------------------------------------------------------- tables


def test_table_rows_round_trip_with_typed_columns(mrml):
    rows = [{"segment": "liver", "dice": 0.9, "voxels": 12}, {"segment": "spleen", "dice": None, "note": 3}]
    table = write_table(mrml.scene, rows, "Overlap", units={"dice": "ratio"})
    data = table.GetTable()
    assert [data.GetColumn(i).GetClassName() for i in range(data.GetNumberOfColumns())] == \
        ["vtkStringArray", "vtkDoubleArray", "vtkDoubleArray", "vtkDoubleArray"]
    back = read_table(table)
    assert back[0] == {"segment": "liver", "dice": 0.9, "voxels": 12.0, "note": back[0]["note"]}
    assert math.isnan(back[0]["note"]) and math.isnan(back[1]["dice"]) and back[1]["note"] == 3.0
    assert table.GetColumnUnitLabel("dice") == "ratio"
    again = write_table(mrml.scene, [{"a": "x"}], "ignored", table)
    assert again is table and read_table(table) == [{"a": "x"}] and table.GetName() == "Overlap"
    with pytest.raises(InputError, match="not a table"):
        write_table(mrml.scene, rows, "bad", mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode"))


# ----------------------------------------------------------------------------- Jacobian and volume change


@pytest.mark.parametrize("kind", ["linear", "grid"])
def test_scaling_gives_cubed_jacobian_and_volume_change(mrml, logic, case, kind):
    scale, scene = 1.1, mrml.scene
    matrix = _scaling(scale, np.array([1.0, -2.0, 0.5]))
    if kind == "linear":
        transform = _linear(scene, "scale", matrix)
    else:  # the same affine mapping as a displacement field on a grid unlike the fixed one
        field_grid = Grid((20, 20, 16), (3.0, 3.0, 3.5), (0.05, 0.1, -0.3))
        transform = _field(scene, "scale field", field_grid,
                           lambda p: p @ matrix[:3, :3].T + matrix[:3, 3] - p)
    inputs = {"transform": transform, "fixed": case["fixed"], "seg": case["fixedSeg"]}
    before = {key: _state(node) for key, node in inputs.items()}

    volume, stats = logic.jacobian(transform, case["fixed"], segmentation=case["fixedSeg"])
    values = slicer.util.arrayFromVolume(volume)
    assert values.shape == tuple(FIXED.size[::-1])
    assert np.allclose(values, scale ** 3, atol=2e-3)
    assert stats["mean"] == pytest.approx(scale ** 3, abs=2e-3) and stats["folding_percent"] == 0.0
    assert stats["region"] == "inside 'fixed seg'" and stats["voxels"] < values.size
    display = volume.GetDisplayNode()
    assert display.GetColorNode().GetName() == "RegSuite Jacobian"
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx((-1.0, 3.0))
    again, _ = logic.jacobian(transform, case["fixed"], outputVolume=volume)
    assert again is volume

    sphere = case["fixedSeg"].GetSegmentation().GetSegmentIdBySegmentName("sphere")
    change = logic.volumeChange(transform, case["fixedSeg"], sphere, case["fixed"])
    radius = SPHERE[1]
    assert change["fixed_volume_ml"] == pytest.approx(4 / 3 * math.pi * radius ** 3 / 1000, rel=0.08)
    assert change["change_percent"] == pytest.approx((scale ** 3 - 1) * 100, abs=0.3)
    assert change["moving_volume_ml"] == pytest.approx(change["fixed_volume_ml"] * scale ** 3, rel=3e-3)
    rows = read_table(change["table"])
    assert rows == [{key: change[key] for key in ("segment", "fixed_volume_ml", "moving_volume_ml",
                                                  "change_ml", "change_percent")}]
    by_name = logic.volumeChange(transform, case["fixedSeg"], "sphere", case["fixed"], table=change["table"])
    assert by_name["table"] is change["table"] and by_name["segmentId"] == sphere
    _assert_untouched(before, inputs)


def test_folding_field_is_reported_and_coloured(mrml, logic, case):
    # x -> x + (a sin(w x), 0, 0) with a w = 2: J = 1 + 2 cos(w x) <= 0 on a third of each period
    amplitude, wavelength = 2.5, 2 * math.pi * 2.5 / 2.0
    transform = _field(mrml.scene, "fold", Grid((40, 36, 30), (1.5, 1.5, 1.5), (0, 0, 0)),
                       lambda p: np.stack([amplitude * np.sin(2 * math.pi * p[..., 0] / wavelength),
                                           np.zeros(p.shape[:-1]), np.zeros(p.shape[:-1])], -1))
    volume, stats = logic.jacobian(transform, case["fixed"])
    assert stats["region"] == "whole reference grid"
    assert 20.0 < stats["folding_percent"] < 45.0 and stats["min"] < -0.5 and stats["max"] > 2.5
    table = volume.GetDisplayNode().GetColorNode()
    low, high = -1.0, 3.0

    def colour(j):
        rgba = [0.0] * 4
        table.GetColor(int((j - low) / (high - low) * table.GetNumberOfColors()), rgba)
        return np.array(rgba[:3])

    assert colour(-0.5)[1] > 0.6 > colour(-0.5)[0]  # folding: green
    assert colour(0.5)[2] > colour(0.5)[0]  # contraction: blue
    assert np.all(colour(1.0) > 0.95)  # no change: white
    assert colour(2.5)[0] > 0.5 > colour(2.5)[2]  # expansion: red


# ----------------------------------------------------------------------------- translation: J, landmarks, overlap


def test_translation_gives_unit_jacobian_zero_landmark_error_and_full_overlap(mrml, logic, case):
    shift = case["shift"]
    inputs = {key: case[key] for key in ("fixed", "fixedSeg", "movingSeg", "movingSegExact", "fixedPoints",
                                         "movingPoints", "shift")}
    before = {key: _state(node) for key, node in inputs.items()}
    _, stats = logic.jacobian(shift, case["fixed"])
    assert stats["mean"] == pytest.approx(1.0) and stats["folding_percent"] == 0.0

    table = logic.landmarkError(shift, case["fixedPoints"], case["movingPoints"])
    rows = read_table(table)
    assert [row["point"] for row in rows] == ["F-1", "F-2", "F-3", "F-4", "mean", "max"]
    assert list(rows[0]) == ["point", "error_before_mm", "error_after_mm"]
    assert all(row["error_before_mm"] == pytest.approx(np.linalg.norm(SHIFT)) for row in rows)
    assert all(row["error_after_mm"] == pytest.approx(0.0, abs=1e-9) for row in rows)

    exact = read_table(logic.segmentOverlap(shift, case["fixedSeg"], case["movingSegExact"], case["fixed"]))
    assert [row["segment"] for row in exact] == ["sphere", "box", "mean"]  # 'extra' has no fixed match
    assert list(exact[0]) == ["segment", "dice_before", "hd95_before_mm", "dice_after", "hd95_after_mm"]
    for row in exact:
        assert row["dice_after"] == pytest.approx(1.0) and row["hd95_after_mm"] == pytest.approx(0.0)
        assert row["dice_before"] < 0.8 and row["hd95_before_mm"] > 2.0
    other_grid = read_table(logic.segmentOverlap(shift, case["fixedSeg"], case["movingSeg"], case["fixed"]))
    assert all(row["dice_after"] > 0.9 and row["hd95_after_mm"] <= 2.6 for row in other_grid)
    assert other_grid[-1]["dice_after"] > other_grid[-1]["dice_before"] + 0.15
    _assert_untouched(before, inputs)


def test_moving_nodes_under_the_registration_transform_are_read_locally(mrml, logic, case):
    shift = case["shift"]
    for key in ("movingSeg", "movingPoints"):
        case[key].SetAndObserveTransformNodeID(shift.GetID())  # how a user views them aligned
    rows = read_table(logic.landmarkError(shift, case["fixedPoints"], case["movingPoints"]))
    assert rows[-1]["error_after_mm"] == pytest.approx(0.0, abs=1e-9)
    overlap = read_table(logic.segmentOverlap(shift, case["fixedSeg"], case["movingSeg"], case["fixed"]))
    assert overlap[-1]["dice_after"] > 0.9


# ----------------------------------------------------------------------------- images and display


def test_checkerboard_difference_and_slice_views(mrml, logic, case):
    scene, shift = mrml.scene, case["shift"]
    composites = []
    for name in ("Red", "Yellow", "Green"):
        composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
        composite.SetLayoutName(name)
        composites.append(composite)
    fixed_values = slicer.util.arrayFromVolume(case["fixed"])
    board = logic.checkerboard(shift, case["fixed"], case["moving"], squares=4)
    board_values = slicer.util.arrayFromVolume(board)
    assert board_values.shape == fixed_values.shape
    from_fixed = np.isclose(board_values, fixed_values)
    assert 0.2 < from_fixed.mean() < 0.9  # about half the boxes show the fixed image
    difference = logic.difference(shift, case["fixed"], case["moving"])
    inner = (slice(3, -3), slice(4, -4), slice(4, -4))
    after = np.abs(slicer.util.arrayFromVolume(difference))[inner]
    identity = _linear(scene, "identity", np.eye(4))
    before = np.abs(slicer.util.arrayFromVolume(logic.difference(identity, case["fixed"], case["moving"])))[inner]
    assert after.mean() < 0.1 * before.mean()
    assert difference.GetDisplayNode().GetColorNode().GetName() == "RegSuite Difference"
    assert difference.GetDisplayNode().GetWindowLevelMin() == pytest.approx(-difference.GetDisplayNode()
                                                                            .GetWindowLevelMax())

    assert show_fusion(scene, case["fixed"], difference, opacity=0.3, colormap="Iron") == composites
    for composite in composites:
        assert composite.GetBackgroundVolumeID() == case["fixed"].GetID()
        assert composite.GetForegroundVolumeID() == difference.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.3) and composite.GetLinkedControl()
    assert difference.GetDisplayNode().GetColorNode().GetName() == "Iron"
    show_checkerboard(scene, board, link=False)
    assert all(c.GetBackgroundVolumeID() == board.GetID() and c.GetForegroundVolumeID() is None
               and not c.GetLinkedControl() for c in composites)
    with pytest.raises(InputError, match="colour map 'NoSuchMap' is not in the scene"):
        show_fusion(scene, case["fixed"], board, colormap="NoSuchMap")
    with pytest.raises(InputError, match="not a volume"):
        show_fusion(scene, case["fixedSeg"], board)


def test_image_helpers_need_one_grid():
    a = sitk.Image([6, 4, 2], sitk.sitkInt16) + 1
    b = sitk.Image([6, 4, 2], sitk.sitkFloat32) + 5.0
    board = sitk.GetArrayFromImage(checkerboard_image(a, b, squares=2))
    assert set(np.unique(board)) == {1.0, 5.0} and board[0, 0, 0] != board[0, 0, 5]
    assert np.all(sitk.GetArrayFromImage(difference_image(a, b)) == -4.0)
    b.SetOrigin((1.0, 0.0, 0.0))
    with pytest.raises(InputError, match="share one grid"):
        difference_image(a, b)


# ----------------------------------------------------------------------------- process


def test_process_runs_what_the_inputs_allow_and_reuses_outputs(mrml, logic, case):
    scene, calls = mrml.scene, []
    arguments = dict(transformNode=case["shift"], fixedVolume=case["fixed"], movingVolume=case["moving"],
                     fixedSegmentation=case["fixedSeg"], movingSegmentation=case["movingSeg"],
                     fixedPoints=case["fixedPoints"], movingPoints=case["movingPoints"], segmentId="box")
    results = logic.process(**arguments, squares=6, progress=lambda f, m: calls.append((f, m)))
    assert list(results) == ["jacobian", "overlap", "landmarks", "checkerboard", "difference", "volumeChange"]
    assert [f for f, _ in calls] == sorted(f for f, _ in calls) and calls[-1] == (1.0, "Done") and len(calls) == 7
    assert results["volumeChange"]["change_percent"] == pytest.approx(0.0, abs=1e-6)
    assert results["landmarks"]["rows"][-2]["error_after_mm"] == pytest.approx(0.0, abs=1e-9)
    text = logic.summary(results)
    assert len(text.splitlines()) == 6 and "Landmark error (4 points)" in text and "folding 0.00 %" in text
    assert logic.showResults(results, case["fixed"]) is results["checkerboard"]["node"]

    count = scene.GetNumberOfNodes()
    again = logic.process(**arguments, outputs=logic.outputNodes(results))
    assert logic.outputNodes(again) == logic.outputNodes(results) and scene.GetNumberOfNodes() == count
    only = logic.process(case["shift"], fixedPoints=case["fixedPoints"], movingPoints=case["movingPoints"])
    assert list(only) == ["landmarks"]
    jacobian = logic.process(case["shift"], case["fixed"], measures=["jacobian"])
    assert logic.showResults(jacobian, case["fixed"], 0.4) is jacobian["jacobian"]["node"]


# ----------------------------------------------------------------------------- bad input


def _bad_inputs(mrml, logic, case):
    scene, shift, fixed = mrml.scene, case["shift"], case["fixed"]
    vector = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    slicer.util.updateVolumeFromArray(vector, np.zeros((4, 5, 6, 3), np.float32))
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    renamed = _segmentation(scene, mrml, "renamed", FIXED, {"liver": _shapes(FIXED.points())["box"]})
    away = np.array([500.0, 0.0, 0.0])
    far = _segmentation(scene, mrml, "far", MOVING.shifted(away), _shapes(MOVING.points() + away, away))
    three = _points(scene, "three", np.zeros((3, 3)))
    nothing = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "nothing")
    return [
        (lambda: logic.jacobian(None, fixed), "no transform is selected"),
        (lambda: logic.jacobian(fixed, fixed), "transform 'fixed' is a vtkMRMLScalarVolumeNode, not a transform"),
        (lambda: logic.jacobian(shift, None), "no reference volume is selected"),
        (lambda: logic.jacobian(shift, vector), "3 components per voxel"),
        (lambda: logic.jacobian(shift, case["fixedSeg"]), "is a vtkMRMLSegmentationNode, not a volume"),
        (lambda: logic.jacobian(shift, fixed, outputVolume=fixed), "is also an input"),
        (lambda: logic.segmentOverlap(shift, empty, case["movingSeg"], fixed), "'empty' has no segments"),
        (lambda: logic.segmentOverlap(shift, renamed, case["movingSeg"], fixed), "segment names do not match"),
        (lambda: logic.segmentOverlap(shift, case["fixedSeg"], far, fixed), "does not overlap reference volume"),
        (lambda: logic.segmentOverlap(shift, far, case["movingSeg"], fixed), "does not overlap volume 'fixed'"),
        (lambda: logic.landmarkError(shift, case["fixedPoints"], three), "has 4 points and moving point list"),
        (lambda: logic.landmarkError(shift, nothing, three), "'nothing' has no points"),
        (lambda: logic.landmarkError(shift, fixed, three), "not a markups point list"),
        (lambda: logic.volumeChange(shift, case["fixedSeg"], "lung", fixed), "has no segment 'lung'"),
        (lambda: logic.checkerboard(shift, fixed, case["moving"], squares=0), "at least 1"),
        (lambda: logic.difference(shift, fixed, vector), "3 components per voxel"),
        (lambda: logic.process(shift), "nothing to compute"),
        (lambda: logic.process(shift, fixed, measures=["landmarks"]),
         "landmark error needs a fixed point list and a moving point list"),
        (lambda: logic.process(shift, fixed, outputs={"volume": fixed}), "unknown output"),
    ]


def test_bad_inputs_raise_one_line_input_errors(mrml, logic, case):
    for call, message in _bad_inputs(mrml, logic, case):
        with pytest.raises(InputError) as error:
            call()
        assert message in str(error.value) and "\n" not in str(error.value), str(error.value)


# ----------------------------------------------------------------------------- the Slicer module files


def test_module_file_is_light_and_declares_the_module(mrml):
    code = ("import sys, slicer_standin; s, l = slicer_standin.make_scene(); slicer_standin.install(l)\n"
            "import RegSuiteQuality\n"
            "print(sorted(m for m in ('torch', 'SimpleITK', 'regsuite.engine', 'regsuite.evaluation') "
            "if m in sys.modules))")
    env_path = [str(Path(__file__).parent), str(MODULE), str(ROOT / "RegistrationSuite")] + sys.path
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": ":".join(p for p in env_path if p), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"

    import RegSuiteQuality
    from RegSuiteQualityLib import RegSuiteQualityLogic

    module = RegSuiteQuality.RegSuiteQuality(types.SimpleNamespace())  # Slicer passes the qSlicer module object
    assert module.parent.title == "Registration Quality"
    assert module.parent.categories == ["Registration.RegistrationSuite"]
    assert module.parent.helpText and module.parent.acknowledgementText
    assert RegSuiteQuality.RegSuiteQualityLogic is RegSuiteQualityLogic


def test_module_self_test_passes_on_the_core_scene(mrml):
    import unittest

    import RegSuiteQuality

    case = type("SelfTest", (RegSuiteQuality.RegSuiteQualityTest, unittest.TestCase),
                {"delayDisplay": lambda self, message: None})("runTest")
    case.runTest()
    assert mrml.scene.GetFirstNodeByName("scale") is not None


def test_panel_cmake_and_icon_are_consistent():
    source = (MODULE / "RegSuiteQuality.py").read_text()
    ast.parse(source)
    ui = ElementTree.parse(MODULE / "Resources" / "UI" / "RegSuiteQuality.ui").getroot()
    widgets = {w.get("name"): w for w in ui.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", source)) | set(re.findall(r'"(\w+(?:Selector|Button))"', source))
    assert used and used <= set(widgets), used - set(widgets)
    for name, widget in widgets.items():
        if widget.get("class") == "qMRMLNodeComboBox":
            types = [s.text for p in widget.findall("property") if p.get("name") == "nodeTypes" for s in p.iter("string")]
            assert types and all(t.startswith("vtkMRML") for t in types), name
    buttons = {w.findtext("property[@name='text']/string") for w in widgets.values() if w.get("class") == "QPushButton"}
    assert {"Compute Jacobian", "Compute overlap", "Compute landmark error", "Checkerboard", "Difference",
            "Volume change", "Compute all"} <= buttons

    cmake = (MODULE / "CMakeLists.txt").read_text()
    listed = set(re.findall(r"^\s+([\w/${}]+\.(?:py|ui|png))\s*$", cmake, re.M))
    listed = {item.replace("${MODULE_NAME}", "RegSuiteQuality") for item in listed}
    files = {str(p.relative_to(MODULE)) for p in MODULE.rglob("*") if p.suffix in (".py", ".ui", ".png")
             and "__pycache__" not in p.parts}
    assert listed == files
    assert "WITH_GENERIC_TESTS" in cmake and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in cmake

    from PIL import Image

    with Image.open(MODULE / "Resources" / "Icons" / "RegSuiteQuality.png") as icon:
        assert icon.format == "PNG" and icon.size == (128, 128)


# ----------------------------------------------------------------------------- real data


@pytest.mark.shared_data
@pytest.mark.skipif(not LUNG.is_dir(), reason="shared data (../shared/data/lung_ct_pair) is absent")
def test_lung_ct_landmark_error_matches_evaluation(mrml, logic):
    from regsuite.evaluation.landmarks import landmark_errors
    from regsuite.io.points import read_points
    from regsuite.mrml.volumes import sitk_to_volume

    scene = mrml.scene
    fixed_lps = read_points(LUNG / "landmarks51_baseline_fixed.txt")
    moving_lps = read_points(LUNG / "landmarks51_followup_moving.txt")
    fixed = sitk_to_volume(sitk.Shrink(sitk.ReadImage(str(LUNG / "3DCT_lung_baseline.mha")), [4, 4, 2]),
                           scene, "baseline")
    moving = sitk_to_volume(sitk.Shrink(sitk.ReadImage(str(LUNG / "3DCT_lung_followup.mha")), [4, 4, 2]),
                            scene, "followup")
    identity = _linear(scene, "identity", np.eye(4))
    results = logic.process(identity, fixed, moving, fixedPoints=_points(scene, "F", fixed_lps * LPS),
                            movingPoints=_points(scene, "M", moving_lps * LPS))
    assert list(results) == ["jacobian", "landmarks", "checkerboard", "difference"]
    rows = results["landmarks"]["rows"]
    expected = landmark_errors(fixed_lps, moving_lps, None)
    assert len(rows) == len(expected) + 2
    assert np.allclose([row["error_after_mm"] for row in rows[:-2]], expected, atol=1e-6)
    assert np.allclose([row["error_before_mm"] for row in rows[:-2]], expected, atol=1e-6)
    assert rows[-2]["error_after_mm"] == pytest.approx(expected.mean()) and 25 < expected.mean() < 45
    assert rows[-1]["error_after_mm"] == pytest.approx(expected.max())
    assert results["jacobian"]["stats"]["mean"] == pytest.approx(1.0)
