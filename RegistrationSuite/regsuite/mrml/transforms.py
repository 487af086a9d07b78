"""Engine transforms <-> Slicer transform nodes (LPS engine <-> RAS scene).

A registration result maps *fixed* world points to *moving* world points (ITK resampling
convention). It is stored in a transform node as its transform **from parent**, so that a moving
volume put under the node is shown aligned to the fixed volume, and so that Slicer's storage node
writes plain ITK transforms (a non-linear transform stored *to* parent would be written as an ITK
``Inverse*`` transform that SimpleITK cannot read).

What :func:`result_to_node` builds, for the pieces of the result in ITK composite order (the last
piece is applied to a point first):

* only linear pieces: a ``vtkMRMLLinearTransformNode`` holding their product;
* one cubic ``BSplineTransform`` (applied first) after optional linear pieces, whose valid region
  covers the fixed image: a ``vtkMRMLBSplineTransformNode`` (``vtkOrientedBSplineTransform``), or,
  with linear pieces, a ``vtkMRMLTransformNode`` holding the exact composition (a
  ``vtkGeneralTransform``, written by Slicer as an ITK ``CompositeTransform``);
* anything else (a displacement field, a composite with a field, a non-linear initial transform,
  a B-spline that does not cover the fixed image) or ``force_grid``: a ``vtkMRMLGridTransformNode``
  holding the displacement field sampled on the fixed image grid. Outside its grid VTK repeats the
  edge displacement while ITK returns zero, so the grid always covers the whole fixed image.

A grid transform interpolates its field **cubically**, as Slicer does with every grid transform it
reads from a file (``.h5``, ``.nrrd``, ``.mrb``): the node then maps points the same before and
after a scene save/reload, and the same as the result's ``.h5`` loaded into Slicer. ITK and
SimpleITK read the same file with trilinear interpolation. Both interpolate the stored vectors, so
they agree exactly at the voxel centres of the fixed image (resampling onto the fixed grid gives
the same image in Slicer and ITK); between voxel centres they differ by a fraction of the field's
local curvature (on a 1 mm brain result: 0.025 mm mean, 0.28 mm at most; ``BENCHMARKS.md``).

Example:
    >>> import slicer, SimpleITK as sitk
    >>> scene = slicer.vtkMRMLScene()
    >>> fixed = sitk.Image([8, 8, 8], sitk.sitkFloat32)
    >>> node = result_to_node(sitk.TranslationTransform(3, (1.0, 2.0, 3.0)), scene, fixed)
    >>> node.GetClassName()
    'vtkMRMLLinearTransformNode'
    >>> transform_points(node, [[0.0, 0.0, 0.0]]).tolist()  # LPS in, LPS out
    [[1.0, 2.0, 3.0]]
    >>> node_to_sitk_transform(node).GetTranslation()
    (1.0, 2.0, 3.0)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io.transforms import LINEAR_SUFFIXES, displacement_field, flatten_linear
from ..geometry import LPS_FROM_RAS, lps_to_ras, lps_to_ras_matrix, ras_to_lps, ras_to_lps_matrix
from .volumes import _matrix_to_numpy, _slicer, node_name, numpy_to_vtk_matrix

__all__ = ["node_to_sitk_transform", "plan_result", "result_to_node", "set_registration_roles", "transform_points"]

#: Points sampled per call to VTK when a non-linear node is turned into a displacement field.
_CHUNK = 1 << 20

_NODE_CLASS = {"linear": "vtkMRMLLinearTransformNode", "bspline": "vtkMRMLBSplineTransformNode",
               "composite": "vtkMRMLTransformNode", "grid": "vtkMRMLGridTransformNode"}
_DESCRIPTION = {"bspline": "B-spline", "composite": "linear + B-spline", "grid": "displacement field"}


def _vtk() -> Any:
    import vtk  # noqa: PLC0415  (imported late so the engine never needs it)

    return vtk


# ----------------------------------------------------------------------------- checks


def _require_transform_node(node: Any, role: str = "transform node") -> None:
    if node is None:
        raise InputError(f"no {role} is selected")
    if not (hasattr(node, "IsA") and node.IsA("vtkMRMLTransformNode")):
        label = f"{node_name(node)} ({node.GetClassName()})" if hasattr(node, "GetName") else type(node).__name__
        raise InputError(f"{role} {label} is not a transform node")


def _require_reference(reference: Any) -> sitk.Image:
    if not isinstance(reference, sitk.Image) or reference.GetDimension() != 3:
        got = f"{reference.GetDimension()}D image" if isinstance(reference, sitk.Image) else type(reference).__name__
        raise InputError(f"reference (fixed image grid) must be a 3D SimpleITK image, got a {got}")
    return reference


def _leaves(transform: sitk.Transform | Sequence[sitk.Transform]) -> list[sitk.Transform]:
    """Pieces of a transform, a composite or a list of them, in ITK composite order, downcast."""
    if isinstance(transform, sitk.Transform):
        if transform.GetDimension() != 3:
            raise InputError(f"registration result is a {transform.GetDimension()}D {transform.GetName()}; "
                             "a 3D transform is needed")
        if transform.GetName() != "CompositeTransform":
            return [transform.Downcast()]
        composite = sitk.CompositeTransform(transform)
        if composite.GetNumberOfTransforms() == 0:  # an empty composite is the identity
            return [sitk.AffineTransform(3)]
        return _leaves([composite.GetNthTransform(n) for n in range(composite.GetNumberOfTransforms())])
    if not isinstance(transform, (list, tuple)) or not transform:
        raise InputError(f"registration result must be a SimpleITK transform or a non-empty list of them, "
                         f"got {type(transform).__name__ if transform is not None else 'None'}")
    leaves: list[sitk.Transform] = []
    for piece in transform:
        if not isinstance(piece, sitk.Transform):
            raise InputError(f"registration result list holds a {type(piece).__name__}, not a SimpleITK transform")
        leaves.extend(_leaves(piece))
    return leaves


# ----------------------------------------------------------------------------- sitk -> VTK (RAS)


def _affine_matrix(pieces: list[sitk.Transform]) -> np.ndarray:
    """4x4 LPS matrix of the product of linear ``pieces`` (ITK composite order)."""
    affine = flatten_linear(pieces[0] if len(pieces) == 1 else sitk.CompositeTransform(pieces))
    matrix = np.eye(4)
    matrix[:3, :3] = np.array(affine.GetMatrix()).reshape(3, 3)
    matrix[:3, 3] = affine.GetTranslation()
    return matrix


def _vector_image_data(values_ras: np.ndarray, size: Sequence[int], spacing: Sequence[float],
                       origin_lps: Sequence[float]) -> Any:
    """A ``vtkImageData`` of 3-vectors (numpy ``(k, j, i, 3)`` or flat, RAS) on a grid given in LPS."""
    image, values = _empty_vector_image(size, spacing, origin_lps)
    values[...] = np.asarray(values_ras, dtype=np.float64).reshape(-1, 3)
    return image


def _empty_vector_image(size: Sequence[int], spacing: Sequence[float], origin_lps: Sequence[float]) -> tuple[Any, np.ndarray]:
    """A ``vtkImageData`` of double 3-vectors on a grid given in LPS (RAS origin) and a numpy
    ``(n, 3)`` view of its values (VTK owns the memory; fill it before the image is used)."""
    from vtkmodules.util import numpy_support  # noqa: PLC0415

    vtk = _vtk()
    image = vtk.vtkImageData()
    image.SetDimensions(*[int(n) for n in size])
    image.SetSpacing(*[float(s) for s in spacing])
    image.SetOrigin(*[float(v) for v in lps_to_ras(origin_lps)])
    array = vtk.vtkDoubleArray()
    array.SetNumberOfComponents(3)
    array.SetNumberOfTuples(int(np.prod([int(n) for n in size])))
    image.GetPointData().SetScalars(array)
    return image, numpy_support.vtk_to_numpy(array)


def _direction_ras(direction_lps: Sequence[float]) -> Any:
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_FROM_RAS @ np.asarray(direction_lps, dtype=float).reshape(3, 3)
    return numpy_to_vtk_matrix(matrix)


def _bspline_grid(bspline: sitk.Transform) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Coefficient grid of an ITKv4 B-spline: size, origin (LPS), spacing, direction (3x3, LPS)."""
    fixed = np.array(bspline.GetFixedParameters(), dtype=float)
    return fixed[0:3].astype(int), fixed[3:6], fixed[6:9], fixed[9:18].reshape(3, 3)


def _bspline_covers(bspline: sitk.Transform, reference: sitk.Image) -> bool:
    """True when every voxel centre of ``reference`` lies in the B-spline's valid region.

    ITK gives zero displacement outside that region (continuous grid index in ``[1, size - 2)``
    for a cubic spline); VTK's zero border mode lets the spline decay smoothly instead.
    """
    size, origin, spacing, direction = _bspline_grid(bspline)
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    corners *= np.array(reference.GetSize(), dtype=float) - 1.0
    points = np.array([reference.TransformContinuousIndexToPhysicalPoint(c.tolist()) for c in corners])
    index = np.linalg.solve(direction, (points - origin).T).T / spacing
    return bool(np.all(index >= 1.0) and np.all(index < size - 2.0))


def _bspline_to_vtk(bspline: sitk.Transform) -> Any:
    """The cubic ITK ``BSplineTransform`` (LPS) as an equal ``vtkOrientedBSplineTransform`` (RAS).

    Both use the same coefficient grid: the ITK fixed parameters are the grid of the coefficient
    images (size including the 3 border nodes, origin of the first border node, spacing, direction),
    and the parameters are all x coefficients, then all y, then all z, x index fastest.
    """
    size, origin, spacing, direction = _bspline_grid(bspline)
    coefficients = lps_to_ras(np.array(bspline.GetParameters(), dtype=float).reshape(3, -1).T)
    transform = _slicer().vtkOrientedBSplineTransform()
    transform.SetBorderModeToZero()
    transform.SetGridDirectionMatrix(_direction_ras(direction.ravel()))
    transform.SetCoefficientData(_vector_image_data(coefficients, size, spacing, origin))
    return transform


def _grid_to_vtk(transform: sitk.Transform, reference: sitk.Image) -> Any:
    """``transform`` sampled on ``reference``'s grid as a cubic ``vtkOrientedGridTransform`` (RAS)."""
    field = displacement_field(transform, reference)
    values = lps_to_ras(sitk.GetArrayViewFromImage(field))
    grid = _slicer().vtkOrientedGridTransform()
    grid.SetGridDirectionMatrix(_direction_ras(field.GetDirection()))
    grid.SetDisplacementGridData(_vector_image_data(values, field.GetSize(), field.GetSpacing(), field.GetOrigin()))
    grid.SetInterpolationModeToCubic()  # as Slicer reads grid transforms from files (module docstring)
    return grid


def _field_on_grid(piece: sitk.Transform, reference: sitk.Image) -> bool:
    """True when ``piece`` is a displacement field transform sampled on ``reference``'s own grid."""
    if piece.GetName() != "DisplacementFieldTransform":
        return False
    fixed = np.array(piece.GetFixedParameters(), dtype=float)
    grid = np.concatenate([reference.GetSize(), reference.GetOrigin(), reference.GetSpacing(),
                           reference.GetDirection()])
    return fixed.shape == grid.shape and np.array_equal(fixed[:3], grid[:3]) and np.allclose(fixed, grid, atol=1e-9)


def _composed_field_to_vtk(matrix_lps: np.ndarray, field_transform: sitk.Transform) -> Any:
    """``x -> M (x + u(x))`` (``M`` a 4x4 LPS affine, ``u`` the field on its own grid) as the cubic
    ``vtkOrientedGridTransform`` (RAS) of its displacement at the field's voxel centres.

    Equal to sampling the composite with ITK there (:func:`_grid_to_vtk`), computed with a few
    NumPy passes instead of one transform evaluation per voxel (a 1 mm brain: ~0.3 s instead of
    ~1 s), so that a HyperMorph lambda change is shown quickly.
    """
    field = sitk.DisplacementFieldTransform(field_transform).GetDisplacementField()
    u = sitk.GetArrayViewFromImage(field)  # (k, j, i, 3), LPS
    flip = np.diag([-1.0, -1.0, 1.0])  # LPS <-> RAS
    linear, translation = matrix_lps[:3, :3], matrix_lps[:3, 3]
    size = field.GetSize()
    image, flat = _empty_vector_image(size, field.GetSpacing(), field.GetOrigin())
    # the linear part of the field, RAS, written straight into VTK's array (BLAS matmul)
    np.matmul(u.reshape(-1, 3), (flip @ linear).T, out=flat)
    values = flat.reshape(u.shape)
    # (M - I) x + t, affine in the voxel index: added along each axis by broadcasting
    axes = np.array(field.GetDirection()).reshape(3, 3) * np.array(field.GetSpacing())
    residual = flip @ (linear - np.eye(3))
    step = residual @ axes  # column c: change per index step along grid axis c
    base = residual @ np.array(field.GetOrigin()) + flip @ translation
    values += (np.arange(size[2])[:, None] * step[:, 2])[:, None, None, :]
    values += (np.arange(size[1])[:, None] * step[:, 1])[None, :, None, :]
    values += (np.arange(size[0])[:, None] * step[:, 0] + base)[None, None, :, :]
    grid = _slicer().vtkOrientedGridTransform()
    grid.SetGridDirectionMatrix(_direction_ras(field.GetDirection()))
    grid.SetDisplacementGridData(image)
    grid.SetInterpolationModeToCubic()  # as _grid_to_vtk
    return grid


def _linear_vtk(matrix_lps: np.ndarray) -> Any:
    transform = _vtk().vtkTransform()
    transform.SetMatrix(numpy_to_vtk_matrix(lps_to_ras_matrix(matrix_lps)))
    return transform


def _plan(leaves: list[sitk.Transform], reference: sitk.Image, force_grid: bool) -> tuple[str, Any]:
    """Which kind of node holds ``leaves`` and the VTK transform (RAS, from parent) it holds."""
    linear = [piece for piece in leaves if piece.IsLinear()]
    if len(linear) == len(leaves) - 1 and _field_on_grid(leaves[-1], reference):
        # linear pieces after a field on the fixed grid (a dense, svf or network result): sampled exactly
        return "grid", _composed_field_to_vtk(_affine_matrix(linear) if linear else np.eye(4), leaves[-1])
    whole = leaves[0] if len(leaves) == 1 else sitk.CompositeTransform(leaves)
    if force_grid:
        return "grid", _grid_to_vtk(whole, reference)
    if len(linear) == len(leaves):
        return "linear", _linear_vtk(_affine_matrix(leaves))
    last = leaves[-1]
    if (len(linear) == len(leaves) - 1 and last.GetName() == "BSplineTransform"
            and last.GetOrder() == 3 and _bspline_covers(last, reference)):
        bspline = _bspline_to_vtk(last)
        matrix = _affine_matrix(linear) if linear else np.eye(4)
        if np.array_equal(matrix, np.eye(4)):
            return "bspline", bspline
        general = _vtk().vtkGeneralTransform()
        general.PostMultiply()  # each Concatenate acts after the previous: B-spline first, then linear
        general.Concatenate(bspline)
        general.Concatenate(_linear_vtk(matrix))
        return "composite", general
    return "grid", _grid_to_vtk(whole, reference)


# ----------------------------------------------------------------------------- nodes


def _target_node(scene: Any, node: Any, kind: str, name: str) -> Any:
    """``node`` when it can hold a result of ``kind``, or a new node of the right class."""
    if node is None:
        created = scene.AddNewNodeByClass(_NODE_CLASS[kind], scene.GenerateUniqueName(name))
        created.CreateDefaultDisplayNodes()
        return created
    if node.IsA("vtkMRMLLinearTransformNode") and kind != "linear":
        raise InputError(f"transform node {node_name(node)} is a linear transform node and cannot hold a "
                         f"{_DESCRIPTION[kind]} result; pick a new transform node or a B-spline, grid or "
                         "general transform node")
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    storage = node.GetStorageNode()
    file_name = storage.GetFileName() if storage is not None else None
    if kind != "linear" and file_name and file_name.lower().endswith(LINEAR_SUFFIXES):
        # A .tfm/.txt/.mat file cannot hold a non-linear transform: save it next to it as .h5.
        storage.SetFileName(file_name[: file_name.rfind(".")] + ".h5")
    return node


def plan_result(transform: sitk.Transform | list[sitk.Transform], reference: sitk.Image,
                force_grid: bool = False) -> tuple[str, Any]:
    """The kind of node (``"linear"``, ``"bspline"``, ``"composite"`` or ``"grid"``) and the VTK
    transform (RAS, from parent) that :func:`result_to_node` stores for ``transform``.

    Touches no scene, so the costly part of storing a result (sampling a field) can run off the
    main thread; pass the pair to :func:`result_to_node` as ``planned`` on the main thread.

    Example:
        >>> kind, content = plan_result(result.parts, fixed_image)  # doctest: +SKIP
        >>> result_to_node(result.parts, scene, fixed_image, node=node, planned=(kind, content))  # doctest: +SKIP
    """
    return _plan(_leaves(transform), _require_reference(reference), force_grid)


def result_to_node(transform: sitk.Transform | list[sitk.Transform], scene: Any, reference: sitk.Image,
                   node: Any = None, name: str = "Registration", force_grid: bool = False,
                   planned: tuple[str, Any] | None = None) -> Any:
    """Store a registration result (fixed LPS -> moving LPS) in a transform node, from parent.

    ``transform`` is the result's ``transform`` or its ``parts`` (ITK composite order);
    ``reference`` is the fixed image (LPS), whose whole grid a displacement field covers. The kind
    of node follows the module docstring; ``force_grid`` always stores a displacement field.
    ``node`` (optional) is reused, keeping its ID, name, parent and references, when its class can
    hold the result (a linear transform node holds linear results only); other nodes of ``scene``
    are not touched. A new node gets ``name`` (made unique) and default display nodes.

    ``planned`` is what :func:`plan_result` returned for the same arguments (computed elsewhere,
    e.g. in a worker thread); it is stored as it is.

    Raises :class:`InputError` for a missing scene, a bad transform or reference, a node that is
    not a transform node of ``scene``, or a linear node given for a non-linear result.

    Example:
        >>> node = result_to_node(result.parts, slicer.mrmlScene, fixed_image)  # doctest: +SKIP
        >>> moving_volume.SetAndObserveTransformNodeID(node.GetID())  # doctest: +SKIP
    """
    if scene is None:
        raise InputError("no MRML scene is given to store the registration result in")
    leaves = _leaves(transform)
    reference = _require_reference(reference)
    if node is not None:
        _require_transform_node(node, "output transform node")
        if node.GetScene() is not scene:
            raise InputError(f"output transform node {node_name(node)} is not in the given scene")
    kind, content = planned if planned is not None else _plan(leaves, reference, force_grid)
    node = _target_node(scene, node, kind, name)
    # (SetMatrixTransformFromParent refuses a node that holds a non-linear transform: replace it whole.)
    node.SetAndObserveTransformFromParent(content)
    return node


def set_registration_roles(transform_node: Any, fixed_node: Any, moving_node: Any) -> None:
    """Reference the fixed and moving volumes from ``transform_node`` with Slicer's registration roles.

    Uses the node's ``GetFixedNodeReferenceRole()``/``GetMovingNodeReferenceRole()`` (as Slicer's
    registration modules do); ``None`` removes that reference. The volumes are not modified.

    Example:
        >>> set_registration_roles(node, fixed_volume, moving_volume)  # doctest: +SKIP
        >>> node.GetNodeReference(node.GetFixedNodeReferenceRole()) is fixed_volume  # doctest: +SKIP
        True
    """
    _require_transform_node(transform_node)
    for role, target, what in ((transform_node.GetFixedNodeReferenceRole(), fixed_node, "fixed"),
                               (transform_node.GetMovingNodeReferenceRole(), moving_node, "moving")):
        if target is not None and (target.GetScene() is not transform_node.GetScene() or not target.GetID()):
            raise InputError(f"{what} volume {node_name(target)} is not in the scene of transform node "
                             f"{node_name(transform_node)}")
        transform_node.SetNodeReferenceID(role, target.GetID() if target is not None else None)


# ----------------------------------------------------------------------------- node -> sitk


def _world_to_node(node: Any) -> Any:
    """The resampling direction of ``node``: world -> node (its from-parent chain), RAS."""
    general = _vtk().vtkGeneralTransform()
    _slicer().vtkMRMLTransformNode.GetTransformBetweenNodes(None, node, general)
    return general


def _map_lps(transform: Any, points_lps: np.ndarray) -> np.ndarray:
    """Apply a RAS VTK transform to LPS points ``(N, 3)`` in one C++ call; LPS out."""
    from vtkmodules.util import numpy_support  # noqa: PLC0415

    vtk = _vtk()
    source = vtk.vtkPoints()
    source.SetData(numpy_support.numpy_to_vtk(np.ascontiguousarray(lps_to_ras(points_lps)), deep=True,
                                              array_type=vtk.VTK_DOUBLE))
    target = vtk.vtkPoints()
    target.SetDataTypeToDouble()
    transform.TransformPoints(source, target)
    return ras_to_lps(numpy_support.vtk_to_numpy(target.GetData()).reshape(-1, 3))


def transform_points(node: Any, points_lps: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """The node's from-parent mapping (world -> node, i.e. fixed -> moving) applied to LPS points.

    ``points_lps`` is ``(N, 3)``; the result is a new ``(N, 3)`` float array in LPS. For a node
    under a parent transform the parents' from-parent transforms are applied first.

    Example:
        >>> transform_points(node, [[10.0, -4.0, 22.5]])  # doctest: +SKIP
        array([[11.2, -3.1, 22.9]])
    """
    _require_transform_node(node)
    points = np.asarray(points_lps, dtype=float)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"points must be an (N, 3) array of LPS coordinates, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise InputError("points hold NaN or infinite coordinates")
    if len(points) == 0:
        return points.copy()
    return _map_lps(_world_to_node(node), points)


def node_to_sitk_transform(node: Any, reference: sitk.Image | None = None) -> sitk.Transform:
    """The node's world -> node mapping (from parent, fixed -> moving) as a SimpleITK transform in LPS.

    A linear mapping gives an exact ``sitk.AffineTransform``. A non-linear one (whether stored
    from or to parent, e.g. loaded from elastix) is sampled at every voxel centre of
    ``reference`` and returned as a ``sitk.DisplacementFieldTransform`` on that grid (ITK gives
    zero displacement outside it). Raises :class:`InputError` for no node, a node that is not a
    transform node, or a non-linear node without ``reference``.

    Example:
        >>> initial = node_to_sitk_transform(node, fixed_image)  # doctest: +SKIP
        >>> result = register(fixed_image, moving_image, "bspline", initial_transform=initial)  # doctest: +SKIP
    """
    _require_transform_node(node)
    if node.IsTransformToWorldLinear():
        matrix = _vtk().vtkMatrix4x4()
        node.GetMatrixTransformFromWorld(matrix)
        affine = ras_to_lps_matrix(_matrix_to_numpy(matrix))
        return sitk.AffineTransform(affine[:3, :3].ravel().tolist(), affine[:3, 3].tolist())
    if reference is None:
        raise InputError(f"transform node {node_name(node)} is non-linear; give a reference image whose grid "
                         "it is sampled on")
    reference = _require_reference(reference)
    size = np.array(reference.GetSize())
    axes = np.array(reference.GetDirection()).reshape(3, 3) @ np.diag(reference.GetSpacing())
    origin = np.array(reference.GetOrigin())
    mapping = _world_to_node(node)
    plane = np.stack(np.meshgrid(np.arange(size[0]), np.arange(size[1]), indexing="xy"), -1).reshape(-1, 2)
    displacement = np.empty((size[2], size[1] * size[0], 3))
    step = max(1, _CHUNK // len(plane))
    for first in range(0, int(size[2]), step):  # slabs of k, to bound memory on large grids
        ks = np.arange(first, min(first + step, int(size[2])))
        index = np.column_stack([np.tile(plane, (len(ks), 1)), np.repeat(ks, len(plane))])
        points = index @ axes.T + origin
        displacement[ks] = (_map_lps(mapping, points) - points).reshape(len(ks), -1, 3)
    field = sitk.GetImageFromArray(displacement.reshape(size[2], size[1], size[0], 3), isVector=True)
    field.SetOrigin(reference.GetOrigin())
    field.SetSpacing(reference.GetSpacing())
    field.SetDirection(reference.GetDirection())
    return sitk.DisplacementFieldTransform(field)
