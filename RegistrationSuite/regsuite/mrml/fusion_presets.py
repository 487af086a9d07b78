"""Fusion display presets: how a registered pair looks in the slice views (PET/CT, CT/MR...).

A :class:`FusionPreset` says how to show a *foreground* volume (the registered moving image)
over a *background* volume (the fixed image): the foreground's colour map, window/level, a lower
threshold below which it is transparent and its opacity, and the background's window/level.
:func:`apply_fusion_preset` writes that into the volumes' ``vtkMRMLScalarVolumeDisplayNode`` and
into every ``vtkMRMLSliceCompositeNode`` of the scene (layers, opacity, linked views), so it works
the same in the Slicer application and on a bare ``slicer-core`` scene.

The CT windows are Slicer's own window/level presets of the Volumes module
(``Modules/Loadable/Volumes/Resources/VolumeDisplayPresets.json``: CT-Abdomen W350/L40, CT-Brain
W100/L50, CT-Bone W1000/L400). The PET presets expect a PET volume in SUV (as Slicer's PET DICOM
SUV plugin loads it); MR intensities have no absolute scale, so MR gets Slicer's automatic
window/level and no threshold. Colour maps are the colour nodes Slicer's colour logic adds to
every scene ("PET-Heat", "Iron", "Grey"...).

Example:
    >>> FUSION_PRESETS["PET on CT"].foreground_window.range
    (0.0, 20.0)
    >>> CT_WINDOWS["CT-Abdomen"].range
    (-135.0, 215.0)
    >>> find_fusion_preset("pet on ct").foreground_colormap
    'PET-Heat'
    >>> list(FUSION_PRESETS)
    ['Default', 'PET on CT', 'PET on MR', 'CT on MR', 'MR on CT']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import InputError, PresetError
from .display import _nodes, find_color_node
from .volumes import node_name

#: Upper threshold set with a lower one: nothing above the lower threshold is hidden.
OPEN_UPPER_THRESHOLD = 1.0e30


@dataclass(frozen=True)
class WindowLevel:
    """A window/level in the volume's own units (HU for CT, SUV for PET); ``name`` says which."""

    window: float
    level: float
    name: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.window) and math.isfinite(self.level)) or self.window <= 0:
            label = f"'{self.name}' " if self.name else ""
            raise InputError(f"window/level {label}W{self.window}/L{self.level}: the window must be "
                             "positive and both finite")

    @classmethod
    def from_range(cls, minimum: float, maximum: float, name: str = "") -> "WindowLevel":
        """The window/level showing ``minimum`` .. ``maximum`` (black to white in a grey map)."""
        return cls(float(maximum) - float(minimum), (float(minimum) + float(maximum)) / 2.0, name)

    @property
    def range(self) -> tuple[float, float]:
        """(minimum, maximum) of the window."""
        return (self.level - self.window / 2.0, self.level + self.window / 2.0)


#: Slicer's CT window/level presets (Volumes module, VolumeDisplayPresets.json), in HU.
CT_WINDOWS: dict[str, WindowLevel] = {
    "CT-Abdomen": WindowLevel(350.0, 40.0, "CT-Abdomen (soft tissue)"),
    "CT-Brain": WindowLevel(100.0, 50.0, "CT-Brain"),
    "CT-Bone": WindowLevel(1000.0, 400.0, "CT-Bone"),
}
#: PET in SUV: 0 (transparent below the threshold) to 20 (white in PET-Heat).
PET_SUV_WINDOW = WindowLevel.from_range(0.0, 20.0, "PET SUV 0-20")


@dataclass(frozen=True)
class FusionPreset:
    """How a foreground volume is shown over a background volume in the slice views.

    ``foreground_window`` / ``background_window`` None: Slicer's automatic window/level (MR).
    ``lower_threshold`` None: no threshold; otherwise foreground voxels below it are transparent.
    """

    name: str
    foreground_colormap: str  # colour node name, e.g. "PET-Heat"
    foreground_window: WindowLevel | None
    lower_threshold: float | None
    foreground_opacity: float
    background_window: WindowLevel | None
    background_colormap: str = "Grey"
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.foreground_colormap or not self.background_colormap:
            raise InputError(f"display preset '{self.name}' needs a name and both colour maps")
        if not 0.0 <= float(self.foreground_opacity) <= 1.0:
            raise InputError(f"display preset '{self.name}': foreground opacity {self.foreground_opacity} "
                             "is outside 0..1")
        if self.lower_threshold is not None and not math.isfinite(self.lower_threshold):
            raise InputError(f"display preset '{self.name}': lower threshold {self.lower_threshold} is not finite")


FUSION_PRESETS: dict[str, FusionPreset] = {preset.name: preset for preset in (
    FusionPreset("Default", "Grey", None, None, 0.5, None,
                 description="both grey with Slicer's automatic window/level, no threshold, foreground at 50 %"),
    FusionPreset("PET on CT", "PET-Heat", PET_SUV_WINDOW, 1.0, 0.6, CT_WINDOWS["CT-Abdomen"],
                 description="PET (SUV) in PET-Heat, 0-20, transparent below SUV 1, over a CT soft-tissue window"),
    FusionPreset("PET on MR", "PET-Heat", PET_SUV_WINDOW, 1.0, 0.6, None,
                 description="PET (SUV) in PET-Heat, 0-20, transparent below SUV 1, over a grey MR"),
    FusionPreset("CT on MR", "Iron", CT_WINDOWS["CT-Bone"], 200.0, 0.6, None,
                 description="CT bone window in Iron, transparent below 200 HU, over a grey MR"),
    FusionPreset("MR on CT", "Green", None, None, 0.5, CT_WINDOWS["CT-Abdomen"],
                 description="MR in green (automatic window/level), over a CT soft-tissue window"),
)}


def find_fusion_preset(preset: str | FusionPreset) -> FusionPreset:
    """The preset itself, or the built-in preset called ``preset`` (case does not matter)."""
    if isinstance(preset, FusionPreset):
        return preset
    if isinstance(preset, str):
        for name, found in FUSION_PRESETS.items():
            if name.lower() == preset.strip().lower():
                return found
    raise PresetError(f"unknown display preset {preset!r} (known: {', '.join(FUSION_PRESETS)})")


def _check_scalar_volume(scene: Any, node: Any, role: str) -> None:
    if node is None:
        raise InputError(f"no {role} volume is selected")
    if not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode") \
            or node.IsA("vtkMRMLTensorVolumeNode"):
        raise InputError(f"{role} volume {node_name(node)} is a {node.GetClassName()}, "
                         "not a scalar volume (vtkMRMLScalarVolumeNode)")
    if node.GetScene() is not scene:
        raise InputError(f"{role} volume {node_name(node)} is not in this scene")


def _color_node(scene: Any, name: str, preset: FusionPreset) -> Any:
    try:
        return find_color_node(scene, name)
    except InputError as error:
        raise InputError(f"display preset '{preset.name}': {error}") from None


def _set_display(volume: Any, color: Any, window: WindowLevel | None, lower_threshold: float | None) -> Any:
    if volume.GetDisplayNode() is None:
        volume.CreateDefaultDisplayNodes()
    display = volume.GetDisplayNode()
    previous = display.StartModify()
    display.SetAndObserveColorNodeID(color.GetID())
    if window is None:
        display.AutoWindowLevelOn()
    else:
        display.AutoWindowLevelOff()
        display.SetWindowLevel(window.window, window.level)
    display.AutoThresholdOff()
    if lower_threshold is None:
        display.ApplyThresholdOff()
    else:
        display.SetThreshold(float(lower_threshold), OPEN_UPPER_THRESHOLD)
        display.ApplyThresholdOn()
    display.EndModify(previous)
    return display


def apply_fusion_preset(scene: Any, background_node: Any, foreground_node: Any, preset: str | FusionPreset,
                        colormap: str | None = None, link: bool = True) -> list[Any]:
    """Show ``foreground_node`` over ``background_node`` in every slice view as ``preset`` says.

    On the volumes' display nodes: colour node, window/level (automatic off, or on for a preset
    without a window), threshold (applied from the preset's lower threshold, so lower foreground
    voxels are transparent; off otherwise). On every ``vtkMRMLSliceCompositeNode``: background
    and foreground volume, foreground opacity and linked control (``link``: the views move
    together). ``colormap`` (a colour node name) replaces the preset's foreground colour map.

    Every input is checked first: a volume that is missing, not a scalar volume (label maps too)
    or not in ``scene``, one volume in both roles, an unknown preset or a colour map the scene
    lacks raises a one-line :class:`InputError` and nothing changes. Returns the composite nodes
    that were set (none on a scene without slice views).
    """
    if scene is None:
        raise InputError("no scene is given")
    found = find_fusion_preset(preset)
    _check_scalar_volume(scene, background_node, "background")
    _check_scalar_volume(scene, foreground_node, "foreground")
    if background_node is foreground_node:
        raise InputError(f"volume {node_name(background_node)} cannot be both the background and the foreground")
    foreground_color = _color_node(scene, colormap or found.foreground_colormap, found)
    background_color = _color_node(scene, found.background_colormap, found)

    _set_display(background_node, background_color, found.background_window, None)
    _set_display(foreground_node, foreground_color, found.foreground_window, found.lower_threshold)
    composites = _nodes(scene, "vtkMRMLSliceCompositeNode")
    for composite in composites:
        previous = composite.StartModify()
        composite.SetBackgroundVolumeID(background_node.GetID())
        composite.SetForegroundVolumeID(foreground_node.GetID())
        composite.SetForegroundOpacity(float(found.foreground_opacity))
        composite.SetLinkedControl(1 if link else 0)
        composite.EndModify(previous)
    return composites
