"""Point sets (landmarks) in world LPS millimetres.

Read formats:

- elastix/transformix point files: a ``point`` or ``index`` line, the number of points, then
  one ``x y z`` line per point (``index`` = continuous voxel index of ``reference``);
- CSV: ``x,y,z`` columns with or without a header (world LPS); headers ``l,p,s`` or ``r,a,s``
  say the frame; a Slicer-style table with a ``label`` column and ``x,y,z`` is taken as RAS;
- Slicer ``.fcsv`` (RAS unless ``# CoordinateSystem`` says LPS) and ``.mrk.json``
  (``coordinateSystem`` of each markup, RAS by default).

RAS -> LPS negates x and y.

Example:
    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "p.txt")
    >>> write_points(np.array([[1.0, 2.0, 3.0]]), path)
    >>> read_points(path).tolist()
    [[1.0, 2.0, 3.0]]
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import ras_to_lps
from .atomic import atomic_output, split_suffix
from .images import index_to_world

PathLike = Union[str, "os.PathLike[str]"]


def read_points(path: PathLike, reference: sitk.Image | None = None,
                frame: str | None = None) -> np.ndarray:
    """Read a point file as an ``(N, 3)`` float array in world LPS mm.

    ``reference`` is needed for elastix ``index`` files. ``frame`` ("LPS" or "RAS") overrides
    the frame of CSV/``.fcsv``/``.mrk.json`` files.

    Example:
        >>> pts = read_points("landmarks.txt")  # doctest: +SKIP
    """
    location = Path(path)
    if not location.is_file():
        raise InputError(f"point file '{location}' does not exist")
    if frame is not None and frame.upper() not in ("LPS", "RAS"):
        raise InputError(f"point frame '{frame}' is not LPS or RAS")
    try:
        text = location.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"point file '{location}' cannot be read as text ({error})") from None
    _, suffix = split_suffix(location.name)
    suffix = suffix.lower()
    if suffix == ".mrk.json" or suffix == ".json":
        points = _read_markups_json(text, location, frame)
    elif suffix == ".fcsv":
        points = _read_fcsv(text, location, frame)
    elif suffix == ".csv":
        points = _read_csv(text, location, frame)
    else:
        first = _first_token(text)
        if first in ("point", "index"):
            points = _read_elastix(text, location, reference)
        else:
            points = _read_csv(text, location, frame)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise InputError(f"point file '{location}' holds no points")
    if not np.isfinite(points).all():
        raise InputError(f"point file '{location}' has NaN/Inf coordinates")
    return points


def _first_token(text: str) -> str:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped:
            return stripped.split()[0].lower()
    return ""


def _floats(values: Sequence[str], location: Path, line_number: int) -> list[float]:
    try:
        return [float(v) for v in values]
    except ValueError:
        raise InputError(f"point file '{location}' line {line_number}: non-numeric value in "
                         f"{' '.join(values)!r}") from None


def _read_elastix(text: str, location: Path, reference: sitk.Image | None) -> np.ndarray:
    lines = [(n + 1, line.split()) for n, line in enumerate(text.splitlines()) if line.strip()]
    kind = lines[0][1][0].lower()
    if len(lines) < 2 or len(lines[1][1]) != 1:
        raise InputError(f"point file '{location}': the line after '{kind}' must hold the number of points")
    try:
        count = int(lines[1][1][0])
    except ValueError:
        raise InputError(f"point file '{location}': point count {lines[1][1][0]!r} is not an integer") from None
    rows = lines[2:]
    if len(rows) != count:
        raise InputError(f"point file '{location}' announces {count} points but holds {len(rows)}")
    values = []
    for number, tokens in rows:
        if len(tokens) != 3:
            raise InputError(f"point file '{location}' line {number}: expected 3 coordinates, got {len(tokens)}")
        values.append(_floats(tokens, location, number))
    points = np.array(values, dtype=float).reshape(-1, 3)
    if kind == "index":
        if reference is None:
            raise InputError(f"point file '{location}' holds voxel indices; a reference image is needed")
        points = index_to_world(reference, points)
    return points


def _to_lps(points: np.ndarray, system: str) -> np.ndarray:
    return ras_to_lps(points) if system == "RAS" else points


def _read_csv(text: str, location: Path, frame: str | None) -> np.ndarray:
    comment_system = None
    body = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            comment_system = _system_from_comment(line) or comment_system
        elif line.strip():
            body.append(line)
    if not body:
        raise InputError(f"point file '{location}' holds no points")
    dialect_delimiter = ";" if body[0].count(";") > body[0].count(",") else ","
    rows = list(csv.reader(io.StringIO("\n".join(body)), delimiter=dialect_delimiter))
    header = [cell.strip().lower() for cell in rows[0]]
    has_header = any(_is_word(cell) for cell in header)
    system = "LPS"
    if has_header:
        columns, system = _columns_from_header(header, location)
        rows = rows[1:]
    else:
        columns = (0, 1, 2)
    if comment_system:
        system = comment_system
    if frame:
        system = frame.upper()
    values = []
    for offset, row in enumerate(rows):
        number = offset + (2 if has_header else 1)
        if len(row) <= max(columns):
            raise InputError(f"point file '{location}' row {number}: expected at least {max(columns) + 1} columns")
        if not has_header and len(row) != 3:
            raise InputError(f"point file '{location}' row {number}: expected 3 columns x,y,z, got {len(row)}")
        values.append(_floats([row[c].strip() for c in columns], location, number))
    return _to_lps(np.array(values, dtype=float).reshape(-1, 3), system)


def _is_word(cell: str) -> bool:
    try:
        float(cell)
        return False
    except ValueError:
        return bool(cell)


def _columns_from_header(header: list[str], location: Path) -> tuple[tuple[int, int, int], str]:
    for names, system in ((("l", "p", "s"), "LPS"), (("r", "a", "s"), "RAS"), (("x", "y", "z"), None)):
        if all(name in header for name in names):
            columns = tuple(header.index(name) for name in names)
            if system is None:
                system = "RAS" if "label" in header else "LPS"
            return columns, system  # type: ignore[return-value]
    raise InputError(f"point file '{location}': header {','.join(header)!r} has no x,y,z (or l,p,s / r,a,s) columns")


def _system_from_comment(line: str) -> str | None:
    match = re.match(r"\s*#\s*coordinatesystem\s*=\s*(\S+)", line, flags=re.IGNORECASE)
    if not match:
        return None
    value = match.group(1).upper()
    return {"0": "RAS", "RAS": "RAS", "1": "LPS", "LPS": "LPS"}.get(value)


def _read_fcsv(text: str, location: Path, frame: str | None) -> np.ndarray:
    system = "RAS"
    columns = (1, 2, 3)
    values = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            system = _system_from_comment(stripped) or system
            match = re.match(r"#\s*columns\s*=\s*(.*)", stripped, flags=re.IGNORECASE)
            if match:
                names = [name.strip().lower() for name in match.group(1).split(",")]
                if not all(name in names for name in ("x", "y", "z")):
                    raise InputError(f"point file '{location}': fcsv columns lack x,y,z")
                columns = (names.index("x"), names.index("y"), names.index("z"))
            continue
        row = next(csv.reader([stripped]))
        if len(row) <= max(columns):
            raise InputError(f"point file '{location}' line {number}: too few columns")
        values.append(_floats([row[c].strip() for c in columns], location, number))
    if frame:
        system = frame.upper()
    return _to_lps(np.array(values, dtype=float).reshape(-1, 3), system)


def _read_markups_json(text: str, location: Path, frame: str | None) -> np.ndarray:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"point file '{location}' is not valid JSON ({error.msg}, line {error.lineno})") from None
    markups = document.get("markups") if isinstance(document, dict) else None
    if not isinstance(markups, list):
        raise InputError(f"point file '{location}' has no 'markups' list")
    collected = []
    for number, markup in enumerate(markups, start=1):
        if not isinstance(markup, dict):
            raise InputError(f"point file '{location}': markup {number} is not a JSON object")
        system = str(markup.get("coordinateSystem", "RAS")).upper()
        if frame:
            system = frame.upper()
        if system not in ("RAS", "LPS"):
            raise InputError(f"point file '{location}': unknown coordinateSystem {system!r}")
        points = markup.get("controlPoints", []) or []
        if not isinstance(points, list):
            raise InputError(f"point file '{location}': 'controlPoints' of markup {number} is not a list")
        for point in points:
            position = point.get("position") if isinstance(point, dict) else None
            if not isinstance(position, list) or len(position) != 3:
                raise InputError(f"point file '{location}': control point without a 3D 'position'")
            try:
                if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in position):
                    raise TypeError
                xyz = np.array([float(v) for v in position])
            except (TypeError, OverflowError):
                raise InputError(f"point file '{location}': non-numeric control point position") from None
            collected.append(_to_lps(xyz, system))
    return np.array(collected, dtype=float).reshape(-1, 3)


def write_points(points: np.ndarray, path: PathLike, format: str = "elastix") -> None:
    """Write ``(N, 3)`` world LPS points atomically.

    ``format="elastix"`` writes ``point``, N, then N lines; ``format="csv"`` writes an
    ``x,y,z`` header (world LPS) and N rows.

    Example:
        >>> write_points(np.zeros((2, 3)), "points.csv", format="csv")  # doctest: +SKIP
    """
    array = np.asarray(points, dtype=float)
    if array.ndim != 2 or array.shape[1] != 3:
        raise InputError(f"points for '{path}' must be an (N, 3) array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InputError(f"points for '{path}' have NaN/Inf coordinates")
    if format == "elastix":
        lines = ["point", str(len(array))] + [" ".join(repr(float(v)) for v in row) for row in array]
    elif format == "csv":
        lines = ["x,y,z"] + [",".join(repr(float(v)) for v in row) for row in array]
    else:
        raise InputError(f"point format '{format}' is not 'elastix' or 'csv'")
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as stream:
            stream.write("\n".join(lines) + "\n")
