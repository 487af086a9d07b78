"""The Registration Population panel (``RegSuitePopulationWidget``) run as a user runs it.

The module file is imported over :mod:`qt_shim` (PythonQt's ``qt``/``ctk`` over PySide6,
offscreen) on a real slicer-core scene. Nodes are picked in the panel's combo boxes, paths typed
into its fields and its buttons clicked; Apply goes through the real Logic, which starts the real
``python -m regsuite <command>`` in the background, and the panel's real ``QTimer`` polls it while
the test processes Qt events. Phantoms as in ``test_population_logic.py`` (24^3 voxels of 3 mm).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from optional_modules import require_module  # noqa: E402

require_module("PySide6.QtWidgets", "the Population panel runs on PySide6 and slicer-core")
require_module("slicer", "the Population panel runs on PySide6 and slicer-core")

import SimpleITK as sitk  # noqa: E402
import slicer  # noqa: E402

import qt_shim  # noqa: E402
from test_population_logic import (TINY_SVF, change_command_available, color_table, dice, node_ids,  # noqa: E402
                                   phantom, segmentation_from_labels, write_case)

from regsuite.mrml import sitk_to_volume  # noqa: E402
from regsuite.mrml.tables import read_table  # noqa: E402


@pytest.fixture()
def scene(mrml):
    """The subject, two atlases (a segmentation and a label map) and the slice views."""
    scene = mrml.scene
    target_image, target_labels = phantom()
    target = sitk_to_volume(target_image, scene, "subject")
    colors = color_table(scene)
    colors.SetHideFromEditors(False)  # Slicer's selector lists hidden colour tables (showHidden); the stand-in does not
    one_image, one_labels = phantom((3.0, -3.0, 0.0))
    one = sitk_to_volume(one_image, scene, "atlas one")
    one_segmentation = segmentation_from_labels(scene, one_labels, "atlas one segmentation", colors)
    two_image, two_labels = phantom((-3.0, 3.0, 0.0))
    two = sitk_to_volume(two_image, scene, "atlas two")
    two_labelmap = sitk_to_volume(two_labels, scene, "atlas two labels", labelmap=True)
    two_labelmap.GetDisplayNode().SetAndObserveColorNodeID(colors.GetID())
    composites = qt_shim.add_slice_views(scene)
    return {"scene": scene, "target": target, "target_labels": target_labels, "colors": colors,
            "pairs": [(one, one_segmentation), (two, two_labelmap)], "composites": composites}


@pytest.fixture()
def widget(scene, monkeypatch, tmp_path):
    qt_shim.install(monkeypatch, tmp_path / "Slicer")
    panel = qt_shim.open_module("RegSuitePopulation", monkeypatch)
    yield panel
    panel.logic.cancel()  # a failed test must not leave a command running
    qt_shim.close_module(panel)
    assert qt_shim.take_slot_errors() == [], "a slot raised (PythonQt would only print it)"


def _select(combo, text):
    index = combo.findText(text)
    assert index >= 0, f"'{text}' is not offered"
    combo.currentIndex = index


def _run_to_end(panel, timeout=240.0):
    qt_shim.wait_until(lambda: panel.ui.applyButton.text == "Apply", timeout)


def _log(panel):
    return panel.ui.logPlainTextEdit.toPlainText()


def test_segment_from_scene_atlases(widget, scene):
    ui, mrml_scene, target = widget.ui, scene["scene"], scene["target"]
    parameters = widget._parameters
    assert ui.workflowTabWidget.currentIndex == 0 and parameters.workflow == "segment"
    assert ui.targetVolumeSelector.currentNode() is target  # the panel picked the first volume
    assert not ui.applyButton.enabled and "atlas" in ui.applyButton.toolTip
    for image, labels in scene["pairs"] + scene["pairs"][:1]:  # the same pair twice is listed once
        ui.atlasImageSelector.setCurrentNode(image)
        ui.atlasLabelsSelector.setCurrentNode(labels)
        ui.addAtlasButton.click()
    assert parameters.atlasPairs == scene["pairs"] and ui.atlasTableWidget.rowCount == 2
    assert ui.atlasTableWidget.item(1, 1).text() == "atlas two labels"
    ui.colorTableSelector.setCurrentNode(scene["colors"])
    _select(ui.presetComboBox, "rigid")
    _select(ui.fusionComboBox, "weighted")
    assert parameters.preset == "rigid" and parameters.fusion == "weighted" and parameters.colorNode is scene["colors"]
    assert ui.applyButton.enabled
    before = set(node_ids(mrml_scene))

    ui.applyButton.click()
    assert ui.applyButton.text == "Cancel" and ui.applyButton.enabled
    assert not ui.workflowTabWidget.enabled and not ui.optionsCollapsibleButton.enabled
    assert ui.progressBar.visible and widget._timer.isActive()
    _run_to_end(widget)

    assert not widget._timer.isActive() and ui.workflowTabWidget.enabled
    assert ui.statusLabel.text.startswith("Done in ")
    assert "'subject segmentation' with 2 segments" in ui.statusLabel.text
    assert ui.progressBar.value == ui.progressBar.maximum
    log = _log(widget)
    assert log.startswith("Started in the background: regsuite segment --target ")
    assert "--fusion weighted" in log and "--preset rigid" in log and "fuse-weighted done" in log
    node = mrml_scene.GetFirstNodeByName("subject segmentation")
    segmentation = node.GetSegmentation()
    assert sorted(segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())) == [
        "inner", "outer"]
    expected = sitk.GetArrayFromImage(scene["target_labels"])
    added = {mrml_scene.GetNodeByID(i).GetClassName() for i in set(node_ids(mrml_scene)) - before}
    assert added == {"vtkMRMLSegmentationNode", "vtkMRMLSegmentationDisplayNode"}
    inner = slicer.util.arrayFromSegmentBinaryLabelmap(node, segmentation.GetSegmentIdBySegmentName("inner"), target)
    assert dice(inner, expected == 2) > 0.95

    ui.atlasTableWidget.setCurrentCell(0, 0)
    ui.removeAtlasButton.click()
    assert parameters.atlasPairs == scene["pairs"][1:] and ui.atlasTableWidget.rowCount == 1


def test_template_iteration_shown_then_cancelled(widget, scene, tmp_path):
    ui, mrml_scene = widget.ui, scene["scene"]
    images = tmp_path / "images"
    images.mkdir()
    write_case(images, "s1", (0.0, 0.0, 0.0))
    write_case(images, "s2", (3.0, 0.0, -3.0))
    preset = tmp_path / "tiny-svf.json"
    preset.write_text(json.dumps(TINY_SVF))
    out = tmp_path / "template"
    ui.workflowTabWidget.currentIndex = 1
    assert widget._parameters.workflow == "template" and not ui.applyButton.enabled
    ui.imageSourceLineEdit.text = str(images)
    ui.templateOutputLineEdit.text = str(out)
    ui.iterationsSpinBox.value = 3
    ui.presetComboBox.setEditText(str(preset))  # a preset file typed by the user
    parameters = widget._parameters
    assert parameters.imageSource == str(images) and parameters.iterations == 3 and parameters.preset == str(preset)
    for composite in scene["composites"]:
        composite.SetBackgroundVolumeID(scene["target"].GetID())
    before = node_ids(mrml_scene)

    ui.applyButton.click()
    assert ui.applyButton.text == "Cancel"
    qt_shim.wait_until(lambda: ui.statusLabel.text.startswith("Template affine mean: update "), 180)
    template = mrml_scene.GetFirstNodeByName("Template")
    assert template is not None and scene["composites"][0].GetBackgroundVolumeID() == template.GetID()
    assert 0 < ui.progressBar.value < ui.progressBar.maximum
    assert "Template affine mean: update" in _log(widget) and out.is_dir()

    ui.applyButton.click()  # Cancel
    assert ui.applyButton.text == "Apply" and not widget._timer.isActive() and not ui.progressBar.visible
    assert ui.statusLabel.text == "Cancelled; the scene is as it was."
    assert node_ids(mrml_scene) == before and mrml_scene.GetFirstNodeByName("Template") is None
    assert all(c.GetBackgroundVolumeID() == scene["target"].GetID() for c in scene["composites"])
    assert not out.exists()
    assert _log(widget).splitlines()[-1] == "Cancelled; the scene is as it was."


def test_errors_are_shown_in_one_line(widget, scene, tmp_path):
    ui, mrml_scene = widget.ui, scene["scene"]
    before = node_ids(mrml_scene)
    # refused before anything starts: a folder with a single image
    single = tmp_path / "single"
    single.mkdir()
    write_case(single, "s1", (0.0, 0.0, 0.0))
    ui.workflowTabWidget.currentIndex = 1
    ui.imageSourceLineEdit.text = str(single)
    ui.applyButton.click()
    assert ui.applyButton.text == "Apply" and widget.logic.job is None
    assert "holds 1 image file(s); a template needs at least 2" in ui.statusLabel.text
    assert "color" in ui.statusLabel.styleSheet and "\n" not in ui.statusLabel.text
    assert _log(widget).splitlines()[-1] == "Error: " + ui.statusLabel.text
    # refused by the command: labels that are not on their image's grid (its one line is shown)
    ui.workflowTabWidget.currentIndex = 0
    image, _ = write_case(tmp_path, "a1", (0.0, 0.0, 0.0))
    sitk.WriteImage(sitk.Image([8, 8, 8], sitk.sitkUInt8), str(tmp_path / "small_labels.nii.gz"))
    (tmp_path / "atlases.csv").write_text("image,labels\na1.nii.gz,small_labels.nii.gz\n")
    ui.atlasListLineEdit.text = str(tmp_path / "atlases.csv")
    _select(ui.presetComboBox, "rigid")
    ui.applyButton.click()
    assert ui.applyButton.text == "Cancel"
    _run_to_end(widget)
    assert widget.logic.job.state == "failed"
    assert "are not on the grid of its image" in ui.statusLabel.text and "\n" not in ui.statusLabel.text
    assert "color" in ui.statusLabel.styleSheet and not ui.progressBar.visible
    assert _log(widget).splitlines()[-1] == "Failed: " + ui.statusLabel.text  # said once
    assert node_ids(mrml_scene) == before


def test_change_table_and_jacobian(widget, scene, tmp_path):
    if not change_command_available():
        pytest.skip("'regsuite change' is not wired into the command line yet")
    ui, mrml_scene, target = widget.ui, scene["scene"], scene["target"]
    grown, _ = phantom(scale=1.06)
    followup = sitk_to_volume(grown, mrml_scene, "follow-up")
    ui.workflowTabWidget.currentIndex = 2
    ui.baselineVolumeSelector.setCurrentNode(target)
    ui.followupVolumeSelector.setCurrentNode(followup)
    ui.changeSegmentationSelector.setCurrentNode(scene["pairs"][0][1])  # a segmentation named outer/inner
    ui.changeOutputLineEdit.text = str(tmp_path / "change")
    _select(ui.presetComboBox, "affine-fast")
    ui.applyButton.click()
    _run_to_end(widget)
    assert ui.statusLabel.text.startswith("Done in ") and "'subject volume change'" in ui.statusLabel.text
    rows = read_table(mrml_scene.GetFirstNodeByName("subject volume change"))
    assert [row["name"] for row in rows][1:] == ["outer", "inner"]
    assert all(row["change_percent"] > 5 for row in rows)
    jacobian = mrml_scene.GetFirstNodeByName("subject change Jacobian")
    assert np.median(slicer.util.arrayFromVolume(jacobian)) > 1.05
    for composite in scene["composites"]:
        assert (composite.GetBackgroundVolumeID(), composite.GetForegroundVolumeID()) == (target.GetID(),
                                                                                          jacobian.GetID())
    assert mrml_scene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode") == 1
