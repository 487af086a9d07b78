"""Optimisation of the deformable stage (B-spline, dense displacement or velocity field).

The deformable map ``x -> x + u(x)`` acts before the linear map found by earlier stages:
``x_moving = A @ (x + u(x)) + b``. Optimisers:

* ``adam`` / ``lbfgs``: autograd on metric + weighted regularizers;
* ``gaussian`` (dense and velocity fields): the gradient is smoothed by a Gaussian
  (``gradient_smoothing``, voxels), scaled so the largest update is ``learning_rate`` voxels,
  applied, and the field is smoothed again (``field_smoothing``) -- the fluid/diffusion-like
  scheme of Demons and Greedy, computed here with autograd for any differentiable metric.
  ``update``: ``additive``, ``compositive`` or, for velocity fields, ``symmetric`` (both images
  move halfway and meet in the middle, as in symmetric log-domain Demons and SyN).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ...errors import PresetError
from ..config import StageConfig
from ..filters import double_to, gaussian_blur, gaussian_blur_fast, halve
from ..grid import Grid
from ..metrics import make_metric
from ..optimizers.adam import Adam
from ..pyramid import MIN_LEVEL_VOXELS, LevelImages, Pyramid
from ..regularizers import central_difference, index_to_world, make_regularizer
from ..transforms.bspline import BSplineField
from ..transforms.dense import DenseField, VelocityField, compose_on_grid, resample_field
from .common import Convergence, Reporter, sample_image, sample_moving

DeformableModel = BSplineField | DenseField


def control_spacing(stage: StageConfig, index: int) -> float:
    """B-spline control spacing at level ``index`` (doubles per coarser level unless given)."""
    level = stage.levels[index]
    if level.control_spacing is not None:
        return level.control_spacing
    return stage.control_spacing * 2 ** (len(stage.levels) - 1 - index)


def model_for_level(stage: StageConfig, model: DeformableModel | None, domain: Grid, level: LevelImages, index: int,
                    initial: DenseField | None = None) -> DeformableModel:
    """Create the model at the first level (from ``initial``'s velocity when given: zero outside
    its grid), then refine/resample it for each finer level."""
    device = level.fixed.device
    if stage.model == "bspline":
        spacing = control_spacing(stage, index)
        if model is None:
            return BSplineField(domain, spacing).to(device)
        return model if abs(spacing - model.grid_spacing.max()) < 1e-9 else model.refined(spacing)
    grid = level.fixed_grid.shrink(stage.levels[index].field_shrink or 1.0, MIN_LEVEL_VOXELS)
    if model is None:
        if stage.model == "svf" and isinstance(initial, VelocityField):
            with torch.no_grad():
                start = resample_field(initial.field.to(device), initial.grid, grid, padding="zeros")
            return VelocityField(grid, start, steps=stage.integration_steps).to(device)
        if stage.model == "svf":
            return VelocityField(grid, steps=stage.integration_steps).to(device)
        return DenseField(grid).to(device)
    return model.resampled(grid)


def displacement(model: DeformableModel, level: LevelImages) -> torch.Tensor:
    """The model's displacement at the level's fixed voxels (differentiable)."""
    if isinstance(model, BSplineField):
        return model.displacement(level.fixed_grid)
    u = model.displacement()
    return u if model.grid is level.fixed_grid else resample_field(u, model.grid, level.fixed_grid)


class DeformableLoss:
    """Metric (and weighted regularizers) of the moving image warped by ``A (x + u(x)) + b``;
    the metric takes the options of level ``index`` (:meth:`StageConfig.metric_options_at`)."""

    def __init__(self, stage: StageConfig, level: LevelImages, matrix: torch.Tensor, offset: torch.Tensor,
                 index: int = 0) -> None:
        self.stage, self.level = stage, level
        self.metric = make_metric(stage.metric, **stage.metric_options_at(index))
        world_to_normalized = torch.as_tensor(level.moving_grid.world_to_normalized(), dtype=torch.float64)
        combined = world_to_normalized[:3, :3] @ matrix.detach().cpu().double()
        self.matrix = combined.float().to(level.fixed.device)
        self.offset = (world_to_normalized[:3, :3] @ offset.detach().cpu().double() + world_to_normalized[:3, 3]).float().to(level.fixed.device)
        self.base = level.fixed_points @ self.matrix.T + self.offset
        self.regularizers = [(make_regularizer(name), weight) for name, weight in stage.regularization.items() if weight > 0]
        self.fixed_affine: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(self, u: torch.Tensor, u_fixed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(total loss, similarity term)`` for a displacement ``u (1, 3, D, H, W)``.

        With ``u_fixed`` (symmetric registration) the fixed image is also warped, by
        ``x -> x + u_fixed(x)``, and the two images are compared in that middle space.
        """
        normalized = self.base + torch.einsum("rc,ncdhw->ndhwr", self.matrix, u)
        # with u_fixed the fixed mask moves with the fixed image (applied in _warp_fixed)
        warped, weight = sample_moving(self.level, normalized, self.stage.use_masks, fixed_mask=u_fixed is None)
        fixed = self.level.fixed
        if u_fixed is not None:
            fixed, weight = self._warp_fixed(u_fixed, weight)
        similarity = self.metric(fixed, warped, weight, self.level.spacing)
        total = similarity
        for regularizer, weight_value in self.regularizers:
            total = total + weight_value * regularizer(u, self.level.spacing, self.level.fixed_grid.direction)
        return total, similarity

    def _warp_fixed(self, u_fixed: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed level image (and mask) sampled at ``x + u_fixed(x)``; the weight outside is 0."""
        if self.fixed_affine is None:
            to_normalized = torch.as_tensor(self.level.fixed_grid.world_to_normalized(), dtype=torch.float32,
                                            device=u_fixed.device)
            self.fixed_affine = (to_normalized[:3, :3], self.level.fixed_points @ to_normalized[:3, :3].T + to_normalized[:3, 3])
        matrix, base = self.fixed_affine
        normalized = base + torch.einsum("rc,ncdhw->ndhwr", matrix, u_fixed)
        mask = self.level.fixed_mask if self.stage.use_masks else None
        fixed, fixed_weight = sample_image(self.level.fixed, normalized, mask, padding="border")
        return fixed, weight * fixed_weight


def run_deformable_stage(stage: StageConfig, pyramid: Pyramid, domain: Grid, matrix: torch.Tensor,
                         offset: torch.Tensor, report: Reporter, initial: DenseField | None = None) -> DeformableModel:
    """Optimise the deformable model level by level and return it.

    ``domain`` is the whole fixed image grid: a B-spline's control grid covers it all, while
    dense fields live on the (possibly cropped) pyramid levels. An svf stage starts from
    ``initial``'s velocity field when given (instance optimization after a network stage).
    """
    model: DeformableModel | None = None
    halves: tuple[torch.Tensor, torch.Tensor] | None = None  # symmetric: exp(+-v/2), carried between levels
    for index, level_config in enumerate(stage.levels):
        level = pyramid.level(level_config.shrink, level_config.smoothing)
        previous = model
        model = model_for_level(stage, model, domain, level, index, initial)
        if halves is not None:
            with torch.no_grad():
                halves = tuple(resample_field(h, previous.grid, model.grid) for h in halves)
        lr = level_config.learning_rate if level_config.learning_rate is not None else stage.learning_rate
        if level_config.iterations == 0:
            continue
        loss = DeformableLoss(stage, level, matrix, offset, index)
        if stage.optimizer == "gaussian" and stage.update == "symmetric":
            last = index == len(stage.levels) - 1
            halves = _run_gaussian_symmetric(stage, model, level, loss, index, level_config.iterations, lr, report, halves,
                                             keep_halves=not last)
        elif stage.optimizer == "gaussian":
            _run_gaussian(stage, model, level, loss, index, level_config.iterations, lr, report)
        else:
            _run_gradient(stage, model, level, loss, index, level_config.iterations, lr, report)
    if model is None:  # config validation guarantees a level; a hand-built StageConfig may not
        raise PresetError("a deformable stage needs at least one level")
    return model


def _parameter(model: DeformableModel) -> torch.nn.Parameter:
    return model.coefficients if isinstance(model, BSplineField) else model.field


def _run_gradient(stage, model, level, loss: DeformableLoss, index, iterations, lr, report) -> None:
    parameter = _parameter(model)
    convergence = Convergence(stage.tolerance, stage.window)
    if stage.optimizer == "lbfgs":
        optimizer = torch.optim.LBFGS([parameter], lr=lr, max_iter=iterations, line_search_fn="strong_wolfe",
                                      tolerance_change=stage.tolerance * 1e-3)
        count = [0]

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            total, similarity = loss(displacement(model, level))
            total.backward()
            count[0] += 1
            report(index, count[0], iterations, float(similarity.detach()))
            return total

        optimizer.step(closure)
        return
    optimizer = Adam([parameter], lr=lr)
    for iteration in range(iterations):
        optimizer.zero_grad(set_to_none=True)
        total, similarity = loss(displacement(model, level))
        total.backward()
        report(index, iteration + 1, iterations, float(similarity.detach()))
        optimizer.step()
        if convergence.update(float(total.detach())):
            break


def lie_bracket(a: torch.Tensor, b: torch.Tensor, grid: Grid) -> torch.Tensor:
    """``[a, b] = (Da) b - (Db) a`` of two world vector fields ``(1, 3, D, H, W)`` on ``grid``.

    ``(Da) b = sum_k (d a / d i_k) (M^-1 b)_k`` with ``M`` the index-to-world matrix: central
    differences along the index axes, no 3x3 Jacobian stored.
    """
    inverse = torch.as_tensor(index_to_world(grid.spacing, grid.direction)[0], dtype=a.dtype, device=a.device)
    a_index = torch.einsum("kr,nrdhw->nkdhw", inverse, a)
    b_index = torch.einsum("kr,nrdhw->nkdhw", inverse, b)
    result = torch.zeros_like(a)
    for k, dim in ((0, 4), (1, 3), (2, 2)):  # index axis i, j, k -> tensor dims W, H, D
        result.addcmul_(central_difference(a, dim), b_index[:, k:k + 1])
        result.addcmul_(central_difference(b, dim), a_index[:, k:k + 1], value=-1.0)
    return result


#: Voxels above which the gaussian optimizer smooths the gradient and evaluates the Lie bracket
#: through a 2x coarser volume (both are smooth quantities, and at full resolution they dominate
#: an iteration on a 1 mm brain).
LARGE_LEVEL_VOXELS = 2_000_000


def lie_bracket_coarse(a: torch.Tensor, b: torch.Tensor, grid: Grid) -> torch.Tensor:
    """:func:`lie_bracket` on a 2x coarser volume, upsampled (for large levels)."""
    coarse = Grid(tuple(-(-n // 2) for n in grid.size), tuple(2.0 * s for s in grid.spacing), grid.origin,
                  grid.direction)
    return double_to(lie_bracket(halve(a), halve(b), coarse), a.shape[2:])


def _run_gaussian(stage, model: DenseField, level, loss: DeformableLoss, index, iterations, lr, report) -> None:
    parameter = model.field
    step_mm = lr * min(level.spacing)
    convergence = Convergence(stage.tolerance, stage.window)
    coarse = model.grid is not level.fixed_grid
    sigma_gradient, sigma_field, factor = _smoothing_sigmas(stage, index, model, level)
    log_domain = isinstance(model, VelocityField)
    compositive = stage.update == "compositive" and not coarse
    exact_every = _exact_every(stage, index) if log_domain else 1
    current: torch.Tensor | None = None  # exp(v) on the model's grid, kept up to date between exact integrations
    large = _is_large(level)
    smooth_gradient = gaussian_blur_fast if large else gaussian_blur
    bracket = lie_bracket_coarse if large else lie_bracket
    for iteration in range(iterations):
        parameter.grad = None
        if log_domain:
            # Log-domain update: the smoothed gradient w.r.t. exp(v) is the step for v
            # (first-order approximation), which avoids back-propagating through squaring.
            with torch.no_grad():
                if current is None or iteration % exact_every == 0 or iteration == iterations - 1:
                    current = model.displacement()
                u = current if not coarse else resample_field(current, model.grid, level.fixed_grid)
            u = u.clone().requires_grad_(True)
        else:
            u = displacement(model, level)
        total, similarity = loss(u)
        total.backward()
        report(index, iteration + 1, iterations, float(similarity.detach()))
        with torch.no_grad():
            if log_domain:  # gradient at the level's voxels: smooth there, then sample the field's grid
                gradient = smooth_gradient(u.grad, sigma_gradient) if sigma_gradient > 0 else u.grad
                if coarse:
                    gradient = resample_field(gradient, level.fixed_grid, model.grid)
                before = parameter.detach().clone() if exact_every > 1 else None
            else:
                gradient = parameter.grad
                if sigma_gradient > 0:
                    gradient = gaussian_blur(gradient, sigma_gradient / factor)
            largest = gradient.square().sum(dim=1).max().sqrt()
            if float(largest) > 0 and compositive and log_domain:
                # exp(v) o (id + d) = exp(v + d + [v, d] / 2 + ...) (Baker-Campbell-Hausdorff)
                step = gradient * (-step_mm / largest)
                parameter.add_(step + 0.5 * bracket(parameter, step, model.grid))
            elif float(largest) > 0 and compositive:
                # u <- d + u o (id + d): the update is composed with the map (Greedy, fluid-like)
                parameter.copy_(compose_on_grid(gradient * (-step_mm / largest), parameter, model.grid))
            elif float(largest) > 0:
                parameter.sub_(gradient * (step_mm / largest))
            if sigma_field > 0:
                parameter.copy_(gaussian_blur(parameter, sigma_field))
            if log_domain and exact_every > 1:
                # exp(v + d) ~ exp(v) o exp(d) for the small change d (first order): one composition
                # instead of a full scaling and squaring; exact again every ``exact_every`` iterations.
                current = model.advanced(current, parameter - before)
        if convergence.update(float(total.detach())):
            break


def _smoothing_sigmas(stage: StageConfig, index: int, model: DenseField, level: LevelImages) -> tuple[float, float, float]:
    """``(gradient sigma, field sigma, factor)`` of the gaussian optimizer at level ``index``.

    Sigmas are in voxels of the level grid; a field on a grid ``factor`` times coarser
    (``field_shrink``) gets its sigma in its own voxels, i.e. the same physical amount.
    """
    settings = stage.levels[index]
    factor = float(np.min(np.array(model.grid.spacing) / np.array(level.fixed_grid.spacing)))
    sigma_gradient = settings.gradient_smoothing if settings.gradient_smoothing is not None else stage.gradient_smoothing
    sigma_field = settings.field_smoothing if settings.field_smoothing is not None else stage.field_smoothing
    return sigma_gradient, sigma_field / factor, factor


def _exact_every(stage: StageConfig, index: int) -> int:
    """Iterations between exact integrations of exp(v) at level ``index`` (level value, else the stage's)."""
    value = stage.levels[index].exact_every
    return max(1, int(value if value is not None else stage.exact_every))


def _is_large(level: LevelImages) -> bool:
    """More than :data:`LARGE_LEVEL_VOXELS` fixed voxels: smooth the gradient through a coarser volume."""
    depth, height, width = level.fixed_grid.shape_zyx
    return depth * height * width > LARGE_LEVEL_VOXELS


def _run_gaussian_symmetric(stage, model: VelocityField, level, loss: DeformableLoss, index, iterations, lr, report,
                            halves: tuple[torch.Tensor, torch.Tensor] | None = None,
                            keep_halves: bool = True) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Symmetric log-domain updates: both images move halfway, ``F o exp(-v/2)`` vs ``M o exp(v/2)``.

    The similarity is measured in the middle space, so neither image is the reference of the
    smoothing and the gradient sees both images' edges. A step ``d`` on ``v`` changes the two
    half maps by about ``+d/2`` and ``-d/2``, so the direction is the difference of their
    gradients. The half maps are kept up to date by one composition per iteration, integrated
    exactly every ``exact_every`` iterations (not at the start of a level when ``halves`` come
    from the coarser one) and returned for the next level (``keep_halves``); an update nothing
    would read (before an exact integration, after the last level) is skipped. The additive
    update of ``v`` is exact to second order for this symmetric sandwich (the first
    Baker-Campbell-Hausdorff brackets cancel).
    """
    parameter = model.field
    step_mm = lr * min(level.spacing)
    convergence = Convergence(stage.tolerance, stage.window)
    coarse = model.grid is not level.fixed_grid
    sigma_gradient, sigma_field, _ = _smoothing_sigmas(stage, index, model, level)
    exact_every = _exact_every(stage, index)
    smooth_gradient = gaussian_blur_fast if _is_large(level) else gaussian_blur
    forward, backward = halves if halves is not None else (None, None)  # exp(v/2), exp(-v/2) on the model's grid
    for iteration in range(iterations):
        with torch.no_grad():
            if forward is None or (iteration % exact_every == 0 and (iteration > 0 or exact_every == 1)):
                half = model.steps - 1
                forward, backward = model.exponential(0.5 * parameter, half), model.exponential(-0.5 * parameter, half)
            u_moving = forward if not coarse else resample_field(forward, model.grid, level.fixed_grid)
            u_fixed = backward if not coarse else resample_field(backward, model.grid, level.fixed_grid)
        # leaves sharing the halves' storage (nothing writes into them)
        u_moving = u_moving.detach().requires_grad_(True)
        u_fixed = u_fixed.detach().requires_grad_(True)
        total, similarity = loss(u_moving, u_fixed)
        grad_moving, grad_fixed = torch.autograd.grad(total, (u_moving, u_fixed))
        report(index, iteration + 1, iterations, float(similarity.detach()))
        with torch.no_grad():
            gradient = grad_moving.sub_(grad_fixed)
            if sigma_gradient > 0:
                gradient = smooth_gradient(gradient, sigma_gradient)
            if coarse:
                gradient = resample_field(gradient, level.fixed_grid, model.grid)
            before = parameter.detach().clone()
            largest = gradient.square().sum(dim=1).max().sqrt()
            if float(largest) > 0:
                parameter.sub_(gradient * (step_mm / largest))
            if sigma_field > 0:
                parameter.copy_(gaussian_blur(parameter, sigma_field))
            stop = convergence.update(float(total.detach()))
            ends = stop or iteration == iterations - 1
            # the halves are needed next iteration unless it integrates them exactly anyway, and
            # after the level only for the next one
            if keep_halves if ends else (iteration + 1) % exact_every != 0:
                change = 0.5 * (parameter - before)
                # exp(v/2 + c) ~ exp(v/2) o (id + c) and exp(-v/2 - c) ~ exp(-v/2) o (id - c)
                forward = model.advanced(forward, change)
                backward = model.advanced(backward, -change)
        if stop:
            break
    return (forward, backward) if keep_halves else None
