"""The Registration module's Logic end to end on real MRML classes (slicer-core) and the real engine.

Volumes are real ``vtkMRMLScalarVolumeNode``s; the registration runs in a real background process;
results are checked against the engine's own SimpleITK transform and against known answers.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from optional_modules import require_module

require_module("slicer", "the Registration module tests need slicer-core")

import slicer  # noqa: E402

from regsuite.data import sample_paths  # noqa: E402
from regsuite.errors import InputError, PresetError, RegistrationCancelled, RegistrationFailed  # noqa: E402
from regsuite.evaluation.landmarks import landmark_errors  # noqa: E402
from regsuite.io.points import read_points  # noqa: E402
from regsuite.mrml import LPS_FROM_RAS, sitk_to_volume, volume_to_sitk  # noqa: E402

LPS4 = np.diag([-1.0, -1.0, 1.0, 1.0])

#: A small, quick rigid recipe (the shipped presets are tuned for full-size scans).
QUICK_RIGID = {"name": "quick-rigid", "initialization": "geometry",
               "stages": [{"model": "rigid", "metric": "ncc", "learning_rate": 1.0,
                           "levels": [{"shrink": 2, "smoothing": 1, "iterations": 60},
                                      {"shrink": 1, "smoothing": 0, "iterations": 40}]}]}
SLOW_DEFORMABLE = {"name": "slow", "initialization": "geometry",
                   "stages": [{"model": "svf", "metric": "lncc", "optimizer": "adam", "learning_rate": 0.1,
                               "tolerance": 0.0, "levels": [{"shrink": 1, "smoothing": 0, "iterations": 100000}]}]}


def blob_image(shift=(0.0, 0.0, 0.0), size=(36, 32, 28), spacing=(1.5, 1.7, 2.0), origin=(-25.0, -24.0, -26.0),
               angle=0.15) -> sitk.Image:
    """An oblique, anisotropic volume with asymmetric blobs, content shifted by ``shift`` (LPS mm)."""
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(sitk.VersorTransform((0.2, 0.3, 1.0), angle).GetMatrix())
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")[::-1], -1).reshape(-1, 3)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    world = index * np.array(spacing) @ direction.T + np.array(origin)
    p = world - np.array(shift)
    values = (100 * np.exp(-np.sum((p - [4, -3, 2]) ** 2 / [60, 90, 40], axis=1))
              + 60 * np.exp(-np.sum((p - [-9, 7, -5]) ** 2 / [30, 25, 50], axis=1))
              + 40 * np.exp(-np.sum((p - [8, 9, 8]) ** 2 / [20, 40, 30], axis=1)))
    array = values.reshape(size[::-1]).astype(np.float32)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


@pytest.fixture()
def logic(mrml, tmp_path, monkeypatch):
    monkeypatch.setenv("REGSUITE_USER_PRESETS", str(tmp_path / "presets"))
    from RegSuiteRegistrationLib.logic import RegSuiteRegistrationLogic

    return RegSuiteRegistrationLogic()


@pytest.fixture()
def pair(mrml):
    """Fixed and moving volume nodes on different oblique grids; moving content shifted by SHIFT."""
    shift = np.array([4.0, -3.0, 2.5])
    fixed = sitk_to_volume(blob_image(), mrml.scene, "fixed")
    moving = sitk_to_volume(blob_image(shift, size=(34, 34, 26), spacing=(1.6, 1.6, 2.1), origin=(-22.0, -27.0, -24.0),
                                       angle=-0.1), mrml.scene, "moving")
    return fixed, moving, shift


def _arrays(*nodes):
    return [slicer.util.arrayFromVolume(n).copy() for n in nodes]


def _from_parent_lps(node, point_lps):
    return LPS_FROM_RAS @ np.array(node.GetTransformFromParent().TransformPoint(LPS_FROM_RAS @ point_lps))


def test_process_recovers_known_shift_in_background_and_keeps_inputs(logic, pair, mrml):
    fixed, moving, shift = pair
    before = _arrays(fixed, moving)
    fixed_matrix = volume_to_sitk(fixed).GetDirection()
    lines, events = [], []
    outputs = logic.process(fixed, moving, preset=QUICK_RIGID, device="cpu", threads=1, progress=events.append,
                            log=lines.append)
    node = outputs.transformNode
    assert node.IsA("vtkMRMLLinearTransformNode")
    for point in ([0.0, 0.0, 0.0], [5.0, -4.0, 3.0]):
        mapped = _from_parent_lps(node, np.array(point))
        assert np.allclose(mapped, np.array(point) + shift, atol=0.3), mapped
    # the node holds the engine's own transform
    point = np.array([3.0, 2.0, -1.0])
    assert np.allclose(_from_parent_lps(node, point), outputs.transform.TransformPoint(point), atol=1e-4)
    assert node.GetNodeReference(node.GetFixedNodeReferenceRole()) is fixed
    assert node.GetNodeReference(node.GetMovingNodeReferenceRole()) is moving
    assert moving.GetParentTransformNode() is node  # visible at once, no output volume asked
    assert fixed.GetParentTransformNode() is None
    after = _arrays(fixed, moving)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert volume_to_sitk(fixed).GetDirection() == fixed_matrix
    assert events and events[-1]["iteration"] >= 1 and {"stage", "level", "metric", "elapsed"} <= set(events[-1])
    text = outputs.summaryText()
    assert "rigid" in text and "linear" in text and any("Started" in line for line in lines)
    stage = outputs.summary["stages"][0]
    assert stage["metric_after"] < stage["metric_before"]


def test_output_volume_matches_engine_resampling_and_moving_stays_put(logic, pair, mrml):
    fixed, moving, _ = pair
    output = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "registered")
    outputs = logic.process(fixed, moving, preset=QUICK_RIGID, outputVolume=output, device="cpu", threads=1,
                            background=False)
    assert outputs.outputVolumeNode is output and moving.GetParentTransformNode() is None
    fixed_image, moving_image = volume_to_sitk(fixed), volume_to_sitk(moving)
    background = float(sitk.GetArrayViewFromImage(moving_image).min())
    expected = sitk.GetArrayFromImage(sitk.Resample(moving_image, fixed_image, outputs.transform, sitk.sitkLinear,
                                                    background))
    got = slicer.util.arrayFromVolume(output)
    assert got.shape == expected.shape and np.allclose(got, expected, atol=1e-3)
    assert np.allclose(volume_to_sitk(output).GetOrigin(), fixed_image.GetOrigin())
    # the Volumes logic, resampling the moving volume under the transform node, agrees
    moving.SetAndObserveTransformNodeID(outputs.transformNode.GetID())
    slicer_res = slicer.util.arrayFromVolume(slicer.vtkSlicerVolumesLogic.ResampleVolumeToReferenceVolume(moving, fixed))
    inside = (expected > background + 1) & (slicer_res > background + 1)
    assert inside.sum() > 1000 and np.abs(slicer_res - expected)[inside].max() < 0.01 * np.ptp(expected)


def test_poll_reports_progress_and_cancel_leaves_scene_as_it_was(logic, pair, mrml):
    fixed, moving, _ = pair
    count = mrml.scene.GetNumberOfNodes()
    events: list[dict] = []
    job = logic.process(fixed, moving, preset=SLOW_DEFORMABLE, device="cpu", threads=1, progress=events.append,
                        waitForCompletion=False)
    deadline = time.monotonic() + 120  # only a guard against a hang (the worker imports torch first)
    while job.poll() and len(events) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(events) >= 3, "no progress from the background process"
    iterations = [e["iteration"] for e in events]
    assert iterations == sorted(iterations)
    # The worker stopping at the flag within an iteration, or being killed when it does not,
    # is checked in test_jobs.py; here: the job ends at once and reports nothing more.
    job.cancel()
    delivered = len(events)
    assert job.state == "cancelled" and not job.poll()
    assert len(events) == delivered
    with pytest.raises(RegistrationCancelled):
        job.wait()
    assert mrml.scene.GetNumberOfNodes() == count
    assert moving.GetParentTransformNode() is None


def test_existing_output_transform_is_reused_and_rerun_ignores_previous_result(logic, pair, mrml):
    fixed, moving, shift = pair
    node = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "mine")
    first = logic.process(fixed, moving, preset=QUICK_RIGID, outputTransform=node, device="cpu", threads=1,
                          background=False)
    assert first.transformNode is node and moving.GetParentTransformNode() is node
    # run again with the moving volume still under the result: same answer, not a doubled shift
    second = logic.process(fixed, moving, preset=QUICK_RIGID, outputTransform=node, device="cpu", threads=1,
                           background=False)
    assert second.transformNode is node
    assert np.allclose(_from_parent_lps(node, np.zeros(3)), shift, atol=0.3)


def test_sample_lung_pair_landmark_error_drops(logic, mrml):
    """The shipped real CT pair (2.7 x 2.7 x 5 mm): affine registration through the Logic."""
    paths = sample_paths()
    fixed = sitk_to_volume(sitk.ReadImage(str(paths["fixed"]), sitk.sitkFloat32), mrml.scene, "lung_fixed")
    moving = sitk_to_volume(sitk.ReadImage(str(paths["moving"]), sitk.sitkFloat32), mrml.scene, "lung_moving")
    mask = sitk_to_volume(sitk.ReadImage(str(paths["fixed_mask"])), mrml.scene, "lung_mask", labelmap=True)
    preset = logic.loadPreset("lung-ct")
    preset["stages"] = [s for s in preset["stages"] if s["model"] in ("rigid", "affine")]
    outputs = logic.process(fixed, moving, preset=preset, fixedMask=mask, device="cpu", threads=2)
    fixed_points = read_points(paths["fixed_points"])
    moving_points = read_points(paths["moving_points"])
    before = landmark_errors(fixed_points, moving_points).mean()
    mapped = np.array([_from_parent_lps(outputs.transformNode, p) for p in fixed_points])
    after = np.linalg.norm(mapped - moving_points, axis=1).mean()
    assert before > 30 and after < 0.4 * before, (before, after)


OASIS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "oasis_trt20"


def _oasis(subject: int, shrink: int) -> tuple[sitk.Image, sitk.Image]:
    folder = OASIS / f"OASIS-TRT-20-{subject}"
    image = sitk.ReadImage(str(folder / "t1weighted_brain.nii.gz"), sitk.sitkFloat32)
    labels = sitk.ReadImage(str(folder / "labels.DKT31.manual+aseg.nii.gz"))
    small = sitk.Shrink(sitk.SmoothingRecursiveGaussian(image, 0.5 * shrink), [shrink] * 3)
    return small, sitk.Resample(labels, small, sitk.Transform(), sitk.sitkNearestNeighbor, 0)


@pytest.mark.skipif(not OASIS.is_dir(), reason="needs ../shared/data")
def test_shared_brain_pair_downsampled_dice_improves(logic, mrml):
    """Two real OASIS-TRT-20 brains, downsampled to 4 mm, affine through the Logic: Dice goes up."""
    fixed_img, fixed_lab = _oasis(1, 4)
    moving_img, moving_lab = _oasis(2, 4)
    fixed = sitk_to_volume(fixed_img, mrml.scene, "brain_fixed")
    moving = sitk_to_volume(moving_img, mrml.scene, "brain_moving")
    outputs = logic.process(fixed, moving, preset="affine", device="cpu", threads=2, background=False)
    from regsuite.evaluation.overlap import dice_per_label  # noqa: PLC0415

    warped = sitk.Resample(moving_lab, fixed_lab, outputs.transform, sitk.sitkNearestNeighbor, 0)
    identity = sitk.Resample(moving_lab, fixed_lab, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    after = np.mean(list(dice_per_label(fixed_lab, warped).values()))
    before = np.mean(list(dice_per_label(fixed_lab, identity).values()))
    assert after > before + 0.05, (before, after)


# ---------------------------------------------------------------------------- bad input
def test_bad_inputs_give_one_line_errors_and_change_nothing(logic, pair, mrml, tmp_path):
    fixed, moving, _ = pair
    count = mrml.scene.GetNumberOfNodes()
    cases = [
        (dict(fixedVolume=None, movingVolume=moving), "no fixed volume"),
        (dict(fixedVolume=fixed, movingVolume=None), "no moving volume"),
        (dict(fixedVolume=fixed, movingVolume=fixed), "same node"),
        (dict(fixedVolume=fixed, movingVolume=moving, outputVolume=moving), "overwritten"),
        (dict(fixedVolume=fixed, movingVolume=moving, preset="no-such-preset"), "unknown preset"),
        (dict(fixedVolume=fixed, movingVolume=moving, device="tpu"), "unknown device"),
    ]
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    cases.append((dict(fixedVolume=fixed, movingVolume=moving, preset=str(bad)), "bad.json"))
    if not logic.cudaAvailable():
        cases.append((dict(fixedVolume=fixed, movingVolume=moving, device="cuda"), "CUDA"))
    vector = mrml.scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    vector.CopyOrientation(fixed)
    import vtk

    image = vtk.vtkImageData()
    image.SetDimensions(4, 4, 4)
    image.AllocateScalars(vtk.VTK_FLOAT, 3)
    vector.SetAndObserveImageData(image)
    cases.append((dict(fixedVolume=vector, movingVolume=moving), "components"))
    far = sitk_to_volume(sitk.Image([8, 8, 8], sitk.sitkUInt8) + 1, mrml.scene, "far_mask", labelmap=True)
    far.SetOrigin(500.0, 500.0, 500.0)
    cases.append((dict(fixedVolume=fixed, movingVolume=moving, fixedMask=far), "does not overlap"))
    count = mrml.scene.GetNumberOfNodes()
    before = _arrays(fixed, moving)
    for kwargs, words in cases:
        with pytest.raises(InputError) as error:
            logic.process(**kwargs)
        message = str(error.value)
        assert words in message and "\n" not in message, message
    assert mrml.scene.GetNumberOfNodes() == count
    assert all(np.array_equal(a, b) for a, b in zip(before, _arrays(fixed, moving)))
    assert moving.GetParentTransformNode() is None


def test_diverging_registration_reports_failure(logic, pair, mrml):
    fixed, moving, _ = pair
    preset = json.loads(json.dumps(QUICK_RIGID))
    preset["stages"][0]["learning_rate"] = 1e9
    count = mrml.scene.GetNumberOfNodes()
    job = logic.process(fixed, moving, preset=preset, device="cpu", threads=1, waitForCompletion=False)
    with pytest.raises(RegistrationFailed) as error:
        job.wait()
    assert job.state == "failed" and "\n" not in str(error.value) and str(error.value)
    assert mrml.scene.GetNumberOfNodes() == count


# ---------------------------------------------------------------------------- presets
def test_user_presets_save_load_list_and_table_round_trip(logic):
    from RegSuiteRegistrationLib.logic import presetStagesToRows, rowsToPresetStages

    preset = logic.loadPreset("deformable")
    rows = presetStagesToRows(preset)
    assert [r["model"] for r in rows] == [s["model"] for s in preset["stages"]]
    assert rowsToPresetStages(preset, rows)["stages"] == preset["stages"]
    rows[0]["levels"] = "4/2/10; 2/1/5"
    rows[-1]["step"] = "0.25"
    edited = rowsToPresetStages(preset, rows)
    assert [lv["iterations"] for lv in edited["stages"][0]["levels"]] == [10, 5]
    assert edited["stages"][-1]["learning_rate"] == 0.25
    path = logic.savePreset(edited, "my-deformable")
    assert os.path.isfile(path) and "my-deformable" in logic.presetNames()
    assert logic.loadPreset("my-deformable")["stages"] == edited["stages"]
    with pytest.raises(PresetError, match="built-in"):
        logic.savePreset(edited, "affine")
    rows[0]["levels"] = "4-2-10"
    with pytest.raises(PresetError, match="stage 1"):
        rowsToPresetStages(preset, rows)


def test_dependencies_constraints_pin_bundled_packages(tmp_path):
    import importlib.metadata

    from RegSuiteRegistrationLib import dependencies

    assert dependencies.torchAvailable()
    path = dependencies.constraintsFile(str(tmp_path))
    text = Path(path).read_text()
    assert f"numpy=={importlib.metadata.version('numpy')}" in text
    assert f"SimpleITK=={importlib.metadata.version('SimpleITK')}" in text


def test_ensure_torch_installs_only_what_is_missing_after_the_user_agrees(monkeypatch, mrml):
    """h5py missing (torch present): one question, then pip installs h5py alone with the bundled
    packages pinned; declining installs nothing; nothing missing asks nothing."""
    import importlib.util

    import slicer
    from RegSuiteRegistrationLib import dependencies

    real_find_spec = importlib.util.find_spec
    hidden = {"h5py"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in hidden else real_find_spec(name, *a))
    asked, installed = [], []
    answer = [False]
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda *a, **k: asked.append(a) or answer[0],
                        raising=False)
    monkeypatch.setattr(slicer.util, "pip_install",
                        lambda request: installed.append((request, Path(request.split()[-1]).read_text())),
                        raising=False)
    assert dependencies.missingPackages() == ["h5py"]
    assert dependencies.ensureTorch() is False and len(asked) == 1 and installed == []  # declined
    answer[0] = True
    assert dependencies.ensureTorch() is True and len(asked) == 2
    [(request, constraints)] = installed
    assert request.startswith("h5py --constraint ") and "torch" not in request
    assert "numpy==" in constraints
    hidden.clear()
    assert dependencies.ensureTorch() is True and len(asked) == 2 and len(installed) == 1


def test_cuda_check_reads_the_torch_build_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys; sys.path[:0] = sys.argv[1:];"
            "from RegSuiteRegistrationLib.logic import torchCudaBuild, nvidiaDriverPresent;"
            "build = torchCudaBuild(); nvidiaDriverPresent();"
            "print(repr(build), 'torch' in sys.modules)")
    root = Path(__file__).resolve().parents[2] / "RegistrationSuite"
    out = subprocess.run([sys.executable, "-c", code, str(root / "RegSuiteRegistration"), str(root)],
                         capture_output=True, text=True, check=True).stdout.split()
    import torch

    assert out[0] == repr(torch.version.cuda) and out[1] == "False"
