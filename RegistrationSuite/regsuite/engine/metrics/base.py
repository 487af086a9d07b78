"""Common base of the similarity measures, input checks and shared numerical helpers.

Every measure compares a ``fixed`` and a ``warped`` image sampled on the same fixed grid
(tensor layout ``(N, 1, D, H, W)``, see ``docs/ARCHITECTURE.md``) and returns a scalar *loss*
to minimise: lower means better aligned (NCC returns -NCC, MI returns -MI, ...).

Example:
    >>> import torch
    >>> from regsuite.engine.metrics import make_metric
    >>> image = torch.rand(1, 1, 8, 8, 8)
    >>> float(make_metric("mse")(image, image))
    0.0
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import InputError, PresetError

Spacing = tuple[float, float, float]


class SimilarityMetric(torch.nn.Module):
    """A differentiable similarity measure returned as a loss (lower = better aligned).

    ``forward(fixed, warped, mask=None, spacing=None)``: ``fixed`` and ``warped`` are
    ``(N, 1, D, H, W)`` float tensors on the same grid; ``mask`` holds per-voxel weights in
    ``[0, 1]`` of the same shape (``N`` may be 1) or ``None`` for all voxels; ``spacing`` is the
    grid spacing ``(x, y, z)`` in mm (only measures that differentiate the images use it).
    Subclasses implement :meth:`loss`; values computed from the fixed image alone are cached
    between calls while the same, unmodified fixed tensor is passed (see :meth:`fixed_cached`).
    """

    name: ClassVar[str] = "metric"
    multimodal: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self._cache: tuple[Tensor, int, Any, Any] | None = None

    def forward(self, fixed: Tensor, warped: Tensor, mask: Tensor | None = None,
                spacing: Spacing | None = None) -> Tensor:
        check_images(fixed, warped, mask)
        return self.loss(fixed, warped, mask, check_spacing(spacing))

    def loss(self, fixed: Tensor, warped: Tensor, mask: Tensor | None, spacing: Spacing) -> Tensor:
        raise NotImplementedError

    def fixed_cached(self, fixed: Tensor, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` for this fixed image, reused while ``fixed`` is the same unmodified tensor."""
        if fixed.requires_grad or fixed.is_inference():
            return compute()
        cache = self._cache
        if cache is not None and cache[0] is fixed and cache[1] == fixed._version and cache[2] == key:
            return cache[3]
        value = compute()
        self._cache = (fixed, fixed._version, key, value)
        return value

    def clear_cache(self) -> None:
        """Forget the values cached for the last fixed image."""
        self._cache = None

    def extra_repr(self) -> str:
        return f"name={self.name!r}, multimodal={self.multimodal}"


def check_images(fixed: Tensor, warped: Tensor, mask: Tensor | None) -> None:
    """Raise :class:`InputError` unless the fixed/warped/mask tensors have usable shapes."""
    for label, image in (("fixed", fixed), ("warped", warped)):
        if not isinstance(image, Tensor) or image.dim() != 5 or image.shape[1] != 1:
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise InputError(f"similarity measure: {label} image must be a (N, 1, D, H, W) tensor, got {shape}")
        if not image.is_floating_point():
            raise InputError(f"similarity measure: {label} image must be a floating-point tensor, got {image.dtype}")
    if fixed.shape != warped.shape:
        raise InputError(f"similarity measure: fixed {tuple(fixed.shape)} and warped {tuple(warped.shape)} "
                         "images must have the same shape")
    if mask is not None:
        if (not isinstance(mask, Tensor) or mask.dim() != 5 or mask.shape[1] != 1
                or mask.shape[2:] != fixed.shape[2:] or mask.shape[0] not in (1, fixed.shape[0])):
            shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise InputError(f"similarity measure: mask {shape} does not match the images {tuple(fixed.shape)}")


def check_spacing(spacing: Spacing | None) -> Spacing:
    """Spacing ``(x, y, z)`` in mm as three positive floats (``None`` means 1 mm)."""
    if spacing is None:
        return (1.0, 1.0, 1.0)
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise InputError(f"similarity measure: spacing must be three numbers (x, y, z), got {spacing!r}") from None
    if len(values) != 3 or not all(s > 0 for s in values):
        raise InputError(f"similarity measure: spacing must be three positive numbers (x, y, z), got {spacing!r}")
    return values  # type: ignore[return-value]


def weighted_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values (N, C, D, H, W)`` over all entries, each voxel weighted by ``mask``."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    total = mask.sum() * (values.numel() / mask.numel())
    if float(total) <= 0.0:
        raise InputError("similarity measure: the mask gives zero weight to every voxel")
    return (values * mask).sum() / total


def standardized(image: Tensor) -> Tensor:
    """``(image - mean) / std`` per batch item; the variance is floored (relative to the mean
    square, so a constant image stays constant and finite, with finite gradients)."""
    dims = (1, 2, 3, 4)
    mean = image.mean(dim=dims, keepdim=True)
    centred = image - mean
    variance = centred.square().mean(dim=dims, keepdim=True)
    floor = (1e-12 * image.detach().square().mean(dim=dims, keepdim=True)).clamp_min(torch.finfo(image.dtype).tiny)
    return centred * torch.maximum(variance, floor).rsqrt()


def _axis_window_sum(padded: Tensor, dim: int, radius: int) -> Tensor:
    """Sums over windows of ``2 radius + 1`` along ``dim`` of an input zero-padded by ``radius``.

    The output is ``2 radius`` shorter along ``dim``. Small windows add shifted slices in place;
    larger ones use binary doubling (``log2`` of the width full-size additions). Both are plain
    sums of few terms, without the cancellation of running (cumulative) sums.
    """
    width = 2 * radius + 1
    n = padded.shape[dim] - 2 * radius
    if width <= 7:
        result = padded.narrow(dim, 0, n).clone(memory_format=torch.contiguous_format)
        for offset in range(1, width):
            result.add_(padded.narrow(dim, offset, n))
        return result
    block, size, offset, remaining = padded, 1, 0, width
    result = None
    while True:
        if remaining & 1:
            piece = block.narrow(dim, offset, n)
            result = piece.clone(memory_format=torch.contiguous_format) if result is None else result.add_(piece)
            offset += size
        remaining >>= 1
        if not remaining:
            return result  # type: ignore[return-value]
        length = block.shape[dim] - size
        block = block.narrow(dim, 0, length) + block.narrow(dim, size, length)
        size *= 2


_COUNTS: dict[tuple[Any, ...], Tensor] = {}


def _inverse_counts(shape: tuple[int, int, int], radius: int, like: Tensor) -> Tensor:
    """``1 / (number of voxels inside the image in each window)`` as a ``(D, H, W)`` tensor."""
    key = (shape, radius, like.dtype, like.device)
    if key not in _COUNTS:
        if len(_COUNTS) > 16:
            _COUNTS.clear()
        counts = [((torch.arange(n) + radius).clamp(max=n - 1) - (torch.arange(n) - radius).clamp(min=0) + 1)
                  .to(torch.float64) for n in shape]
        volume = counts[0].view(-1, 1, 1) * counts[1].view(1, -1, 1) * counts[2].view(1, 1, -1)
        _COUNTS[key] = (1.0 / volume).to(dtype=like.dtype, device=like.device)
    return _COUNTS[key]


def _window_sum(x: Tensor, radius: int) -> Tensor:
    x = F.pad(x, (radius,) * 6)
    for dim in (2, 3, 4):
        x = _axis_window_sum(x, dim, radius)
    return x


class _BoxMean(torch.autograd.Function):
    """Box mean with an explicit adjoint: the zero-padded window sum is self-adjoint, so the
    backward pass is one more window sum (no autograd graph of slices and padding)."""

    @staticmethod
    def forward(ctx, x: Tensor, radius: int) -> Tensor:  # type: ignore[override]
        inverse = _inverse_counts(tuple(x.shape[2:]), radius, x)
        ctx.radius = radius
        return _window_sum(x, radius).mul_(inverse)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        inverse = _inverse_counts(tuple(grad.shape[2:]), ctx.radius, grad)
        return _window_sum(grad * inverse, ctx.radius), None


def box_mean(x: Tensor, radius: int) -> Tensor:
    """Mean of ``x (N, C, D, H, W)`` over the ``(2 radius + 1)^3`` window around each voxel.

    Separable (three 1D window sums); windows are cut at the image border and averaged over
    the voxels they contain. Differentiable (its backward pass is another box filter).

    Example:
        >>> box_mean(torch.ones(1, 1, 4, 4, 4), 1).unique().tolist()
        [1.0]
        >>> box_mean(torch.arange(5.0).view(1, 1, 1, 1, 5), 1).flatten().tolist()
        [0.5, 1.0, 2.0, 3.0, 3.5]
    """
    if radius <= 0:
        return x
    return _BoxMean.apply(x, int(radius))


def check_int(option: str, value: Any, low: int, name: str, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` or :class:`PresetError` naming ``name.option``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        wanted = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
        raise PresetError(f"metric '{name}': option {option} must be {wanted}, got {value!r}")
    return int(value)


def check_float(option: str, value: Any, low: float, name: str) -> float:
    """``value`` as a finite float ``> low`` or :class:`PresetError` naming ``name.option``."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not float(value) > low):
        raise PresetError(f"metric '{name}': option {option} must be a finite number > {low}, got {value!r}")
    return float(value)


def check_bool(option: str, value: Any, name: str) -> bool:
    """``value`` as a bool (JSON true/false) or :class:`PresetError` naming ``name.option``."""
    if not isinstance(value, bool):
        raise PresetError(f"metric '{name}': option {option} must be true or false, got {value!r}")
    return value
