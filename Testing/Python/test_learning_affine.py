"""The learned affine (``"model": "affine-network"``): VTN's losses, the network learning a known
misalignment on an asymmetric phantom, the engine stage applying it, and preset checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from regsuite.engine.config import load_preset
from regsuite.engine.registration import register
from regsuite.engine.transforms.linear import sitk_linear_to_affine
from regsuite.errors import PresetError
from regsuite.learning.affine import AffineNet, determinant_loss, orthogonality_loss
from regsuite.learning.affine_training import AffineTrainer, rigid_about
from regsuite.learning.config import TrainingConfig

from test_learning_stage import VOXELMORPH


def asymmetric_subject(folder: Path, seed: int) -> None:
    """A 48^3 (2 mm) phantom with no symmetry (so every rotation shows): an ellipsoid with a bright
    front core, a dark blob at the back left and a bright bar at the top right, each labelled."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(48) * 2.0 - 47.0] * 3, indexing="ij")
    s = 1.0 + 0.06 * rng.standard_normal(3)

    def inside(cx, cy, cz, rx, ry, rz):
        return ((x - cx) / (rx * s[0])) ** 2 + ((y - cy) / (ry * s[1])) ** 2 + ((z - cz) / (rz * s[2])) ** 2 < 1

    labels = np.zeros(x.shape, np.int16)
    for value, box in ((3, (0, 0, 0, 30, 36, 26)), (10, (0, 14, -4, 12, 10, 9)), (20, (-14, -18, 2, 7, 7, 7)),
                       (30, (12, 0, 16, 5, 18, 4))):
        labels[inside(*box)] = value
    grey = {0: 0.0, 3: 0.5, 10: 0.95, 20: 0.15, 30: 0.8}
    image = np.vectorize(grey.get)(labels).astype(np.float32) + 0.02 * rng.standard_normal(labels.shape)
    image[labels == 0] = 0.0
    folder.mkdir(parents=True)
    for array, name in ((image.astype(np.float32), "t1.nii.gz"), (labels, "labels.nii.gz")):
        out = sitk.GetImageFromArray(array)
        out.SetSpacing((2.0, 2.0, 2.0))
        sitk.WriteImage(out, str(folder / name))


def tiny_affine_model(folder: Path) -> Path:
    """An untrained small affine model with the card fields the loader and presets read."""
    from regsuite.learning.models import file_sha256

    folder.mkdir(parents=True)
    network = AffineNet(width=0.25, encoder=[16, 32, 32, 64])
    torch.save(network.state_dict(), folder / "weights.pt")
    card = {"name": folder.name, "architecture": "affine", "network": network.config,
            "grid": {"size_xyz": [32, 32, 32], "spacing_mm": 4.0},
            "weights": {"file": "weights.pt", "sha256": file_sha256(folder / "weights.pt")}}
    (folder / "card.json").write_text(json.dumps(card))
    return folder


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phantoms")
    for subject in (1, 2, 3, 4):
        asymmetric_subject(root / f"S{subject}", subject)
    return root


def _config(root: Path) -> TrainingConfig:
    return TrainingConfig.from_dict({
        "name": "tiny-affine", "architecture": "affine", "network": {"width": 0.5, "encoder": [16, 32, 32, 64]},
        "grid_size": [32, 32, 32], "grid_spacing": 4.0,
        "data": {"root": str(root), "pattern": "S{subject}", "image": "t1.nii.gz", "labels": "labels.nii.gz",
                 "subjects": [1, 2], "validation_pairs": [[3, 4]]},
        "affine": {"name": "teacher", "initialization": "moments",
                   "stages": [{"model": "affine", "metric": "ncc", "levels": [[2, 1, 40]]}]},
        "metric": "ncc", "metric_options": {}, "dice": 0.0, "regularization": 0.0, "teacher_weight": 0.01,
        "orthogonality": 0.01, "determinant": 0.01, "learning_rate": 0.003, "iterations": 1,
        "augmentation": {}, "licence": "test data"})


def test_vtn_losses_vanish_for_rotations_and_grow_with_scaling_and_reflection():
    angles = torch.tensor([0.3, -0.2, 0.5])
    rotation = AffineNet.affine(torch.cat([angles / 0.5, torch.zeros(9)])[None])[0]
    assert abs(float(orthogonality_loss(rotation))) < 1e-5 and abs(float(determinant_loss(rotation))) < 1e-10
    scaled = torch.diag(torch.tensor([1.2, 1.0, 1.0]))
    assert float(orthogonality_loss(scaled)) == pytest.approx(1.44 + 1 / 1.44 - 2, rel=1e-5)
    assert float(determinant_loss(scaled)) == pytest.approx(0.04, rel=1e-5)
    reflection = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
    assert float(determinant_loss(reflection)) == pytest.approx(4.0)


def test_the_network_learns_a_known_misalignment_and_the_stage_applies_it(tmp_path: Path, data_root: Path):
    """Subject 2, turned 12 degrees and shifted 5.4 mm: 120 steps on that one pair bring the
    network's map from 4.4 mm (mean over the brain, centres of mass only) to within 0.3 mm of the
    classical affine of the unmoved pair (measured 0.09 mm); the engine's affine-network stage,
    run on the moved image itself, lands within 1 mm of it too."""
    torch.manual_seed(0)
    trainer = AffineTrainer(_config(data_root), tmp_path / "run", torch.device("cpu"), data_root,
                            log=lambda line: None, threads=1)
    trainer.load_data()
    angle = np.radians(12.0)
    turn = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    known = (turn, np.array([4.0, -3.0, 2.0]))
    teacher_matrix, teacher_offset = sitk_linear_to_affine(trainer.affine(1, 2))

    def error() -> float:
        sample = trainer.sample((1, 2), augment=False, misalignment=known)
        with torch.no_grad():
            parameters = trainer.network(torch.cat([sample["fixed"], sample["moving"]], dim=1))
            points, inside = trainer._brain_points(sample)
            mapped = trainer.predicted_points(sample, parameters, points)[inside].numpy()
        return float(np.linalg.norm(mapped - (points[inside].numpy() @ teacher_matrix.T + teacher_offset), axis=1).mean())

    start = error()
    assert start > 3.0
    optimizer = torch.optim.Adam(trainer.network.parameters(), lr=3e-3)
    for _ in range(120):
        loss, _ = trainer.loss(trainer.sample((1, 2), augment=False, misalignment=known))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert error() < 0.3
    trainer.step = 120
    card = trainer.export("regsuite train --config tiny.json --output-dir runs/run")
    assert card.is_file()

    # the same misalignment applied to the image itself; the engine finds L0 by moments
    subject = trainer.subjects[2]
    q = rigid_about(*known, subject.center)
    moved = sitk.Resample(subject.image, subject.image, q, sitk.sitkLinear, 0.0)  # moved(y) = image(Q(y))
    preset = {"name": "learned-affine", "initialization": "moments",
              "stages": [{"model": "affine-network", "network": str(card.parent)}]}
    result = register(trainer.subjects[1].image, moved, preset, threads=1)
    assert result.config.is_linear and result.deformable is None
    fixed = trainer.subjects[1].image
    brain = np.argwhere(sitk.GetArrayFromImage(fixed) > 0.1)[::23][:, ::-1]
    world = np.array([fixed.TransformIndexToPhysicalPoint([int(v) for v in p]) for p in brain])
    truth = q.GetInverse()
    expected = np.array([truth.TransformPoint(tuple(p)) for p in world @ teacher_matrix.T + teacher_offset])
    got = np.array([result.transform.TransformPoint(tuple(p)) for p in world])
    assert np.linalg.norm(got - expected, axis=1).mean() < 1.0


def test_affine_and_deformable_models_stay_in_their_own_stages(tmp_path: Path, data_root: Path):
    with pytest.raises(PresetError, match="'brain-t1-voxelmorph' is a deformable model; use it in a network stage"):
        load_preset({"stages": [{"model": "affine-network", "network": VOXELMORPH}]})
    with pytest.raises(PresetError, match="needs \"network\""):
        load_preset({"stages": [{"model": "affine-network"}]})
    # an untrained affine model, exported: refused by a network stage, and no cascade for it
    trainer = AffineTrainer(_config(data_root), tmp_path / "untrained", torch.device("cpu"), data_root,
                            log=lambda line: None, threads=1)
    trainer.load_data()
    trainer.output.mkdir()
    folder = trainer.export("regsuite train --config tiny.json --output-dir runs/untrained").parent
    with pytest.raises(PresetError, match="is an affine model; use it in an affine-network stage"):
        load_preset({"stages": [{"model": "network", "network": str(folder)}]})
    with pytest.raises(PresetError, match="'lambda' and 'cascade' are for network stages only"):
        load_preset({"stages": [{"model": "affine-network", "network": str(folder), "cascade": 2}]})
    assert load_preset({"stages": [{"model": "affine-network", "network": str(folder)}]}).is_linear
