"""Checks that an image file is whole and sane before it is trusted, and after it is written.

ITK reads a truncated NIfTI file (an interrupted copy) without complaint, filling the missing
voxels with zeros, and warns only when a direction matrix is not orthonormal. These checks
turn such files into one-line :class:`~regsuite.errors.InputError` messages:

- :func:`check_nifti_complete`: the data size announced by a ``.nii`` header is present (for
  ``.nii.gz`` the gzip stream is decompressed fully, which also checks its CRC and length);
- :func:`check_dicom_series`: every slice file of a series reads and the slice positions are
  evenly spaced (a missing or unreadable slice leaves a gap);
- :func:`check_direction`: the direction cosines are orthonormal;
- :func:`verify_written_image`: a written image reads back with the same grid and voxels.

Example:
    >>> import numpy as np, SimpleITK as sitk
    >>> check_direction(sitk.Image([2, 2, 2], sitk.sitkUInt8), "image", "'a.nii'")
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import InputError, RegSuiteError
from .composite import leaves

#: Largest allowed entry of ``|D^T D - I|``. Directions stored as float32 (NIfTI quaternions and
#: sform) are orthonormal to about 1e-7; 1e-4 is also what ITK accepts when comparing grids,
#: and a deviation of 1e-4 moves a point 250 mm from the origin by at most 0.025 mm.
ORTHONORMAL_ATOL = 1e-4
#: Slice positions may deviate from an even spacing by this fraction of the median spacing
#: (DICOM stores positions as decimal strings of limited precision) ...
SLICE_SPACING_RTOL = 0.01
#: ... or by this many millimetres, whichever is larger.
SLICE_SPACING_ATOL_MM = 0.01

_CHUNK = 1 << 20


def check_direction(image: sitk.Image | Sequence[float], role: str, where: str) -> None:
    """Raise :class:`InputError` unless the direction matrix of ``image`` is orthonormal.

    ``image`` may also be the direction itself (row-major, as ``GetDirection`` returns it).
    """
    values = np.array(image.GetDirection() if isinstance(image, sitk.Image) else image, dtype=float)
    dimension = int(round(np.sqrt(values.size)))
    direction = values.reshape(dimension, dimension)
    deviation = float(np.abs(direction.T @ direction - np.eye(dimension)).max())
    if not np.isfinite(deviation) or deviation > ORTHONORMAL_ATOL:
        raise InputError(f"{role} {where} has a direction matrix that is not orthonormal "
                         f"(|D^T D - I| = {deviation:.3g} > {ORTHONORMAL_ATOL:g}); fix its header")


# ----------------------------------------------------------------------------- NIfTI
def _nifti_expected_size(header: bytes) -> tuple[int, str] | None:
    """``(bytes the file must hold, header kind)`` from a NIfTI-1/2 header, or ``None``."""
    for order in "<>":
        if len(header) >= 4 and struct.unpack(order + "i", header[:4])[0] == 348 and len(header) >= 348:
            dims = struct.unpack(order + "8h", header[40:56])
            bitpix = struct.unpack(order + "h", header[72:74])[0]
            offset = struct.unpack(order + "f", header[108:112])[0]
            single = header[344:347] == b"n+1"
            return _data_end(dims, bitpix, offset if single else None, 352), "NIfTI-1"
        if len(header) >= 4 and struct.unpack(order + "i", header[:4])[0] == 540 and len(header) >= 540:
            dims = struct.unpack(order + "8q", header[16:80])
            bitpix = struct.unpack(order + "h", header[14:16])[0]
            offset = struct.unpack(order + "q", header[168:176])[0]
            single = header[4:7] == b"n+2"
            return _data_end(dims, bitpix, offset if single else None, 544), "NIfTI-2"
    return None


def _data_end(dims: Sequence[int], bitpix: int, offset: float | None, minimum_offset: int) -> int:
    """Offset of the data plus its size (0 when the header has no data in this file)."""
    rank = int(dims[0])
    if offset is None or not 1 <= rank <= 7 or bitpix <= 0:
        return 0  # a .hdr/.img pair or a header ITK rejects on its own
    count = 1
    for n in dims[1:rank + 1]:
        count *= max(int(n), 1)
    return max(int(offset), minimum_offset) + count * int(bitpix) // 8


def _check_nifti_sform(header: bytes, location: Path, role: str) -> None:
    """Refuse a NIfTI-1 header whose sform (when in use) is not a rotation times scales.

    ITK silently falls back to the qform (or coerces the matrix) for such a header, so the image
    would land elsewhere than the header says; tolerance :data:`ORTHONORMAL_ATOL`.
    """
    for order in "<>":
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            if struct.unpack(order + "h", header[254:256])[0] <= 0:
                return  # no sform
            rows = np.array(struct.unpack(order + "12f", header[280:328]), dtype=float).reshape(3, 4)
            matrix = rows[:, :3]
            scales = np.linalg.norm(matrix, axis=0)
            if not np.all(np.isfinite(matrix)) or np.any(scales == 0):
                raise InputError(f"{role} '{location}' has a NIfTI sform with a zero or NaN axis; fix its header")
            direction = matrix / scales
            deviation = float(np.abs(direction.T @ direction - np.eye(3)).max())
            if deviation > ORTHONORMAL_ATOL:
                raise InputError(f"{role} '{location}' has a NIfTI sform that is not orthonormal (sheared: "
                                 f"|D^T D - I| = {deviation:.3g} > {ORTHONORMAL_ATOL:g}); ITK would "
                                 "place it differently from its header: fix its header")
            return


def check_nifti_complete(location: Path, role: str) -> None:
    """Raise :class:`InputError` when the ``.nii``/``.nii.gz`` file ``location`` is cut short.

    Also refuses a NIfTI-1 sform that is not orthonormal (see :func:`_check_nifti_sform`).
    """
    name = location.name.lower()
    with open(location, "rb") as stream:
        gzipped = stream.read(2) == b"\x1f\x8b"  # ITK also reads a .nii.gz that is not compressed
    if name.endswith(".nii.gz") and gzipped:
        header, size = _gunzip_length(location, role)
    elif name.endswith((".nii", ".nii.gz")):
        with open(location, "rb") as stream:
            header = stream.read(540)
        size = location.stat().st_size
    else:
        return
    _check_nifti_sform(header, location, role)
    expected = _nifti_expected_size(header)
    if expected is None:
        return  # not a NIfTI header: ITK gives its own error
    needed, kind = expected
    if size < needed:
        raise InputError(f"{role} '{location}' is truncated: its {kind} header announces {needed} bytes "
                         f"but the {'decompressed ' if name.endswith('.gz') else ''}file holds {size} "
                         f"({100.0 * size / needed:.0f}%); copy it again")


def _gunzip_length(location: Path, role: str) -> tuple[bytes, int]:
    """First 540 decompressed bytes and the decompressed length; errors for a damaged stream."""
    header = b""
    size = 0
    try:
        with gzip.open(location, "rb") as stream:
            while True:
                chunk = stream.read(_CHUNK)
                if not chunk:
                    break
                if len(header) < 540:
                    header += chunk[:540 - len(header)]
                size += len(chunk)
    except EOFError:
        raise InputError(f"{role} '{location}' is truncated (the gzip stream ends early); copy it again") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise InputError(f"{role} '{location}' is a damaged gzip file ({error}); copy it again") from None
    return header, size


# ----------------------------------------------------------------------------- DICOM
def _slice_geometry(path: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(position, normal)`` of one DICOM slice, ``None`` when it has no position tags."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    if not (reader.HasMetaDataKey("0020|0032") and reader.HasMetaDataKey("0020|0037")):
        return None
    position = np.array([float(v) for v in reader.GetMetaData("0020|0032").split("\\")])
    cosines = np.array([float(v) for v in reader.GetMetaData("0020|0037").split("\\")])
    return position, np.cross(cosines[:3], cosines[3:6])


def check_dicom_series(files: Sequence[str], folder: Path, role: str) -> None:
    """Raise :class:`InputError` when a slice of the series does not read or positions are uneven.

    A slice that GDCM dropped (unreadable) leaves a gap twice the usual spacing; two slices at
    the same position mean a duplicate. Tolerance: :data:`SLICE_SPACING_RTOL` of the median
    spacing or :data:`SLICE_SPACING_ATOL_MM`, whichever is larger.
    """
    if len(files) < 2:
        return
    geometry = []
    for path in files:
        try:
            found = _slice_geometry(path)
        except (RuntimeError, ValueError, IndexError):
            raise InputError(f"{role} DICOM series in '{folder}': slice '{Path(path).name}' cannot be read") from None
        if found is None:
            return  # no patient positions (e.g. secondary capture): ITK stacks by instance number
        geometry.append(found)
    normal = geometry[0][1]
    heights = np.sort(np.array([float(position @ normal) for position, _ in geometry]))
    gaps = np.diff(heights)
    spacing = float(np.median(gaps))
    if spacing <= SLICE_SPACING_ATOL_MM:
        raise InputError(f"{role} DICOM series in '{folder}' has several slices at one position")
    tolerance = max(SLICE_SPACING_RTOL * spacing, SLICE_SPACING_ATOL_MM)
    bad = np.flatnonzero(np.abs(gaps - spacing) > tolerance)
    if bad.size:
        k = int(bad[0])
        raise InputError(
            f"{role} DICOM series in '{folder}' has uneven slice positions: {gaps[k]:.3g} mm between "
            f"slices at {heights[k]:.6g} and {heights[k + 1]:.6g} mm, {spacing:.3g} mm elsewhere "
            "(a slice missing or unreadable?)")


# ----------------------------------------------------------------------------- after writing
def _written_nifti_complete(location: Path) -> bool:
    """Whether a NIfTI file just written holds all its data (other formats: True).

    ``.nii``: the file size. ``.nii.gz``: the gzip trailer's length field (the last 4 bytes, the
    uncompressed size modulo 2^32) against the size the header announces, which a cut-short
    stream matches only by a 1 in 2^32 chance; cheaper than decompressing again, and ITK's read
    that follows decompresses the data anyway.
    """
    name = location.name.lower()
    if name.endswith(".nii"):
        check_nifti_complete(location, "written image")
    elif name.endswith(".nii.gz"):
        with gzip.open(location, "rb") as stream:
            header = stream.read(540)
        expected = _nifti_expected_size(header)
        with open(location, "rb") as stream:
            stream.seek(-4, 2)
            isize = struct.unpack("<I", stream.read(4))[0]
        return expected is None or expected[0] == 0 or isize == expected[0] % 2**32
    return True


def verify_written_image(image: sitk.Image, path: str, final: str) -> None:
    """Raise :class:`RegSuiteError` unless ``path`` reads back as ``image`` (grid and voxels).

    Catches a file cut short by a full disk or a file size limit, whatever the writer reported.
    ``final`` is the name used in the message.
    """
    try:
        if not _written_nifti_complete(Path(path)):
            raise RuntimeError("cut short")
        back = sitk.ReadImage(path)
    except (RuntimeError, InputError, OSError, EOFError, zlib.error):
        raise RegSuiteError(f"'{final}' was not written completely (disk full?)") from None
    same = (tuple(back.GetSize()) == tuple(image.GetSize())
            and back.GetNumberOfComponentsPerPixel() == image.GetNumberOfComponentsPerPixel())
    if same:
        written = sitk.GetArrayViewFromImage(back)
        expected = sitk.GetArrayViewFromImage(image)
        same = written.shape == expected.shape and np.array_equal(
            written, expected.astype(written.dtype, copy=False), equal_nan=written.dtype.kind in "fc")
    if not same:
        raise RegSuiteError(f"'{final}' reads back different from what was written (disk full?)")


def transform_size(transform: sitk.Transform | list[sitk.Transform], compact: bool = False) -> int:
    """Bytes of the parameters of ``transform`` (all pieces of a composite, or a list of its
    :func:`leaves`) stored as doubles, or as float32 when ``compact`` (the most a compact, gzipped
    field file can take)."""
    pieces = list(transform) if isinstance(transform, (list, tuple)) else leaves(transform)
    count = sum(_values(piece).size + len(piece.GetFixedParameters()) for piece in pieces)
    return (4 if compact else 8) * count


def _values(piece: sitk.Transform) -> np.ndarray:
    """A piece's parameters as a flat array; a displacement field's as a view of its image (no
    copy: ``GetParameters`` would build a tuple of tens of millions of Python floats). The view
    reads the piece's own buffer: use it while the piece lives."""
    if piece.GetName() == "DisplacementFieldTransform":
        field = sitk.DisplacementFieldTransform(piece).GetDisplacementField()
        return sitk.GetArrayViewFromImage(field).reshape(-1)
    return np.asarray(piece.GetParameters(), dtype=np.float64)


#: Values compared at a time (bounded temporaries: a brain field has 31 million).
_BLOCK = 1 << 20


def _close(written: np.ndarray, expected: np.ndarray) -> bool:
    """``written`` within 1e-9 + 1e-7 relative of ``expected``, block by block."""
    if written.shape != expected.shape:
        return False
    for start in range(0, written.size, _BLOCK):
        a = written[start:start + _BLOCK].astype(np.float64)
        b = expected[start:start + _BLOCK].astype(np.float64)
        if not np.all(np.abs(a - b) <= 1e-9 + 1e-7 * np.abs(b)):
            return False
    return True


def verify_written_transform(transform: sitk.Transform, path: str, final: str) -> None:
    """Raise :class:`RegSuiteError` unless ``path`` reads back as ``transform``.

    Compared: the kind and parameters of every piece (relative 1e-7: text formats store about
    15 significant digits; a damaged file does not read or differs grossly). A compact ``.h5``
    field file is checked by :func:`~regsuite.io.compact_h5.verify_compact_h5` instead.
    """
    try:
        back = sitk.ReadTransform(path)
    except RuntimeError:
        raise RegSuiteError(f"'{final}' was not written completely (disk full?)") from None
    written, expected = leaves(back), leaves(transform)
    same = len(written) == len(expected)
    for a, b in zip(written, expected):
        if not same:
            break
        same = _close(_values(a), _values(b)) and _close(
            np.array(a.GetFixedParameters()), np.array(b.GetFixedParameters()))
    if not same:
        raise RegSuiteError(f"'{final}' reads back different from the transform written (disk full?)")
