"""The network stage in the engine: physical-space export, instance optimization from the
network's field, the shipped models' checks, presets and bad input."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from regsuite.engine.config import load_preset, with_lambda
from regsuite.engine.grid import Grid
from regsuite.engine.registration import register
from regsuite.engine.transforms.dense import resample_field
from regsuite.errors import InputError, InputWarning, PresetError
from regsuite.learning.canonical import (SMOOTHING_MARGIN_SIGMAS, _footprint, _smoothing_sigma, canonical_grid, on_grid,
                                         prepare_intensity, prepared_on_grid)
from regsuite.learning.inference import CanonicalPair, predict
from regsuite.learning.models import MODEL_DIR, card_markdown, list_models, load_model

VOXELMORPH = "brain-t1-voxelmorph"
HYPERMORPH = "brain-t1-hypermorph"


def brain_like(size=(70, 84, 64), spacing=(1.4, 1.2, 1.6), direction=None, shift=(0.0, 0.0, 0.0),
               seed: int = 0) -> sitk.Image:
    """An ellipsoid 'brain' (bright 'white matter' core, darker rim, dark 'ventricles') on any grid."""
    image = sitk.Image([int(n) for n in size], sitk.sitkFloat32)
    image.SetSpacing([float(s) for s in spacing])
    if direction is not None:
        image.SetDirection(np.asarray(direction, dtype=float).ravel().tolist())
    grid = Grid.from_sitk(image)
    centre = grid.center_world() + np.asarray(shift)
    image.SetOrigin(tuple(np.asarray(image.GetOrigin()) - (centre - grid.center_world()) + np.asarray(shift)))
    points = Grid.from_sitk(image).world_points()[0].double().numpy() - centre
    radius = np.sqrt((points[..., 0] / 60) ** 2 + (points[..., 1] / 72) ** 2 + (points[..., 2] / 55) ** 2)
    values = np.where(radius < 1.0, 0.55, 0.0) + np.where(radius < 0.75, 0.35, 0.0)
    ventricles = np.sqrt(((np.abs(points[..., 0]) - 9) / 6) ** 2 + (points[..., 1] / 22) ** 2 + ((points[..., 2] - 5) / 9) ** 2)
    values = np.where(ventricles < 1.0, 0.15, values)
    rng = np.random.default_rng(seed)
    values = values + np.where(values > 0, 0.03 * rng.standard_normal(values.shape), 0.0)
    out = sitk.GetImageFromArray(values.astype(np.float32))
    out.CopyInformation(image)
    return out


def oblique(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]]) @ \
        np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a / 2), -np.sin(a / 2)], [0.0, np.sin(a / 2), np.cos(a / 2)]])


NETWORK_ONLY = {"name": "network-only", "initialization": "none",
                "stages": [{"model": "network", "network": VOXELMORPH}]}


def test_shipped_models_are_listed_and_load():
    assert {VOXELMORPH, HYPERMORPH} <= set(list_models())
    for name in list_models():
        card = json.loads((MODEL_DIR / name / "card.json").read_text())
        assert (MODEL_DIR / name / card["weights"]["file"]).stat().st_size < 20 * 2 ** 20
        for key in ("architecture", "parameters", "grid", "normalization", "training", "validation", "licence"):
            assert key in card, (name, key)
        assert "CC BY-NC-SA" in card["licence"]
        markdown = (MODEL_DIR / name / "card.md").read_text()
        assert card["weights"]["sha256"] in markdown and card["training"]["command"] in markdown
        assert markdown == card_markdown(card), name  # the human-readable card says what card.json says
        # the config beside the card is the one the card records (the card's has every default filled in)
        recorded = card["training"]["config"]
        for key, value in json.loads((MODEL_DIR / name / "train.json").read_text()).items():
            if isinstance(value, dict):
                assert {k: recorded[key][k] for k in value} == value, (name, key)
            else:
                assert recorded[key] == value, (name, key)
        # no machine paths: the command names runs/<folder> and paths relative to the repository
        root = Path(__file__).resolve().parents[2]
        assert not any(str(folder) in json.dumps(card) for folder in (root, root.parent / "shared"))
        assert load_model(name).network.training is False


def test_inputs_smoothed_over_the_grids_footprint_equal_the_whole_images():
    """The network's inputs are smoothed only where its grid samples (through the affine) plus a
    margin: on an oblique, anisotropic image larger than the grid the canonical tensors must equal
    those of the whole image smoothed, to float32 rounding (the margin's bound, see canonical.py;
    a 3-sigma margin leaves differences of 3e-4 here)."""
    rotation = sitk.VersorTransform((0.3, -0.2, 0.5), 0.4).GetMatrix()
    image = brain_like(size=(150, 170, 120), spacing=(1.0, 0.9, 1.1), direction=rotation, seed=3)
    grid = canonical_grid(image, size=(14, 16, 14), spacing=4.0)  # 56x64x56 mm inside the brain
    affine = sitk.AffineTransform((1.05, 0.03, 0.0, -0.02, 0.96, 0.04, 0.01, 0.0, 1.02), (4.0, -3.0, 2.0))
    margin = SMOOTHING_MARGIN_SIGMAS * max(_smoothing_sigma(image, 4.0))
    part = _footprint(image, grid, affine, margin)
    assert np.prod(part.GetSize()) < 0.5 * np.prod(image.GetSize())  # cropped, its borders inside the brain
    for transform in (None, affine):
        whole = on_grid(prepare_intensity(image, spacing=4.0), grid, transform)
        assert torch.allclose(prepared_on_grid(image, grid, transform, spacing=4.0), whole, atol=1e-6, rtol=0)
    bent = sitk.CompositeTransform([affine, sitk.DisplacementFieldTransform(
        sitk.Image([4, 4, 4], sitk.sitkVectorFloat64, 3))])
    assert _footprint(image, grid, bent, margin) is image  # a non-linear transform: no crop
    far = sitk.TranslationTransform(3, (900.0, 0.0, 0.0))  # the grid lands outside the image: zeros, no error
    assert torch.count_nonzero(prepared_on_grid(image, grid, far, spacing=4.0)) == 0


def test_exported_field_is_the_networks_field_in_physical_space():
    """Oblique, anisotropic fixed grid; a moving image on another grid: the written transform
    at the fixed voxels equals ``x + exp(v)(x)`` computed from the network's own output."""
    fixed = brain_like(direction=oblique(20.0))
    moving = brain_like(size=(60, 70, 80), spacing=(1.0, 1.5, 1.1), shift=(3.0, -2.0, 4.0), seed=1)
    result = register(fixed, moving, NETWORK_ONLY, threads=1)
    model = load_model(VOXELMORPH)
    pair = CanonicalPair.build(model, fixed, moving, sitk.Transform())
    velocity = predict(model, pair)
    fixed_grid = Grid.from_sitk(fixed)
    expected = resample_field(velocity.displacement(), velocity.grid, fixed_grid, padding="zeros")[0]
    expected = expected.permute(1, 2, 3, 0).double().numpy()
    # the largest displacement must be well above the tolerance for the check to mean something
    assert np.abs(expected).max() > 1.0
    rng = np.random.default_rng(0)
    index = np.stack([rng.integers(0, n, 400) for n in fixed.GetSize()], axis=1)
    world = fixed_grid.index_to_world_points(index)
    got = np.array([result.transform.TransformPoint(tuple(p)) for p in world]) - world
    want = expected[index[:, 2], index[:, 1], index[:, 0]]
    assert np.abs(got - want).max() < 1e-3  # float32 field: well under a micrometre


def test_written_file_reproduces_the_engines_warped_image(tmp_path: Path):
    from regsuite.io.transforms import read_transform, write_transform

    fixed = brain_like(direction=oblique(-15.0))
    # the moving image holds the whole 'brain', so no sample falls on its edge, where a rounding
    # of the field could flip a point between inside and outside
    moving = brain_like(size=(110, 120, 100), spacing=(1.3, 1.3, 1.3), shift=(2.0, 3.0, -2.0), seed=2)
    result = register(fixed, moving, "brain-mri-voxelmorph", threads=1)
    path = tmp_path / "t.h5"
    write_transform(result.transform, str(path))
    again = sitk.Resample(moving, fixed, read_transform(str(path)), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    engine = result.resample(moving)
    # the file's field is rounded to 2^-10 mm: intensities move by at most gradient x 0.001 mm
    assert np.abs(sitk.GetArrayFromImage(again) - sitk.GetArrayFromImage(engine)).max() < 2e-3
    assert result.inverse is not None  # exp(-v) composed with the inverse affine


def test_instance_optimization_starts_from_the_networks_field():
    """An svf stage with initial_field 'previous' and no iterations holds the network's velocity
    (resampled onto its own level grid) and gives about the network's map."""
    fixed = brain_like()
    moving = brain_like(shift=(2.0, -3.0, 1.0), seed=3)
    network = register(fixed, moving, NETWORK_ONLY, threads=1)
    refined = dict(NETWORK_ONLY, stages=NETWORK_ONLY["stages"] + [{
        "model": "svf", "initial_field": "previous", "optimizer": "gaussian", "update": "symmetric",
        "integration_steps": 7, "levels": [{"shrink": 2, "smoothing": 1, "iterations": 0}]}])
    same = register(fixed, moving, refined, threads=1)
    start = resample_field(network.deformable.field, network.deformable.grid, same.deformable.grid, padding="zeros")
    assert float(start.abs().max()) > 0.1
    assert torch.equal(same.deformable.field.detach(), start)
    zero = dict(refined, stages=[refined["stages"][0], dict(refined["stages"][1], initial_field="zero")])
    with pytest.raises(PresetError, match="follows a deformable stage"):
        register(fixed, moving, zero, threads=1)
    grid = Grid.from_sitk(fixed)
    index = np.argwhere(sitk.GetArrayFromImage(fixed) > 0.5)[::97][:, ::-1]
    world = grid.index_to_world_points(index)
    a = np.array([network.transform.TransformPoint(tuple(p)) for p in world]) - world
    b = np.array([same.transform.TransformPoint(tuple(p)) for p in world]) - world
    # the same velocity integrated on another grid (4 mm vs the 2.8 mm level): close, not equal
    assert np.linalg.norm(a - b, axis=1).mean() < 0.25 * np.linalg.norm(a, axis=1).mean()


def test_hypermorph_lambda_changes_the_field_and_is_checked():
    fixed = brain_like()
    moving = brain_like(shift=(2.0, -3.0, 1.0), seed=4)
    config = load_preset("brain-mri-hypermorph")
    model = load_model(HYPERMORPH)
    pair = CanonicalPair.build(model, fixed, moving, sitk.Transform())
    low, high = predict(model, pair, 0.0).field, predict(model, pair, 1.0).field
    assert not torch.equal(low, high)
    assert with_lambda(config, 0.3).stages[-1].hyper_lambda == 0.3
    for bad in (-0.1, 1.5, float("nan"), "0.3"):
        with pytest.raises(PresetError, match="lambda"):
            with_lambda(config, bad)
    with pytest.raises(PresetError, match="no HyperMorph network stage"):
        with_lambda(load_preset("brain-mri-voxelmorph"), 0.3)
    with pytest.raises(PresetError, match="'lambda' is for HyperMorph models"):
        load_preset({"stages": [{"model": "network", "network": VOXELMORPH, "lambda": 0.2}]})


@pytest.mark.parametrize("stages, message", [
    ([{"model": "network"}], "needs \"network\""),
    ([{"model": "network", "network": "no-such-model"}], "unknown learned model 'no-such-model'"),
    ([{"model": "affine"}, {"model": "svf", "initial_field": "previous"}], "does not follow a network or svf"),
    ([{"model": "network", "network": VOXELMORPH}, {"model": "svf"}], "follows a deformable stage"),
    ([{"model": "bspline", "initial_field": "previous"}], "for 'svf' stages only"),
    ([{"model": "affine", "network": VOXELMORPH}], "for network and affine-network stages only"),
])
def test_network_presets_are_validated(stages, message):
    with pytest.raises(PresetError, match=message):
        load_preset({"stages": stages})


def _model_copy(tmp_path: Path, name: str = VOXELMORPH) -> Path:
    folder = tmp_path / name
    shutil.copytree(MODEL_DIR / name, folder)
    return folder


def test_tampered_truncated_or_missing_weights_give_one_line_errors(tmp_path: Path):
    folder = _model_copy(tmp_path)
    weights = folder / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="does not match the SHA-256") as error:
        load_model(str(folder))
    assert "\n" not in str(error.value)
    weights.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(InputError, match="does not match the SHA-256"):
        load_model(str(folder))
    weights.unlink()
    with pytest.raises(InputError, match="does not exist"):
        load_model(str(folder))
    # through a preset naming the folder: the same one-line error, before any output
    fixed = brain_like()
    with pytest.raises(InputError, match="does not exist"):
        register(fixed, fixed, {"stages": [{"model": "network", "network": str(folder)}]}, threads=1)


def test_learned_preset_refuses_2d_and_4d_images_and_absent_cuda():
    image2d = sitk.Image([32, 32], sitk.sitkFloat32)
    image4d = sitk.Image([8, 8, 8, 3], sitk.sitkFloat32)
    brain = brain_like()
    for bad in (image2d, image4d):
        with pytest.raises(InputError) as error:
            register(bad, brain, "brain-mri-voxelmorph", threads=1)
        assert "\n" not in str(error.value)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            register(brain, brain, "brain-mri-voxelmorph", device="cuda", threads=1)


def test_an_input_unlike_a_t1_gets_a_warning():
    """A CT-like head (bright skull ring around soft tissue) is far from a skull-stripped T1."""
    brain = brain_like()
    array = sitk.GetArrayFromImage(brain)
    ct = np.where(array > 0.8, 40.0, np.where(array > 0, 1200.0, -1000.0)).astype(np.float32)
    head = sitk.GetImageFromArray(ct)
    head.CopyInformation(brain)
    with pytest.warns(InputWarning, match="unlike"):
        result = register(head, brain, NETWORK_ONLY, threads=1)
    assert any("fixed image" in message for message in result.metrics["warnings"])


OASIS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "oasis_trt20"


@pytest.mark.skipif(not OASIS.is_dir(), reason="shared OASIS-TRT-20 data not present")
def test_a_real_skull_stripped_t1_gets_no_warning():
    fixed = sitk.ReadImage(str(OASIS / "OASIS-TRT-20-8" / "t1weighted_brain.nii.gz"))
    moving = sitk.ReadImage(str(OASIS / "OASIS-TRT-20-9" / "t1weighted_brain.nii.gz"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        result = register(fixed, moving, NETWORK_ONLY, threads=1)
    assert "warnings" not in result.metrics


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cpu_and_cuda_give_the_same_field():
    fixed, moving = brain_like(), brain_like(shift=(2.0, 1.0, 0.0), seed=5)
    cpu_model, gpu_model = load_model(VOXELMORPH, "cpu"), load_model(VOXELMORPH, "cuda")
    cpu = predict(cpu_model, CanonicalPair.build(cpu_model, fixed, moving, sitk.Transform())).field
    gpu = predict(gpu_model, CanonicalPair.build(gpu_model, fixed, moving, sitk.Transform(), device="cuda")).field
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-3)
