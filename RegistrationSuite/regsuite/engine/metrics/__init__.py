"""Differentiable similarity measures, returned as losses to minimise (lower = better aligned).

``make_metric(name, **options)`` builds one by name:

========  =====================================================  ==========  =====================
name      measure                                                multimodal  options
========  =====================================================  ==========  =====================
mse, ssd  mean squared difference                                no          --
ncc       global normalised cross-correlation (loss -NCC)        no          eps
lncc      local NCC in (2 radius + 1)^3 windows (loss -LNCC)     no          radius=2, eps
mi        Parzen mutual information (loss -MI)                   yes         bins=32, samples, seed
nmi       Parzen normalised mutual information (loss -NMI)       yes         bins=32, samples, seed
ngf       normalised gradient fields                             yes         epsilon=0.1
mind      MIND-SSC descriptor difference                         yes         radius=1, dilation=2, norm
========  =====================================================  ==========  =====================

Example:
    >>> import torch
    >>> metric = make_metric("lncc", radius=1)
    >>> fixed = torch.rand(1, 1, 8, 8, 8)
    >>> float(metric(fixed, fixed)) < float(metric(fixed, fixed.flip(4)))
    True
"""

from __future__ import annotations

import inspect
from typing import Any

from ...errors import PresetError
from .base import SimilarityMetric, box_mean
from .lncc import LocalNCC
from .mi import MutualInformation, NormalizedMutualInformation
from .mind import MINDSSC, mind_ssc
from .mse import MeanSquaredError
from .ncc import NCC
from .ngf import NormalizedGradientFields

METRICS: dict[str, type[SimilarityMetric]] = {
    "mse": MeanSquaredError,
    "ssd": MeanSquaredError,
    "ncc": NCC,
    "lncc": LocalNCC,
    "mi": MutualInformation,
    "nmi": NormalizedMutualInformation,
    "ngf": NormalizedGradientFields,
    "mind": MINDSSC,
}


def metric_options(name: str) -> dict[str, Any]:
    """Option names of metric ``name`` with their defaults."""
    if name not in METRICS:
        raise PresetError(f"unknown metric {name!r}; valid names: {', '.join(METRICS)}")
    parameters = inspect.signature(METRICS[name].__init__).parameters
    return {key: p.default for key, p in parameters.items() if key != "self"}


def make_metric(name: str, **options: Any) -> SimilarityMetric:
    """Build the similarity measure called ``name`` (case-insensitive) with ``options``.

    Raises :class:`~regsuite.errors.PresetError` for an unknown name or option, or a bad value.
    """
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in METRICS:
        raise PresetError(f"unknown metric {name!r}; valid names: {', '.join(METRICS)}")
    valid = metric_options(key)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listed = ", ".join(valid) if valid else "none"
        raise PresetError(f"metric '{key}': unknown option {', '.join(unknown)}; valid options: {listed}")
    return METRICS[key](**options)


__all__ = [
    "METRICS", "LocalNCC", "MINDSSC", "MeanSquaredError", "MutualInformation", "NCC",
    "NormalizedGradientFields", "NormalizedMutualInformation", "SimilarityMetric", "box_mean",
    "make_metric", "metric_options", "mind_ssc",
]
