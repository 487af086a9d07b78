"""The layer table of ``docs/ARCHITECTURE.md`` is true: every import in the package follows it.

Each source file's imports are read with ``ast`` (nothing is imported), relative imports are
resolved, and every ``regsuite`` part a file imports must be one its layer may import, at module
level or (where the table says "lazily") inside a function. ``RULES`` below is that table; a
change of layering has to change both, and the last test checks that the document still names
every part.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "RegistrationSuite"
PACKAGE = SOURCE / "regsuite"
SLICER = "Slicer modules"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"

FOUNDATION = {"errors", "geometry"}
#: part -> (regsuite parts it may import at module level, parts it may import only lazily);
#: "__init__" (the package root, ``__version__``) may be imported by anyone
RULES: dict[str, tuple[set[str], set[str]]] = {
    "errors": (set(), set()),
    "geometry": ({"errors"}, set()),
    "io": (FOUNDATION, set()),
    "engine": (FOUNDATION | {"io"}, {"learning"}),
    "learning": (FOUNDATION | {"engine"}, set()),
    "evaluation": (FOUNDATION | {"io"}, set()),
    "visualize": (FOUNDATION | {"io"}, set()),
    "data": ({"errors"}, set()),
    "cli": (FOUNDATION | {"io"}, {"engine", "evaluation", "visualize", "data", "learning", "population"}),
    "__main__": ({"cli"}, set()),
    "jobs": (FOUNDATION, {"io", "engine"}),
    "mrml": (FOUNDATION | {"io"}, set()),
    "population": (FOUNDATION | {"io", "evaluation"}, {"engine"}),
    SLICER: (FOUNDATION | {"mrml"}, {"io", "evaluation", "jobs", "engine", "learning", "population"}),
}
#: the engine reads no files: only its driver checks inputs with regsuite.io
ENGINE_FILES_USING_IO = {"engine/registration.py"}
#: third-party packages only some parts may import (at any level)
#: (population: a task sets torch's thread count; the template's mean velocity is integrated by the engine's field)
RESTRICTED = {"torch": {"engine", "learning", "population"}, "vtk": {"mrml", SLICER}, "vtkmodules": {"mrml", SLICER},
              "slicer": {"mrml", SLICER}, "qt": {SLICER}, "ctk": {SLICER}}


def _part(path: Path) -> str:
    """Which row of the table a source file belongs to."""
    if PACKAGE not in path.parents:
        return SLICER
    first = path.relative_to(PACKAGE).parts[0]
    return first[:-3] if first.endswith(".py") else first


def _module_name(path: Path) -> list[str]:
    """Dotted name of a file as a list (``regsuite/io/images.py`` -> regsuite, io, images)."""
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(path: Path) -> list[tuple[str, bool]]:
    """``(absolute dotted name, lazy)`` for every import in ``path``; ``from X import a, b``
    gives ``X.a`` and ``X.b`` (a name may be a submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top = {id(node) for node in tree.body}
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path)[:-1]
    found = []
    for node in ast.walk(tree):
        lazy = id(node) not in top
        if isinstance(node, ast.Import):
            found.extend((alias.name, lazy) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.extend((f"{module}.{alias.name}", lazy) for alias in node.names)
    return found


def _regsuite_part(name: str) -> str | None:
    """The regsuite part a dotted name lies in (``regsuite.io.images.read_image`` -> io)."""
    pieces = name.split(".")
    if pieces[0] != "regsuite":
        return None
    if len(pieces) == 1 or not ((PACKAGE / pieces[1]).is_dir() or (PACKAGE / f"{pieces[1]}.py").is_file()):
        return "__init__"
    return pieces[1]


def _sources() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    files += sorted(path for folder in SOURCE.glob("RegSuite*") if folder.is_dir() for path in folder.rglob("*.py"))
    return files


SOURCES = _sources()


def test_every_part_has_a_rule():
    parts = {_part(path) for path in SOURCES} - {"__init__"}
    assert parts <= set(RULES), f"parts without a row in the layer table: {sorted(parts - set(RULES))}"
    assert len(SOURCES) > 50  # the walk found the package


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SOURCE)))
def test_imports_follow_the_layer_table(path):
    part = _part(path)
    eager, lazy_only = RULES.get(part, (set(), set()))
    for name, lazy in _imports(path):
        target = _regsuite_part(name)
        if target is None or target in (part, "__init__"):
            continue
        allowed = eager | lazy_only if lazy else eager
        assert target in allowed, (f"{path.relative_to(SOURCE)} imports {name} "
                                   f"{'inside a function' if lazy else 'at module level'}; "
                                   f"the {part} layer may not (see docs/ARCHITECTURE.md)")
        if part == "engine" and target == "io":
            assert path.relative_to(PACKAGE).as_posix() in ENGINE_FILES_USING_IO, \
                f"{path.relative_to(SOURCE)} imports {name}; only the engine's driver checks inputs with regsuite.io"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SOURCE)))
def test_heavy_third_party_imports_stay_in_their_layer(path):
    part = _part(path)
    for name, lazy in _imports(path):
        top = name.split(".")[0]
        if top in RESTRICTED:
            assert part in RESTRICTED[top], f"{path.relative_to(SOURCE)} imports {name}; only {RESTRICTED[top]} may"
            if part == "mrml":
                assert lazy, f"{path.relative_to(SOURCE)} imports {name} at module level; the bridge imports VTK/MRML lazily"


def test_geometry_needs_only_numpy():
    """The foundation stays importable anywhere (Slicer module load, the worker, the CLI)."""
    third_party = {name.split(".")[0] for name, _ in _imports(PACKAGE / "geometry.py")} - {"regsuite", "__future__", "typing"}
    assert third_party == {"numpy"}


def test_the_document_names_every_part():
    table = [line for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    text = "\n".join(table)
    for part in set(RULES) - {SLICER}:
        where = f"regsuite/{part}.py" if (PACKAGE / f"{part}.py").is_file() else f"regsuite/{part}/"
        assert where in text, f"the layer table of docs/ARCHITECTURE.md does not name {where}"
    assert "RegistrationSuite/RegSuiteRegistration/" in text and "RegistrationSuite/RegSuiteQuality/" in text
