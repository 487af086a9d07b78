"""The Registration Suite panel (``RegSuiteRegistrationWidget``) run as a user runs it.

The module file is imported over :mod:`qt_shim` (PythonQt's ``qt``/``ctk`` over PySide6,
offscreen) on a real slicer-core scene. Buttons are clicked, table cells edited and node combo
boxes set; Apply goes through the real Logic, which starts the real background worker
(``python -m regsuite.jobs.worker``), and the panel's real ``QTimer`` polls it while the test
processes Qt events. Volumes are small phantoms (``phantoms.py``) so a run takes a few seconds.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from optional_modules import require_module  # noqa: E402

require_module("PySide6.QtWidgets", "the Registration panel runs on PySide6 and slicer-core")
require_module("slicer", "the Registration panel runs on PySide6 and slicer-core")

import slicer  # noqa: E402

import qt_shim  # noqa: E402
from phantoms import make_grid, sample_phantom  # noqa: E402

from regsuite.mrml import LPS_FROM_RAS, sitk_to_volume  # noqa: E402
from regsuite.engine.config import PRESET_DIR  # noqa: E402

SHIFT = np.array([3.0, -2.0, 1.5])  # LPS mm: moving content = fixed content moved by SHIFT
#: The user's own quick preset (saved before the panel opens): one rigid level at 6 mm, 40 iterations.
QUICK_RIGID = {"name": "quick-rigid", "initialization": "geometry",
               "stages": [{"model": "rigid", "metric": "ncc", "learning_rate": 1.0,
                           "levels": [{"shrink": 2, "smoothing": 1, "iterations": 40}]}]}


@pytest.fixture()
def scene(mrml):
    """Fixed and moving phantom volumes (moving shifted by SHIFT) and the three slice views."""
    grid = make_grid(size=(28, 28, 24), spacing=(3.0, 3.0, 3.0))
    fixed = sitk_to_volume(sample_phantom(grid), mrml.scene, "fixed")
    moving = sitk_to_volume(sample_phantom(grid, world_map=lambda p: p - SHIFT), mrml.scene, "moving")
    composites = qt_shim.add_slice_views(mrml.scene)
    return mrml.scene, fixed, moving, composites


@pytest.fixture()
def widget(scene, monkeypatch, tmp_path):
    """The module's panel, opened after the volumes were loaded; user presets are kept in ``tmp_path``
    and hold QUICK_RIGID."""
    monkeypatch.setenv("REGSUITE_USER_PRESETS", str(tmp_path / "presets"))
    from RegSuiteRegistrationLib.logic import RegSuiteRegistrationLogic

    RegSuiteRegistrationLogic().savePreset(QUICK_RIGID, "quick-rigid")
    qt_shim.install(monkeypatch, tmp_path / "Slicer")
    panel = qt_shim.open_module("RegSuiteRegistration", monkeypatch)
    yield panel
    if panel._job is not None:  # a failed test must not leave a worker running
        panel._job.cancel()
    qt_shim.close_module(panel)
    assert qt_shim.take_slot_errors() == [], "a slot raised (PythonQt would only print it)"


def _select(combo, text):
    """Choose ``text`` in a combo box as a user would (by its index)."""
    index = combo.findText(text)
    assert index >= 0, f"'{text}' is not offered"
    combo.currentIndex = index


def _edit_cell(table, row, column, text):
    """Type ``text`` into a cell of the stage table (the table's own item, itemChanged follows)."""
    table.item(row, column).setText(text)


def _from_parent_lps(node, point_lps):
    return LPS_FROM_RAS @ np.array(node.GetTransformFromParent().TransformPoint(LPS_FROM_RAS @ point_lps))


def _scene_state(scene):
    nodes = [scene.GetNthNode(index) for index in range(scene.GetNumberOfNodes())]
    return [(node.GetID(), node.GetClassName(), node.GetName()) for node in nodes]


def _run_to_end(panel):
    qt_shim.wait_until(lambda: panel.ui.applyButton.text == "Apply")


def test_volumes_apply_cancel_button_and_result(widget, scene):
    mrml_scene, fixed, moving, composites = scene
    ui = widget.ui
    # the panel picked the two volumes it found; a user choosing one volume twice is told so, nothing runs
    assert ui.fixedVolumeSelector.currentNode() is fixed and ui.movingVolumeSelector.currentNode() is moving
    ui.fixedVolumeSelector.setCurrentNode(moving)
    assert widget._parameterNode.fixedVolume is moving
    count = mrml_scene.GetNumberOfNodes()
    ui.applyButton.click()
    assert "same node 'moving'" in ui.statusLabel.text and "color" in ui.statusLabel.styleSheet
    assert ui.applyButton.text == "Apply" and widget._job is None and mrml_scene.GetNumberOfNodes() == count
    ui.fixedVolumeSelector.setCurrentNode(fixed)
    ui.movingVolumeSelector.setCurrentNode(moving)
    assert ui.methodComboBox.currentIndex == 0 and ui.methodComboBox.model().item(1).isEnabled()  # learned: 1
    assert not ui.lambdaSliderWidget.visible  # HyperMorph presets only
    cuda = ui.deviceComboBox.model().item(ui.deviceComboBox.findText("cuda"))
    assert cuda.isEnabled() == widget.logic.cudaAvailable()  # offered only where PyTorch can use it
    parameters = widget._parameterNode
    assert parameters.fixedVolume is fixed and parameters.movingVolume is moving
    _select(ui.presetComboBox, "quick-rigid")
    _select(ui.deviceComboBox, "cpu")
    assert parameters.preset == "quick-rigid" and parameters.device == "cpu" and parameters.presetOverride == ""
    assert ui.applyButton.enabled and not ui.checkerboardButton.enabled

    ui.applyButton.click()
    assert ui.applyButton.text == "Cancel" and ui.applyButton.enabled
    assert not ui.inputsCollapsibleButton.enabled and not ui.stagesTableWidget.enabled
    assert ui.progressBar.visible
    assert widget._timer.isActive()
    _run_to_end(widget)

    assert ui.inputsCollapsibleButton.enabled and not widget._timer.isActive()
    assert ui.statusLabel.text.startswith("Done in "), ui.statusLabel.text
    assert ui.progressBar.value == ui.progressBar.maximum
    node = parameters.outputTransform
    assert node is not None and node.IsA("vtkMRMLLinearTransformNode") and node.GetName() == "moving_to_fixed"
    assert ui.outputTransformSelector.currentNode() is node
    assert node.GetNodeReference(node.GetFixedNodeReferenceRole()) is fixed
    assert node.GetNodeReference(node.GetMovingNodeReferenceRole()) is moving
    assert moving.GetParentTransformNode() is node and fixed.GetParentTransformNode() is None
    # the shift is recovered: from parent, a fixed point maps to fixed point + SHIFT (LPS); 40 iterations
    # at 6 mm on the smooth phantom end within about 0.1 mm of it (0.5 mm = 1/12 of those voxels)
    for point in ([0.0, 0.0, 0.0], [10.0, -8.0, 5.0]):
        assert np.allclose(_from_parent_lps(node, np.array(point)), np.array(point) + SHIFT, atol=0.5)
    summary = ui.summaryLabel.text
    assert summary == widget._outputs.summaryText()
    assert re.match(r"Registered in \d+\.\d s on cpu with preset 'quick-rigid' "
                    r"-> linear transform 'moving_to_fixed'", summary)
    assert "rigid (ncc): metric" in summary
    assert "Started the registration" in ui.logPlainTextEdit.toPlainText()
    assert not ui.resultsCollapsibleButton.collapsed and ui.checkerboardButton.enabled

    # views: the Logic showed the fusion (fixed under moving); the checkerboard button swaps it
    for composite in composites:
        assert (composite.GetBackgroundVolumeID(), composite.GetForegroundVolumeID()) == (fixed.GetID(), moving.GetID())
        assert composite.GetForegroundOpacity() == pytest.approx(0.5)
    ui.checkerboardButton.click()
    board = widget._outputs.checkerboardNode
    assert ui.checkerboardButton.checked and board is not None and board.GetScene() is mrml_scene
    for composite in composites:
        assert (composite.GetBackgroundVolumeID(), composite.GetForegroundVolumeID()) == (board.GetID(), None)
    ui.checkerboardButton.click()
    for composite in composites:
        assert (composite.GetBackgroundVolumeID(), composite.GetForegroundVolumeID()) == (fixed.GetID(), moving.GetID())
    # a colour map, chosen while the checkerboard shows, returns to the fusion in those colours
    ui.checkerboardButton.click()
    _select(ui.fusionColormapComboBox, "Iron")
    assert not ui.checkerboardButton.checked
    assert moving.GetDisplayNode().GetColorNode().GetName() == "Iron"
    for composite in composites:
        assert composite.GetForegroundVolumeID() == moving.GetID()
    assert widget._outputs.checkerboardNode is board  # toggling again reuses the one checkerboard node


def test_cancel_mid_run_leaves_the_scene_unchanged(widget, scene):
    mrml_scene, fixed, moving, _ = scene
    ui = widget.ui
    slow = {"name": "slow", "initialization": "geometry",
            "stages": [{"model": "svf", "metric": "lncc", "optimizer": "adam", "learning_rate": 0.1, "tolerance": 0.0,
                        "levels": [{"shrink": 1, "smoothing": 0, "iterations": 100000}]}]}
    widget._parameterNode.presetOverride = json.dumps(slow)  # as a scene saved with an edited preset restores it
    assert widget._tableRows()[0]["levels"] == "1/0/100000"
    before = _scene_state(mrml_scene)

    ui.applyButton.click()
    assert ui.applyButton.text == "Cancel"
    qt_shim.wait_until(lambda: ui.statusLabel.text.startswith("Stage 1/1 svf"))  # progress is shown
    folder = re.search(r"work folder (\S+)\)", ui.logPlainTextEdit.toPlainText()).group(1)
    assert os.path.isdir(folder)
    ui.applyButton.click()  # Cancel
    assert ui.statusLabel.text == "Cancelling..." and not ui.applyButton.enabled
    _run_to_end(widget)

    assert ui.statusLabel.text == "Cancelled; the scene is unchanged." and not ui.progressBar.visible
    assert ui.applyButton.enabled and ui.inputsCollapsibleButton.enabled
    assert _scene_state(mrml_scene) == before
    assert moving.GetParentTransformNode() is None and widget._parameterNode.outputTransform is None
    assert not os.path.exists(folder), "the job folder is removed"
    assert ui.summaryLabel.text == "Run a registration to see its summary here." and not ui.checkerboardButton.enabled


def test_edited_stage_is_what_the_worker_runs(widget, scene, monkeypatch):
    mrml_scene, fixed, moving, composites = scene
    ui = widget.ui
    output = mrml_scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "registered")  # this run also resamples
    ui.outputVolumeSelector.setCurrentNode(output)
    assert widget._parameterNode.outputVolume is output and ui.fixedVolumeSelector.currentNode() is fixed
    _select(ui.presetComboBox, "rigid")
    table = ui.stagesTableWidget
    assert table.rowCount == 1 and table.item(0, 2).text() == "4/2/150; 2/1/80; 1/0/30"
    assert not ui.revertPresetButton.enabled
    _edit_cell(table, 0, 0, "affine")
    _edit_cell(table, 0, 2, "2/1/9")
    override = json.loads(widget._parameterNode.presetOverride)
    stage = override["stages"][0]
    assert stage["model"] == "affine"
    assert [(lv["shrink"], lv["smoothing"], lv["iterations"]) for lv in stage["levels"]] == [(2.0, 1.0, 9)]
    assert ui.revertPresetButton.enabled and widget._parameterNode.preset == "rigid"
    # a bad cell is reported in red under Apply and not stored
    _edit_cell(table, 0, 2, "2-1-9")
    assert "stage 1: level '2-1-9'" in ui.statusLabel.text and "color" in ui.statusLabel.styleSheet
    assert json.loads(widget._parameterNode.presetOverride) == override
    ui.applyButton.click()  # the table as shown cannot run: told again, nothing starts
    assert "stage 1: level '2-1-9'" in ui.statusLabel.text and widget._job is None
    _edit_cell(table, 0, 2, "2/1/9")
    assert ui.statusLabel.text == ""

    events = []
    onProgress = widget.onProgress  # the panel's own handler, watched: every event the worker sent
    monkeypatch.setattr(widget, "onProgress", lambda event: (events.append(event), onProgress(event)))
    ui.applyButton.click()
    widget.parent.isEntered = False  # the user switches to another module while it runs
    widget.exit()
    _run_to_end(widget)
    assert ui.statusLabel.text.startswith("Done in "), ui.statusLabel.text
    transform = widget._parameterNode.outputTransform  # stored in the parameter node meanwhile
    assert transform is not None and transform.IsA("vtkMRMLLinearTransformNode")
    widget.parent.isEntered = True  # and comes back
    widget.enter()
    assert ui.outputTransformSelector.currentNode() is transform
    assert events and {(e["stage_name"], e["levels"], e["iterations"]) for e in events} == {("affine", 1, 9)}
    assert max(e["iteration"] for e in events) <= 9
    assert "affine (ncc): metric" in ui.summaryLabel.text and "preset 'rigid'" in ui.summaryLabel.text
    # the moving volume, resampled on the fixed grid, is the output volume and shows over the fixed one
    assert slicer.util.arrayFromVolume(output).shape == slicer.util.arrayFromVolume(fixed).shape
    assert moving.GetParentTransformNode() is None and widget._parameterNode.outputVolume is output
    for composite in composites:
        assert (composite.GetBackgroundVolumeID(), composite.GetForegroundVolumeID()) == (fixed.GetID(), output.GetID())

    ui.revertPresetButton.click()  # back to the saved preset
    assert widget._parameterNode.presetOverride == "" and table.item(0, 0).text() == "rigid"
    assert table.item(0, 2).text() == "4/2/150; 2/1/80; 1/0/30"


def test_save_preset_appears_in_the_list(widget, scene, monkeypatch, tmp_path):
    ui = widget.ui
    _select(ui.presetComboBox, "affine")
    _edit_cell(ui.stagesTableWidget, 1, 2, "4/2/40; 2/1/20")
    asked = []

    def getText(parent, title, label, mode, text):
        asked.append(text)
        return answers.pop(0)

    monkeypatch.setattr(qt_shim.sys.modules["qt"].QInputDialog, "getText", getText)
    answers = ["affine"]  # a built-in name is refused and nothing is saved
    ui.savePresetButton.click()
    assert asked == ["affine-custom"] and "built-in" in ui.statusLabel.text
    assert sorted(p.name for p in (tmp_path / "presets").iterdir()) == ["quick-rigid.json"]

    answers = ["my-affine"]
    ui.savePresetButton.click()
    path = tmp_path / "presets" / "my-affine.json"
    assert path.is_file() and ui.statusLabel.text == f"Saved preset 'my-affine' to {path}."
    combo = ui.presetComboBox
    names = [combo.itemText(index) for index in range(combo.count)]
    assert "my-affine" in names and names.index("my-affine") > names.index("affine")
    assert combo.currentText == "my-affine"
    parameters = widget._parameterNode
    assert parameters.preset == "my-affine" and parameters.presetOverride == ""
    saved = json.loads(path.read_text())
    assert saved["name"] == "my-affine"
    assert [level["iterations"] for level in saved["stages"][1]["levels"]] == [40, 20]
    assert ui.stagesTableWidget.item(1, 2).text() == "4/2/40; 2/1/20"  # the table shows the saved preset

    answers = [""]  # cancelling the dialog changes nothing
    ui.savePresetButton.click()
    assert sorted(p.name for p in path.parent.iterdir()) == ["my-affine.json", "quick-rigid.json"]


def test_closing_the_scene_stops_the_run(widget, scene):
    mrml_scene, _, moving, _ = scene
    ui = widget.ui
    _select(ui.presetComboBox, "quick-rigid")
    ui.applyButton.click()
    assert ui.applyButton.text == "Cancel"
    folder = re.search(r"work folder (\S+)\)", ui.logPlainTextEdit.toPlainText()).group(1)
    mrml_scene.Clear(0)  # File > Close Scene while the worker starts

    assert ui.applyButton.text == "Apply" and widget._job is None and not widget._timer.isActive()
    assert not os.path.exists(folder)
    assert mrml_scene.GetNumberOfNodesByClass("vtkMRMLTransformNode") == 0
    # the panel follows the empty scene: its own new parameter node, nothing to register
    parameters = widget._parameterNode
    assert parameters is not None and parameters.parameterNode.GetScene() is mrml_scene
    assert parameters.fixedVolume is None and ui.fixedVolumeSelector.currentNode() is None
    assert not ui.applyButton.enabled
    assert not ui.progressBar.visible and ui.statusLabel.text == ""  # nothing left of the stopped run


def _grid_values(node):
    from vtkmodules.util import numpy_support

    grid = node.GetTransformFromParent().GetDisplacementGrid()
    return numpy_support.vtk_to_numpy(grid.GetPointData().GetScalars()).copy()


def test_learned_presets_and_the_lambda_slider_update_the_result_in_place(widget, scene):
    mrml_scene, fixed, moving, _ = scene
    ui = widget.ui
    slider, parameters = ui.lambdaSliderWidget, widget._parameterNode
    _select(ui.presetComboBox, "brain-mri")
    assert not slider.visible and not ui.lambdaLabel.visible
    iterative = [ui.presetComboBox.itemText(i) for i in range(ui.presetComboBox.count)]
    assert "brain-mri" in iterative and "quick-rigid" in iterative and "brain-mri-hypermorph" not in iterative
    # the second Method lists the learned presets and picks its usual one (brain-mri-fast); only HyperMorph shows the slider
    _select(ui.methodComboBox, "Deep learning (VoxelMorph/HyperMorph)")
    learned = [ui.presetComboBox.itemText(i) for i in range(ui.presetComboBox.count)]
    assert learned == ["brain-any-contrast", "brain-any-contrast-io", "brain-mri-fast", "brain-mri-hypermorph",
                       "brain-mri-voxelmorph", "brain-mri-voxelmorph-cascade", "brain-mri-voxelmorph-ic"]
    assert parameters.preset == "brain-mri-fast" and not slider.visible
    assert [ui.stagesTableWidget.item(r, 0).text() for r in range(ui.stagesTableWidget.rowCount)] == \
        ["rigid", "affine", "network", "svf"]
    _select(ui.presetComboBox, "brain-mri-hypermorph")
    shipped = json.loads((PRESET_DIR / "brain-mri-hypermorph.json").read_text())["stages"][-1]["lambda"]
    assert slider.visible and ui.lambdaLabel.visible and slider.value == pytest.approx(shipped)
    slider.value = 0.3  # before a run: the preset's lambda for the next run
    assert json.loads(parameters.presetOverride)["stages"][-1]["lambda"] == pytest.approx(0.3)
    assert ui.revertPresetButton.enabled and widget._lambdaJob is None
    _select(ui.deviceComboBox, "cpu")

    ui.applyButton.click()
    _run_to_end(widget)
    assert ui.statusLabel.text.startswith("Done in "), ui.statusLabel.text
    node = parameters.outputTransform
    assert node.IsA("vtkMRMLGridTransformNode") and moving.GetParentTransformNode() is node
    assert "lambda 0.30" in ui.summaryLabel.text and "preset 'brain-mri-hypermorph'" in ui.summaryLabel.text
    log = ui.logPlainTextEdit.toPlainText()
    assert all(f"Warning: {w}" in log for w in widget._outputs.summary["warnings"])  # the engine's, if any
    qt_shim.wait_until(lambda: not widget._lambdaTimer.isActive())  # the network loads in a thread
    before, nodes = _grid_values(node), _scene_state(mrml_scene)

    for value in (0.5, 0.7, 0.9):  # a drag
        slider.value = value
    assert ui.statusLabel.text == "Updating the result for lambda 0.90..."
    qt_shim.wait_until(lambda: not widget._lambdaTimer.isActive())
    assert ui.statusLabel.text.startswith("Lambda 0.90: result updated in "), ui.statusLabel.text
    assert _scene_state(mrml_scene) == nodes and parameters.outputTransform is node
    assert np.abs(_grid_values(node) - before).max() > 0.05
    assert widget._outputs.lambdaUpdater.lam == pytest.approx(0.9) and "lambda 0.90" in ui.summaryLabel.text
    assert json.loads(parameters.presetOverride)["stages"][-1]["lambda"] == pytest.approx(0.9)  # the next run's

    slider.value = 0.4  # an update runs in its thread while the user closes the scene: it is dropped
    assert widget._lambdaJob.busy and widget._lambdaTimer.isActive()
    mrml_scene.Clear(0)
    assert widget._lambdaJob is None and not widget._lambdaTimer.isActive()
    assert mrml_scene.GetNumberOfNodesByClass("vtkMRMLTransformNode") == 0

    _select(ui.methodComboBox, "Iterative (presets)")  # back: an iterative preset, no slider
    assert widget._parameterNode.preset not in learned and not slider.visible
