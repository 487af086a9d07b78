"""Test-only stand-in for the parts of Slicer that ``slicer-core`` lacks.

``slicer-core`` ships the real MRML scene, nodes, storage nodes and module logics, but not the
application layer. This file supplies, for tests only:

* :func:`make_scene` - a ``vtkMRMLScene`` wired to the application, Transforms, Volumes,
  Segmentations and Markups logics, set as ``slicer.mrmlScene``;
* ``slicer.ScriptedLoadableModule`` - the four base classes, with the behaviour our code uses
  done as Slicer's ``Base/Python/slicer/ScriptedLoadableModule.py`` does it: a module fills its
  ``parent``'s description; ``getParameterNode`` returns the scene's singleton
  ``vtkMRMLScriptedModuleNode`` (singleton tag = module name, attribute ``ModuleName``);
* ``slicer.modules`` - a namespace whose ``<name>.logic()`` returns those logics.

It stays thin on purpose: everything else the code under test touches is the real class.
"""

from __future__ import annotations

import sys
import types
import unittest
from typing import Any

import slicer


class ScriptedLoadableModule:
    """Like Slicer's: needs the module's ``parent`` and fills its description with empty defaults
    (no icon lookup and no self-test registration, which need the application)."""

    def __init__(self, parent: Any) -> None:
        self.parent = parent
        self.moduleName = type(self).__name__
        parent.title = ""
        parent.categories = []
        parent.dependencies = []
        parent.contributors = []
        parent.helpText = ""
        parent.acknowledgementText = ""


class ScriptedLoadableModuleWidget:
    def __init__(self, parent: Any = None) -> None:
        self.parent = parent
        self.moduleName = type(self).__name__[: -len("Widget")]


class ScriptedLoadableModuleLogic:
    """Slicer's parameter-node behaviour: one ``vtkMRMLScriptedModuleNode`` per module in the scene,
    found by its singleton tag (the module name) and tagged with the ``ModuleName`` attribute."""

    def __init__(self, parent: Any = None) -> None:
        name = type(self).__name__
        self.moduleName = name[: -len("Logic")] if name.endswith("Logic") else name
        self.isSingletonParameterNode = True

    def getParameterNode(self) -> Any:
        scene = slicer.mrmlScene
        if self.isSingletonParameterNode:
            node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if node is not None:
                if node.GetAttribute("ModuleName") != self.moduleName:  # e.g. lost when the scene was closed
                    node.SetAttribute("ModuleName", self.moduleName)
                return node
        else:
            for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode")):
                node = scene.GetNthNodeByClass(index, "vtkMRMLScriptedModuleNode")
                if node.GetAttribute("ModuleName") == self.moduleName:
                    return node
        return scene.AddNode(self.createParameterNode())

    def createParameterNode(self) -> Any:
        node = slicer.vtkMRMLScriptedModuleNode()
        if self.isSingletonParameterNode:
            node.SetSingletonTag(self.moduleName)
        node.SetAttribute("ModuleName", self.moduleName)  # Slicer does not call SetModuleName
        node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    """A ``unittest.TestCase``, as in Slicer (which adds display helpers that need the application)."""


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
