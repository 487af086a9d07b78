"""Showing registration results in the slice views: fusion, checkerboard, difference, colour maps.

The slice views of Slicer read their layers from the scene's ``vtkMRMLSliceCompositeNode``
nodes (one per view: Red, Yellow, Green...). :func:`show_fusion` sets every one of them, so it
works the same in the Slicer application and on a bare ``slicer-core`` scene (where composite
nodes exist only if someone added them; with none, nothing is shown and an empty list comes
back). Image helpers work on SimpleITK images that already share one grid (LPS, see
:mod:`.volumes`).

Example:
    >>> import SimpleITK as sitk
    >>> a = sitk.Image([4, 4, 1], sitk.sitkFloat32) + 1.0
    >>> b = sitk.Image([4, 4, 1], sitk.sitkFloat32) + 2.0
    >>> sitk.GetArrayFromImage(checkerboard_image(a, b, squares=2))[0].tolist()
    [[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0], [2.0, 2.0, 1.0, 1.0], [2.0, 2.0, 1.0, 1.0]]
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import geometry_differences
from .volumes import node_name


def _nodes(scene: Any, class_name: str) -> list[Any]:
    return [scene.GetNthNodeByClass(index, class_name) for index in range(scene.GetNumberOfNodesByClass(class_name))]


def find_color_node(scene: Any, name: str) -> Any:
    """The colour node called ``name`` (e.g. "Iron", "Rainbow", "Grey"), or its node ID.

    Raises :class:`InputError` naming a few available colour maps when there is none.
    """
    node = scene.GetNodeByID(name)
    if node is not None and node.IsA("vtkMRMLColorNode"):
        return node
    colors = _nodes(scene, "vtkMRMLColorNode")
    for color in colors:
        if color.GetName() == name:
            return color
    for color in colors:
        if color.GetName().lower() == name.lower():
            return color
    known = ", ".join(sorted({color.GetName() for color in colors})[:12]) or "none"
    raise InputError(f"colour map '{name}' is not in the scene (available: {known})")


def color_table(scene: Any, name: str, colors: np.ndarray, description: str = "") -> Any:
    """A user colour table node called ``name`` holding the ``(N, 3)`` RGB rows of ``colors``.

    An existing table of that name is updated in place (its ID stays valid), so repeated calls
    do not pile up colour nodes.
    """
    table = None
    for node in _nodes(scene, "vtkMRMLColorTableNode"):
        if node.GetName() == name:
            table = node
            break
    if table is None:
        table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", name)
    previous = table.StartModify()
    table.SetTypeToUser()
    table.SetNumberOfColors(len(colors))
    for index, (red, green, blue) in enumerate(np.asarray(colors, dtype=float)):
        table.SetColor(index, f"{index}", red, green, blue, 1.0)
    if description:
        table.SetDescription(description)
    table.EndModify(previous)
    return table


def piecewise_colors(stops: Sequence[tuple[float, Sequence[float]]], value_range: tuple[float, float],
                     count: int = 256) -> np.ndarray:
    """``count`` RGB rows sampling a piecewise linear colour ramp over ``value_range``.

    ``stops`` are ``(value, (r, g, b))`` with increasing values; a value may appear twice to
    make a sharp step (the left colour below it, the right one above). Row ``i`` is the colour
    at the centre of bin ``i`` (what a window/level of ``value_range`` shows for that bin).
    """
    low, high = value_range
    centres = low + (np.arange(count) + 0.5) * (high - low) / count
    values = np.array([value for value, _ in stops], dtype=float)
    rgb = np.array([color for _, color in stops], dtype=float)
    result = np.empty((count, 3))
    for row, value in enumerate(centres):
        right = int(np.searchsorted(values, value, side="right"))
        if right == 0:
            result[row] = rgb[0]
        elif right == len(values):
            result[row] = rgb[-1]
        else:
            left = right - 1
            weight = (value - values[left]) / (values[right] - values[left])
            result[row] = (1 - weight) * rgb[left] + weight * rgb[right]
    return result


def set_volume_colors(volume: Any, color_node: Any, window_range: tuple[float, float] | None = None) -> Any:
    """Show ``volume`` with ``color_node``; a ``window_range`` (min, max) fixes the window/level.

    Only the volume's display node changes (created if missing); returns the display node.
    """
    if volume.GetDisplayNode() is None:
        volume.CreateDefaultDisplayNodes()
    display = volume.GetDisplayNode()
    previous = display.StartModify()
    display.SetAndObserveColorNodeID(color_node.GetID())
    if window_range is not None:
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(float(window_range[0]), float(window_range[1]))
    display.EndModify(previous)
    return display


def _check_volume(node: Any, role: str) -> None:
    if node is not None and not node.IsA("vtkMRMLVolumeNode"):
        raise InputError(f"{role} {node_name(node)} is a {node.GetClassName()}, not a volume")


def show_fusion(scene: Any, background: Any, foreground: Any = None, opacity: float = 0.5,
                colormap: str | None = None, link: bool = True) -> list[Any]:
    """Show ``foreground`` over ``background`` in every slice view of ``scene``.

    Sets each ``vtkMRMLSliceCompositeNode``'s background and foreground volume (``None``
    clears the foreground), foreground opacity (0..1) and linked control. ``colormap`` names
    a colour node of the scene (e.g. "Iron" or "Rainbow" for a PET over a CT) that the
    foreground's display node gets. Returns the composite nodes that were set.
    """
    if background is None:
        raise InputError("no background volume is selected")
    _check_volume(background, "background volume")
    _check_volume(foreground, "foreground volume")
    if not 0.0 <= opacity <= 1.0:
        raise InputError(f"foreground opacity {opacity} is outside 0..1")
    if colormap:
        if foreground is None:
            raise InputError(f"colour map '{colormap}' needs a foreground volume")
        set_volume_colors(foreground, find_color_node(scene, colormap))
    composites = _nodes(scene, "vtkMRMLSliceCompositeNode")
    for composite in composites:
        previous = composite.StartModify()
        composite.SetBackgroundVolumeID(background.GetID())
        composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
        composite.SetForegroundOpacity(float(opacity))
        composite.SetLinkedControl(bool(link))
        composite.EndModify(previous)
    return composites


def show_checkerboard(scene: Any, checkerboard: Any, link: bool = True) -> list[Any]:
    """Show a checkerboard (or difference, or any single) volume alone in every slice view."""
    return show_fusion(scene, checkerboard, None, opacity=0.0, link=link)


def _require_same_grid(a: sitk.Image, b: sitk.Image) -> None:
    for name, image in (("first image", a), ("second image", b)):
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"{name} must be a 3D scalar image")
    differences = geometry_differences(b, a)
    if differences:
        raise InputError("images must share one grid (resample the second one first): " + "; ".join(differences))


def checkerboard_image(a: sitk.Image, b: sitk.Image, squares: int = 8) -> sitk.Image:
    """Alternate boxes of ``a`` and ``b`` (``float32``, on ``a``'s grid; ``b`` must share it).

    ``squares`` boxes along each axis (fewer along an axis with fewer voxels).
    """
    if int(squares) < 1:
        raise InputError(f"checkerboard squares must be at least 1, got {squares}")
    _require_same_grid(a, b)
    pattern = [max(1, min(int(squares), size)) for size in a.GetSize()]
    return sitk.CheckerBoard(sitk.Cast(a, sitk.sitkFloat32), sitk.Cast(b, sitk.sitkFloat32), pattern)


def difference_image(a: sitk.Image, b: sitk.Image) -> sitk.Image:
    """``a - b`` as ``float32`` on ``a``'s grid (``b`` must share it)."""
    _require_same_grid(a, b)
    return sitk.Subtract(sitk.Cast(a, sitk.sitkFloat32), sitk.Cast(b, sitk.sitkFloat32))
