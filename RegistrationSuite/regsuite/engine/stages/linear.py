"""Optimisation of a rigid or affine stage over the pyramid levels.

Gradient optimisers (Adam, L-BFGS) use autograd; the evolutionary ones ((1+1)-ES, CMA-ES)
only evaluate the metric, which helps for large misalignments and multimodal measures.

An evolutionary search starts with the step ``learning_rate`` (normalized parameter units: mm,
and mm at the transform's radius for angles), the capture range, at the first level only. A
later level refines the previous level's result: it starts from that result with the step
``min(learning_rate, max(previous level's final step, half this level's mean voxel size))``
and, for CMA-ES, the previous level's covariance shape. (Restarting every level at the full
``learning_rate`` made a fine level spend its whole budget re-shrinking a search wider than
the error left to correct, and return the coarse result unchanged.) A level with its own
``learning_rate`` starts with exactly that step.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import StageConfig
from ..metrics import make_metric
from ..optimizers import Adam, EvolutionResult, cma_es, one_plus_one_es
from ..pyramid import LevelImages, Pyramid
from ..transforms.linear import LinearTransform
from .common import Convergence, Reporter, sample_moving


def linear_loss(transform: LinearTransform, level: LevelImages, metric, use_masks: bool) -> torch.Tensor:
    """Similarity of the fixed level image and the moving image mapped by ``transform``."""
    matrix, offset = transform.matrix_offset()
    to_normalized = torch.as_tensor(level.moving_grid.world_to_normalized(), dtype=matrix.dtype, device=matrix.device)
    combined = to_normalized[:3, :3] @ matrix  # world (fixed) -> normalized (moving), one product
    shift = to_normalized[:3, :3] @ offset + to_normalized[:3, 3]
    normalized = level.fixed_points @ combined.T.float() + shift.float()
    warped, weight = sample_moving(level, normalized, use_masks)
    return metric(level.fixed, warped, weight, level.spacing)


def evaluate_linear(transform: LinearTransform, level: LevelImages, stage: StageConfig) -> float:
    metric = make_metric(stage.metric, **stage.metric_options)
    with torch.no_grad():
        return float(linear_loss(transform, level, metric, stage.use_masks))


def run_linear_stage(stage: StageConfig, pyramid: Pyramid, transform: LinearTransform, report: Reporter, seed: int = 0) -> None:
    """Optimise ``transform`` in place, level by level (coarse to fine)."""
    search: EvolutionResult | None = None  # the previous level's evolutionary search
    for index, level_config in enumerate(stage.levels):
        level = pyramid.level(level_config.shrink, level_config.smoothing)
        metric = make_metric(stage.metric, **stage.metric_options_at(index))
        lr = level_config.learning_rate if level_config.learning_rate is not None else stage.learning_rate
        iterations = level_config.iterations
        if iterations == 0:
            continue

        def loss() -> torch.Tensor:
            return linear_loss(transform, level, metric, stage.use_masks)

        if stage.optimizer in ("one-plus-one", "cma-es"):
            if search is not None and level_config.learning_rate is None:
                lr = min(lr, max(search.step, 0.5 * float(np.mean(level.spacing))))
            search = _run_evolution(stage, transform, loss, index, iterations, lr, report, seed,
                                    search.covariance if search is not None else None)
        elif stage.optimizer == "lbfgs":
            _run_lbfgs(stage, transform, loss, index, iterations, lr, report)
        else:
            _run_adam(stage, transform, loss, index, iterations, lr, report)


def _run_adam(stage, transform, loss, level, iterations, lr, report) -> None:
    optimizer = Adam([transform.q], lr=lr)
    convergence = Convergence(stage.tolerance, stage.window)
    best = (float("inf"), transform.q.detach().clone())
    for iteration in range(iterations):
        optimizer.lr = lr * (1.0 - 0.8 * iteration / max(1, iterations - 1))  # linear decay to 20 %
        optimizer.zero_grad(set_to_none=True)
        value = loss()
        value.backward()
        current = float(value.detach())
        if current < best[0]:
            best = (current, transform.q.detach().clone())
        report(level, iteration + 1, iterations, current)
        optimizer.step()
        if convergence.update(current):
            break
    with torch.no_grad():
        transform.q.copy_(best[1])


def _run_lbfgs(stage, transform, loss, level, iterations, lr, report) -> None:
    optimizer = torch.optim.LBFGS([transform.q], lr=lr, max_iter=iterations, max_eval=int(iterations * 1.5),
                                  tolerance_change=stage.tolerance * 1e-3, line_search_fn="strong_wolfe")
    count = [0]

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        value = loss()
        value.backward()
        count[0] += 1
        report(level, count[0], iterations, float(value.detach()))
        return value

    optimizer.step(closure)


def _run_evolution(stage, transform, loss, level, iterations, lr, report, seed, covariance) -> EvolutionResult:
    """One level's search from the current parameters with initial step ``lr`` (and, for
    CMA-ES, initial covariance shape ``covariance``); sets the best point found."""
    start = transform.q.detach().cpu().numpy().copy()

    def objective(q: np.ndarray) -> float:
        with torch.no_grad():
            transform.q.copy_(torch.as_tensor(q))
            return float(loss())

    def callback(iteration: int, value: float) -> None:
        report(level, iteration, iterations, value)

    options = dict(sigma0=lr, max_iterations=iterations, tol=stage.tolerance, seed=seed, callback=callback, cancel=report.cancel)
    if stage.optimizer == "cma-es":
        result = cma_es(objective, start, np.ones_like(start), covariance=covariance, **options)
    else:
        result = one_plus_one_es(objective, start, np.ones_like(start), **options)
    with torch.no_grad():
        transform.q.copy_(torch.as_tensor(result.x))
    return result
