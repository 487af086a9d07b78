"""Logic of the Registration Population module: workflows of many registrations, run in the background.

Three entry points, each taking nodes and/or paths plus ``progress`` and ``log`` callbacks:

* :meth:`RegSuitePopulationLogic.segment` - multi-atlas segmentation of a volume into a
  segmentation node (``regsuite segment``);
* :meth:`RegSuitePopulationLogic.buildTemplate` - an unbiased template from a set of images,
  each finished iteration shown in a "Template" volume node (``regsuite template``);
* :meth:`RegSuitePopulationLogic.measureChange` - longitudinal volume change between two scans:
  a table, a bar chart and the Jacobian map over the baseline (``regsuite change``).

The registrations never run in Slicer's process: the inputs from the scene are exported to a
temporary folder, and the ``regsuite`` command line runs as a child process
(:mod:`.process`). :meth:`RegSuitePopulationLogic.poll` (from a timer on the main thread) reads
its progress lines and updates the scene; :meth:`RegSuitePopulationLogic.cancel` stops it. A run
that is cancelled or fails leaves the scene as it was: the nodes it added are removed again and
an output folder it created is deleted. Bad input raises :class:`regsuite.errors.InputError` with
a one-line message before anything starts; a failing command's own one-line error becomes
``job.error``.

Atlases: ``atlases`` is a list of ``(image, labels)`` pairs, each a scene node (a scalar volume;
a segmentation or label map volume) or a file path, and/or ``atlasList`` is a path: a CSV file
with the columns ``image,labels[,name]`` (paths relative to the CSV), or a folder that holds such
an ``atlases.csv`` or image/label pairs named ``<name>.<ext>`` and ``<name>_labels.<ext>``
(``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``...). Segments of scene atlases are matched by name:
a name found in the colour table gets that table's value, others get the next free value.

Example (Slicer's Python console)::

    from RegSuitePopulationLib import RegSuitePopulationLogic
    logic = RegSuitePopulationLogic()
    result = logic.segment(getNode("subject"), atlasList="/data/atlases/atlases.csv", fusion="joint",
                           colorNode=getNode("GenericAnatomyColors"), log=print)
    result["segmentation"]                       # vtkMRMLSegmentationNode

    job = logic.buildTemplate("/data/subjects", iterations=4, outputDir="/data/template",
                              waitForCompletion=False, progress=print)
    while logic.isRunning:                       # a panel polls from a qt.QTimer instead
        logic.poll(); slicer.app.processEvents()
    job.result["template"]                       # the "Template" volume node

    result = logic.measureChange(getNode("m00"), getNode("m12"), segmentation=getNode("aseg"))
    result["table"], result["chart"], result["jacobian"]
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

try:  # the real base class inside Slicer (tests supply a thin stand-in)
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic
except ImportError:  # pragma: no cover - plain Python without Slicer
    ScriptedLoadableModuleLogic = object  # type: ignore[assignment,misc]

from .process import CommandProcess

ProgressCallback = Callable[[dict[str, Any]], None]
LogCallback = Callable[[str], None]

__all__ = ["RegSuitePopulationLogic", "PopulationJob", "FUSION_METHODS", "WORKFLOWS", "IMAGE_SUFFIXES"]

WORKFLOWS = ("segment", "template", "change")
FUSION_METHODS = ("majority", "staple", "weighted", "joint")
#: Image files a folder of images or atlases may hold.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
LABELS_SUFFIX = "_labels"
ATLAS_LIST_NAME = "atlases.csv"
TEMPLATE_NAME = "Template"
#: The change table's columns, in this order (others the command adds follow them).
CHANGE_COLUMNS = ("label", "name", "baseline_ml", "followup_ml", "change_ml", "change_percent")
JACOBIAN_COLORS = "RegSuite Volume change"
_POLL_SECONDS = 0.2


def _errors() -> Any:
    from regsuite import errors  # noqa: PLC0415  (lazy: loading the module stays light)

    return errors


def _input_error(message: str) -> Exception:
    return _errors().InputError(message)


def _name(node: Any) -> str:
    return f"'{node.GetName()}'"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _safe_name(text: str) -> str:
    """``text`` usable as a file name stem (letters, digits, ``-``, ``_``, ``.``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("._") or "volume"


def _unique(stem: str, taken: set[str]) -> str:
    name, number = stem, 2
    while name.lower() in taken:
        name, number = f"{stem}_{number}", number + 1
    taken.add(name.lower())
    return name


def _image_stem(path: Path) -> str | None:
    """The name of an image file without its image suffix (None for other files)."""
    lower = path.name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return path.name[: -len(suffix)]
    return None


def _is_node(value: Any) -> bool:
    return hasattr(value, "IsA") and hasattr(value, "GetID")


def _require_volume(node: Any, role: str) -> Any:
    if node is None:
        raise _input_error(f"no {role} is selected")
    if not _is_node(node) or not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
        what = node.GetClassName() if hasattr(node, "GetClassName") else type(node).__name__
        raise _input_error(f"{role} {node.GetName() if hasattr(node, 'GetName') else node!r} is a {what}, "
                           "not a scalar volume")
    if node.GetImageData() is None:
        raise _input_error(f"{role} {_name(node)} has no image data")
    return node


def _require_file(path: Any, role: str) -> str:
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not text:
        raise _input_error(f"{role} {path!r} is neither a scene node nor a file path")
    if not os.path.isfile(text):
        raise _input_error(f"{role} '{text}' does not exist")
    return os.path.abspath(text)


def _node_ids(scene: Any) -> set[str]:
    return {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}


@contextlib.contextmanager
def _scratch(scene: Any) -> Iterator[None]:
    """Remove again every node added to ``scene`` inside the block (temporary exports)."""
    before = _node_ids(scene)
    try:
        yield
    finally:
        added = [scene.GetNthNode(index) for index in range(scene.GetNumberOfNodes())]
        for node in reversed([node for node in added if node.GetID() not in before]):
            scene.RemoveNode(node)


def _with_companions(node: Any) -> list[Any]:
    """``node`` with its display and storage nodes (what removing it must also remove)."""
    nodes = [node]
    for count, nth in (("GetNumberOfDisplayNodes", "GetNthDisplayNode"),
                       ("GetNumberOfStorageNodes", "GetNthStorageNode")):
        if hasattr(node, count):
            nodes += [getattr(node, nth)(index) for index in range(getattr(node, count)())]
    return [item for item in nodes if item is not None]


# ---------------------------------------------------------------------------- jobs
class PopulationJob:
    """One workflow run of the ``regsuite`` command in the background.

    ``state`` is ``"running"``, ``"completed"`` (``result`` holds the nodes), ``"failed"``
    (``error``: one line) or ``"cancelled"``. :meth:`poll` (main thread) returns the new records
    (dicts with ``kind``: ``task``, ``iteration``, ``log``, ``error`` or ``state``); task and
    iteration records also go to ``progress``, every line of text to ``log``.
    """

    workflow = ""

    def __init__(self, scene: Any, arguments: list[str], folder: str, outputDir: str | None, ownsOutput: bool,
                 progress: ProgressCallback | None, log: LogCallback | None) -> None:
        self.scene = scene
        self.arguments = [self.workflow, *arguments]
        self.folder = folder  # temporary: exported inputs and the command's output; always removed
        self.outputDir = outputDir
        self.state = "running"
        self.error: str | None = None
        self.errorType = "RegSuiteError"
        self.result: dict[str, Any] | None = None
        self.fraction = 0.0
        self._ownsOutput = ownsOutput
        self._progress, self._log = progress, log
        self._created: list[Any] = []  # nodes this run added (removed again unless it completes)
        self._views: list[tuple[Any, str | None, str | None, float]] | None = None
        self._start = time.monotonic()
        self._process = CommandProcess(self.arguments, folder)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(state={self.state!r}, outputDir={self.outputDir!r})"

    # ---------------------------------------------------------------- public
    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start

    @property
    def isRunning(self) -> bool:
        return self.state == "running"

    @property
    def commandLine(self) -> str:
        return "regsuite " + " ".join(_quote(argument) for argument in self.arguments)

    def start(self) -> "PopulationJob":
        errors = _errors()
        try:
            self._process.start()
        except (OSError, errors.RegSuiteError) as error:
            self._end("failed", f"the regsuite command cannot be started ({_one_line(error)})")
            return self
        self._say(f"Started in the background: {self.commandLine}")
        return self

    def poll(self) -> list[dict[str, Any]]:
        """New records since the last call; finishes the job (scene updated) once the command ended."""
        if self.state != "running":
            return []
        records = [self._deliver(record) for record in self._process.poll()]
        ended = self._process.returncode is not None
        if ended:
            records += [self._deliver(record) for record in self._process.poll()]
        try:
            records += self._update()
            if not ended:
                return records
            if self._process.returncode != 0:
                self.errorType = "InputError" if self._process.returncode == 2 else "RegSuiteError"
                self._end("failed", self._process.errorMessage())
            else:
                self.result = self._finish()
                self.fraction = 1.0
                self._end("completed")
        except Exception as error:  # noqa: BLE001 - reading the outputs failed: report it, leave the scene
            errors = _errors()
            self.errorType = type(error).__name__ if isinstance(error, errors.RegSuiteError) else "RegSuiteError"
            if not isinstance(error, errors.RegSuiteError):
                import logging  # noqa: PLC0415

                logging.error("Registration Population: unexpected error", exc_info=error)
            self._process.cancel(grace=2.0)
            self._end("failed", f"the {self.workflow} results cannot be loaded ({_one_line(error)})")
        records.append({"kind": "state", "state": self.state, "message": self.error or ""})
        return records

    def cancel(self) -> None:
        """Stop the command (and what it started); the scene and the folders are left as they were."""
        if self.state != "running":
            return
        self._process.cancel()
        self._end("cancelled", "cancelled; the scene is as it was")

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Poll until the job ends; return ``result`` or raise its one-line error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.state == "running":
            self.poll()
            if self.state != "running":
                break
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                break
            time.sleep(_POLL_SECONDS)
        if self.state != "completed" or self.result is None:
            errors = _errors()
            kind = "RegistrationCancelled" if self.state == "cancelled" else self.errorType
            raise getattr(errors, kind, errors.RegSuiteError)(self.error or self.state)
        return self.result

    # ---------------------------------------------------------------- for the workflows
    def _update(self) -> list[dict[str, Any]]:
        """Scene updates while running (the template's iterations); returns their records."""
        return []

    def _finish(self) -> dict[str, Any]:
        raise NotImplementedError

    def _taskFraction(self, record: dict[str, Any]) -> float | None:
        return 0.95 * record["done"] / max(record["total"], 1)

    def _track(self, node: Any) -> Any:
        """Remember ``node`` (and its display/storage nodes) as added by this run."""
        for item in _with_companions(node):
            if all(item is not other for other in self._created):
                self._created.append(item)
        return node

    def _showInViews(self, background: Any, foreground: Any = None, opacity: float = 0.5) -> None:
        """Show volumes in every slice view (the views' layers are put back if the run does not complete)."""
        from regsuite.mrml.display import show_fusion  # noqa: PLC0415

        if self._views is None:
            composites = [self.scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
                          for index in range(self.scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]
            self._views = [(c, c.GetBackgroundVolumeID(), c.GetForegroundVolumeID(), c.GetForegroundOpacity())
                           for c in composites]
        show_fusion(self.scene, background, foreground, opacity)

    def _say(self, line: str) -> None:
        if self._log is not None:
            self._log(line)

    def _report(self, record: dict[str, Any]) -> dict[str, Any]:
        if self._progress is not None:
            self._progress(record)
        return record

    def _deliver(self, record: dict[str, Any]) -> dict[str, Any]:
        if record["kind"] == "task":
            fraction = self._taskFraction(record)
            if fraction is not None:
                self.fraction = max(self.fraction, min(fraction, 1.0))
            record["fraction"] = self.fraction
            detail = f" ({record['detail']})" if record["detail"] else ""
            record["text"] = f"{record['key']} {record['status']}{detail} [{record['done']}/{record['total']}]"
            self._say(f"[{record['done']}/{record['total']}] {record['key']} {record['status']}{detail}")
            return self._report(record)
        if record["kind"] == "log":  # the command's error line is said once, as "Failed: ..." at the end
            self._say(record["message"])
        return record

    def _end(self, state: str, message: str | None = None) -> None:
        self.state, self.error = state, message
        if state != "completed":
            self._undo()
        if state == "cancelled":
            self._say("Cancelled; the scene is as it was.")
        elif message:
            self._say(f"Failed: {message}")
        else:
            self._say(f"Done in {self.elapsed:.1f} s.")
        shutil.rmtree(self.folder, ignore_errors=True)

    def _undo(self) -> None:
        """Put the scene and the folders back as they were before the run."""
        for composite, background, foreground, opacity in self._views or []:
            previous = composite.StartModify()
            composite.SetBackgroundVolumeID(background)
            composite.SetForegroundVolumeID(foreground)
            composite.SetForegroundOpacity(opacity)
            composite.EndModify(previous)
        self._views = None
        for node in reversed(self._created):
            if node.GetScene() is not None:
                self.scene.RemoveNode(node)
        self._created = []
        if self._ownsOutput and self.outputDir:
            shutil.rmtree(self.outputDir, ignore_errors=True)


def _quote(argument: str) -> str:
    return argument if re.fullmatch(r"[A-Za-z0-9_./:=+-]+", argument) else json.dumps(argument)


def _phase_fraction(phases: Sequence[tuple[str, float]], record: dict[str, Any]) -> float | None:
    """Overall fraction of a task record whose key starts with one of ``phases`` (prefix, weight)."""
    start = 0.0
    for prefix, weight in phases:
        if record["key"].startswith(prefix):
            return start + weight * record["done"] / max(record["total"], 1)
        start += weight
    return None


class SegmentJob(PopulationJob):
    """``regsuite segment``: the fused label map becomes a segmentation node."""

    workflow = "segment"

    def __init__(self, *args: Any, labelsPath: str, keepLabels: bool, target: Any, segmentation: Any,
                 colorNode: Any, names: dict[int, tuple[str, tuple[float, float, float] | None]], select: bool,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._labelsPath, self._keepLabels = labelsPath, keepLabels
        self._target, self._segmentation = target, segmentation
        self._colorNode, self._names = colorNode, names
        self._phases = ([("affine-", 0.25), ("register-", 0.65)] if select else [("register-", 0.9)]) + [("fuse", 0.1)]

    def _taskFraction(self, record: dict[str, Any]) -> float | None:
        return _phase_fraction(self._phases, record)

    def _finish(self) -> dict[str, Any]:
        from regsuite.io.images import read_label_image  # noqa: PLC0415

        labels = read_label_image(self._labelsPath, "fused labels")
        node = self._segmentation
        if node is None:
            node = self._track(self.scene.AddNewNodeByClass(
                "vtkMRMLSegmentationNode", self.scene.GenerateUniqueName(f"{self._target.GetName()} segmentation")))
        names = importLabels(labels, node, self._colorNode, self._names, self._target)
        if self._segmentation is None:
            self._track(node)  # again: with the display node the import added
        if not names:
            self._say("Warning: the fused segmentation is empty (no atlas label reached the target)")
        self._say(f"Segmentation {_name(node)}: {len(names)} segments ({', '.join(names)})")
        return {"segmentation": node, "segments": names, "labels": self._labelsPath if self._keepLabels else None}


class TemplateJob(PopulationJob):
    """``regsuite template``: each finished iteration is loaded into the "Template" volume node."""

    workflow = "template"

    def __init__(self, *args: Any, iterations: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.iterations = iterations
        self.node: Any = None
        self.shown: list[dict[str, Any]] = []  # the log.json records of the iterations shown

    def _taskFraction(self, record: dict[str, Any]) -> float | None:
        share = 0.95 / (self.iterations + 1)
        key = record["key"]
        if key.startswith("finalize-"):
            return 0.95 + 0.05 * record["done"] / max(record["total"], 1)
        head, _, rest = key.partition("-")
        if not head.isdigit():
            return None
        within = 1.0 if rest == "average" else 0.9 * record["done"] / max(record["total"], 1)
        return share * (int(head) + within)

    def _records(self) -> list[dict[str, Any]]:
        """The per-iteration records of ``log.json`` so far (none while it is missing or being replaced)."""
        try:
            records = json.loads(Path(self.outputDir, "log.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []

    def _update(self) -> list[dict[str, Any]]:
        records = []
        done = {record.get("iteration") for record in self.shown}
        for entry in self._records():
            k = entry.get("iteration")
            path = Path(self.outputDir, "iterations", str(k), "template.nii.gz")
            if not isinstance(k, int) or k in done or not path.is_file():
                continue
            self._load(path)
            self.shown.append(entry)
            done.add(k)
            records.append(self._report(self._iterationRecord(entry)))
        return records

    def _iterationRecord(self, entry: dict[str, Any]) -> dict[str, Any]:
        def number(key: str) -> float:
            value = entry.get(key)
            return float(value) if isinstance(value, (int, float)) else math.nan

        k = entry["iteration"]
        record = {"kind": "iteration", "iteration": k, "iterations": self.iterations,
                  "velocity_mean_mm": number("velocity_mean_mm"), "affine_mean_mm": number("affine_mean_mm"),
                  "sharpness": number("sharpness"), "seconds": number("seconds"), "node": self.node,
                  "fraction": self.fraction}
        what = "affine mean" if k == 0 else f"iteration {k}/{self.iterations}"
        record["text"] = (f"Template {what}: update {record['velocity_mean_mm']:.3f} mm (velocity), "
                          f"{record['affine_mean_mm']:.3f} mm (affine), sharpness {record['sharpness']:.4g}")
        self._say(record["text"])
        return record

    def _load(self, path: Path) -> None:
        from regsuite.io.images import read_image  # noqa: PLC0415
        from regsuite.mrml import sitk_to_volume  # noqa: PLC0415

        image = read_image(str(path), "template")
        first = self.node is None
        self.node = sitk_to_volume(image, self.scene, TEMPLATE_NAME, self.node)
        if first:
            self._track(self.node)
            self._showInViews(self.node)

    def _finish(self) -> dict[str, Any]:
        final = Path(self.outputDir, "template.nii.gz")
        if not final.is_file():
            raise _input_error(f"the command wrote no template '{final}'")
        self._load(final)
        self._say(f"Template {_name(self.node)}; transforms and Jacobians in {self.outputDir}")
        return {"template": self.node, "outputDir": self.outputDir, "iterations": self._records()}


class ChangeJob(PopulationJob):
    """``regsuite change``: a table and a chart of the change per label, the Jacobian over the baseline."""

    workflow = "change"

    def __init__(self, *args: Any, baseline: Any, names: dict[int, str], opacity: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._baseline, self._names, self._opacity = baseline, names, opacity

    def _finish(self) -> dict[str, Any]:
        from regsuite.io.images import read_image  # noqa: PLC0415
        from regsuite.mrml import sitk_to_volume  # noqa: PLC0415

        summary, rows = readChangeRows(Path(self.outputDir, "change.json"), self._names)
        jacobian_path = Path(self.outputDir, "jacobian.nii.gz")
        image = read_image(str(jacobian_path), "Jacobian map") if jacobian_path.is_file() else None
        name = self._baseline.GetName()
        table = self._track(changeTable(self.scene, rows, f"{name} volume change"))  # a unique name is given
        series, chart = changeChart(self.scene, table, f"{name} volume change")
        self._track(series)
        self._track(chart)
        jacobian = None
        if image is not None:
            jacobian = self._track(sitk_to_volume(image, self.scene, f"{name} change Jacobian"))
            showJacobian(jacobian, image)
            self._showInViews(self._baseline, jacobian, self._opacity)
        else:
            self._say(f"Warning: the command wrote no Jacobian map '{jacobian_path}'")
        for row in rows[: 1 + 10]:
            label = row.get("name") or row.get("label")
            self._say(f"{label}: {_number(row.get('baseline_ml')):.3f} ml -> {_number(row.get('followup_ml')):.3f} ml "
                      f"({_number(row.get('change_percent')):+.2f} %)")
        return {"table": table, "chart": chart, "series": series, "jacobian": jacobian, "rows": rows,
                "summary": summary, "outputDir": self.outputDir}


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# ---------------------------------------------------------------------------- scene helpers
def importLabels(labels: Any, segmentation: Any, colorNode: Any = None,
                 names: dict[int, tuple[str, tuple[float, float, float] | None]] | None = None,
                 referenceVolume: Any = None) -> list[str]:
    """Put the label map ``labels`` (SimpleITK, LPS) into ``segmentation`` (its segments replaced).

    One segment per label value, named and coloured from ``colorNode`` (a colour table; default:
    "GenericAnatomyColors" when the scene has it), then from ``names`` (value -> (name, colour)),
    which wins. Returns the segment names. Temporary nodes are removed again.
    """
    import slicer  # noqa: PLC0415
    from regsuite.mrml import sitk_to_volume  # noqa: PLC0415

    scene = segmentation.GetScene()
    colorNode = colorNode or scene.GetFirstNodeByName("GenericAnatomyColors")
    if segmentation.GetDisplayNode() is None:
        segmentation.CreateDefaultDisplayNodes()
    segmentation.GetSegmentation().RemoveAllSegments()
    if referenceVolume is not None and referenceVolume.GetParentTransformNode() is None:
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolume)
    with _scratch(scene):
        labelmap = sitk_to_volume(labels, scene, "__regsuite_population_labels", labelmap=True)
        if colorNode is not None:
            labelmap.GetDisplayNode().SetAndObserveColorNodeID(colorNode.GetID())
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation):
            raise _errors().RegSuiteError(f"the fused labels cannot be imported into {_name(segmentation)}")
    result = segmentation.GetSegmentation()
    found = []
    for index in range(result.GetNumberOfSegments()):
        segment = result.GetNthSegment(index)
        named = (names or {}).get(int(segment.GetLabelValue()))
        if named is not None:
            segment.SetName(named[0])
            if named[1] is not None and (colorNode is None or colorNode.GetColorIndexByName(named[0]) < 0):
                segment.SetColor(*named[1])
        found.append(segment.GetName())
    return found


def readChangeRows(path: Path, names: dict[int, str] | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """The rows of ``change.json`` (an object with ``rows``, or a list of rows), tolerant of extra keys.

    Each row keeps its keys; ``label`` becomes text and ``name`` comes from ``names`` (label value ->
    name: the segment names as they are in the scene, which the label table sent to the command
    could only hold without spaces) when given there.
    """
    try:
        summary = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _input_error(f"the command wrote no change table '{path}'") from None
    except (OSError, ValueError) as error:
        raise _input_error(f"change table '{path}' cannot be read ({_one_line(error)})") from None
    rows = summary.get("rows", summary.get("labels")) if isinstance(summary, dict) else summary
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise _input_error(f"change table '{path}' holds no list of rows")
    cleaned = []
    for row in rows:
        label = row.get("label")
        value = int(label) if isinstance(label, (int, float)) and float(label).is_integer() else None
        name = ((names or {}).get(value) if value is not None else None) or row.get("name")  # the scene's names win
        ordered = {"label": "" if label is None else str(value if value is not None else label), "name": name or ""}
        for key in CHANGE_COLUMNS[2:]:
            ordered[key] = _number(row.get(key))
        for key, item in row.items():
            if key not in ordered and (item is None or isinstance(item, (int, float, str))):
                ordered[key] = item
        cleaned.append(ordered)
    return summary, cleaned


def changeTable(scene: Any, rows: list[dict[str, Any]], name: str, table: Any = None) -> Any:
    """A table node (``table``, or a new one with a unique ``name``) with the change rows and a
    ``structure`` column (the name, else the label) that the chart shows."""
    from regsuite.mrml.tables import write_table  # noqa: PLC0415

    shown = [{"structure": row.get("name") or row.get("label"), **row} for row in rows]
    units = {"baseline_ml": "ml", "followup_ml": "ml", "change_ml": "ml", "change_percent": "%"}
    return write_table(scene, shown, name, table, units=units)


def changeChart(scene: Any, table: Any, title: str) -> tuple[Any, Any]:
    """A bar chart of ``change_percent`` per structure: (plot series node, plot chart node)."""
    import slicer  # noqa: PLC0415

    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", scene.GenerateUniqueName(f"{title} (%)"))
    series.SetAndObserveTableNodeID(table.GetID())
    series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeBar)
    series.SetYColumnName("change_percent")
    series.SetLabelColumnName("structure")
    series.SetColor(0.2, 0.45, 0.75)
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(f"{title} chart"))
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle(title)
    chart.SetXAxisTitle("structure (whole brain first)")
    chart.SetYAxisTitle("volume change (%)")
    chart.SetLegendVisibility(False)
    return series, chart


def showJacobian(volume: Any, image: Any = None) -> None:
    """Colour the Jacobian map: blue where tissue shrank, white for no change, red where it grew.

    The window is 1 +- h with h the 99th percentile of |J - 1| (between 0.02 and 1).
    """
    import numpy as np  # noqa: PLC0415
    from regsuite.mrml.display import color_table, piecewise_colors, set_volume_colors  # noqa: PLC0415

    if image is not None:
        import SimpleITK as sitk  # noqa: PLC0415

        values = sitk.GetArrayViewFromImage(image)
    else:
        import slicer  # noqa: PLC0415

        values = slicer.util.arrayFromVolume(volume)
    spread = np.abs(np.asarray(values, dtype=float) - 1.0)
    spread = spread[np.isfinite(spread)]
    half = float(min(max(np.percentile(spread, 99) if spread.size else 0.0, 0.02), 1.0))
    window = (1.0 - half, 1.0 + half)
    stops = [(window[0], (0.05, 0.2, 0.8)), (1.0, (1.0, 1.0, 1.0)), (window[1], (0.8, 0.05, 0.05))]
    table = color_table(volume.GetScene(), JACOBIAN_COLORS, piecewise_colors(stops, window),
                        "Volume change (Jacobian): blue shrinkage, white none, red growth")
    set_volume_colors(volume, table, window)


# ---------------------------------------------------------------------------- the Logic
class RegSuitePopulationLogic(ScriptedLoadableModuleLogic):
    """Population workflows on MRML nodes and files (usable without the module's panel).

    One run at a time: ``job`` is the latest (``poll``, ``cancel`` and ``isRunning`` act on it).
    """

    def __init__(self) -> None:
        if ScriptedLoadableModuleLogic is not object:
            ScriptedLoadableModuleLogic.__init__(self)
        self.job: PopulationJob | None = None

    # ---------------------------------------------------------------- following the run
    @property
    def isRunning(self) -> bool:
        return self.job is not None and self.job.isRunning

    def poll(self) -> list[dict[str, Any]]:
        """New progress records of the running job (see :class:`PopulationJob`); updates the scene."""
        return self.job.poll() if self.job is not None else []

    def cancel(self) -> None:
        """Stop the running job; what it added to the scene is removed again."""
        if self.job is not None:
            self.job.cancel()

    def presetNames(self) -> list[str]:
        """The engine's registration presets."""
        from regsuite.engine.config import list_presets  # noqa: PLC0415

        return list_presets()

    # ---------------------------------------------------------------- workflows
    def segment(self, targetVolume: Any, atlases: Sequence[tuple[Any, Any]] = (), atlasList: str | None = None,
                outputSegmentation: Any = None, colorNode: Any = None, fusion: str = "majority",
                preset: str | None = None, select: int | None = None, outputLabels: str | None = None,
                allowMissingLabels: bool = False, workers: int | None = None, threads: int | None = None,
                scheduler: str | None = None, extraArguments: Sequence[str] = (),
                progress: ProgressCallback | None = None, log: LogCallback | None = None,
                waitForCompletion: bool = True) -> Any:
        """Segment ``targetVolume`` from atlases into a segmentation node.

        ``atlases``: ``(image, labels)`` pairs of scene nodes or file paths; ``atlasList``: a CSV
        file or an atlas folder (see the module's description). ``outputSegmentation``: the node
        to fill (its segments are replaced), None for a new one. ``colorNode``: names and
        colours of the label values. ``preset``: registration preset (name or JSON file; None:
        the command's default). ``select``: keep the K atlases most similar after an affine
        registration. ``outputLabels``: also keep the fused label map in this file.
        ``workers``/``threads``/``scheduler``: where the registrations run (``scheduler``: the
        address of a running Dask scheduler, whose workers must read the same files).

        Returns the job's result (``segmentation``, ``segments``) or, with
        ``waitForCompletion=False``, the running :class:`PopulationJob`.
        """
        errors = _errors()
        self._refuseWhileRunning()
        target = _require_volume(targetVolume, "target volume")
        scene = target.GetScene()
        if fusion not in FUSION_METHODS:
            raise errors.InputError(f"unknown fusion '{fusion}'; choose one of {', '.join(FUSION_METHODS)}")
        if outputSegmentation is not None and not (_is_node(outputSegmentation)
                                                   and outputSegmentation.IsA("vtkMRMLSegmentationNode")):
            raise errors.InputError("the output segmentation must be a segmentation node")
        if colorNode is not None and not (_is_node(colorNode) and colorNode.IsA("vtkMRMLColorNode")):
            raise errors.InputError("the colour table must be a colour node")
        if select is not None and (isinstance(select, bool) or not isinstance(select, int) or select < 0):
            raise errors.InputError(f"select must be a whole number of atlases, got {select!r}")
        select = select or None
        pairs = list(atlases or [])
        if not pairs and not atlasList:
            raise errors.InputError("no atlas given: choose an atlas list (CSV) or atlas folder, "
                                    "or add atlas image/label pairs from the scene")
        if outputLabels:
            outputLabels = os.path.abspath(os.fspath(outputLabels))
        options = self._runOptions(preset, workers, threads, scheduler)
        folder = tempfile.mkdtemp(prefix="regsuite-slicer-segment-")
        try:
            listed = self._atlasList(atlasList, folder) if atlasList else None
            arguments, names = self._exportAtlases(pairs, folder, colorNode)
            targetPath = os.path.join(folder, "target.nii.gz")
            self._writeVolume(target, targetPath, "target volume")
            labelsPath = outputLabels or os.path.join(folder, "labels.nii.gz")
            arguments = ["--target", targetPath, *arguments]
            if listed is not None:
                arguments += ["--atlas-list", listed]
            arguments += ["--output", labelsPath, "--fusion", fusion, *options]
            if select:
                arguments += ["--select", str(select)]
            if allowMissingLabels:
                arguments.append("--allow-missing-labels")
            arguments += [str(a) for a in extraArguments]
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        job = SegmentJob(scene, arguments, folder, None, False, progress, log, labelsPath=labelsPath,
                         keepLabels=bool(outputLabels), target=target, segmentation=outputSegmentation,
                         colorNode=colorNode, names=names, select=bool(select))
        return self._run(job, waitForCompletion)

    def buildTemplate(self, images: Any, outputDir: str | None = None, iterations: int = 4,
                      preset: str | None = None, workers: int | None = None, threads: int | None = None,
                      scheduler: str | None = None, resume: bool = False, extraArguments: Sequence[str] = (),
                      progress: ProgressCallback | None = None, log: LogCallback | None = None,
                      waitForCompletion: bool = True) -> Any:
        """Build an unbiased template from ``images``; each finished iteration updates a "Template" node.

        ``images``: a CSV file (column ``image``, optional ``labels``, ``name``; paths relative to
        it), a folder (every image file in it except ``*_labels.*``), or a list of scalar volume
        nodes and/or image paths (at least 2). ``outputDir``: the command's output folder
        (template, iterations, per-subject transforms and log Jacobians); None: a new temporary
        folder, kept after success (``result["outputDir"]``). ``iterations``: deformable
        iterations after the affine mean (iteration 0). ``preset``: must end in an ``svf`` stage
        (None: the command's default). Each iteration's record (``progress``) has the update's
        magnitude (``velocity_mean_mm``, ``affine_mean_mm``) and ``sharpness``.
        """
        errors = _errors()
        self._refuseWhileRunning()
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise errors.InputError(f"iterations must be a whole number of at least 0, got {iterations!r}")
        if outputDir and os.path.exists(outputDir) and not os.path.isdir(outputDir):
            raise errors.InputError(f"output folder '{outputDir}' is an existing file")
        options = self._runOptions(preset, workers, threads, scheduler)
        scene = None
        folder = tempfile.mkdtemp(prefix="regsuite-slicer-template-")
        try:
            if isinstance(images, (str, os.PathLike)):
                arguments = self._imageSource(os.fspath(images))
            else:
                items = list(images or [])
                if len(items) < 2:
                    raise errors.InputError(f"a template needs at least 2 images, got {len(items)}")
                paths, taken = [], set()
                for number, item in enumerate(items, start=1):
                    if _is_node(item):
                        node = _require_volume(item, f"image {number}")
                        scene = scene or node.GetScene()
                        path = os.path.join(folder, f"{_unique(_safe_name(node.GetName()), taken)}.nii.gz")
                        self._writeVolume(node, path, f"image {_name(node)}")
                        paths.append(path)
                    else:
                        paths.append(_require_file(item, f"image {number}"))
                arguments = ["--images", *paths]
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        owns = not outputDir or not os.path.exists(outputDir)
        if not outputDir:
            outputDir = tempfile.mkdtemp(prefix="regsuite-template-output-")
        outputDir = os.path.abspath(outputDir)
        arguments += ["--output-dir", outputDir, "--iterations", str(iterations), *options]
        if resume:
            arguments.append("--resume")
        arguments += [str(a) for a in extraArguments]
        import slicer  # noqa: PLC0415

        job = TemplateJob(scene or slicer.mrmlScene, arguments, folder, outputDir, owns, progress, log,
                          iterations=iterations)
        return self._run(job, waitForCompletion)

    def measureChange(self, baselineVolume: Any, followupVolume: Any, segmentation: Any = None,
                      outputDir: str | None = None, preset: str | None = None, opacity: float = 0.5,
                      workers: int | None = None, threads: int | None = None, scheduler: str | None = None,
                      extraArguments: Sequence[str] = (), progress: ProgressCallback | None = None,
                      log: LogCallback | None = None, waitForCompletion: bool = True) -> Any:
        """Measure the volume change from ``baselineVolume`` to ``followupVolume``.

        ``segmentation``: a segmentation or label map on the baseline (its segments are the
        structures; without it only the whole brain is measured). Results: ``table`` (one row
        per structure: ``label``, ``name``, ``baseline_ml``, ``followup_ml``, ``change_ml``,
        ``change_percent``; whole brain first), ``chart`` (bars of ``change_percent``) and
        ``jacobian`` (the symmetric Jacobian map, shown over the baseline with ``opacity``).
        ``outputDir``: where the command writes change.json/.csv, the maps and transforms
        (None: a temporary folder kept after success).
        """
        errors = _errors()
        self._refuseWhileRunning()
        baseline = _require_volume(baselineVolume, "baseline volume")
        followup = _require_volume(followupVolume, "follow-up volume")
        if baseline is followup:
            raise errors.InputError(f"the baseline and follow-up are the same volume {_name(baseline)}; "
                                    "select two scans")
        if not 0.0 <= float(opacity) <= 1.0:
            raise errors.InputError(f"opacity {opacity} is outside 0..1")
        if outputDir and os.path.exists(outputDir) and not os.path.isdir(outputDir):
            raise errors.InputError(f"output folder '{outputDir}' is an existing file")
        options = self._runOptions(preset, workers, threads, scheduler)
        folder = tempfile.mkdtemp(prefix="regsuite-slicer-change-")
        names: dict[int, str] = {}
        try:
            paths = {}
            for key, node, role in (("baseline", baseline, "baseline volume"),
                                    ("followup", followup, "follow-up volume")):
                paths[key] = os.path.join(folder, f"{key}.nii.gz")
                self._writeVolume(node, paths[key], role)
            arguments = ["--baseline", paths["baseline"], "--followup", paths["followup"]]
            if segmentation is not None:
                labels, values = self._labelsOnGrid(segmentation, baseline, "segmentation", None)
                names = {value: entry[0] for value, entry in values.items()}
                from regsuite.io.images import write_image  # noqa: PLC0415

                write_image(labels, os.path.join(folder, "segmentation.nii.gz"))
                arguments += ["--segment", os.path.join(folder, "segmentation.nii.gz")]
                if names:
                    table = os.path.join(folder, "labels.txt")
                    _write_label_table(table, values)
                    arguments += ["--labels", table]
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        owns = not outputDir or not os.path.exists(outputDir)
        outputDir = os.path.abspath(outputDir) if outputDir else tempfile.mkdtemp(prefix="regsuite-change-output-")
        arguments += ["--output-dir", outputDir, *options, *[str(a) for a in extraArguments]]
        job = ChangeJob(baseline.GetScene(), arguments, folder, outputDir, owns, progress, log, baseline=baseline,
                        names=names, opacity=float(opacity))
        return self._run(job, waitForCompletion)

    # ---------------------------------------------------------------- shared steps
    def _refuseWhileRunning(self) -> None:
        if self.isRunning:
            raise _input_error(f"a {self.job.workflow} run is still going; cancel it or wait for its end")

    def _run(self, job: PopulationJob, waitForCompletion: bool) -> Any:
        self.job = job
        job.start()
        if not waitForCompletion:
            return job
        return job.wait()

    @staticmethod
    def _runOptions(preset: str | None, workers: int | None, threads: int | None, scheduler: str | None) -> list[str]:
        errors = _errors()
        options: list[str] = []
        for value, name in ((workers, "workers"), (threads, "threads per worker")):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise errors.InputError(f"{name} must be a whole number of at least 1, got {value!r}")
        scheduler = (scheduler or "").strip()
        if scheduler and workers is not None:
            raise errors.InputError("a number of workers starts a local cluster; leave it automatic when a "
                                    "Dask scheduler address is given")
        if scheduler and (any(c.isspace() for c in scheduler) or scheduler.startswith("-")):
            raise errors.InputError(f"Dask scheduler address '{scheduler}' is not valid; e.g. tcp://host:8786")
        if preset:
            from regsuite.engine.config import load_preset  # noqa: PLC0415  (no PyTorch)

            load_preset(os.fspath(preset))  # PresetError (one line) for an unknown or broken preset
            options += ["--preset", os.fspath(preset)]
        if workers is not None:
            options += ["--workers", str(workers)]
        if threads is not None:
            options += ["--threads-per-worker", str(threads)]
        if scheduler:
            options += ["--scheduler", scheduler]
        return options

    @staticmethod
    def _writeVolume(node: Any, path: str, role: str) -> None:
        from regsuite.io.images import write_image  # noqa: PLC0415
        from regsuite.mrml import volume_to_sitk  # noqa: PLC0415

        write_image(volume_to_sitk(node, role), path)

    @staticmethod
    def _atlasList(path: str, folder: str) -> str:
        """An atlas CSV file, or the ``atlases.csv`` of a folder, or one written for a folder's pairs."""
        errors = _errors()
        location = Path(os.fspath(path)).expanduser()
        if location.is_file():
            return str(location.resolve())
        if not location.is_dir():
            raise errors.InputError(f"atlas list '{path}' does not exist (give a CSV file or an atlas folder)")
        if (location / ATLAS_LIST_NAME).is_file():
            return str((location / ATLAS_LIST_NAME).resolve())
        stems = {}
        for file in sorted(location.iterdir()):
            stem = _image_stem(file)
            if stem is not None and file.is_file():
                stems[stem] = file
        pairs = [(stems[stem], stems[stem + LABELS_SUFFIX]) for stem in sorted(stems)
                 if not stem.endswith(LABELS_SUFFIX) and stem + LABELS_SUFFIX in stems]
        if not pairs:
            raise errors.InputError(f"atlas folder '{path}' holds no {ATLAS_LIST_NAME} and no image/label pairs "
                                    f"named <name>.nii.gz and <name>{LABELS_SUFFIX}.nii.gz")
        listing = Path(folder) / ATLAS_LIST_NAME
        with open(listing, "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["image", "labels", "name"])
            for image, labels in pairs:
                writer.writerow([str(image.resolve()), str(labels.resolve()), _image_stem(image)])
        return str(listing)

    @staticmethod
    def _imageSource(path: str) -> list[str]:
        """``--image-list`` for a CSV file, ``--images`` with every image of a folder."""
        errors = _errors()
        location = Path(path).expanduser()
        if location.is_file():
            if _image_stem(location) is not None:
                raise errors.InputError(f"'{path}' is one image; give a folder of images or a CSV image list")
            return ["--image-list", str(location.resolve())]
        if not location.is_dir():
            raise errors.InputError(f"image list '{path}' does not exist (give a CSV file or a folder of images)")
        images = []
        for file in sorted(location.iterdir()):
            stem = _image_stem(file)
            if file.is_file() and stem is not None and not stem.endswith(LABELS_SUFFIX):
                images.append(str(file.resolve()))
        if len(images) < 2:
            raise errors.InputError(f"image folder '{path}' holds {len(images)} image file(s); a template needs "
                                    "at least 2")
        return ["--images", *images]

    def _exportAtlases(self, pairs: list[Any], folder: str,
                       colorNode: Any) -> tuple[list[str], dict[int, tuple[str, Any]]]:
        """``--atlas IMAGE LABELS`` arguments for ``pairs`` (scene nodes written into ``folder``)."""
        errors = _errors()
        arguments: list[str] = []
        values: dict[str, int] = {}  # segment name -> label value, shared by every scene atlas
        names: dict[int, tuple[str, Any]] = {}
        taken: set[str] = {"target", "labels"}  # the job folder's own files
        for number, pair in enumerate(pairs, start=1):
            try:
                image, labels = pair
            except (TypeError, ValueError):
                raise errors.InputError(f"atlas {number} is not an (image, labels) pair") from None
            if image is None or labels is None:
                raise errors.InputError(f"atlas {number} needs both an image and its labels")
            if _is_node(image):
                node = _require_volume(image, f"atlas {number} image")
                stem = _unique(_safe_name(node.GetName()), taken)
                imagePath = os.path.join(folder, f"{stem}.nii.gz")
                self._writeVolume(node, imagePath, f"atlas image {_name(node)}")
            else:
                imagePath = _require_file(image, f"atlas {number} image")
                stem = _unique(_safe_name(_image_stem(Path(imagePath)) or Path(imagePath).stem), taken)
            if _is_node(labels):
                if not _is_node(image):
                    raise errors.InputError(f"atlas {number}: labels {_name(labels)} from the scene need their image "
                                            "from the scene too")
                labelImage, found = self._labelsOnGrid(labels, image, f"atlas {number} labels", colorNode, values)
                names.update(found)
                from regsuite.io.images import write_image  # noqa: PLC0415

                labelsPath = os.path.join(folder, f"{stem}{LABELS_SUFFIX}.nii.gz")
                write_image(labelImage, labelsPath)
            else:
                labelsPath = _require_file(labels, f"atlas {number} labels")
            arguments += ["--atlas", imagePath, labelsPath]
        return arguments, names

    @staticmethod
    def _labelsOnGrid(labels: Any, volume: Any, role: str, colorNode: Any,
                      values: dict[str, int] | None = None) -> tuple[Any, dict[int, tuple[str, Any]]]:
        """A label map (SimpleITK, uint16) of ``labels`` on ``volume``'s grid, and value -> (name, colour).

        A segmentation gives one value per segment: by name from ``values`` (shared between
        calls), else from ``colorNode``, else the next free value. A label map volume keeps its
        values (resampled, nearest neighbour, when on another grid); names from its colour node.
        """
        import numpy as np  # noqa: PLC0415
        import SimpleITK as sitk  # noqa: PLC0415
        from regsuite.geometry import same_grid  # noqa: PLC0415
        from regsuite.io.images import read_label_image  # noqa: PLC0415
        from regsuite.mrml import mask_from_node, volume_to_sitk  # noqa: PLC0415

        errors = _errors()
        values = {} if values is None else values
        reference = volume_to_sitk(volume, f"volume of the {role}")
        found: dict[int, tuple[str, Any]] = {}
        if _is_node(labels) and labels.IsA("vtkMRMLSegmentationNode"):
            segmentation = labels.GetSegmentation()
            if segmentation.GetNumberOfSegments() == 0:
                raise errors.InputError(f"{role} {_name(labels)} has no segments")
            array = np.zeros(sitk.GetArrayViewFromImage(reference).shape, np.uint16)
            for index in range(segmentation.GetNumberOfSegments()):
                segmentId = segmentation.GetNthSegmentID(index)
                segment = segmentation.GetSegment(segmentId)
                name = segment.GetName()
                if name not in values:
                    values[name] = _label_value(name, set(values.values()), colorNode)
                mask = mask_from_node(labels, volume, f"segment '{name}' of {role}", [segmentId])
                array[sitk.GetArrayViewFromImage(mask) != 0] = values[name]
                found[values[name]] = (name, tuple(float(c) for c in segment.GetColor()))
            image = sitk.GetImageFromArray(array)
            image.CopyInformation(reference)
            return image, found
        if not _is_node(labels) or not labels.IsA("vtkMRMLScalarVolumeNode"):
            raise errors.InputError(f"{role} must be a segmentation or a label map volume")
        image = read_label_image(volume_to_sitk(labels, role), f"{role} {_name(labels)}")
        if not same_grid(image, reference):
            image = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, image.GetPixelID())
        present = sorted(int(v) for v in np.unique(sitk.GetArrayViewFromImage(image)) if v != 0)
        if not present:
            raise errors.InputError(f"{role} {_name(labels)} is empty on the grid of {_name(volume)}")
        display = labels.GetDisplayNode()
        colors = display.GetColorNode() if display is not None else None
        for value in present:
            name = colors.GetColorName(value) if colors is not None else ""
            if name and name.lower() not in ("(none)", "invalid"):
                rgba = [0.0, 0.0, 0.0, 0.0]
                colors.GetColor(value, rgba)
                found[value] = (name, tuple(rgba[:3]))
        return image, found


def _label_value(name: str, used: set[int], colorNode: Any) -> int:
    """The label value of segment ``name``: its index in ``colorNode``, else the first value that is
    neither ``used`` nor named in ``colorNode``."""
    listed = colorNode.GetColorIndexByName(name) if colorNode is not None else -1
    if listed > 0 and listed not in used:
        return listed

    def named(value: int) -> bool:
        return (colorNode is not None and value < colorNode.GetNumberOfColors()
                and colorNode.GetColorName(value) not in ("", "(none)"))

    value = 1
    while value in used or named(value):
        value += 1
    return value


def _write_label_table(path: str, values: dict[int, tuple[str, Any]]) -> None:
    """A colour table file ``value name r g b a`` (names without spaces) for ``--labels``."""
    lines = ["# value name r g b a (written by the Registration Population module)"]
    for value, (name, color) in sorted(values.items()):
        red, green, blue = (int(round(255 * c)) for c in (color or (0.5, 0.5, 0.5)))
        lines.append(f"{value} {_safe_name(name)} {red} {green} {blue} 255")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
