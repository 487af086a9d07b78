"""The modules' Qt Designer panels: well-formed for Slicer, complete for their code, and pictured.

Each module's ``Resources/UI/*.ui`` is loaded with PySide6's ``QUiLoader`` (offscreen). Slicer's
own widgets (qMRMLNodeComboBox, ctkCollapsibleButton, ...) do not exist here, so the XML is
rewritten with each custom class replaced by the base class its ``<customwidget>`` declares. For
the README picture (``docs/images/panel_<Module>.png``) a few of them are drawn with a close Qt
look-alike instead (a group box for a collapsible section, a combo box for a node selector).

The Registration module file itself is imported in a child Python with tiny stand-ins for Slicer's
``qt``/``ctk`` modules, to show that loading it imports no PyTorch.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from optional_modules import require_module  # noqa: E402

QtWidgets = require_module("PySide6.QtWidgets", "the .ui panels are loaded with PySide6")
from PySide6.QtCore import QBuffer, QByteArray, QIODevice  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SOURCE = ROOT / "RegistrationSuite"
IMAGES = ROOT / "docs" / "images"
MODULE_DIRS = sorted(path for path in SOURCE.glob("RegSuite*") if path.is_dir())
PANELS = [path for path in MODULE_DIRS if (path / "Resources" / "UI" / f"{path.name}.ui").is_file()]
UI_FILES = sorted(ui for path in MODULE_DIRS for ui in (path / "Resources" / "UI").glob("*.ui"))
SCENE_SIGNAL, SCENE_SLOT = "mrmlSceneChanged(vtkMRMLScene*)", "setMRMLScene(vtkMRMLScene*)"
#: Qt look-alikes used only for the picture (the checks load the declared base classes).
PREVIEW_CLASSES = {"ctkCollapsibleButton": "QGroupBox", "ctkCollapsibleGroupBox": "QGroupBox",
                   "qMRMLNodeComboBox": "QComboBox", "ctkComboBox": "QComboBox", "ctkSliderWidget": "QDoubleSpinBox",
                   "qMRMLSliderWidget": "QDoubleSpinBox", "ctkDoubleSpinBox": "QDoubleSpinBox",
                   "ctkPathLineEdit": "QLineEdit", "ctkCheckBox": "QCheckBox"}


@pytest.fixture(scope="module")
def app():
    application = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    application.setStyle("Fusion")
    return application


# ---------------------------------------------------------------------- reading and rewriting .ui files
def _base_classes(tree: ET.ElementTree) -> dict[str, str]:
    """Custom class -> the Qt class it finally extends, from ``<customwidgets>``."""
    declared = {cw.findtext("class"): cw.findtext("extends") for cw in tree.iter("customwidget")}
    resolved = {}
    for name in declared:
        base = declared[name]
        while base in declared:
            base = declared[base]
        resolved[name] = base
    return resolved


def _properties(widget: ET.Element) -> dict[str, ET.Element]:
    return {prop.get("name"): prop for prop in widget.findall("property")}


def _rewritten(tree: ET.ElementTree, preview: bool) -> bytes:
    """The .ui with Slicer/CTK classes replaced and their scene connections dropped."""
    root = copy.deepcopy(tree.getroot())
    bases = _base_classes(tree)
    for widget in root.iter("widget"):
        custom = widget.get("class")
        if custom not in bases:
            continue
        replacement = PREVIEW_CLASSES.get(custom, bases[custom]) if preview else bases[custom]
        widget.set("class", replacement)
        marker = ET.Element("property", name="customClass", stdset="0")  # a dynamic property for _decorate
        ET.SubElement(marker, "string").text = custom
        widget.insert(0, marker)
        if replacement == "QGroupBox" and "text" in _properties(widget):
            _properties(widget)["text"].set("name", "title")
    for section in ("customwidgets", "connections"):
        for element in root.findall(section):
            root.remove(element)
    return ET.tostring(root, encoding="utf-8")


def _load(xml: bytes) -> QtWidgets.QWidget:
    buffer = QBuffer()
    buffer.setData(QByteArray(xml))
    buffer.open(QIODevice.ReadOnly)
    loader = QUiLoader()
    widget = loader.load(buffer)
    assert widget is not None, loader.errorString()
    return widget


def _ui_names_used_by_code(module_dir: Path) -> set[str]:
    """Every ``self.ui.<name>`` in the module's Python files."""
    names = set()
    for path in [module_dir / f"{module_dir.name}.py", *(module_dir / f"{module_dir.name}Lib").rglob("*.py")]:
        if not path.is_file():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
                    and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"):
                names.add(node.attr)
    return names


# ---------------------------------------------------------------------- checks of the XML
@pytest.mark.parametrize("ui_path", UI_FILES, ids=lambda path: path.name)
def test_ui_declares_custom_classes_and_connects_node_selectors_to_the_scene(ui_path, app):
    tree = ET.parse(ui_path)
    root_widget = tree.getroot().find("widget")
    known = set(QUiLoader().availableWidgets()) | {"Line"}
    bases = _base_classes(tree)
    for cw in tree.iter("customwidget"):
        name = cw.findtext("class")
        assert cw.findtext("header") == f"{name}.h", f"{ui_path.name}: <customwidget> {name} needs <header>{name}.h"
        assert bases[name] in known, f"{ui_path.name}: {name} extends {bases[name]}, not a Qt class"
    widgets = list(tree.iter("widget"))
    for widget in widgets:
        assert widget.get("class") in known | set(bases), \
            f"{ui_path.name}: {widget.get('class')} '{widget.get('name')}' is not declared in <customwidgets>"
    names = [widget.get("name") for widget in widgets]
    assert len(names) == len(set(names)), f"{ui_path.name}: widget names are not unique"
    if ui_path.stem == ui_path.parents[2].name:  # the module's panel
        assert root_widget.get("class") == "qMRMLWidget" and root_widget.get("name") == ui_path.stem
    scene_receivers = {c.findtext("receiver") for c in tree.iter("connection")
                       if c.findtext("sender") == root_widget.get("name") and c.findtext("signal") == SCENE_SIGNAL
                       and c.findtext("slot") == SCENE_SLOT}
    for widget in widgets:
        if widget.get("class") == "qMRMLNodeComboBox":
            types = _properties(widget).get("nodeTypes")
            assert types is not None and types.findall("stringlist/string"), f"{widget.get('name')}: set nodeTypes"
            assert widget.get("name") in scene_receivers, \
                f"{ui_path.name}: connect {root_widget.get('name')}.{SCENE_SIGNAL} to {widget.get('name')}.{SCENE_SLOT}"


@pytest.mark.parametrize("module_dir", MODULE_DIRS, ids=lambda path: path.name)
def test_every_widget_the_code_uses_is_in_the_panel(module_dir, app):
    used = _ui_names_used_by_code(module_dir)
    ui_path = module_dir / "Resources" / "UI" / f"{module_dir.name}.ui"
    if not used:
        pytest.skip(f"{module_dir.name} uses no self.ui widgets")
    assert ui_path.is_file(), f"{module_dir.name}.py uses self.ui but {ui_path.name} is missing"
    tree = ET.parse(ui_path)
    declared = {widget.get("name") for widget in tree.iter("widget")}
    assert not used - declared, f"{ui_path.name} lacks widgets the code uses: {sorted(used - declared)}"
    panel = _load(_rewritten(tree, preview=False))
    loaded = {child.objectName() for child in panel.findChildren(QtWidgets.QWidget)}
    assert not used - loaded, f"QUiLoader did not create {sorted(used - loaded)}"
    panel.deleteLater()


# ---------------------------------------------------------------------- the README picture
def _decorate(panel: QtWidgets.QWidget) -> None:
    """Fill what a running Slicer would fill, so the picture shows a usable panel."""
    for combo in panel.findChildren(QtWidgets.QComboBox):
        if combo.property("customClass") == "qMRMLNodeComboBox" and combo.count() == 0:
            if combo.property("noneEnabled"):
                combo.addItem(combo.property("noneDisplay") or "None")
            else:  # a plausible node name from the selector's name, e.g. fixedVolumeSelector -> "Fixed volume"
                words = re.sub(r"(Selector|ComboBox)$", "", combo.objectName())
                combo.addItem(re.sub(r"(?<!^)([A-Z])", lambda m: " " + m.group(1).lower(), words).capitalize())
    presets = panel.findChild(QtWidgets.QComboBox, "presetComboBox")
    table = panel.findChild(QtWidgets.QTableWidget, "stagesTableWidget")
    if presets is not None and table is not None:
        from regsuite.engine.config import list_presets, load_preset
        from RegSuiteRegistrationLib.logic import presetStagesToRows

        presets.addItems(list_presets())
        presets.setCurrentText("bspline")
        rows = presetStagesToRows(load_preset("bspline").to_dict())
        table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, key in enumerate(("model", "metric", "levels", "regularization", "step")):
                table.setItem(r, c, QtWidgets.QTableWidgetItem(row[key]))
        for column in range(table.columnCount()):  # as the module sets it up: Levels takes the spare width
            table.horizontalHeader().setSectionResizeMode(
                column, QtWidgets.QHeaderView.Stretch if column == 2 else QtWidgets.QHeaderView.ResizeToContents)
        table.setFixedHeight(table.horizontalHeader().height() + sum(table.rowHeight(r) for r in range(len(rows))) + 4)
    method = panel.findChild(QtWidgets.QComboBox, "methodComboBox")
    if method is not None and method.count() > 1:
        method.model().item(1).setEnabled(False)
    progress = panel.findChild(QtWidgets.QProgressBar, "progressBar")
    if progress is not None:  # hidden until a run starts
        progress.hide()
    apply = panel.findChild(QtWidgets.QPushButton, "applyButton")
    if apply is not None:  # the inputs above are filled
        apply.setEnabled(True)


@pytest.mark.parametrize("module_dir", PANELS, ids=lambda path: path.name)
def test_render_panel_picture(module_dir, app, mrml, tmp_path):
    """A picture of the panel with every section open (slicer-core for the Logic import).

    Drawn into a temporary folder so a test run leaves the checkout clean; with
    ``REGSUITE_RENDER_DOCS=1`` it refreshes the README's ``docs/images/panel_<Module>.png``.
    """
    tree = ET.parse(module_dir / "Resources" / "UI" / f"{module_dir.name}.ui")
    panel = _load(_rewritten(tree, preview=True))
    _decorate(panel)
    width = max(480, panel.minimumSizeHint().width())
    panel.resize(width, panel.heightForWidth(width) if panel.hasHeightForWidth() else panel.sizeHint().height())
    folder = IMAGES if os.environ.get("REGSUITE_RENDER_DOCS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"panel_{module_dir.name}.png"
    picture = panel.grab()
    assert picture.save(str(path)), f"could not write {path}"
    assert picture.width() < 700 and 300 < picture.height() < 1600, picture.size()
    panel.deleteLater()


# ---------------------------------------------------------------------- loading without PyTorch
IMPORT_CHECK = r"""
import json, sys, types
sys.path[:0] = [sys.argv[1], sys.argv[2]]
for name in ("qt", "ctk"):  # Slicer's PythonQt modules: the module file only names them in methods
    sys.modules[name] = types.ModuleType(name)
import slicer_standin
slicer_standin.install({})
import RegSuiteRegistration as module
from RegSuiteRegistrationLib.logic import RegSuiteRegistrationLogic
description = module.RegSuiteRegistration(types.SimpleNamespace()).parent
event = dict(stage=2, stages=2, stage_name="bspline", level=2, levels=4, iteration=5, iterations=10,
             metric=-0.123456, elapsed=3.21)
print(json.dumps({
    "torch": "torch" in sys.modules,
    "engine": sorted(name for name in sys.modules if name.startswith("regsuite.engine")),
    "logic": module.RegSuiteRegistrationLogic is RegSuiteRegistrationLogic,
    "classes": [hasattr(module, name) for name in ("RegSuiteRegistrationWidget", "RegSuiteRegistrationTest")],
    "title": description.title, "categories": description.categories, "help": description.helpText,
    "fraction": module.progressFraction(event), "text": module.progressText(event),
}))
"""


def test_registration_module_loads_without_torch():
    require_module("slicer", "the module file is imported against slicer-core")
    module_dir = SOURCE / "RegSuiteRegistration"
    done = subprocess.run([sys.executable, "-c", IMPORT_CHECK, str(module_dir), str(HERE)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["torch"] is False and result["engine"] == []
    assert result["logic"] and all(result["classes"])
    assert result["title"] == "Registration Suite" and result["categories"] == ["Registration.RegistrationSuite"]
    presets = sorted(path.stem for path in (SOURCE / "regsuite" / "presets").glob("*.json"))
    assert [name for name in presets if name not in result["help"]] == [], "the help text must name every preset"
    assert "RegSuiteRegistrationLogic" in result["help"] and "process(" in result["help"]
    assert result["fraction"] == pytest.approx((1 + (1 + 0.5) / 4) / 2)
    assert result["text"] == "Stage 2/2 bspline | level 2/4 | iteration 5/10 | metric -0.12346 | 3.2 s"
