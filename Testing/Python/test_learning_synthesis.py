"""Images synthesized from label maps (the contrast-agnostic model's training data): known
structure of a draw, independence of two draws, and a training run on synthesized images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from regsuite.cli.main import main
from regsuite.learning.models import load_model
from regsuite.learning.synthesis import SYNTHESIS_DEFAULTS, random_contrast, synthesis_options, synthesize, tissue_groups

from test_learning_training import _config, data_root  # noqa: F401  (data_root: the tiny subjects fixture)

PLAIN = {"background_zero": 1.0, "spread": 0.0, "blur_voxels": 0.0, "bias": 0.0, "gamma": 0.0, "noise": 0.0}


def _classes() -> torch.Tensor:
    z, y, x = torch.meshgrid(*[torch.arange(24)] * 3, indexing="ij")
    classes = torch.zeros(1, 1, 24, 24, 24, dtype=torch.long)
    classes[0, 0][(z - 12) ** 2 + (y - 12) ** 2 + (x - 12) ** 2 < 100] = 1
    classes[0, 0][(z - 12) ** 2 + (y - 12) ** 2 + (x - 9) ** 2 < 16] = 2
    classes[0, 0][(z - 12) ** 2 + (y - 12) ** 2 + (x - 16) ** 2 < 9] = 3
    return classes


def test_without_blur_bias_or_noise_every_label_is_one_grey_value_and_the_background_zero():
    classes = _classes()
    image = synthesize(classes, 4, torch.Generator().manual_seed(3), PLAIN)
    for label in range(4):
        values = image[classes == label]
        assert float(values.max() - values.min()) < 1e-6, label
    assert float(image[classes == 0].max()) == 0.0
    # normalised like a real input: the foreground spans [0, 1]
    foreground = image[classes > 0]
    assert float(foreground.min()) == 0.0 and float(foreground.max()) == 1.0


def test_two_draws_are_two_contrasts_and_a_seed_repeats_its_draw():
    classes = _classes()
    means = []
    for seed in range(6):
        image = synthesize(classes, 4, torch.Generator().manual_seed(seed), PLAIN)
        means.append([float(image[classes == label].mean()) for label in (1, 2, 3)])
    orders = {tuple(np.argsort(m)) for m in means}
    assert len(orders) >= 3  # the labels' brightness order changes from draw to draw
    again = synthesize(classes, 4, torch.Generator().manual_seed(0), PLAIN)
    assert torch.equal(again, synthesize(classes, 4, torch.Generator().manual_seed(0), PLAIN))


def test_tissue_groups_follow_the_freesurfer_labels_of_the_oasis_maps():
    # classes: 0 background, then the labels in order, then the brain's unlabelled voxels
    values = [4, 43, 10, 49, 16, 1002, 2035, 8, 47, 630, 30, 62, 999]
    groups = tissue_groups(values).tolist()
    assert groups[0] == 0
    csf, deep, stem, cortex, cerebellum, vessel, other, white = (groups[i] for i in (1, 3, 5, 6, 8, 11, 13, 14))
    # numbered in their order of brightness in a T1 image, then vessels, then unknown values
    assert [csf, cortex, cerebellum, deep, stem, white, vessel, other] == list(range(1, 9))
    assert groups[2] == csf and groups[4] == deep and groups[7] == cortex
    assert groups[9] == groups[10] == cerebellum and groups[12] == vessel
    # eight different tissues, none the background's, an unknown value is a tissue of its own
    assert len({csf, deep, stem, cortex, cerebellum, vessel, other, white}) == 8 and 0 not in groups[1:]
    assert groups[-1] == white  # the unlabelled brain is white matter


def test_a_contrast_per_tissue_gives_the_labels_of_one_tissue_one_grey_value_within_its_spread():
    groups = torch.tensor([0, 1, 2, 1])  # classes 1 and 3 are one tissue
    spread = 0.02
    for seed in range(8):
        means, _ = random_contrast(4, torch.Generator().manual_seed(seed), {"spread": spread, "tissue": 1.0}, groups)
        assert abs(float(means[1] - means[3])) <= 2 * spread + 1e-7
    # per label (tissue 0, or no groups) the two classes are unrelated
    apart = [abs(float(m[1] - m[3])) for m in
             (random_contrast(4, torch.Generator().manual_seed(seed), {"spread": spread}, groups)[0] for seed in range(8))]
    assert max(apart) > 0.2
    # rendered without spread, the two labels of a tissue are one grey value, the other tissue another
    classes = _classes()
    image = synthesize(classes, 4, torch.Generator().manual_seed(5), {**PLAIN, "tissue": 1.0}, None, groups)
    assert float(image[classes == 1].mean()) == pytest.approx(float(image[classes == 3].mean()), abs=1e-6)
    assert float(image[classes == 1].std()) < 1e-6
    # ordered: the tissues' grey values keep the T1 order (csf 1 < ... < white matter 6)
    t1_like = torch.tensor([0, 1, 2, 3, 4, 5, 6])
    for seed in range(8):
        means, _ = random_contrast(7, torch.Generator().manual_seed(seed),
                                   {"spread": 0.0, "tissue": 1.0, "ordered": 1.0}, t1_like)
        assert torch.all(means[2:] >= means[1:-1])
    with pytest.raises(ValueError, match="tissue is a probability"):
        synthesis_options({"tissue": 1.5})


def test_the_default_draw_blurs_biases_and_adds_noise_within_range():
    classes = _classes()
    image = synthesize(classes, 4, torch.Generator().manual_seed(1))
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    inside = image[classes == 1]
    assert float(inside.std()) > 0.0  # no longer one grey value per label
    assert synthesis_options({"noise": 0.1})["noise"] == 0.1
    assert synthesis_options(None) == SYNTHESIS_DEFAULTS
    with pytest.raises(ValueError, match="unknown option 'x'"):
        synthesis_options({"x": 1})


def test_training_on_synthesized_images_never_feeds_the_subjects_images(tmp_path: Path, data_root: Path):
    """The sampler's images come from the label maps (every label one class, plus the brain's
    unlabelled voxels), not from the subjects' own intensities; the card says any contrast."""
    from regsuite.learning.config import TrainingConfig
    from regsuite.learning.training import Trainer

    path = _config(tmp_path, data_root, synthesis={"spread": 0.0, "blur_voxels": 0.0, "bias": 0.0, "noise": 0.0,
                                                   "gamma": 0.0, "background_zero": 1.0},
                   similarity_weight=0.0, iterations=3,
                   augmentation={"rotation_degrees": 5.0, "scale": 0.05, "translation_mm": 2.0, "gamma": 0.0, "noise": 0.0})
    config = TrainingConfig.from_file(path)
    trainer = Trainer(config, tmp_path / "direct", torch.device("cpu"), data_root, log=lambda line: None, threads=1)
    trainer.load_data()
    sample = trainer.sampler.sample()
    classes = trainer.labels.classes(sample["fixed_labels"])
    image = sample["fixed"]
    # one grey value per labelled class: the subject's own noisy intensities are not there
    assert len(torch.unique(classes)) == 4
    for value in torch.unique(classes)[1:]:
        values = image[classes == value]
        assert float(values.max() - values.min()) < 1e-6
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--output-dir", str(out), "--threads", "1"]) == 0
    card = json.loads((out / "card.json").read_text())
    assert "any contrast" in card["input"] and "intensity_histogram" not in card
    assert card["synthesis"]["background_zero"] == 1.0
    assert load_model(str(out)).card["name"] == "tiny"


@pytest.mark.parametrize("independent, shared_draws", [(0.0, 6), (1.0, 0)])
def test_independent_contrasts_or_one_shared_contrast_for_both_inputs(tmp_path: Path, data_root: Path,
                                                                       independent: float, shared_draws: int):
    """``independent`` 0 (how a network trained from scratch starts): both inputs get one contrast,
    so every class has the same brightness order in both; 1 (the default): two independent
    contrasts, whose orders differ in most draws."""
    from regsuite.learning.config import TrainingConfig
    from regsuite.learning.training import Trainer

    plain = {"spread": 0.0, "blur_voxels": 0.0, "bias": 0.0, "noise": 0.0, "gamma": 0.0, "background_zero": 1.0}
    path = _config(tmp_path, data_root, synthesis={**plain, "independent": independent}, similarity_weight=0.0,
                   augmentation={"rotation_degrees": 0.0, "scale": 0.0, "translation_mm": 0.0, "gamma": 0.0, "noise": 0.0})
    trainer = Trainer(TrainingConfig.from_file(path), tmp_path / "run", torch.device("cpu"), data_root,
                      log=lambda line: None, threads=1)
    trainer.load_data()
    same = 0
    for _ in range(6):
        sample = trainer.sampler.sample()
        orders = []
        for image, labels in ((sample["fixed"], sample["fixed_labels"]), (sample["moving"], sample["moving_labels"])):
            classes = trainer.labels.classes(labels)
            orders.append(tuple(np.argsort([float(image[classes == c].mean()) for c in (1, 2, 3)])))
        same += orders[0] == orders[1]
    # 3 classes: two independent draws share an order with probability 1/6 (at most 3 of 6 here)
    assert same == shared_draws if independent == 0.0 else same <= 3


def test_the_any_contrast_model_takes_an_inverted_contrast_without_warning():
    """The shipped contrast-agnostic model: its card says what it was trained on and holds no T1
    histogram, so a T2-like (inverted) input registers without the T1 models' warning, while the
    T1 model warns on the same pair."""
    import warnings

    import SimpleITK as sitk

    from regsuite.engine.registration import register
    from regsuite.errors import InputWarning
    from regsuite.learning.models import MODEL_DIR

    from test_learning_stage import brain_like

    card = json.loads((MODEL_DIR / "brain-synth-voxelmorph" / "card.json").read_text())
    assert "any contrast" in card["input"] and "intensity_histogram" not in card
    assert "synthesis" in card and "CC BY-NC-SA" in card["licence"]
    fixed = brain_like()
    inverted = sitk.Mask(1.0 - brain_like(shift=(2.0, -1.0, 1.0), seed=7), brain_like(shift=(2.0, -1.0, 1.0)) > 0)
    for preset, warned in (("brain-any-contrast", False), ("brain-mri-voxelmorph", True)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = register(fixed, inverted, preset, threads=1)
        unusual = [w for w in caught if issubclass(w.category, InputWarning) and "unlike" in str(w.message)]
        assert bool(unusual) == warned, (preset, [str(w.message) for w in caught])
        assert np.isfinite(result.metrics["stages"][-1]["metric_after"])
