"""Test-only stand-ins, over PySide6, for the Slicer and CTK widgets the panels' ``.ui`` files use.

Registered with the ``.ui`` loader of :mod:`qt_shim` under their Slicer class names, they carry the
properties the files set and the behaviour the panels rely on, no more:

* :class:`qMRMLWidget` - holds the scene; ``setMRMLScene`` emits ``mrmlSceneChanged``, which the
  ``.ui`` files connect to every node selector;
* :class:`qMRMLNodeComboBox` - lists the nodes of ``nodeTypes`` in the real scene, follows its
  node added/removed events and selects one of them (``currentNode``/``setCurrentNode``);
* :class:`qMRMLSegmentSelectorWidget` - lists the segments of a real segmentation node;
* :class:`ctkCollapsibleButton` (a titled section) and :class:`ctkSliderWidget` (its spin box);
* :class:`ModulePanel` - the panel Slicer gives a scripted module (``isEntered``).

A signal that PythonQt code names by its C++ signature (``currentNodeChanged(vtkMRMLNode*)``) is
listed in the class's ``SIGNALS`` table, which :func:`qt_shim.connect` reads.
"""

from __future__ import annotations

from typing import Any, Callable

from PySide6 import QtWidgets
from PySide6.QtCore import Property, Signal

__all__ = ["CUSTOM_WIDGETS", "ModulePanel", "ctkCollapsibleButton", "ctkSliderWidget", "qMRMLNodeComboBox",
           "qMRMLSegmentSelectorWidget", "qMRMLWidget"]


def _stored(qtype: Any, name: str, default: Any, changed: Callable[[Any], None] | None = None) -> Property:
    """A Qt property kept in attribute ``_<name>`` (``default`` until set); ``changed(self)`` runs after a set."""

    def read(self: Any) -> Any:
        value = getattr(self, "_" + name, default)
        return list(value) if isinstance(value, list) else value

    def write(self: Any, value: Any) -> None:
        setattr(self, "_" + name, list(value) if isinstance(default, list) else qtype(value))
        if changed is not None:
            changed(self)

    return Property("QStringList" if isinstance(default, list) else qtype, read, write)


class qMRMLWidget(QtWidgets.QWidget):
    """A widget holding an MRML scene; ``setMRMLScene`` emits ``mrmlSceneChanged``."""

    mrmlSceneChanged = Signal(object)
    SIGNALS = {"mrmlSceneChanged(vtkMRMLScene*)": "mrmlSceneChanged"}

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._scene: Any = None

    def setMRMLScene(self, scene: Any) -> None:
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self) -> Any:
        return self._scene


class ModulePanel(qMRMLWidget):
    """The panel Slicer gives a scripted module widget; ``isEntered`` while the module is shown."""

    isEntered = _stored(bool, "isEntered", False)


class ctkCollapsibleButton(QtWidgets.QWidget):
    """A titled section of a panel; ``collapsed`` is kept, not drawn. Disabling it disables its children."""

    text = _stored(str, "text", "")
    collapsed = _stored(bool, "collapsed", False)


class ctkSliderWidget(QtWidgets.QDoubleSpinBox):
    """A slider with a spin box; here the spin box (``value``, ``minimum``, ``maximum``, ``singleStep``)."""


class qMRMLNodeComboBox(QtWidgets.QComboBox):
    """Lists the scene's nodes of ``nodeTypes`` (scene order, hidden nodes left out) and selects one.

    With ``noneEnabled`` the first item is ``noneDisplay`` (no node); without it, as in any
    QComboBox, the first node listed becomes current when nothing is. The node editing options
    (``addEnabled``, ``renameEnabled``, ...) are kept, not offered.
    """

    currentNodeChanged = Signal(object)
    SIGNALS = {"currentNodeChanged(vtkMRMLNode*)": "currentNodeChanged"}

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._scene: Any = None
        self._observers: list[int] = []
        self._currentID: str | None = None
        self.currentIndexChanged.connect(self._onIndexChanged)

    def _relist(self) -> None:
        self._update()

    nodeTypes = _stored(list, "nodeTypes", [], _relist)
    hideChildNodeTypes = _stored(list, "hideChildNodeTypes", [], _relist)
    showChildNodeTypes = _stored(bool, "showChildNodeTypes", True, _relist)
    noneEnabled = _stored(bool, "noneEnabled", False, _relist)
    noneDisplay = _stored(str, "noneDisplay", "None", _relist)
    baseName = _stored(str, "baseName", "")
    addEnabled = _stored(bool, "addEnabled", False)
    removeEnabled = _stored(bool, "removeEnabled", False)
    renameEnabled = _stored(bool, "renameEnabled", False)
    selectNodeUponCreation = _stored(bool, "selectNodeUponCreation", True)

    def _getCurrentNodeID(self) -> str:
        return self._currentID or ""

    currentNodeID = Property(str, _getCurrentNodeID)

    # ------------------------------------------------------------------ scene
    def setMRMLScene(self, scene: Any) -> None:
        if self._scene is not None:
            for tag in self._observers:
                self._scene.RemoveObserver(tag)
        self._scene, self._observers = scene, []
        if scene is not None:
            for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent):
                self._observers.append(scene.AddObserver(event, lambda caller, event: self._update()))
        self._update()

    def mrmlScene(self) -> Any:
        return self._scene

    def _shows(self, node: Any) -> bool:
        types = self.nodeTypes
        if node.GetHideFromEditors():
            return False
        matches = any(node.IsA(name) for name in types) if self.showChildNodeTypes else node.GetClassName() in types
        return matches and not any(node.IsA(name) for name in self.hideChildNodeTypes)

    def nodes(self) -> list[Any]:
        """The nodes listed, in scene order."""
        if self._scene is None:
            return []
        nodes = (self._scene.GetNthNode(index) for index in range(self._scene.GetNumberOfNodes()))
        return [node for node in nodes if self._shows(node)]

    def _update(self) -> None:
        """Relist the nodes, keeping the current one while it is listed."""
        previous = self._currentID
        blocked = self.blockSignals(True)
        self.clear()
        if self.noneEnabled:
            self.addItem(self.noneDisplay, None)
        for node in self.nodes():
            self.addItem(node.GetName(), node.GetID())
        index = self.findData(previous) if previous else -1
        if index < 0:
            index = 0 if self.count() else -1  # the none item, or (without it) the first node
        self.setCurrentIndex(index)
        self.blockSignals(blocked)
        self._currentID = self.itemData(index) if index >= 0 else None
        if self._currentID != previous and not blocked:
            self.currentNodeChanged.emit(self.currentNode())

    def _onIndexChanged(self, index: int) -> None:
        nodeID = self.itemData(index) if index >= 0 else None
        if nodeID != self._currentID:
            self._currentID = nodeID
            self.currentNodeChanged.emit(self.currentNode())

    # ------------------------------------------------------------------ selection
    def currentNode(self) -> Any:
        return self._scene.GetNodeByID(self._currentID) if self._scene is not None and self._currentID else None

    def setCurrentNode(self, node: Any) -> None:
        """Select ``node``; None selects the none item (or nothing). A node that is not listed is ignored."""
        index = self.findData(node.GetID()) if node is not None else (0 if self.noneEnabled else -1)
        if node is None or index >= 0:
            self.setCurrentIndex(index)

    def setCurrentNodeID(self, nodeID: str) -> None:
        self.setCurrentNode(self._scene.GetNodeByID(nodeID) if self._scene is not None and nodeID else None)


class qMRMLSegmentSelectorWidget(qMRMLWidget):
    """Picks one segment of a segmentation node (``setCurrentNode``); ``currentSegmentID()`` is "" for none."""

    segmentationNodeSelectorVisible = _stored(bool, "segmentationNodeSelectorVisible", True)
    noneEnabled = _stored(bool, "noneEnabled", False)
    editEnabled = _stored(bool, "editEnabled", False)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._node: Any = None
        self._combo = QtWidgets.QComboBox(self)
        QtWidgets.QVBoxLayout(self).addWidget(self._combo)

    def setCurrentNode(self, node: Any) -> None:
        self._node = node
        self._combo.clear()
        if self.noneEnabled:
            self._combo.addItem("None", "")
        if node is not None:
            segmentation = node.GetSegmentation()
            for index in range(segmentation.GetNumberOfSegments()):
                self._combo.addItem(segmentation.GetNthSegment(index).GetName(), segmentation.GetNthSegmentID(index))

    def currentNode(self) -> Any:
        return self._node

    def setCurrentSegmentID(self, segmentID: str) -> None:
        self._combo.setCurrentIndex(self._combo.findData(segmentID))

    def currentSegmentID(self) -> str:
        return self._combo.currentData() or ""


#: The classes the ``.ui`` loader creates by their Slicer names.
CUSTOM_WIDGETS = (qMRMLWidget, ctkCollapsibleButton, ctkSliderWidget, qMRMLNodeComboBox, qMRMLSegmentSelectorWidget)
