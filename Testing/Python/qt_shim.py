"""Test-only PythonQt look-alike over PySide6, so the modules' Widget classes run in the suite.

In Slicer the panels talk to Qt through PythonQt: modules ``qt`` and ``ctk``, Qt properties read
and written as attributes (``button.enabled = False``, ``table.rowCount``), signals connected by
C++ signature (``timer.connect("timeout()", slot)``), and Slicer's own widgets (MRML node combo
boxes, collapsible sections) created from the ``.ui`` files. This file supplies, for tests only:

* :class:`PythonQtObject` - a QObject as PythonQt shows it (the semantics above); a slot that
  raises is logged and kept in :data:`SLOT_ERRORS`, as PythonQt prints it and goes on;
* modules ``qt`` and ``ctk`` whose classes build real PySide6 objects seen that way;
* a ``.ui`` loader that creates the stand-ins of :mod:`slicer_widgets` for Slicer's widgets and
  also makes the ``<connections>`` the file declares;
* ``slicer.app`` (events, cursor, ``slicerHome`` with a ``PythonSlicer`` launcher, no main window)
  and ``slicer.ScriptedLoadableModule.ScriptedLoadableModuleWidget`` (panel, layout, ``resourcePath``);
* :func:`open_module`/:func:`close_module` (a panel's life as in Slicer) and :func:`wait_until`.

The timer is a real ``QTimer``, buttons are real ``QPushButton`` objects and clicking them runs the
real slots; everything MRML is the real slicer-core class. Runs with ``QT_QPA_PLATFORM=offscreen``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import re
import sys
import time
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets  # noqa: E402

from slicer_widgets import (CUSTOM_WIDGETS, ModulePanel, ctkCollapsibleButton, ctkSliderWidget,  # noqa: E402
                            qMRMLNodeComboBox, qMRMLWidget)

#: Exceptions raised by slots since the last :func:`take_slot_errors` (PythonQt prints them).
SLOT_ERRORS: list[BaseException] = []


def take_slot_errors() -> list[BaseException]:
    """The exceptions slots raised since the last call (the list is emptied)."""
    errors = list(SLOT_ERRORS)
    SLOT_ERRORS.clear()
    return errors


# ---------------------------------------------------------------------- PythonQt semantics
def wrap(value: Any) -> Any:
    """QObjects (also inside lists and tuples) as :class:`PythonQtObject`; other values as they are."""
    if isinstance(value, QtCore.QObject):
        return PythonQtObject(value)
    if isinstance(value, (list, tuple)):
        return type(value)(wrap(item) for item in value)
    return value


def unwrap(value: Any) -> Any:
    """The PySide6 object behind a :class:`PythonQtObject` (other values as they are)."""
    return object.__getattribute__(value, "_qobject") if isinstance(value, PythonQtObject) else value


def _positional_limit(function: Callable) -> float:
    """How many positional arguments ``function`` takes (inf with ``*args``)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return float("inf")
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return float("inf")
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)


def _slot(function: Callable) -> Callable:
    """``function`` as PythonQt calls a slot: with as many signal arguments as it takes; errors logged."""
    limit = _positional_limit(function)

    def call(*args: Any) -> None:
        try:
            function(*wrap(args[: int(min(limit, len(args)))]))
        except BaseException as error:  # noqa: BLE001 - PythonQt prints it and the event loop goes on
            SLOT_ERRORS.append(error)
            logging.error("exception in a Qt slot", exc_info=error)

    return call


def connect(sender: QtCore.QObject, signature: str, slot: Callable) -> None:
    """Connect ``sender``'s signal named by its C++ ``signature`` (e.g. ``"clicked(bool)"``) to ``slot``.

    Qt's own signals connect by signature; a stand-in's Python signal is found through its
    ``SIGNALS`` table (C++ signature -> attribute). An unknown signal raises ``ValueError``.
    """
    normalized = QtCore.QMetaObject.normalizedSignature(signature).data().decode()
    if sender.metaObject().indexOfSignal(normalized) >= 0:
        QtCore.QObject.connect(sender, QtCore.SIGNAL(normalized), _slot(slot))
        return
    name = getattr(type(sender), "SIGNALS", {}).get(normalized)
    if name is None:
        raise ValueError(f"{type(sender).__name__} has no signal {signature}")
    getattr(sender, name).connect(_slot(slot))


class PythonQtObject:
    """A QObject as PythonQt shows it: Qt properties are attributes, ``connect`` takes a signature."""

    __slots__ = ("_qobject",)

    def __init__(self, qobject: QtCore.QObject) -> None:
        object.__setattr__(self, "_qobject", qobject)

    def _propertyIndex(self, name: str) -> int:
        return unwrap(self).metaObject().indexOfProperty(name)

    def __getattr__(self, name: str) -> Any:
        qobject = unwrap(self)
        if self._propertyIndex(name) >= 0:
            return wrap(qobject.property(name))
        if name == "name":  # PythonQt's alias of objectName (slicer.util.childWidgetVariables reads it)
            return qobject.objectName()
        attribute = getattr(qobject, name)
        if callable(attribute) and not isinstance(attribute, QtCore.SignalInstance):
            return lambda *args, **kwargs: wrap(attribute(*[unwrap(a) for a in args],
                                                          **{k: unwrap(v) for k, v in kwargs.items()}))
        return attribute

    def __setattr__(self, name: str, value: Any) -> None:
        qobject = unwrap(self)
        if self._propertyIndex(name) < 0:
            raise AttributeError(f"{type(qobject).__name__} '{qobject.objectName()}' has no Qt property '{name}'")
        if not qobject.setProperty(name, unwrap(value)):
            raise TypeError(f"cannot set {type(qobject).__name__}.{name} to {value!r}")

    def connect(self, signature: str, slot: Callable) -> None:
        connect(unwrap(self), signature, slot)

    def __eq__(self, other: Any) -> bool:
        return unwrap(self) is unwrap(other)

    def __hash__(self) -> int:
        return hash(unwrap(self))

    def __repr__(self) -> str:
        qobject = unwrap(self)
        return f"<PythonQt {type(qobject).__name__} '{qobject.objectName()}'>"


class PythonQtClass:
    """A class of module ``qt``/``ctk``: calling it builds the object, seen through :class:`PythonQtObject`."""

    def __init__(self, cls: type) -> None:
        self._cls = cls

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return wrap(self._cls(*[unwrap(a) for a in args], **{k: unwrap(v) for k, v in kwargs.items()}))

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._cls, name)
        if callable(attribute) and not isinstance(attribute, type) and not hasattr(attribute, "value"):
            return lambda *args: wrap(attribute(*[unwrap(a) for a in args]))
        return attribute


class _QInputDialog(QtWidgets.QInputDialog):
    """PythonQt's ``getText`` returns the text alone ("" when cancelled)."""

    @staticmethod
    def getText(*args: Any) -> str:  # type: ignore[override]
        text, accepted = QtWidgets.QInputDialog.getText(*args)
        return text if accepted else ""


class UiLoader(QtUiTools.QUiLoader):
    """``QUiLoader`` that knows the stand-ins and makes the ``<connections>`` of the file itself
    (Qt cannot: they name C++ signatures such as ``mrmlSceneChanged(vtkMRMLScene*)``)."""

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        for cls in CUSTOM_WIDGETS:
            self.registerCustomWidget(cls)

    def load(self, device: QtCore.QIODevice,  # type: ignore[override]
             parentWidget: QtWidgets.QWidget | None = None) -> Any:
        root = ET.fromstring(bytes(device.readAll().data()))
        connections = root.find("connections")
        if connections is not None:
            root.remove(connections)
        buffer = QtCore.QBuffer()
        buffer.setData(QtCore.QByteArray(ET.tostring(root)))
        buffer.open(QtCore.QIODevice.ReadOnly)
        widget = super().load(buffer, parentWidget)
        if widget is None:
            return None
        for item in (connections if connections is not None else []):
            sender, receiver = (self._find(widget, item.findtext(key)) for key in ("sender", "receiver"))
            slotName = re.match(r"\s*(\w+)\s*\(", item.findtext("slot")).group(1)
            connect(sender, item.findtext("signal"), getattr(receiver, slotName))
        return widget

    @staticmethod
    def _find(widget: QtWidgets.QWidget, name: str) -> QtCore.QObject:
        found = widget if widget.objectName() == name else widget.findChild(QtCore.QObject, name)
        if found is None:
            raise ValueError(f"the .ui connects '{name}', which it does not contain")
        return found


# ---------------------------------------------------------------------- modules qt and ctk
def _qt_module() -> types.ModuleType:
    module = types.ModuleType("qt", "PythonQt's qt module, over PySide6 (tests only).")
    overrides = {"QUiLoader": UiLoader, "QInputDialog": _QInputDialog}

    def lookup(name: str) -> Any:
        if name == "Qt":
            return QtCore.Qt
        cls = overrides.get(name)
        for source in (QtCore, QtGui, QtWidgets, QtUiTools):
            cls = cls or getattr(source, name, None)
        if not isinstance(cls, type):
            raise AttributeError(f"module 'qt' has no attribute '{name}'")
        setattr(module, name, PythonQtClass(cls))  # one class object per name (a test may patch it)
        return getattr(module, name)

    module.__getattr__ = lookup  # type: ignore[method-assign]
    return module


def _ctk_module() -> types.ModuleType:
    module = types.ModuleType("ctk", "CTK widgets that the panels' .ui files use (tests only).")
    for cls in (ctkCollapsibleButton, ctkSliderWidget):
        setattr(module, cls.__name__, PythonQtClass(cls))
    return module


# ---------------------------------------------------------------------- slicer.app and the module widget base
class LayoutManager:
    """The application's view layout; without views to draw, ``resetSliceViews`` counts its calls."""

    def __init__(self) -> None:
        self.resetCount = 0

    def resetSliceViews(self) -> None:
        self.resetCount += 1


class Application:
    """``slicer.app`` for the panels: events, the override cursor, top-level widgets, no main window.

    ``slicerHome`` holds ``bin/PythonSlicer``, the launcher Slicer ships for its Python; here a
    shell script that runs this Python (the background worker is started through it).
    """

    applicationName = "Slicer"

    def __init__(self, qapp: QtWidgets.QApplication, home: Path) -> None:
        self._qapp = qapp
        self._layoutManager = LayoutManager()
        launcher = Path(home) / "bin" / "PythonSlicer"
        launcher.parent.mkdir(parents=True, exist_ok=True)
        launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        launcher.chmod(0o755)
        self.slicerHome = str(home)

    def processEvents(self, *args: Any) -> None:
        QtWidgets.QApplication.processEvents(*args)

    def testingEnabled(self) -> bool:
        return False  # error displays are logged; with no main window no dialog opens

    def setOverrideCursor(self, cursor: Any) -> None:
        QtWidgets.QApplication.setOverrideCursor(cursor)

    def restoreOverrideCursor(self) -> None:
        QtWidgets.QApplication.restoreOverrideCursor()

    def topLevelWidgets(self) -> list[Any]:
        return wrap(QtWidgets.QApplication.topLevelWidgets())

    def layoutManager(self) -> LayoutManager:
        return self._layoutManager


class ScriptedLoadableModuleWidget:
    """Base of the modules' Widget classes: ``parent`` panel, its ``layout``, ``resourcePath``.

    As in Slicer, without a ``parent`` a panel is made and :meth:`setup` is called at once.
    """

    def __init__(self, parent: Any = None) -> None:
        name = type(self).__name__
        self.moduleName = name[: -len("Widget")] if name.endswith("Widget") else name
        created = parent is None
        if created:
            parent = wrap(ModulePanel())
            parent.setLayout(QtWidgets.QVBoxLayout())
            parent.setMRMLScene(sys.modules["slicer"].mrmlScene)
        self.parent = parent
        self.layout = parent.layout()
        if created:
            self.setup()

    def resourcePath(self, filename: str) -> str:
        """``Resources/<filename>`` beside the module's .py file."""
        return str(Path(sys.modules[type(self).__module__].__file__).parent / "Resources" / filename)

    def setup(self) -> None:
        """Builds the panel (the modules call this first in theirs)."""

    def cleanup(self) -> None:
        """Called when the module panel is destroyed."""


def install(monkeypatch: Any, home: Path) -> QtWidgets.QApplication:
    """Expose ``qt``, ``ctk``, ``slicer.app`` (its ``slicerHome`` in folder ``home``), ``slicer.qMRMLWidget``
    and the widget base, undone by ``monkeypatch`` after the test; call after ``slicer_standin.install``.
    Returns the QApplication."""
    import slicer  # noqa: PLC0415

    qapp = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    monkeypatch.setitem(sys.modules, "qt", _qt_module())
    monkeypatch.setitem(sys.modules, "ctk", _ctk_module())
    monkeypatch.setattr(slicer, "app", Application(qapp, home), raising=False)
    for cls in (qMRMLWidget, qMRMLNodeComboBox):
        monkeypatch.setattr(slicer, cls.__name__, PythonQtClass(cls), raising=False)
    monkeypatch.setattr(sys.modules["slicer.ScriptedLoadableModule"], "ScriptedLoadableModuleWidget",
                        ScriptedLoadableModuleWidget)
    take_slot_errors()
    return qapp


def add_slice_views(scene: Any, names: tuple[str, ...] = ("Red", "Yellow", "Green")) -> list[Any]:
    """The slice and slice composite nodes Slicer's view layout adds to a scene; returns the composites."""
    composites = []
    for name in names:
        slice_node = scene.AddNewNodeByClass("vtkMRMLSliceNode", name)
        slice_node.SetLayoutName(name)
        composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode", f"SliceComposite{name}")
        composite.SetLayoutName(name)
        composites.append(composite)
    return composites


def open_module(name: str, monkeypatch: Any) -> Any:
    """Import module file ``name`` afresh over the shim and open its panel as Slicer does.

    The Widget is made with a :class:`ModulePanel` parent on ``slicer.mrmlScene``, ``setup()`` runs,
    then the panel is shown and the module entered (``isEntered`` and ``enter()``). ``monkeypatch``
    puts back any earlier import of the module after the test.
    """
    if name in sys.modules:
        monkeypatch.delitem(sys.modules, name)
    module = importlib.import_module(name)
    monkeypatch.setitem(sys.modules, name, module)
    panel = wrap(ModulePanel())
    panel.setLayout(QtWidgets.QVBoxLayout())
    panel.setMRMLScene(sys.modules["slicer"].mrmlScene)
    widget = getattr(module, f"{name}Widget")(panel)
    widget.setup()
    panel.show()  # offscreen
    panel.isEntered = True
    if hasattr(widget, "enter"):
        widget.enter()
    return widget


def close_module(widget: Any) -> None:
    """Leave and destroy the panel as Slicer does on exit: ``exit()``, ``cleanup()``, scene detached."""
    widget.parent.isEntered = False
    if hasattr(widget, "exit"):
        widget.exit()
    widget.cleanup()
    panel = unwrap(widget.parent)
    for child in [panel, *panel.findChildren(qMRMLWidget), *panel.findChildren(qMRMLNodeComboBox)]:
        child.setMRMLScene(None)  # no scene observers outlive the panel
    panel.deleteLater()
    QtWidgets.QApplication.processEvents()


def wait_until(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    """Process Qt events (timers fire) until ``condition()``; the deadline only guards against a hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout:.0f} s")
        QtWidgets.QApplication.processEvents(QtCore.QEventLoop.AllEvents, 20)
        time.sleep(0.01)
