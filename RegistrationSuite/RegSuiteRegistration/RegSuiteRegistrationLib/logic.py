"""Logic of the Registration Suite module: volume nodes in, a registered transform node out.

One entry point, :meth:`RegSuiteRegistrationLogic.process`, works the same from the panel, the
Python console and batch mode. The registration itself runs in a background process
(:mod:`regsuite.jobs`); this process only exports the inputs, polls progress and, on the main
thread, turns the result into MRML nodes. Nothing in the scene changes until the job succeeds, so
a cancelled or failed run leaves the scene as it was, and input nodes are never modified (the
moving volume is only placed under the new transform when no output volume is asked for).

Example (Slicer's Python console)::

    import RegSuiteRegistrationLib.logic as rl
    logic = rl.RegSuiteRegistrationLogic()
    fixed, moving = getNode("MRHead"), getNode("MRBrainTumor1")
    outputs = logic.process(fixed, moving, preset="affine", progress=print)
    print(outputs.summaryText())          # time, metric before/after
    outputs.transformNode                 # vtkMRMLLinearTransformNode, stored from parent

    job = logic.process(fixed, moving, preset="deformable", waitForCompletion=False)
    while job.poll():                     # call from a QTimer in a GUI
        slicer.app.processEvents()
    job.outputs.transformNode             # vtkMRMLGridTransformNode

    outputs = logic.process(fixed, moving, preset="brain-mri-hypermorph", hyperLambda=0.3)
    logic.updateLambda(outputs.transformNode, 0.6)   # same node, recomputed in this process

Learned presets (``brain-mri-voxelmorph``, ``brain-mri-fast``, ``brain-mri-hypermorph``) run like
any other; the engine's warnings (e.g. inputs unlike a model's training images) go to ``log`` and
into the summary. After a HyperMorph run, :meth:`RegSuiteRegistrationLogic.updateLambda` (or the
:class:`~RegSuiteRegistrationLib.lambdas.LambdaUpdater` of :meth:`lambdaUpdater`, whose heavy part
may run in a thread) changes the result's lambda in place.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

try:  # the real base class inside Slicer (tests supply a thin stand-in)
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic
except ImportError:  # pragma: no cover - plain Python without Slicer
    ScriptedLoadableModuleLogic = object  # type: ignore[assignment,misc]

from RegSuiteRegistrationLib.stagetable import LEARNED_STAGES, presetStagesToRows, rowsToPresetStages  # noqa: E402,F401

ProgressCallback = Callable[[dict[str, Any]], None]
LogCallback = Callable[[str], None]

#: Environment variable that overrides where the user's own presets are kept.
USER_PRESETS_ENV = "REGSUITE_USER_PRESETS"
_POLL_SECONDS = 0.2


def _errors() -> Any:
    from regsuite import errors  # noqa: PLC0415  (lazy: keep module load light)

    return errors


def _name(node: Any) -> str:
    return f"'{node.GetName()}'"


@dataclass
class RegistrationOutputs:
    """What a finished registration produced (nodes are in the scene)."""

    transformNode: Any
    outputVolumeNode: Any
    summary: dict[str, Any]
    transform: Any  # SimpleITK transform, LPS, fixed point -> moving point
    checkerboardNode: Any = None
    _fixed_image: Any = field(default=None, repr=False)
    _moving_image: Any = field(default=None, repr=False)
    #: HyperMorph results: recomputes the result at another lambda in place (see lambdas.py)
    lambdaUpdater: Any = field(default=None, repr=False)

    def summaryText(self) -> str:
        """A few lines for the panel: time, device, result kind, lambda, metric before and after, warnings."""
        s = self.summary
        lines = [f"Registered in {s['seconds']:.1f} s on {s['device']} with preset '{s['preset']}' "
                 f"-> {s['kind']} transform '{self.transformNode.GetName()}'"]
        if s.get("lambda") is not None:
            lines.append(f"lambda {s['lambda']:.2f} (change it without running again)")
        for stage in s.get("stages", []):
            lines.append(f"{stage['model']} ({stage['metric']}): metric {stage['metric_before']:.4g} -> "
                         f"{stage['metric_after']:.4g} in {stage['seconds']:.1f} s")
        lines.extend(f"Warning: {warning}" for warning in s.get("warnings", []))
        return "\n".join(lines)


@dataclass
class _Prepared:
    """Validated inputs exported to files for the worker."""

    fixed_image: Any
    moving_image: Any
    request: Any
    workdir: str
    place_moving_under_result: bool
    moving_is_labelmap: bool
    fixed_mask: Any = None
    moving_mask: Any = None


class RegistrationJob:
    """A registration running in the background; :meth:`poll` it on the main thread."""

    def __init__(self, logic: "RegSuiteRegistrationLogic", prepared: _Prepared, nodes: dict[str, Any],
                 progress: ProgressCallback | None, log: LogCallback | None, showResult: bool,
                 background: bool) -> None:
        self.logic, self._prepared, self._nodes = logic, prepared, nodes
        self._progress, self._log, self._show = progress, log, showResult
        self.state = "running"
        self.error: str | None = None
        self.error_type: str = "RegistrationFailed"
        self.outputs: RegistrationOutputs | None = None
        self._start = time.monotonic()
        self._process: Any = None
        self._result: Any = None
        if background:
            from regsuite.jobs import BackgroundRegistration  # noqa: PLC0415

            self._process = BackgroundRegistration(prepared.request)
            self._process.start()
            self._say(f"Started the registration in a background process (work folder {prepared.workdir})")
        else:
            self._run_here()

    # ---------------------------------------------------------------- public
    @property
    def elapsed(self) -> float:
        """Seconds since the job started."""
        return time.monotonic() - self._start

    def poll(self) -> bool:
        """Deliver new progress events; finish the job when the process ended. True while running."""
        if self.state != "running":
            return False
        if self._process is None:  # ran in this process already
            self._finish()
            return False
        for event in self._process.poll():
            self._deliver(event)
        if self._process.state in ("pending", "running"):
            return True
        if self._process.state == "completed":
            self._result = self._process.result
            self._finish()
        elif self._process.state == "cancelled":
            self._end("cancelled", "registration cancelled", "RegistrationCancelled")
        else:
            self._end("failed", self._process.error or "registration failed", self._error_type_of(self._process))
        return False

    def cancel(self) -> None:
        """Stop the job promptly; the scene is left as it was."""
        if self.state != "running":
            return
        if self._process is not None:
            self._process.cancel()
        self._end("cancelled", "registration cancelled", "RegistrationCancelled")

    def wait(self) -> RegistrationOutputs:
        """Block until the job ends; raise the job's error (same one-line text) if it did not succeed."""
        while self.poll():
            time.sleep(_POLL_SECONDS)
        if self.state != "completed" or self.outputs is None:
            errors = _errors()
            raise getattr(errors, self.error_type, errors.RegistrationFailed)(self.error or self.state)
        return self.outputs

    # ---------------------------------------------------------------- internals
    def _say(self, line: str) -> None:
        if self._log is not None:
            self._log(line)

    def _deliver(self, event: dict[str, Any]) -> None:
        if event.get("kind") == "log":
            self._say(str(event.get("message", "")))
        elif self._progress is not None:
            self._progress(event)

    @staticmethod
    def _error_type_of(process: Any) -> str:
        kind = getattr(process, "error_type", None)
        return kind if kind in ("InputError", "PresetError", "TransformFileError", "RegistrationFailed",
                                "RegistrationCancelled") else "RegistrationFailed"

    def _run_here(self) -> None:
        from regsuite.jobs import run_in_process  # noqa: PLC0415

        errors = _errors()
        try:
            self._result = run_in_process(self._prepared.request, progress=self._deliver)
        except errors.RegSuiteError as error:
            self._end("failed", str(error), type(error).__name__)

    def _end(self, state: str, message: str | None, error_type: str = "RegistrationFailed") -> None:
        self.state, self.error, self.error_type = state, message, error_type
        if message and state != "completed":
            self._say(("Cancelled: " if state == "cancelled" else "Failed: ") + message)
        shutil.rmtree(self._prepared.workdir, ignore_errors=True)

    def _finish(self) -> None:
        errors = _errors()
        try:
            self.outputs = self.logic._createOutputs(self._prepared, self._nodes, self._result, self._show)
        except errors.RegSuiteError as error:
            self._end("failed", str(error), type(error).__name__)
            return
        self._end("completed", None)
        for warning in self.outputs.summary.get("warnings", []):  # the engine's, e.g. unusual intensities
            self._say(f"Warning: {warning}")
        self._say(self.outputs.summaryText())


class RegSuiteRegistrationLogic(ScriptedLoadableModuleLogic):
    """Registers a moving volume node to a fixed one with the engine's presets.

    Works without the GUI: every method takes nodes and returns nodes or plain values.
    """

    def __init__(self) -> None:
        if ScriptedLoadableModuleLogic is not object:
            ScriptedLoadableModuleLogic.__init__(self)
        self._lambdaUpdaters: dict[str, Any] = {}  # transform node ID -> LambdaUpdater of its HyperMorph result

    # ---------------------------------------------------------------- presets
    def userPresetDirectory(self) -> str:
        """Where the user's own presets are saved (created on demand)."""
        folder = os.environ.get(USER_PRESETS_ENV)
        if not folder:
            import slicer  # noqa: PLC0415

            app = getattr(slicer, "app", None)
            base = (os.path.dirname(app.slicerUserSettingsFilePath) if app is not None
                    else os.path.join(os.path.expanduser("~"), ".regsuite"))
            folder = os.path.join(base, "RegistrationSuite", "presets")
        return folder

    def presetNames(self) -> list[str]:
        """The engine's presets, then the user's own (file names without ``.json``)."""
        from regsuite.engine.config import list_presets  # noqa: PLC0415

        names = list_presets()
        folder = Path(self.userPresetDirectory())
        user = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        return names + [name for name in user if name not in names]

    def loadPreset(self, preset: str | dict[str, Any]) -> dict[str, Any]:
        """A preset as a dict (``RegistrationConfig.to_dict()``): a name, a JSON path or a dict.

        Raises :class:`regsuite.errors.PresetError` when it is unknown or does not parse.
        """
        from regsuite.engine.config import list_presets, load_preset  # noqa: PLC0415

        if isinstance(preset, str) and preset not in list_presets():
            candidate = Path(self.userPresetDirectory()) / f"{preset}.json"
            if candidate.is_file():
                preset = str(candidate)
        return load_preset(preset).to_dict()

    def presetWithLambda(self, preset: str | dict[str, Any], lam: float) -> dict[str, Any]:
        """``preset`` (as :meth:`loadPreset` takes it) with its HyperMorph lambda set to ``lam``.

        Raises :class:`regsuite.errors.PresetError` (one line) for a lambda outside [0, 1] or a
        preset without a HyperMorph network stage.
        """
        from regsuite.engine.config import load_preset, with_lambda  # noqa: PLC0415

        return with_lambda(load_preset(self.loadPreset(preset)), lam, "lambda").to_dict()

    def isHyperMorphPreset(self, preset: str | dict[str, Any]) -> bool:
        """True when the preset's last stage is a HyperMorph network stage (it has a lambda)."""
        from RegSuiteRegistrationLib.lambdas import hyperStage  # noqa: PLC0415

        return hyperStage(preset if isinstance(preset, dict) else self.loadPreset(preset)) is not None

    def savePreset(self, preset: dict[str, Any], name: str) -> str:
        """Save ``preset`` as the user's preset ``name``; returns the file path."""
        from regsuite.engine.config import list_presets, load_preset  # noqa: PLC0415

        errors = _errors()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name or ""):
            raise errors.PresetError(f"preset name '{name}' is not valid; use letters, digits, '-', '_' or '.'")
        if name in list_presets():
            raise errors.PresetError(f"'{name}' is a built-in preset; save under another name")
        config = load_preset(preset)  # validates
        config.name = name
        folder = Path(self.userPresetDirectory())
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(config.to_json() + "\n")
        os.replace(tmp, path)
        return str(path)

    # ---------------------------------------------------------------- devices
    def cudaAvailable(self) -> bool:
        """True when the installed PyTorch is a CUDA build and an NVIDIA driver is present.

        Cheap: torch is not imported in Slicer's process (the background worker imports it and
        reports a clear error should CUDA still fail to start). Never installs anything.
        """
        return torchCudaBuild() is not None and nvidiaDriverPresent()

    # ---------------------------------------------------------------- validation
    def validateInputs(self, fixedVolume: Any, movingVolume: Any, fixedMask: Any = None, movingMask: Any = None,
                       initialTransform: Any = None, preset: str | dict[str, Any] = "affine",
                       device: str = "auto", outputTransform: Any = None, outputVolume: Any = None,
                       hyperLambda: float | None = None) -> None:
        """Raise :class:`regsuite.errors.InputError` (one line) when the inputs cannot be registered
        (:class:`regsuite.errors.PresetError` for a bad preset or ``hyperLambda``)."""
        self._prepare(fixedVolume, movingVolume, fixedMask, movingMask, initialTransform, preset, device,
                      outputTransform, outputVolume, None, 0, export=False, hyperLambda=hyperLambda)

    def _prepare(self, fixedVolume: Any, movingVolume: Any, fixedMask: Any, movingMask: Any, initialTransform: Any,
                 preset: str | dict[str, Any], device: str, outputTransform: Any, outputVolume: Any,
                 threads: int | None, seed: int, export: bool = True,
                 hyperLambda: float | None = None) -> _Prepared:
        from regsuite.mrml import mask_from_node, volume_to_sitk  # noqa: PLC0415

        errors = _errors()
        if fixedVolume is None:
            raise errors.InputError("no fixed volume is selected")
        if movingVolume is None:
            raise errors.InputError("no moving volume is selected")
        if fixedVolume is movingVolume:
            raise errors.InputError(f"the fixed and moving volumes are the same node {_name(fixedVolume)}; "
                                    "select two different volumes")
        for output, role in ((outputVolume, "output volume"), (outputTransform, "output transform")):
            for source, what in ((fixedVolume, "fixed volume"), (movingVolume, "moving volume"),
                                 (initialTransform, "initial transform"), (fixedMask, "fixed mask"),
                                 (movingMask, "moving mask")):
                if output is not None and output is source:
                    raise errors.InputError(f"the {role} {_name(output)} is also the {what}; "
                                            f"choose another {role} so the input is not overwritten")
        if device not in ("auto", "cpu") and not str(device).startswith("cuda"):
            raise errors.InputError(f"unknown device '{device}'; choose auto, cpu or cuda")
        if str(device).startswith("cuda") and not self.cudaAvailable():
            raise errors.InputError("CUDA (GPU) was chosen but is not available on this computer; choose CPU or auto")
        config = self.loadPreset(preset) if hyperLambda is None else self.presetWithLambda(preset, hyperLambda)
        fixed_image = volume_to_sitk(fixedVolume, "fixed volume")
        # A moving volume already under the output transform (a previous run) is taken as it is on disk.
        parent = movingVolume.GetParentTransformNode()
        under_output = outputTransform is not None and parent is outputTransform
        moving_image = volume_to_sitk(movingVolume, "moving volume", world=not under_output)
        fixed_mask = mask_from_node(fixedMask, fixedVolume, "fixed mask") if fixedMask is not None else None
        moving_mask = mask_from_node(movingMask, movingVolume, "moving mask") if movingMask is not None else None
        initial = None
        if initialTransform is not None:
            from regsuite.mrml.transforms import node_to_sitk_transform  # noqa: PLC0415

            initial = node_to_sitk_transform(initialTransform, fixed_image)
        from regsuite.io.images import check_overlap  # noqa: PLC0415

        if initial is None and not check_overlap(fixed_image, moving_image, None) and config["initialization"] == "none":
            raise errors.InputError(f"fixed volume {_name(fixedVolume)} and moving volume {_name(movingVolume)} do "
                                    "not overlap in physical space; use an initialization or an initial transform")
        if not export:
            return _Prepared(fixed_image, moving_image, None, "", False, False)
        return self._export(fixed_image, moving_image, fixed_mask, moving_mask, initial, config, device, threads,
                            seed, place_moving=outputVolume is None and (parent is None or under_output),
                            labelmap=movingVolume.IsA("vtkMRMLLabelMapVolumeNode"))

    @staticmethod
    def _export(fixed_image: Any, moving_image: Any, fixed_mask: Any, moving_mask: Any, initial: Any,
                config: dict[str, Any], device: str, threads: int | None, seed: int, place_moving: bool,
                labelmap: bool) -> _Prepared:
        from regsuite.io.images import write_image  # noqa: PLC0415
        from regsuite.io.transforms import write_transform  # noqa: PLC0415
        from regsuite.jobs import RegistrationRequest  # noqa: PLC0415

        workdir = tempfile.mkdtemp(prefix="regsuite-job-")
        paths: dict[str, str | None] = {}
        for key, image in (("fixed", fixed_image), ("moving", moving_image), ("fixed_mask", fixed_mask),
                           ("moving_mask", moving_mask)):
            paths[key] = None
            if image is not None:
                paths[key] = os.path.join(workdir, f"{key}.nrrd")
                write_image(image, paths[key])
        paths["initial"] = None
        if initial is not None:
            paths["initial"] = os.path.join(workdir, "initial.h5")
            write_transform(initial, paths["initial"])
        request = RegistrationRequest(
            fixed=paths["fixed"], moving=paths["moving"], preset=config, output_dir=os.path.join(workdir, "result"),
            fixed_mask=paths["fixed_mask"], moving_mask=paths["moving_mask"], initial_transform=paths["initial"],
            device=device, threads=threads, seed=seed, write_inverse=False)  # the scene only needs the transform
        return _Prepared(fixed_image, moving_image, request, workdir, place_moving, labelmap, fixed_mask, moving_mask)

    # ---------------------------------------------------------------- registration
    def process(self, fixedVolume: Any, movingVolume: Any, preset: str | dict[str, Any] = "affine",
                outputTransform: Any = None, outputVolume: Any = None, fixedMask: Any = None, movingMask: Any = None,
                initialTransform: Any = None, device: str = "auto", threads: int | None = None, seed: int = 0,
                progress: ProgressCallback | None = None, log: LogCallback | None = None,
                waitForCompletion: bool = True, showResult: bool = True,
                background: bool = True, hyperLambda: float | None = None) -> RegistrationOutputs | RegistrationJob:
        """Register ``movingVolume`` to ``fixedVolume``.

        Args:
            fixedVolume, movingVolume: scalar volume nodes (any grids; linear parent transforms count).
            preset: a preset name (engine or user), a JSON path, or a preset dict.
            outputTransform: node to hold the result (created when None); linear results need a
                linear or general node, deformable ones a general, B-spline or grid node.
            outputVolume: optional volume node to receive the moving volume resampled on the fixed grid;
                when None the moving volume is placed under the result transform.
            fixedMask, movingMask: label map volume or segmentation nodes.
            initialTransform: a transform node (from-parent mapping fixed -> moving) to start from.
            device: ``auto``, ``cpu`` or ``cuda``.
            progress: called with each progress event (stage, level, iteration, metric, elapsed).
            log: called with log lines.
            waitForCompletion: block and return :class:`RegistrationOutputs`; otherwise return the
                running :class:`RegistrationJob` (poll it from a timer on the main thread).
            showResult: set up the fusion display when done.
            background: run in a separate process (default); False runs in this process.
            hyperLambda: HyperMorph presets only: the regularization weight lambda in [0, 1] for
                this run (default: the preset's). Change it afterwards with :meth:`updateLambda`.

        Raises :class:`regsuite.errors.InputError` for bad inputs (before anything runs) and, with
        ``waitForCompletion``, the job's error when it fails, diverges or is cancelled.
        """
        if log is not None:
            log(f"Preparing {_name(movingVolume) if movingVolume else '?'} -> "
                f"{_name(fixedVolume) if fixedVolume else '?'} with preset '{preset if isinstance(preset, str) else 'custom'}'")
        prepared = self._prepare(fixedVolume, movingVolume, fixedMask, movingMask, initialTransform, preset, device,
                                 outputTransform, outputVolume, threads, seed, hyperLambda=hyperLambda)
        nodes = {"fixed": fixedVolume, "moving": movingVolume, "outputTransform": outputTransform,
                 "outputVolume": outputVolume}
        job = RegistrationJob(self, prepared, nodes, progress, log, showResult, background)
        return job.wait() if waitForCompletion else job

    def _createOutputs(self, prepared: _Prepared, nodes: dict[str, Any], result: Any,
                       showResult: bool) -> RegistrationOutputs:
        """Main thread only: result files -> transform node (+ resampled volume), display."""
        import SimpleITK as sitk  # noqa: PLC0415

        from regsuite.mrml import sitk_to_volume  # noqa: PLC0415
        from regsuite.mrml.transforms import result_to_node, set_registration_roles  # noqa: PLC0415

        fixed, moving = nodes["fixed"], nodes["moving"]
        scene = fixed.GetScene()
        parts = result.load_parts()  # the composite is built from them: the field is read once
        transform = parts[0] if len(parts) == 1 else sitk.CompositeTransform(parts)
        name = f"{moving.GetName()}_to_{fixed.GetName()}"
        node = result_to_node(parts, scene, prepared.fixed_image, node=nodes["outputTransform"], name=name)
        set_registration_roles(node, fixed, moving)
        output_volume = nodes["outputVolume"]
        if output_volume is not None:
            warped = resampleMoving(prepared.fixed_image, prepared.moving_image, transform, prepared.moving_is_labelmap)
            sitk_to_volume(warped, scene, name, node=output_volume)
        elif prepared.place_moving_under_result:
            moving.SetAndObserveTransformNodeID(node.GetID())
        kinds = getattr(result, "part_kinds", [])
        kind = "linear" if all(k == "linear" for k in kinds) else ("B-spline" if "bspline" in kinds
                                                                   and "field" not in kinds else "displacement field")
        metrics = dict(getattr(result, "metrics", {}) or {})
        summary = {"seconds": float(getattr(result, "elapsed", metrics.get("seconds", 0.0))),
                   "device": metrics.get("device", "cpu"), "preset": prepared.request.preset.get("name", "custom"),
                   "kind": kind, "node_class": node.GetClassName(), "stages": metrics.get("stages", []),
                   "warnings": [str(w) for w in metrics.get("warnings", [])]}
        outputs = RegistrationOutputs(node, output_volume, summary, transform, _fixed_image=prepared.fixed_image,
                                      _moving_image=prepared.moving_image)
        self._keepLambdaUpdater(prepared, outputs, parts, kinds)
        if showResult:
            self.showFusion(fixed, outputs)
        return outputs

    # ---------------------------------------------------------------- HyperMorph lambda
    def _keepLambdaUpdater(self, prepared: _Prepared, outputs: RegistrationOutputs, parts: list[Any],
                           kinds: list[str]) -> None:
        """After a HyperMorph run (affine + field): the updater that changes its lambda in place."""
        from RegSuiteRegistrationLib.lambdas import LambdaUpdater, hyperStage  # noqa: PLC0415

        node = outputs.transformNode
        self._lambdaUpdaters = {key: updater for key, updater in self._lambdaUpdaters.items()  # a new result:
                                if key != node.GetID() and updater.transformNode.GetScene() is not None}  # old ones go
        stage = hyperStage(prepared.request.preset)
        if stage is None or list(kinds) != ["linear", "field"]:
            return
        outputs.summary["lambda"] = float(stage["lambda"])
        outputs.lambdaUpdater = LambdaUpdater(
            node, prepared.fixed_image, prepared.moving_image, parts[0], stage["network"], stage["lambda"],
            prepared.fixed_mask, prepared.moving_mask, outputs.summary["device"], outputs.outputVolumeNode,
            prepared.moving_is_labelmap, outputs, int(stage.get("cascade", 1)))
        self._lambdaUpdaters[node.GetID()] = outputs.lambdaUpdater

    def lambdaUpdater(self, transformNode: Any) -> Any:
        """The :class:`~RegSuiteRegistrationLib.lambdas.LambdaUpdater` of the HyperMorph result this
        Logic stored in ``transformNode``, or None (another kind of result, or the node left the scene)."""
        if transformNode is None:
            return None
        updater = self._lambdaUpdaters.get(transformNode.GetID())
        if updater is not None and (updater.transformNode is not transformNode or transformNode.GetScene() is None):
            self._lambdaUpdaters.pop(transformNode.GetID(), None)
            return None
        return updater

    def updateLambda(self, outputTransformNode: Any, lam: float) -> Any:
        """Recompute the HyperMorph result in ``outputTransformNode`` at ``lam`` and store it there, in place.

        The network stays loaded between calls (the first call loads it, in this process); each
        call is one forward pass plus the field's export. Blocks: a panel runs
        ``lambdaUpdater(node).compute`` in a thread instead (see ``lambdas.LambdaJob``). Returns the
        :class:`~RegSuiteRegistrationLib.lambdas.LambdaUpdate`.

        Raises :class:`regsuite.errors.PresetError` for a lambda outside [0, 1] and
        :class:`regsuite.errors.InputError` when the node holds no HyperMorph result of this Logic;
        the node is left untouched then.
        """
        from RegSuiteRegistrationLib.lambdas import _checkLambda  # noqa: PLC0415

        value = _checkLambda(lam)
        updater = self.lambdaUpdater(outputTransformNode)
        if updater is None:
            name = _name(outputTransformNode) if outputTransformNode is not None else "None"
            raise _errors().InputError(f"transform node {name} holds no HyperMorph result of this session; "
                                       "run a preset such as brain-mri-hypermorph first")
        return updater.update(value)

    # ---------------------------------------------------------------- display
    def showFusion(self, fixedVolume: Any, outputs: RegistrationOutputs, colormap: str | None = None,
                   opacity: float = 0.5) -> None:
        """Fixed volume in the background, the result in the foreground at ``opacity``, views linked."""
        from regsuite.mrml.display import show_fusion  # noqa: PLC0415

        foreground = self.registeredVolume(outputs)
        show_fusion(fixedVolume.GetScene(), fixedVolume, foreground, opacity=opacity, colormap=colormap)

    def registeredVolume(self, outputs: RegistrationOutputs) -> Any:
        """The registered moving volume of ``outputs``: the output volume (resampled on the fixed
        grid), else the moving volume, which the result transform moves onto the fixed one."""
        return outputs.outputVolumeNode if outputs.outputVolumeNode is not None else self._movingNodeOf(outputs)

    def fusionPresetDescriptions(self) -> dict[str, str]:
        """The built-in fusion display presets ("Default", "PET on CT", "PET on MR", "CT on MR",
        "MR on CT"), in that order, each with a line saying what it shows."""
        from regsuite.mrml.fusion_presets import FUSION_PRESETS  # noqa: PLC0415

        return {name: preset.description for name, preset in FUSION_PRESETS.items()}

    def applyFusionPreset(self, fixedVolume: Any, warpedVolume: Any, presetName: str,
                          colormap: str | None = None) -> list[Any]:
        """Fixed volume in the background, ``warpedVolume`` (the registered moving one, see
        :meth:`registeredVolume`) over it as display preset ``presetName`` says, views linked.

        Sets the colour maps, window/levels, the foreground's lower threshold (transparent below)
        and every slice view's layers and foreground opacity; ``colormap`` (a colour node name,
        e.g. "Rainbow") replaces the preset's foreground colour map. Bad inputs raise a one-line
        :class:`regsuite.errors.InputError` and change nothing. Returns the slice composite nodes set.
        """
        from regsuite.mrml.fusion_presets import apply_fusion_preset  # noqa: PLC0415

        if fixedVolume is None:
            raise _errors().InputError("no fixed volume is selected")
        if fixedVolume.GetScene() is None:
            raise _errors().InputError(f"fixed volume {_name(fixedVolume)} is no longer in the scene")
        return apply_fusion_preset(fixedVolume.GetScene(), fixedVolume, warpedVolume, presetName, colormap=colormap)

    def showCheckerboard(self, fixedVolume: Any, outputs: RegistrationOutputs, squares: int = 8) -> Any:
        """A checkerboard of the fixed volume and the registered moving volume, shown in the views."""
        import SimpleITK as sitk  # noqa: PLC0415

        from regsuite.mrml import sitk_to_volume  # noqa: PLC0415
        from regsuite.mrml.display import checkerboard_image, show_fusion  # noqa: PLC0415

        fixed_image, moving_image = outputs._fixed_image, outputs._moving_image
        warped = sitk.Resample(moving_image, fixed_image, outputs.transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        board = checkerboard_image(sitk.Cast(fixed_image, sitk.sitkFloat32), warped, squares)
        scene = fixedVolume.GetScene()
        outputs.checkerboardNode = sitk_to_volume(board, scene, f"{fixedVolume.GetName()}_checkerboard",
                                                  node=outputs.checkerboardNode)
        show_fusion(scene, outputs.checkerboardNode, None, opacity=0.0)
        return outputs.checkerboardNode

    @staticmethod
    def _movingNodeOf(outputs: RegistrationOutputs) -> Any:
        node = outputs.transformNode
        return node.GetNodeReference(node.GetMovingNodeReferenceRole())


def resampleMoving(fixedImage: Any, movingImage: Any, transform: Any, labelmap: bool) -> Any:
    """The moving image resampled onto the fixed grid through ``transform`` (fixed -> moving, LPS),
    in the moving image's pixel type: linear (rounded for integer types) or nearest for a label map."""
    import SimpleITK as sitk  # noqa: PLC0415

    from regsuite.io.images import cast_like  # noqa: PLC0415

    interpolator = sitk.sitkNearestNeighbor if labelmap else sitk.sitkLinear
    background = 0.0 if labelmap else float(sitk.GetArrayViewFromImage(movingImage).min())
    # Linear values are rounded to the volume's type (ITK's own cast would truncate them).
    return cast_like(sitk.Resample(movingImage, fixedImage, transform, interpolator, background, sitk.sitkFloat64),
                     movingImage.GetPixelID())


def torchCudaBuild() -> str | None:
    """The CUDA version the installed PyTorch was built for (None: no torch, or a CPU build).

    Read from ``torch/version.py`` without importing torch.
    """
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return None
    try:
        text = Path(spec.origin).with_name("version.py").read_text()
    except OSError:
        return None
    match = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    return match.group(1) if match else None


def nvidiaDriverPresent() -> bool:
    """True when an NVIDIA driver is installed (Linux: /proc/driver/nvidia; else nvidia-smi on PATH)."""
    if os.path.exists("/proc/driver/nvidia/version"):
        return True
    return shutil.which("nvidia-smi") is not None
