"""The Registration panel's parameter node on the real ``vtkMRMLScriptedModuleNode`` (slicer-core).

slicer-core has no ``slicer.parameterNodeWrapper``, so these tests exercise the fallback wrapper:
typed attributes stored as node references and string parameters, kept through a .mrml round trip.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from optional_modules import require_module

require_module("slicer", "the parameter node tests need slicer-core")

import slicer  # noqa: E402


@pytest.fixture()
def parameters(mrml):
    from RegSuiteRegistrationLib.logic import RegSuiteRegistrationLogic
    from RegSuiteRegistrationLib.parameters import getParameterNode

    return getParameterNode(RegSuiteRegistrationLogic())


def _volume(scene, name, labelmap=False):
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode", name)
    array = (np.arange(6 * 7 * 8).reshape(6, 7, 8) % 5).astype(np.uint8 if labelmap else np.float32)
    slicer.util.updateVolumeFromArray(node, array)
    node.SetSpacing(1.5, 1.5, 2.0)
    return node


def test_fallback_defaults_and_type_checks(parameters, mrml):
    from RegSuiteRegistrationLib.parameters import usesSlicerWrapper

    if usesSlicerWrapper():
        pytest.skip("Slicer's own parameterNodeWrapper is available; the fallback is not used")
    assert (parameters.preset, parameters.device, parameters.presetOverride) == ("affine", "auto", "")
    assert parameters.fixedVolume is None and parameters.outputTransform is None
    node = parameters.parameterNode
    # Slicer's parameter node: the scene's singleton for the module, named by the ModuleName attribute
    assert (node.GetAttribute("ModuleName"), node.GetSingletonTag()) == ("RegSuiteRegistration", "RegSuiteRegistration")
    assert mrml.scene.GetSingletonNode("RegSuiteRegistration", "vtkMRMLScriptedModuleNode") is node
    transform = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "t")
    with pytest.raises(TypeError, match="fixedVolume.*vtkMRMLScalarVolumeNode"):
        parameters.fixedVolume = transform
    with pytest.raises(TypeError, match="preset"):
        parameters.preset = 3
    parameters.initialTransform = transform
    assert parameters.initialTransform is transform
    parameters.initialTransform = None
    assert parameters.initialTransform is None


def test_values_survive_saving_the_scene_and_loading_it_into_a_fresh_scene(parameters, mrml, tmp_path):
    import slicer_standin
    from RegSuiteRegistrationLib.logic import RegSuiteRegistrationLogic
    from RegSuiteRegistrationLib.parameters import getParameterNode

    scene = mrml.scene
    label = _volume(scene, "fixed_label", labelmap=True)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "moving_segments")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(label)
    mrml.logics["segmentations"].ImportLabelmapToSegmentationNode(label, segmentation)
    nodes = {"fixedVolume": _volume(scene, "fixed"), "movingVolume": _volume(scene, "moving"),
             "fixedMask": label, "movingMask": segmentation,
             "initialTransform": scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "initial"),
             "outputTransform": scene.AddNewNodeByClass("vtkMRMLTransformNode", "result"),
             "outputVolume": _volume(scene, "resampled")}
    edited = {"name": "rigid", "stages": [{"model": "rigid", "metric": "mi", "levels": [[2, 1, 10]]}]}
    strings = {"preset": "rigid", "device": "cpu", "presetOverride": json.dumps(edited)}
    for name, value in {**nodes, **strings}.items():
        setattr(parameters, name, value)

    scene.SetRootDirectory(str(tmp_path))
    for node in nodes.values():
        if node.IsA("vtkMRMLStorableNode"):
            storage = node.CreateDefaultStorageNode()
            scene.AddNode(storage)
            node.SetAndObserveStorageNodeID(storage.GetID())
            extension = storage.GetDefaultWriteFileExtension()
            storage.SetFileName(str(tmp_path / f"{node.GetName()}.{extension}"))
            assert storage.WriteData(node), node.GetName()
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Commit()

    fresh, _logics = slicer_standin.make_scene()  # also the new slicer.mrmlScene
    fresh.SetURL(str(tmp_path / "scene.mrml"))
    assert fresh.Import()
    restored = getParameterNode(RegSuiteRegistrationLogic())
    assert restored.parameterNode.GetScene() is fresh
    # the imported node is the module's parameter node: no second one was created next to it
    modules = [fresh.GetNthNodeByClass(i, "vtkMRMLScriptedModuleNode").GetAttribute("ModuleName")
               for i in range(fresh.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode"))]
    assert modules.count("RegSuiteRegistration") == 1
    assert getParameterNode(RegSuiteRegistrationLogic()).parameterNode is restored.parameterNode
    for name, node in nodes.items():
        value = getattr(restored, name)
        assert value is not None and value.GetName() == node.GetName() and value.GetScene() is fresh, name
    assert {name: getattr(restored, name) for name in strings} == strings
    assert json.loads(restored.presetOverride) == edited
    fresh.Clear(1)
