"""Optimizers of the engine that work on small parameter vectors.

Example:
    >>> from regsuite.engine.optimizers import Adam, cma_es, one_plus_one_es, EvolutionResult
"""

from __future__ import annotations

from regsuite.engine.optimizers.adam import Adam
from regsuite.engine.optimizers.evolution import EvolutionResult, cma_es, one_plus_one_es

__all__ = ["Adam", "EvolutionResult", "cma_es", "one_plus_one_es"]
