"""Checked reading of the Registration Quality inputs: MRML nodes -> SimpleITK images and LPS points.

Every function raises :class:`regsuite.errors.InputError` with a one-line message for a missing
node, a node of the wrong type, an empty segmentation or point list, and never modifies its
input nodes (temporary label map nodes it adds for an export are removed again).

Frames: nodes are read where the user sees them (world RAS, converted to LPS), except a node
placed directly under the registration transform itself, which is read in its own (local)
coordinates: that is where the registration saw it (the transform maps fixed world points to
those coordinates), and the usual way to view a moving image aligned in Slicer.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import SimpleITK as sitk

from regsuite.errors import InputError
from regsuite.geometry import ras_to_lps
from regsuite.mrml.volumes import mask_from_node, node_name, volume_to_sitk


@contextmanager
def scratch(scene: Any) -> Iterator[None]:
    """Remove again every node added to ``scene`` inside the block.

    Segment exports add a label map node with a display node and a colour table; this keeps
    those temporary nodes from piling up in the user's scene.
    """
    before = {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}
    try:
        yield
    finally:
        added = [scene.GetNthNode(index) for index in range(scene.GetNumberOfNodes())]
        for node in reversed([node for node in added if node.GetID() not in before]):
            scene.RemoveNode(node)


def require(node: Any, role: str, class_name: str, kind: str) -> Any:
    """``node`` when it is a ``class_name``; else an :class:`InputError` ('no <role> is selected'...)."""
    if node is None:
        raise InputError(f"no {role} is selected")
    if not hasattr(node, "IsA") or not node.IsA(class_name):
        what = node.GetClassName() if hasattr(node, "GetClassName") else type(node).__name__
        raise InputError(f"{role} {node_name(node) if hasattr(node, 'GetName') else ''} is a {what}, not {kind}")
    return node


def require_transform(node: Any) -> Any:
    return require(node, "transform", "vtkMRMLTransformNode", "a transform node")


def under_transform(node: Any, transform_node: Any) -> bool:
    """True when ``node`` is placed directly under ``transform_node`` (then it is read locally)."""
    return transform_node is not None and node.GetTransformNodeID() == transform_node.GetID()


def image(node: Any, role: str, transform_node: Any = None) -> sitk.Image:
    """A scalar volume node as a float32 SimpleITK image (LPS)."""
    require(node, role, "vtkMRMLVolumeNode", "a volume")
    return sitk.Cast(volume_to_sitk(node, role, world=not under_transform(node, transform_node)),
                     sitk.sitkFloat32)


def points_lps(node: Any, role: str, transform_node: Any = None) -> tuple[list[str], np.ndarray]:
    """Labels and ``(N, 3)`` LPS positions of a markups point list (all points must be placed)."""
    require(node, role, "vtkMRMLMarkupsNode", "a markups point list")
    count = node.GetNumberOfControlPoints()
    if count == 0:
        raise InputError(f"{role} {node_name(node)} has no points")
    local = under_transform(node, transform_node)
    labels, points = [], np.zeros((count, 3))
    for index in range(count):
        if node.GetNthControlPointPositionStatus(index) != node.PositionDefined:
            raise InputError(f"point {index + 1} of {role} {node_name(node)} is not placed")
        position = [0.0, 0.0, 0.0]
        if local:
            node.GetNthControlPointPosition(index, position)
        else:
            node.GetNthControlPointPositionWorld(index, position)
        points[index] = position
        labels.append(node.GetNthControlPointLabel(index) or str(index + 1))
    return labels, ras_to_lps(points)


def segment_ids(node: Any, role: str) -> list[str]:
    """The segment IDs of a segmentation node that has at least one segment."""
    require(node, role, "vtkMRMLSegmentationNode", "a segmentation")
    segmentation = node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(index) for index in range(segmentation.GetNumberOfSegments())]
    if not ids:
        raise InputError(f"{role} {node_name(node)} has no segments")
    return ids


def segment_ids_by_name(node: Any, role: str) -> dict[str, str]:
    """Segment name -> segment ID (the first one of a repeated name)."""
    names: dict[str, str] = {}
    for segment in segment_ids(node, role):
        names.setdefault(node.GetSegmentation().GetSegment(segment).GetName(), segment)
    return names


def segment_id(node: Any, segment: str | None, role: str) -> str:
    """The ID of ``segment`` (an ID or a name) in the segmentation ``node``."""
    names = segment_ids_by_name(node, role)
    if not segment:
        raise InputError(f"no segment of {role} {node_name(node)} is selected")
    if node.GetSegmentation().GetSegment(segment) is not None:
        return segment
    if segment in names:
        return names[segment]
    raise InputError(f"{role} {node_name(node)} has no segment '{segment}' (segments: {', '.join(names)})")


def segment_image(node: Any, segment: str, role: str, transform_node: Any = None) -> sitk.Image:
    """One segment as a 0/1 float32 image on its own (cropped, 1-voxel padded) binary labelmap grid."""
    import slicer  # noqa: PLC0415
    import vtk  # noqa: PLC0415

    name = node.GetSegmentation().GetSegment(segment).GetName()
    scene = node.GetScene()
    with scratch(scene):
        labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__regsuite_segment_export")
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment)
        exported = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(node, ids, labels)
        data = labels.GetImageData()
        if not exported or data is None or data.GetNumberOfPoints() == 0 or data.GetScalarRange()[1] <= 0:
            raise InputError(f"segment '{name}' of {role} {node_name(node)} is empty")
        # The export is placed under the segmentation's parent transform; read it like the segmentation.
        inside = volume_to_sitk(labels, f"segment '{name}' of {role}", world=not under_transform(node, transform_node))
    mask = sitk.Cast(sitk.NotEqual(inside, 0), sitk.sitkFloat32)
    return sitk.ConstantPad(mask, [1, 1, 1], [1, 1, 1], 0.0)


def region(node: Any, reference_node: Any, reference: sitk.Image, role: str,
           segments: list[str] | None = None) -> sitk.Image:
    """A 0/1 ``uint8`` mask on ``reference``'s grid: the union of ``segments`` (default: all) of a
    segmentation, or the non-zero voxels of a label map volume.

    Raises :class:`InputError` when a segment is empty or the mask does not overlap the grid.
    """
    if node is None or not node.IsA("vtkMRMLSegmentationNode"):
        return mask_from_node(node, reference_node, role)
    segments = segments or segment_ids(node, role)
    identity = sitk.Transform(3, sitk.sitkIdentity)
    inside = None
    for segment in segments:
        part = warp_mask(segment_image(node, segment, role), reference, identity)
        inside = part if inside is None else sitk.Or(inside, part)
    if not np.any(sitk.GetArrayViewFromImage(inside)):
        what = (f"segment '{node.GetSegmentation().GetSegment(segments[0]).GetName()}' of " if len(segments) == 1
                else "") + f"{role} {node_name(node)}"
        raise InputError(f"{what} does not overlap volume {node_name(reference_node)}")
    return inside


def warp(moving: sitk.Image, reference: sitk.Image, transform: sitk.Transform, default: float = 0.0) -> sitk.Image:
    """``moving`` resampled (linear) onto ``reference``'s grid through ``transform`` (fixed -> moving)."""
    return sitk.Resample(moving, reference, transform, sitk.sitkLinear, float(default), sitk.sitkFloat32)


def warp_mask(mask: sitk.Image, reference: sitk.Image, transform: sitk.Transform) -> sitk.Image:
    """A 0/1 mask warped onto ``reference``: linear interpolation, then inside where >= 0.5 (uint8)."""
    return sitk.Cast(sitk.GreaterEqual(warp(mask, reference, transform), 0.5), sitk.sitkUInt8)


def output_volume(node: Any, role: str, inputs: list[Any]) -> Any:
    """Check an optional output volume: a scalar (not label map) volume that is not an input."""
    if node is None:
        return None
    require(node, role, "vtkMRMLScalarVolumeNode", "a scalar volume")
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(f"{role} {node_name(node)} is a label map; pick a scalar volume")
    if any(node is other for other in inputs if other is not None):
        raise InputError(f"{role} {node_name(node)} is also an input; pick another output volume")
    return node
