"""Test-only stand-in for the parts of Slicer that ``slicer-core`` lacks.

``slicer-core`` ships the real MRML scene, nodes, storage nodes and module logics, but not the
application layer. This file supplies, for tests only:

* :func:`make_scene` - a ``vtkMRMLScene`` wired to the application, Transforms, Volumes,
  Segmentations and Markups logics, set as ``slicer.mrmlScene``;
* ``slicer.ScriptedLoadableModule`` - the four base classes, with the one behaviour our Logic
  classes use (``getParameterNode``, a singleton ``vtkMRMLScriptedModuleNode`` per module);
* ``slicer.modules`` - a namespace whose ``<name>.logic()`` returns those logics.

It stays thin on purpose: everything else the code under test touches is the real class.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import slicer


class ScriptedLoadableModule:
    def __init__(self, parent: Any = None) -> None:
        self.parent = parent if parent is not None else types.SimpleNamespace()
        self.moduleName = type(self).__name__


class ScriptedLoadableModuleWidget:
    def __init__(self, parent: Any = None) -> None:
        self.parent = parent
        self.moduleName = type(self).__name__[: -len("Widget")]


class ScriptedLoadableModuleLogic:
    def __init__(self, parent: Any = None) -> None:
        name = type(self).__name__
        self.moduleName = name[: -len("Logic")] if name.endswith("Logic") else name

    def getParameterNode(self) -> Any:
        scene = slicer.mrmlScene
        for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode")):
            node = scene.GetNthNodeByClass(index, "vtkMRMLScriptedModuleNode")
            if node.GetModuleName() == self.moduleName and node.GetSingletonTag() == self.moduleName:
                return node
        node = slicer.vtkMRMLScriptedModuleNode()
        node.SetModuleName(self.moduleName)
        node.SetSingletonTag(self.moduleName)
        node.SetName(scene.GenerateUniqueName(self.moduleName))
        return scene.AddNode(node)


class ScriptedLoadableModuleTest:
    def setUp(self) -> None:
        slicer.mrmlScene.Clear(0)


def make_scene() -> tuple[Any, dict[str, Any]]:
    """A fresh scene with the module logics Slicer would attach; also ``slicer.mrmlScene``."""
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    app_logic.GetColorLogic().SetMRMLScene(scene)
    app_logic.GetColorLogic().AddDefaultColorNodes()
    logics: dict[str, Any] = {"application": app_logic}
    for name, cls in [("transforms", slicer.vtkSlicerTransformLogic), ("volumes", slicer.vtkSlicerVolumesLogic),
                      ("segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
                      ("markups", slicer.vtkSlicerMarkupsLogic)]:
        logic = cls()
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(app_logic)
        app_logic.SetModuleLogic(name.capitalize(), logic)
        logics[name] = logic
    slicer.mrmlScene = scene
    return scene, logics


def install(logics: dict[str, Any]) -> None:
    """Expose ``slicer.ScriptedLoadableModule`` and ``slicer.modules`` (test-only)."""
    module = types.ModuleType("slicer.ScriptedLoadableModule")
    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(module, cls.__name__, cls)
    module.__all__ = [cls.__name__ for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget,
                                                ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest)]
    sys.modules["slicer.ScriptedLoadableModule"] = module
    slicer.ScriptedLoadableModule = module
    slicer.modules = types.SimpleNamespace(**{name: types.SimpleNamespace(logic=(lambda lg=lg: lg))
                                              for name, lg in logics.items() if name != "application"})
