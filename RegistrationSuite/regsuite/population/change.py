"""Longitudinal change: how much each labelled structure grew or shrank between two scans.

Both scans are treated alike, so that exchanging baseline and follow-up gives the inverse
change, not a different one. The pair is registered both ways, as two tasks that a runner may
run side by side: *forward* (fixed = baseline, moving = follow-up: ``T_fwd`` maps baseline world
-> follow-up world) and *backward* (fixed = follow-up, moving = baseline). The volumes' symmetry
comes from combining the two registrations, per label ``l`` (see :mod:`regsuite.evaluation.volumes`):

* ``r_fwd = (integral of J_fwd over the baseline label) / (baseline label volume)``, on the
  baseline grid: the forward registration's follow-up / baseline ratio;
* ``r_bwd = (integral of J_bwd over the follow-up label) / (follow-up label volume)``, on the
  follow-up grid: the backward registration's baseline / follow-up ratio;
* ``r = sqrt(r_fwd / r_bwd)``; ``baseline_ml`` = the baseline label's volume (voxels x voxel
  volume), ``followup_ml = baseline_ml * r``, ``change_ml = followup_ml - baseline_ml``,
  ``change_percent = 100 (r - 1)``.

The follow-up label map is ``followup_segment`` when given (on the follow-up grid, the same
labels as ``segment``); otherwise ``segment`` is warped onto the follow-up grid through the
forward transform (nearest neighbour, resampled with ``T_fwd``'s inverse; presets without an
inverse use the backward registration's transform instead). With a follow-up label map of its
own, exchanging the scans exchanges ``r_fwd`` and ``r_bwd``: the ratio becomes exactly
``1 / r`` (up to float rounding; the two registrations are the same computations either way).
A label that the warp makes vanish from the follow-up grid keeps ``r = r_fwd`` and is listed in
the meta data under ``forward_only_labels``.

The first row is always the whole brain, ``label`` ``"brain"`` (0 is background in label maps,
so it is not reused), with the same formula over: the union of the labelled structures (each
scan's label map as above) when there is a segmentation; otherwise each scan's own
:func:`~regsuite.evaluation.volumes.brain_mask` (its non-zero voxels when it has a zero
background, as skull-stripped scans do, else its Otsu foreground), the only row then. (A scan's
non-zero voxels are not the same anatomy on a resampled rescan: interpolation grows them by a
shell of about 100 mL on a 1 mm brain, which biased the whole-brain change by about 1 %.)

Outputs in ``output_dir`` (created; all moved into place together at the end, nothing written
on failure; inputs never written): ``change.json`` (``rows`` and ``meta``), ``change.csv`` (the
same rows), ``jacobian.nii.gz`` and ``log_jacobian.nii.gz`` (float32, baseline grid: the
symmetric ``J(x) = sqrt(J_fwd(x) / J_bwd(T_fwd(x)))``, which equals ``J_fwd`` for an exactly
inverse-consistent pair; Jacobians below 1e-6 are raised to 1e-6 first; the table comes from the
label means above, not from this map), ``transform.h5`` (baseline -> follow-up: the forward
registration), ``inverse_transform.h5`` (follow-up -> baseline: the backward registration, as
registered) and ``change.png`` (``change_percent`` per label, the 20 largest ``|change|``).
When the preset's result is an affine followed by one velocity field (``brain-mri`` and the
other ``svf`` and network presets) or an affine alone (:func:`halfway_kind`), the halfway space
of the forward registration ``T_fwd = A o exp(v)`` is written too, where the symmetric velocity
update meets: ``halfway_to_baseline.h5`` (``exp(-v/2) o A^(-1/2)``) and
``halfway_to_followup.h5`` (``A o exp(v/2) o A^(-1/2)``), both maps from the halfway space, so
``sitk.Resample(scan, reference, map)`` brings each scan there, each moved by half the change
(:func:`~regsuite.population.maps.halfway_transforms`; the baseline grid is a fair reference).

Example:
    >>> summary = measure_change("baseline.nii.gz", "followup.nii.gz", "change", segment="aseg.nii.gz",
    ...                          labels="FreeSurferColorLUT.txt")  # doctest: +SKIP
    >>> summary["rows"][0]["label"]  # doctest: +SKIP
    'brain'
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import geometry_differences
from ..io.atomic import atomic_output
from ..io.images import read_image, read_label_image, write_image
from ..io.transforms import read_transform, write_transform
from ..io.safety import check_distinct
from .runner import Runner, TaskOutcome, make_runner
from .steps import write_json_atomic
from .tasks import Task
from .workspace import open_workspace, preset_argument

__all__ = ["measure_change", "change_tasks", "read_label_table", "write_change_csv", "write_change_chart",
           "halfway_kind", "OUTPUTS", "HALFWAY_OUTPUTS", "BRAIN_LABEL", "CHART_LABELS"]

#: The files ``measure_change`` writes into its output folder.
OUTPUTS = {"json": "change.json", "csv": "change.csv", "jacobian": "jacobian.nii.gz",
           "log_jacobian": "log_jacobian.nii.gz", "transform": "transform.h5",
           "inverse": "inverse_transform.h5", "chart": "change.png"}
#: The halfway space's two maps, written too when the preset's result is ``A o exp(v)`` or linear
#: (:func:`halfway_kind`; see :func:`~regsuite.population.maps.halfway_transforms`).
HALFWAY_OUTPUTS = {"halfway_baseline": "halfway_to_baseline.h5", "halfway_followup": "halfway_to_followup.h5"}
#: ``label`` of the whole-brain row.
BRAIN_LABEL = "brain"
#: At most this many labels (largest ``|change_percent|``) in ``change.png``.
CHART_LABELS = 20

Progress = Callable[[int, int, TaskOutcome], None]


def read_label_table(path: str | os.PathLike[str]) -> dict[int, str]:
    """Label names from a FreeSurfer/Slicer colour table: lines ``value name [r g b [a]]``.

    Blank lines and ``#`` comments are skipped; a value given twice, a non-integer value, a
    missing name or a non-numeric colour is refused (one line naming the file and line).

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "lut.txt")
        >>> _ = Path(path).write_text("# value name r g b a\\n0 Unknown 0 0 0 0\\n17 Left-Hippocampus 220 216 20 0\\n")
        >>> read_label_table(path)
        {0: 'Unknown', 17: 'Left-Hippocampus'}
    """
    location = Path(path)
    try:
        text = location.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise InputError(f"label table '{path}' does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"label table '{path}' cannot be read ({getattr(error, 'strerror', None) or error})") from None
    names: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"label table '{path}' line {number}"
        try:
            value = int(fields[0])
        except ValueError:
            raise InputError(f"{where}: '{fields[0]}' is not a whole-number label value") from None
        if len(fields) < 2:
            raise InputError(f"{where}: label {value} has no name (expected 'value name r g b a')")
        if len(fields) not in (2, 5, 6):
            raise InputError(f"{where}: {len(fields)} fields; expected 'value name r g b a'")
        try:
            [float(item) for item in fields[2:]]
        except ValueError:
            raise InputError(f"{where}: the colour '{' '.join(fields[2:])}' is not numeric") from None
        if value in names:
            raise InputError(f"{where}: label {value} is named twice")
        names[value] = fields[1]
    if not names:
        raise InputError(f"label table '{path}' names no label")
    return names


def halfway_kind(config: Any) -> str | None:
    """How a preset's result splits into halves: ``"linear"`` (one affine), ``"velocity"``
    (linear stages, then one stationary velocity field: an ``svf`` stage, a network stage run
    once, or a network stage refined by an ``svf`` stage that starts from it) or None (a
    B-spline, a cascade, several fields: no halfway maps are written)."""
    stages = list(config.stages)
    if all(stage.is_linear for stage in stages):
        return "linear"
    first = next(i for i, stage in enumerate(stages) if not stage.is_linear)
    deformable = stages[first:]
    if any(stage.is_linear for stage in deformable) or any(s.is_network and s.cascade != 1 for s in deformable):
        return None
    if len(deformable) == 1 and (deformable[0].model == "svf" or deformable[0].is_network):
        return "velocity"
    if (len(deformable) == 2 and deformable[0].is_network and deformable[1].model == "svf"
            and deformable[1].initial_field == "previous"):
        return "velocity"
    return None


def change_tasks(baseline: str, followup: str, work: Path, preset: Any, invertible: bool, seed: int = 0,
                 device: str = "cpu", halfway: str | None = None) -> list[Task]:
    """The two registrations: ``forward`` (baseline fixed) and ``backward`` (follow-up fixed).

    The forward task also writes its inverse when the preset has one (to warp the baseline
    segmentation onto the follow-up grid), and its affine (and velocity field) when the halfway
    maps are asked for (``halfway``: :func:`halfway_kind`).
    """
    tasks = []
    for key, fixed, moving in (("forward", baseline, followup), ("backward", followup, baseline)):
        folder = work / key
        folder.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"fixed": fixed, "moving": moving, "preset": preset,
                                  "transform": str(folder / "transform.h5"), "seed": seed, "device": device}
        if key == "forward" and invertible:
            kwargs["inverse"] = str(folder / "inverse.h5")
        if key == "forward" and halfway is not None:
            kwargs["affine"] = str(folder / "affine.h5")
            if halfway == "velocity":
                kwargs["velocity"] = str(folder / "velocity.nii.gz")
        outputs = tuple(kwargs[name] for name in ("transform", "inverse", "affine", "velocity") if name in kwargs)
        tasks.append(Task(f"register-{key}", "regsuite.population.steps:register_pair", kwargs, outputs,
                          str(work / "tasks" / f"register-{key}.json")))
    return tasks


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_output_dir(folder: str) -> Path:
    location = Path(folder)
    if location.exists() and not location.is_dir():
        raise InputError(f"output folder '{folder}' is an existing file")
    existing = location
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"output folder '{folder}': '{existing}' is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"output folder '{folder}': '{existing}' is not writable")
    return location


def _check_grid(image: sitk.Image, reference: sitk.Image, role: str, path: str, grid: str) -> None:
    differences = geometry_differences(image, reference)
    if differences:
        raise InputError(f"{role} '{path}' is not on the {grid} grid: " + "; ".join(differences))


def _label_set(labels: sitk.Image, role: str, path: str) -> set[int]:
    values = {int(v) for v in np.unique(sitk.GetArrayViewFromImage(labels))} - {0}
    if not values:
        raise InputError(f"{role} '{path}' is empty (no non-zero label)")
    return values


def measure_change(baseline: str, followup: str, output_dir: str, *, segment: str | None = None,
                   followup_segment: str | None = None, labels: str | None = None, preset: Any = "brain-mri",
                   runner: Runner | None = None, work_dir: str | None = None, resume: bool = False,
                   progress: Progress | None = None, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Measure the volume change from ``baseline`` to ``followup``; write the outputs into ``output_dir``.

    ``segment``: label map on the baseline grid (integer, or float holding whole numbers);
    ``followup_segment``: the same labels on the follow-up grid (default: ``segment`` warped
    there); ``labels``: a colour table naming the labels. Returns what ``change.json`` holds:
    ``rows`` (whole brain first, then each label) and ``meta``. ``work_dir`` keeps the two
    registrations (``resume=True`` skips the finished one); without it a temporary folder is used.
    """
    start = time.perf_counter()
    if resume and work_dir is None:
        raise InputError("--resume needs --work-dir (the folder of the run to continue)")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63:
        raise InputError(f"--seed must be a whole number from 0 to 2**63 - 1, got {seed!r}")
    if device not in ("cpu", "cuda", "auto"):
        raise InputError(f"--device must be cpu, cuda or auto, got {device!r}")
    if followup_segment is not None and segment is None:
        raise InputError("--followup-segment needs --segment (the same labels on the baseline scan)")
    if labels is not None and segment is None:
        raise InputError("--labels names the labels of --segment; give --segment too")
    baseline_image = read_image(baseline, "baseline image")
    followup_image = read_image(followup, "follow-up image")
    if _same_file(baseline, followup):
        raise InputError(f"baseline and follow-up are the same file '{baseline}'; give two scans")
    baseline_path, followup_path = str(Path(baseline).resolve()), str(Path(followup).resolve())
    baseline_labels = followup_labels = None
    if segment is not None:
        baseline_labels = read_label_image(segment, "baseline segmentation")
        _check_grid(baseline_labels, baseline_image, "baseline segmentation", segment, "baseline")
        present = _label_set(baseline_labels, "baseline segmentation", segment)
        if followup_segment is not None:
            followup_labels = read_label_image(followup_segment, "follow-up segmentation")
            _check_grid(followup_labels, followup_image, "follow-up segmentation", followup_segment, "follow-up")
            other = _label_set(followup_labels, "follow-up segmentation", followup_segment)
            for label in sorted(present ^ other)[:1]:
                empty = "follow-up" if label in present else "baseline"
                raise InputError(f"label {label} is empty in the {empty} segmentation; both segmentations "
                                 "need the same labels")
    names = read_label_table(labels) if labels is not None else {}
    folder = _check_output_dir(output_dir)
    preset_value = preset_argument(preset)
    from ..engine.config import load_preset

    preset_config = load_preset(preset_value)
    invertible, halfway = preset_config.is_invertible, halfway_kind(preset_config)
    finals = {key: str(folder / name)
              for key, name in {**OUTPUTS, **(HALFWAY_OUTPUTS if halfway else {})}.items()}
    check_distinct([baseline, followup, segment, followup_segment, labels,
                    preset if isinstance(preset, str) and Path(preset).is_file() else None], list(finals.values()))
    manifest = {"workflow": "change", "baseline": baseline_path, "followup": followup_path, "preset": preset_value,
                "seed": seed, "device": device}
    with ExitStack() as stack:
        if work_dir is None:
            work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="regsuite-change-"))
        work = open_workspace(work_dir, manifest, resume)
        if runner is None:
            runner = stack.enter_context(make_runner())
        outcomes = runner.run(change_tasks(baseline_path, followup_path, work, preset_value, invertible, seed,
                                           device, halfway), progress)
        registrations = {outcome.key[len("register-"):]: outcome.result for outcome in outcomes}
        forward = read_transform(work / "forward" / "transform.h5")
        backward = read_transform(work / "backward" / "transform.h5")
        warp_back = read_transform(work / "forward" / "inverse.h5") if invertible else backward
        result = _combine(baseline_image, followup_image, forward, backward, warp_back, baseline_labels,
                          followup_labels, names)
        if halfway is not None:
            from .maps import halfway_transforms, read_image_vector

            velocity = read_image_vector(str(work / "forward" / "velocity.nii.gz")) if halfway == "velocity" else None
            result["halfway"] = halfway_transforms(read_transform(work / "forward" / "affine.h5"), velocity)
        meta = {"workflow": "change", "baseline": baseline_path, "followup": followup_path,
                "segment": str(Path(segment).resolve()) if segment else None,
                "followup_segment": str(Path(followup_segment).resolve()) if followup_segment else (
                    None if segment is None else "baseline segmentation warped to the follow-up (nearest neighbour, "
                    + ("inverse of the forward transform)" if invertible else "backward transform)")),
                "labels": str(Path(labels).resolve()) if labels else None,
                "preset": preset if isinstance(preset, str) else preset_value.get("name", "custom"),
                "seed": seed, "device": device, "runner": runner.description,
                "method": "r = sqrt(r_fwd / r_bwd); r_fwd, r_bwd: mean Jacobian determinant of the forward "
                          "(baseline -> follow-up) and backward registration over the baseline and follow-up "
                          "label; followup_ml = baseline_ml * r",
                "jacobian_map": "sqrt(J_fwd(x) / J_bwd(T_fwd(x))) on the baseline grid",
                "halfway": ("halfway_to_baseline.h5 = exp(-v/2) o A^(-1/2), halfway_to_followup.h5 = "
                            "A o exp(v/2) o A^(-1/2), from the forward registration T_fwd = A o exp(v)"
                            if halfway == "velocity" else "halfway_to_baseline.h5 = A^(-1/2), halfway_to_followup.h5 "
                            "= A^(1/2), from the forward registration T_fwd = A" if halfway == "linear" else
                            "not written: the preset's result is not an affine followed by one velocity field"),
                "registrations": registrations, **result["meta"]}
        meta["seconds"] = round(time.perf_counter() - start, 3)
        summary = {"rows": result["rows"], "meta": meta}
        _publish(folder, finals, summary, result, work)
    return summary


def _combine(baseline: sitk.Image, followup: sitk.Image, forward: sitk.Transform, backward: sitk.Transform,
             warp_back: sitk.Transform, baseline_labels: sitk.Image | None, followup_labels: sitk.Image | None,
             names: Mapping[int, str]) -> dict[str, Any]:
    """The rows, the symmetric Jacobian map and their meta data from the two registrations."""
    from ..evaluation.jacobian import jacobian_determinant
    from ..evaluation.volumes import (brain_mask, change_row, jacobian_integrals, region_integral,
                                      symmetric_jacobian, symmetric_ratio)

    j_forward = jacobian_determinant(forward, baseline)
    j_backward = jacobian_determinant(backward, followup)
    if baseline_labels is not None and followup_labels is None:
        followup_labels = sitk.Resample(baseline_labels, followup, warp_back, sitk.sitkNearestNeighbor, 0,
                                        baseline_labels.GetPixelID())
    if baseline_labels is not None:
        # the brain is the union of the labelled structures, the same anatomy on both scans
        # (a scan's non-zero voxels shift with each resampling: a shell of about 100 mL at 1 mm)
        baseline_mask, followup_mask = (sitk.Cast(labels > 0, sitk.sitkUInt8)
                                        for labels in (baseline_labels, followup_labels))
        baseline_rule = followup_rule = "union of the labels"
    else:
        baseline_mask, baseline_rule = brain_mask(baseline)
        followup_mask, followup_rule = brain_mask(followup)
    forward_brain = region_integral(baseline_mask, j_forward)
    backward_brain = region_integral(followup_mask, j_backward)
    rows = [change_row(BRAIN_LABEL, forward_brain.volume_ml,
                       symmetric_ratio(forward_brain.ratio, backward_brain.ratio), name="whole brain",
                       forward_ratio=forward_brain.ratio, backward_ratio=backward_brain.ratio)]
    forward_only: list[int] = []
    if baseline_labels is not None:
        forward_parts = jacobian_integrals(baseline_labels, j_forward)
        backward_parts = jacobian_integrals(followup_labels, j_backward)
        for label, part in sorted(forward_parts.items()):
            other = backward_parts.get(label)
            if other is None:
                forward_only.append(label)
                rows.append(change_row(label, part.volume_ml, part.ratio, name=names.get(label),
                                       forward_ratio=part.ratio))
                continue
            rows.append(change_row(label, part.volume_ml, symmetric_ratio(part.ratio, other.ratio),
                                   name=names.get(label), forward_ratio=part.ratio, backward_ratio=other.ratio))
    backward_here = sitk.Resample(j_backward, baseline, forward, sitk.sitkLinear, 1.0, sitk.sitkFloat32, True)
    jacobian = symmetric_jacobian(j_forward, backward_here)
    log_jacobian = sitk.GetImageFromArray(np.log(sitk.GetArrayViewFromImage(jacobian)).astype(np.float32))
    log_jacobian.CopyInformation(jacobian)
    folded = {"forward": int(np.count_nonzero(sitk.GetArrayViewFromImage(j_forward) <= 0)),
              "backward": int(np.count_nonzero(sitk.GetArrayViewFromImage(j_backward) <= 0))}
    meta = {"brain_region": {"baseline": baseline_rule, "followup": followup_rule},
            "folded_voxels": folded, "forward_only_labels": forward_only}
    return {"rows": rows, "meta": meta, "jacobian": jacobian, "log_jacobian": log_jacobian}


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def write_change_csv(rows: Sequence[Mapping[str, Any]], path: str) -> None:
    """``rows`` as CSV (columns :data:`~regsuite.evaluation.volumes.ROW_KEYS`; floats as Python's
    shortest exact text, so reading them back gives the JSON numbers; missing values empty).

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "change.csv")
        >>> write_change_csv([{"label": "brain", "change_percent": -0.5}], path)
        >>> Path(path).read_text().splitlines()[1]
        'brain,,,,,-0.5,,'
    """
    from ..evaluation.volumes import ROW_KEYS

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ROW_KEYS)
    for row in rows:
        writer.writerow([_csv_value(row.get(key)) for key in ROW_KEYS])
    with atomic_output(path) as tmp:
        Path(tmp).write_text(buffer.getvalue())


def write_change_chart(rows: Sequence[Mapping[str, Any]], path: str, limit: int = CHART_LABELS) -> None:
    """A bar chart of ``change_percent``: the whole brain, then the ``limit`` labels of largest
    ``|change|`` in label order (matplotlib's Agg canvas, no pyplot state).

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "change.png")
        >>> write_change_chart([{"label": "brain", "name": "whole brain", "change_percent": -0.5},
        ...                     {"label": 17, "name": None, "change_percent": -4.0}], path)
        >>> Path(path).read_bytes()[:4] == b"\\x89PNG"
        True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    brain = [row for row in rows if row["label"] == BRAIN_LABEL]
    others = [row for row in rows if row["label"] != BRAIN_LABEL]
    largest = sorted(others, key=lambda row: -abs(row["change_percent"]))[:limit]
    shown = brain + [row for row in others if any(row is kept for kept in largest)]
    texts = [str(row.get("name") or row["label"]) for row in shown]
    values = [float(row["change_percent"]) for row in shown]
    figure = Figure(figsize=(max(4.0, 1.5 + 0.45 * len(shown)), 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = ["#555555" if row["label"] == BRAIN_LABEL else ("#c0392b" if value < 0 else "#2471a3")
               for row, value in zip(shown, values)]
    axes.bar(range(len(shown)), values, color=colours)
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set_xticks(range(len(shown)), texts, rotation=60 if len(shown) > 4 else 0, ha="right" if len(shown) > 4
                    else "center", fontsize=8)
    axes.set_ylabel("change (%)")
    more = f" ({limit} largest of {len(others)} labels)" if len(others) > limit else ""
    axes.set_title(f"Volume change, follow-up vs baseline{more}", fontsize=9)
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png")


def _publish(folder: Path, finals: Mapping[str, str], summary: dict[str, Any], result: Mapping[str, Any],
             work: Path) -> None:
    """Write every output into a staging file, then move them all into ``folder`` together."""
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with ExitStack() as stack:
            staged = {key: stack.enter_context(atomic_output(path)) for key, path in finals.items()}
            write_json_atomic(_plain(summary), staged["json"])
            write_change_csv(summary["rows"], staged["csv"])
            write_image(result["jacobian"], staged["jacobian"])
            write_image(result["log_jacobian"], staged["log_jacobian"])
            shutil.copyfile(work / "forward" / "transform.h5", staged["transform"])
            shutil.copyfile(work / "backward" / "transform.h5", staged["inverse"])
            if "halfway" in result:
                to_baseline, to_followup = result["halfway"]
                write_transform(to_baseline, staged["halfway_baseline"])
                write_transform(to_followup, staged["halfway_followup"])
            write_change_chart(summary["rows"], staged["chart"])
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _plain(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
