"""Registration Population module: the Logic on a real slicer-core scene, with the real command line.

Each workflow runs ``python -m regsuite <command>`` in the background exactly as in Slicer; the
test polls it like the panel's timer does. Phantoms: the head-like phantom of ``phantoms.py`` on a
24^3 grid of 3 mm voxels, moved by whole voxels, with a 2-label map thresholded from it, so the
``rigid`` preset recovers each atlas and the fused labels match the target's (Dice > 0.95).
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from optional_modules import require_module

require_module("slicer", "the Population module tests need slicer-core")
import SimpleITK as sitk  # noqa: E402
import slicer  # noqa: E402
from phantoms import make_grid, sample_phantom  # noqa: E402

from regsuite.errors import InputError, PresetError  # noqa: E402
from regsuite.mrml import sitk_to_volume  # noqa: E402
from regsuite.mrml.tables import read_table  # noqa: E402

GRID = make_grid((24, 24, 24), (3.0, 3.0, 3.0))
NAMES = {1: ("outer", (0.9, 0.6, 0.2)), 2: ("inner", (0.2, 0.5, 0.9))}
#: A quick template preset: a short affine, then a short svf stage (a template preset ends in svf).
TINY_SVF = {"name": "tiny-svf", "initialization": "moments",
            "stages": [{"model": "affine", "metric": "ncc", "optimizer": "adam", "learning_rate": 2.0,
                        "levels": [{"shrink": 2, "smoothing": 1, "iterations": 10}]},
                       {"model": "svf", "metric": "lncc", "metric_options": {"radius": 2}, "optimizer": "gaussian",
                        "learning_rate": 1.0, "gradient_smoothing": 1.732, "field_smoothing": 0.707,
                        "integration_steps": 5, "levels": [{"shrink": 2, "smoothing": 1, "iterations": 5}]}]}


def phantom(shift=(0.0, 0.0, 0.0), scale=1.0):
    """The phantom moved by ``shift`` mm (and grown by ``scale``), and its 2-label map."""
    image = sample_phantom(GRID, lambda p: (p - np.array(shift)) / scale)
    image = image * sitk.Cast(image > 0.05, sitk.sitkFloat32)
    labels = sitk.Cast(image > 0.1, sitk.sitkUInt8) + sitk.Cast(image > 0.45, sitk.sitkUInt8)
    return image, labels


def write_case(folder: Path, name: str, shift) -> tuple[str, str]:
    image, labels = phantom(shift)
    paths = str(folder / f"{name}.nii.gz"), str(folder / f"{name}_labels.nii.gz")
    sitk.WriteImage(image, paths[0])
    sitk.WriteImage(labels, paths[1])
    return paths


def color_table(scene, name="atlas colours"):
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", name)
    table.SetTypeToUser()
    table.SetNumberOfColors(3)
    table.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
    for value, (label, rgb) in NAMES.items():
        table.SetColor(value, label, *rgb, 1.0)
    return table


def segmentation_from_labels(scene, labels, name, colors):
    """A segmentation node with one segment per label, named from ``colors``."""
    labelmap = sitk_to_volume(labels, scene, f"{name} labels", labelmap=True)
    labelmap.GetDisplayNode().SetAndObserveColorNodeID(colors.GetID())
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, node)
    scene.RemoveNode(labelmap)
    return node


def node_ids(scene):
    return sorted(scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes()))


def run_to_end(logic, timeout=240.0):
    records, deadline = [], time.monotonic() + timeout
    while logic.isRunning:
        records += logic.poll()
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.1)
    return records


def dice(a, b):
    a, b = np.asarray(a) != 0, np.asarray(b) != 0
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def add_slice_views(scene):
    composites = []
    for name in ("Red", "Yellow", "Green"):
        composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode", f"SliceComposite{name}")
        composite.SetLayoutName(name)
        composites.append(composite)
    return composites


def change_command_available() -> bool:
    done = subprocess.run([sys.executable, "-m", "regsuite", "change", "--help"], capture_output=True, text=True,
                          timeout=120)
    return done.returncode == 0


@pytest.fixture()
def case(mrml, tmp_path):
    from RegSuitePopulationLib import RegSuitePopulationLogic

    scene = mrml.scene
    target_image, target_labels = phantom()
    target = sitk_to_volume(target_image, scene, "subject")
    colors = color_table(scene)
    a1_image, a1_labels = phantom((3.0, -3.0, 0.0))
    a1 = sitk_to_volume(a1_image, scene, "atlas one")
    a1_segmentation = segmentation_from_labels(scene, a1_labels, "atlas one segmentation", colors)
    files = tmp_path / "atlases"
    files.mkdir()
    a2 = write_case(files, "a2", (-3.0, 3.0, 0.0))
    logic = RegSuitePopulationLogic()
    yield {"scene": scene, "logic": logic, "target": target, "target_labels": target_labels, "colors": colors,
           "a1": a1, "a1_segmentation": a1_segmentation, "a2": a2, "files": files}
    logic.cancel()  # a failed test must not leave a command running


def test_segment_scene_and_file_atlases_into_named_segments(case, tmp_path):
    scene, logic, target = case["scene"], case["logic"], case["target"]
    (case["files"] / "list.csv").write_text("image,labels\na2.nii.gz,a2_labels.nii.gz\n")
    before = set(node_ids(scene))
    lines, progress = [], []
    job = logic.segment(target, atlases=[(case["a1"], case["a1_segmentation"])],
                        atlasList=str(case["files"] / "list.csv"), colorNode=case["colors"], preset="rigid",
                        log=lines.append, progress=progress.append, waitForCompletion=False)
    assert job.isRunning and logic.job is job and os.path.isdir(job.folder)
    assert job.arguments[0] == "segment" and "--atlas-list" in job.arguments and "--atlas" in job.arguments
    assert set(node_ids(scene)) == before  # nothing is added while the command runs
    records = run_to_end(logic)
    assert job.state == "completed", job.error
    tasks = [r for r in records if r["kind"] == "task"]
    assert sorted(r["key"] for r in tasks) == ["fuse-majority", "register-a2", "register-atlas_one"]
    assert tasks[-1]["key"] == "fuse-majority" and tasks[-1]["status"] == "done"
    assert tasks == [r for r in progress if r["kind"] == "task"]
    fractions = [r["fraction"] for r in tasks]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert records[-1] == {"kind": "state", "state": "completed", "message": ""}
    assert any(line.startswith("[3/3]") or "fuse-majority done" in line for line in lines)

    node = job.result["segmentation"]
    assert node.IsA("vtkMRMLSegmentationNode") and node.GetName() == "subject segmentation"
    segmentation = node.GetSegmentation()
    names = {segmentation.GetNthSegment(i).GetName(): segmentation.GetNthSegment(i)
             for i in range(segmentation.GetNumberOfSegments())}
    assert sorted(names) == ["inner", "outer"] and job.result["segments"] == ["outer", "inner"]
    for value, (name, rgb) in NAMES.items():  # the colour table's colours (stored as 8-bit values)
        assert np.allclose(names[name].GetColor(), rgb, atol=0.01), name
    added = [scene.GetNodeByID(i) for i in set(node_ids(scene)) - before]
    assert sorted(n.GetClassName() for n in added) == ["vtkMRMLSegmentationDisplayNode", "vtkMRMLSegmentationNode"]
    expected = sitk.GetArrayFromImage(case["target_labels"])
    for value, (name, _) in NAMES.items():
        segment_id = segmentation.GetSegmentIdBySegmentName(name)
        voxels = slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, target)
        assert dice(voxels, expected == value) > 0.95, name
    assert not os.path.exists(job.folder)  # the exported inputs are removed


def test_template_shows_each_iteration_and_reports_its_update(case, tmp_path):
    logic = case["logic"]
    images = tmp_path / "images"
    images.mkdir()
    write_case(images, "s1", (0.0, 0.0, 0.0))
    write_case(images, "s2", (3.0, 0.0, -3.0))  # the *_labels files are skipped
    preset = tmp_path / "tiny-svf.json"
    preset.write_text(__import__("json").dumps(TINY_SVF))
    out = tmp_path / "template"
    shown = []

    def on_progress(record):
        if record["kind"] == "iteration":  # the node holds this iteration's template when it is reported
            shown.append((record["iteration"], slicer.util.arrayFromVolume(record["node"]).copy()))

    progress = []
    job = logic.buildTemplate(str(images), outputDir=str(out), iterations=1, preset=str(preset),
                              progress=lambda r: (progress.append(r), on_progress(r)), waitForCompletion=False)
    assert job.arguments[:2] == ["template", "--images"]
    assert len(job.arguments[2:job.arguments.index("--output-dir")]) == 2  # s1 and s2, not their label maps
    run_to_end(logic)
    assert job.state == "completed", job.error
    iterations = [r for r in progress if r["kind"] == "iteration"]
    assert [r["iteration"] for r in iterations] == [0, 1] and [k for k, _ in shown] == [0, 1]
    for record in iterations:
        assert record["iterations"] == 1 and math.isfinite(record["affine_mean_mm"])
        assert math.isfinite(record["velocity_mean_mm"]) and record["sharpness"] > 0
        assert record["text"].startswith("Template ") and "mm (velocity)" in record["text"]
    assert iterations[1]["velocity_mean_mm"] > 0  # the deformable iteration moved the template
    for k, array in shown:  # what was shown is what the command wrote for that iteration
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "iterations" / str(k) / "template.nii.gz")))
        assert np.allclose(array, written, atol=1e-5)
    node = job.result["template"]
    assert node is iterations[0]["node"] and node.GetName() == "Template"
    assert np.allclose(slicer.util.arrayFromVolume(node),
                       sitk.GetArrayFromImage(sitk.ReadImage(str(out / "template.nii.gz"))), atol=1e-5)
    assert job.result["outputDir"] == str(out) and (out / "subjects" / "s2" / "to_template.h5").is_file()
    assert [r["iteration"] for r in job.result["iterations"]] == [0, 1]


def test_cancel_mid_run_leaves_the_scene_and_no_output(case, tmp_path):
    scene, logic = case["scene"], case["logic"]
    composites = add_slice_views(scene)
    composites[0].SetBackgroundVolumeID(case["target"].GetID())
    before = node_ids(scene)
    images = [case["target"], case["a2"][0]]  # a scene volume and a file
    out = tmp_path / "new-template"
    job = logic.buildTemplate(images, outputDir=str(out), iterations=3, preset=str(_tiny(tmp_path)),
                              waitForCompletion=False)
    deadline = time.monotonic() + 180
    while not any(r["kind"] == "iteration" for r in logic.poll()):  # the affine mean is shown...
        assert logic.isRunning and time.monotonic() < deadline, job.error
        time.sleep(0.1)
    template = job.node
    assert template.GetName() == "Template" and composites[1].GetBackgroundVolumeID() == template.GetID()
    assert out.is_dir()
    logic.cancel()  # ... then cancelled during iteration 1
    assert job.state == "cancelled" and not logic.isRunning and job._process.returncode is not None
    assert job.error == "cancelled; the scene is as it was"
    assert node_ids(scene) == before and template.GetScene() is None
    assert composites[0].GetBackgroundVolumeID() == case["target"].GetID()  # the views as they were
    assert composites[1].GetBackgroundVolumeID() is None
    assert not out.exists() and not os.path.exists(job.folder)
    assert logic.poll() == []


def _tiny(folder: Path) -> Path:
    path = folder / "tiny-svf.json"
    path.write_text(__import__("json").dumps(TINY_SVF))
    return path


def test_change_table_chart_and_jacobian_over_the_baseline(case, tmp_path):
    if not change_command_available():
        pytest.skip("'regsuite change' is not wired into the command line yet")
    scene, logic, target = case["scene"], case["logic"], case["target"]
    composites = add_slice_views(scene)
    grown, _ = phantom(scale=1.06)  # the follow-up: everything 6 % larger along each axis
    followup = sitk_to_volume(grown, scene, "follow-up")
    segmentation = segmentation_from_labels(scene, case["target_labels"], "subject segmentation", case["colors"])
    result = logic.measureChange(target, followup, segmentation=segmentation, preset="affine-fast",
                                 outputDir=str(tmp_path / "change"))
    job = logic.job
    assert job.state == "completed" and (tmp_path / "change" / "change.csv").is_file()
    rows = read_table(result["table"])
    assert [row["label"] for row in rows] == ["brain", "1", "2"]
    assert [row["name"] for row in rows][1:] == ["outer", "inner"] and rows[0]["structure"] in ("whole brain", "brain")
    for row in rows:  # 1.06^3 = +19 %; an affine fit of the phantom comes close
        assert 8.0 < row["change_percent"] < 30.0, row
        assert row["followup_ml"] == pytest.approx(row["baseline_ml"] * (1 + row["change_percent"] / 100), rel=1e-6)
    series, chart = result["series"], result["chart"]
    assert chart.GetNthPlotSeriesNode(0) is series and series.GetTableNode() is result["table"]
    assert series.GetPlotType() == slicer.vtkMRMLPlotSeriesNode.PlotTypeBar
    assert series.GetYColumnName() == "change_percent"
    jacobian = result["jacobian"]
    assert np.median(slicer.util.arrayFromVolume(jacobian)) > 1.05
    assert jacobian.GetDisplayNode().GetColorNode().GetName() == "RegSuite Volume change"
    for composite in composites:
        assert composite.GetBackgroundVolumeID() == target.GetID()
        assert composite.GetForegroundVolumeID() == jacobian.GetID() and composite.GetForegroundOpacity() == 0.5


def test_bad_input_is_one_line_and_changes_nothing(case, tmp_path, monkeypatch):
    scene, logic, target = case["scene"], case["logic"], case["target"]
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))  # where the Logic's job folders go
    pair = [(case["a1"], case["a1_segmentation"])]
    before = node_ids(scene)

    def refused(error_type, needle, call, **kwargs):
        with pytest.raises(error_type) as caught:
            call(**kwargs)
        message = str(caught.value)
        assert needle in message and "\n" not in message, message
        assert node_ids(scene) == before and not logic.isRunning

    refused(InputError, "no target volume is selected", logic.segment, targetVolume=None, atlases=pair)
    refused(InputError, "no atlas given", logic.segment, targetVolume=target)
    refused(InputError, "is a vtkMRMLSegmentationNode, not a scalar volume", logic.segment,
            targetVolume=case["a1_segmentation"], atlases=pair)
    refused(InputError, "unknown fusion 'best'", logic.segment, targetVolume=target, atlases=pair, fusion="best")
    refused(PresetError, "no-such-preset", logic.segment, targetVolume=target, atlases=pair, preset="no-such-preset")
    refused(InputError, "leave it automatic when a Dask scheduler address is given", logic.segment,
            targetVolume=target, atlases=pair, workers=2, scheduler="tcp://127.0.0.1:8786")
    refused(InputError, "atlas list", logic.segment, targetVolume=target, atlasList=str(tmp_path / "none.csv"))
    refused(InputError, "holds no atlases.csv and no image/label pairs", logic.segment, targetVolume=target,
            atlasList=str(tmp_path))
    refused(InputError, "a template needs at least 2 images, got 1", logic.buildTemplate, images=[target])
    refused(InputError, "holds 0 image file(s)", logic.buildTemplate, images=str(tmp_path))
    refused(InputError, "the baseline and follow-up are the same volume 'subject'", logic.measureChange,
            baselineVolume=target, followupVolume=target)
    assert not list(temporary.iterdir())  # a refused run leaves no folder behind

    # the command itself refuses an atlas whose labels are not on its image's grid: its one line is the error
    small = sitk.Image([8, 8, 8], sitk.sitkUInt8)
    sitk.WriteImage(small, str(tmp_path / "small_labels.nii.gz"))
    job = logic.segment(target, atlases=[(case["a2"][0], str(tmp_path / "small_labels.nii.gz"))], preset="rigid",
                        waitForCompletion=False)
    records = run_to_end(logic)
    assert job.state == "failed" and job.errorType == "InputError"
    assert "are not on the grid of its image" in job.error and "\n" not in job.error
    assert [r for r in records if r["kind"] == "error"][0]["message"] == job.error
    assert node_ids(scene) == before and not os.path.exists(job.folder)
    with pytest.raises(InputError, match="are not on the grid of its image"):
        job.wait()

    # a Dask scheduler address goes to the command; cancelling stops it at once
    job = logic.segment(target, atlases=pair, atlasList=str(case["files"]), scheduler="tcp://127.0.0.1:9",
                        waitForCompletion=False)
    assert job.arguments[job.arguments.index("--scheduler") + 1] == "tcp://127.0.0.1:9"
    listed = Path(job.arguments[job.arguments.index("--atlas-list") + 1])
    assert listed.parent == Path(job.folder)  # the folder's image/label pairs, listed for the command
    with open(listed) as stream:
        assert [row["name"] for row in csv.DictReader(stream)] == ["a2"]
    logic.cancel()
    assert job.state == "cancelled" and node_ids(scene) == before and not os.path.exists(job.folder)
