"""Learned presets through the Registration module's Logic and batch script (slicer-core, real networks).

The networks work on their own 80x96x80 canonical grid whatever the input, so a small synthetic
pair of blobs is enough; accuracy is not tested here (the models are trained elsewhere), only that
the results reach the scene as the Logic stores every result, and that a HyperMorph result's
lambda changes in place.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import SimpleITK as sitk

from optional_modules import require_module

require_module("slicer", "the Registration module tests need slicer-core")

import slicer  # noqa: E402
from vtkmodules.util import numpy_support  # noqa: E402

from regsuite.errors import InputError, PresetError  # noqa: E402
from regsuite.io.compact_h5 import FIELD_QUANTUM_MM  # noqa: E402
from regsuite.mrml import LPS_FROM_RAS, sitk_to_volume, volume_to_sitk  # noqa: E402
from test_registration_logic import logic  # noqa: E402,F401  (the same Logic fixture: user presets in tmp_path)

#: the blobs are no T1 brains: the engine warns (checked once, where it is forwarded)
pytestmark = pytest.mark.filterwarnings("ignore::regsuite.errors.InputWarning")


def blob_image(shift=(0.0, 0.0, 0.0), size=(40, 44, 36), spacing=(2.5, 2.5, 2.5)) -> sitk.Image:
    """Ellipsoidal 'head' with inner blobs (content shifted by ``shift``, LPS mm), centred on the origin."""
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin([-(n - 1) * s / 2 for n, s in zip(size, spacing)])
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")[::-1], -1).reshape(-1, 3)
    p = index * np.array(spacing) + np.array(image.GetOrigin()) - np.array(shift)
    head = np.sum(p ** 2 / np.array([38.0, 45.0, 35.0]) ** 2, axis=1) < 1.0
    values = 60.0 * head + (50 * np.exp(-np.sum((p - [8, -6, 4]) ** 2 / [60, 90, 40], axis=1))
                            + 40 * np.exp(-np.sum((p - [-10, 9, -5]) ** 2 / [30, 25, 50], axis=1))) * head
    out = sitk.GetImageFromArray(values.reshape(size[::-1]).astype(np.float32))
    out.CopyInformation(image)
    return out


@pytest.fixture()
def pair(mrml):
    fixed = sitk_to_volume(blob_image(), mrml.scene, "fixed")
    moving = sitk_to_volume(blob_image((3.0, -2.0, 2.0)), mrml.scene, "moving")
    return fixed, moving


def _from_parent_lps(node, points_lps):
    transform = node.GetTransformFromParent()
    return np.array([LPS_FROM_RAS @ np.array(transform.TransformPoint(LPS_FROM_RAS @ p)) for p in points_lps])


def _grid_values(node) -> np.ndarray:
    """A copy of the displacement grid a grid transform node holds (RAS vectors)."""
    grid = node.GetTransformFromParent().GetDisplacementGrid()
    return numpy_support.vtk_to_numpy(grid.GetPointData().GetScalars()).copy()


def _voxel_points(image: sitk.Image, count: int = 40) -> np.ndarray:
    rng = np.random.default_rng(1)
    index = np.column_stack([rng.integers(0, n, count) for n in image.GetSize()])
    return np.array([image.TransformIndexToPhysicalPoint([int(v) for v in i]) for i in index])


def _nodes(scene):
    return [(scene.GetNthNode(i).GetID(), scene.GetNthNode(i).GetClassName()) for i in range(scene.GetNumberOfNodes())]


def test_voxelmorph_through_the_logic_gives_a_grid_node_and_forwards_warnings(logic, pair, mrml):
    fixed, moving = pair
    output = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "registered")
    lines: list[str] = []
    outputs = logic.process(fixed, moving, preset="brain-mri-voxelmorph", outputVolume=output, device="cpu",
                            threads=2, log=lines.append, background=False)
    node = outputs.transformNode
    assert node.IsA("vtkMRMLGridTransformNode") and node.GetName() == "moving_to_fixed"
    assert outputs.summary["kind"] == "displacement field" and outputs.summary["preset"] == "brain-mri-voxelmorph"
    assert outputs.summary["device"] == "cpu"  # the device chosen reached the engine
    assert [stage["model"] for stage in outputs.summary["stages"]] == ["rigid", "affine", "network"]
    assert outputs.lambdaUpdater is None and logic.lambdaUpdater(node) is None  # VoxelMorph has no lambda
    # stored from parent: at the fixed voxel centres the node maps points as the engine's transform does
    fixed_image, moving_image = volume_to_sitk(fixed), volume_to_sitk(moving)
    points = _voxel_points(fixed_image)
    expected = np.array([outputs.transform.TransformPoint(p.tolist()) for p in points])
    assert np.abs(_from_parent_lps(node, points) - expected).max() < 1e-3
    # the output volume is the moving image resampled with the engine's transform
    background = float(sitk.GetArrayViewFromImage(moving_image).min())
    resampled = sitk.Resample(moving_image, fixed_image, outputs.transform, sitk.sitkLinear, background)
    assert np.allclose(slicer.util.arrayFromVolume(output), sitk.GetArrayFromImage(resampled), atol=1e-3)
    # the engine's warnings (blobs are no T1 brains) reach the log and the summary, one line each
    warnings = outputs.summary["warnings"]
    assert warnings and all("\n" not in w for w in warnings)
    assert all(f"Warning: {w}" in lines for w in warnings) and "Warning:" in outputs.summaryText()


def test_learned_preset_asks_for_cuda_where_there_is_none(logic, pair, mrml):
    if logic.cudaAvailable():
        pytest.skip("this machine has CUDA")
    fixed, moving = pair
    count = mrml.scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="CUDA") as error:
        logic.process(fixed, moving, preset="brain-mri-hypermorph", device="cuda")
    assert "\n" not in str(error.value) and mrml.scene.GetNumberOfNodes() == count


def test_hypermorph_lambda_updates_the_node_in_place(logic, pair, mrml):
    fixed, moving = pair
    with pytest.raises(PresetError, match="lambda") as error:  # checked before anything runs
        logic.process(fixed, moving, preset="brain-mri-hypermorph", hyperLambda=1.5)
    assert "\n" not in str(error.value)
    with pytest.raises(PresetError, match="HyperMorph"):
        logic.process(fixed, moving, preset="brain-mri-voxelmorph", hyperLambda=0.5)
    outputs = logic.process(fixed, moving, preset="brain-mri-hypermorph", hyperLambda=0.3, device="cpu", threads=2)
    node = outputs.transformNode
    assert node.IsA("vtkMRMLGridTransformNode") and moving.GetParentTransformNode() is node
    assert outputs.summary["lambda"] == pytest.approx(0.3) and "lambda 0.30" in outputs.summaryText()
    assert logic.lambdaUpdater(node) is outputs.lambdaUpdater is not None
    before, nodes = _grid_values(node), _nodes(mrml.scene)

    update = logic.updateLambda(node, 0.9)
    after = _grid_values(node)
    assert _nodes(mrml.scene) == nodes and moving.GetParentTransformNode() is node  # no new node, same one
    assert after.shape == before.shape and np.abs(after - before).max() > 0.05
    assert outputs.summary["lambda"] == 0.9
    # the node holds the updater's transform (also what the checkerboard now uses)
    points = _voxel_points(volume_to_sitk(fixed))
    expected = np.array([outputs.transform.TransformPoint(p.tolist()) for p in points])
    assert np.abs(_from_parent_lps(node, points) - expected).max() < 1e-6
    assert update.lam == 0.9 and update.seconds > 0

    # back at the run's lambda, the session reproduces the engine's field (stored to FIELD_QUANTUM_MM)
    logic.updateLambda(node, 0.3)
    assert np.abs(_grid_values(node) - before).max() < 2 * FIELD_QUANTUM_MM + 1e-4

    # a lambda outside [0, 1]: one line, node untouched; a node without a HyperMorph result: one line
    current = _grid_values(node)
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(PresetError, match="lambda") as error:
            logic.updateLambda(node, bad)
        assert "\n" not in str(error.value)
    other = mrml.scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "other")
    with pytest.raises(InputError, match="no HyperMorph result"):
        logic.updateLambda(other, 0.5)
    assert np.array_equal(_grid_values(node), current)


def test_lambda_job_computes_in_a_thread_and_only_the_latest_value(logic, pair, mrml):
    from RegSuiteRegistrationLib.lambdas import LambdaJob

    fixed, moving = pair
    output = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "registered")
    outputs = logic.process(fixed, moving, preset="brain-mri-hypermorph", outputVolume=output, device="cpu",
                            threads=2, background=False)
    node, updater = outputs.transformNode, outputs.lambdaUpdater
    volume_before, nodes = slicer.util.arrayFromVolume(output).copy(), _nodes(mrml.scene)
    computed: list[float] = []
    compute = updater.compute
    updater.compute = lambda lam: (computed.append(lam), compute(lam))[1]
    job = LambdaJob(updater)
    job.prepare()  # the network loads in the thread
    for lam in (0.1, 0.2, 0.35, 0.8):  # a drag: values arrive faster than they are computed
        job.request(lam)
    applied, errors = [], []
    deadline = time.monotonic() + 300
    while job.busy and time.monotonic() < deadline:
        update, error = job.poll()
        applied += [update.lam] if update is not None else []
        errors += [error] if error else []
        time.sleep(0.02)
    assert errors == [] and computed == [0.8] and applied == [0.8]  # the warm-up ran while they arrived
    assert updater.lam == 0.8 and _nodes(mrml.scene) == nodes
    # the output volume follows: the moving image resampled with the new transform
    moving_image, fixed_image = volume_to_sitk(moving), volume_to_sitk(fixed)
    background = float(sitk.GetArrayViewFromImage(moving_image).min())
    resampled = sitk.Resample(moving_image, fixed_image, outputs.transform, sitk.sitkLinear, background)
    got = slicer.util.arrayFromVolume(output)
    assert np.allclose(got, sitk.GetArrayFromImage(resampled), atol=1e-3) and not np.allclose(got, volume_before)
    job.request(3.0)  # a bad value: reported by poll, nothing applied
    job.wait()
    update, error = job.poll()
    assert update is None and "lambda" in error and "\n" not in error and updater.lam == 0.8


def test_batch_runs_learned_presets_and_lambda(mrml, tmp_path, capsys):
    from RegSuiteRegistrationLib import batch

    fixed, moving = tmp_path / "fixed.nrrd", tmp_path / "moving.nrrd"
    sitk.WriteImage(blob_image(), str(fixed))
    sitk.WriteImage(blob_image((3.0, -2.0, 2.0)), str(moving))
    out = tmp_path / "moving_to_fixed.h5"
    common = ["--fixed", str(fixed), "--moving", str(moving), "--output-transform", str(out), "--device", "cpu"]
    assert batch.main(common + ["--preset", "brain-mri-voxelmorph", "--lambda", "0.4"], scene=mrml.scene) == 2
    assert "HyperMorph" in capsys.readouterr().err and not out.exists()
    code = batch.main(common + ["--preset", "brain-mri-hypermorph", "--lambda", "0.4"], scene=mrml.scene)
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "lambda 0.40" in printed.out and "Warning: " in printed.out
    transform = sitk.ReadTransform(str(out))  # the grid node, written by Slicer's storage node
    assert transform.TransformPoint((0.0, 0.0, 0.0)) != (0.0, 0.0, 0.0)


def test_stage_table_rows_of_learned_presets(logic, tmp_path):
    from RegSuiteRegistrationLib.logic import presetStagesToRows, rowsToPresetStages

    preset = logic.loadPreset("brain-mri-fast")
    rows = presetStagesToRows(preset)
    assert rows[2] == {"model": "network", "metric": "lncc", "levels": "brain-t1-voxelmorph", "regularization": "",
                       "step": ""}
    assert rowsToPresetStages(preset, rows) == preset  # per-level options of the svf stage kept
    rows[3]["levels"] = "2/1/10; 1/0/5"
    edited = rowsToPresetStages(preset, rows)["stages"][3]["levels"]
    assert [lv["iterations"] for lv in edited] == [10, 5] and edited[1]["learning_rate"] == 2.0
    # a cascade: the model, then xK; editing K changes the runs, a bad K is the preset's error
    cascade = logic.loadPreset("brain-mri-voxelmorph-cascade")
    rows = presetStagesToRows(cascade)
    assert rows[-1]["levels"] == "brain-t1-voxelmorph-cascade x2"
    assert rowsToPresetStages(cascade, rows) == cascade
    rows[-1]["levels"] = "brain-t1-voxelmorph-cascade x3"
    assert rowsToPresetStages(cascade, rows)["stages"][-1]["cascade"] == 3
    rows[-1]["levels"] = "brain-t1-voxelmorph"
    assert rowsToPresetStages(cascade, rows)["stages"][-1] == {**cascade["stages"][-1], "cascade": 1,
                                                               "network": "brain-t1-voxelmorph"}
    rows[-1]["levels"] = "brain-t1-voxelmorph x9"
    with pytest.raises(PresetError, match="cascade"):
        rowsToPresetStages(cascade, rows)
    hyper = logic.loadPreset("brain-mri-hypermorph")
    rows = presetStagesToRows(hyper)
    assert rowsToPresetStages(hyper, rows)["stages"][-1]["lambda"] == hyper["stages"][-1]["lambda"]
    rows[-1]["levels"] = "no-such-model"
    with pytest.raises(PresetError, match="unknown learned model 'no-such-model'"):
        rowsToPresetStages(hyper, rows)
    from regsuite.engine.config import load_preset
    from test_learning_affine import tiny_affine_model

    folder = str(tiny_affine_model(tmp_path / "affine"))
    learned_affine = load_preset({"name": "learned-affine", "initialization": "moments", "stages": [
        {"model": "affine-network", "network": folder, "metric": "ncc"},
        {"model": "affine", "metric": "ncc", "levels": [{"shrink": 4, "smoothing": 2, "iterations": 10}]}]}).to_dict()
    rows = presetStagesToRows(learned_affine)
    assert rows[0] == {"model": "affine-network", "metric": "ncc", "levels": folder, "regularization": "",
                       "step": ""}
    assert rowsToPresetStages(learned_affine, rows) == learned_affine
    rows[0]["levels"] = "brain-t1-voxelmorph"  # a deformable model in the affine stage
    with pytest.raises(PresetError, match="is a deformable model; use it in a network stage"):
        rowsToPresetStages(learned_affine, rows)
    assert logic.presetWithLambda("brain-mri-hypermorph", 0.2)["stages"][-1]["lambda"] == 0.2
    assert logic.isHyperMorphPreset("brain-mri-hypermorph") and not logic.isHyperMorphPreset("brain-mri-fast")
