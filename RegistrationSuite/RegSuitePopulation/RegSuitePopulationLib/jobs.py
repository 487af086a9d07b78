"""Runs of the ``regsuite`` command in the background, one class per workflow.

:class:`PopulationJob` starts the command (:mod:`.process`), turns its progress lines into
records for the ``progress`` and ``log`` callbacks, and ends the run: on success the workflow's
``_finish`` reads the outputs into the scene (:mod:`.results`); a run that is cancelled or fails
puts the scene back (:mod:`.undo`) and deletes an output folder it created. The temporary folder
of exported inputs is always removed.

* :class:`SegmentJob` - ``regsuite segment``: the fused label map becomes a segmentation node;
* :class:`TemplateJob` - ``regsuite template``: each finished iteration updates the "Template" node;
* :class:`ChangeJob` - ``regsuite change``: a table, a bar chart and the Jacobian over the baseline.

The ``regsuite`` engine is imported inside the methods (never PyTorch).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .messages import input_error, one_line, quoted_name, regsuite_errors
from .process import CommandProcess
from .results import changeChart, changeTable, importLabels, loadTemplate, number_or_nan, readChangeRows, showJacobian
from .undo import SceneChanges

ProgressCallback = Callable[[dict[str, Any]], None]
LogCallback = Callable[[str], None]

__all__ = ["PopulationJob", "SegmentJob", "TemplateJob", "ChangeJob", "ProgressCallback", "LogCallback"]

_POLL_SECONDS = 0.2


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
        self._changes = SceneChanges(scene)  # nodes and view layers this run changed (put back unless it completes)
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
        errors = regsuite_errors()
        try:
            self._process.start()
        except (OSError, errors.RegSuiteError) as error:
            self._end("failed", f"the regsuite command cannot be started ({one_line(error)})")
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
            errors = regsuite_errors()
            self.errorType = type(error).__name__ if isinstance(error, errors.RegSuiteError) else "RegSuiteError"
            if not isinstance(error, errors.RegSuiteError):
                import logging  # noqa: PLC0415

                logging.error("Registration Population: unexpected error", exc_info=error)
            self._process.cancel(grace=2.0)
            self._end("failed", f"the {self.workflow} results cannot be loaded ({one_line(error)})")
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
            errors = regsuite_errors()
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
        return self._changes.track(node)

    def _showInViews(self, background: Any, foreground: Any = None, opacity: float = 0.5) -> None:
        """Show volumes in every slice view (the views' layers are put back if the run does not complete)."""
        from regsuite.mrml.display import show_fusion  # noqa: PLC0415

        self._changes.rememberViews()
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
        self._changes.undo()
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
        self._say(f"Segmentation {quoted_name(node)}: {len(names)} segments ({', '.join(names)})")
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
        first = self.node is None
        self.node = loadTemplate(path, self.scene, self.node)
        if first:
            self._track(self.node)
            self._showInViews(self.node)

    def _finish(self) -> dict[str, Any]:
        final = Path(self.outputDir, "template.nii.gz")
        if not final.is_file():
            raise input_error(f"the command wrote no template '{final}'")
        self._load(final)
        self._say(f"Template {quoted_name(self.node)}; transforms and Jacobians in {self.outputDir}")
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
            self._say(f"{label}: {number_or_nan(row.get('baseline_ml')):.3f} ml -> "
                      f"{number_or_nan(row.get('followup_ml')):.3f} ml "
                      f"({number_or_nan(row.get('change_percent')):+.2f} %)")
        return {"table": table, "chart": chart, "series": series, "jacobian": jacobian, "rows": rows,
                "summary": summary, "outputDir": self.outputDir}
