"""Tests of regsuite.engine.optimizers.evolution: (1+1)-ES and CMA-ES on known minima."""

from __future__ import annotations

import numpy as np
import pytest

from regsuite.engine.optimizers import EvolutionResult, cma_es, one_plus_one_es
from regsuite.errors import InputError, RegistrationCancelled


def shifted_quadratic(n: int):
    """Anisotropic quadratic with minimum 0 at a random centre; parameters of mixed size."""
    rng = np.random.default_rng(1000 + n)
    scales = np.where(np.arange(n) % 2 == 0, 0.1, 10.0)     # "radians" and "mm"
    centre = rng.uniform(-4.0, 4.0, n) * scales
    weights = np.logspace(0.0, 2.0, n)                      # conditioning 100

    def f(x: np.ndarray) -> float:
        return float(np.sum(weights * ((x - centre) / scales) ** 2))

    return f, centre, scales


def rosenbrock(x: np.ndarray) -> float:
    return float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2))


@pytest.mark.parametrize("n", [6, 12])
def test_cma_es_quadratic(n: int) -> None:
    f, centre, scales = shifted_quadratic(n)
    result = cma_es(f, np.zeros(n), scales, sigma0=2.0, max_iterations=1000, tol=1e-7, seed=3)
    assert isinstance(result, EvolutionResult)
    assert result.converged
    # Normalized error below 1e-5 (i.e. 1e-6 rad / 1e-4 mm), value at the 1e-9 level.
    assert np.max(np.abs(result.x - centre) / scales) < 1e-5
    assert result.value < 1e-9
    assert result.iterations < 1000
    assert len(result.history) == result.iterations


@pytest.mark.parametrize("n", [6, 12])
def test_one_plus_one_es_quadratic(n: int) -> None:
    f, centre, scales = shifted_quadratic(n)
    result = one_plus_one_es(f, np.zeros(n), scales, sigma0=2.0, max_iterations=30000,
                             tol=1e-5, seed=3)
    assert result.converged
    assert np.max(np.abs(result.x - centre) / scales) < 1e-3
    assert result.value < 1e-6
    assert result.evaluations == result.iterations + 1


@pytest.mark.parametrize("n", [2, 3, 4])
def test_rosenbrock(n: int) -> None:
    x0 = np.linspace(-1.2, 0.5, n)
    cma = cma_es(rosenbrock, x0, np.ones(n), sigma0=0.5, max_iterations=3000, tol=1e-9, seed=0)
    assert cma.converged
    assert np.max(np.abs(cma.x - 1.0)) < 1e-5
    es = one_plus_one_es(rosenbrock, x0, np.ones(n), sigma0=0.5, max_iterations=40000,
                         tol=1e-7, seed=0)
    assert es.converged
    assert np.max(np.abs(es.x - 1.0)) < 1e-4


@pytest.mark.parametrize("optimizer", [cma_es, one_plus_one_es])
def test_deterministic_per_seed(optimizer) -> None:
    f, _, scales = shifted_quadratic(6)
    a = optimizer(f, np.zeros(6), scales, max_iterations=60, seed=11)
    b = optimizer(f, np.zeros(6), scales, max_iterations=60, seed=11)
    c = optimizer(f, np.zeros(6), scales, max_iterations=60, seed=12)
    assert np.array_equal(a.x, b.x) and a.history == b.history and a.value == b.value
    assert a.history != c.history


@pytest.mark.parametrize("optimizer", [cma_es, one_plus_one_es])
def test_history_and_callback(optimizer) -> None:
    f, _, scales = shifted_quadratic(6)
    seen: list[tuple[int, float]] = []
    x0 = np.zeros(6)
    start = f(x0)
    result = optimizer(f, x0, scales, max_iterations=40, tol=0.0,
                       callback=lambda it, value: seen.append((it, value)))
    assert result.iterations == 40 and not result.converged
    assert [it for it, _ in seen] == list(range(1, 41))
    assert [v for _, v in seen][:-1] == result.history[:-1]
    assert all(b <= a for a, b in zip(result.history, result.history[1:]))
    assert result.value <= result.history[-1] <= start
    assert result.value == pytest.approx(f(result.x))
    assert result.value < start     # 40 iterations make progress from the start


@pytest.mark.parametrize("optimizer", [cma_es, one_plus_one_es])
def test_cancel_stops_early(optimizer) -> None:
    f, _, scales = shifted_quadratic(6)
    calls = {"cancel": 0, "f": 0}

    def counting_f(x: np.ndarray) -> float:
        calls["f"] += 1
        return f(x)

    def cancel() -> bool:
        calls["cancel"] += 1
        return calls["cancel"] > 5

    with pytest.raises(RegistrationCancelled, match="iteration 5"):
        optimizer(counting_f, np.zeros(6), scales, max_iterations=1000, cancel=cancel)
    assert calls["cancel"] == 6
    assert calls["f"] <= 1 + 5 * 20   # at most five iterations were evaluated


@pytest.mark.parametrize("optimizer", [cma_es, one_plus_one_es])
def test_non_finite_values_are_worse(optimizer) -> None:
    def f(x: np.ndarray) -> float:
        if np.any(np.abs(x) > 3.0):
            return float("nan")
        return float(np.sum((x - 2.5) ** 2))

    result = optimizer(f, np.zeros(3), np.ones(3), sigma0=1.0, max_iterations=3000, seed=1)
    assert np.all(np.abs(result.x) <= 3.0)
    assert np.max(np.abs(result.x - 2.5)) < 1e-2


@pytest.mark.parametrize("optimizer", [cma_es, one_plus_one_es])
def test_zero_budget_and_inputs_untouched(optimizer) -> None:
    x0 = np.array([1.0, 2.0])
    scales = np.array([1.0, 1.0])
    result = optimizer(lambda x: float(np.sum(x ** 2)), x0, scales, max_iterations=0)
    assert result.iterations == 0 and result.history == []
    assert np.array_equal(result.x, x0) and result.value == 5.0
    assert np.array_equal(x0, [1.0, 2.0]) and np.array_equal(scales, [1.0, 1.0])


@pytest.mark.parametrize("optimizer", [cma_es, one_plus_one_es])
def test_bad_inputs(optimizer) -> None:
    f = lambda x: float(np.sum(x ** 2))  # noqa: E731
    with pytest.raises(InputError, match="scales"):
        optimizer(f, np.zeros(3), np.ones(2))
    with pytest.raises(InputError, match="scales"):
        optimizer(f, np.zeros(2), np.array([1.0, 0.0]))
    with pytest.raises(InputError, match="sigma0"):
        optimizer(f, np.zeros(2), np.ones(2), sigma0=-1.0)
    with pytest.raises(InputError, match="x0"):
        optimizer(f, np.array([np.nan, 0.0]), np.ones(2))


def test_es_growth_shrink_validation() -> None:
    f = lambda x: float(np.sum(x ** 2))  # noqa: E731
    with pytest.raises(InputError, match="growth"):
        one_plus_one_es(f, np.zeros(2), np.ones(2), growth=0.9)
    with pytest.raises(InputError, match="shrink"):
        one_plus_one_es(f, np.zeros(2), np.ones(2), shrink=1.2)
    with pytest.raises(InputError, match="population"):
        cma_es(f, np.zeros(2), np.ones(2), population=1)


def test_cma_es_learns_rotated_ill_conditioned_quadratic() -> None:
    # Condition number 1e4 along rotated axes: an isotropic step-size-only strategy needs
    # on the order of 1e4 generations here; the adapted covariance makes it a few hundred.
    n = 6
    q, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((n, n)))
    hessian = q @ np.diag(np.logspace(0.0, 4.0, n)) @ q.T
    result = cma_es(lambda x: float(x @ hessian @ x), np.ones(n), np.ones(n),
                    max_iterations=1000, tol=1e-8, seed=0)
    assert result.converged and result.iterations < 1000
    assert np.max(np.abs(result.x)) < 1e-6


def test_final_step_and_covariance_describe_the_search() -> None:
    f, _, scales = shifted_quadratic(6)
    done = cma_es(f, np.zeros(6), scales, sigma0=2.0, max_iterations=1000, tol=1e-6, seed=3)
    assert done.converged and done.step < 1e-6          # the quantity compared with tol
    cut = cma_es(f, np.zeros(6), scales, sigma0=2.0, max_iterations=20, tol=1e-6, seed=3)
    assert not cut.converged and cut.step > 1e-3        # 20 generations shrink 2.0 by < 1000
    shape = done.covariance
    assert shape is not None and np.array_equal(shape, shape.T)
    assert np.linalg.eigvalsh(shape).max() == pytest.approx(1.0, rel=1e-12)
    es = one_plus_one_es(f, np.zeros(6), scales, sigma0=2.0, max_iterations=30000, tol=1e-5, seed=3)
    assert es.converged and es.step < 1e-5 and es.covariance is None


def test_cma_es_continues_from_a_learned_covariance() -> None:
    # A rotated quadratic with condition 1e4. A first search stops (tol 1e-3) having learned C.
    # Continuing from its point and step with its covariance keeps converging (40 generations
    # cut f by ~2400x here); restarting with C = I and the same largest step samples the
    # stiffest direction ~80x too wide and finds nothing better in those 40 generations.
    n = 6
    q, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((n, n)))
    hessian = q @ np.diag(np.logspace(0.0, 4.0, n)) @ q.T
    f = lambda x: float(x @ hessian @ x)  # noqa: E731
    first = cma_es(f, np.ones(n), np.ones(n), max_iterations=1000, tol=1e-3, seed=0)
    assert first.converged
    options = dict(sigma0=first.step, max_iterations=40, tol=0.0, seed=1)
    warm = cma_es(f, first.x, np.ones(n), covariance=first.covariance, **options)
    fresh = cma_es(f, first.x, np.ones(n), **options)
    assert warm.value < 1e-2 * first.value
    assert fresh.value > 0.5 * first.value


def test_bad_covariance() -> None:
    f = lambda x: float(np.sum(x ** 2))  # noqa: E731
    with pytest.raises(InputError, match="covariance must be a finite symmetric 2x2"):
        cma_es(f, np.zeros(2), np.ones(2), covariance=np.eye(3))
    with pytest.raises(InputError, match="symmetric"):
        cma_es(f, np.zeros(2), np.ones(2), covariance=np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(InputError, match="positive definite"):
        cma_es(f, np.zeros(2), np.ones(2), covariance=np.array([[1.0, 1.0], [1.0, 1.0]]))
