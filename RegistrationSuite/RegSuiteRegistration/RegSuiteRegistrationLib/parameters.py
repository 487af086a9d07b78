"""The Registration Suite panel's parameter node: its state, saved with the scene.

:class:`RegSuiteRegistrationParameterNode` wraps the module's ``vtkMRMLScriptedModuleNode`` with
typed attributes, so the panel's state is saved with the scene and restored with it. In Slicer it
is a ``slicer.parameterNodeWrapper`` class; where that package is absent (``slicer-core`` without
the application) a small stand-in with the same attribute names stores node references
(``SetNodeReferenceID``) and strings (``SetParameter``) on the same node.

Example (a scene with the module's logic)::

    parameters = getParameterNode(RegSuiteRegistrationLogic())
    parameters.fixedVolume = getNode("CT")
    parameters.preset = "rigid"
    parameters.parameterNode          # the vtkMRMLScriptedModuleNode itself
"""

from __future__ import annotations

import typing
from typing import Any

import slicer
from slicer import vtkMRMLNode, vtkMRMLScalarVolumeNode, vtkMRMLTransformNode

try:  # Slicer >= 5.2 (absent from slicer-core)
    from slicer.parameterNodeWrapper import parameterNodeWrapper
except ImportError:
    parameterNodeWrapper = None

__all__ = ["RegSuiteRegistrationParameterNode", "getParameterNode", "usesSlicerWrapper"]


# ---------------------------------------------------------------------- fallback wrapper
class _NodeParameter:
    """A node-typed attribute stored as a node reference whose role is the attribute's name."""

    def __init__(self, name: str, nodeClass: type) -> None:
        self.name, self.nodeClass = name, nodeClass

    def __get__(self, wrapper: Any, owner: type | None = None) -> Any:
        return self if wrapper is None else wrapper.parameterNode.GetNodeReference(self.name)

    def __set__(self, wrapper: Any, node: Any) -> None:
        if node is not None and not isinstance(node, self.nodeClass):
            raise TypeError(f"parameter '{self.name}' needs a {self.nodeClass.__name__}, got {type(node).__name__}")
        wrapper.parameterNode.SetNodeReferenceID(self.name, node.GetID() if node is not None else None)


class _StringParameter:
    """A string attribute stored with ``SetParameter``; reads the default while unset."""

    def __init__(self, name: str, default: str) -> None:
        self.name, self.default = name, default

    def __get__(self, wrapper: Any, owner: type | None = None) -> Any:
        if wrapper is None:
            return self
        node = wrapper.parameterNode
        return node.GetParameter(self.name) if node.HasParameter(self.name) else self.default

    def __set__(self, wrapper: Any, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"parameter '{self.name}' needs a str, got {type(value).__name__}")
        wrapper.parameterNode.SetParameter(self.name, value)


def _fallbackParameterNodeWrapper(cls: type) -> type:
    """A minimal ``parameterNodeWrapper`` for the annotations this module uses (MRML nodes and str)."""
    for name, annotation in typing.get_type_hints(cls).items():
        if annotation is str:
            setattr(cls, name, _StringParameter(name, getattr(cls, name, "")))
        elif isinstance(annotation, type) and issubclass(annotation, vtkMRMLNode):
            setattr(cls, name, _NodeParameter(name, annotation))
        else:
            raise TypeError(f"{cls.__name__}.{name}: the fallback parameter node stores MRML nodes and str only")

    def __init__(self: Any, parameterNode: Any) -> None:
        self.parameterNode = parameterNode  # as in Slicer's wrapper: the vtkMRMLScriptedModuleNode

    cls.__init__ = __init__
    return cls


def usesSlicerWrapper() -> bool:
    """True when the parameter node is Slicer's own ``parameterNodeWrapper`` class."""
    return parameterNodeWrapper is not None


_wrapper = parameterNodeWrapper if usesSlicerWrapper() else _fallbackParameterNodeWrapper


@_wrapper
class RegSuiteRegistrationParameterNode:
    """State of the Registration Suite panel (saved in the scene).

    fixedVolume, movingVolume - the images to register (moving is mapped onto fixed)
    fixedMask, movingMask - optional label map or segmentation restricting the similarity measure
    initialTransform - optional starting transform (its from-parent maps fixed to moving points)
    outputTransform - result transform; None creates a new one
    outputVolume - optional resampled moving volume
    preset - preset name (engine presets then the user's own)
    device - "auto", "cpu" or "cuda"
    presetOverride - JSON of the preset as edited in the Advanced table ("" when not edited)
    """

    fixedVolume: vtkMRMLScalarVolumeNode
    movingVolume: vtkMRMLScalarVolumeNode
    fixedMask: vtkMRMLNode
    movingMask: vtkMRMLNode
    initialTransform: vtkMRMLTransformNode
    outputTransform: vtkMRMLTransformNode
    outputVolume: vtkMRMLScalarVolumeNode
    preset: str = "affine"
    device: str = "auto"
    presetOverride: str = ""


def getParameterNode(logic: Any) -> RegSuiteRegistrationParameterNode:
    """The module's singleton parameter node (``logic.getParameterNode()``) as the typed wrapper."""
    node = logic.getParameterNode()
    if isinstance(node, slicer.vtkMRMLScriptedModuleNode):
        return RegSuiteRegistrationParameterNode(node)
    return node  # the logic already wraps it
