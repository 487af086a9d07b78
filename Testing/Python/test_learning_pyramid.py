"""The coarse-to-fine pyramid network (regsuite.learning.pyramid): known answers for its two
levels, a warm start from a VoxelMorph network, and a training run whose model registers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from regsuite.cli.main import main
from regsuite.learning.networks import VoxelMorphUNet, build_network
from regsuite.learning.pyramid import PyramidNet

from test_learning_training import _config, data_root  # noqa: F401  (data_root: the tiny subjects fixture)


def _blob(shift: float = 0.0) -> torch.Tensor:
    z, y, x = torch.meshgrid(*[torch.arange(32, dtype=torch.float32)] * 3, indexing="ij")
    return torch.exp(-((x - 15.5 - shift) ** 2 + (y - 15.5) ** 2 + (z - 15.5) ** 2) / 40.0)[None, None]


def _silence(net: VoxelMorphUNet, bias: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
    """A U-Net whose output is the constant ``bias`` (voxels of its velocity grid along i, j, k)."""
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor(bias))


def test_with_a_silent_coarse_level_the_pyramid_is_its_fine_network():
    """A VoxelMorph network's weights fit the fine level; with the coarse level at the identity
    the pyramid predicts exactly what that network predicts."""
    torch.manual_seed(0)
    vxm = VoxelMorphUNet(width=0.25)
    pyramid = PyramidNet(width=0.25, coarse_width=0.25)
    pyramid.fine.load_state_dict(vxm.state_dict())
    _silence(pyramid.coarse)
    pair = torch.cat([_blob(), _blob(2.0)], dim=1)
    assert torch.allclose(pyramid(pair), vxm(pair), atol=1e-6)


def test_the_coarse_velocity_warps_the_fine_input_and_adds_to_the_output():
    """A constant coarse velocity of 0.5 voxels of the coarse velocity grid (4 input voxels each)
    along i is a 2-voxel translation: the fine level sees the moving image shifted by 2 voxels,
    and the output is that velocity on the fine velocity grid (1 voxel of 2) plus the fine
    level's own (here silenced to 0)."""
    pyramid = PyramidNet(width=0.25, coarse_width=0.25, velocity_level=1)
    _silence(pyramid.coarse, (0.5, 0.0, 0.0))
    _silence(pyramid.fine)
    seen = []
    fine_forward = pyramid.fine.forward
    pyramid.fine.forward = lambda pair, modulations=None: seen.append(pair) or fine_forward(pair, modulations)
    moving = _blob(2.0)
    velocity = pyramid(torch.cat([_blob(), moving], dim=1))
    assert velocity.shape == (1, 3, 16, 16, 16)
    assert torch.allclose(velocity[:, 0], torch.ones(1, 16, 16, 16), atol=1e-5)
    assert float(velocity[:, 1:].abs().max()) < 1e-6
    # moving(x + 2 voxels along i) is the blob centred 2 voxels back: the fixed blob, inside
    warped = seen[0][:, 1:]
    inside = (slice(None), slice(None), slice(6, 26), slice(6, 26), slice(6, 24))
    assert float((warped - _blob())[inside].abs().max()) < 1e-5
    assert float((moving - _blob())[inside].abs().max()) > 0.1


def test_a_pyramid_trains_warm_started_from_a_voxelmorph_and_registers(tmp_path: Path, data_root: Path):
    """``architecture: pyramid`` trains (the fine level warm-started from a VoxelMorph export),
    exports a card that rebuilds the network, and runs as a preset's network stage."""
    import SimpleITK as sitk

    from regsuite.engine.registration import register
    from regsuite.learning.models import load_model

    vxm_dir = tmp_path / "vxm"
    assert main(["train", "--config", str(_config(tmp_path, data_root, iterations=1)), "--output-dir", str(vxm_dir),
                 "--threads", "1"]) == 0
    config = _config(tmp_path, data_root, architecture="pyramid", iterations=2,
                     network={"width": 0.25, "coarse_width": 0.25, "velocity_level": 1},
                     initial_weights=str(vxm_dir / "weights.pt"))
    out = tmp_path / "pyramid"
    assert main(["train", "--config", str(config), "--output-dir", str(out), "--threads", "1"]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["architecture"] == "pyramid" and card["network"]["coarse_width"] == 0.25
    model = load_model(str(out))
    assert isinstance(model.network, PyramidNet)
    fixed = sitk.ReadImage(str(data_root / "S4" / "t1.nii.gz"))
    moving = sitk.ReadImage(str(data_root / "S5" / "t1.nii.gz"))
    preset = {"name": "pyramid", "initialization": "moments", "stages": [{"model": "network", "network": str(out)}]}
    result = register(fixed, moving, preset, threads=1)
    assert result.inverse is not None and not result.is_linear
    assert result.metrics["stages"][-1]["network"] == "pyramid"  # the card's name


def test_build_network_makes_a_pyramid_from_its_card_options():
    net = build_network("pyramid", {"width": 0.25, "coarse_width": 0.25, "velocity_level": 1, "steps": 5})
    assert isinstance(net, PyramidNet) and net.config["steps"] == 5 and net.velocity_level == 1
    with pytest.raises(ValueError, match="velocity_level"):
        build_network("pyramid", {"velocity_level": 2})
