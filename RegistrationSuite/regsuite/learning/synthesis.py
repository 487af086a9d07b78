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
  noise). A network trained from scratch starts with shared contrasts (0.0), which it learns as
  it would learn one real contrast, and then goes on with independent ones.

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
                                        "bias": 0.3, "gamma": 0.25, "noise": 0.03, "independent": 1.0}


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
    for key in ("background_zero", "independent"):
        if merged[key] > 1:
            raise ValueError(f"{source}: {key} is a probability in [0, 1], got {merged[key]}")
    return merged


def _uniform(generator: torch.Generator, high: float, size: tuple[int, ...] = ()) -> torch.Tensor:
    return torch.rand(size, generator=generator) * high


def random_contrast(count: int, generator: torch.Generator,
                    options: Mapping[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean intensities and within-class spreads of one random contrast."""
    o = synthesis_options(options)
    means = torch.rand(count, generator=generator)
    spreads = torch.rand(count, generator=generator) * o["spread"]
    if float(torch.rand((), generator=generator)) < o["background_zero"]:
        means[0], spreads[0] = 0.0, 0.0
    return means, spreads


def synthesize(classes: torch.Tensor, count: int, generator: torch.Generator,
               options: Mapping[str, Any] | None = None,
               contrast: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """A random-contrast image of a class map.

    ``classes``: ``(1, 1, D, H, W)`` integers in ``[0, count)`` (0: background); returns a float
    ``(1, 1, D, H, W)`` image in [0, 1] on the same grid, normalised like a real input (the 0.5th
    and 99.5th percentiles of the foreground mapped to 0 and 1, clipped). ``contrast`` (from
    :func:`random_contrast`) gives two images the same contrast; by default each draws its own.
    """
    o = synthesis_options(options)
    classes = classes.to("cpu")
    means, spreads = contrast if contrast is not None else random_contrast(count, generator, o)
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
