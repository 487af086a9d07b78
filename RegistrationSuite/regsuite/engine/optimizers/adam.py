"""Adam (Kingma and Ba, 2015) on a list of tensors, without ``torch.optim``.

``torch.optim.Optimizer`` imports ``torch._dynamo`` on first use, which costs more than a second
per process: as much as a whole rigid registration. This small class does the same update.

Example:
    >>> import torch
    >>> x = torch.tensor([3.0, -2.0], requires_grad=True)
    >>> optimizer = Adam([x], lr=0.1)
    >>> for _ in range(300):
    ...     optimizer.zero_grad()
    ...     (x ** 2).sum().backward()
    ...     optimizer.step()
    >>> bool(x.abs().max() < 0.05)
    True
"""

from __future__ import annotations

from typing import Sequence

import torch


class Adam:
    """Adam with bias correction; ``zero_grad()`` and ``step()`` as in ``torch.optim.Adam``."""

    def __init__(self, parameters: Sequence[torch.Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.parameters = list(parameters)
        self.lr, (self.beta1, self.beta2), self.eps = float(lr), betas, float(eps)
        self.first = [torch.zeros_like(p) for p in self.parameters]
        self.second = [torch.zeros_like(p) for p in self.parameters]
        self.count = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        for parameter in self.parameters:
            if set_to_none:
                parameter.grad = None
            elif parameter.grad is not None:
                parameter.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        self.count += 1
        correction1 = 1.0 - self.beta1 ** self.count
        correction2 = 1.0 - self.beta2 ** self.count
        for parameter, first, second in zip(self.parameters, self.first, self.second):
            if parameter.grad is None:
                continue
            gradient = parameter.grad
            first.mul_(self.beta1).add_(gradient, alpha=1.0 - self.beta1)
            second.mul_(self.beta2).addcmul_(gradient, gradient, value=1.0 - self.beta2)
            denominator = (second / correction2).sqrt_().add_(self.eps)
            parameter.addcdiv_(first, denominator, value=-self.lr / correction1)
