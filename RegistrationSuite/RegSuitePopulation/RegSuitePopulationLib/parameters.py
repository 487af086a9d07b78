"""The Registration Population panel's parameter node: its state, saved with the scene.

:class:`PopulationParameters` wraps the module's ``vtkMRMLScriptedModuleNode`` (the Logic's
``getParameterNode()``) with typed attributes: nodes are node references (role = attribute name),
text and numbers are parameters. The atlas pairs taken from the scene are references with the
roles ``atlasImage<i>`` and ``atlasLabels<i>``; a pair whose node was removed from the scene is
dropped when read.

Example (a scene with the module's logic)::

    parameters = PopulationParameters(RegSuitePopulationLogic().getParameterNode())
    parameters.targetVolume = getNode("subject")
    parameters.atlasPairs = [(getNode("atlas1"), getNode("atlas1 segmentation"))]
    parameters.iterations = 2
"""

from __future__ import annotations

from typing import Any

__all__ = ["PopulationParameters"]


class _Node:
    """A node attribute stored as the node reference with the attribute's name as role."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, wrapper: Any, owner: type | None = None) -> Any:
        return self if wrapper is None else wrapper.parameterNode.GetNodeReference(self.name)

    def __set__(self, wrapper: Any, node: Any) -> None:
        wrapper.parameterNode.SetNodeReferenceID(self.name, node.GetID() if node is not None else None)


class _Text:
    """A text attribute stored with ``SetParameter`` (``default`` while unset)."""

    def __init__(self, default: str = "") -> None:
        self.default = default

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, wrapper: Any, owner: type | None = None) -> Any:
        if wrapper is None:
            return self
        node = wrapper.parameterNode
        return node.GetParameter(self.name) if node.HasParameter(self.name) else self.default

    def __set__(self, wrapper: Any, value: Any) -> None:
        wrapper.parameterNode.SetParameter(self.name, str(value))


class _Int(_Text):
    """A whole number stored as text (``default`` when unset or unreadable)."""

    def __init__(self, default: int = 0) -> None:
        super().__init__(str(default))

    def __get__(self, wrapper: Any, owner: type | None = None) -> Any:
        if wrapper is None:
            return self
        try:
            return int(super().__get__(wrapper, owner))
        except ValueError:
            return int(self.default)

    def __set__(self, wrapper: Any, value: Any) -> None:
        super().__set__(wrapper, int(value))


class PopulationParameters:
    """State of the Registration Population panel (saved in the scene).

    workflow - "segment", "template" or "change" (the panel's tab)
    targetVolume, atlasList, atlasPairs, colorNode, outputSegmentation, fusion, select - segmentation
    imageSource, iterations, templateOutputDir - template
    baselineVolume, followupVolume, changeSegmentation, changeOutputDir - longitudinal change
    preset ("" = the command's default), workers (0 = automatic), scheduler (Dask address) - all runs
    """

    workflow = _Text("segment")
    targetVolume = _Node()
    atlasList = _Text("")
    colorNode = _Node()
    outputSegmentation = _Node()
    fusion = _Text("majority")
    select = _Int(0)
    imageSource = _Text("")
    iterations = _Int(4)
    templateOutputDir = _Text("")
    baselineVolume = _Node()
    followupVolume = _Node()
    changeSegmentation = _Node()
    changeOutputDir = _Text("")
    preset = _Text("")
    workers = _Int(0)
    scheduler = _Text("")

    _PAIR_COUNT = "atlasPairCount"

    def __init__(self, parameterNode: Any) -> None:
        self.parameterNode = parameterNode

    @property
    def atlasPairs(self) -> list[tuple[Any, Any]]:
        """The (atlas volume, segmentation or label map) pairs chosen in the scene, complete ones only."""
        node = self.parameterNode
        try:
            count = int(node.GetParameter(self._PAIR_COUNT) or 0)
        except ValueError:
            count = 0
        pairs = []
        for index in range(count):
            image, labels = node.GetNodeReference(f"atlasImage{index}"), node.GetNodeReference(f"atlasLabels{index}")
            if image is not None and labels is not None:
                pairs.append((image, labels))
        return pairs

    @atlasPairs.setter
    def atlasPairs(self, pairs: list[tuple[Any, Any]]) -> None:
        node = self.parameterNode
        previous = node.StartModify()
        try:
            old = int(node.GetParameter(self._PAIR_COUNT) or 0)
        except ValueError:
            old = 0
        for index in range(max(old, len(pairs))):
            image, labels = pairs[index] if index < len(pairs) else (None, None)
            node.SetNodeReferenceID(f"atlasImage{index}", image.GetID() if image is not None else None)
            node.SetNodeReferenceID(f"atlasLabels{index}", labels.GetID() if labels is not None else None)
        node.SetParameter(self._PAIR_COUNT, str(len(pairs)))
        node.EndModify(previous)
