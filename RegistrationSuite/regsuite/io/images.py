"""Reading and writing 3D images, label maps and masks with clear one-line errors.

Images keep their geometry (origin, spacing, direction: world LPS mm); intensities become
``sitkFloat32`` scalars, label maps keep their integer type, masks become ``uint8`` 0/1.

Example:
    >>> import os, tempfile, SimpleITK as sitk
    >>> from regsuite.io.images import read_image, write_image
    >>> path = os.path.join(tempfile.mkdtemp(), "a.nii.gz")
    >>> write_image(sitk.Image([8, 8, 8], sitk.sitkInt16), path)
    >>> read_image(path, "fixed image").GetPixelID() == sitk.sitkFloat32
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
import SimpleITK as sitk

from ..errors import InputError, RegSuiteError
from ..geometry import geometry_differences
from .atomic import atomic_output, check_suffix, native_stderr_silenced, split_suffix
from .integrity import check_dicom_series, check_direction, check_nifti_complete, verify_written_image

PathLike = Union[str, "os.PathLike[str]"]

#: Extensions :func:`write_image` writes (any case; a detached ``.mhd``/``.nhdr`` header gets a
#: ``.zraw``/``.raw.gz`` data file beside it).
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

_INTEGER_PIXELS = {
    sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16,
    sitk.sitkUInt32, sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64,
}


def _read_any(path: PathLike, role: str) -> sitk.Image:
    """Read a file or a DICOM series folder; raise :class:`InputError` naming ``role``."""
    location = Path(path)
    if not location.exists():
        raise InputError(f"{role} '{location}' does not exist")
    if location.is_dir():
        return _read_dicom_folder(location, role)
    check_nifti_complete(location, role)
    try:
        return _read_file(location)
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown format"
        raise InputError(f"{role} '{location}' cannot be read as an image ({_short(reason)})") from None


def _itk_reason(error: RuntimeError) -> str:
    """The part of an ITK exception after ``ITK ERROR: ...:`` (no source paths or addresses)."""
    text = " ".join(str(error).split())
    marker = text.rfind("ITK ERROR:")
    if marker >= 0:
        text = text[marker + len("ITK ERROR:"):]
        text = text.split("): ", 1)[-1] if "): " in text else text
    return _short(text.strip() or "unknown error")


#: ITK picks a reader by the lower-case suffix; files named ``.MHA``/``.NRRD`` (as the command
#: line may write them) get the reader named here.
_READERS = {".mha": "MetaImageIO", ".mhd": "MetaImageIO", ".nrrd": "NrrdImageIO", ".nhdr": "NrrdImageIO"}


def _read_file(location: Path) -> sitk.Image:
    suffix = split_suffix(location.name)[1]
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(location))
    if suffix != suffix.lower() and suffix.lower() in _READERS:
        reader.SetImageIO(_READERS[suffix.lower()])
    return reader.Execute()


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_dicom_folder(folder: Path, role: str) -> sitk.Image:
    """Read the DICOM series of ``folder`` that has the most files."""
    reader = sitk.ImageSeriesReader()
    try:
        series = reader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError:
        series = ()
    if not series:
        raise InputError(f"{role} folder '{folder}' holds no DICOM series")
    files_per_series = [reader.GetGDCMSeriesFileNames(str(folder), uid) for uid in series]
    files = max(files_per_series, key=len)
    check_dicom_series(files, folder, role)
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise InputError(f"{role} DICOM series in '{folder}' cannot be read ({_short(str(error))})") from None


def _as_3d(image: sitk.Image, role: str, where: str) -> sitk.Image:
    """Return ``image`` as a 3D scalar image or raise :class:`InputError`."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{role} {where} has {image.GetNumberOfComponentsPerPixel()} components per voxel "
            "(vector/colour image); a scalar 3D image is needed")
    dimension = image.GetDimension()
    if dimension == 4 and image.GetSize()[3] == 1:
        size = list(image.GetSize()[:3]) + [0]
        extractor = sitk.ExtractImageFilter()
        extractor.SetSize(size)
        extractor.SetIndex([0, 0, 0, 0])
        extractor.SetDirectionCollapseToStrategy(extractor.DIRECTIONCOLLAPSETOSUBMATRIX)
        image = extractor.Execute(image)
        dimension = 3
    if dimension != 3:
        size = "x".join(str(n) for n in image.GetSize())
        raise InputError(f"{role} {where} is {dimension}D (size {size}); a 3D image is needed")
    if min(image.GetSize()) < 2:
        size = "x".join(str(n) for n in image.GetSize())
        raise InputError(f"{role} {where} has a single voxel along an axis (size {size}); "
                         "a 3D volume is needed")
    check_direction(image, role, where)
    return image


def read_native_image(path: PathLike, role: str = "image") -> sitk.Image:
    """Read a 3D scalar image keeping its pixel type (same checks as :func:`read_image`).

    Example:
        >>> image = read_native_image("labels.nii.gz", "input image")  # doctest: +SKIP
    """
    image = _as_3d(_read_any(path, role), role, _where(path))
    if image.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise InputError(f"{role} '{path}' has complex voxels; a real scalar image is needed")
    _check_finite(image, role, _where(path))
    return image


def _where(path: object) -> str:
    return "image" if isinstance(path, sitk.Image) else f"'{path}'"


def _check_finite(image: sitk.Image, role: str, where: str) -> None:
    values = sitk.GetArrayViewFromImage(image)
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        raise InputError(f"{role} {where} has {bad} NaN/Inf voxels; replace them before registering")


def read_image(path: PathLike | sitk.Image, role: str = "image") -> sitk.Image:
    """Read a 3D scalar image as ``sitkFloat32`` (geometry unchanged).

    ``path`` is any file SimpleITK reads (NIfTI, NRRD, MetaImage, ...), a DICOM series folder
    (the series with the most files is used), or an already loaded ``sitk.Image`` (checked and
    converted, never modified).

    Example:
        >>> image = read_image("fixed.nii.gz", "fixed image")  # doctest: +SKIP
    """
    image = path if isinstance(path, sitk.Image) else _read_any(path, role)
    where = _where(path)
    image = _as_3d(image, role, where)
    if image.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise InputError(f"{role} {where} has complex voxels; a real scalar image is needed")
    image = sitk.Cast(image, sitk.sitkFloat32)
    _check_finite(image, role, where)
    return image


def read_label_image(path: PathLike | sitk.Image, role: str = "label map") -> sitk.Image:
    """Read a 3D label map keeping integer labels.

    Integer files keep their pixel type; float files whose values are all whole numbers are
    cast to ``sitkInt32``; other float values raise :class:`InputError`.

    Example:
        >>> labels = read_label_image("aseg.nii.gz", "fixed labels")  # doctest: +SKIP
    """
    image = path if isinstance(path, sitk.Image) else _read_any(path, role)
    where = _where(path)
    image = _as_3d(image, role, where)
    if image.GetPixelID() in _INTEGER_PIXELS:
        return image if not isinstance(path, sitk.Image) else sitk.Image(image)
    if image.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        raise InputError(f"{role} {where} has pixel type {image.GetPixelIDTypeAsString()}; "
                         "an integer label map is needed")
    _check_finite(image, role, where)
    values = sitk.GetArrayViewFromImage(image)
    if not np.array_equal(values, np.round(values)):
        raise InputError(f"{role} {where} has non-integer values; a label map is needed")
    if values.size and (values.min() < np.iinfo(np.int32).min or values.max() > np.iinfo(np.int32).max):
        raise InputError(f"{role} {where} has labels outside the 32-bit integer range")
    return sitk.Cast(image, sitk.sitkInt32)


def read_mask(path_or_image: PathLike | sitk.Image, reference: sitk.Image,
              role: str = "mask") -> sitk.Image:
    """Read a mask on the grid of ``reference`` as ``uint8`` 0/1 (any non-zero voxel is inside).

    Raises :class:`InputError` when the mask is empty or its grid differs from ``reference``.

    Example:
        >>> ref = sitk.Image([4, 4, 4], sitk.sitkFloat32)
        >>> m = sitk.Image([4, 4, 4], sitk.sitkUInt8); m[1, 1, 1] = 7
        >>> int(sitk.GetArrayFromImage(read_mask(m, ref, "fixed mask")).sum())
        1
    """
    where = _where(path_or_image)
    image = path_or_image if isinstance(path_or_image, sitk.Image) else _read_any(path_or_image, role)
    image = _as_3d(image, role, where)
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        _check_finite(image, role, where)
    differences = geometry_differences(image, reference)
    if differences:
        raise InputError(f"{role} {where} is not on the grid of its image: " + "; ".join(differences))
    values = sitk.GetArrayViewFromImage(image)
    inside = (values != 0).astype(np.uint8)
    if not inside.any():
        raise InputError(f"{role} {where} is empty (no non-zero voxel)")
    mask = sitk.GetImageFromArray(inside)
    mask.CopyInformation(image)
    return mask


def raw_size(image: sitk.Image) -> int:
    """Bytes of the voxel data of ``image`` (the size of an uncompressed file, less its header)."""
    item = sitk.GetArrayViewFromImage(sitk.Image([1] * image.GetDimension(), image.GetPixelID(),
                                                  image.GetNumberOfComponentsPerPixel())).itemsize
    return int(np.prod(image.GetSize(), dtype=np.int64)) * image.GetNumberOfComponentsPerPixel() * item


def write_image(image: sitk.Image, path: PathLike) -> None:
    """Write ``image`` atomically with compression; the format follows the file extension.

    Upper-case suffixes (``.MHA``) give the same format as lower-case ones. Before anything is
    written, an uncompressed ``.nii`` must fit in the free space; afterwards the file is read back
    and compared with ``image`` before it is moved into place (a full disk may truncate it
    silently), so a damaged image never appears under ``path``.

    Example:
        >>> write_image(sitk.Image([4, 4, 4], sitk.sitkFloat32), "out.nrrd")  # doctest: +SKIP
    """
    compressed = check_suffix(path, IMAGE_SUFFIXES, "image") != ".nii"
    with atomic_output(path, expected_bytes=None if compressed else raw_size(image) + 352) as tmp:
        try:
            with native_stderr_silenced():
                sitk.WriteImage(image, tmp, useCompression=True)
        except RuntimeError as error:
            raise RegSuiteError(f"image cannot be written to '{path}' ({_itk_reason(error)})") from None
        with native_stderr_silenced():
            verify_written_image(image, tmp, str(path))


def _sample_points_world(image: sitk.Image, per_axis: int = 20) -> np.ndarray:
    """World points (M, 3) on a coarse regular subsample of the grid of ``image``."""
    size = np.array(image.GetSize(), dtype=float)
    axes = [np.linspace(0.0, n - 1.0, int(min(per_axis, n))) for n in size]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return index_to_world(image, grid)


def index_to_world(image: sitk.Image, index: np.ndarray) -> np.ndarray:
    """Continuous index (M, 3) -> world LPS mm (M, 3): ``origin + D diag(spacing) index``."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    scale = direction @ np.diag(image.GetSpacing())
    return np.asarray(index, dtype=float) @ scale.T + np.array(image.GetOrigin(), dtype=float)


def world_to_index(image: sitk.Image, points: np.ndarray) -> np.ndarray:
    """World LPS mm (M, 3) -> continuous index (M, 3) of the grid of ``image``."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    scale = direction @ np.diag(image.GetSpacing())
    shifted = np.asarray(points, dtype=float) - np.array(image.GetOrigin(), dtype=float)
    return np.linalg.solve(scale, shifted.T).T


def check_overlap(fixed: sitk.Image, moving: sitk.Image,
                  transform: sitk.Transform | None = None) -> float:
    """Fraction of (about 20^3) fixed sample points that ``transform`` maps inside ``moving``.

    ``transform`` maps fixed world to moving world (``None``: identity). "Inside" means within
    the physical extent of the moving grid, half a voxel beyond the outer voxel centres.

    Example:
        >>> a = sitk.Image([10, 10, 10], sitk.sitkFloat32)
        >>> check_overlap(a, a, None)
        1.0
    """
    points = _sample_points_world(fixed)
    if transform is not None:
        points = np.array([transform.TransformPoint(tuple(p)) for p in points.tolist()])
    index = world_to_index(moving, points)
    upper = np.array(moving.GetSize(), dtype=float) - 0.5
    inside = np.all((index >= -0.5) & (index <= upper), axis=1)
    return float(np.count_nonzero(inside)) / float(len(points))


def require_overlap(fixed: sitk.Image, moving: sitk.Image,
                    transform: sitk.Transform | None = None, minimum: float = 0.01) -> float:
    """Return :func:`check_overlap`; raise :class:`InputError` when it is below ``minimum``.

    Example:
        >>> a = sitk.Image([10, 10, 10], sitk.sitkFloat32)
        >>> require_overlap(a, a)
        1.0
    """
    fraction = check_overlap(fixed, moving, transform)
    if fraction < minimum:
        raise InputError(
            "fixed and moving images do not overlap in physical space after initialization "
            f"({100.0 * fraction:.1f}% of fixed samples map inside the moving image); check the "
            "image origins/orientation or use a moments/geometry initialization")
    return fraction


def cast_like(image: sitk.Image, pixel_id: int | None) -> sitk.Image:
    """Cast a float image to ``pixel_id``; integer types are rounded and clamped (NaN -> 0)."""
    if pixel_id is None or pixel_id == image.GetPixelID() or pixel_id == sitk.sitkUnknown:
        return image
    dtype = sitk.GetArrayViewFromImage(sitk.Image([1, 1, 1], pixel_id)).dtype
    if dtype.kind not in "iu":
        return sitk.Cast(image, pixel_id)
    info = np.iinfo(dtype)
    values = np.nan_to_num(sitk.GetArrayFromImage(image).astype(np.float64))
    out = sitk.GetImageFromArray(np.clip(np.rint(values), info.min, info.max).astype(dtype))
    out.CopyInformation(image)
    return out
