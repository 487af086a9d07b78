"""``regsuite train`` on a tiny synthetic data set: runs, checkpoints, resumes, exports a
loadable model with its card, and refuses bad configs with one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from regsuite.cli.main import main
from regsuite.learning.models import file_sha256, load_model

ROOT = Path(__file__).resolve().parents[2]


def _subject(folder: Path, seed: int) -> None:
    """A 40^3 (2 mm) 'brain': an ellipsoid with two labelled lobes and a labelled core."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(40) * 2.0 - 39.0] * 3, indexing="ij")
    scale = 1.0 + 0.08 * rng.standard_normal(3)
    r = np.sqrt((x / (26 * scale[0])) ** 2 + (y / (30 * scale[1])) ** 2 + (z / (24 * scale[2])) ** 2)
    labels = np.where(r < 1.0, np.where(x < 0, 3, 42), 0).astype(np.int16)
    labels[r < 0.45] = 10
    image = np.where(labels == 10, 0.9, np.where(labels > 0, 0.6, 0.0)) + 0.02 * rng.standard_normal(labels.shape)
    folder.mkdir(parents=True)
    for array, name in ((image.astype(np.float32), "t1.nii.gz"), (labels, "labels.nii.gz")):
        out = sitk.GetImageFromArray(array)
        out.SetSpacing((2.0, 2.0, 2.0))
        sitk.WriteImage(out, str(folder / name))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("subjects")
    for subject in range(1, 6):
        _subject(root / f"S{subject}", subject)
    return root


def _config(tmp_path: Path, root: Path, **changes) -> Path:
    config = {
        "name": "tiny", "network": {"width": 0.25, "velocity_level": 1}, "grid_size": [32, 32, 32],
        "grid_spacing": 3.0, "integration_steps": 5,
        "data": {"root": str(root), "pattern": "S{subject}", "image": "t1.nii.gz", "labels": "labels.nii.gz",
                 "subjects": [1, 2, 3], "validation_pairs": [[4, 5]]},
        "affine": {"name": "shift", "initialization": "moments", "stages": [
            {"model": "rigid", "metric": "ncc", "levels": [[2, 1, 5]]}]},
        "iterations": 4, "checkpoint_every": 1, "validate_every": 2, "licence": "test data",
    }
    config.update(changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_train_exports_a_loadable_model_and_resumes_exactly(tmp_path: Path, data_root: Path, capsys):
    config = _config(tmp_path, data_root)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", "--config", str(config), "--output-dir", str(straight), "--threads", "1"]) == 0
    card = json.loads((straight / "card.json").read_text())
    assert card["training"]["iterations"] == 4
    assert card["weights"]["sha256"] == file_sha256(straight / "weights.pt")
    assert card["weights"]["sha256"] in (straight / "card.md").read_text()  # the human-readable card
    assert "--output-dir runs/straight " in card["training"]["command"]  # not the machine's folder
    assert card["validation"]["pairs"] == [[4, 5]] and 0.0 <= card["validation"]["dice"] <= 1.0
    model = load_model(str(straight))
    assert model.card["name"] == "tiny"
    # 2 steps, stop, resume to 4: the same weights as 4 steps in one go (state, optimizer and
    # random draws all come back from the checkpoint)
    assert main(["train", "--config", str(config), "--output-dir", str(split), "--iterations", "2",
                 "--threads", "1", "--no-export"]) == 0
    assert not (split / "weights.pt").exists()
    assert main(["train", "--config", str(config), "--output-dir", str(split), "--resume",
                 "--threads", "1"]) == 0
    a = torch.load(straight / "weights.pt", weights_only=True)
    b = torch.load(split / "weights.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    err = capsys.readouterr().err
    assert "step 4/4" in err and "val dice" in err


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path: Path, data_root: Path):
    config = _config(tmp_path, data_root, iterations=400)
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "RegistrationSuite"), OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "regsuite", "train", "--config", str(config),
                                "--output-dir", str(out), "--threads", "1", "--no-export"],
                               env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    reached = int(checkpoint["step"])
    assert 1 <= reached < 400
    assert main(["train", "--config", str(config), "--output-dir", str(out), "--resume",
                 "--iterations", str(reached + 1), "--threads", "1", "--no-export"]) == 0
    assert int(torch.load(out / "checkpoint.pt", weights_only=True)["step"]) == reached + 1


@pytest.mark.parametrize("change, needle", [
    ({"data": {"root": "/nonexistent/folder", "subjects": [1, 2]}}, "does not exist"),
    ({"data": {"subjects": [1, 9]}}, "S9"),
    ({"data": {"subjects": [1, 2], "validation_pairs": [[2, 3]]}}, "both training and validation"),
    ({"data": {"subjects": [1]}}, "at least 2 training subjects"),
    ({"grid_size": [30, 32, 32]}, "multiples of 16"),
    ({"architecture": "transmorph"}, "unknown architecture"),
    ({"learning_rate": -1}, "learning_rate"),
    ({"nonsense": 1}, "unknown key"),
    ({"synthesis": {"contrast": 1}}, "unknown option 'contrast'"),
    ({"synthesis": {"noise": -0.1}}, "noise must be a non-negative number"),
    ({"synthesis": {"background_zero": 2}}, "background_zero is a probability"),
    ({"synthesis": [1]}, "synthesis must be a JSON object"),
    ({"similarity_weight": -1}, "similarity_weight"),
    ({"synthesis": {"independent": 1.5}}, "independent is a probability"),
    ({"synthesis": {"tissue": 2}}, "tissue is a probability"),
    ({"synthesis": {"ordered": -1}}, "ordered must be a non-negative number"),
    ({"dice_grid": "fine"}, "dice_grid must be one of velocity, canonical"),
    ({"dice_labels": -3}, "dice_labels must be a non-negative integer"),
    ({"architecture": "pyramid", "network": {"hidden": 32}}, "network options for 'pyramid'"),
    ({"network": {"velocity_level": 3}}, "velocity_level must be 0"),
    ({"cascade": 0}, "cascade must be an integer from 1 to 5"),
    ({"cascade": 6}, "cascade must be an integer from 1 to 5"),
    ({"cascade": 2, "inverse_consistency": 0.1}, "cannot be combined with inverse_consistency"),
    ({"cascade": 2, "teacher": "affine-fast", "teacher_weight": 0.1}, "cannot use a teacher"),
])
def test_bad_training_configs_are_one_line_errors(tmp_path: Path, data_root: Path, capsys, change, needle):
    config = json.loads(_config(tmp_path, data_root).read_text())
    if "data" in change:
        merged = {**config["data"], **change["data"]}
        if change["data"].get("root") is None:
            merged["root"] = str(data_root)
        change = {"data": merged}
    config.update(change)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    out = tmp_path / "out"
    code = main(["train", "--config", str(path), "--output-dir", str(out), "--threads", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("regsuite: error: ") and needle in err[0], err
    assert not out.exists()


def test_resume_without_checkpoint_is_refused(tmp_path: Path, data_root: Path, capsys):
    code = main(["train", "--config", str(_config(tmp_path, data_root)), "--output-dir", str(tmp_path / "none"),
                 "--resume"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no checkpoint" in err[0]


def test_inverse_consistent_training_registers_both_ways_and_reports_the_error(tmp_path: Path, data_root: Path):
    """With ``inverse_consistency`` and ``folding`` the loss holds both directions, their
    consistency and the folding penalty; the card reports the validation inverse-consistency error."""
    from regsuite.learning.config import TrainingConfig
    from regsuite.learning.training import Trainer

    path = _config(tmp_path, data_root, inverse_consistency=0.1, folding=1.0, iterations=2)
    trainer = Trainer(TrainingConfig.from_file(path), tmp_path / "ic", torch.device("cpu"), data_root,
                      log=lambda line: None, threads=1)
    trainer.run()
    assert {"ic_mm2", "folding", "backward_loss"} <= set(trainer.history[-1])
    # the total is the forward loss + the backward loss + the weighted consistency and folding terms
    sample = trainer.sampler.sample()
    both, terms = trainer.loss(sample, None)
    trainer.config.inverse_consistency = trainer.config.folding = 0.0
    forward, _ = trainer.loss(sample, None)
    expected = float(forward) + terms["backward_loss"] + 0.1 * terms["ic_mm2"] + 1.0 * terms["folding"]
    assert float(both) == pytest.approx(expected, rel=1e-5) and terms["ic_mm2"] > 0
    card = json.loads(trainer.export("regsuite train --config c.json --output-dir runs/ic").read_text())
    assert card["validation"]["ic_error_mm"] >= 0
    assert "inverse-consistency error" in (tmp_path / "ic" / "card.md").read_text()


def test_cascade_training_composes_its_runs_as_inference_does_and_the_card_says_so(tmp_path: Path, data_root: Path):
    """``cascade`` 2: each step runs the network twice (the second run on the moving image warped
    by the first), the loss warps by the composed map, which is the map inference's
    :class:`VelocityChain` makes of the same two velocities; the card records the cascade."""
    from regsuite.engine.transforms.cascade import VelocityChain
    from regsuite.engine.transforms.dense import resample_field
    from regsuite.learning.config import TrainingConfig
    from regsuite.learning.field import NetworkField
    from regsuite.learning.training import Trainer

    path = _config(tmp_path, data_root, cascade=2, iterations=2)
    trainer = Trainer(TrainingConfig.from_file(path), tmp_path / "cascade", torch.device("cpu"), data_root,
                      log=lambda line: None, threads=1)
    trainer.run()
    sample = trainer.sampler.sample()
    field = NetworkField(sample["grid"], trainer.network.velocity_level, trainer.config.integration_steps)
    inputs, forward = [], trainer.forward
    trainer.forward = lambda pair, lam: inputs.append(pair) or forward(pair, lam)
    with torch.no_grad():
        runs, composed = trainer.cascade(field, sample["fixed"], sample["moving"], None)
    trainer.forward = forward
    assert len(runs) == len(inputs) == 2 and composed is not None
    chain = VelocityChain(field.coarse, [field.world_velocity(v) for v in runs], trainer.config.integration_steps)
    assert float((composed - chain.displacement()).abs().max()) < 1e-5  # float32 composition, mm
    # the second run saw the fixed image and the moving image warped by the first run's map
    first = resample_field(field.coarse_displacement(runs[0]), field.coarse, field.grid)
    assert torch.equal(inputs[1][:, :1], sample["fixed"])
    assert torch.allclose(inputs[1][:, 1:], field.warp(sample["moving"], first), atol=1e-6)
    assert not torch.equal(inputs[1][:, 1:], sample["moving"])
    # the loss warps by the composition and regularizes both runs: not the single-run loss
    cascaded, terms = trainer.loss(sample, None)
    trainer.config.cascade = 1
    single, single_terms = trainer.loss(sample, None)
    assert terms["diffusion"] != pytest.approx(single_terms["diffusion"], rel=1e-4)
    assert float(cascaded) != pytest.approx(float(single), rel=1e-6)
    trainer.config.cascade = 2
    card = json.loads(trainer.export("regsuite train --config c.json --output-dir runs/cascade").read_text())
    assert card["cascade"] == 2 and "cascade of 2" in (tmp_path / "cascade" / "card.md").read_text()


def test_the_dice_term_on_the_canonical_grid_compares_a_random_subset_of_the_labels(tmp_path: Path, data_root: Path):
    """``dice_grid`` canonical with ``dice_labels`` 1: each step's Dice term compares one-hot maps
    of one label class present in the fixed map, on the canonical grid; a training run goes
    through and the exported card keeps the options."""
    from regsuite.learning.config import TrainingConfig
    from regsuite.learning.training import Trainer

    path = _config(tmp_path, data_root, dice_grid="canonical", dice_labels=1, iterations=2)
    trainer = Trainer(TrainingConfig.from_file(path), tmp_path / "fine", torch.device("cpu"), data_root,
                      log=lambda line: None, threads=1)
    trainer.run()
    sample = trainer.sampler.sample()
    present = {int(c) for c in torch.unique(trainer.labels.classes(sample["fixed_labels"])) if int(c) > 0}
    drawn = [trainer._dice_subset(sample["fixed_labels"]) for _ in range(12)]
    assert all(len(subset) == 1 and set(subset) <= present for subset in drawn)
    assert len({tuple(subset) for subset in drawn}) > 1  # a different class from step to step
    seen = []
    original = trainer.labels.one_hot
    trainer.labels.one_hot = lambda labels, subset=None: seen.append(subset) or original(labels, subset)
    total, terms = trainer.loss(sample, None)
    assert len(seen) == 2 and seen[0] == seen[1] and 0.0 <= terms["dice_loss"] <= 1.0
    card = json.loads(trainer.export("regsuite train --config c.json --output-dir fine").read_text())
    assert card["training"]["config"]["dice_grid"] == "canonical" and card["training"]["config"]["dice_labels"] == 1


def test_a_full_resolution_network_warm_starts_from_a_half_resolution_export(tmp_path: Path, data_root: Path):
    """``initial_weights`` of a velocity_level 1 export into a velocity_level 0 config: the shared
    blocks are copied and the head doubled (the trainer takes the half-resolution path); the
    export of a full-resolution run loads as it is."""
    from regsuite.learning.config import TrainingConfig
    from regsuite.learning.models import read_weights
    from regsuite.learning.training import Trainer

    half = tmp_path / "half"
    assert main(["train", "--config", str(_config(tmp_path, data_root, iterations=1)), "--output-dir", str(half),
                 "--threads", "1"]) == 0
    source = read_weights(half / "weights.pt")
    config = json.loads(_config(tmp_path, data_root, network={"width": 0.25, "velocity_level": 0},
                                initial_weights=str(half / "weights.pt")).read_text())
    trainer = Trainer(TrainingConfig.from_dict(config), tmp_path / "full", torch.device("cpu"))
    trainer.load_initial_weights(config["initial_weights"])
    own = trainer.network.state_dict()
    assert torch.equal(own["head.weight"], 2 * source["head.weight"])
    assert all(torch.equal(own[k], v) for k, v in source.items() if not k.startswith("head."))
    torch.save(own, tmp_path / "full.pt")
    again = Trainer(TrainingConfig.from_dict(config), tmp_path / "again", torch.device("cpu"))
    again.load_initial_weights(str(tmp_path / "full.pt"))
    assert all(torch.equal(again.network.state_dict()[k], v) for k, v in own.items())
