"""Inference of a learned model on one pair: the canonical inputs, the velocity field, checks.

:class:`CanonicalPair` holds both images on the model's canonical grid (the moving one through
the affine found before); :func:`predict` runs the network and returns the engine's
:class:`~regsuite.engine.transforms.dense.VelocityField` (world mm on the velocity grid), which
the engine exports like any svf result. A HyperMorph lambda change only reruns
:func:`predict` on the same :class:`CanonicalPair`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch

from ..engine.grid import Grid
from ..engine.transforms.cascade import VelocityChain
from ..engine.transforms.dense import VelocityField, resample_field
from .canonical import canonical_grid, prepared_on_grid
from .field import NetworkField
from .models import LoadedModel

#: bins of the intensity histogram kept in a model card (normalised foreground intensities in [0, 1])
HISTOGRAM_BINS = 32


def intensity_histogram(image: torch.Tensor) -> np.ndarray:
    """Normalised histogram of the foreground (> 0.02) intensities of a canonical image."""
    values = image.detach().flatten().cpu().numpy()
    values = values[values > 0.02]
    if values.size == 0:
        return np.zeros(HISTOGRAM_BINS)
    counts, _ = np.histogram(np.clip(values, 0.0, 1.0), bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    return counts / counts.sum()


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Earth mover's distance between two histograms over [0, 1] (0: same, 1: opposite ends)."""
    return float(np.abs(np.cumsum(np.asarray(a) - np.asarray(b))).sum() / len(a))


@dataclass
class CanonicalPair:
    """Fixed and moving images on a model's canonical grid, ``(1, 1, D, H, W)`` each."""

    grid: Grid
    fixed: torch.Tensor
    moving: torch.Tensor

    @classmethod
    def build(cls, model: LoadedModel, fixed: sitk.Image, moving: sitk.Image, affine: sitk.Transform,
              fixed_mask: sitk.Image | None = None, moving_mask: sitk.Image | None = None,
              device: torch.device | str = "cpu") -> "CanonicalPair":
        grid_card = model.card["grid"]
        spacing = float(grid_card["spacing_mm"])
        grid = canonical_grid(fixed, fixed_mask, grid_card["size_xyz"], spacing)
        f = prepared_on_grid(fixed, grid, None, fixed_mask, spacing, device)
        m = prepared_on_grid(moving, grid, affine, moving_mask, spacing, device)
        return cls(grid, f, m)

    def unusual(self, model: LoadedModel) -> list[str]:
        """Why these inputs look unlike the model's training images (empty when they do not)."""
        reference = model.card.get("intensity_histogram")
        if not reference:
            return []
        limit = float(model.card.get("histogram_limit", 0.08))
        problems = []
        for role, image in (("fixed", self.fixed), ("moving", self.moving)):
            distance = histogram_distance(intensity_histogram(image), reference)
            if distance > limit:
                problems.append(f"the {role} image's intensities are unlike the {model.card.get('input', 'images')} "
                                f"that model '{model.name}' was trained on (histogram distance {distance:.3f} > "
                                f"{limit:.3f}); its result may be poor")
        return problems


@torch.no_grad()
def predict(model: LoadedModel, pair: CanonicalPair, lam: float | None = None) -> VelocityField:
    """The model's stationary velocity field for ``pair`` (HyperMorph: at ``lam``), world mm."""
    network = model.network
    inputs = torch.cat([pair.fixed, pair.moving], dim=1)
    if model.is_hyper:
        value = float(model.card.get("default_lambda", 0.5) if lam is None else lam)
        velocity = network(inputs, torch.tensor([value], device=inputs.device))
    else:
        velocity = network(inputs)
    field = NetworkField(pair.grid, network.velocity_level, int(model.card.get("integration_steps", 7)))
    result = VelocityField(field.coarse, field.world_velocity(velocity), steps=field.integrator.steps)
    result.field.requires_grad_(False)  # an inference result; a following svf stage copies it
    return result


@torch.no_grad()
def predict_cascade(model: LoadedModel, pair: CanonicalPair, runs: int = 1,
                    lam: float | None = None) -> VelocityField | VelocityChain:
    """The model run ``runs`` times as a recursive cascade: each run registers the fixed image
    to the moving image warped by the map so far, and the maps compose
    (:class:`~regsuite.engine.transforms.cascade.VelocityChain`); one run is :func:`predict`.

    Between runs the maps compose on the network's velocity grid, as in training; the returned
    chain holds the velocities on the canonical grid (twice as fine), where its map and its
    inverse are composed, so that they undo each other more closely."""
    first = predict(model, pair, lam)
    if runs <= 1:
        return first
    field = NetworkField(pair.grid, model.network.velocity_level, first.steps)
    chain = VelocityChain(first.grid, [first.field], first.steps)
    for _ in range(runs - 1):
        warped = field.warp(pair.moving, resample_field(chain.displacement(), chain.grid, pair.grid))
        step = predict(model, CanonicalPair(pair.grid, pair.fixed, warped), lam)
        chain = VelocityChain(first.grid, chain.velocities + [step.field], first.steps)
    return chain.resampled(pair.grid)
