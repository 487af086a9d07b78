"""Fusion display presets (PET/CT, CT/MR...) on real slicer-core display and slice composite nodes.

``regsuite.mrml.fusion_presets.apply_fusion_preset`` is checked on a real scene: each built-in
preset's colour node, window/level, threshold, foreground opacity, layers and linked views, the
threshold's real effect (slicer-core's display pipeline makes lower voxels transparent), and
bad inputs (one-line InputError, display nodes left as they were). The last test runs the
Registration panel (PySide6 offscreen, see ``test_widgets_registration.py``): after a finished
registration, choosing a display preset in the Results section applies it.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from optional_modules import require_module

require_module("slicer", "the display presets are set on slicer-core's MRML nodes")

import slicer  # noqa: E402
from vtkmodules.util import numpy_support  # noqa: E402

from regsuite.errors import InputError, PresetError  # noqa: E402
from regsuite.mrml import sitk_to_volume  # noqa: E402
from regsuite.mrml.fusion_presets import (CT_WINDOWS, FUSION_PRESETS, FusionPreset, WindowLevel,  # noqa: E402
                                          apply_fusion_preset, find_fusion_preset)

KNOWN = "Default, PET on CT, PET on MR, CT on MR, MR on CT"
#: What each preset must show, written out: foreground colour node, foreground (window, level) or None
#: (automatic), lower threshold or None (off), foreground opacity, background (window, level) or None.
EXPECTED = {
    "Default": ("Grey", None, None, 0.5, None),
    "PET on CT": ("PET-Heat", (20.0, 10.0), 1.0, 0.6, (350.0, 40.0)),
    "PET on MR": ("PET-Heat", (20.0, 10.0), 1.0, 0.6, None),
    "CT on MR": ("Iron", (1000.0, 400.0), 200.0, 0.6, None),
    "MR on CT": ("Green", None, None, 0.5, (350.0, 40.0)),
}


def _add_slice_views(scene, names=("Red", "Yellow", "Green")):
    """The slice and composite nodes Slicer's view layout adds (no Qt needed)."""
    composites = []
    for name in names:
        scene.AddNewNodeByClass("vtkMRMLSliceNode", name).SetLayoutName(name)
        composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode", f"SliceComposite{name}")
        composite.SetLayoutName(name)
        composites.append(composite)
    return composites


def _mess_up(volume):
    """A display state no preset leaves: every preset must set each field itself."""
    display = volume.GetDisplayNode()
    display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeOcean")
    display.AutoWindowLevelOff()
    display.SetWindowLevel(7.0, 3.0)
    display.SetThreshold(-5.0, 5.0)
    display.ApplyThresholdOn()


def _display_state(volume):
    display = volume.GetDisplayNode()
    return (display.GetColorNodeID(), display.GetAutoWindowLevel(), display.GetWindow(), display.GetLevel(),
            display.GetApplyThreshold(), display.GetAutoThreshold(), display.GetLowerThreshold(),
            display.GetUpperThreshold())


def _composite_state(composites):
    return [(c.GetBackgroundVolumeID(), c.GetForegroundVolumeID(), c.GetForegroundOpacity(), c.GetLinkedControl())
            for c in composites]


def _assert_shows(name, background, foreground, composites):
    color, window, threshold, opacity, background_window = EXPECTED[name]
    display = foreground.GetDisplayNode()
    assert display.GetColorNode().GetName() == color
    if window is None:
        assert display.GetAutoWindowLevel() == 1
    else:
        assert display.GetAutoWindowLevel() == 0
        assert (display.GetWindow(), display.GetLevel()) == pytest.approx(window)
        assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx(
            (window[1] - window[0] / 2, window[1] + window[0] / 2))
    assert display.GetAutoThreshold() == 0
    if threshold is None:
        assert display.GetApplyThreshold() == 0
    else:
        assert display.GetApplyThreshold() == 1
        assert display.GetLowerThreshold() == pytest.approx(threshold)
        assert display.GetUpperThreshold() > 1e29  # nothing above the lower threshold is hidden
    back = background.GetDisplayNode()
    assert back.GetColorNode().GetName() == "Grey" and back.GetApplyThreshold() == 0
    if background_window is None:
        assert back.GetAutoWindowLevel() == 1
    else:
        assert back.GetAutoWindowLevel() == 0
        assert (back.GetWindow(), back.GetLevel()) == pytest.approx(background_window)
    assert composites
    for composite in composites:
        assert composite.GetBackgroundVolumeID() == background.GetID()
        assert composite.GetForegroundVolumeID() == foreground.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(opacity)
        assert composite.GetLinkedControl() == 1


@pytest.fixture()
def pair(mrml):
    """A CT-like background (HU) and a PET-like foreground (SUV 0..15) with the three slice views."""
    scene = mrml.scene
    k, j, i = np.meshgrid(np.arange(8), np.arange(10), np.arange(12), indexing="ij")
    ct = slicer.util.addVolumeFromArray((-1000 + 25 * (i + j + k) ** 1.5).astype(np.int16), name="ct")
    pet = slicer.util.addVolumeFromArray((i * 15.0 / 11.0).astype(np.float32), name="pet")
    return scene, ct, pet, _add_slice_views(scene)


def test_pet_heat_and_the_presets_colour_maps_are_in_slicer_cores_default_scene(mrml):
    from regsuite.mrml.display import find_color_node

    assert find_color_node(mrml.scene, "PET-Heat").GetID() == "vtkMRMLPETProceduralColorNodePET-Heat"
    for preset in FUSION_PRESETS.values():
        for name in (preset.foreground_colormap, preset.background_colormap):
            assert find_color_node(mrml.scene, name).GetName() == name
    assert list(FUSION_PRESETS) == KNOWN.split(", ")
    assert set(EXPECTED) == set(FUSION_PRESETS)


def test_slicers_ct_windows():
    """Slicer's own Volumes presets (VolumeDisplayPresets.json)."""
    assert [(w.window, w.level) for w in CT_WINDOWS.values()] == [(350.0, 40.0), (100.0, 50.0), (1000.0, 400.0)]
    assert list(CT_WINDOWS) == ["CT-Abdomen", "CT-Brain", "CT-Bone"]
    assert WindowLevel.from_range(0.0, 20.0).range == (0.0, 20.0)
    assert WindowLevel(1000.0, 400.0).range == (-100.0, 900.0)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_preset_sets_display_nodes_and_every_slice_view(pair, name):
    scene, ct, pet, composites = pair
    _mess_up(ct)
    _mess_up(pet)
    assert apply_fusion_preset(scene, ct, pet, name) == composites
    _assert_shows(name, ct, pet, composites)
    # applied again over another preset, it still sets every field
    other = "PET on CT" if name != "PET on CT" else "MR on CT"
    apply_fusion_preset(scene, ct, pet, other)
    apply_fusion_preset(scene, ct, pet, find_fusion_preset(name.upper()))  # a name in any case, or the preset
    _assert_shows(name, ct, pet, composites)


def test_threshold_makes_lower_foreground_voxels_transparent(pair):
    """slicer-core's own display pipeline (what a slice view blends) after "PET on CT"."""
    scene, ct, pet, _ = pair
    apply_fusion_preset(scene, ct, pet, "PET on CT")
    display = pet.GetDisplayNode()
    display.SetInputImageDataConnection(pet.GetImageDataConnection())  # as a slice layer feeds it
    connection = display.GetOutputImageDataConnection()
    producer = connection.GetProducer()
    producer.Update()
    rgba = numpy_support.vtk_to_numpy(producer.GetOutputDataObject(connection.GetIndex()).GetPointData().GetScalars())
    suv = slicer.util.arrayFromVolume(pet).ravel()
    assert rgba.shape == (suv.size, 4)
    assert np.all(rgba[suv < 1.0, 3] == 0) and np.all(rgba[suv >= 1.0, 3] == 255)
    assert (suv < 1.0).any() and (suv >= 1.0).any()
    hottest = rgba[np.argmax(suv)]
    assert hottest[0] > 200  # bright in PET-Heat (15 of 20 SUV)


def test_colour_override_and_unlinked_views(pair):
    scene, ct, pet, composites = pair
    apply_fusion_preset(scene, ct, pet, "PET on CT", colormap="Rainbow", link=False)
    display = pet.GetDisplayNode()
    assert display.GetColorNode().GetName() == "Rainbow"
    assert (display.GetWindow(), display.GetLevel(), display.GetLowerThreshold()) == pytest.approx((20.0, 10.0, 1.0))
    assert all(composite.GetLinkedControl() == 0 for composite in composites)


def test_a_scene_without_slice_views_sets_only_the_display_nodes(mrml):
    ct = slicer.util.addVolumeFromArray(np.zeros((4, 5, 6), np.int16), name="ct")
    mr = slicer.util.addVolumeFromArray(np.ones((4, 5, 6), np.float32), name="mr")
    mr.SetAndObserveDisplayNodeID(None)  # no display node yet: one is made
    assert apply_fusion_preset(mrml.scene, ct, mr, "MR on CT") == []
    assert mr.GetDisplayNode().GetColorNode().GetName() == "Green"
    assert (ct.GetDisplayNode().GetWindow(), ct.GetDisplayNode().GetLevel()) == (350.0, 40.0)


def test_bad_inputs_change_nothing(pair):
    scene, ct, pet, composites = pair
    _mess_up(pet)
    labels = slicer.util.addVolumeFromArray(np.zeros((8, 10, 12), np.uint8), name="labels",
                                            nodeClassName="vtkMRMLLabelMapVolumeNode")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    other_scene = slicer.vtkMRMLScene()
    stranger = other_scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "stranger")
    before = (_display_state(ct), _display_state(pet), _composite_state(composites))
    odd = FusionPreset("Odd", "NoSuchMap", None, None, 0.5, None)
    cases = [
        ((scene, ct, pet, "PET on XR"), PresetError, f"^unknown display preset 'PET on XR' \\(known: {KNOWN}\\)$"),
        ((scene, ct, pet, None), PresetError, f"^unknown display preset None \\(known: {KNOWN}\\)$"),
        ((scene, ct, None, "PET on CT"), InputError, "^no foreground volume is selected$"),
        ((scene, None, pet, "PET on CT"), InputError, "^no background volume is selected$"),
        ((scene, ct, labels, "PET on CT"), InputError,
         "^foreground volume 'labels' is a vtkMRMLLabelMapVolumeNode, not a scalar volume"),
        ((scene, transform, pet, "PET on CT"), InputError,
         "^background volume 'shift' is a vtkMRMLLinearTransformNode, not a scalar volume"),
        ((scene, ct, stranger, "PET on CT"), InputError, "^foreground volume 'stranger' is not in this scene$"),
        ((scene, pet, pet, "PET on CT"), InputError, "^volume 'pet' cannot be both the background and the foreground$"),
        ((scene, ct, pet, odd), InputError, "^display preset 'Odd': colour map 'NoSuchMap' is not in the scene"),
        ((None, ct, pet, "PET on CT"), InputError, "^no scene is given$"),
    ]
    for arguments, error, message in cases:
        with pytest.raises(error, match=message) as raised:
            apply_fusion_preset(*arguments)
        assert "\n" not in str(raised.value)
        assert (_display_state(ct), _display_state(pet), _composite_state(composites)) == before, message
    with pytest.raises(InputError, match="^display preset 'PET on CT': colour map 'NoSuchMap' is not in the scene"):
        apply_fusion_preset(scene, ct, pet, "PET on CT", colormap="NoSuchMap")
    assert (_display_state(ct), _display_state(pet), _composite_state(composites)) == before
    with pytest.raises(InputError, match="foreground opacity 1.5 is outside 0..1"):
        FusionPreset("Bright", "Grey", None, None, 1.5, None)
    with pytest.raises(InputError, match="the window must be positive"):
        WindowLevel(0.0, 40.0, "flat")


def test_logic_applies_presets(pair):
    from RegSuiteRegistrationLib.logic import RegSuiteRegistrationLogic

    scene, ct, pet, composites = pair
    logic = RegSuiteRegistrationLogic()
    descriptions = logic.fusionPresetDescriptions()
    assert list(descriptions) == KNOWN.split(", ") and "PET-Heat" in descriptions["PET on CT"]
    assert logic.applyFusionPreset(ct, pet, "CT on MR") == composites
    _assert_shows("CT on MR", ct, pet, composites)
    with pytest.raises(InputError, match="^no fixed volume is selected$"):
        logic.applyFusionPreset(None, pet, "CT on MR")


# ---------------------------------------------------------------------- the panel
QUICK_RIGID = {"name": "quick-rigid", "initialization": "geometry",
               "stages": [{"model": "rigid", "metric": "ncc", "learning_rate": 1.0,
                           "levels": [{"shrink": 2, "smoothing": 1, "iterations": 20}]}]}


@pytest.fixture()
def panel(mrml, monkeypatch, tmp_path):
    """The Registration panel over two phantom volumes (moving shifted) and the three slice views."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    require_module("PySide6.QtWidgets", "the Registration panel runs on PySide6")
    import qt_shim
    from phantoms import make_grid, sample_phantom
    from RegSuiteRegistrationLib.logic import RegSuiteRegistrationLogic

    grid = make_grid(size=(24, 24, 20), spacing=(3.0, 3.0, 3.0))
    fixed = sitk_to_volume(sample_phantom(grid), mrml.scene, "fixed")
    moving = sitk_to_volume(sample_phantom(grid, world_map=lambda p: p - np.array([3.0, -2.0, 1.5])), mrml.scene,
                            "moving")
    composites = qt_shim.add_slice_views(mrml.scene)
    monkeypatch.setenv("REGSUITE_USER_PRESETS", str(tmp_path / "presets"))
    RegSuiteRegistrationLogic().savePreset(QUICK_RIGID, "quick-rigid")
    qt_shim.install(monkeypatch, tmp_path / "Slicer")
    widget = qt_shim.open_module("RegSuiteRegistration", monkeypatch)
    yield widget, mrml.scene, fixed, moving, composites
    if widget._job is not None:
        widget._job.cancel()
    qt_shim.close_module(widget)
    assert qt_shim.take_slot_errors() == [], "a slot raised (PythonQt would only print it)"


def _select(combo, text):
    index = combo.findText(text)
    assert index >= 0, f"'{text}' is not offered"
    combo.currentIndex = index


def _run(widget):
    import qt_shim

    widget.ui.applyButton.click()
    qt_shim.wait_until(lambda: widget.ui.applyButton.text == "Apply")
    assert widget.ui.statusLabel.text.startswith("Done in "), widget.ui.statusLabel.text


def test_panel_applies_the_chosen_preset_after_a_registration(panel):
    widget, scene, fixed, moving, composites = panel
    ui = widget.ui
    presets = ui.fusionPresetComboBox
    assert [presets.itemText(index) for index in range(presets.count)] == KNOWN.split(", ")
    assert presets.currentText == "Default" and not presets.enabled  # no result yet
    tooltip = presets.itemData(1, sys.modules["qt"].Qt.ToolTipRole)  # each entry says what it shows
    assert tooltip == FUSION_PRESETS["PET on CT"].description and "PET-Heat" in tooltip
    assert ui.fusionColormapComboBox.currentText == "From preset"
    _select(ui.presetComboBox, "quick-rigid")
    _select(ui.deviceComboBox, "cpu")
    _run(widget)
    assert presets.enabled and ui.fusionColormapComboBox.enabled
    # the Logic's plain fusion: the volumes keep their own display
    assert moving.GetDisplayNode().GetColorNode().GetName() == "Grey" and moving.GetDisplayNode().GetAutoWindowLevel()
    assert _composite_state(composites) == [(fixed.GetID(), moving.GetID(), 0.5, 1)] * 3

    _select(presets, "PET on CT")
    _assert_shows("PET on CT", fixed, moving, composites)
    assert "color" not in ui.statusLabel.styleSheet
    _select(ui.fusionColormapComboBox, "Rainbow")  # refines the preset: only the colour map changes
    assert moving.GetDisplayNode().GetColorNode().GetName() == "Rainbow" and presets.currentText == "PET on CT"
    assert moving.GetDisplayNode().GetLowerThreshold() == pytest.approx(1.0)
    ui.checkerboardButton.click()
    assert all(c.GetForegroundVolumeID() is None for c in composites)
    _select(presets, "CT on MR")  # back to the fusion, in the preset's own colours
    assert not ui.checkerboardButton.checked and ui.fusionColormapComboBox.currentText == "From preset"
    _assert_shows("CT on MR", fixed, moving, composites)
    _select(presets, "Default")
    _assert_shows("Default", fixed, moving, composites)

    # a second run, resampled into a new volume: the chosen preset shows it too
    _select(presets, "PET on MR")
    registered = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "registered")
    ui.outputVolumeSelector.setCurrentNode(registered)
    _run(widget)
    assert presets.currentText == "PET on MR" and widget.logic.registeredVolume(widget._outputs) is registered
    _assert_shows("PET on MR", fixed, registered, composites)
    assert "color" not in ui.statusLabel.styleSheet
