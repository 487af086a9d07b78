"""A HyperMorph result that can change its lambda: the network stays loaded, the pair stays on
its canonical grid, and each new lambda costs one forward pass and one field export.

Used by the Slicer panel's lambda slider (in-process, off the main thread) and by the lambda
sweep of the benchmark.

Example:
    >>> session = LambdaSession.from_registration(result, fixed, moving)  # doctest: +SKIP
    >>> transform = session.transform(0.3)                                 # doctest: +SKIP
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from ..engine.config import RegistrationConfig, check_lambda
from ..engine.grid import Grid
from ..engine.transforms.dense import resample_field, vector_array
from ..errors import InputError
from .inference import CanonicalPair, predict_cascade
from .models import LoadedModel, load_model


class LambdaSession:
    """Recompute a HyperMorph registration's deformable part for any lambda.

    ``affine`` is the linear part found before the network (fixed world -> moving world);
    :meth:`transform` returns ``affine o (id + exp(v_lambda))`` with the field on ``fixed``'s
    whole grid, as the engine exports it; ``cascade`` runs the network that many times, as the
    preset's network stage did.
    """

    def __init__(self, model: LoadedModel, fixed: sitk.Image, moving: sitk.Image, affine: sitk.Transform,
                 fixed_mask: sitk.Image | None = None, moving_mask: sitk.Image | None = None,
                 device: torch.device | str = "cpu", cascade: int = 1) -> None:
        if not model.is_hyper:
            raise InputError(f"model '{model.name}' is not a HyperMorph model; its result has no lambda to change")
        self.model, self.affine, self.cascade = model, affine, int(cascade)
        self.fixed_grid = Grid.from_sitk(fixed)
        self.pair = CanonicalPair.build(model, fixed, moving, affine, fixed_mask, moving_mask, device)
        self._lock = threading.Lock()

    @classmethod
    def from_registration(cls, result: Any, fixed: sitk.Image, moving: sitk.Image,
                          fixed_mask: sitk.Image | None = None, moving_mask: sitk.Image | None = None,
                          device: torch.device | str = "cpu") -> "LambdaSession":
        """The session of a :class:`~regsuite.engine.registration.RegistrationResult` whose last
        stage is a HyperMorph network stage."""
        config: RegistrationConfig = result.config
        stage = config.stages[-1]
        if not stage.is_network or stage.hyper_lambda is None:
            raise InputError(f"preset '{config.name}' does not end with a HyperMorph network stage; "
                             "only such results can change their lambda")
        if len(result.parts) != 2:
            raise InputError("a result with an initial non-linear transform cannot change its lambda")
        model = load_model(stage.network, device)
        return cls(model, fixed, moving, result.parts[0], fixed_mask, moving_mask, device, stage.cascade)

    def displacement_array(self, lam: float) -> "np.ndarray":
        """``exp(v_lambda)`` on the fixed image's whole grid as a float32 ``(z, y, x, 3)`` array
        of world (LPS) mm vectors, without building an ITK image (zero outside the model's grid)."""
        value = check_lambda(lam, "lambda")
        with self._lock:
            velocity = predict_cascade(self.model, self.pair, self.cascade, value)
            with torch.no_grad():
                values = resample_field(velocity.displacement(), velocity.grid, self.fixed_grid, padding="zeros")
            return vector_array(values, values.dtype)

    def displacement(self, lam: float) -> sitk.DisplacementFieldTransform:
        """``exp(v_lambda)`` as a displacement field transform on the fixed image's whole grid."""
        value = check_lambda(lam, "lambda")
        with self._lock:
            velocity = predict_cascade(self.model, self.pair, self.cascade, value)
            return velocity.to_sitk(self.fixed_grid)

    def transform(self, lam: float) -> sitk.CompositeTransform:
        """The full result for ``lam``: ``affine o (id + exp(v_lambda))`` (fixed world -> moving world)."""
        return sitk.CompositeTransform([self.affine, self.displacement(lam)])
