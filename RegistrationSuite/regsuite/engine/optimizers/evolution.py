"""Derivative-free evolutionary minimisers for low-dimensional parameter vectors.

Used for rigid (6) and affine (12) parameter searches where gradients mislead: a large initial
misalignment, or a multimodal similarity such as mutual information.

Both optimisers work in **normalized parameter coordinates** ``y``, related to the caller's
parameters by ``x = x0 + scales * y``; ``scales`` gives the typical size of each parameter
(e.g. 0.1 rad for angles and 10 mm for translations) so that one unit of ``y`` means the same
amount of change for every parameter. ``sigma0`` is the initial step in those units.

Both are deterministic for a given ``seed`` (``numpy.random.default_rng``), call
``callback(iteration, best_value)`` once per iteration, and raise
:class:`regsuite.errors.RegistrationCancelled` as soon as ``cancel()`` returns True. A
non-finite objective value counts as worse than every finite one.

Example:
    >>> import numpy as np
    >>> f = lambda x: float(np.sum((x - 3.0) ** 2))
    >>> result = cma_es(f, np.zeros(2), np.ones(2), sigma0=2.0, seed=1)
    >>> bool(np.allclose(result.x, 3.0, atol=1e-3))
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from regsuite.errors import InputError, RegistrationCancelled

Objective = Callable[[np.ndarray], float]
Callback = Callable[[int, float], None]
Cancel = Callable[[], bool]

__all__ = ["EvolutionResult", "one_plus_one_es", "cma_es"]


@dataclass
class EvolutionResult:
    """Outcome of an evolutionary minimisation.

    Attributes:
        x: best parameters found, in the caller's (un-normalized) coordinates.
        value: objective value at ``x``.
        iterations: iterations (ES mutations / CMA-ES generations) performed.
        evaluations: number of objective evaluations, the initial one included.
        converged: True when the step size fell below ``tol`` (not when the budget ran out).
        history: best value so far after each iteration (``len(history) == iterations``).
        step: final largest standard deviation of the search distribution (normalized units),
            the quantity that ``tol`` is compared with.
        covariance: CMA-ES only: final shape of the search distribution (normalized units,
            largest eigenvalue 1); pass it as ``covariance`` to continue a search. None for ES.
    """

    x: np.ndarray
    value: float
    iterations: int
    evaluations: int
    converged: bool
    history: list[float] = field(default_factory=list)
    step: float = math.nan
    covariance: np.ndarray | None = None


def _check_inputs(x0: np.ndarray, scales: np.ndarray, sigma0: float,
                  max_iterations: int, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Validate and copy the common arguments; return float64 ``x0`` and ``scales``."""
    x0 = np.array(x0, dtype=np.float64, copy=True).reshape(-1)
    scales = np.array(scales, dtype=np.float64, copy=True)
    if x0.size == 0:
        raise InputError("x0 is empty; at least one parameter is needed")
    if not np.all(np.isfinite(x0)):
        raise InputError("x0 contains non-finite values")
    if scales.ndim == 0:
        scales = np.full(x0.shape, float(scales))
    scales = scales.reshape(-1)
    if scales.shape != x0.shape:
        raise InputError(f"scales has {scales.size} entries but x0 has {x0.size}")
    if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
        raise InputError("scales must be finite and positive")
    if not (math.isfinite(sigma0) and sigma0 > 0):
        raise InputError(f"sigma0 must be a finite positive number, got {sigma0}")
    if max_iterations < 0:
        raise InputError(f"max_iterations must be >= 0, got {max_iterations}")
    if not tol >= 0:
        raise InputError(f"tol must be >= 0, got {tol}")
    return x0, scales


def _evaluate(f: Objective, x: np.ndarray) -> float:
    """Evaluate ``f`` on a copy of ``x``; non-finite values become ``+inf``."""
    value = float(f(x.copy()))
    return value if math.isfinite(value) else math.inf


def _check_cancel(cancel: Cancel | None, name: str, iteration: int) -> None:
    if cancel is not None and cancel():
        raise RegistrationCancelled(f"{name} cancelled at iteration {iteration}")


def one_plus_one_es(
    f: Objective,
    x0: np.ndarray,
    scales: np.ndarray,
    *,
    sigma0: float = 1.0,
    max_iterations: int = 200,
    growth: float = 1.05,
    shrink: float | None = None,
    tol: float = 1e-4,
    seed: int = 0,
    callback: Callback | None = None,
    cancel: Cancel | None = None,
) -> EvolutionResult:
    """Minimise ``f`` with a (1+1) evolution strategy and the 1/5th success rule.

    Each iteration draws one Gaussian mutation ``y' = y + A @ z`` (``z ~ N(0, I)``, normalized
    coordinates) and keeps it if it is strictly better. The mutation matrix ``A`` (initially
    ``sigma0 * I``) is stretched by ``growth`` along the tried direction on success and by
    ``shrink`` on failure, ``A <- A + (factor - 1) * (A @ u) u^T`` with ``u = z / |z|``; so the
    search widens along directions that pay off and narrows along those that do not. The
    default ``shrink = growth ** -0.25`` keeps the step size stationary at a 1/5 success rate.

    Stops (``converged=True``) when the root-mean-square step ``|A|_F / sqrt(n)`` falls below
    ``tol`` (normalized units), or after ``max_iterations`` mutations.

    Example:
        >>> import numpy as np
        >>> f = lambda x: float((x[0] - 1.0) ** 2 + 100.0 * (x[1] + 2.0) ** 2)
        >>> r = one_plus_one_es(f, np.zeros(2), np.array([1.0, 0.1]), max_iterations=3000)
        >>> bool(np.allclose(r.x, [1.0, -2.0], atol=1e-3))
        True
    """
    x0, scales = _check_inputs(x0, scales, sigma0, max_iterations, tol)
    if shrink is None:
        shrink = growth ** -0.25
    if not (math.isfinite(growth) and growth > 1.0):
        raise InputError(f"growth must be > 1, got {growth}")
    if not (math.isfinite(shrink) and 0.0 < shrink < 1.0):
        raise InputError(f"shrink must be in (0, 1), got {shrink}")

    n = x0.size
    rng = np.random.default_rng(seed)
    mutation = np.eye(n) * sigma0  # A, in normalized coordinates
    y_best = np.zeros(n)
    f_best = _evaluate(f, x0)
    evaluations = 1
    history: list[float] = []
    converged = False
    iteration = 0

    while iteration < max_iterations:
        _check_cancel(cancel, "(1+1)-ES", iteration)
        if np.linalg.norm(mutation) / math.sqrt(n) < tol:
            converged = True
            break
        z = rng.standard_normal(n)
        step = mutation @ z
        y_try = y_best + step
        f_try = _evaluate(f, x0 + scales * y_try)
        evaluations += 1
        factor = growth if f_try < f_best else shrink
        if f_try < f_best:
            y_best, f_best = y_try, f_try
        z_norm = float(np.linalg.norm(z))
        if z_norm > 0.0:
            u = z / z_norm
            mutation = mutation + (factor - 1.0) * np.outer(mutation @ u, u)
        iteration += 1
        history.append(f_best)
        if callback is not None:
            callback(iteration, f_best)
    else:
        converged = np.linalg.norm(mutation) / math.sqrt(n) < tol

    return EvolutionResult(x=x0 + scales * y_best, value=f_best, iterations=iteration,
                           evaluations=evaluations, converged=bool(converged), history=history,
                           step=float(np.linalg.norm(mutation) / math.sqrt(n)))


def _initial_shape(covariance: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(C, B, D)`` for an initial shape (identity when None) scaled to largest eigenvalue 1:
    ``B`` holds the eigenvectors of ``C`` (columns), ``D`` the square roots of its eigenvalues."""
    if covariance is None:
        return np.eye(n), np.eye(n), np.ones(n)
    cov = np.array(covariance, dtype=np.float64, copy=True)
    if (cov.shape != (n, n) or not np.all(np.isfinite(cov))
            or not np.allclose(cov, cov.T, rtol=0.0, atol=1e-9 * float(np.abs(cov).max()))):
        raise InputError(f"covariance must be a finite symmetric {n}x{n} matrix")
    eigenvalues, basis = np.linalg.eigh(0.5 * (cov + cov.T))
    if eigenvalues.min() <= 1e-14 * eigenvalues.max():
        raise InputError("covariance must be positive definite (and not degenerate)")
    eigenvalues = eigenvalues / eigenvalues.max()
    return (basis * eigenvalues) @ basis.T, basis, np.sqrt(eigenvalues)


def cma_es(
    f: Objective,
    x0: np.ndarray,
    scales: np.ndarray,
    *,
    sigma0: float = 1.0,
    population: int | None = None,
    covariance: np.ndarray | None = None,
    max_iterations: int = 100,
    tol: float = 1e-6,
    seed: int = 0,
    callback: Callback | None = None,
    cancel: Cancel | None = None,
) -> EvolutionResult:
    """Minimise ``f`` with a (mu/mu_w, lambda)-CMA-ES.

    The standard algorithm (as described in N. Hansen's "The CMA Evolution Strategy: A
    Tutorial"): weighted recombination of the best ``mu = lambda // 2`` of ``lambda``
    samples, rank-one (evolution path ``p_c``) and rank-mu covariance updates, and cumulative
    step-size adaptation (path ``p_sigma``). Everything runs in normalized coordinates
    ``x = x0 + scales * y`` starting from ``y = 0`` with ``C = I`` and step ``sigma0``.
    ``population`` defaults to ``4 + floor(3 ln n)``; ``max_iterations`` counts generations.
    ``covariance`` (symmetric positive definite, normalized units) replaces ``I`` as the initial
    ``C`` after scaling to largest eigenvalue 1, so ``sigma0`` stays the largest initial standard
    deviation; pass a previous result's ``covariance`` to refine it, e.g. on a finer image.

    Stops (``converged=True``) when ``sigma * sqrt(max eig C)``, the largest standard deviation
    of the search distribution in normalized units, falls below ``tol``; stops without
    convergence when ``C`` becomes numerically degenerate or the budget is spent. The returned
    ``x`` is the best sample ever evaluated (or the final mean if that is better).

    Example:
        >>> import numpy as np
        >>> f = lambda x: float(np.sum(np.arange(1, 5) * (x - 1.0) ** 2))
        >>> r = cma_es(f, np.zeros(4), np.ones(4), max_iterations=300)
        >>> bool(r.converged and np.allclose(r.x, 1.0, atol=1e-4))
        True
    """
    x0, scales = _check_inputs(x0, scales, sigma0, max_iterations, tol)
    n = x0.size
    lam = int(population) if population is not None else 4 + int(math.floor(3.0 * math.log(n)))
    if lam < 2:
        raise InputError(f"population must be >= 2, got {population}")
    mu = lam // 2

    # Strategy parameters (defaults of the tutorial).
    weights = math.log((lam + 1) / 2.0) - np.log(np.arange(1, mu + 1))
    weights = weights / weights.sum()
    mueff = 1.0 / float(np.sum(weights ** 2))
    c_c = (4.0 + mueff / n) / (n + 4.0 + 2.0 * mueff / n)
    c_s = (mueff + 2.0) / (n + mueff + 5.0)
    c_1 = 2.0 / ((n + 1.3) ** 2 + mueff)
    c_mu = min(1.0 - c_1, 2.0 * (mueff - 2.0 + 1.0 / mueff) / ((n + 2.0) ** 2 + mueff))
    damps = 1.0 + 2.0 * max(0.0, math.sqrt((mueff - 1.0) / (n + 1.0)) - 1.0) + c_s
    chi_n = math.sqrt(n) * (1.0 - 1.0 / (4.0 * n) + 1.0 / (21.0 * n * n))

    cov, basis, stds = _initial_shape(covariance, n)
    rng = np.random.default_rng(seed)
    mean = np.zeros(n)
    sigma = float(sigma0)
    p_c = np.zeros(n)
    p_s = np.zeros(n)

    y_best = mean.copy()
    f_best = _evaluate(f, x0)
    evaluations = 1
    history: list[float] = []
    converged = False
    generation = 0

    while generation < max_iterations:
        _check_cancel(cancel, "CMA-ES", generation)
        if sigma * float(stds.max()) < tol:
            converged = True
            break
        z = rng.standard_normal((lam, n))
        steps = (z * stds) @ basis.T          # y_k = B D z_k, distributed N(0, C)
        samples = mean + sigma * steps
        values = np.array([_evaluate(f, x0 + scales * s) for s in samples])
        evaluations += lam
        order = np.argsort(values, kind="stable")
        if values[order[0]] < f_best:
            f_best = float(values[order[0]])
            y_best = samples[order[0]].copy()

        best_steps = steps[order[:mu]]
        step_mean = weights @ best_steps       # (m_new - m) / sigma
        mean = mean + sigma * step_mean

        # Cumulation: C^{-1/2} step_mean = B D^{-1} B^T step_mean.
        inv_sqrt_step = basis @ ((basis.T @ step_mean) / stds)
        p_s = (1.0 - c_s) * p_s + math.sqrt(c_s * (2.0 - c_s) * mueff) * inv_sqrt_step
        ps_norm = float(np.linalg.norm(p_s))
        correction = math.sqrt(1.0 - (1.0 - c_s) ** (2 * (generation + 1)))
        h_sig = 1.0 if ps_norm / correction / chi_n < 1.4 + 2.0 / (n + 1.0) else 0.0
        p_c = (1.0 - c_c) * p_c + h_sig * math.sqrt(c_c * (2.0 - c_c) * mueff) * step_mean

        rank_mu = (best_steps * weights[:, None]).T @ best_steps
        delta = (1.0 - h_sig) * c_c * (2.0 - c_c)
        new_cov = ((1.0 - c_1 - c_mu) * cov
                   + c_1 * (np.outer(p_c, p_c) + delta * cov)
                   + c_mu * rank_mu)
        new_sigma = sigma * math.exp((c_s / damps) * (ps_norm / chi_n - 1.0))

        new_cov = 0.5 * (new_cov + new_cov.T)
        eigenvalues, new_basis = np.linalg.eigh(new_cov)
        generation += 1
        history.append(f_best)
        if callback is not None:
            callback(generation, f_best)
        if (not np.all(np.isfinite(eigenvalues)) or eigenvalues.min() <= 0.0
                or eigenvalues.max() > 1e14 * eigenvalues.min() or not math.isfinite(new_sigma)):
            break  # degenerate search distribution: stop with the best point and the last valid C
        sigma, cov, basis, stds = new_sigma, new_cov, new_basis, np.sqrt(eigenvalues)
    else:
        converged = sigma * float(stds.max()) < tol

    f_mean = _evaluate(f, x0 + scales * mean)
    evaluations += 1
    if f_mean < f_best:
        f_best, y_best = f_mean, mean.copy()
        if history:
            history[-1] = f_best
    peak = float(stds.max())
    return EvolutionResult(x=x0 + scales * y_best, value=f_best, iterations=generation,
                           evaluations=evaluations, converged=bool(converged), history=history,
                           step=sigma * peak, covariance=cov / peak ** 2)
