"""The Slicer extension ships what it should: every module file listed in CMake, nothing listed twice
or missing, the engine's data globbed, extension metadata complete, and modules loadable without
PyTorch (no module-level torch import anywhere on a module file's import chain).

Every module folder ``RegistrationSuite/RegSuite*/`` is checked the same way, so a new module is
covered as soon as its folder exists.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "RegistrationSuite"
MODULE_DIRS = sorted(path for path in SOURCE.glob("RegSuite*") if path.is_dir())
WEIGHT_EXAMPLES = ("regsuite/models/voxelmorph/brain.pt", "regsuite/models/hypermorph/lung.pth")


# ---------------------------------------------------------------------- a little CMake reading
def _cmake_text(path: Path) -> str:
    """The file without comments (a '#' outside quotes starts a comment)."""
    lines = []
    for line in path.read_text().splitlines():
        quoted = False
        for index, char in enumerate(line):
            if char == '"':
                quoted = not quoted
            elif char == "#" and not quoted:
                line = line[:index]
                break
        lines.append(line)
    return "\n".join(lines)


def _calls(text: str, command: str) -> list[list[str]]:
    """Arguments of every call of ``command`` (case-insensitive), split like CMake, quotes removed."""
    pattern = re.compile(rf"\b{re.escape(command)}\s*\(([^)]*)\)", re.IGNORECASE)
    return [[token.strip('"') for token in re.findall(r'"[^"]*"|[^\s"]+', match)]
            for match in pattern.findall(text)]


def _expand(tokens: list[str], variables: dict[str, list[str]]) -> list[str]:
    """Expand ``${VAR}`` references; a token that is exactly one list variable becomes its items."""
    out = []
    for token in tokens:
        whole = re.fullmatch(r"\$\{(\w+)\}", token)
        if whole and whole.group(1) in variables:
            out.extend(variables[whole.group(1)])
        else:
            out.append(re.sub(r"\$\{(\w+)\}", lambda m: " ".join(variables.get(m.group(1), [m.group(0)])), token))
    return out


def _variables(text: str) -> dict[str, list[str]]:
    variables: dict[str, list[str]] = {}
    for args in _calls(text, "set"):
        if args:
            variables[args[0]] = _expand(args[1:], variables)
    return variables


def _keyword_args(args: list[str], keywords: set[str]) -> dict[str, list[str]]:
    """Group a macro's arguments under its keywords (options map to an empty list)."""
    groups: dict[str, list[str]] = {}
    current = None
    for arg in args:
        if arg in keywords:
            current = arg
            groups[current] = []
        elif current is not None:
            groups[current].append(arg)
    return groups


def _module_build(module_dir: Path) -> dict[str, list[str]]:
    assert (module_dir / "CMakeLists.txt").is_file(), f"{module_dir.name}/CMakeLists.txt is missing"
    text = _cmake_text(module_dir / "CMakeLists.txt")
    calls = _calls(text, "slicerMacroBuildScriptedModule")
    assert len(calls) == 1, f"{module_dir.name}/CMakeLists.txt needs one slicerMacroBuildScriptedModule(...)"
    args = _expand(calls[0], _variables(text))
    return _keyword_args(args, {"NAME", "SCRIPTS", "RESOURCES", "WITH_GENERIC_TESTS", "WITH_SUBDIR"})


def _glob_matches(pattern: str, path: str) -> bool:
    """CMake GLOB_RECURSE: the last component matches file names at any depth below the folder part."""
    folder, _, name = pattern.rpartition("/")
    return path.startswith(folder + "/") and fnmatch.fnmatchcase(path.rpartition("/")[2], name)


def _engine_globs() -> dict[str, list[str]]:
    text = _cmake_text(SOURCE / "CMakeLists.txt")
    globs = {}
    for args in _calls(text, "file"):
        if args and args[0] == "GLOB_RECURSE":
            patterns = [a for a in args[2:] if a not in ("RELATIVE", "${CMAKE_CURRENT_SOURCE_DIR}")]
            globs[args[1]] = patterns
    return globs


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG file"
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------------- what a module folder ships
def _shipped_scripts(module_dir: Path) -> set[str]:
    lib = module_dir / f"{module_dir.name}Lib"
    files = set(module_dir.glob("*.py")) | (set(lib.rglob("*.py")) if lib.is_dir() else set())
    return {path.relative_to(module_dir).as_posix() for path in files if "__pycache__" not in path.parts}


def _shipped_resources(module_dir: Path) -> set[str]:
    return {path.relative_to(module_dir).as_posix() for path in (module_dir / "Resources").rglob("*")
            if path.is_file() and not path.name.startswith(".") and "__pycache__" not in path.parts}


def test_there_are_module_folders():
    names = [path.name for path in MODULE_DIRS]
    assert "RegSuiteRegistration" in names, names


@pytest.mark.parametrize("module_dir", MODULE_DIRS, ids=lambda path: path.name)
def test_module_cmake_lists_every_shipped_file(module_dir):
    name = module_dir.name
    build = _module_build(module_dir)
    assert build.get("NAME") == [name]
    assert "WITH_GENERIC_TESTS" in build, f"{name}: add WITH_GENERIC_TESTS to slicerMacroBuildScriptedModule"
    # ctkMacroCompilePythonScript appends ".py" to a script name without it
    listed_scripts = [s if s.endswith(".py") else f"{s}.py" for s in build.get("SCRIPTS", [])]
    listed_resources = build.get("RESOURCES", [])
    for kind, listed, shipped in (("SCRIPTS", listed_scripts, _shipped_scripts(module_dir)),
                                  ("RESOURCES", listed_resources, _shipped_resources(module_dir))):
        assert len(listed) == len(set(listed)), f"{name}: {kind} lists a file twice"
        missing = sorted(shipped - set(listed))
        absent = sorted(set(listed) - shipped)
        assert not missing, f"{name}/CMakeLists.txt: add to {kind}: {missing}"
        assert not absent, f"{name}/CMakeLists.txt: {kind} lists files that do not exist: {absent}"


@pytest.mark.parametrize("module_dir", MODULE_DIRS, ids=lambda path: path.name)
def test_module_icon_ui_and_unittest(module_dir):
    name = module_dir.name
    icon = module_dir / "Resources" / "Icons" / f"{name}.png"
    assert icon.is_file(), f"{name}: the module icon Resources/Icons/{name}.png is missing"
    assert _png_size(icon) == (128, 128)
    source = (module_dir / f"{name}.py").read_text()
    assert (module_dir / "CMakeLists.txt").is_file(), f"{name}/CMakeLists.txt is missing"
    for resource in re.findall(r"resourcePath\(\s*[\"']([^\"']+)[\"']", source):
        assert (module_dir / "Resources" / resource).is_file(), f"{name}.py uses the missing resource {resource}"
    text = _cmake_text(module_dir / "CMakeLists.txt")
    testing = re.search(r"if\s*\(\s*BUILD_TESTING\s*\)(.*?)endif\s*\(", text, re.S | re.I)
    assert testing, f"{name}/CMakeLists.txt has no if(BUILD_TESTING) block"
    unittest = _expand(sum(_calls(testing.group(1), "slicer_add_python_unittest"), []), _variables(text))
    assert unittest == ["SCRIPT", f"{name}.py"], f"{name}: register the self-test with slicer_add_python_unittest"


@pytest.mark.parametrize("module_dir", MODULE_DIRS, ids=lambda path: path.name)
def test_only_the_module_file_sits_at_the_module_root(module_dir):
    """Slicer loads every .py at a module folder's root as a module; helpers live in <Module>Lib."""
    extra = sorted(path.name for path in module_dir.glob("*.py") if path.name != f"{module_dir.name}.py")
    assert not extra, f"{module_dir.name}: move {extra} into {module_dir.name}Lib (Slicer would load them as modules)"
    lib = module_dir / f"{module_dir.name}Lib"
    if lib.is_dir():
        packages = {path.parent for path in lib.rglob("*.py") if "__pycache__" not in path.parts}
        assert all((package / "__init__.py").is_file() for package in packages), "every Lib folder needs __init__.py"


# ---------------------------------------------------------------------- import-time dependencies
def _module_level_imports(path: Path) -> list[tuple[str, int]]:
    """(module name, relative level) of imports run when the file is imported (not inside functions)."""
    found = []

    def visit(statements):
        for node in statements:
            if isinstance(node, ast.Import):
                found.extend((alias.name, 0) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                found.append((base, node.level))
                found.extend((f"{base}.{alias.name}" if base else alias.name, node.level) for alias in node.names)
            elif isinstance(node, (ast.If, ast.Try, ast.With)) or type(node).__name__ == "TryStar":
                for field in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, field, []):
                        visit(child.body if isinstance(child, ast.ExceptHandler) else [child])
            elif isinstance(node, ast.ClassDef):
                visit(node.body)  # class bodies run at import time too

    visit(ast.parse(path.read_text()).body)
    return found


def _resolve(name: str, level: int, importer: Path, module_dir: Path) -> list[Path]:
    """Files of this project that the import runs: package ``__init__`` files and the module itself."""
    parts = [part for part in name.split(".") if part]
    if level:  # relative: start in the importer's package, one folder up per extra dot
        folder = importer.parent
        for _ in range(level - 1):
            folder = folder.parent
    else:
        bases = {f"{module_dir.name}Lib": module_dir, "regsuite": SOURCE}
        if not parts or parts[0] not in bases:
            return []
        folder = bases[parts[0]]
    files = []
    for part in parts:
        folder = folder / part
        if (folder / "__init__.py").is_file():
            files.append(folder / "__init__.py")
        elif folder.with_suffix(".py").is_file():
            files.append(folder.with_suffix(".py"))
            break
        else:
            break
    return files


def _import_closure(module_dir: Path) -> dict[Path, list[str]]:
    """Every project file imported at load time by the module file, with its module-level imports."""
    start = module_dir / f"{module_dir.name}.py"
    seen: dict[Path, list[str]] = {}
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        imports = _module_level_imports(path)
        seen[path] = [name for name, level in imports if not level]
        for name, level in imports:
            todo.extend(_resolve(name, level, path, module_dir))
    return seen


@pytest.mark.parametrize("module_dir", MODULE_DIRS, ids=lambda path: path.name)
def test_module_file_imports_neither_torch_nor_the_engine_at_load_time(module_dir):
    """Slicer imports every module file at start-up, where PyTorch may not be installed yet."""
    module_file = module_dir / f"{module_dir.name}.py"
    top = {name.split(".")[0] for name, level in _module_level_imports(module_file) if not level}
    assert not top & {"torch", "regsuite"}, f"{module_file.name} imports {sorted(top & {'torch', 'regsuite'})} " \
                                            "at module level; import them inside the methods that need them"
    for path, names in _import_closure(module_dir).items():
        torch = [name for name in names if name.split(".")[0] == "torch"]
        assert not torch, (f"{path.parent.name}/{path.name} imports torch at module level "
                           f"and is loaded with {module_file.name}")


# ---------------------------------------------------------------------- the extension as a whole
def test_extension_cmake_adds_every_module_and_ships_the_engine_data():
    text = _cmake_text(SOURCE / "CMakeLists.txt")
    added = {args[0] for args in _calls(text, "add_subdirectory")}
    assert added == {path.name for path in MODULE_DIRS}, "RegistrationSuite/CMakeLists.txt: add each module folder"

    globs = _engine_globs()
    compile_calls = _calls(text, "ctkMacroCompilePythonScript")
    assert len(compile_calls) == 1
    engine = _keyword_args(compile_calls[0], {"TARGET_NAME", "SCRIPTS", "RESOURCES", "DESTINATION_DIR", "INSTALL_DIR",
                                              "NO_INSTALL_SUBDIR"})
    scripts = globs[re.fullmatch(r"\$\{(\w+)\}", engine["SCRIPTS"][0]).group(1)]
    resources = globs[re.fullmatch(r"\$\{(\w+)\}", engine["RESOURCES"][0]).group(1)]
    assert all(pattern.endswith(".py") for pattern in scripts), "SCRIPTS compiles .py only (CTK appends .py)"

    for path in sorted((SOURCE / "regsuite").rglob("*")):
        relative = path.relative_to(SOURCE).as_posix()
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        patterns = scripts if path.suffix == ".py" else resources
        assert any(_glob_matches(p, relative) for p in patterns), f"{relative} is not shipped by the engine globs"
    assert any(_glob_matches(p, "regsuite/presets/rigid.json") for p in resources)
    for weights in WEIGHT_EXAMPLES:  # model weights ship wherever they are placed under regsuite/
        assert any(_glob_matches(p, weights) for p in resources), f"the engine RESOURCES glob misses {weights}"


def test_top_level_cmake_has_the_extension_metadata():
    text = _cmake_text(ROOT / "CMakeLists.txt")
    variables = _variables(text)
    assert _calls(text, "project") == [["RegistrationSuite"]]
    assert variables["EXTENSION_CATEGORY"] == ["Registration"]
    assert re.match(r"https://", " ".join(variables["EXTENSION_HOMEPAGE"]))
    for key in ("EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_DEPENDS"):
        assert " ".join(variables.get(key, [])).strip(), f"{key} is empty"
    for key, suffix in (("EXTENSION_ICONURL", "Resources/Icons/RegistrationSuite.png"),
                        ("EXTENSION_SCREENSHOTURLS", None)):
        urls = " ".join(variables.get(key, [])).split()
        assert urls, f"{key} is empty"
        for url in urls:
            parts = url.split("/")
            local = [ROOT.joinpath(*parts[i:]) for i in range(3, len(parts)) if ROOT.joinpath(*parts[i:]).is_file()]
            assert local, f"{key}: {url} names no file of this repository"
            if suffix:
                assert url.endswith(suffix) and _png_size(local[0]) == (128, 128)
    assert ["RegistrationSuite"] in _calls(text, "add_subdirectory")
    assert ["${Slicer_EXTENSION_GENERATE_CONFIG}"] in _calls(text, "include")
    assert ["${Slicer_EXTENSION_CPACK}"] in _calls(text, "include")


def test_module_lib_finds_the_engine_from_a_source_checkout():
    """'Add module path' puts only the module folder on sys.path: its Lib adds the engine's folder."""
    import subprocess
    import sys

    module_dir = ROOT / "RegistrationSuite" / "RegSuiteRegistration"
    code = ("import sys, importlib.util; sys.path.insert(0, sys.argv[1]);"
            "assert importlib.util.find_spec('regsuite') is None;"
            "import RegSuiteRegistrationLib, regsuite; print(regsuite.__file__)")
    # -S: no site-packages, so the pip-installed (editable) engine is out of sight, as in Slicer;
    # -E: nor a PYTHONPATH that already names the engine's folder (as when testing a worktree)
    out = subprocess.run([sys.executable, "-E", "-S", "-c", code, str(module_dir)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(ROOT / "RegistrationSuite" / "regsuite" / "__init__.py")
