"""Any-contrast brain registration: a T1 moving brain onto a fixed brain of another MRI contrast.

On the learned models' validation pairs of OASIS-TRT-20 (fixed<-moving 8<-9, 9<-10, 10<-8: the
networks were trained on subjects 1-7 only), the moving image is always the moving subject's real
T1 (``t1weighted_brain.nii.gz``, skull-stripped) and the fixed image is the fixed subject in one
of these contrasts (``--contrasts``):

* ``t1``: the fixed subject's real T1 as is (the same-contrast reference);
* ``t2-like``: made from the fixed subject's own label map (``labels.DKT31.manual+aseg.nii.gz``)
  and brain mask (T1 > 0), see :func:`t2_like`: CSF and ventricles bright, grey matter mid,
  white matter dark; smoothed (sigma 1 mm) with a little noise;
* ``nonmonotonic``: a non-monotonic map of the fixed T1 intensity, see :func:`nonmonotonic`
  (grey matter darkest, white matter bright, CSF in between: no monotonic map relates it to
  the T1).

The synthesized fixed images are written once into ``--out/images/`` and registered from those
files. Every preset of ``--presets`` runs in this process through
``regsuite.engine.registration.register(fixed_path, moving_path, preset, threads=, device=, seed=0)``;
a preset that raises is recorded with its error and the others go on; warnings raised during the
call (e.g. :class:`regsuite.errors.InputWarning` when a T1-trained network sees another contrast)
are recorded per run. Each transform is scored exactly like the brain suite of
``benchmarks/run.py`` (:func:`benchmarks.suites.score_brain_transform`, against the real fixed T1
and the fixed and moving label maps: mean Dice over the labels present in both maps, SD of log|J|
and % J <= 0 inside the fixed brain, fixed T1 > 0), whatever contrast the fixed image had.

Times: ``seconds`` is the ``register`` call alone, measured with ``time.perf_counter`` in this
process (reading the two images and the preset included; no interpreter start, no torch import,
no transform writing), so it is shorter than the CLI's ``seconds`` in ``benchmarks/run.py`` and
only comparable within one run of this script. The first run of a preset in the process may
also pay one-time costs (e.g. loading a network's weights, CUDA start-up).

Run from the repository root (default: pairs 8-9, 9-10, 10-8 fixed-moving, contrasts t1,
t2-like, nonmonotonic, presets brain-any-contrast, brain-any-contrast-io, ct-mr,
brain-mri-voxelmorph)::

    python benchmarks/any_contrast.py --threads 2 --out benchmarks/results/any_contrast
    python benchmarks/any_contrast.py --pairs 8-9 --contrasts t1,t2-like --presets brain-any-contrast --device cuda
    python benchmarks/any_contrast.py --resume        # skip the successful runs of any_contrast.json

Writes into ``--out``: ``any_contrast.json`` (the options, the machine, the synthesized images,
one record per run and a summary; rewritten after each run, so an interrupted run keeps its
finished runs and ``--resume`` goes on from there), ``any_contrast.md`` (per preset and contrast
mean Dice ± sd over the pairs, SD log|J| and seconds; Dice(contrast) - Dice(t1) per preset; then
per pair) and ``any_contrast.png`` (grouped bars: mean Dice per preset and contrast).

Example:
    >>> parse_names("t1, nonmonotonic", CONTRASTS, "contrast")
    ['t1', 'nonmonotonic']
    >>> runs = [{"pair": "8-9", "preset": "p", "contrast": "t1", "status": "ok", "dice": 0.75},
    ...         {"pair": "8-9", "preset": "p", "contrast": "t2-like", "status": "ok", "dice": 0.5}]
    >>> dice_differences(runs, "p", "t2-like")
    [-0.25]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
for entry in (REPO, REPO / "RegistrationSuite"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from benchmarks import metrics, report, suites  # noqa: E402

CONTRASTS = ("t1", "t2-like", "nonmonotonic")
DEFAULT_PRESETS = ("brain-any-contrast", "brain-any-contrast-io", "ct-mr", "brain-mri-voxelmorph")
NAME = "any_contrast"

#: T2-like intensity of each FreeSurfer label group (aseg numbers; cortical labels are >= 1000).
#: Cerebellar cortex: 8/47 in FreeSurfer's aseg; this DKT31+aseg map (Mindboggle) labels it 6/45
#: ("Cerebellum-Exterior") and the vermis 630-632, so those count as cerebellar cortex as well.
CSF_LABELS = (4, 5, 14, 15, 24, 43, 44, 72)
SUBCORTICAL_GM_LABELS = (10, 11, 12, 13, 17, 18, 26, 28, 49, 50, 51, 52, 53, 54, 58, 60)
CEREBELLUM_CORTEX_LABELS = (8, 47, 6, 45, 630, 631, 632)
CEREBELLUM_WM_LABELS = (7, 46)
BRAINSTEM_LABELS = (16,)
T2_CSF, T2_CORTEX, T2_SUBCORTICAL, T2_CEREBELLUM_CORTEX = 1.0, 0.62, 0.55, 0.6
T2_CEREBELLUM_WM, T2_BRAINSTEM, T2_OTHER_LABEL, T2_WHITE_MATTER = 0.3, 0.35, 0.5, 0.3
T2_SMOOTHING_MM, T2_NOISE_SD = 1.0, 0.02
#: the grey-matter level (of the T1 scaled to [0, 1] between its 1st and 99th percentiles) that
#: :func:`nonmonotonic` sends to 0, and the distance from it that reaches 1
NONMONOTONIC_CENTER, NONMONOTONIC_WIDTH = 0.3, 0.7
#: per-run measures (record key, table header, decimals)
MEASURES = (("dice", "Dice", 4), ("sd_log_jac", "SD log\\|J\\|", 3), ("folding_percent", "J<=0 %", 3),
            ("seconds", "s", 1))


def _arrays(t1: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    values = sitk.GetArrayFromImage(t1).astype(np.float64)
    return values, values > 0


def _image_like(values: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.CopyInformation(reference)
    return image


def t2_like(t1: sitk.Image, labels: sitk.Image, seed: int = 0) -> sitk.Image:
    """A T2-like float32 image of the subject of ``t1`` (skull-stripped) and ``labels`` (its label map).

    Inside the brain mask (``t1 > 0``): CSF and ventricles (:data:`CSF_LABELS`) 1.0, cortical grey
    matter (labels >= 1000) 0.62, subcortical grey matter (:data:`SUBCORTICAL_GM_LABELS`) 0.55,
    cerebellar cortex (:data:`CEREBELLUM_CORTEX_LABELS`) 0.6, cerebellar white matter (7, 46) 0.3,
    brainstem (16) 0.35, any other label 0.5 and label 0 (the cerebral white matter, unlabelled in
    the DKT31+aseg map) 0.3; outside 0. Then Gaussian smoothing (sigma 1 mm, recursive), the mask
    again, and Gaussian noise of sd 0.02 inside the mask (``numpy.random.default_rng(seed)``).
    The result has the geometry of ``t1``. ``ValueError`` when the two grids differ.
    """
    if t1.GetSize() != labels.GetSize():
        raise ValueError(f"label map size {labels.GetSize()} differs from the T1's {t1.GetSize()}")
    _, mask = _arrays(t1)
    label = np.rint(sitk.GetArrayFromImage(labels)).astype(np.int64)
    values = np.full(label.shape, T2_OTHER_LABEL, dtype=np.float32)
    values[label == 0] = T2_WHITE_MATTER
    values[label >= 1000] = T2_CORTEX
    for group, value in ((CSF_LABELS, T2_CSF), (SUBCORTICAL_GM_LABELS, T2_SUBCORTICAL),
                         (CEREBELLUM_CORTEX_LABELS, T2_CEREBELLUM_CORTEX), (CEREBELLUM_WM_LABELS, T2_CEREBELLUM_WM),
                         (BRAINSTEM_LABELS, T2_BRAINSTEM)):
        values[np.isin(label, group)] = value
    values[~mask] = 0.0
    smoothed = sitk.SmoothingRecursiveGaussian(_image_like(values, t1), T2_SMOOTHING_MM)
    out = sitk.GetArrayFromImage(smoothed).astype(np.float32) * mask
    out[mask] += np.random.default_rng(seed).normal(0.0, T2_NOISE_SD, int(mask.sum())).astype(np.float32)
    return _image_like(out, t1)


def nonmonotonic(t1: sitk.Image) -> sitk.Image:
    """A non-monotonic float32 map of the intensity of ``t1`` (skull-stripped, background 0).

    ``t = (T1 - p1) / (p99 - p1)`` clipped to [0, 1], with p1 and p99 the 1st and 99th percentiles
    of the voxels > 0; the value is ``((t - 0.3) / 0.7) ** 2`` clipped to [0, 1] inside the mask
    (T1 > 0) and 0 outside: t near 0.3 goes dark, both ends bright. On OASIS-TRT-20 subject 8 the
    median t is 0.29 in the cortex, 0.81 in the white matter and 0.01 in the lateral ventricles,
    so the cortex goes dark (about 0), the white matter bright (about 0.53) and the ventricles
    mid-grey (about 0.17): neither the T1's order nor its inverse, grey matter darkest of all.
    The result has the geometry of ``t1``. ``ValueError`` when the brain has no intensity range.
    """
    values, mask = _arrays(t1)
    if not mask.any():
        raise ValueError("the T1 has no voxel > 0")
    low, high = np.percentile(values[mask], [1.0, 99.0])
    if not high > low:
        raise ValueError(f"the T1's 1st and 99th percentiles inside the brain are equal ({low:g})")
    t = np.clip((values - low) / (high - low), 0.0, 1.0)
    out = np.clip(((t - NONMONOTONIC_CENTER) / NONMONOTONIC_WIDTH) ** 2, 0.0, 1.0)
    out[~mask] = 0.0
    return _image_like(out, t1)


def parse_names(text: str, allowed: Optional[Sequence[str]], what: str) -> list[str]:
    """Comma-separated names (duplicates dropped), each in ``allowed`` unless it is None;
    ``ValueError`` with a one-line message otherwise."""
    names: list[str] = []
    for name in (part.strip() for part in text.split(",") if part.strip()):
        if allowed is not None and name not in allowed:
            raise ValueError(f"unknown {what} {name!r}; choose from {', '.join(allowed)}")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"no {what} given")
    return names


def subject_of(path: str) -> str:
    """``OASIS-TRT-20-8`` from ``.../OASIS-TRT-20-8/t1weighted_brain.nii.gz``."""
    return Path(path).parent.name


def fixed_image(case: suites.Case, contrast: str, folder: Path, made: dict[str, str]) -> str:
    """The path of the fixed image of ``case`` in ``contrast``; a synthesized one is written into
    ``folder`` the first time this process needs it (``made`` maps ``subject/contrast`` to it)."""
    if contrast == "t1":
        return case.fixed
    key = f"{subject_of(case.fixed)}/{contrast}"
    if key not in made:
        t1 = sitk.ReadImage(case.fixed, sitk.sitkFloat32)
        if contrast == "t2-like":
            image = t2_like(t1, sitk.ReadImage(case.extra["fixed_labels"]))
        elif contrast == "nonmonotonic":
            image = nonmonotonic(t1)
        else:
            raise ValueError(f"unknown contrast {contrast!r}")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{subject_of(case.fixed)}_{contrast}.nii.gz"
        tmp = folder / f".{path.name}.tmp.nii.gz"
        sitk.WriteImage(image, str(tmp))
        tmp.replace(path)
        made[key] = str(path)
    return made[key]


def run_one(case: suites.Case, contrast: str, preset: str, fixed_path: str, scored: tuple,
            threads: int, device: str) -> dict:
    """Register the moving T1 of ``case`` to ``fixed_path`` with ``preset`` and score the transform
    (``scored``: the real fixed T1 as float32, the fixed and the moving label maps)."""
    from regsuite.engine.registration import register  # noqa: PLC0415

    record: dict = {"pair": case.pair, "contrast": contrast, "preset": preset, "fixed_image": fixed_path,
                    "moving_image": case.moving, "load_avg_1min_before": os.getloadavg()[0]}
    step = "register"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            try:
                result = register(fixed_path, case.moving, preset, threads=threads, device=device, seed=0)
                record["seconds"] = time.perf_counter() - start
            finally:
                texts = [f"{w.category.__name__}: {w.message}" for w in caught]
                record["warnings"] = list(dict.fromkeys(texts))  # in order, each once
        record["engine_device"] = result.metrics.get("device")
        step = "score"
        scores = suites.score_brain_transform(result.transform, *scored)
        record.update({key: scores[key] for key in ("dice", "sd_log_jac", "folding_percent")})
        record["status"] = "ok"
    except Exception as error:  # noqa: BLE001 - a failed run is recorded, the others still run
        record["status"] = "error"
        record["error"] = f"{step}: {type(error).__name__}: {error}".splitlines()[0]
    return record


def _ok(runs: list[dict], preset: str, contrast: str) -> list[dict]:
    return [r for r in runs if r["preset"] == preset and r["contrast"] == contrast and r.get("status") == "ok"]


def dice_differences(runs: list[dict], preset: str, contrast: str) -> list[float]:
    """Dice(contrast) - Dice(t1) of ``preset``, per pair where both runs succeeded."""
    reference = {r["pair"]: r["dice"] for r in _ok(runs, preset, "t1")}
    return [round(r["dice"] - reference[r["pair"]], 10) for r in _ok(runs, preset, contrast)
            if r["pair"] in reference]


def _order(values: list[str], first: Sequence[str]) -> list[str]:
    return [v for v in first if v in values] + sorted(v for v in set(values) if v not in first)


def summary_rows(runs: list[dict], presets: Sequence[str] = (), contrasts: Sequence[str] = CONTRASTS) -> list[dict]:
    """Per preset and contrast: the successful pairs, mean and sample sd of each measure of
    :data:`MEASURES`, and the mean and sd of Dice(contrast) - Dice(t1) over the pairs."""
    out = []
    for preset in _order([r["preset"] for r in runs], presets):
        for contrast in _order([r["contrast"] for r in runs if r["preset"] == preset], contrasts):
            rows = _ok(runs, preset, contrast)
            entry: dict = {"preset": preset, "contrast": contrast, "pairs": len(rows),
                           "failed": sum(1 for r in runs if r["preset"] == preset and r["contrast"] == contrast
                                         and r.get("status") != "ok")}
            for key, _, _ in MEASURES:
                values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
                if values:
                    entry[f"{key}_mean"] = round(float(np.mean(values)), 10)
                    entry[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            if contrast != "t1":
                differences = dice_differences(runs, preset, contrast)
                if differences:
                    entry["dice_minus_t1_mean"] = round(float(np.mean(differences)), 10)
                    entry["dice_minus_t1_sd"] = float(np.std(differences, ddof=1)) if len(differences) > 1 else 0.0
                    entry["dice_minus_t1_pairs"] = len(differences)
            out.append(entry)
    return out


def _mean(rows: list[dict], key: str, decimals: int) -> str:
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float)) and np.isfinite(r[key])]
    return f"{np.mean(values):.{decimals}f}" if values else "-"


def markdown(payload: dict) -> str:
    """The ``any_contrast.md`` text: means per preset and contrast, differences to t1, per pair."""
    runs = payload["runs"]
    presets = _order([r["preset"] for r in runs], payload["presets"])
    contrasts = _order([r["contrast"] for r in runs], payload["contrasts"])
    pairs = _order([r["pair"] for r in runs], payload["pairs"])
    lines = ["# Any-contrast brain registration", "",
             f"Moving: the moving subject's real T1; fixed: the fixed subject in each contrast "
             f"({', '.join(contrasts) or '-'}); OASIS-TRT-20 pairs (fixed-moving): {', '.join(pairs) or '-'}. "
             f"Scored against the real fixed T1 and the label maps (mean Dice over the labels present in both "
             f"maps, SD log\\|J\\| and J<=0 % inside the fixed brain). Threads {payload.get('threads')}, device "
             f"{payload.get('device')}; seconds: the in-process `register` call (no interpreter start or torch "
             f"import, unlike `benchmarks/run.py`).", "",
             "Mean Dice ± sd over the pairs, mean SD log\\|J\\|, mean seconds (n = successful pairs when fewer "
             "than all):", ""]
    header = "| preset | " + " | ".join(f"{c} Dice | {c} SD log\\|J\\| | {c} s" for c in contrasts) + " |"
    lines += [header, "|---|" + "---|---|---|" * len(contrasts)]
    for preset in presets:
        cells = []
        for contrast in contrasts:
            rows = _ok(runs, preset, contrast)
            tried = sum(1 for r in runs if r["preset"] == preset and r["contrast"] == contrast)
            dice = report.summarize(rows, "dice", 4)
            if rows and len(rows) < tried:
                dice += f" (n={len(rows)})"
            cells += [dice if tried else "-", _mean(rows, "sd_log_jac", 3), _mean(rows, "seconds", 1)]
        lines.append(f"| {preset} | " + " | ".join(cells) + " |")
    others = [c for c in contrasts if c != "t1"]
    if "t1" in contrasts and others:
        lines += ["", "Dice(contrast) - Dice(t1), mean ± sd over the pairs where both ran:", "",
                  "| preset | " + " | ".join(f"{c} - t1" for c in others) + " |", "|---|" + "---|" * len(others)]
        for preset in presets:
            cells = []
            for contrast in others:
                differences = dice_differences(runs, preset, contrast)
                if not differences:
                    cells.append("-")
                elif len(differences) == 1:
                    cells.append(f"{differences[0]:+.4f}")
                else:
                    cells.append(f"{np.mean(differences):+.4f} ± {np.std(differences, ddof=1):.4f}")
            lines.append(f"| {preset} | " + " | ".join(cells) + " |")
    if runs:
        lines += ["", "Per pair, Dice / SD log\\|J\\| / J<=0 % / s:", "",
                  "| preset | contrast | " + " | ".join(pairs) + " |", "|---|---|" + "---|" * len(pairs)]
        for preset in presets:
            for contrast in contrasts:
                cells = []
                for pair in pairs:
                    run = next((r for r in runs if (r["preset"], r["contrast"], r["pair"]) == (preset, contrast, pair)),
                               None)
                    if run is None:
                        cells.append("-")
                    elif run.get("status") != "ok":
                        cells.append("failed")
                    else:
                        cells.append(f"{run['dice']:.4f} / {run['sd_log_jac']:.3f} / {run['folding_percent']:.3f} / "
                                     f"{run['seconds']:.1f}")
                if any(cell != "-" for cell in cells):
                    lines.append(f"| {preset} | {contrast} | " + " | ".join(cells) + " |")
    failed = [r for r in runs if r.get("status") != "ok"]
    if failed:
        lines += ["", "Failures:", ""]
        lines += [f"- {r['preset']}, {r['contrast']}, {r['pair']}: {r.get('error')}" for r in failed]
    warned = [r for r in runs if r.get("warnings")]
    if warned:
        lines += ["", "Warnings during the registration:", ""]
        for preset in presets:
            for contrast in contrasts:
                texts = list(dict.fromkeys(w for r in warned if (r["preset"], r["contrast"]) == (preset, contrast)
                                           for w in r["warnings"]))
                if texts:
                    where = [r["pair"] for r in warned if (r["preset"], r["contrast"]) == (preset, contrast)]
                    lines.append(f"- {preset}, {contrast} (pairs {', '.join(where)}): " + "; ".join(texts))
    if payload.get("images"):
        lines += ["", "Synthesized fixed images: " + ", ".join(f"`{Path(p).name}`" for p in payload["images"].values())
                  + " (in `images/`)."]
    machine = payload.get("machine") or {}
    lines += ["", f"Machine: {machine.get('cpu', '-')}, {machine.get('logical_cores', '-')} logical cores, "
              f"commit {machine.get('commit', '-')}.", ""]
    return "\n".join(lines)


def plot(payload: dict, path: Path) -> Optional[str]:
    """``any_contrast.png``: mean Dice per preset (groups) and contrast (bars), sd as error bars,
    the pairs as dots."""
    runs = [r for r in payload["runs"] if r.get("status") == "ok"]
    if not runs:
        return None
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    presets = _order([r["preset"] for r in runs], payload["presets"])
    contrasts = _order([r["contrast"] for r in runs], payload["contrasts"])
    width = 0.8 / len(contrasts)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.9 * len(presets) + 1.5), 4.2))
    for k, contrast in enumerate(contrasts):
        x_all, means, sds = [], [], []
        for i, preset in enumerate(presets):
            values = [r["dice"] for r in _ok(runs, preset, contrast)]
            if not values:
                continue
            x = i - 0.4 + width * (k + 0.5)
            x_all.append(x)
            means.append(float(np.mean(values)))
            sds.append(float(np.std(values, ddof=1)) if len(values) > 1 else 0.0)
            ax.scatter([x] * len(values), values, color="black", s=8, zorder=3)
        ax.bar(x_all, means, width * 0.95, yerr=sds, capsize=3, label=contrast, color=f"C{k}")
    ax.set_xticks(range(len(presets)))
    ax.set_xticklabels(presets, rotation=15, ha="right")
    ax.set_ylabel("mean Dice (fixed T1 labels)")
    ax.set_ylim(0.0, 1.0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="fixed contrast", fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    pairs = _order([r["pair"] for r in runs], payload["pairs"])
    ax.set_title(f"T1 moving onto another fixed contrast, pairs {', '.join(pairs)} (dots: pairs)", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def write(out: Path, payload: dict) -> None:
    """``any_contrast.json``, ``any_contrast.md`` (each written atomically) and ``any_contrast.png``."""
    out.mkdir(parents=True, exist_ok=True)
    payload["summary"] = summary_rows(payload["runs"], payload["presets"], payload["contrasts"])
    for name, text in ((f"{NAME}.json", json.dumps(payload, indent=2, default=str)),
                       (f"{NAME}.md", markdown(payload))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)
    plot(payload, out / f"{NAME}.png")


def _fail(message: str) -> int:
    print(f"any_contrast.py: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="validation",
                        help="fixed-moving subject pairs, comma-separated, or a set name of benchmarks/suites.py "
                             "(default: validation = 8-9,9-10,10-8)")
    parser.add_argument("--contrasts", default=",".join(CONTRASTS),
                        help=f"fixed contrasts, comma-separated from {', '.join(CONTRASTS)} (default: %(default)s)")
    parser.add_argument("--presets", default=",".join(DEFAULT_PRESETS),
                        help="comma-separated preset names or JSON files (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the engine (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="the shared data folder holding oasis_trt20/ (default: ../shared/data)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / NAME,
                        help="output folder (default: benchmarks/results/any_contrast)")
    parser.add_argument("--resume", action="store_true",
                        help=f"keep the runs of an existing {NAME}.json and skip those that succeeded "
                             "(failed ones run again)")
    args = parser.parse_args(argv)
    try:
        pairs = suites.parse_brain_pairs(args.pairs)
        contrasts = parse_names(args.contrasts, CONTRASTS, "contrast")
        presets = parse_names(args.presets, None, "preset")
    except ValueError as error:
        parser.error(str(error))
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if not args.data.is_dir():
        return _fail(f"data folder {args.data} not found (use --data)")
    cases = suites.cases("brain", args.data, None, pairs)
    for case in cases:
        for path in (case.fixed, case.moving, case.extra["fixed_labels"], case.extra["moving_labels"]):
            if not Path(path).is_file():
                return _fail(f"{path} not found (is --data {args.data} the shared data folder?)")
    from regsuite.engine.config import load_preset  # noqa: PLC0415
    from regsuite.engine.registration import resolve_device  # noqa: PLC0415
    from regsuite.errors import RegSuiteError  # noqa: PLC0415

    try:
        resolve_device(args.device)
    except RegSuiteError as error:
        parser.error(str(error).splitlines()[0])
    for preset in presets:  # a preset that does not load is said at once; its runs fail and are recorded
        try:
            load_preset(preset)
        except RegSuiteError as error:
            print(f"any_contrast.py: warning: {str(error).splitlines()[0]} (its runs will be recorded as failed)",
                  file=sys.stderr, flush=True)

    json_path = args.out / f"{NAME}.json"
    previous: list[dict] = []
    if args.resume and json_path.is_file():
        try:
            previous = json.loads(json_path.read_text())["runs"]
            if not all(isinstance(r, dict) and {"pair", "contrast", "preset"} <= r.keys() for r in previous):
                raise ValueError("a run lacks its pair, contrast or preset")
        except (OSError, ValueError, KeyError, TypeError) as error:
            return _fail(f"--resume: cannot read the runs of {json_path}: {type(error).__name__}: {error}")
    done = {(r["pair"], r["contrast"], r["preset"]) for r in previous if r.get("status") == "ok"}
    selected = {(case.pair, c, p) for case in cases for c in contrasts for p in presets}
    # kept: every successful run, and the failures of runs not selected now (the selected ones run again)
    kept = [r for r in previous if r.get("status") == "ok" or (r["pair"], r["contrast"], r["preset"]) not in selected]
    payload: dict = {"pairs": [case.pair for case in cases], "contrasts": contrasts, "presets": presets,
                     "threads": args.threads, "device": args.device, "seed": 0, "data": str(args.data),
                     "machine": report.machine_info(REPO), "images": {}, "runs": kept}
    for case in cases:
        todo = [(c, p) for c in contrasts for p in presets if (case.pair, c, p) not in done]
        if not todo:
            print(f"[{case.pair}] all runs already in {json_path}", flush=True)
            continue
        scored = (sitk.ReadImage(case.fixed, sitk.sitkFloat32), sitk.ReadImage(case.extra["fixed_labels"]),
                  sitk.ReadImage(case.extra["moving_labels"]))
        for contrast in dict.fromkeys(c for c, _ in todo):
            try:
                fixed_path = fixed_image(case, contrast, args.out / "images", payload["images"])
            except Exception as error:  # noqa: BLE001 - record the failure for every preset of it
                message = f"synthesis: {type(error).__name__}: {error}".splitlines()[0]
                for preset in (p for c, p in todo if c == contrast):
                    payload["runs"].append({"pair": case.pair, "contrast": contrast, "preset": preset,
                                            "status": "error", "error": message})
                print(f"[{case.pair}] {contrast}: {message}", flush=True)
                write(args.out, payload)
                continue
            for preset in (p for c, p in todo if c == contrast):
                print(f"[{case.pair}] {contrast} <- t1 with {preset} ...", flush=True)
                record = run_one(case, contrast, preset, fixed_path, scored, args.threads, args.device)
                payload["runs"].append(record)
                payload["implementations"] = dict(metrics.IMPLEMENTATION)
                if record["status"] == "ok":
                    print(f"[{case.pair}] {contrast} {preset}: Dice {record['dice']:.4f}, SD log|J| "
                          f"{record['sd_log_jac']:.3f}, J<=0 {record['folding_percent']:.3f} %, "
                          f"{record['seconds']:.1f} s" + (f", {len(record['warnings'])} warning(s)"
                                                          if record.get("warnings") else ""), flush=True)
                else:
                    print(f"[{case.pair}] {contrast} {preset} failed: {record['error']}", flush=True)
                write(args.out, payload)
                gc.collect()
    write(args.out, payload)
    print(f"results in {args.out / (NAME + '.md')}")
    return 0 if all(r.get("status") == "ok" for r in payload["runs"]
                    if (r["pair"], r["contrast"], r["preset"]) in selected) else 1


if __name__ == "__main__":
    sys.exit(main())
