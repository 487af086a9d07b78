"""Unbiased population template, built the way ANTs' template construction does it.

1. *Affine mean* (iteration 0): every image is registered affinely to the reference (the
   first image, or ``initial_template``), the warped images are averaged, and the average is
   moved by the inverse of the mean affine (log-Euclidean mean), so it sits at the population's
   affine centre.
2. Each further iteration registers every image to the current template with the deformable
   preset (which must end in a diffeomorphic ``svf`` stage), averages the warped images
   (each divided by its mean over the template's foreground, then rescaled to the images'
   average intensity; optional Laplacian sharpening), and applies the *shape update*: the
   registrations map the template to each image as ``A_i o exp(v_i)``; with ``v`` the mean of
   the velocities ``v_i`` (all on the template grid: the log domain) and ``A`` the log-Euclidean
   mean of the affines, the new template is the average seen through ``exp(-s v) o A^-s``
   (``s`` = ``step``), so that the mean transform to the population is the identity.

Files in the output folder ``D``:

=====================================  ==============================================================
``template.nii.gz``                    the final template
``iterations/<k>/template.nii.gz``     the template after iteration k (0: affine mean)
``iterations/<k>/update.json``         its update's magnitude (mm) and sharpness (gradient energy)
``iterations/<k>/subjects/<name>/``    that iteration's registration: ``transform.h5``,
                                       ``affine.tfm``, ``velocity.nii.gz``, ``warped.nii.gz``
``subjects/<name>/to_template.h5``     template world -> subject world: resamples the subject
                                       (or its labels) onto the template
``subjects/<name>/from_template.h5``   subject world -> template world: resamples template-space
                                       images (the template, fused labels) onto the subject
``subjects/<name>/log_jacobian.nii.gz``  log det of ``to_template``'s Jacobian on the template grid
                                       (tensor-based morphometry: > 0 where the subject is larger)
``labels.nii.gz``                      with labels: theirs warped to the template, majority-fused
``log.json``                           per iteration: update magnitude, sharpness, seconds
=====================================  ==============================================================

Each registration and each average is a task (:mod:`.tasks`): ``resume=True`` continues a
killed run without redoing any finished one.

Example:
    >>> build_template(["s1.nii.gz", "s2.nii.gz", "s3.nii.gz"], "template-out", iterations=4)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io.images import read_image, write_image
from ..io.transforms import read_transform, write_transform
from .atlases import Atlas
from .maps import affine_transform, field_transform, mean_affine, read_image_vector, velocity_exp
from .runner import Runner, TaskOutcome, make_runner
from .steps import write_json_atomic
from .tasks import Task
from .workspace import open_workspace, preset_argument

__all__ = ["build_template", "average_step", "finalize_subject", "mean_affine", "sharpness", "AFFINE_PRESET"]

#: The preset of iteration 0 (the affine mean).
AFFINE_PRESET = "affine"

Progress = Callable[[int, int, TaskOutcome], None]


# ---------------------------------------------------------------------------- arithmetic
def sharpness(image: sitk.Image, mask: np.ndarray | None = None) -> float:
    """Gradient energy: mean squared gradient magnitude (per mm) over ``mask``, divided by the
    squared mean intensity there, so that images of different scales compare (higher: sharper).

    Example:
        >>> flat = sitk.Image([8, 8, 8], sitk.sitkFloat32) + 1.0
        >>> sharpness(flat)
        0.0
    """
    gradient = sitk.GetArrayFromImage(sitk.GradientMagnitude(sitk.Cast(image, sitk.sitkFloat32)))
    values = sitk.GetArrayViewFromImage(image).astype(np.float64)
    inside = mask if mask is not None else np.ones(values.shape, bool)
    scale = float(values[inside].mean()) if inside.any() else 0.0
    return float((gradient[inside].astype(np.float64) ** 2).mean() / scale ** 2) if scale else 0.0


def _foreground(image: sitk.Image) -> np.ndarray:
    values = sitk.GetArrayViewFromImage(image)
    positive = values > 0
    if positive.mean() < 0.95:
        return np.array(positive)
    otsu = sitk.OtsuThreshold(sitk.Cast(image, sitk.sitkFloat32), 0, 1)
    return sitk.GetArrayFromImage(otsu) > 0


# ---------------------------------------------------------------------------- task functions
def average_step(reference: str, warped: Sequence[str], affines: Sequence[str], velocities: Sequence[str],
                 output: str, update: str, shape_update: str, step: float = 1.0,
                 sharpen: str = "none") -> dict[str, Any]:
    """Average the warped images, apply the shape update, write the new template (a task).

    ``shape_update`` is a path stem: ``<stem>.h5`` receives ``U = exp(-s v) o A^-s`` (new
    template world -> previous template world), ``<stem>.json`` what inverts it (``A^s`` and
    ``<stem>_velocity.nii.gz``, the mean velocity ``v``).
    """
    grid = read_image(reference, "template reference")
    images = [read_image(path, "warped image") for path in warped]
    inside = _foreground(images[0])
    for image in images[1:]:
        inside |= _foreground(image)
    means = [float(sitk.GetArrayViewFromImage(image)[inside].mean()) for image in images]
    scale = float(np.mean(means))
    total = np.zeros(inside.shape, np.float64)
    for image, mean in zip(images, means):
        total += sitk.GetArrayViewFromImage(image) / (mean if mean else 1.0)
    average = sitk.GetImageFromArray((total * scale / len(images)).astype(np.float32))
    average.CopyInformation(grid)
    plain_sharpness = sharpness(average, inside)
    if sharpen == "laplacian":
        average = sitk.Cast(sitk.LaplacianSharpening(average), sitk.sitkFloat32)
    elif sharpen != "none":
        raise InputError(f"unknown sharpening '{sharpen}'; expected none or laplacian")
    mean_matrix = mean_affine([read_transform(path) for path in affines], power=-step)
    parts: list[sitk.Transform] = []
    velocity_norm = velocity_max = 0.0
    if velocities:
        mean_velocity = np.zeros(inside.shape + (3,), np.float64)
        for path in velocities:
            mean_velocity += sitk.GetArrayFromImage(read_image_vector(path)) / len(velocities)
        velocity_file = sitk.GetImageFromArray(mean_velocity.astype(np.float32), isVector=True)
        velocity_file.CopyInformation(grid)
        write_image(velocity_file, shape_update + "_velocity.nii.gz")
        lengths = np.linalg.norm(mean_velocity, axis=-1)
        velocity_norm, velocity_max = float(lengths[inside].mean()), float(lengths[inside].max())
        parts.append(field_transform(velocity_exp(-step * mean_velocity, grid), grid))
    parts.append(affine_transform(mean_matrix))
    inverse_mean = sitk.CompositeTransform(parts)  # A^-s first, then exp(-s v)
    moved = sitk.Resample(average, grid, inverse_mean, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    points = np.argwhere(inside)[::97][:, ::-1].astype(float)
    world = np.array([grid.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in points[:4000]])
    affine_moves = np.linalg.norm(world @ mean_matrix[:3, :3].T + mean_matrix[:3, 3] - world, axis=1)
    write_transform(inverse_mean, shape_update + ".h5")
    write_json_atomic({"inverse_affine": np.linalg.inv(mean_matrix).tolist(), "step": step,
                       "velocity": shape_update + "_velocity.nii.gz" if velocities else None}, shape_update + ".json")
    record = {"velocity_mean_mm": round(velocity_norm, 5), "velocity_max_mm": round(velocity_max, 5),
              "affine_mean_mm": round(float(affine_moves.mean()), 5),
              "sharpness": round(sharpness(moved, inside), 8), "sharpness_unsharpened": round(plain_sharpness, 8),
              "images": len(images)}
    write_json_atomic(record, update)
    write_image(moved, output)
    return record


def finalize_subject(template: str, transform: str, velocity: str, shape_update: str, to_template: str,
                     from_template: str, log_jacobian: str, labels: str | None = None,
                     labels_in_template: str | None = None) -> dict[str, Any]:
    """A subject's transforms to and from the final template, its log-Jacobian map (a task).

    The last iteration registered the subject to the previous template ``P``:
    ``P -> subject = A o exp(v)``; the final template relates to ``P`` by the shape update
    ``U: final -> P``. So ``to_template = A o exp(v) o U`` and
    ``from_template = U^-1 o exp(-v) o A^-1`` with ``U^-1 = A_mean^s o exp(s v_mean)``.
    """
    from ..evaluation.jacobian import jacobian_determinant
    from ..io.composite import leaves
    from .steps import warp

    grid = read_image(template, "template")
    registration = read_transform(transform)
    pieces = leaves(registration)
    update_pieces = leaves(read_transform(shape_update + ".h5"))
    forward = sitk.CompositeTransform(pieces + update_pieces)
    linear = [p for p in pieces if p.GetName() != "DisplacementFieldTransform"]
    if len(linear) != 1 or len(pieces) != 2:
        raise InputError(f"registration '{transform}' is not an affine followed by a velocity field")
    velocity_image = sitk.GetArrayFromImage(read_image_vector(velocity)).astype(np.float64)
    reference = sitk.Image(velocity_image.shape[2::-1], sitk.sitkUInt8)
    reference.CopyInformation(read_image_vector(velocity))
    inverse_field = field_transform(velocity_exp(-velocity_image, reference), reference)
    # subject -> A^-1 -> exp(-v) -> U^-1 (the last added part is applied first)
    backward = sitk.CompositeTransform(_inverse_update(shape_update) + [inverse_field, linear[0].GetInverse()])
    write_transform(forward, to_template)
    write_transform(backward, from_template)
    jacobian = jacobian_determinant(forward, grid)
    values = sitk.GetArrayFromImage(jacobian).astype(np.float64)
    log_values = np.log(np.clip(values, 1e-6, None)).astype(np.float32)
    log_image = sitk.GetImageFromArray(log_values)
    log_image.CopyInformation(grid)
    write_image(log_image, log_jacobian)
    if labels is not None and labels_in_template is not None:
        warp(grid, labels, forward, labels_in_template, labels=True)
    inside = _foreground(grid)
    return {"log_jacobian_mean": round(float(log_values[inside].mean()), 6),
            "folding_percent": round(float(100.0 * (values[inside] <= 0).mean()), 6)}


def _inverse_update(shape_update: str) -> list[sitk.Transform]:
    """``U^-1 = A_mean^s o exp(s v_mean)`` as composite parts (the last is applied first)."""
    record = json.loads(Path(shape_update + ".json").read_text())
    parts: list[sitk.Transform] = [affine_transform(np.array(record["inverse_affine"]))]
    if record.get("velocity"):
        velocity = read_image_vector(record["velocity"])
        array = sitk.GetArrayFromImage(velocity).astype(np.float64)
        parts.append(field_transform(velocity_exp(record["step"] * array, velocity), velocity))
    return parts


# ---------------------------------------------------------------------------- the workflow
def _iteration_tasks(images: Sequence[Atlas], reference: str, folder: Path, preset: Any, deformable: bool,
                     seed: int, device: str, step: float, sharpen: str, key: str) -> tuple[list[Task], Task]:
    """Registrations of every image to ``reference``, and the averaging task that follows them."""
    tasks, warped, affines, velocities = [], [], [], []
    for image in images:
        out = folder / "subjects" / image.name
        out.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"fixed": reference, "moving": image.image, "preset": preset,
                                  "transform": str(out / "transform.h5"), "warped_image": str(out / "warped.nii.gz"),
                                  "affine": str(out / "affine.tfm"), "seed": seed, "device": device}
        if deformable:
            kwargs["velocity"] = str(out / "velocity.nii.gz")
            velocities.append(kwargs["velocity"])
        warped.append(kwargs["warped_image"])
        affines.append(kwargs["affine"])
        outputs = tuple(kwargs[name] for name in ("transform", "warped_image", "affine") + (("velocity",) if deformable else ()))
        tasks.append(Task(f"{key}-register-{image.name}", "regsuite.population.steps:register_pair", kwargs, outputs,
                          str(folder / "tasks" / f"register-{image.name}.json")))
    average_kwargs = {"reference": reference, "warped": warped, "affines": affines, "velocities": velocities,
                      "output": str(folder / "template.nii.gz"), "update": str(folder / "update.json"),
                      "shape_update": str(folder / "shape_update"), "step": step, "sharpen": sharpen}
    average = Task(f"{key}-average", "regsuite.population.template:average_step", average_kwargs,
                   (average_kwargs["output"], average_kwargs["update"], str(folder / "shape_update.h5")),
                   str(folder / "tasks" / "average.json"))
    return tasks, average


def _check_images(images: Sequence[Atlas], with_labels: bool) -> None:
    from .atlases import check_atlases

    if len(images) < 2:
        raise InputError(f"a template needs at least 2 images, got {len(images)}")
    names = [image.name for image in images]
    for name in names:
        if names.count(name) > 1:
            raise InputError(f"image names must be unique; '{name}' is used twice (name them in the image list)")
    for image in images:
        read_image(image.image, f"image '{image.name}'")
    if with_labels:
        check_atlases(images, 2, allow_missing_labels=True)


def build_template(images: Sequence[str | Atlas], output_dir: str, *, iterations: int = 4,
                   preset: Any = "brain-mri", initial_template: str | None = None, step: float = 1.0,
                   sharpen: str = "none", resume: bool = False, runner: Runner | None = None,
                   progress: Progress | None = None, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Build a template from ``images`` (paths, or :class:`Atlas` items to bring labels along).

    ``iterations`` deformable iterations follow the affine mean (iteration 0). Returns the
    log: per iteration, the update's magnitude in mm, the template's sharpness and seconds.
    """
    items = [image if isinstance(image, Atlas) else Atlas(str(image), "", "") for image in images]
    items = [Atlas(str(Path(item.image).resolve()), str(Path(item.labels).resolve()) if item.labels else "",
                   item.name or f"image-{number + 1}") for number, item in enumerate(items)]
    with_labels = all(item.labels for item in items)
    if any(item.labels for item in items) and not with_labels:
        raise InputError("labels were given for some images only; give them for every image or for none")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise InputError(f"--iterations must be a whole number of at least 0, got {iterations!r}")
    if not (isinstance(step, (int, float)) and 0 < step <= 1):
        raise InputError(f"--step must be in (0, 1], got {step!r}")
    if sharpen not in ("none", "laplacian"):
        raise InputError(f"unknown sharpening '{sharpen}'; expected none or laplacian")
    _check_images(items, with_labels)
    if initial_template is not None:
        initial_template = str(Path(initial_template).resolve())
        read_image(initial_template, "initial template")
    preset_value = preset_argument(preset)
    from ..engine.config import load_preset

    last = load_preset(preset_value).stages[-1]
    if iterations and last.model != "svf":
        raise InputError(f"a template preset must end in an 'svf' stage (the shape update averages velocity "
                         f"fields); preset '{preset if isinstance(preset, str) else 'given'}' ends in '{last.model}'")
    output = Path(output_dir)
    manifest = {"workflow": "template", "images": [[i.name, i.image, i.labels] for i in items],
                "preset": preset_value, "initial_template": initial_template, "step": step, "sharpen": sharpen,
                "seed": seed}
    work = open_workspace(output, manifest, resume)
    log: list[dict[str, Any]] = []
    owned = runner is None
    runner = runner or make_runner()
    try:
        reference = initial_template or items[0].image
        for k in range(iterations + 1):
            folder = work / "iterations" / str(k)
            start = time.perf_counter()
            registrations, average = _iteration_tasks(items, reference, folder, AFFINE_PRESET if k == 0 else preset_value,
                                                      k > 0, seed, device, step, sharpen, f"{k}")
            runner.run(registrations, progress)
            record = runner.run([average], progress)[0].result or {}
            record = {"iteration": k, **record, "seconds": round(time.perf_counter() - start, 2)}
            log.append(record)
            write_json_atomic(log, str(work / "log.json"))
            reference = str(folder / "template.nii.gz")
        final = work / "iterations" / str(iterations)
        final_template = work / "template.nii.gz"
        if not final_template.is_file() or final_template.stat().st_mtime_ns < Path(reference).stat().st_mtime_ns:
            # (an unchanged copy keeps its time, so a resumed run does not redo the finished subjects)
            write_image(read_image(reference, "template"), str(final_template))
        if iterations:
            finals = []
            for item in items:
                out = work / "subjects" / item.name
                out.mkdir(parents=True, exist_ok=True)
                registered = final / "subjects" / item.name
                kwargs = {"template": str(work / "template.nii.gz"), "transform": str(registered / "transform.h5"),
                          "velocity": str(registered / "velocity.nii.gz"), "shape_update": str(final / "shape_update"),
                          "to_template": str(out / "to_template.h5"), "from_template": str(out / "from_template.h5"),
                          "log_jacobian": str(out / "log_jacobian.nii.gz")}
                if with_labels:
                    kwargs.update(labels=item.labels, labels_in_template=str(out / "labels_in_template.nii.gz"))
                outputs = tuple(kwargs[n] for n in ("to_template", "from_template", "log_jacobian")) + \
                    ((kwargs["labels_in_template"],) if with_labels else ())
                finals.append(Task(f"finalize-{item.name}", "regsuite.population.template:finalize_subject", kwargs,
                                   outputs, str(work / "tasks" / f"finalize-{item.name}.json")))
            runner.run(finals, progress)
            if with_labels:
                from .segment import fuse

                fuse(str(work / "template.nii.gz"),
                     [str(work / "subjects" / i.name / "labels_in_template.nii.gz") for i in items], [],
                     "majority", str(work / "labels.nii.gz"))
    finally:
        if owned:
            runner.close()
    return {"iterations": log, "template": str(work / "template.nii.gz"), "runner": runner.description}
