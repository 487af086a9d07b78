"""Logic of the Registration Population module: workflows of many registrations, run in the background.

Three entry points, each taking nodes and/or paths plus ``progress`` and ``log`` callbacks:

* :meth:`RegSuitePopulationLogic.segment` - multi-atlas segmentation of a volume into a
  segmentation node (``regsuite segment``);
* :meth:`RegSuitePopulationLogic.buildTemplate` - an unbiased template from a set of images,
  each finished iteration shown in a "Template" volume node (``regsuite template``);
* :meth:`RegSuitePopulationLogic.measureChange` - longitudinal volume change between two scans:
  a table, a bar chart and the Jacobian map over the baseline (``regsuite change``).

The registrations never run in Slicer's process: the inputs from the scene are checked and
exported to a temporary folder (:mod:`.inputs`), and the ``regsuite`` command line runs as a
child process (:mod:`.jobs`, :mod:`.process`). :meth:`RegSuitePopulationLogic.poll` (from a
timer on the main thread) reads its progress lines and updates the scene (:mod:`.results`);
:meth:`RegSuitePopulationLogic.cancel` stops it. A run that is cancelled or fails leaves the
scene as it was (:mod:`.undo`): the nodes it added are removed again and an output folder it
created is deleted. Bad input raises :class:`regsuite.errors.InputError` with
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

import os
import shutil
import tempfile
from typing import Any, Sequence

try:  # the real base class inside Slicer (tests supply a thin stand-in)
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic
except ImportError:  # pragma: no cover - plain Python without Slicer
    ScriptedLoadableModuleLogic = object  # type: ignore[assignment,misc]

from .inputs import (ATLAS_LIST_NAME, IMAGE_SUFFIXES, LABELS_SUFFIX, atlas_list, export_atlases,  # noqa: F401
                     image_source, is_node, labels_on_grid, require_file, require_volume, run_options, safe_name,
                     unique_stem, write_label_table, write_volume)
from .jobs import ChangeJob, LogCallback, PopulationJob, ProgressCallback, SegmentJob, TemplateJob
from .messages import input_error, quoted_name, regsuite_errors
from .process import CommandProcess  # noqa: F401  (importable from here as before)
from .results import (CHANGE_COLUMNS, JACOBIAN_COLORS, TEMPLATE_NAME, changeChart, changeTable,  # noqa: F401
                      importLabels, readChangeRows, showJacobian)

__all__ = ["RegSuitePopulationLogic", "PopulationJob", "FUSION_METHODS", "WORKFLOWS", "IMAGE_SUFFIXES"]

WORKFLOWS = ("segment", "template", "change")
FUSION_METHODS = ("majority", "staple", "weighted", "joint")


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
        errors = regsuite_errors()
        self._refuseWhileRunning()
        target = require_volume(targetVolume, "target volume")
        scene = target.GetScene()
        if fusion not in FUSION_METHODS:
            raise errors.InputError(f"unknown fusion '{fusion}'; choose one of {', '.join(FUSION_METHODS)}")
        if outputSegmentation is not None and not (is_node(outputSegmentation)
                                                   and outputSegmentation.IsA("vtkMRMLSegmentationNode")):
            raise errors.InputError("the output segmentation must be a segmentation node")
        if colorNode is not None and not (is_node(colorNode) and colorNode.IsA("vtkMRMLColorNode")):
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
        options = run_options(preset, workers, threads, scheduler)
        folder = tempfile.mkdtemp(prefix="regsuite-slicer-segment-")
        try:
            listed = atlas_list(atlasList, folder) if atlasList else None
            arguments, names = export_atlases(pairs, folder, colorNode)
            targetPath = os.path.join(folder, "target.nii.gz")
            write_volume(target, targetPath, "target volume")
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
        errors = regsuite_errors()
        self._refuseWhileRunning()
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise errors.InputError(f"iterations must be a whole number of at least 0, got {iterations!r}")
        if outputDir and os.path.exists(outputDir) and not os.path.isdir(outputDir):
            raise errors.InputError(f"output folder '{outputDir}' is an existing file")
        options = run_options(preset, workers, threads, scheduler)
        scene = None
        folder = tempfile.mkdtemp(prefix="regsuite-slicer-template-")
        try:
            if isinstance(images, (str, os.PathLike)):
                arguments = image_source(os.fspath(images))
            else:
                items = list(images or [])
                if len(items) < 2:
                    raise errors.InputError(f"a template needs at least 2 images, got {len(items)}")
                paths, taken = [], set()
                for number, item in enumerate(items, start=1):
                    if is_node(item):
                        node = require_volume(item, f"image {number}")
                        scene = scene or node.GetScene()
                        path = os.path.join(folder, f"{unique_stem(safe_name(node.GetName()), taken)}.nii.gz")
                        write_volume(node, path, f"image {quoted_name(node)}")
                        paths.append(path)
                    else:
                        paths.append(require_file(item, f"image {number}"))
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
        errors = regsuite_errors()
        self._refuseWhileRunning()
        baseline = require_volume(baselineVolume, "baseline volume")
        followup = require_volume(followupVolume, "follow-up volume")
        if baseline is followup:
            raise errors.InputError(f"the baseline and follow-up are the same volume {quoted_name(baseline)}; "
                                    "select two scans")
        if not 0.0 <= float(opacity) <= 1.0:
            raise errors.InputError(f"opacity {opacity} is outside 0..1")
        if outputDir and os.path.exists(outputDir) and not os.path.isdir(outputDir):
            raise errors.InputError(f"output folder '{outputDir}' is an existing file")
        options = run_options(preset, workers, threads, scheduler)
        folder = tempfile.mkdtemp(prefix="regsuite-slicer-change-")
        names: dict[int, str] = {}
        try:
            paths = {}
            for key, node, role in (("baseline", baseline, "baseline volume"),
                                    ("followup", followup, "follow-up volume")):
                paths[key] = os.path.join(folder, f"{key}.nii.gz")
                write_volume(node, paths[key], role)
            arguments = ["--baseline", paths["baseline"], "--followup", paths["followup"]]
            if segmentation is not None:
                labels, values = labels_on_grid(segmentation, baseline, "segmentation", None)
                names = {value: entry[0] for value, entry in values.items()}
                from regsuite.io.images import write_image  # noqa: PLC0415

                write_image(labels, os.path.join(folder, "segmentation.nii.gz"))
                arguments += ["--segment", os.path.join(folder, "segmentation.nii.gz")]
                if names:
                    table = os.path.join(folder, "labels.txt")
                    write_label_table(table, values)
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
            raise input_error(f"a {self.job.workflow} run is still going; cancel it or wait for its end")

    def _run(self, job: PopulationJob, waitForCompletion: bool) -> Any:
        self.job = job
        job.start()
        if not waitForCompletion:
            return job
        return job.wait()
