"""Multi-atlas segmentation: register every atlas to the target, warp its labels, fuse them.

The work folder holds, per atlas, ``atlases/<name>/transform.h5`` (target world -> atlas
world), ``labels.nii.gz`` and ``image.nii.gz`` (both on the target grid), and each task's stamp
under ``tasks/``. With ``select=K`` every atlas is first registered affinely (preset
``affine-fast``) and only the K whose warped image correlates best with the target go on.

Example:
    >>> segment("target.nii.gz", [Atlas("a1.nii.gz", "a1_labels.nii.gz"), Atlas("a2.nii.gz", "a2_labels.nii.gz")],
    ...         "labels.nii.gz", fusion="majority", preset="brain-mri")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io.atomic import check_output_path
from ..io.images import IMAGE_SUFFIXES, read_image, read_label_image, read_native_image, write_image
from .atlases import Atlas, check_atlases
from .runner import Runner, TaskOutcome, make_runner
from .tasks import Task
from .workspace import open_workspace, preset_argument

__all__ = ["segment", "registration_tasks", "selection_tasks", "fusion_task", "fuse", "FUSION_METHODS",
           "SELECTION_PRESET"]

FUSION_METHODS = ("majority", "staple", "weighted", "joint")
#: The preset of the affine registrations that rank atlases for ``select``.
SELECTION_PRESET = "affine-fast"

Progress = Callable[[int, int, TaskOutcome], None]


def _atlas_folder(work: Path, atlas: Atlas) -> Path:
    return work / "atlases" / atlas.name


def registration_tasks(target: str, atlases: Sequence[Atlas], work: Path, preset: Any, seed: int = 0,
                       device: str = "cpu") -> list[Task]:
    """One task per atlas: register it to ``target``, warp its image and labels onto the target grid."""
    tasks = []
    for atlas in atlases:
        folder = _atlas_folder(work, atlas)
        folder.mkdir(parents=True, exist_ok=True)
        outputs = {"transform": str(folder / "transform.h5"), "warped_image": str(folder / "image.nii.gz"),
                   "labels": str(folder / "labels.nii.gz")}
        kwargs = {"fixed": target, "moving": atlas.image, "preset": preset, "transform": outputs["transform"],
                  "warped_image": outputs["warped_image"], "warped_labels": [[atlas.labels, outputs["labels"]]],
                  "seed": seed, "device": device}
        tasks.append(Task(f"register-{atlas.name}", "regsuite.population.steps:register_pair", kwargs,
                          tuple(outputs.values()), str(work / "tasks" / f"register-{atlas.name}.json")))
    return tasks


def selection_tasks(target: str, atlases: Sequence[Atlas], work: Path, seed: int = 0,
                    device: str = "cpu") -> list[Task]:
    """One affine registration per atlas; each task's result holds the similarity that ranks it."""
    tasks = []
    for atlas in atlases:
        folder = _atlas_folder(work, atlas)
        folder.mkdir(parents=True, exist_ok=True)
        kwargs = {"fixed": target, "moving": atlas.image, "preset": SELECTION_PRESET,
                  "transform": str(folder / "affine.tfm"), "seed": seed, "device": device}
        tasks.append(Task(f"affine-{atlas.name}", "regsuite.population.steps:register_pair", kwargs,
                          (kwargs["transform"],), str(work / "tasks" / f"affine-{atlas.name}.json")))
    return tasks


def fusion_task(target: str, atlases: Sequence[Atlas], work: Path, method: str, output: str,
                probabilities: str | None = None, options: dict[str, Any] | None = None,
                key: str = "fuse") -> Task:
    """The task that fuses the warped labels of ``atlases`` into ``output``."""
    folders = [_atlas_folder(work, atlas) for atlas in atlases]
    kwargs = {"target": target, "labels": [str(f / "labels.nii.gz") for f in folders],
              "images": [str(f / "image.nii.gz") for f in folders], "method": method, "output": output,
              "probabilities": probabilities, "options": dict(options or {})}
    outputs = (output,) + ((probabilities,) if probabilities else ())
    return Task(key, "regsuite.population.segment:fuse", kwargs, outputs, str(work / "tasks" / f"{key}.json"))


def _output_pixel(labels: sitk.Image) -> int:
    """Integer atlases keep their pixel type; float-stored label maps become 32-bit integers."""
    return labels.GetPixelID() if labels.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64) else sitk.sitkInt32


def fuse(target: str, labels: Sequence[str], images: Sequence[str], method: str, output: str,
         probabilities: str | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fuse warped label maps (all on the target grid) into ``output``; a task function.

    ``probabilities``: a folder (created) receiving ``label_<value>.nii.gz`` per label, float32
    (vote fraction or fusion weight share), all moved into place together at the end.
    """
    from .fusion import fuse_labels

    reference = read_image(target, "target image")
    label_images = [read_label_image(path, "warped atlas labels") for path in labels]
    arrays = [sitk.GetArrayFromImage(image) for image in label_images]
    needs_images = method in ("weighted", "joint")
    image_arrays = [sitk.GetArrayFromImage(read_native_image(path, "warped atlas image")).astype(np.float32)
                    for path in images] if needs_images else None
    result = fuse_labels(arrays, method, target=sitk.GetArrayFromImage(reference).astype(np.float32)
                         if needs_images else None, images=image_arrays,
                         spacing=tuple(reversed(reference.GetSpacing())), probabilities=probabilities is not None,
                         **(options or {}))
    fused = sitk.GetImageFromArray(result.labels)
    fused.CopyInformation(reference)
    fused = sitk.Cast(fused, _output_pixel(label_images[0]))
    staging = None
    try:
        if probabilities is not None:
            final = Path(probabilities)
            staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp", dir=final.parent))
            for value, probability in sorted(result.probabilities.items()):
                image = sitk.GetImageFromArray(probability.astype(np.float32))
                image.CopyInformation(reference)
                write_image(image, str(staging / f"label_{value}.nii.gz"))
        write_image(fused, output)
        if staging is not None:
            os.replace(staging, probabilities)
            staging = None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return {"method": method, "consensus_fraction": round(float(result.consensus_fraction), 6),
            "labels": len(result.label_values)}


def _check_output(path: str, what: str) -> None:
    lowered = str(path).lower()
    if not any(lowered.endswith(suffix) for suffix in IMAGE_SUFFIXES):
        raise InputError(f"{what} '{path}' needs an image extension ({', '.join(IMAGE_SUFFIXES[:4])}, ...)")
    check_output_path(path, what)


def segment(target: str, atlases: Sequence[Atlas], output: str, *, fusion: str = "majority",
            preset: Any = "brain-mri", select: int | None = None, probabilities: str | None = None,
            work_dir: str | None = None, resume: bool = False, runner: Runner | None = None,
            progress: Progress | None = None, allow_missing_labels: bool = False, seed: int = 0,
            device: str = "cpu", fusion_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Segment ``target`` from ``atlases``; write the fused label map to ``output``.

    Returns a summary: the atlases used, each registration's seconds and similarity, the
    fusion's consensus fraction. Inputs are never written; nothing appears at ``output`` (or
    ``probabilities``) unless the whole run succeeds. ``work_dir`` keeps the registrations (and
    lets ``resume=True`` skip the finished ones); without it a temporary folder is used and removed.
    """
    if fusion not in FUSION_METHODS:
        raise InputError(f"unknown fusion '{fusion}'; expected one of {', '.join(FUSION_METHODS)}")
    if select is not None and (isinstance(select, bool) or not isinstance(select, int) or select < 1):
        raise InputError(f"--select must be a whole number of at least 1, got {select!r}")
    if resume and work_dir is None:
        raise InputError("--resume needs --work-dir (the folder of the run to continue)")
    target = str(Path(target).resolve())
    read_image(target, "target image")
    _check_output(output, "output labels")
    if probabilities is not None:
        check_output_path(probabilities, "probability folder")
        if Path(probabilities).exists():
            raise InputError(f"probability folder '{probabilities}' already exists; choose a new folder")
    check_atlases(atlases, 1, allow_missing_labels)
    inputs = {target} | {str(Path(p).resolve()) for atlas in atlases for p in (atlas.image, atlas.labels)}
    if str(Path(output).resolve()) in inputs:
        raise InputError(f"output '{output}' would overwrite an input")
    if select is not None and select > len(atlases):
        raise InputError(f"--select {select} asks for more atlases than the {len(atlases)} given")
    preset_value = preset_argument(preset)
    manifest = {"workflow": "segment", "target": target, "preset": preset_value, "seed": seed,
                "atlases": [[atlas.name, str(Path(atlas.image).resolve()), str(Path(atlas.labels).resolve())]
                            for atlas in atlases]}
    with ExitStack() as stack:
        if work_dir is None:
            work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="regsuite-segment-"))
        work = open_workspace(work_dir, manifest, resume)
        if runner is None:
            runner = stack.enter_context(make_runner())
        chosen = list(atlases)
        summary: dict[str, Any] = {"target": target, "fusion": fusion, "runner": runner.description}
        if select is not None:
            ranked = runner.run(selection_tasks(target, atlases, work, seed, device), progress)
            similarity = {outcome.key[len("affine-"):]: outcome.result["similarity"] for outcome in ranked}
            chosen = sorted(atlases, key=lambda atlas: -similarity[atlas.name])[:select]
            summary["selection"] = similarity
        outcomes = runner.run(registration_tasks(target, chosen, work, preset_value, seed, device), progress)
        summary["atlases"] = {outcome.key[len("register-"):]: outcome.result for outcome in outcomes}
        fused = runner.run([fusion_task(target, chosen, work, fusion, str(Path(output).resolve()),
                                        str(Path(probabilities).resolve()) if probabilities else None,
                                        fusion_options, key=f"fuse-{fusion}")], progress)
        summary["fusion_result"] = fused[0].result
    return summary
