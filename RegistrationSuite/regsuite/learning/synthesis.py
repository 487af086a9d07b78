"""Images synthesized from label maps, so that a network never sees one contrast.

In the manner of SynthMorph (Hoffmann et al. 2022): every label of a map gets a random mean
intensity and a random within-label spread, the result is blurred by a random amount, multiplied
by a smooth random bias field, gamma-corrected, normalised as the model's real inputs are (see
:data:`~regsuite.learning.canonical.NORMALIZATION`) and given noise. Two draws from the same map
look like two different MRI contrasts of one brain; a network trained on such pairs has to
align structures, not grey values. The training loss compares a second pair drawn from the
same label maps with one shared contrast (:func:`random_contrast`), so a similarity measure
gives the dense gradient it gives on same-contrast images, while the network only ever sees
pairs of independent contrasts.

Options (a config's ``synthesis`` object; every value has a default):

* ``background_zero``: the probability that the background (class 0) stays at 0, as it does in a
  skull-stripped image (otherwise it gets a random intensity like any label), default 0.8;
* ``spread``: the largest within-label standard deviation (fraction of the [0, 1] range), 0.05;
* ``blur_voxels``: the largest Gaussian sigma in voxels of the canonical grid, 1.0;
* ``bias``: the largest standard deviation of the log bias field, 0.3 (on a 4 x 5 x 4 lattice);
* ``gamma``: the standard deviation of log gamma, 0.25;
* ``noise``: the largest noise standard deviation after normalisation, 0.03;
* ``independent``: the probability that the network's two inputs get independent contrasts,
  default 1.0; otherwise they share one contrast (each still gets its own blur, bias, gamma and
  noise). Meant as a first stage of training from scratch (0.0), before independent contrasts;
  measured here, such a run had not left the identity after 125 steps (``docs/LEARNING.md``).
* ``tissue``: the probability that a contrast is drawn per tissue (:func:`tissue_groups`: cortex,
  white matter, deep grey matter, CSF, cerebellar cortex, brainstem, vessels) instead of per
  label, each label then a little off its tissue's mean (by up to ``spread``), default 0.0. MRI
  contrasts differ mostly between tissues; a contrast per label also draws edges between
  neighbouring cortical parcels that no real image has.
* ``ordered``: the probability that a contrast per tissue keeps the tissues' order of brightness
  in a T1-weighted image (CSF darkest, white matter brightest; the grey values are still random),
  default 0.0. Meant, like ``independent`` 0, as a first stage of training from scratch (one
  family of contrasts, as real T1 images are); measured here, such a run had not left the
  identity after 150 steps either (``docs/LEARNING.md``).

Example:
    >>> import torch
    >>> classes = torch.zeros(1, 1, 16, 16, 16, dtype=torch.long)
    >>> classes[..., 4:12, 4:12, 4:12] = 1; classes[..., 6:10, 6:10, 6:10] = 2
    >>> image = synthesize(classes, 3, torch.Generator().manual_seed(0))
    >>> tuple(image.shape), bool(image.min() >= 0), bool(image.max() <= 1)
    ((1, 1, 16, 16, 16), True, True)
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F

from ..engine.filters import gaussian_blur

#: defaults of a config's ``synthesis`` options (see the module docstring)
SYNTHESIS_DEFAULTS: dict[str, float] = {"background_zero": 0.8, "spread": 0.05, "blur_voxels": 1.0,
                                        "bias": 0.3, "gamma": 0.25, "noise": 0.03, "independent": 1.0,
                                        "tissue": 0.0, "ordered": 0.0}


def synthesis_options(options: Mapping[str, Any] | None, source: str = "synthesis") -> dict[str, float]:
    """``options`` over :data:`SYNTHESIS_DEFAULTS`, checked: unknown keys and negative or
    non-numeric values raise ``ValueError`` naming the key."""
    merged = dict(SYNTHESIS_DEFAULTS)
    for key, value in dict(options or {}).items():
        if key not in SYNTHESIS_DEFAULTS:
            raise ValueError(f"{source}: unknown option '{key}'; allowed: {', '.join(SYNTHESIS_DEFAULTS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{source}: {key} must be a non-negative number, got {value!r}")
        merged[key] = float(value)
    for key in ("background_zero", "independent", "tissue", "ordered"):
        if merged[key] > 1:
            raise ValueError(f"{source}: {key} is a probability in [0, 1], got {merged[key]}")
    return merged


def _uniform(generator: torch.Generator, high: float, size: tuple[int, ...] = ()) -> torch.Tensor:
    return torch.rand(size, generator=generator) * high


#: FreeSurfer label values (aseg and the DKT31 cortical parcels, as in OASIS-TRT-20) by tissue,
#: in the order of their brightness in a T1-weighted image (option ``ordered``); the cortical
#: parcels 1000-2999 are cortex. Values not listed are a tissue of their own.
TISSUES: dict[str, tuple[int, ...]] = {
    "csf": (4, 5, 14, 15, 24, 43, 44, 72, 31, 63),
    "cortex": (3, 42),
    "cerebellar cortex": (6, 8, 45, 47, 630, 631, 632, 633),
    "deep grey matter": (10, 11, 12, 13, 17, 18, 26, 28, 49, 50, 51, 52, 53, 54, 58, 60, 91, 92),
    "brainstem": (16, 173, 174, 175),
    "white matter": (2, 7, 41, 46, 77, 85, 251, 252, 253, 254, 255),
    "vessels": (30, 62),
}
#: the tissues whose means ``ordered`` sorts: 1 (csf) to white matter, in :data:`TISSUES`' order
ORDERED_TISSUES = list(TISSUES).index("white matter") + 1


def tissue_groups(values: list[int], unlabelled: str = "white matter") -> torch.Tensor:
    """Tissue index of each synthesis class: class 0 (background) is 0, class ``k`` (1..K) is
    label ``values[k - 1]``, class K + 1 (the brain's unlabelled voxels, the cerebral white matter
    in the OASIS maps) is ``unlabelled``. The tissues of :data:`TISSUES` are 1..7 in its order,
    other values 8, 9, ...

    Example:
        >>> tissue_groups([4, 1002, 2002, 17]).tolist()
        [0, 1, 2, 2, 4, 6]
    """
    names = list(TISSUES)
    extra: dict[int, int] = {}
    groups = [0]
    for value in [*values, None]:
        if value is None:
            groups.append(names.index(unlabelled) + 1)
        elif 1000 <= value < 3000:
            groups.append(names.index("cortex") + 1)
        else:
            tissue = next((index for index, name in enumerate(names) if value in TISSUES[name]), None)
            groups.append(tissue + 1 if tissue is not None else extra.setdefault(value, len(names) + 1 + len(extra)))
    return torch.tensor(groups, dtype=torch.long)


def random_contrast(count: int, generator: torch.Generator,
                    options: Mapping[str, Any] | None = None,
                    groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean intensities and within-class spreads of one random contrast; with
    ``groups`` (class -> tissue, :func:`tissue_groups`) the means are drawn per tissue with
    probability ``tissue``, each class within ``spread`` of its tissue's mean."""
    o = synthesis_options(options)
    means = torch.rand(count, generator=generator)
    if groups is not None and o["tissue"] > 0 and float(torch.rand((), generator=generator)) < o["tissue"]:
        offsets = (torch.rand(count, generator=generator) * 2.0 - 1.0) * o["spread"]
        tissue_means = torch.rand(int(groups.max()) + 1, generator=generator)
        if o["ordered"] > 0 and float(torch.rand((), generator=generator)) < o["ordered"]:
            tissue_means[1:ORDERED_TISSUES + 1] = tissue_means[1:ORDERED_TISSUES + 1].sort().values
        means = (tissue_means[groups] + offsets).clamp(0.0, 1.0)
    spreads = torch.rand(count, generator=generator) * o["spread"]
    if float(torch.rand((), generator=generator)) < o["background_zero"]:
        means[0], spreads[0] = 0.0, 0.0
    return means, spreads


def synthesize(classes: torch.Tensor, count: int, generator: torch.Generator,
               options: Mapping[str, Any] | None = None,
               contrast: tuple[torch.Tensor, torch.Tensor] | None = None,
               groups: torch.Tensor | None = None) -> torch.Tensor:
    """A random-contrast image of a class map.

    ``classes``: ``(1, 1, D, H, W)`` integers in ``[0, count)`` (0: background); returns a float
    ``(1, 1, D, H, W)`` image in [0, 1] on the same grid, normalised like a real input (the 0.5th
    and 99.5th percentiles of the foreground mapped to 0 and 1, clipped). ``contrast`` (from
    :func:`random_contrast`) gives two images the same contrast; by default each draws its own
    (per tissue with probability ``tissue`` when ``groups`` are given).
    """
    o = synthesis_options(options)
    classes = classes.to("cpu")
    means, spreads = contrast if contrast is not None else random_contrast(count, generator, o, groups)
    image = means[classes] + spreads[classes] * torch.randn(classes.shape, generator=generator)
    sigma = float(_uniform(generator, o["blur_voxels"]))
    if sigma > 0.2:
        image = gaussian_blur(image, sigma)
    if o["bias"] > 0:
        lattice = torch.randn((1, 1, 4, 5, 4), generator=generator) * float(_uniform(generator, o["bias"]))
        image = image * torch.exp(F.interpolate(lattice, size=classes.shape[2:], mode="trilinear", align_corners=True))
    image = image.clamp(min=0.0)
    foreground = image[classes > 0]
    if foreground.numel() == 0:
        return torch.zeros_like(image)
    sample = foreground[torch.randperm(foreground.numel(), generator=generator)[:200_000]]
    low, high = torch.quantile(sample, torch.tensor([0.005, 0.995])).tolist()
    image = ((image - low) / max(high - low, 1e-6)).clamp(0.0, 1.0)
    if o["gamma"] > 0:
        image = image ** float(torch.exp(torch.randn((), generator=generator) * o["gamma"]))
    noise = float(_uniform(generator, o["noise"]))
    if noise > 0:
        image = (image + noise * torch.randn(image.shape, generator=generator)).clamp(0.0, 1.0)
    return image
