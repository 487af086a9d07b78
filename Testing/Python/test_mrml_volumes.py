"""Volume, label map and segmentation nodes <-> SimpleITK images on the real MRML classes."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import SimpleITK as sitk

from optional_modules import require_module

require_module("slicer", "the MRML bridge tests need slicer-core")

import slicer  # noqa: E402
import vtk  # noqa: E402

from regsuite.errors import InputError  # noqa: E402
from regsuite.mrml import mask_from_node, sitk_to_volume, volume_to_sitk  # noqa: E402
from regsuite.mrml.volumes import numpy_to_vtk_matrix  # noqa: E402


def oblique(size=(12, 10, 8), spacing=(1.5, 1.2, 2.5), origin=(3.0, -4.0, 5.0), seed=0) -> sitk.Image:
    array = np.random.default_rng(seed).random(size[::-1]).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(sitk.VersorTransform((0.3, 0.2, 0.1), 0.4).GetMatrix())
    return image


def test_round_trip_keeps_voxels_and_lps_geometry(mrml):
    image = oblique()
    node = sitk_to_volume(image, mrml.scene, "a")
    ras_origin = np.array(node.GetOrigin())
    assert np.allclose(ras_origin, np.array(image.GetOrigin()) * [-1, -1, 1])
    back = volume_to_sitk(node)
    assert np.allclose(back.GetOrigin(), image.GetOrigin()) and np.allclose(back.GetSpacing(), image.GetSpacing())
    assert np.allclose(back.GetDirection(), image.GetDirection())
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    # the same geometry Slicer's own storage node writes and SimpleITK reads
    storage = node.CreateDefaultStorageNode()
    path = os.path.join(tempfile.mkdtemp(), "rt.nrrd")
    storage.SetFileName(path)
    assert storage.WriteData(node)
    disk = sitk.ReadImage(path)
    assert np.allclose(disk.GetOrigin(), back.GetOrigin()) and np.allclose(disk.GetDirection(), back.GetDirection())


def test_linear_parent_is_folded_and_nonlinear_parent_refused(mrml):
    image = oblique()
    node = sitk_to_volume(image, mrml.scene, "a")
    matrix = np.eye(4)
    matrix[:3, 3] = [10.0, -5.0, 2.0]  # RAS translation
    parent = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    parent.SetMatrixTransformToParent(numpy_to_vtk_matrix(matrix))
    node.SetAndObserveTransformNodeID(parent.GetID())
    world = volume_to_sitk(node)
    assert np.allclose(np.array(world.GetOrigin()) - image.GetOrigin(), [-10.0, 5.0, 2.0])  # LPS
    assert np.allclose(volume_to_sitk(node, world=False).GetOrigin(), image.GetOrigin())
    grid = mrml.scene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    field = vtk.vtkImageData()
    field.SetDimensions(3, 3, 3)
    field.AllocateScalars(vtk.VTK_DOUBLE, 3)
    transform = slicer.vtkOrientedGridTransform()
    transform.SetDisplacementGridData(field)
    grid.SetAndObserveTransformFromParent(transform)
    node.SetAndObserveTransformNodeID(grid.GetID())
    with pytest.raises(InputError, match="harden"):
        volume_to_sitk(node)


def test_bad_volumes_give_one_line_errors(mrml):
    with pytest.raises(InputError, match="no fixed volume"):
        volume_to_sitk(None, "fixed volume")
    vector = mrml.scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    data = vtk.vtkImageData()
    data.SetDimensions(4, 4, 4)
    data.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 3)
    vector.SetAndObserveImageData(data)
    with pytest.raises(InputError, match="3 components"):
        volume_to_sitk(vector, "moving volume")
    empty = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="no image data"):
        volume_to_sitk(empty)
    bad = oblique()
    bad[2, 2, 2] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        volume_to_sitk(sitk_to_volume(bad, mrml.scene, "nan"))


def test_masks_from_label_maps_and_segmentations(mrml):
    image = oblique()
    volume = sitk_to_volume(image, mrml.scene, "vol")
    labels = sitk.BinaryThreshold(image, 0.6, 1.0, 3, 0)
    label_node = sitk_to_volume(labels, mrml.scene, "lab", labelmap=True)
    expected = int((sitk.GetArrayFromImage(labels) > 0).sum())
    mask = mask_from_node(label_node, volume, "fixed mask")
    assert mask.GetPixelID() == sitk.sitkUInt8 and int(sitk.GetArrayFromImage(mask).sum()) == expected
    segmentation = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(label_node, segmentation)
    count = mrml.scene.GetNumberOfNodes()
    mask = mask_from_node(segmentation, volume, "fixed mask")
    assert int(sitk.GetArrayFromImage(mask).sum()) == expected
    assert mrml.scene.GetNumberOfNodes() == count  # the temporary export left nothing behind
    shifted = sitk_to_volume(labels, mrml.scene, "lab2", labelmap=True)
    shifted.SetOrigin(500.0, 500.0, 500.0)
    with pytest.raises(InputError, match="does not overlap"):
        mask_from_node(shifted, volume, "fixed mask")
    zeros = sitk_to_volume(labels * 0, mrml.scene, "zeros", labelmap=True)
    with pytest.raises(InputError, match="empty"):
        mask_from_node(zeros, volume, "moving mask")
    far = sitk_to_volume(oblique(origin=(400.0, 400.0, 400.0)), mrml.scene, "far")
    with pytest.raises(InputError, match="does not overlap"):
        mask_from_node(segmentation, far, "fixed mask")
    with pytest.raises(InputError, match="label map volume or a segmentation"):
        mask_from_node(mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "t"), volume)
