"""``regsuite train``: train a registration network, checkpoint, resume, export weights and card.

The loss is the engine's: its similarity measure (``metric``) between the fixed image and the
moving image warped by ``exp(v)``, its ``diffusion`` regularizer on the velocity, plus a soft
Dice term on the label maps (semi-supervision, weight ``dice``) computed on the twice coarser
velocity grid. HyperMorph draws lambda per step and weighs
``(1 - lambda) (similarity + dice term) + lambda * hyper_scale * diffusion``.

A checkpoint (network, optimizer, step, random state, history) is written atomically every
``checkpoint_every`` steps, so a killed run resumes from the last one (``--resume``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import InputError
from ..engine.metrics import make_metric
from ..engine.regularizers import diffusion, folding_penalty, jacobian_determinant
from ..engine.transforms.dense import compose_on_grid, resample_field
from ..engine.grid import Grid
from .canonical import NORMALIZATION
from .config import TrainingConfig
from .consistency import inverse_consistency_error, inverse_consistency_loss
from .data import LabelClasses, PairSampler, check_data, load_subject
from .field import NetworkField
from .inference import histogram_distance, intensity_histogram
from .models import card_markdown, file_sha256
from .networks import VoxelMorphUNet, build_network, parameter_count

CHECKPOINT = "checkpoint.pt"
#: lambdas at which a HyperMorph export is validated (the card's ``lambda_sweep``)
LAMBDA_SWEEP = (0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0)


def soft_dice_loss(fixed: torch.Tensor, warped: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over the classes (channel 0, background, left out) present in ``fixed``."""
    fixed, warped = fixed[:, 1:], warped[:, 1:]
    dims = (0, 2, 3, 4)
    overlap = (fixed * warped).sum(dims)
    total = fixed.sum(dims) + warped.sum(dims)
    present = fixed.sum(dims) > 0
    dice = 2 * overlap[present] / total[present].clamp(min=1e-6)
    return 1.0 - dice.mean()


def pair_loss(velocity: torch.Tensor | Sequence[torch.Tensor], field: NetworkField, fixed: torch.Tensor,
              moving: torch.Tensor, metric: torch.nn.Module, regularization: float, dice_weight: float = 0.0,
              soft_labels: tuple[torch.Tensor, torch.Tensor] | None = None, lam: float | None = None,
              hyper_scale: float = 1.0, similarity_weight: float = 1.0,
              displacement: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of one pair and its terms.

    ``velocity`` is the network's output on ``field``'s velocity grid; the moving image is warped
    by ``exp(v)`` at the canonical grid's voxels and compared with ``metric``; the engine's
    ``diffusion`` regularizer acts on the world velocity; ``soft_labels`` (fixed, moving class
    fractions on the velocity grid, :meth:`LabelClasses.coarse_one_hot`, or one-hot maps on the
    canonical grid, :meth:`LabelClasses.one_hot`, warped by the map there) add ``dice_weight``
    times a soft Dice loss. With ``lam`` (HyperMorph) the total is
    ``(1 - lam) (similarity + dice term) + lam * hyper_scale * diffusion``, else
    ``similarity + dice term + regularization * diffusion``; the similarity is weighed by
    ``similarity_weight`` (0: not computed, the images only feed the network).

    A recursive cascade passes its runs' velocities as a list and their composed map as
    ``displacement`` (on the velocity grid, :meth:`Trainer.cascade`); the regularizer is the sum
    over the runs.
    """
    velocities = [velocity] if isinstance(velocity, torch.Tensor) else list(velocity)
    coarse_u = field.coarse_displacement(velocities[0]) if displacement is None else displacement
    smooth = sum(diffusion(field.world_velocity(v), field.coarse.spacing, field.coarse.direction) for v in velocities)
    terms = {"diffusion": float(smooth.detach())}
    data_term = torch.zeros((), device=velocities[0].device)
    use_dice = dice_weight > 0 and soft_labels is not None
    # the label maps' grid follows from their shape: class fractions on the velocity grid, or
    # one-hot maps on the canonical grid, which need the map there (as the similarity does)
    coarse_labels = use_dice and tuple(soft_labels[1].shape[2:]) == tuple(field.coarse.shape_zyx)
    u = None
    if similarity_weight > 0 or (use_dice and not coarse_labels):
        u = coarse_u if field.coarse is field.grid else resample_field(coarse_u, field.coarse, field.grid)
    if similarity_weight > 0:
        similarity = metric(fixed, field.warp(moving, u), None, field.grid.spacing)
        terms["similarity"] = float(similarity.detach())
        data_term = similarity_weight * similarity
    if use_dice:
        warped_soft = (field.warp(soft_labels[1], coarse_u, field.coarse) if coarse_labels
                       else field.warp(soft_labels[1], u))
        dice = soft_dice_loss(soft_labels[0], warped_soft)
        terms["dice_loss"] = float(dice.detach())
        data_term = data_term + dice_weight * dice
    if lam is not None:
        total = (1.0 - lam) * data_term + lam * hyper_scale * smooth
        terms["lambda"] = lam
    else:
        total = data_term + regularization * smooth
    terms["loss"] = float(total.detach())
    return total, terms


def label_dice(fixed: np.ndarray, moved: np.ndarray, values: list[int]) -> float:
    """Mean Dice over ``values`` present in both label maps."""
    scores = []
    for value in values:
        a, b = fixed == value, moved == value
        if a.any() and b.any():
            scores.append(2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))
    return float(np.mean(scores)) if scores else float("nan")


def validation_text(validation: dict[str, float]) -> str:
    """The progress line's validation part: Dice, and folding or the affine error when measured."""
    parts = [f"dice {validation['dice']:.4f}"] if "dice" in validation else []
    if "folding_percent" in validation:
        parts.append(f"fold {validation['folding_percent']:.3f}%")
    if "error_mm" in validation:
        parts.append(f"error {validation['error_mm']:.2f} mm")
    if "ic_error_mm" in validation:
        parts.append(f"ic {validation['ic_error_mm']:.2f} mm")
    return " | val " + " ".join(parts) if parts else ""


def _atomic_save(payload: Any, path: Path) -> None:
    temporary = path.with_name(path.name + ".partial")
    torch.save(payload, temporary)
    os.replace(temporary, path)


class Trainer:
    """One training run in ``output_dir`` (see the module docstring)."""

    def __init__(self, config: TrainingConfig, output_dir: str | Path, device: torch.device,
                 data_root: str | Path | None = None, log: Callable[[str], None] = print,
                 threads: int | None = None) -> None:
        self.config, self.device, self.log = config, device, log
        if threads is not None:
            torch.set_num_threads(int(threads))
        self.output = Path(output_dir)
        self.root = Path(data_root if data_root is not None else config.data.get("root", "../shared/data/oasis_trt20"))
        check_data(config.data, self.root)
        self.rng = np.random.default_rng(config.seed)
        torch.manual_seed(config.seed)
        self.network = build_network(config.architecture, dict(config.network)).to(device)
        self.hyper = config.architecture == "hypermorph"
        if self.hyper and config.hyper_learning_rate is not None:
            groups = [{"params": self.network.unet.parameters()},
                      {"params": self.network.hyper.parameters(), "lr": float(config.hyper_learning_rate)}]
            self.optimizer = torch.optim.Adam(groups, lr=config.learning_rate)
        else:
            self.optimizer = torch.optim.Adam(self.network.parameters(), lr=config.learning_rate)
        self.metric = make_metric(config.metric, **config.metric_options)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.subjects: dict[int, Any] = {}
        self.labels: LabelClasses | None = None
        self._affines: dict[tuple[int, int], sitk.Transform] = {}

    # ------------------------------------------------------------------ data
    def load_data(self) -> None:
        data, spacing = self.config.data, self.config.grid_spacing
        keys = sorted(set(data["subjects"]) | {s for pair in data.get("validation_pairs", []) for s in pair})
        for key in keys:
            self.subjects[key] = load_subject(data, key, self.root, spacing)
        values = sorted({int(v) for key in data["subjects"]
                         for v in np.unique(sitk.GetArrayViewFromImage(self.subjects[key].labels)) if v > 0})
        self.labels = LabelClasses(values)
        train = {key: self.subjects[key] for key in data["subjects"]}
        self.sampler = PairSampler(train, self.affine, tuple(self.config.grid_size), spacing,
                                   self.config.augmentation, self.rng, self.config.synthesis, self.labels)
        self.validator = PairSampler(self.subjects, self.affine, tuple(self.config.grid_size), spacing, {}, self.rng)

    def affine(self, i: int, j: int) -> sitk.Transform:
        """The engine's affine of the pair ``i <- j`` (fixed world -> moving world), cached on disk."""
        if (i, j) not in self._affines:
            path = self.output / "affines" / f"{i}-{j}.tfm"
            if path.is_file():
                transform = sitk.ReadTransform(str(path))
            else:
                from ..engine.registration import register
                threads = torch.get_num_threads()
                with torch.enable_grad():  # validation runs under no_grad
                    result = register(self.subjects[i].image, self.subjects[j].image, self.config.affine,
                                      threads=threads, device="cpu")
                transform = result.transform
                path.parent.mkdir(parents=True, exist_ok=True)
                temporary = path.with_name(f".{path.stem}.partial.tfm")
                sitk.WriteTransform(transform, str(temporary))
                os.replace(temporary, path)
                torch.set_num_threads(threads)
            self._affines[(i, j)] = transform
        return self._affines[(i, j)]

    def teacher(self, i: int, j: int) -> tuple[Grid, torch.Tensor]:
        """The classical velocity field of the pair ``i <- j`` after its affine (world mm on the
        teacher's own grid), computed once and cached on disk."""
        path = self.output / "teachers" / f"{i}-{j}.pt"
        if path.is_file():
            saved = torch.load(path, weights_only=True)
            grid = Grid(tuple(saved["size"].tolist()), tuple(saved["spacing"].tolist()),
                        tuple(saved["origin"].tolist()), saved["direction"].numpy())
            return grid, saved["velocity"]
        from ..engine.registration import register
        threads = torch.get_num_threads()
        with torch.enable_grad():
            result = register(self.subjects[i].image, self.subjects[j].image, self.config.teacher,
                              initial_transform=self.affine(i, j), threads=threads, device="cpu")
        torch.set_num_threads(threads)
        model = result.deformable
        grid, velocity = model.grid, model.field.detach().cpu().float()
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_save({"size": torch.tensor(grid.size), "spacing": torch.tensor(grid.spacing, dtype=torch.float64),
                      "origin": torch.tensor(grid.origin, dtype=torch.float64),
                      "direction": torch.tensor(grid.direction), "velocity": velocity}, path)
        return grid, velocity

    # ------------------------------------------------------------------ model
    def _lambda(self) -> float:
        return float(self.rng.uniform() ** self.config.lambda_power)

    def forward(self, pair: torch.Tensor, lam: float | None) -> torch.Tensor:
        if self.hyper:
            return self.network(pair, torch.tensor([lam if lam is not None else 0.5], device=pair.device))
        return self.network(pair)

    def cascade(self, field: NetworkField, fixed: torch.Tensor, moving: torch.Tensor,
                lam: float | None) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The network's ``cascade`` runs on a pair, as :func:`~regsuite.learning.inference.predict_cascade`
        makes them: each run sees the moving image warped by the map so far. Returns the runs'
        velocities and their composed map on the velocity grid (None for a single run)."""
        runs = [self.forward(torch.cat([fixed, moving], dim=1), lam)]
        if self.config.cascade == 1:
            return runs, None
        total = field.coarse_displacement(runs[0])
        for _ in range(self.config.cascade - 1):
            u = total if field.coarse is field.grid else resample_field(total, field.coarse, field.grid)
            runs.append(self.forward(torch.cat([fixed, field.warp(moving, u)], dim=1), lam))
            total = compose_on_grid(field.coarse_displacement(runs[-1]), total, field.coarse)
        return runs, total

    def loss(self, sample: dict[str, Any], lam: float | None) -> tuple[torch.Tensor, dict[str, float]]:
        field = NetworkField(sample["grid"], self.network.velocity_level, self.config.integration_steps)
        fixed, moving = sample["fixed"], sample["moving"]
        runs, composed = self.cascade(field, fixed, moving, lam)
        velocity = runs[0]
        soft = None
        if self.config.dice > 0 and "fixed_labels" in sample:
            if self.config.dice_grid == "canonical":
                subset = self._dice_subset(sample["fixed_labels"])
                soft = tuple(self.labels.one_hot(sample[key], subset).to(fixed.device)
                             for key in ("fixed_labels", "moving_labels"))
            else:
                soft = (self.labels.coarse_one_hot(sample["fixed_labels"]).to(fixed.device),
                        self.labels.coarse_one_hot(sample["moving_labels"]).to(fixed.device))
        if "fixed_loss" in sample:  # synthesized inputs: the similarity compares a same-contrast pair
            fixed, moving = sample["fixed_loss"], sample["moving_loss"]
        total, terms = pair_loss(runs, field, fixed, moving, self.metric, self.config.regularization,
                                 self.config.dice, soft, lam, self.config.hyper_scale, self.config.similarity_weight,
                                 composed)
        if self.config.inverse_consistency > 0 or self.config.folding > 0:
            total = total + self._both_directions(sample, velocity, field, soft, fixed, moving, lam, terms)
        if self.config.teacher_weight > 0 and self.config.teacher is not None:
            grid, target = self.teacher(*sample["pair"])
            target = resample_field(target.to(fixed.device), grid, field.coarse, padding="zeros")
            distance = (field.world_velocity(velocity) - target).square().sum(dim=1).mean()
            weight = self.config.teacher_weight * ((1.0 - lam) if lam is not None else 1.0)
            total = total + weight * distance
            terms["teacher_mm2"] = float(distance.detach())
            terms["loss"] = float(total.detach())
        return total, terms

    def _dice_subset(self, fixed_labels: torch.Tensor) -> list[int] | None:
        """``dice_labels`` random classes present in the fixed map (None: every class)."""
        count = self.config.dice_labels
        if count <= 0 or count >= len(self.labels):
            return None
        present = torch.unique(self.labels.classes(fixed_labels))
        present = [int(c) for c in present if int(c) > 0]
        if len(present) <= count:
            return present
        return sorted(int(c) for c in self.rng.choice(present, size=count, replace=False))

    def _both_directions(self, sample: dict[str, Any], velocity: torch.Tensor, field: NetworkField,
                         soft: tuple[torch.Tensor, torch.Tensor] | None, fixed: torch.Tensor, moving: torch.Tensor,
                         lam: float | None, terms: dict[str, float]) -> torch.Tensor:
        """Inverse-consistent training (in the manner of ICNet): the network also registers the
        pair the other way round (the same loss, roles swapped), the two maps' compositions are
        pulled to the identity (``inverse_consistency`` x mm^2) and negative Jacobians of both
        are penalised (``folding`` x the engine's folding penalty)."""
        backward = self.forward(torch.cat([sample["moving"], sample["fixed"]], dim=1), lam)
        swapped = (soft[1], soft[0]) if soft is not None else None
        extra, back_terms = pair_loss(backward, field, moving, fixed, self.metric, self.config.regularization,
                                      self.config.dice, swapped, lam, self.config.hyper_scale,
                                      self.config.similarity_weight)
        forward_u, backward_u = field.coarse_displacement(velocity), field.coarse_displacement(backward)
        coarse = field.coarse
        if self.config.inverse_consistency > 0:
            consistency = inverse_consistency_loss(forward_u, backward_u, coarse)
            extra = extra + self.config.inverse_consistency * consistency
            terms["ic_mm2"] = float(consistency.detach())
        if self.config.folding > 0:
            folds = sum(folding_penalty(u, coarse.spacing, coarse.direction) for u in (forward_u, backward_u))
            extra = extra + self.config.folding * folds
            terms["folding"] = float(folds.detach())
        terms["backward_loss"] = back_terms["loss"]
        terms["loss"] = terms["loss"] + float(extra.detach())
        return extra

    @torch.no_grad()
    def validate(self, lam: float | None = None) -> dict[str, float]:
        """Mean label Dice and % of J <= 0 on the validation pairs (2 mm canonical grid)."""
        self.network.eval()
        dices, folds, consistency = [], [], []
        for pair in self.config.data.get("validation_pairs", []):
            sample = self.validator.sample(tuple(pair), augment=False, device=self.device)
            field = NetworkField(sample["grid"], self.network.velocity_level, self.config.integration_steps)
            u = self._validation_map(field, sample["fixed"], sample["moving"], lam)
            moved = field.warp(sample["moving_labels"].to(u.device).float(), u, mode="nearest")
            dices.append(label_dice(sample["fixed_labels"].numpy(), moved.round().long().cpu().numpy(),
                                    self.labels.values))
            det = jacobian_determinant(u, field.grid.spacing, field.grid.direction)
            folds.append(float((det <= 0).float().mean()) * 100.0)
            # the network's own other direction: how far the two maps are from being inverse
            backward = self._validation_map(field, sample["moving"], sample["fixed"], lam)
            consistency.append(inverse_consistency_error(u, backward, field.grid, sample["fixed"] > 0.05))
        self.network.train()
        return {"dice": float(np.mean(dices)) if dices else float("nan"),
                "folding_percent": float(np.mean(folds)) if folds else float("nan"),
                "ic_error_mm": float(np.mean(consistency)) if consistency else float("nan")}

    def _validation_map(self, field: NetworkField, fixed: torch.Tensor, moving: torch.Tensor,
                        lam: float | None) -> torch.Tensor:
        """The map (all cascade runs) at the canonical grid's voxels, world mm."""
        runs, composed = self.cascade(field, fixed, moving, lam)
        if composed is None:
            return field.displacement(runs[0])
        return composed if field.coarse is field.grid else resample_field(composed, field.coarse, field.grid)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> None:
        self.output.mkdir(parents=True, exist_ok=True)
        state = self.rng.bit_generator.state
        _atomic_save({"step": self.step, "network": self.network.state_dict(),
                      "optimizer": self.optimizer.state_dict(), "rng": json.dumps(state),
                      "torch_rng": torch.get_rng_state(), "history": json.dumps(self.history),
                      "config": json.dumps(self.config.to_dict())}, self.output / CHECKPOINT)

    def load_checkpoint(self) -> None:
        path = self.output / CHECKPOINT
        if not path.is_file():
            raise InputError(f"--resume: no checkpoint in '{self.output}'")
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as error:  # a truncated or foreign file
            raise InputError(f"checkpoint '{path}' cannot be read: {str(error).splitlines()[0]}") from None
        saved = json.loads(state["config"])
        if saved.get("architecture") != self.config.architecture or saved.get("network") != self.config.network:
            raise InputError(f"checkpoint '{path}' belongs to another network than this config's")
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.rng.bit_generator.state = json.loads(state["rng"])
        torch.set_rng_state(state["torch_rng"].cpu())
        self.history = json.loads(state["history"])

    def load_initial_weights(self, path: str) -> None:
        """Warm start: weights of a trained network (a HyperMorph starts from its U-Net's, a
        pyramid's fine level from a VoxelMorph network's, a full-resolution U-Net from a
        half-resolution one's, see :meth:`VoxelMorphUNet.load_half_resolution`)."""
        from .models import read_weights
        state = read_weights(Path(path))
        target = self.network
        if self.hyper and not any(k.startswith("unet.") for k in state):
            target = self.network.unet
        elif self.config.architecture == "pyramid" and not any(k.startswith("fine.") for k in state):
            target = self.network.fine
        if (isinstance(target, VoxelMorphUNet) and target.velocity_level == 0
                and f"decoder.{len(target.decoder) - 1}.conv.weight" not in state):
            target.load_half_resolution(state)
        else:
            target.load_state_dict(state)

    # ------------------------------------------------------------------ loop
    def run(self, iterations: int | None = None, resume: bool = False) -> None:
        total = int(iterations if iterations is not None else self.config.iterations)
        if resume:
            self.load_checkpoint()
        elif self.config.initial_weights:
            self.load_initial_weights(self.config.initial_weights)
        self.load_data()
        self.output.mkdir(parents=True, exist_ok=True)
        (self.output / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        started, first = time.perf_counter(), self.step
        last_validation: dict[str, float] = self.history[-1].get("validation", {}) if self.history else {}
        while self.step < total:
            sample = self.sampler.sample(device=self.device)
            lam = self._lambda() if self.hyper else None
            loss, terms = self.loss(sample, lam)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            record = {"step": self.step, **{k: round(v, 5) for k, v in terms.items()}}
            if self.step % self.config.validate_every == 0 or self.step == total:
                last_validation = self.validate()
                record["validation"] = last_validation
            self.history.append(record)
            if self.step % self.config.checkpoint_every == 0 or self.step == total:
                self.save_checkpoint()
            rate = (time.perf_counter() - started) / max(self.step - first, 1)
            if self.step % 5 == 0 or self.step == total or "validation" in record:
                window = self.history[-25:]
                mean = {k: np.mean([h[k] for h in window if k in h])
                        for k in ("loss", "similarity", "dice_loss", "teacher_mm2", "ic_mm2", "folding", "orthogonality",
                                  "determinant")
                        if any(k in h for h in window)}
                validation = validation_text(last_validation)
                self.log(f"step {self.step}/{total} " + " ".join(f"{k} {v:.4f}" for k, v in mean.items())
                         + validation + f" | {rate:.2f} s/step, eta {(total - self.step) * rate / 60:.0f} min")

    # ------------------------------------------------------------------ export
    def save_weights(self) -> Path:
        """The network's weights as float32 tensors in ``weights.pt`` (written atomically)."""
        weights = self.output / "weights.pt"
        _atomic_save({k: v.detach().float().cpu().contiguous() for k, v in self.network.state_dict().items()}, weights)
        return weights

    def card(self, command: str, hardware: str | None, weights: Path, validation: dict[str, Any],
             validation_grid: str, **fields: Any) -> dict[str, Any]:
        """The model card's fields every architecture shares, then ``fields``."""
        return {
            "name": self.config.name,
            "architecture": self.config.architecture,
            "network": dict(self.network.config),
            "parameters": parameter_count(self.network),
            "grid": {"size_xyz": list(self.config.grid_size), "spacing_mm": self.config.grid_spacing,
                     "placement": "world-axis-aligned (LPS), centred on the fixed image's foreground box",
                     "velocity_level": self.network.velocity_level},
            "normalization": {**NORMALIZATION, "smoothing": "Gaussian, sigma 0.5 sqrt(spacing^2 - s^2) mm"},
            **fields,
            "training": {"subjects": self.config.data["subjects"], "root": str(self.config.data.get("root", "")),
                         "iterations": self.step, "command": command, "config": self.config.to_dict(),
                         "hardware": hardware or f"{platform.machine()} {platform.processor() or ''}".strip()
                         + f", torch {torch.__version__}, {torch.get_num_threads()} threads, {self.device}"},
            "validation": {"pairs": self.config.data.get("validation_pairs", []), "grid": validation_grid,
                           **validation},
            "licence": self.config.licence,
            "weights": {"file": "weights.pt", "sha256": file_sha256(weights), "bytes": weights.stat().st_size},
        }

    def write_card(self, card: dict[str, Any]) -> Path:
        """``card.json`` and its human-readable ``card.md``; returns the JSON's path."""
        path = self.output / "card.json"
        path.write_text(json.dumps(card, indent=2) + "\n")
        (self.output / "card.md").write_text(card_markdown(card))
        return path

    def export(self, command: str, hardware: str | None = None) -> Path:
        """Write ``weights.pt`` and ``card.json`` into the output folder; return the card's path."""
        weights = self.save_weights()
        sweep = {}
        if self.hyper:
            for lam in LAMBDA_SWEEP:
                sweep[str(lam)] = self.validate(lam)
        validation = self.validate()
        synthesized = self.config.synthesis is not None
        histograms = [intensity_histogram(self.validator.sample((i, j), augment=False)["fixed"])
                      for i, j in self.sampler.pairs[:: max(1, len(self.sampler.pairs) // len(self.sampler.subjects))]]
        reference = np.mean(histograms, axis=0)
        spread = max(histogram_distance(h, reference) for h in histograms)
        card = self.card(
            command, hardware, weights, validation, "2 mm canonical grid, labels warped by nearest neighbour",
            integration_steps=self.config.integration_steps,
            input=("skull-stripped brain MRI of any contrast (trained on images synthesized from label maps)"
                   if synthesized else "skull-stripped T1-weighted brain MRI"),
            channels=["fixed", "moving after the affine"],
            labels=self.labels.values if self.labels else [],
            **({"cascade": self.config.cascade} if self.config.cascade > 1 else {}),
            **({"synthesis": dict(self.config.synthesis)} if synthesized else {
                "intensity_histogram": [round(float(v), 6) for v in reference],
                # an input further than this from the training histogram gets a warning
                "histogram_limit": round(max(3.0 * spread, 0.05), 4)}))
        if sweep:
            card["validation"]["lambda_sweep"] = sweep
            best = max(sweep, key=lambda key: sweep[key]["dice"] - (1.0 if sweep[key]["folding_percent"] > 0.01 else 0.0))
            card["default_lambda"] = float(best)
        return self.write_card(card)
