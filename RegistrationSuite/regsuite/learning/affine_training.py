"""Training of the affine network (``"architecture": "affine"``): random misalignments,
similarity, distillation from the classical affine, VTN's orthogonality and determinant losses.

A sample is a training pair ``i <- j`` whose moving image is first moved by a random rigid
misalignment ``Q`` (angle up to ``misalignment_degrees`` about a random axis, shift up to
``misalignment_mm`` in a random direction, about the moving brain's centre). As at inference,
the network then sees both images on its canonical grid after the centres-of-mass
initialization ``L0`` (for the moved image: ``Q^-1`` of the moving centre of mass), and predicts
``N``; the map it proposes is ``P = L0 o N`` (fixed world -> moved moving world). The loss:

* ``similarity_weight`` x the metric (global NCC) between the fixed image and the moving image
  sampled at ``Q(P(x))`` on the canonical grid (differentiable in ``N``);
* ``teacher_weight`` x the mean squared distance (mm^2) over the fixed brain between
  ``Q(P(x))`` and the pair's classical affine ``T_ij(x)`` (the engine's ``affine`` preset in
  the config, cached per pair);
* ``orthogonality`` / ``determinant`` x VTN's losses on ``N``'s matrix.

Validation (pairs never trained on, no misalignment): the mean distance in mm over the fixed
brain between ``P`` and the classical affine, and the label Dice after ``P`` on the canonical grid.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from ..engine.initialization import initialize
from ..engine.transforms.linear import sitk_linear_to_affine
from .affine import AffineNet, determinant_loss, orthogonality_loss
from .canonical import canonical_grid, on_grid
from .data import random_rotation
from .training import Trainer, label_dice


def random_misalignment(rng: np.random.Generator, degrees: float, mm: float) -> tuple[np.ndarray, np.ndarray]:
    """A rotation by an angle uniform in ``[0, degrees]`` about a uniformly random axis, and a
    shift of length uniform in ``[0, mm]`` in a uniformly random direction."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = math.radians(rng.uniform(0.0, degrees))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
    direction = rng.normal(size=3)
    return rotation, direction / np.linalg.norm(direction) * rng.uniform(0.0, mm)


def rigid_about(rotation: np.ndarray, shift: np.ndarray, center: np.ndarray) -> sitk.AffineTransform:
    """``y -> c + R (y - c) + s`` as an ITK transform."""
    transform = sitk.AffineTransform(3)
    transform.SetCenter([float(v) for v in center])
    transform.SetMatrix(np.asarray(rotation, dtype=np.float64).ravel().tolist())
    transform.SetTranslation([float(v) for v in shift])
    return transform


class AffineTrainer(Trainer):
    """:class:`~regsuite.learning.training.Trainer` for an :class:`~regsuite.learning.affine.AffineNet`."""

    def load_data(self) -> None:
        from .data import LabelClasses, load_subject

        data, spacing = self.config.data, self.config.grid_spacing
        keys = sorted(set(data["subjects"]) | {s for pair in data.get("validation_pairs", []) for s in pair})
        for key in keys:
            self.subjects[key] = load_subject(data, key, self.root, spacing)
        values = sorted({int(v) for key in data["subjects"] if self.subjects[key].labels is not None
                         for v in np.unique(sitk.GetArrayViewFromImage(self.subjects[key].labels)) if v > 0})
        self.labels = LabelClasses(values) if values else None
        self.pairs = [(i, j) for i in data["subjects"] for j in data["subjects"] if i != j]
        self._moving_tensors: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._centres: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.sampler = self  # the training loop draws its samples from :meth:`sample`

    # ------------------------------------------------------------------ samples
    def _moving_tensor(self, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The prepared moving image as a tensor and its world -> grid_sample matrix."""
        if key not in self._moving_tensors:
            from ..engine.grid import Grid
            from ..engine.pyramid import to_tensor
            image = self.subjects[key].prepared
            grid = Grid.from_sitk(image)
            self._moving_tensors[key] = (to_tensor(image, self.device),
                                         torch.as_tensor(grid.world_to_normalized(), dtype=torch.float64))
        return self._moving_tensors[key]

    def _moments(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """The fixed and moving intensity centres of mass (world mm), as the engine's
        ``moments`` initialization finds them."""
        if (i, j) not in self._centres:
            init = initialize(self.subjects[i].image, self.subjects[j].image, "moments")
            center = np.asarray(init.center, dtype=np.float64)
            self._centres[(i, j)] = (center, center + np.asarray(init.translation, dtype=np.float64))
        return self._centres[(i, j)]

    def sample(self, pair: tuple[int, int] | None = None, augment: bool = True,
               misalignment: tuple[np.ndarray, np.ndarray] | None = None, device: Any = None) -> dict[str, Any]:
        """A pair on the canonical grid; ``misalignment`` (rotation, shift) overrides the random one
        (validation and benchmarks pass their own, or none)."""
        i, j = pair if pair is not None else self.pairs[int(self.rng.integers(len(self.pairs)))]
        fixed, moving = self.subjects[i], self.subjects[j]
        a = self.config.augmentation
        size, spacing = tuple(self.config.grid_size), self.config.grid_spacing
        if augment:
            direction = random_rotation(self.rng, float(a.get("rotation_degrees", 0.0)))
            offset = self.rng.uniform(-1, 1, 3) * float(a.get("translation_mm", 0.0))
            grid = canonical_grid(fixed.image, size=size, spacing=spacing, center=fixed.center + offset,
                                  direction=direction)
            if misalignment is None:
                misalignment = random_misalignment(self.rng, float(a.get("misalignment_degrees", 0.0)),
                                                   float(a.get("misalignment_mm", 0.0)))
        else:
            grid = canonical_grid(fixed.image, size=size, spacing=spacing, center=fixed.center)
        rotation, shift = misalignment if misalignment is not None else (np.eye(3), np.zeros(3))
        q = rigid_about(rotation, shift, moving.center)
        com_fixed, com_moving = self._moments(i, j)
        # L0: the moved image's centre of mass is Q^-1 of the moving image's
        moved = np.asarray(q.GetInverse().TransformPoint(tuple(com_moving)))
        initial = sitk.TranslationTransform(3, (moved - com_fixed).tolist())
        return {"pair": (i, j), "grid": grid, "q": q, "initial": initial,
                "fixed": on_grid(fixed.prepared, grid, device=self.device),
                "moving": on_grid(moving.prepared, grid, sitk.CompositeTransform([q, initial]), device=self.device),
                "fixed_labels": on_grid(fixed.labels, grid, labels=True) if fixed.labels is not None else None}

    # ------------------------------------------------------------------ model
    def predicted_points(self, sample: dict[str, Any], parameters: torch.Tensor,
                         points: torch.Tensor) -> torch.Tensor:
        """``Q(P(x))``: world points ``(N, 3)`` of the fixed image -> the original moving image's world,
        through the network's map ``N``, ``L0`` and the misalignment (float64, differentiable)."""
        grid = sample["grid"]
        matrix, translation = AffineNet.affine(parameters)
        d = torch.as_tensor(grid.direction, dtype=torch.float64)
        c = torch.as_tensor(grid.center_world(), dtype=torch.float64)
        world_matrix = d @ matrix.double() @ d.T
        mapped = (points - c) @ world_matrix.T + c + d @ translation.double()
        q_matrix, q_offset = (torch.as_tensor(v, dtype=torch.float64) for v in
                              sitk_linear_to_affine(sitk.CompositeTransform([sample["q"], sample["initial"]])))
        return mapped @ q_matrix.T + q_offset

    def _brain_points(self, sample: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        grid = sample["grid"]
        points = grid.world_points()[0].reshape(-1, 3).double()
        inside = sample["fixed"].reshape(-1).cpu() > 0.05
        return points, inside

    def loss(self, sample: dict[str, Any], lam: float | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        parameters = self.network(torch.cat([sample["fixed"], sample["moving"]], dim=1))
        matrix, _ = AffineNet.affine(parameters)
        points, inside = self._brain_points(sample)
        mapped = self.predicted_points(sample, parameters, points)
        terms: dict[str, float] = {}
        total = torch.zeros((), dtype=torch.float64)
        if self.config.similarity_weight > 0:
            image, to_normalized = self._moving_tensor(sample["pair"][1])
            normalized = mapped @ to_normalized[:3, :3].T + to_normalized[:3, 3]
            shape = sample["fixed"].shape[2:]
            warped = F.grid_sample(image, normalized.float().reshape(1, *shape, 3), mode="bilinear",
                                   padding_mode="zeros", align_corners=True)
            similarity = self.metric(sample["fixed"], warped, None, sample["grid"].spacing)
            terms["similarity"] = float(similarity.detach())
            total = total + self.config.similarity_weight * similarity.double()
        if self.config.teacher_weight > 0:
            a, b = (torch.as_tensor(v, dtype=torch.float64) for v in sitk_linear_to_affine(self.affine(*sample["pair"])))
            target = points[inside] @ a.T + b
            distance = (mapped[inside] - target).square().sum(dim=1).mean()
            terms["teacher_mm2"] = float(distance.detach())
            total = total + self.config.teacher_weight * distance
        for key, function in (("orthogonality", orthogonality_loss), ("determinant", determinant_loss)):
            weight = getattr(self.config, key)
            if weight > 0:
                value = function(matrix.double())
                terms[key] = float(value.detach())
                total = total + weight * value
        terms["loss"] = float(total.detach())
        return total.float(), terms

    @torch.no_grad()
    def validate(self, lam: float | None = None) -> dict[str, float]:
        """Mean distance (mm) to the classical affine over the fixed brain, and label Dice after
        the network's affine on the canonical grid, over the validation pairs."""
        self.network.eval()
        errors, dices = [], []
        for pair in self.config.data.get("validation_pairs", []):
            sample = self.sample(tuple(pair), augment=False)
            parameters = self.network(torch.cat([sample["fixed"], sample["moving"]], dim=1))
            points, inside = self._brain_points(sample)
            mapped = self.predicted_points(sample, parameters, points)
            a, b = (torch.as_tensor(v, dtype=torch.float64) for v in sitk_linear_to_affine(self.affine(*pair)))
            errors.append(float((mapped[inside] - (points[inside] @ a.T + b)).norm(dim=1).mean()))
            if sample["fixed_labels"] is not None and self.labels is not None:
                transform = sitk.AffineTransform(3)
                m, o = self.world_map(sample, parameters)
                transform.SetMatrix(m.ravel().tolist())
                transform.SetTranslation(o.tolist())
                moved = on_grid(self.subjects[pair[1]].labels, sample["grid"], transform, labels=True)
                dices.append(label_dice(sample["fixed_labels"].numpy(), moved.numpy(), self.labels.values))
        self.network.train()
        result = {"error_mm": float(np.mean(errors)) if errors else float("nan")}
        if dices:
            result["dice"] = float(np.mean(dices))
        return result

    def world_map(self, sample: dict[str, Any], parameters: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The whole predicted map fixed world -> original moving world as ``x -> M x + o``."""
        # the origin and the three unit points
        basis = torch.cat([torch.zeros(1, 3, dtype=torch.float64), torch.eye(3, dtype=torch.float64)])
        mapped = self.predicted_points(sample, parameters, basis).numpy()
        offset = mapped[0]
        return (mapped[1:] - offset).T, offset

    # ------------------------------------------------------------------ export
    def export(self, command: str, hardware: str | None = None) -> Path:
        weights = self.save_weights()
        card = self.card(
            command, hardware, weights, self.validate(),
            f"{self.config.grid_spacing:g} mm canonical grid; error: mean distance to the classical affine over the "
            "fixed brain",
            output="12 affine parameters (A = A_shear A_scale R, translation) about the canonical grid's centre, "
                   "applied after the transform found before (e.g. the centres-of-mass initialization)",
            input="skull-stripped T1-weighted brain MRI",
            channels=["fixed", "moving after the transform found before"])
        return self.write_card(card)
