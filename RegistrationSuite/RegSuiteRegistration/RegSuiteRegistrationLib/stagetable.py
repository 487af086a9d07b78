"""The Advanced section's stage table: a preset's stages as rows of text cells, and back.

A row has five cells: model, metric, levels (``shrink/smoothing/iterations`` separated by ``;``),
the summed regularization weight and the step size. A learned stage (:data:`LEARNED_STAGES`)
names its model in the Levels cell instead, followed by `` xK`` for a network run K times as a
recursive cascade (e.g. ``brain-t1-voxelmorph-cascade x2``).
"""

from __future__ import annotations

import json
import re
from typing import Any

#: stages that run a shipped network; the stage table names their model in the Levels cell
LEARNED_STAGES = ("network", "affine-network")
#: a network stage's Levels cell: the model, then `` xK`` for a cascade of K runs
_CASCADE = re.compile(r"^(?P<network>.*?)\s+x(?P<runs>\d+)$")


def _errors() -> Any:
    from regsuite import errors  # noqa: PLC0415  (lazy: keep module load light)

    return errors


def presetStagesToRows(preset: dict[str, Any]) -> list[dict[str, str]]:
    """The stages of a preset dict as table rows (model, metric, levels, regularization, step size).

    A learned stage (``network``, ``affine-network``) has no levels, regularization or step: its
    Levels cell names the learned model (e.g. ``brain-t1-hypermorph``; a cascade adds `` x2``) and
    the other two are empty.

    Example:
        >>> rows = presetStagesToRows({"stages": [{"model": "rigid", "metric": "ncc", "learning_rate": 1.0,
        ...     "levels": [{"shrink": 4, "smoothing": 2, "iterations": 50}], "regularization": {}}]})
        >>> rows[0]["levels"]
        '4/2/50'
    """
    rows = []
    for stage in preset.get("stages", []):
        if stage.get("model") in LEARNED_STAGES:
            runs = int(stage.get("cascade", 1) or 1)
            rows.append({"model": stage["model"], "metric": str(stage.get("metric", "ncc")),
                         "levels": str(stage.get("network", "")) + (f" x{runs}" if runs > 1 else ""),
                         "regularization": "", "step": ""})
            continue
        levels = "; ".join(f"{_num(level['shrink'])}/{_num(level['smoothing'])}/{int(level['iterations'])}"
                           for level in stage.get("levels", []))
        weight = sum(float(v) for v in (stage.get("regularization") or {}).values())
        rows.append({"model": str(stage["model"]), "metric": str(stage.get("metric", "ncc")), "levels": levels,
                     "regularization": _num(weight), "step": _num(float(stage.get("learning_rate", 1.0)))})
    return rows


def rowsToPresetStages(preset: dict[str, Any], rows: list[dict[str, str]]) -> dict[str, Any]:
    """A copy of ``preset`` with its stages updated from table ``rows`` (see :func:`presetStagesToRows`).

    Raises :class:`regsuite.errors.PresetError` naming the row and column of a bad cell.
    """
    errors = _errors()
    result = json.loads(json.dumps(preset))
    stages = result.get("stages", [])
    if len(rows) != len(stages):
        raise errors.PresetError(f"the table has {len(rows)} rows but the preset has {len(stages)} stages")
    for number, (row, stage) in enumerate(zip(rows, stages), start=1):
        where = f"stage {number}"
        stage["model"] = row["model"].strip()
        stage["metric"] = row["metric"].strip()
        if stage["model"] in LEARNED_STAGES:  # its Levels cell names the learned model (and a cascade)
            text = row["levels"].strip()
            cascade = _CASCADE.match(text) if stage["model"] == "network" else None
            stage["network"] = cascade["network"] if cascade else text
            if stage["model"] == "network":
                stage["cascade"] = int(cascade["runs"]) if cascade else 1
            continue
        levels = []
        previous = stage.get("levels") or []  # a level's own options (step, smoothing, ...) stay with its position
        for text in filter(None, (part.strip() for part in row["levels"].split(";"))):
            values = text.split("/")
            try:
                shrink, smoothing, iterations = float(values[0]), float(values[1]), int(values[2])
            except (ValueError, IndexError):
                raise errors.PresetError(f"{where}: level '{text}' must be shrink/smoothing/iterations, "
                                         "e.g. 4/2/100") from None
            level = dict(previous[len(levels)]) if len(levels) < len(previous) else {}
            levels.append({**level, "shrink": shrink, "smoothing": smoothing, "iterations": iterations})
        if not levels:
            raise errors.PresetError(f"{where}: at least one level shrink/smoothing/iterations is needed")
        stage["levels"] = levels
        try:
            weight = float(row["regularization"])
            stage["learning_rate"] = float(row["step"])
        except ValueError:
            raise errors.PresetError(f"{where}: regularization weight and step size must be numbers") from None
        regularization = stage.get("regularization") or {}
        if regularization:
            total = sum(float(v) for v in regularization.values()) or 1.0
            stage["regularization"] = {k: float(v) * weight / total for k, v in regularization.items()} if weight else {}
        elif weight:
            stage["regularization"] = {"diffusion": weight}
    from regsuite.engine.config import load_preset  # noqa: PLC0415

    return load_preset(result).to_dict()  # validates every field


def _num(value: float) -> str:
    return f"{float(value):g}"
