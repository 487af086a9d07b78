"""The Registration Quality panel (``RegSuiteQualityWidget``) run as a user runs it.

The module file is imported over :mod:`qt_shim` (PythonQt's ``qt``/``ctk`` over PySide6,
offscreen) on a real slicer-core scene; the nodes are picked in the panel's node combo boxes and
its buttons clicked. The transform is a scaling by S about the origin (from parent: fixed point
x -> moving point S x), so the answers are known: J = S^3 everywhere, a volume change of
(S^3 - 1) * 100 %, zero landmark error after, and Dice near 1 after for a sphere scaled by S.
"""

from __future__ import annotations

import logging
import os
import types

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from optional_modules import require_module  # noqa: E402

require_module("PySide6.QtWidgets", "the Quality panel runs on PySide6 and slicer-core")
require_module("slicer", "the Quality panel runs on PySide6 and slicer-core")

import SimpleITK as sitk  # noqa: E402
import slicer  # noqa: E402
import vtk  # noqa: E402

import qt_shim  # noqa: E402
from phantoms import make_grid, sample_phantom  # noqa: E402

from regsuite.errors import InputError  # noqa: E402
from regsuite.mrml import sitk_to_volume  # noqa: E402
from regsuite.mrml.tables import read_table  # noqa: E402

S = 1.1
CENTRE, RADIUS = np.array([4.0, -3.0, 2.0]), 12.0  # fixed sphere (mm, LPS)
LANDMARKS = np.array([[-10.0, 5.0, 3.0], [8.0, -6.0, -4.0], [0.0, 12.0, 9.0], [14.0, 2.0, -2.0]])  # RAS


def _sphere_segmentation(mrml, grid, name, centre, radius):
    """A segmentation node with one segment ``name``: the ball (LPS centre, radius) on ``grid``."""
    size = grid.GetSize()
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), -1).reshape(-1, 3)
    points = index * np.array(grid.GetSpacing()) + np.array(grid.GetOrigin())  # axis-aligned grid
    inside = (np.linalg.norm(points - centre, axis=1) <= radius).reshape(size).transpose(2, 1, 0)
    mask = sitk.GetImageFromArray(inside.astype(np.uint8))
    mask.CopyInformation(grid)
    labels = sitk_to_volume(mask, mrml.scene, name, labelmap=True)
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{name} segmentation")
    assert mrml.logics["segmentations"].ImportLabelmapToSegmentationNode(labels, node)
    segmentation = node.GetSegmentation()
    segmentation.GetNthSegment(0).SetName(name)
    mrml.scene.RemoveNode(labels)
    return node


def _points(scene, name, ras):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    for point in ras:
        node.AddControlPoint(vtk.vtkVector3d(*point))
    return node


@pytest.fixture()
def case(mrml):
    """Fixed/moving phantoms, a scaling transform, point lists and sphere segmentations; slice views."""
    scene = mrml.scene
    grid = make_grid(size=(30, 28, 24), spacing=(2.0, 2.0, 2.0))
    matrix = np.diag([S, S, S, 1.0])
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "scale")
    transform.SetMatrixTransformFromParent(slicer.util.vtkMatrixFromArray(matrix))
    return types.SimpleNamespace(
        scene=scene, transform=transform,
        fixed=sitk_to_volume(sample_phantom(grid), scene, "fixed"),
        moving=sitk_to_volume(sample_phantom(grid, world_map=lambda p: p / S), scene, "moving"),
        fixedPoints=_points(scene, "F", LANDMARKS), movingPoints=_points(scene, "M", S * LANDMARKS),
        fixedSeg=_sphere_segmentation(mrml, grid, "ball", CENTRE, RADIUS),
        movingSeg=_sphere_segmentation(mrml, grid, "ball", S * CENTRE, S * RADIUS),
        composites=qt_shim.add_slice_views(scene))


@pytest.fixture()
def widget(case, monkeypatch, tmp_path):
    qt_shim.install(monkeypatch, tmp_path / "Slicer")
    panel = qt_shim.open_module("RegSuiteQuality", monkeypatch)
    yield panel
    qt_shim.close_module(panel)
    assert qt_shim.take_slot_errors() == [], "a slot raised (PythonQt would only print it)"


def _data_nodes(scene, ids):
    """Classes of the nodes ``ids`` that hold data (not their display, storage or colour nodes)."""
    nodes = [scene.GetNodeByID(nodeID) for nodeID in ids]
    return sorted(node.GetClassName() for node in nodes
                  if node.IsA("vtkMRMLVolumeNode") or node.IsA("vtkMRMLTableNode"))


def _node_ids(scene):
    return [scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())]


def test_buttons_make_their_nodes_tables_and_summary(widget, case):
    ui, scene = widget.ui, case.scene
    ui.transformSelector.setCurrentNode(case.transform)
    ui.fixedVolumeSelector.setCurrentNode(case.fixed)
    ui.movingVolumeSelector.setCurrentNode(case.moving)
    assert ui.jacobianVolumeSelector.currentNode() is None  # "Create new volume"
    ui.opacitySliderWidget.value = 0.3

    ui.jacobianButton.click()
    jacobian = ui.jacobianVolumeSelector.currentNode()
    assert jacobian is not None and jacobian.IsA("vtkMRMLScalarVolumeNode")
    # J = S^3 = 1.331 exactly for a scaling; float32 voxels
    assert np.allclose(slicer.util.arrayFromVolume(jacobian), S ** 3, atol=1e-4)
    assert ui.resultsLabel.text.startswith("Jacobian (whole reference grid): mean 1.331, min 1.331, max 1.331")
    for composite in case.composites:
        assert (composite.GetBackgroundVolumeID(), composite.GetForegroundVolumeID()) == (case.fixed.GetID(),
                                                                                          jacobian.GetID())
        assert composite.GetForegroundOpacity() == pytest.approx(0.3)
    assert slicer.app.layoutManager().resetCount == 1
    count = scene.GetNumberOfNodes()
    ui.jacobianButton.click()  # again: the selected output node is reused
    assert ui.jacobianVolumeSelector.currentNode() is jacobian and scene.GetNumberOfNodes() == count

    ui.fixedPointsSelector.setCurrentNode(case.fixedPoints)
    ui.movingPointsSelector.setCurrentNode(case.movingPoints)
    ui.landmarkButton.click()
    table = ui.landmarkTableSelector.currentNode()
    assert table is not None and table.IsA("vtkMRMLTableNode") and table.GetNumberOfRows() == len(LANDMARKS) + 2
    before = np.linalg.norm((S - 1) * LANDMARKS, axis=1)
    assert ui.resultsLabel.text == (f"Landmark error (4 points): mean {before.mean():.2f} mm before, 0.00 mm after; "
                                    f"max {before.max():.2f} mm before, 0.00 mm after")

    ui.squaresSpinBox.value = 4
    ui.checkerboardButton.click()
    board = ui.checkerboardVolumeSelector.currentNode()
    assert board is not None and board is not case.fixed
    fixed_values = slicer.util.arrayFromVolume(case.fixed)
    board_values = slicer.util.arrayFromVolume(board)
    assert board_values.shape == fixed_values.shape
    assert np.array_equal(board_values[:6, :7, :7], fixed_values[:6, :7, :7])  # first of 4 x 4 x 4 boxes: fixed
    assert not np.allclose(board_values[:6, :7, 8:14], fixed_values[:6, :7, 8:14])  # the next: warped moving
    for composite in case.composites:
        assert (composite.GetBackgroundVolumeID(), composite.GetForegroundVolumeID()) == (board.GetID(), None)

    # the fixed segmentation's segments are offered for the volume change (the .ui connects the two)
    ui.fixedSegmentationSelector.setCurrentNode(case.fixedSeg)
    ui.movingSegmentationSelector.setCurrentNode(case.movingSeg)
    segment = case.fixedSeg.GetSegmentation().GetNthSegmentID(0)
    ui.changeSegmentSelector.setCurrentSegmentID(segment)
    assert ui.changeSegmentSelector.currentSegmentID() == segment
    known = set(_node_ids(scene))
    ui.computeAllButton.click()
    outputs = {name: getattr(ui, name).currentNode() for name in widget.OUTPUT_SELECTORS.values()}
    assert all(node is not None for node in outputs.values()), outputs
    assert outputs["jacobianVolumeSelector"] is jacobian and outputs["landmarkTableSelector"] is table
    assert outputs["checkerboardVolumeSelector"] is board
    assert _data_nodes(scene, set(_node_ids(scene)) - known) == [  # the reused nodes are not made again
        "vtkMRMLScalarVolumeNode", "vtkMRMLTableNode", "vtkMRMLTableNode"]  # difference, overlap, volume change
    lines = ui.resultsLabel.text.splitlines()
    assert [line.split(" ")[0] for line in lines] == ["Jacobian", "Segment", "Landmark", "Volume", "Checkerboard:",
                                                      "Difference"]
    # the volume change is the integral of J = S^3 over the ball: +33.1 %
    assert lines[3].endswith("+33.1 %)"), lines[3]
    ball = read_table(outputs["overlapTableSelector"])[0]
    assert ball["segment"] == "ball" and ball["dice_before"] < 0.9
    assert ball["dice_after"] > 0.95, ball  # the scaled ball, voxelised on 2 mm voxels, back onto the fixed one


def test_missing_input_is_reported_and_changes_nothing(widget, case, caplog):
    ui, scene = widget.ui, case.scene
    ui.transformSelector.setCurrentNode(case.transform)
    ui.fixedVolumeSelector.setCurrentNode(case.fixed)
    before, text = _node_ids(scene), ui.resultsLabel.text
    with caplog.at_level(logging.ERROR):
        ui.overlapButton.click()  # no segmentations selected
    errors = qt_shim.take_slot_errors()
    assert len(errors) == 1 and isinstance(errors[0], InputError)
    assert str(errors[0]) == "segment overlap needs a fixed segmentation and a moving segmentation"
    assert any("Registration quality could not be computed." in record.getMessage() for record in caplog.records)
    assert _node_ids(scene) == before and ui.resultsLabel.text == text
    assert ui.overlapTableSelector.currentNode() is None


def test_closing_the_scene_clears_the_summary(widget, case):
    ui = widget.ui
    ui.transformSelector.setCurrentNode(case.transform)
    ui.fixedVolumeSelector.setCurrentNode(case.fixed)
    ui.jacobianButton.click()
    assert ui.resultsLabel.text.startswith("Jacobian")
    case.scene.Clear(0)
    assert ui.resultsLabel.text == ""
    assert ui.transformSelector.currentNode() is None and ui.jacobianVolumeSelector.currentNode() is None
