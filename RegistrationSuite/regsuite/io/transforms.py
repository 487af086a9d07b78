"""ITK transform files and displacement fields.

Every transform maps a *fixed* world point (LPS mm) to a *moving* world point (ITK resampling
convention). Linear transforms go to ``.tfm``/``.txt``/``.mat``; anything non-linear (or a
composite that holds a non-linear piece) needs ``.h5``/``.hdf5``. A displacement field image
(3-component vectors, ``value = T(x) - x`` in world mm) is read as a
``sitk.DisplacementFieldTransform``.

Example:
    >>> import os, tempfile, SimpleITK as sitk
    >>> path = os.path.join(tempfile.mkdtemp(), "t.tfm")
    >>> write_transform(sitk.TranslationTransform(3, (1.0, 2.0, 3.0)), path)
    >>> read_transform(path).TransformPoint((0.0, 0.0, 0.0))
    (1.0, 2.0, 3.0)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
import SimpleITK as sitk

from ..errors import InputError, RegSuiteError, TransformFileError
from ..geometry import same_grid
from .atomic import atomic_output, native_stderr_silenced, split_suffix
from .compact_h5 import (FIELD_QUANTUM_MM, h5py_available, verify_compact_h5, write_compact_composite,
                         write_compact_h5)
from .composite import leaves
from .integrity import transform_size, verify_written_image, verify_written_transform

PathLike = Union[str, "os.PathLike[str]"]

LINEAR_SUFFIXES = (".tfm", ".txt", ".mat")
ANY_SUFFIXES = (".h5", ".hdf5")
FIELD_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")
_IMAGE_SUFFIXES = FIELD_SUFFIXES + (".nhdr", ".mhd", ".hdr", ".img", ".png", ".jpg", ".dcm", ".tif", ".tiff")


def _suffix(path: PathLike) -> str:
    return split_suffix(Path(path).name)[1].lower()


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_transform(path: PathLike) -> sitk.Transform:
    """Read an ITK transform file, or a displacement field image, as a 3D ``sitk.Transform``.

    Raises :class:`TransformFileError` for a missing file, a file of the wrong kind, a 2D
    transform, or an ITK ``Inverse*`` transform (written by Slicer; SimpleITK cannot read it).

    Example:
        >>> transform = read_transform("affine.tfm")  # doctest: +SKIP
    """
    location = Path(path)
    if not location.is_file():
        raise TransformFileError(f"transform file '{location}' does not exist")
    if _suffix(location) in _IMAGE_SUFFIXES:
        return _read_field_image(location)
    try:
        transform = sitk.ReadTransform(str(location))
    except RuntimeError as error:
        if _mentions_inverse(location):
            raise TransformFileError(
                f"transform file '{location}' holds an ITK Inverse* transform (as Slicer writes); "
                "SimpleITK cannot read it: harden or invert the transform in Slicer and save it again"
            ) from None
        raise TransformFileError(
            f"transform file '{location}' is not a readable ITK transform ({_short(str(error))})") from None
    if transform.GetDimension() != 3:
        raise TransformFileError(
            f"transform file '{location}' holds a {transform.GetDimension()}D transform; a 3D transform is needed")
    try:
        return transform.Downcast()
    except (AttributeError, RuntimeError):
        return transform


def _mentions_inverse(location: Path) -> bool:
    try:
        with open(location, "rb") as stream:
            head = stream.read(4 * 1024 * 1024)
    except OSError:
        return False
    return b"Inverse" in head


def _read_field_image(location: Path) -> sitk.Transform:
    try:
        image = sitk.ReadImage(str(location))
    except RuntimeError as error:
        raise TransformFileError(f"transform file '{location}' cannot be read as a displacement field "
                                 f"({_short(str(error))})") from None
    return _field_to_transform(image, f"'{location}'")


def _checked_field(image: sitk.Image, where: str) -> sitk.Image:
    """``image`` as a finite 3D ``sitkVectorFloat64`` field (a new handle; input untouched)."""
    components = image.GetNumberOfComponentsPerPixel()
    if image.GetDimension() != 3 or components != 3:
        raise TransformFileError(
            f"transform file {where} is an image with {components} component(s) per voxel in "
            f"{image.GetDimension()}D, not a 3D displacement field (3-component vectors)")
    field = sitk.Cast(image, sitk.sitkVectorFloat64)
    if not np.isfinite(sitk.GetArrayViewFromImage(field)).all():
        raise TransformFileError(f"displacement field {where} has NaN/Inf vectors")
    return field


def _field_to_transform(image: sitk.Image, where: str) -> sitk.DisplacementFieldTransform:
    # The transform takes over the buffer of the handle it gets, so give it a private one.
    return sitk.DisplacementFieldTransform(_checked_field(image, where))


def is_linear(transform: sitk.Transform) -> bool:
    """True when ``transform`` (or every piece of a composite) is a linear/affine transform.

    Example:
        >>> is_linear(sitk.Euler3DTransform()), is_linear(sitk.BSplineTransform(3))
        (True, False)
    """
    return all(piece.IsLinear() for piece in leaves(transform))


def flatten_linear(transform: sitk.Transform) -> sitk.AffineTransform:
    """One ``AffineTransform`` (centre 0) equal to a linear transform or linear composite.

    The composite order is ITK's: the last added transform is applied to the point first; the
    result is read off the composed mapping itself, so it is exact for any linear pieces.

    Example:
        >>> t = flatten_linear(sitk.TranslationTransform(3, (1.0, 0.0, 0.0)))
        >>> t.GetTranslation()
        (1.0, 0.0, 0.0)
    """
    if transform.GetDimension() != 3:
        raise InputError(f"transform is {transform.GetDimension()}D; a 3D transform is needed")
    if not is_linear(transform):
        raise InputError(f"{transform.GetName()} is not linear and cannot be flattened into an affine")
    offset = np.array(transform.TransformPoint((0.0, 0.0, 0.0)))
    matrix = np.empty((3, 3))
    for axis in range(3):
        unit = [0.0, 0.0, 0.0]
        unit[axis] = 1.0
        matrix[:, axis] = np.array(transform.TransformPoint(tuple(unit))) - offset
    return sitk.AffineTransform(matrix.ravel().tolist(), offset.tolist(), (0.0, 0.0, 0.0))


def write_transform(transform: sitk.Transform, path: PathLike,
                    field_quantum: float | None = FIELD_QUANTUM_MM) -> None:
    """Write ``transform`` atomically; the extension decides what is allowed.

    ``.tfm``/``.txt``/``.mat``: linear only (a linear composite is flattened into one affine;
    ``.mat`` always gets an affine). ``.h5``/``.hdf5``: anything. In ``.h5`` a displacement
    field (alone or in a composite) is stored compactly (:mod:`regsuite.io.compact_h5`): rounded
    to ``field_quantum`` mm (every mapped point moves by at most half of it), float32, gzipped;
    SimpleITK, ITK, ANTs and Slicer read it as any ITK transform file. ``field_quantum=None``, or
    no h5py, writes SimpleITK's full-precision file (float64, uncompressed, about 10x larger).
    Suffixes are case-insensitive. Free space is checked first (HDF5 crashes on a full disk) and
    the file is read back and compared (a compact field: its stored chunks, byte for byte) before it
    is moved into place.

    Example:
        >>> write_transform(sitk.AffineTransform(3), "affine.tfm")  # doctest: +SKIP
    """
    suffix = _suffix(path)
    if suffix in LINEAR_SUFFIXES:
        if not is_linear(transform):
            raise TransformFileError(
                f"transform file '{path}': a non-linear {transform.GetName()} cannot be saved as "
                f"{suffix}; use .h5")
        if suffix == ".mat" or transform.GetName() == "CompositeTransform":
            transform = flatten_linear(transform)
    elif suffix not in ANY_SUFFIXES:
        raise TransformFileError(
            f"transform file '{path}' has extension '{suffix}'; use .tfm/.txt/.mat (linear) or .h5")
    pieces = leaves(transform) if suffix in ANY_SUFFIXES and field_quantum is not None and h5py_available() else []
    compact = any(piece.GetName() == "DisplacementFieldTransform" for piece in pieces)
    with atomic_output(path, expected_bytes=transform_size(pieces or transform, compact) + 65536) as tmp:
        try:
            with native_stderr_silenced():  # HDF5 prints a screenful of errors before raising
                if compact:
                    stored = write_compact_h5(pieces, tmp, float(field_quantum))
                else:
                    sitk.WriteTransform(transform, tmp)
        except (RuntimeError, OSError) as error:
            raise RegSuiteError(f"transform cannot be written to '{path}' ({_short(str(error))})") from None
        with native_stderr_silenced():
            if compact:  # the raw chunks compared: no 30 million values decompressed again
                verify_compact_h5(tmp, pieces, stored, str(path))
            else:
                verify_written_transform(transform, tmp, str(path))


def write_composite_from_parts(parts: list[sitk.Transform], part_paths: list[PathLike], path: PathLike) -> None:
    """Write the composite of ``parts`` atomically to ``.h5`` ``path``, given the files the parts
    were just written to with :func:`write_transform` (same defaults).

    A displacement field's compressed data is copied from its part file rather than quantized and
    compressed a second time; without a field (or without h5py) this is ``write_transform``.

    Example:
        >>> write_composite_from_parts(result.parts, ["p1.tfm", "p2.h5"], "transform.h5")  # doctest: +SKIP
    """
    pieces = [piece for part in parts for piece in leaves(part)]  # (a composite copies its fields)
    if (_suffix(path) not in ANY_SUFFIXES or not h5py_available()
            or not any(piece.GetName() == "DisplacementFieldTransform" for piece in pieces)):
        write_transform(parts[0] if len(parts) == 1 else sitk.CompositeTransform(list(parts)), path)
        return
    with atomic_output(path, expected_bytes=transform_size(pieces, True) + 65536) as tmp:
        try:
            with native_stderr_silenced():
                stored = write_compact_composite(list(parts), list(part_paths), tmp)
        except (RuntimeError, OSError) as error:
            raise RegSuiteError(f"transform cannot be written to '{path}' ({_short(str(error))})") from None
        with native_stderr_silenced():
            verify_compact_h5(tmp, pieces, stored, str(path))


def displacement_field(transform: sitk.Transform, reference: sitk.Image) -> sitk.Image:
    """Displacement field ``T(x) - x`` (world mm, ``sitkVectorFloat64``) on the grid of ``reference``.

    Example:
        >>> ref = sitk.Image([4, 4, 4], sitk.sitkFloat32)
        >>> field = displacement_field(sitk.TranslationTransform(3, (1.0, 0.0, 0.0)), ref)
        >>> field[0, 0, 0]
        (1.0, 0.0, 0.0)
    """
    if reference.GetDimension() != 3:
        raise InputError(f"reference grid is {reference.GetDimension()}D; a 3D grid is needed")
    converter = sitk.TransformToDisplacementFieldFilter()
    converter.SetOutputPixelType(sitk.sitkVectorFloat64)
    converter.SetReferenceImage(reference)
    return converter.Execute(transform)


def write_displacement_field(transform_or_field: sitk.Transform | sitk.Image,
                             reference: sitk.Image | None, path: PathLike) -> None:
    """Write a displacement field atomically as ``.nii``/``.nii.gz``/``.nrrd``/``.mha`` (float32 vectors).

    A transform is sampled on ``reference``; a field image is written as it is, or resampled
    (as a transform) onto ``reference`` when that grid differs.

    Example:
        >>> write_displacement_field(sitk.Euler3DTransform(), ref, "field.nii.gz")  # doctest: +SKIP
    """
    suffix = _suffix(path)
    if suffix not in FIELD_SUFFIXES:
        raise TransformFileError(
            f"displacement field file '{path}' has extension '{suffix}'; use .nii.gz, .nrrd or .mha")
    if isinstance(transform_or_field, sitk.Image):
        field = _checked_field(transform_or_field, "image")
        if reference is not None and not same_grid(field, reference):
            field = displacement_field(sitk.DisplacementFieldTransform(sitk.Image(field)), reference)
    else:
        if reference is None:
            raise InputError(f"a reference grid is needed to write '{path}' from a transform")
        field = displacement_field(transform_or_field, reference)
    field = sitk.Cast(field, sitk.sitkVectorFloat32)  # ~1e-7 relative: far below any registration's error
    raw = None if suffix != ".nii" else 4 * 3 * int(np.prod(field.GetSize(), dtype=np.int64)) + 352
    with atomic_output(path, expected_bytes=raw) as tmp:
        try:
            with native_stderr_silenced():
                sitk.WriteImage(field, tmp, useCompression=True)
        except RuntimeError as error:
            raise TransformFileError(f"displacement field cannot be written to '{path}' ({_short(str(error))})") from None
        with native_stderr_silenced():
            verify_written_image(field, tmp, str(path))
