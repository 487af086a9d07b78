"""Shipped learned models: ``regsuite/models/<name>/`` holds ``weights.pt`` and ``card.json``.

Weights are read with ``torch.load(..., weights_only=True)`` only after their SHA-256 matches
the card; nothing is downloaded. A loaded network is kept per (model, device) so that repeated
inferences (a HyperMorph lambda slider) do not read the file again.

Example:
    >>> "brain-t1-voxelmorph" in list_models()
    True
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..engine.config import MODEL_DIR, list_models
from ..errors import InputError
from .networks import build_network

_LOADED: dict[tuple[str, str], "LoadedModel"] = {}


@dataclass
class LoadedModel:
    """A network in eval mode with its card."""

    name: str
    card: dict[str, Any]
    network: torch.nn.Module

    @property
    def is_hyper(self) -> bool:
        return self.card["architecture"] == "hypermorph"


def model_folder(name: str) -> Path:
    """The folder of a shipped model, or of a model given by a folder path."""
    path = Path(name)
    if (path / "card.json").is_file():
        return path
    folder = MODEL_DIR / name
    if not (folder / "card.json").is_file():
        raise InputError(f"unknown learned model '{name}'; shipped models: {', '.join(list_models()) or 'none'}")
    return folder


def read_card(folder: Path) -> dict[str, Any]:
    try:
        card = json.loads((folder / "card.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"model card '{folder / 'card.json'}' cannot be read: {error}") from None
    for key in ("architecture", "network", "grid", "weights"):
        if key not in card:
            raise InputError(f"model card '{folder / 'card.json'}' has no '{key}'")
    return card


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_weights(path: Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """A state dict from ``path``, checked against ``expected_sha256`` first when given."""
    if not path.is_file():
        raise InputError(f"weights file '{path}' does not exist")
    if expected_sha256 is not None and file_sha256(path) != expected_sha256:
        raise InputError(f"weights file '{path}' does not match the SHA-256 in its model card "
                         "(corrupt, truncated or replaced); reinstall the extension")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InputError(f"weights file '{path}' cannot be read: {str(error).splitlines()[0]}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"weights file '{path}' does not hold a network's weights")
    return state


def load_model(name: str, device: torch.device | str = "cpu") -> LoadedModel:
    """The network of model ``name`` (a shipped name or a folder), checked, on ``device``."""
    folder = model_folder(name)
    key = (str(folder.resolve()), str(device))
    if key in _LOADED:
        return _LOADED[key]
    card = read_card(folder)
    state = read_weights(folder / card["weights"]["file"], card["weights"]["sha256"])
    try:
        network = build_network(card["architecture"], dict(card["network"]))
        network.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as error:
        raise InputError(f"weights of model '{name}' do not fit its card's network: {str(error).splitlines()[0]}") from None
    network.eval().to(device)
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    loaded = LoadedModel(folder.name, card, network)
    _LOADED[key] = loaded
    return loaded


def card_markdown(card: dict[str, Any]) -> str:
    """The human-readable model card (``card.md``) of a ``card.json``: what a user checks before
    using the weights, and the SHA-256 the loader checks."""
    training, validation, grid = card["training"], card["validation"], card["grid"]
    affine = card["architecture"] == "affine"
    output = (f"{card.get('output', 'an affine map')}" if affine else
              f"stationary velocity field integrated by {card.get('integration_steps', 7)} squarings "
              "(diffeomorphic, inverse exp(-v))")
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"- **Architecture:** {card['architecture']} ({card['parameters']:,} parameters), options "
        f"`{json.dumps(card['network'])}`; {output}.",
        f"- **Canonical grid:** {' x '.join(str(n) for n in grid['size_xyz'])} voxels (x, y, z) of "
        f"{grid['spacing_mm']} mm, {grid['placement']}"
        + ("." if affine else f"; velocity at level {grid['velocity_level']}."),
        f"- **Input:** {card.get('input', '')}; channels {', '.join(card.get('channels', []))}.",
        f"- **Intensity normalisation:** `{json.dumps(card['normalization'])}`.",
        f"- **Training data:** subjects {training['subjects']} of `{training['root']}` "
        f"({training['iterations']} steps; {training['hardware']}).",
        f"- **Command:** `{training['command']}` (config: `train.json` beside this card"
        + (f"; warm start from `{training['config']['initial_weights']}`" if training.get("config", {}).get("initial_weights") else "")
        + ").",
        f"- **Validation** (pairs {validation['pairs']}, {validation['grid']}): "
        + ", ".join(([f"mean Dice {validation['dice']:.4f}"] if "dice" in validation else [])
                    + ([f"J <= 0 {validation['folding_percent']:.3f} %"] if "folding_percent" in validation else [])
                    + ([f"error {validation['error_mm']:.2f} mm"] if "error_mm" in validation else [])
                    + ([f"inverse-consistency error {validation['ic_error_mm']:.2f} mm"]
                       if "ic_error_mm" in validation else [])) + ".",
    ]
    if "stage_1" in training:  # a warm start that is itself a training run of this project
        stage = training["stage_1"]
        lines.append(f"- **Stage 1** (the warm start): `{stage['command']}` ({stage['iterations']} steps; "
                     f"{stage['what']}).")
    if card.get("cascade", 1) > 1:
        lines.append(f"- **Cascade:** trained as a recursive cascade of {card['cascade']} runs (validated so); "
                     f"run it with `\"cascade\": {card['cascade']}` in the network stage.")
    if "lambda_sweep" in validation:
        sweep = ", ".join(f"{lam}: {row['dice']:.4f}" for lam, row in validation["lambda_sweep"].items())
        choice = f" ({card['default_lambda_choice']})" if card.get("default_lambda_choice") else ""
        lines.append(f"- **Dice by lambda:** {sweep}; default lambda {card.get('default_lambda')}{choice}.")
    lines += [
        f"- **Licence of the weights:** {card['licence']}.",
        f"- **Weights:** `{card['weights']['file']}`, {card['weights']['bytes']} bytes, "
        f"SHA-256 `{card['weights']['sha256']}`.",
        "",
        "Generated from `card.json` (the machine-readable card) by `regsuite train`.",
        "",
    ]
    return "\n".join(lines)
