"""The engine's entry point: :func:`register` two 3D images in physical space.

Example:
    >>> import SimpleITK as sitk
    >>> fixed = sitk.GaussianSource(sitk.sitkFloat32, [40, 40, 40], [6, 8, 5], [20, 20, 20])
    >>> moving = sitk.GaussianSource(sitk.sitkFloat32, [40, 40, 40], [6, 8, 5], [22, 19, 20])
    >>> result = register(fixed, moving, "rigid", threads=1)
    >>> moved = result.transform.TransformPoint((20.0, 20.0, 20.0))  # fixed centre -> moving centre
    >>> [round(v) for v in moved]  # to the mm (the blobs' centres are recovered within about 0.1 mm)
    [22, 19, 20]
"""

from __future__ import annotations

import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import InputError, InputWarning, PresetError, RegistrationFailed
from ..io.images import read_image, read_mask, require_overlap
from ..io.transforms import is_linear
from .config import RegistrationConfig, StageConfig, load_preset
from .grid import Grid
from .initialization import initialize
from .limits import check_stage_memory, device_memory
from .pyramid import Pyramid, check_thickness, crop_to_foreground, normalize_intensity
from .stages.common import ProgressEvent, Reporter
from .stages.registry import StageContext, stage_kind
from .transforms.bspline import BSplineField
from .transforms.dense import DenseField
from .transforms.linear import LinearTransform, sitk_linear_to_affine

__all__ = ["register", "RegistrationResult", "ProgressEvent", "resolve_device"]

_INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor, "bspline": sitk.sitkBSpline}


@dataclass
class RegistrationResult:
    """What :func:`register` returns.

    ``transform`` maps fixed world points to moving world points (ITK resampling convention):
    ``sitk.Resample(moving, fixed, result.transform)`` gives the registered image.
    """

    transform: sitk.Transform
    #: the inverse, or a function that computes it on first use of :attr:`inverse`
    inverse_source: sitk.Transform | Callable[[], sitk.Transform] | None = field(repr=False)
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    config: RegistrationConfig
    fixed_grid: Grid
    elapsed: float
    parts: list[sitk.Transform] = field(default_factory=list)
    #: the last deformable stage's model (world mm on its own grid), e.g. a velocity field
    #: that a following computation (a network's teacher, a lambda update) reads directly
    deformable: BSplineField | DenseField | None = field(default=None, repr=False)

    @property
    def inverse(self) -> sitk.Transform | None:
        """Moving world -> fixed world, for linear and diffeomorphic results (else None)."""
        if self.inverse_source is not None and not isinstance(self.inverse_source, sitk.Transform):
            self.inverse_source = self.inverse_source()
        return self.inverse_source

    @property
    def is_linear(self) -> bool:
        return is_linear(self.transform)

    def resample(self, moving: sitk.Image, reference: sitk.Image | None = None, interpolation: str = "linear",
                 default_value: float = 0.0) -> sitk.Image:
        """``moving`` resampled onto the fixed grid (or ``reference``) through the result."""
        if interpolation not in _INTERPOLATORS:
            raise InputError(f"unknown interpolation '{interpolation}'; expected one of {', '.join(_INTERPOLATORS)}")
        grid_image = reference if reference is not None else self.fixed_grid.reference_image()
        return sitk.Resample(moving, grid_image, self.transform, _INTERPOLATORS[interpolation], default_value,
                             moving.GetPixelID())


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without it is an :class:`InputError`."""
    if not isinstance(device, str):
        raise InputError(f"device must be 'auto', 'cpu' or 'cuda', got {type(device).__name__}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError("device 'cuda' was requested but CUDA is not available here; use --device cpu or auto")
        try:
            target = torch.device(device)
        except RuntimeError:  # e.g. 'cuda:x'
            raise InputError(f"unknown device '{device}'; expected auto, cpu, cuda or cuda:<index>") from None
        count = torch.cuda.device_count()
        if target.type != "cuda" or (target.index is not None and target.index >= count):
            raise InputError(f"device '{device}' does not exist here; this machine has {count} CUDA device(s)")
        return target
    if device == "cpu":
        return torch.device("cpu")
    raise InputError(f"unknown device '{device}'; expected auto, cpu or cuda")


def _mask_center(image: sitk.Image, mask: sitk.Image | None) -> np.ndarray:
    grid = Grid.from_sitk(image)
    if mask is None:
        return grid.center_world()
    index = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)[:, ::-1]
    return grid.index_to_world_points(index.mean(axis=0))


def register(
    fixed: sitk.Image,
    moving: sitk.Image,
    config: str | os.PathLike[str] | Mapping[str, Any] | RegistrationConfig = "affine",
    fixed_mask: sitk.Image | None = None,
    moving_mask: sitk.Image | None = None,
    initial_transform: sitk.Transform | None = None,
    device: str = "auto",
    threads: int | None = None,
    seed: int = 0,
    progress: Callable[[ProgressEvent], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> RegistrationResult:
    """Register ``moving`` to ``fixed``; see ``docs/ARCHITECTURE.md`` for every argument.

    Raises :class:`~regsuite.errors.InputError` for bad inputs,
    :class:`~regsuite.errors.RegistrationFailed` when the optimisation diverges and
    :class:`~regsuite.errors.RegistrationCancelled` when ``cancel()`` returns True.
    """
    start = time.perf_counter()
    recipe = load_preset(config)
    check_stage_options(recipe)
    fixed_role, moving_role = _role(fixed, "fixed image"), _role(moving, "moving image")
    fixed = read_image(fixed, "fixed image")
    moving = read_image(moving, "moving image")
    check_thickness(fixed, fixed_role)
    check_thickness(moving, moving_role)
    if fixed_mask is not None:
        fixed_mask = read_mask(fixed_mask, fixed, "fixed mask")
    if moving_mask is not None:
        moving_mask = read_mask(moving_mask, moving, "moving mask")
    if initial_transform is not None and not isinstance(initial_transform, sitk.Transform):
        raise InputError(f"initial_transform must be a SimpleITK transform, got {type(initial_transform).__name__}")
    if initial_transform is not None and initial_transform.GetDimension() != 3:
        raise InputError(f"initial_transform is {initial_transform.GetDimension()}D; a 3D transform is needed")
    target = resolve_device(device)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63:
        raise InputError(f"seed must be an integer from 0 to 2**63 - 1, got {seed!r}")
    if threads is not None:
        # 1024 at most: far above any CPU's cores, and torch refuses counts from 2**31 on
        if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024:
            raise InputError(f"threads must be an integer from 1 to 1024, got {threads!r}")
        torch.set_num_threads(int(threads))
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    torch.manual_seed(seed)

    # ------------------------------------------------------------ initial transform
    parts: list[sitk.Transform] = []
    registration_moving, registration_moving_mask = moving, moving_mask
    if initial_transform is not None and not is_linear(initial_transform):
        # A non-linear initial transform stays fixed: register against the moving image seen
        # through it (on the fixed grid) and compose it outermost.
        parts.append(initial_transform)
        registration_moving = sitk.Resample(moving, fixed, initial_transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        if moving_mask is not None:
            registration_moving_mask = sitk.Resample(moving_mask, fixed, initial_transform, sitk.sitkNearestNeighbor, 0)
        matrix, offset = np.eye(3), np.zeros(3)
    elif initial_transform is not None:
        matrix, offset = sitk_linear_to_affine(initial_transform)
    else:
        init = initialize(fixed, moving, recipe.initialization, fixed_mask, moving_mask)
        matrix = init.matrix
        offset = init.center + init.translation - init.matrix @ init.center
    start_affine = sitk.AffineTransform(matrix.ravel().tolist(), offset.tolist())
    require_overlap(fixed, registration_moving, start_affine if not parts else None)

    # ------------------------------------------------------------ pyramid
    fixed_roi, fixed_mask_roi = crop_to_foreground(fixed, fixed_mask)
    moving_roi, moving_mask_roi = crop_to_foreground(registration_moving, registration_moving_mask)
    fixed_n = normalize_intensity(fixed_roi, recipe.intensity, fixed_mask_roi)
    moving_n = normalize_intensity(moving_roi, recipe.intensity, moving_mask_roi)
    pyramid = Pyramid(fixed_n, moving_n, fixed_mask_roi, moving_mask_roi, target)
    budget = device_memory(target)
    for index, stage in enumerate(recipe.stages):
        check_stage_memory(stage, [pyramid.fixed_level_grid(level.shrink) for level in stage.levels],
                           Grid.from_sitk(fixed), budget, f"preset '{recipe.name}': stages[{index}]")
    report = Reporter(progress, cancel, len(recipe.stages))
    warnings_seen: list[str] = []

    def warn(message: str) -> None:
        warnings_seen.append(message)
        warnings.warn(message, InputWarning, stacklevel=2)

    fixed_grid = Grid.from_sitk(fixed)
    center = _mask_center(fixed, fixed_mask)
    radius = float(np.linalg.norm(Grid.from_sitk(fixed).extent)) / (2.0 * np.sqrt(3.0))

    linear = LinearTransform("affine-matrix", center, radius)
    linear.set_affine(matrix, offset)
    deformable: BSplineField | DenseField | None = None
    metrics: dict[str, Any] = {"stages": []}
    for index, stage in enumerate(recipe.stages):
        report.begin(index, stage.model, len(stage.levels))
        context = StageContext(index, stage, pyramid, linear, center, radius, fixed_grid, report, seed, deformable,
                               fixed, registration_moving, fixed_mask, registration_moving_mask, target, warn)
        with _out_of_memory_fails(index, stage.model):
            outcome = stage_kind(stage.model).run(context)
        linear = outcome.linear
        deformable = outcome.deformable if outcome.deformable is not None else deformable
        metrics["stages"].append(outcome.summary)
        report.check_cancel()
    if warnings_seen:
        metrics["warnings"] = warnings_seen

    # ------------------------------------------------------------ export
    linear_sitk = linear.to_sitk()
    parts.append(linear_sitk)
    inverse: sitk.Transform | Callable[[], sitk.Transform] | None = None
    if deformable is not None:
        if isinstance(deformable, BSplineField):
            parts.append(deformable.to_sitk())
        else:
            parts.append(deformable.to_sitk(fixed_grid))
            if recipe.is_invertible and len(parts) == 2 and deformable.invertible:
                field_model = deformable

                def inverse() -> sitk.Transform:  # exp(-v), computed when first asked for
                    return sitk.CompositeTransform([field_model.to_sitk(fixed_grid, inverse=True),
                                                    linear_sitk.GetInverse()])
    elif len(parts) == 1:
        inverse = linear_sitk.GetInverse()
    transform = parts[0] if len(parts) == 1 else sitk.CompositeTransform(parts)
    elapsed = time.perf_counter() - start
    metrics["seconds"] = round(elapsed, 3)
    metrics["device"] = str(target)
    return RegistrationResult(transform, inverse, metrics, report.history, recipe, fixed_grid, elapsed, parts,
                              deformable)


def _role(source: object, role: str) -> str:
    """``role`` with the file name when the image comes from a file."""
    return role if isinstance(source, sitk.Image) else f"{role} '{source}'"


def check_stage_options(recipe: RegistrationConfig) -> None:
    """Let each stage's kind check its options (metric, regularizers, ...), so that a bad
    option is a :class:`PresetError` naming the stage before any image is read."""
    for index, stage in enumerate(recipe.stages):
        where = f"stages[{index}]"
        try:
            stage_kind(stage.model).check(stage, where)
        except PresetError as error:
            raise PresetError(f"preset '{recipe.name}': {error}") from None


@contextmanager
def _out_of_memory_fails(index: int, model: str) -> Iterator[None]:
    """Turn an allocation failure inside stage ``index`` into :class:`RegistrationFailed`."""
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as error:
        text = str(error)
        if not isinstance(error, (torch.OutOfMemoryError, MemoryError)) and not any(
                sign in text for sign in ("can't allocate memory", "out of memory", "Storage size calculation overflowed")):
            raise
        raise RegistrationFailed(f"stage {index + 1} ({model}) ran out of memory; use larger shrink factors, "
                                 "a coarser control spacing or a device with more memory") from None
