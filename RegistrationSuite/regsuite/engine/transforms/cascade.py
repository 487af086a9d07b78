"""A chain of stationary velocity fields: the map of a recursive cascade of network steps.

Step ``i`` of a cascade (in the manner of Recursive Cascaded Networks) registers the fixed image
to the moving image warped by the steps before it and predicts ``exp(v_i)``. The whole map is

    T(x) = exp(v_1)(exp(v_2)(... exp(v_k)(x)))

(the last step acts first on a fixed point: it refines the alignment the earlier steps left),
a diffeomorphism with the inverse ``exp(-v_k) o ... o exp(-v_1)`` (as fields, both directions are
composed on the grid by linear interpolation, so they undo each other up to that interpolation,
less closely than one field's ``exp(v)`` and ``exp(-v)``). All fields share one
grid; displacements are world mm, like :class:`~regsuite.engine.transforms.dense.VelocityField`.

Example (two equal steps are one step of twice the velocity):
    >>> import torch
    >>> from regsuite.engine.grid import Grid
    >>> grid = Grid((12, 12, 12), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    >>> v = torch.zeros(1, 3, 12, 12, 12); v[:, 0] = 1.5
    >>> chain = VelocityChain(grid, [v, v])
    >>> round(float(chain.displacement()[0, 0, 6, 6, 6]), 4)
    3.0
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..grid import Grid
from .dense import DenseField, VelocityField, compose_on_grid, identity_normalized


class VelocityChain(DenseField):
    """The map ``exp(v_1) o exp(v_2) o ... o exp(v_k)`` of ``velocities`` on ``grid``.

    ``field`` (the parameter every dense model has) holds the summed velocity, for display and
    statistics only; :meth:`displacement` and :meth:`inverse_displacement` compose the steps.
    """

    invertible = True

    def __init__(self, grid: Grid, velocities: Sequence[torch.Tensor], steps: int = 7) -> None:
        if not velocities:
            raise ValueError("a velocity chain needs at least one velocity field")
        super().__init__(grid, torch.stack([v.detach() for v in velocities]).sum(dim=0))
        self.field.requires_grad_(False)
        self.steps = int(steps)
        self.velocities = [v.detach().clone() for v in velocities]
        self._integrator = VelocityField(grid, steps=self.steps)
        self._cached: dict[bool, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.velocities)

    def resampled(self, grid: Grid) -> "VelocityChain":
        from .dense import resample_field
        return VelocityChain(grid, [resample_field(v, self.grid, grid) for v in self.velocities], self.steps)

    def _chain(self, inverse: bool) -> torch.Tensor:
        if inverse not in self._cached:
            with torch.no_grad():
                sign = -1.0 if inverse else 1.0
                maps = [self._integrator.exponential(sign * v) for v in self.velocities]
                base = identity_normalized(self.grid, maps[0].device, maps[0].dtype)
                total = maps[-1] if not inverse else maps[0]
                # forward: x -> exp(v_k)(x) first, then exp(v_(k-1)), ...; inverse: exp(-v_1) first
                for following in (reversed(maps[:-1]) if not inverse else maps[1:]):
                    total = compose_on_grid(total, following, self.grid, base)
                self._cached[inverse] = total
        return self._cached[inverse]

    def displacement(self) -> torch.Tensor:
        return self._chain(False)

    def inverse_displacement(self) -> torch.Tensor:
        return self._chain(True)
