"""Training data: subjects (image + label map), pair affines, and augmented samples on the
canonical grid.

A sample is a fixed subject ``i`` and a moving subject ``j`` (``i != j``), both resampled onto
a canonical grid centred on ``i``'s brain: the moving one through the affine ``i <- j`` found by
the engine (cached on disk, computed the first time the pair is drawn). Spatial augmentation
turns, scales and shifts the canonical grid itself (both images alike, so the affine stays
right); intensity augmentation applies a random gamma and noise to each image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import InputError
from ..engine.grid import Grid
from .canonical import canonical_grid, foreground_center, on_grid, prepare_intensity
from .synthesis import random_contrast, synthesize, tissue_groups

#: how the similarity loss's same-contrast pair is rendered: label grey values only (no blur, bias or noise)
PLAIN_RENDERING = {"background_zero": 1.0, "spread": 0.0, "blur_voxels": 0.0, "bias": 0.0, "gamma": 0.0,
                   "noise": 0.0}


@dataclass
class Subject:
    """One subject: the raw image (for the affine), its prepared intensities and its labels."""

    key: int
    image: sitk.Image
    prepared: sitk.Image
    labels: sitk.Image | None
    center: np.ndarray

    @cached_property
    def brain(self) -> sitk.Image:
        """The voxels above the image's minimum (the brain of a skull-stripped image), as 0/1
        (computed once: synthesized training samples ask for it twice per step)."""
        minimum = float(sitk.GetArrayViewFromImage(self.image).min())
        return sitk.Cast(self.image > minimum, sitk.sitkUInt8)


def subject_files(data: dict[str, Any], subject: int, root: Path) -> tuple[Path, Path | None]:
    """The image and label files of ``subject`` (``data.pattern`` names its folder)."""
    folder = root / str(data.get("pattern", "OASIS-TRT-20-{subject}")).format(subject=subject)
    image = folder / data.get("image", "t1weighted_brain.nii.gz")
    labels = folder / data.get("labels", "labels.DKT31.manual+aseg.nii.gz") if data.get("labels", True) else None
    return image, labels


def check_data(data: dict[str, Any], root: Path) -> None:
    """One-line :class:`InputError` for a missing data folder or file, or a validation subject
    that is also a training subject."""
    if not root.is_dir():
        raise InputError(f"training data folder '{root}' does not exist (set data.root or --data-root)")
    train = set(data["subjects"])
    validation = {s for pair in data.get("validation_pairs", []) for s in pair}
    shared = sorted(train & validation)
    if shared:
        raise InputError(f"subject(s) {', '.join(map(str, shared))} are both training and validation subjects")
    for subject in sorted(train | validation):
        for path in subject_files(data, subject, root):
            if path is not None and not path.is_file():
                raise InputError(f"training data file '{path}' does not exist")


def load_subject(data: dict[str, Any], subject: int, root: Path, spacing: float) -> Subject:
    image_path, label_path = subject_files(data, subject, root)
    image = sitk.ReadImage(str(image_path), sitk.sitkFloat32)
    labels = sitk.ReadImage(str(label_path)) if label_path is not None else None
    return Subject(subject, image, prepare_intensity(image, spacing=spacing), labels, foreground_center(image))


def random_rotation(rng: np.random.Generator, degrees: float) -> np.ndarray:
    """A rotation matrix from three angles drawn uniformly in ``[-degrees, degrees]``."""
    matrix = np.eye(3)
    for axis in range(3):
        angle = math.radians(rng.uniform(-degrees, degrees))
        c, s = math.cos(angle), math.sin(angle)
        a, b = [k for k in range(3) if k != axis]
        turn = np.eye(3)
        turn[a, a], turn[a, b], turn[b, a], turn[b, b] = c, -s, s, c
        matrix = turn @ matrix
    return matrix


class LabelClasses:
    """Label values -> class indices 1..K (0: background and unknown values), with soft one-hot
    maps on the twice coarser grid (the fraction of each coarse voxel's 2x2x2 fine voxels)."""

    def __init__(self, values: list[int]) -> None:
        self.values = [int(v) for v in values]
        self.lookup = torch.zeros(max(self.values) + 1, dtype=torch.long)
        self.lookup[torch.tensor(self.values)] = torch.arange(1, len(self.values) + 1)

    def __len__(self) -> int:
        return len(self.values)

    def classes(self, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.clamp(min=0)
        inside = labels < self.lookup.numel()
        return torch.where(inside, self.lookup.to(labels.device)[labels.clamp(max=self.lookup.numel() - 1)], 0)

    def one_hot(self, labels: torch.Tensor, subset: list[int] | None = None) -> torch.Tensor:
        """``(1, K + 1, D, H, W)`` one-hot float maps of a ``(1, 1, D, H, W)`` label map (channel 0:
        background and unknown values); with ``subset`` (class indices 1..K) only those classes,
        ``(1, len(subset) + 1, D, H, W)``, channel 0 then everything else."""
        classes = self.classes(labels)[:, 0]
        if subset is None:
            return torch.nn.functional.one_hot(classes, len(self) + 1).permute(0, 4, 1, 2, 3).float()
        maps = [classes[:, None] == int(index) for index in subset]
        rest = ~torch.stack(maps, dim=0).any(dim=0) if maps else torch.ones_like(classes[:, None], dtype=torch.bool)
        return torch.cat([rest, *maps], dim=1).float()

    def coarse_one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        """``(1, K + 1, ceil(D/2), ceil(H/2), ceil(W/2))`` class fractions of a ``(1, 1, D, H, W)`` label map."""
        classes = self.classes(labels)[0, 0]
        depth, height, width = classes.shape
        d2, h2, w2 = -(-depth // 2), -(-height // 2), -(-width // 2)
        z = torch.arange(depth, device=classes.device) // 2
        y = torch.arange(height, device=classes.device) // 2
        x = torch.arange(width, device=classes.device) // 2
        coarse = (z[:, None, None] * h2 + y[None, :, None]) * w2 + x[None, None, :]
        cells = d2 * h2 * w2
        index = classes * cells + coarse
        counts = torch.bincount(index.reshape(-1), minlength=(len(self) + 1) * cells).float()
        # voxels per coarse cell (fewer than 8 at an odd edge)
        per_cell = torch.bincount(coarse.reshape(-1), minlength=cells).float().clamp(min=1)
        return (counts.view(len(self) + 1, cells) / per_cell).view(1, len(self) + 1, d2, h2, w2)


class PairSampler:
    """Draws augmented training pairs on the canonical grid."""

    def __init__(self, subjects: dict[int, Subject], affine: Callable[[int, int], sitk.Transform],
                 size: tuple[int, int, int], spacing: float, augmentation: dict[str, float],
                 rng: np.random.Generator, synthesis: dict[str, float] | None = None,
                 classes: "LabelClasses | None" = None) -> None:
        self.subjects, self.affine = subjects, affine
        # images synthesized from the label maps instead of the subjects' own (learning/synthesis.py)
        self.synthesis, self.classes = synthesis, classes
        if synthesis is not None and classes is None:
            raise ValueError("synthesized images need the label classes")
        # tissue of each synthesis class (a contrast per tissue, option ``tissue``)
        self.groups = tissue_groups(classes.values) if synthesis is not None else None
        self.size, self.spacing, self.augmentation, self.rng = size, spacing, augmentation, rng
        keys = sorted(subjects)
        self.pairs = [(i, j) for i in keys for j in keys if i != j]

    def grid(self, fixed: Subject, augment: bool) -> Grid:
        if not augment:
            return canonical_grid(fixed.image, size=self.size, spacing=self.spacing, center=fixed.center)
        a = self.augmentation
        rotation = random_rotation(self.rng, float(a.get("rotation_degrees", 0.0)))
        # anisotropic scaling of the grid: the network sees a slightly larger/smaller brain
        scale = 1.0 + self.rng.uniform(-1, 1, 3) * float(a.get("scale", 0.0))
        shift = self.rng.uniform(-1, 1, 3) * float(a.get("translation_mm", 0.0))
        return canonical_grid(fixed.image, size=self.size, spacing=self.spacing * scale,
                              center=fixed.center + shift, direction=rotation)

    def intensity(self, image: torch.Tensor) -> torch.Tensor:
        a = self.augmentation
        gamma = math.exp(self.rng.normal(0.0, float(a.get("gamma", 0.0))))
        image = image.clamp(0.0, 1.0) ** gamma
        noise = float(a.get("noise", 0.0))
        if noise > 0:
            generator = torch.Generator().manual_seed(int(self.rng.integers(2 ** 31)))
            image = image + noise * torch.randn(image.shape, generator=generator)
        return image

    def synthesis_classes(self, labels: torch.Tensor, brain: torch.Tensor) -> torch.Tensor:
        """The classes images are synthesized from: the label classes, plus one more class for
        the brain's unlabelled voxels (the OASIS maps leave the cerebral white matter at 0)."""
        classes = self.classes.classes(labels)
        return torch.where((classes == 0) & (brain > 0), len(self.classes) + 1, classes)

    def sample(self, pair: tuple[int, int] | None = None, augment: bool = True,
               device: torch.device | str = "cpu") -> dict[str, Any]:
        i, j = pair if pair is not None else self.pairs[int(self.rng.integers(len(self.pairs)))]
        fixed, moving = self.subjects[i], self.subjects[j]
        grid = self.grid(fixed, augment)
        transform = self.affine(i, j)
        labels = {}
        if fixed.labels is not None and moving.labels is not None:
            labels["fixed_labels"] = on_grid(fixed.labels, grid, labels=True)
            labels["moving_labels"] = on_grid(moving.labels, grid, transform, labels=True)
        loss_images = {}
        if augment and self.synthesis is not None:
            generator = torch.Generator().manual_seed(int(self.rng.integers(2 ** 31)))
            count = len(self.classes) + 2
            fc, mc = (self.synthesis_classes(labels[key], on_grid(subject.brain, grid, t, labels=True))
                      for key, subject, t in (("fixed_labels", fixed, None), ("moving_labels", moving, transform)))
            # the network's inputs: two independent contrasts (or, with probability
            # 1 - independent, one shared contrast: how a network trained from scratch starts)
            # (no draw at 1.0, so configs written before this option sample as they did)
            independent = (self.synthesis["independent"] >= 1
                           or float(torch.rand((), generator=generator)) < self.synthesis["independent"])
            contrast = None if independent else random_contrast(count, generator, self.synthesis, self.groups)
            f, m = (synthesize(c, count, generator, self.synthesis, contrast, self.groups) for c in (fc, mc))
            # the similarity loss's images: one shared contrast, plainly rendered
            shared = random_contrast(count, generator, {"background_zero": 1.0, "spread": 0.0})
            loss_images = {key: synthesize(c, count, generator, PLAIN_RENDERING, shared).to(device)
                           for key, c in (("fixed_loss", fc), ("moving_loss", mc))}
        else:
            f = on_grid(fixed.prepared, grid)
            m = on_grid(moving.prepared, grid, transform)
        if augment:
            f, m = self.intensity(f), self.intensity(m)
        return {"pair": (i, j), "grid": grid, "fixed": f.to(device), "moving": m.to(device), **labels, **loss_images}
