"""HyperMorph's lambda after a run: the result recomputed in this process, its transform node updated in place.

A finished ``brain-mri-hypermorph`` run (any preset whose last stage is a HyperMorph network stage)
gets a :class:`LambdaUpdater`. Its first :meth:`LambdaUpdater.compute` loads the network and puts
the pair on the network's canonical grid (a :class:`regsuite.learning.session.LambdaSession`,
kept for every later call); each call then costs one forward pass, the field's export and its
conversion to a grid transform, and may run in any thread. :meth:`LambdaUpdater.apply` stores the
result in the run's own transform node (and output volume, if the run made one) on the main
thread: no node is added. :class:`LambdaJob` runs ``compute`` in a Python thread for a panel,
computing only the latest value asked for while the user drags a slider.

PyTorch and the learning package are imported on first use only, never when this file loads.

Example (Slicer's Python console, after a hypermorph run)::

    logic.updateLambda(outputs.transformNode, 0.2)   # blocks ~1-2 s on a CPU for a 1 mm brain
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable


def _checkLambda(lam: Any) -> float:
    """``lam`` as a float in [0, 1], else a one-line :class:`regsuite.errors.PresetError`."""
    from regsuite.engine.config import check_lambda  # noqa: PLC0415  (no torch)

    return check_lambda(lam, "lambda")


def hyperStage(preset: dict[str, Any]) -> dict[str, Any] | None:
    """The last stage of a preset dict when it is a HyperMorph network stage (it has a lambda), else None."""
    stages = preset.get("stages") or []
    last = stages[-1] if stages else {}
    return last if last.get("model") == "network" and last.get("lambda") is not None else None


@dataclass
class LambdaUpdate:
    """A result recomputed at ``lam``, ready for :meth:`LambdaUpdater.apply` (main thread)."""

    lam: float
    parts: list[Any]  # [affine, displacement field] (SimpleITK, fixed LPS -> moving LPS)
    planned: tuple[str, Any]  # what regsuite.mrml.transforms.plan_result made of them
    warped: Any  # the moving image resampled onto the fixed grid (runs with an output volume), else None
    seconds: float


class LambdaUpdater:
    """Recomputes one HyperMorph result at another lambda and stores it in the result's own nodes.

    ``affine`` is the linear part of the result (fixed world -> moving world); the images and
    masks are those the run registered (SimpleITK, LPS). ``device`` is where the run ran
    (``"cpu"``, ``"cuda:0"``, ...).
    """

    def __init__(self, transformNode: Any, fixedImage: Any, movingImage: Any, affine: Any, network: str,
                 lam: float, fixedMask: Any = None, movingMask: Any = None, device: str = "cpu",
                 outputVolumeNode: Any = None, movingIsLabelmap: bool = False, outputs: Any = None,
                 cascade: int = 1) -> None:
        self.transformNode, self.outputVolumeNode, self.outputs = transformNode, outputVolumeNode, outputs
        self.cascade = int(cascade)  # the network stage's runs (a recursive cascade), repeated per update
        self.network, self.device, self.lam = network, device, float(lam)
        self._images = (fixedImage, movingImage, fixedMask, movingMask)
        self._affine, self._labelmap = affine, movingIsLabelmap
        self._session: Any = None
        self._lock = threading.Lock()

    @property
    def prepared(self) -> bool:
        """True once the network is loaded and the pair is on its grid."""
        return self._session is not None

    def prepare(self) -> None:
        """Load the network and build the session (once; any thread). Later calls return at once."""
        with self._lock:
            if self._session is not None:
                return
            from regsuite.io.images import read_image, read_mask  # noqa: PLC0415
            from regsuite.learning.models import load_model  # noqa: PLC0415  (imports torch)
            from regsuite.learning.session import LambdaSession  # noqa: PLC0415

            fixed, moving, fixedMask, movingMask = self._images
            fixed, moving = read_image(fixed, "fixed image"), read_image(moving, "moving image")  # as the engine
            fixedMask = read_mask(fixedMask, fixed, "fixed mask") if fixedMask is not None else None
            movingMask = read_mask(movingMask, moving, "moving mask") if movingMask is not None else None
            model = load_model(self.network, self.device)
            self._session = LambdaSession(model, fixed, moving, self._affine, fixedMask, movingMask, self.device,
                                          self.cascade)

    def compute(self, lam: float) -> LambdaUpdate:
        """The result at ``lam`` (any thread; nothing in the scene changes).

        Raises :class:`regsuite.errors.PresetError` (one line) for a lambda outside [0, 1].
        """
        value = _checkLambda(lam)
        start = time.perf_counter()
        self.prepare()
        from regsuite.mrml.transforms import plan_result  # noqa: PLC0415

        fixed = self._images[0]
        parts = [self._affine, self._session.displacement(value)]
        planned = plan_result(parts, fixed)
        warped = None
        if self.outputVolumeNode is not None:
            from RegSuiteRegistrationLib.logic import resampleMoving  # noqa: PLC0415

            warped = resampleMoving(fixed, self._images[1], self._composite(parts), self._labelmap)
        return LambdaUpdate(value, parts, planned, warped, time.perf_counter() - start)

    def apply(self, update: LambdaUpdate) -> None:
        """Store ``update`` in the transform node (from parent, in place) and the output volume; main thread.

        Raises :class:`regsuite.errors.InputError` when the transform node left the scene.
        """
        from regsuite.errors import InputError  # noqa: PLC0415
        from regsuite.mrml import sitk_to_volume  # noqa: PLC0415
        from regsuite.mrml.transforms import result_to_node  # noqa: PLC0415

        node = self.transformNode
        scene = node.GetScene()
        if scene is None:
            raise InputError(f"transform node '{node.GetName()}' is no longer in the scene; run the registration again")
        result_to_node(update.parts, scene, self._images[0], node=node, planned=update.planned)
        if update.warped is not None and self.outputVolumeNode.GetScene() is scene:
            sitk_to_volume(update.warped, scene, self.outputVolumeNode.GetName(), node=self.outputVolumeNode)
        self.lam = update.lam
        if self.outputs is not None:  # checkerboard and summary follow
            self.outputs.transform = self._composite(update.parts)
            self.outputs.summary["lambda"] = update.lam

    def update(self, lam: float) -> LambdaUpdate:
        """:meth:`compute` then :meth:`apply`, here (blocks)."""
        update = self.compute(lam)
        self.apply(update)
        return update

    @staticmethod
    def _composite(parts: list[Any]) -> Any:
        import SimpleITK as sitk  # noqa: PLC0415

        return sitk.CompositeTransform(parts)


class LambdaJob:
    """Runs :meth:`LambdaUpdater.compute` in a Python thread; :meth:`poll` applies results on the main thread.

    :meth:`request` keeps only the latest value while a computation runs (a dragged slider asks
    for many), so at most one value waits. :meth:`prepare` warms the session up in the thread
    (network loaded, pair on its grid) before the first request.
    """

    def __init__(self, updater: LambdaUpdater) -> None:
        self.updater = updater
        self.pending: float | None = None
        self._thread: threading.Thread | None = None
        self._box: dict[str, Any] = {}

    @property
    def busy(self) -> bool:
        """True while a computation runs or a value waits for one."""
        return self._thread is not None or self.pending is not None

    def prepare(self) -> None:
        """Build the session in the thread, if nothing runs yet."""
        if self._thread is None and not self.updater.prepared:
            self._start(self.updater.prepare)

    def request(self, lam: float) -> None:
        """Ask for ``lam``: computed now, or after the computation that runs (replacing any older wish)."""
        self.pending = float(lam)
        if self._thread is None:
            self._startPending()

    def poll(self) -> tuple[LambdaUpdate | None, str | None]:
        """Main thread: ``(update applied, error)`` of a computation that ended since the last call
        (``(None, None)`` when none did); starts the waiting value, if any."""
        thread = self._thread
        if thread is None or thread.is_alive():
            return None, None
        self._thread, box = None, self._box
        update, error = box.get("result"), box.get("error")
        message = None
        if error is not None:
            message = str(error) or type(error).__name__
        elif isinstance(update, LambdaUpdate):
            try:
                self.updater.apply(update)
            except Exception as problem:  # noqa: BLE001 - reported as one line
                update, message = None, str(problem) or type(problem).__name__
        else:
            update = None  # the warm-up ended
        if self.pending is not None:
            self._startPending()
        return update, message

    def wait(self, timeout: float = 120.0) -> None:
        """Block until the thread that runs ends (tests, console)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self, timeout: float = 0.0) -> bool:
        """Drop the waiting value and wait up to ``timeout`` s for the running computation (its
        result is never applied); True when no thread runs any more. A thread still inside PyTorch
        when the interpreter exits aborts the process, so an application closing waits here."""
        self.pending = None
        thread = self._thread
        if thread is not None and timeout > 0:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def _startPending(self) -> None:
        lam, self.pending = self.pending, None
        self._start(lambda: self.updater.compute(lam))

    def _start(self, work: Callable[[], Any]) -> None:
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["result"] = work()
            except Exception as error:  # noqa: BLE001 - handed to poll() on the main thread
                box["error"] = error

        self._box = box
        self._thread = threading.Thread(target=run, name="RegSuite lambda", daemon=True)
        self._thread.start()
