"""Putting the scene back: what a run added to it, removed again if the run does not complete.

:class:`SceneChanges` records the nodes a run added (with their display and storage nodes) and the
slice views' layers before the run first showed a volume; :meth:`SceneChanges.undo` puts both
back. :func:`scratch` removes the nodes added inside a ``with`` block (temporary nodes).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

__all__ = ["SceneChanges", "node_ids", "scratch", "with_companions"]


def node_ids(scene: Any) -> set[str]:
    return {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}


@contextlib.contextmanager
def scratch(scene: Any) -> Iterator[None]:
    """Remove again every node added to ``scene`` inside the block (temporary exports)."""
    before = node_ids(scene)
    try:
        yield
    finally:
        added = [scene.GetNthNode(index) for index in range(scene.GetNumberOfNodes())]
        for node in reversed([node for node in added if node.GetID() not in before]):
            scene.RemoveNode(node)


def with_companions(node: Any) -> list[Any]:
    """``node`` with its display and storage nodes (what removing it must also remove)."""
    nodes = [node]
    for count, nth in (("GetNumberOfDisplayNodes", "GetNthDisplayNode"),
                       ("GetNumberOfStorageNodes", "GetNthStorageNode")):
        if hasattr(node, count):
            nodes += [getattr(node, nth)(index) for index in range(getattr(node, count)())]
    return [item for item in nodes if item is not None]


class SceneChanges:
    """The nodes a run added to ``scene`` and the slice views' layers it changed."""

    def __init__(self, scene: Any) -> None:
        self.scene = scene
        self._created: list[Any] = []  # nodes the run added (removed again unless it completes)
        self._views: list[tuple[Any, str | None, str | None, float]] | None = None

    def track(self, node: Any) -> Any:
        """Remember ``node`` (and its display/storage nodes) as added by the run."""
        for item in with_companions(node):
            if all(item is not other for other in self._created):
                self._created.append(item)
        return node

    def rememberViews(self) -> None:
        """Remember every slice view's layers (the first time only: as they were before the run)."""
        if self._views is None:
            composites = [self.scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
                          for index in range(self.scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]
            self._views = [(c, c.GetBackgroundVolumeID(), c.GetForegroundVolumeID(), c.GetForegroundOpacity())
                           for c in composites]

    def undo(self) -> None:
        """Put the views' layers back and remove the nodes the run added."""
        for composite, background, foreground, opacity in self._views or []:
            previous = composite.StartModify()
            composite.SetBackgroundVolumeID(background)
            composite.SetForegroundVolumeID(foreground)
            composite.SetForegroundOpacity(opacity)
            composite.EndModify(previous)
        self._views = None
        for node in reversed(self._created):
            if node.GetScene() is not None:
                self.scene.RemoveNode(node)
        self._created = []
