"""Volume, label map and segmentation nodes <-> SimpleITK images (RAS scene <-> LPS engine).

A volume node's geometry is its IJK-to-RAS matrix; the SimpleITK image that the engine sees has
the same voxels (numpy order k, j, i) with origin and direction converted to LPS. A *linear*
parent transform of the node is folded into the geometry, so the image is where the user sees
the volume in the scene; a non-linear parent transform must be hardened first.

Example:
    >>> import slicer, SimpleITK as sitk
    >>> scene = slicer.vtkMRMLScene()
    >>> image = sitk.Image([4, 5, 6], sitk.sitkFloat32)
    >>> image.SetOrigin((10.0, 20.0, 30.0))
    >>> node = sitk_to_volume(image, scene, "demo")
    >>> node.GetOrigin()  # RAS
    (-10.0, -20.0, 30.0)
    >>> volume_to_sitk(node).GetOrigin()  # back to LPS
    (10.0, 20.0, 30.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import LPS_FROM_RAS, lps_to_ras, ras_to_lps, same_grid


def _slicer() -> Any:
    import slicer  # noqa: PLC0415  (MRML classes; imported late so the engine never needs them)

    return slicer


def _matrix_to_numpy(matrix: Any) -> np.ndarray:
    return np.array([[matrix.GetElement(i, j) for j in range(4)] for i in range(4)])


def numpy_to_vtk_matrix(array: np.ndarray) -> Any:
    """A ``vtkMatrix4x4`` holding the 4x4 numpy ``array``."""
    import vtk  # noqa: PLC0415

    matrix = vtk.vtkMatrix4x4()
    for i in range(4):
        for j in range(4):
            matrix.SetElement(i, j, float(array[i, j]))
    return matrix


def node_name(node: Any) -> str:
    """The node's name for messages ('<none>' when no node is given)."""
    return "<none>" if node is None else f"'{node.GetName()}'"


def ijk_to_ras(node: Any, world: bool = True) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix of a volume node; with ``world`` a linear parent is applied.

    Raises :class:`InputError` when ``world`` is asked and the parent transform is not linear.
    """
    import vtk  # noqa: PLC0415

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    result = _matrix_to_numpy(matrix)
    parent = node.GetParentTransformNode()
    if world and parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise InputError(f"volume {node_name(node)} is under the non-linear transform "
                             f"{node_name(parent)}; harden the transform first")
        to_world = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(to_world)
        result = _matrix_to_numpy(to_world) @ result
    return result


def _voxels(node: Any, role: str) -> np.ndarray:
    image = node.GetImageData() if node is not None else None
    if image is None:
        raise InputError(f"{role} {node_name(node)} has no image data")
    components = image.GetNumberOfScalarComponents()
    if node.IsA("vtkMRMLMultiVolumeNode"):
        raise InputError(f"{role} {node_name(node)} is 4D ({components} frames); pick one frame as a scalar volume")
    if components != 1 or node.IsA("vtkMRMLVectorVolumeNode") or node.IsA("vtkMRMLDiffusionTensorVolumeNode"):
        raise InputError(f"{role} {node_name(node)} has {components} components per voxel; "
                         "a scalar (single-component) 3D volume is needed")
    return _slicer().util.arrayFromVolume(node)


def volume_to_sitk(node: Any, role: str = "volume", world: bool = True) -> sitk.Image:
    """A copy of a scalar volume node as a SimpleITK image in LPS (the node is not modified).

    Raises :class:`InputError` for a missing node, a vector/tensor/4D volume, a volume with no
    voxels or NaN/Inf voxels, or a non-linear parent transform (with ``world``).
    """
    if node is None:
        raise InputError(f"no {role} is selected")
    if not node.IsA("vtkMRMLScalarVolumeNode"):
        raise InputError(f"{role} {node_name(node)} is a {node.GetClassName()}, not a scalar volume")
    voxels = np.array(_voxels(node, role), copy=True)
    if voxels.ndim != 3 or min(voxels.shape) < 1:
        raise InputError(f"{role} {node_name(node)} is not a 3D volume (array shape {voxels.shape})")
    if voxels.dtype.kind == "f" and not np.isfinite(voxels).all():
        raise InputError(f"{role} {node_name(node)} has NaN or infinite voxels")
    matrix = ijk_to_ras(node, world)
    axes = matrix[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if np.any(spacing <= 0):
        raise InputError(f"{role} {node_name(node)} has a zero voxel spacing")
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(v) for v in ras_to_lps(matrix[:3, 3])))
    image.SetDirection(tuple(float(v) for v in (LPS_FROM_RAS @ (axes / spacing)).ravel()))
    return image


def set_volume_geometry(node: Any, image: sitk.Image) -> None:
    """Give ``node`` the geometry of the LPS SimpleITK ``image`` (RAS IJK-to-RAS matrix)."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_FROM_RAS @ direction
    node.SetIJKToRASDirectionMatrix(numpy_to_vtk_matrix(matrix))
    node.SetSpacing(*image.GetSpacing())
    node.SetOrigin(*lps_to_ras(image.GetOrigin()))


def sitk_to_volume(image: sitk.Image, scene: Any, name: str, node: Any = None,
                   labelmap: bool = False) -> Any:
    """Put ``image`` (LPS) into ``node`` or into a new scalar/label map volume node of ``scene``.

    The node gets default display nodes; an existing ``node`` keeps its ID and references.
    """
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"image for volume '{name}' must be a 3D scalar image")
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode",
                                       scene.GenerateUniqueName(name))
    set_volume_geometry(node, image)
    _slicer().util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def _segmentation_to_labels(node: Any, reference: Any, segment_ids: list[str] | None, role: str) -> sitk.Image:
    """Binary union of the segmentation's segments on ``reference``'s grid (its own grid when None).

    Every node the export creates (label map, its display node, colour table) is removed again.
    """
    import vtk  # noqa: PLC0415

    slicer = _slicer()
    segmentation = node.GetSegmentation()
    ids = segment_ids if segment_ids else [segmentation.GetNthSegmentID(i)
                                           for i in range(segmentation.GetNumberOfSegments())]
    if not ids:
        raise InputError(f"{role} {node_name(node)} has no segments")
    for segment_id in ids:
        if segmentation.GetSegment(segment_id) is None:
            raise InputError(f"{role} {node_name(node)} has no segment '{segment_id}'")
    scene = node.GetScene()
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__regsuite_mask_export")
    try:
        names = vtk.vtkStringArray()
        for segment_id in ids:
            names.InsertNextValue(segment_id)
        logic = slicer.vtkSlicerSegmentationsModuleLogic
        exported = (logic.ExportSegmentsToLabelmapNode(node, names, labels, reference) if reference is not None
                    else logic.ExportSegmentsToLabelmapNode(node, names, labels))
        if not exported or labels.GetImageData() is None:
            raise InputError(f"{role} {node_name(node)} is empty or cannot be exported to a label map")
        return volume_to_sitk(labels, role, world=False)
    finally:
        created = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        for extra in created:
            if extra is not None and extra.GetID() not in before:
                scene.RemoveNode(extra)


def mask_from_node(node: Any, volume: Any, role: str = "mask",
                   segment_ids: list[str] | None = None) -> sitk.Image:
    """A ``uint8`` 0/1 mask for ``volume`` from a label map volume or a segmentation node.

    A label map keeps its own grid when it matches ``volume`` and is resampled onto it (nearest
    neighbour) otherwise; a segmentation is exported on ``volume``'s grid (all segments, or
    ``segment_ids``). Raises :class:`InputError` when the mask is empty or does not overlap
    ``volume``.
    """
    if node is None:
        raise InputError(f"no {role} is selected")
    reference = volume_to_sitk(volume, "volume of the " + role)
    if node.IsA("vtkMRMLSegmentationNode"):
        labels = _segmentation_to_labels(node, volume, segment_ids, role)
    elif node.IsA("vtkMRMLScalarVolumeNode"):
        labels = volume_to_sitk(node, role)
    else:
        raise InputError(f"{role} {node_name(node)} is a {node.GetClassName()}; "
                         "use a label map volume or a segmentation")
    if not np.any(sitk.GetArrayViewFromImage(labels) != 0):
        if node.IsA("vtkMRMLSegmentationNode"):
            try:  # empty on the volume's grid: empty, or only outside the volume?
                own = _segmentation_to_labels(node, None, segment_ids, role)
            except InputError:
                own = None
            if own is not None and np.any(sitk.GetArrayViewFromImage(own) != 0):
                raise InputError(f"{role} {node_name(node)} does not overlap volume {node_name(volume)}")
        raise InputError(f"{role} {node_name(node)} is empty (no non-zero voxel)")
    if not same_grid(labels, reference):
        labels = sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        if not np.any(sitk.GetArrayViewFromImage(labels) != 0):
            raise InputError(f"{role} {node_name(node)} does not overlap volume {node_name(volume)}")
    mask = sitk.GetImageFromArray((sitk.GetArrayViewFromImage(labels) != 0).astype(np.uint8))
    mask.CopyInformation(reference)
    return mask
