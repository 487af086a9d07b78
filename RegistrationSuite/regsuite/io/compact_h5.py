"""Compact ITK HDF5 transform files: displacement fields stored quantized, shuffled and gzipped.

``sitk.WriteTransform`` stores a displacement field as uncompressed float64 (24 bytes per voxel:
a 256x256x160 field is 251 MB). ITK's HDF5 transform reader (the same code in SimpleITK, ITK,
ANTs and Slicer) accepts any float dataset (it converts float32 to double) and any HDF5 filter
the library decodes transparently, so this module writes the same layout ITK writes
(``/TransformGroup/<n>/TransformType``, ``TransformFixedParameters``, ``TransformParameters``)
with the field's ``TransformParameters`` changed to:

* values rounded to a multiple of ``quantum`` mm (default :data:`FIELD_QUANTUM_MM`, 2**-10 mm,
  about 0.001 mm: far below what a registration resolves), so every point mapping moves by at
  most ``quantum / 2`` under ITK's linear interpolation of the field;
* stored as float32 (exact for these values while ``|u| < 2**24 * quantum``, 16 km at the
  default), in 1 MiB chunks with HDF5's byte shuffle and gzip, which turn the zero low mantissa
  bytes of quantized values and the zero field outside the registered region into almost nothing.

ITK itself writes every piece that is not a displacement field (linear transforms, B-splines,
the composite header, the version attributes): the transform is first written by SimpleITK with
each field replaced by a one-voxel placeholder, then only the placeholders' two datasets are
replaced with h5py. The field's chunks are shuffled and compressed here, several at a time, and
stored as they are; a written file is checked by comparing those stored bytes (no decompression).

Example:
    >>> import os, tempfile, numpy as np, SimpleITK as sitk
    >>> field = sitk.GetImageFromArray(np.full((4, 4, 4, 3), 0.3), isVector=True)
    >>> path = os.path.join(tempfile.mkdtemp(), "field.h5")
    >>> transform = sitk.DisplacementFieldTransform(field)
    >>> stored = write_compact_h5(transform, path)
    >>> sitk.ReadTransform(path).TransformPoint((1.0, 1.0, 1.0))  # 0.3 to the nearest 2**-10
    (1.2998046875, 1.2998046875, 1.2998046875)
    >>> verify_compact_h5(path, [transform], stored, "field.h5")  # the file holds what was written
"""

from __future__ import annotations

import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Tuple, Union

import numpy as np
import SimpleITK as sitk

from ..errors import InputError, RegSuiteError, TransformFileError
from .composite import leaves

PathLike = Union[str, "os.PathLike[str]"]
#: Each displacement field's ``TransformParameters`` dataset (by HDF5 name) -> its chunks as stored,
#: in order: (HDF5 filter mask, 0 when every filter was applied; the shuffled, compressed bytes).
StoredChunks = Dict[str, List[Tuple[int, bytes]]]

#: Default quantum (mm) of stored displacements: a point mapping moves by at most half of it.
FIELD_QUANTUM_MM = 2.0 ** -10
#: gzip level: 1 writes a brain field about twice as fast as 4-6 for a few % more bytes.
GZIP_LEVEL = 1
#: Elements per HDF5 chunk (float32: 1 MiB, HDF5's default chunk cache size).
_CHUNK = 1 << 18
_FIELD_TYPE = "DisplacementFieldTransform"
#: Values per block of :func:`quantize`.
_BLOCK = 1 << 20


def h5py_available() -> bool:
    """True when h5py can be imported (the compact writer needs it)."""
    try:
        import h5py  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def quantize(values: np.ndarray, quantum: float) -> np.ndarray:
    """``values`` rounded to the nearest multiple of ``quantum``, as a new flat float32 array.

    Example:
        >>> quantize(np.array([0.3, -1.0004]), 2.0 ** -10).tolist()
        [0.2998046875, -1.0]
    """
    return _quantize_blocks(values, quantum)[0]


def _quantize_blocks(values: np.ndarray, quantum: float) -> tuple[np.ndarray, float]:
    """:func:`quantize` through blocks of a million values (cache-sized temporaries), and the
    largest absolute input value (NaN, and the output unfinished, when a value is NaN or infinite)."""
    flat = np.asarray(values).reshape(-1)
    out = np.empty(flat.shape, dtype=np.float32)
    block = np.empty(min(len(flat), _BLOCK), dtype=np.float64)
    largest = 0.0
    for start in range(0, len(flat), _BLOCK):
        part = block[: min(_BLOCK, len(flat) - start)]
        source = flat[start:start + len(part)]
        low, high = float(source.min()), float(source.max())  # numpy's min/max propagate NaN
        if not (np.isfinite(low) and np.isfinite(high)):
            return out, float("nan")
        largest = max(largest, -low, high)
        np.divide(source, quantum, out=part)
        np.rint(part, out=part)
        part *= quantum
        out[start:start + len(part)] = part
    return out, largest


def _placeholder() -> sitk.DisplacementFieldTransform:
    return sitk.DisplacementFieldTransform(sitk.Image([1, 1, 1], sitk.sitkVectorFloat64, 3))


def _field_values(piece: sitk.Transform, quantum: float) -> np.ndarray:
    """The flat ``TransformParameters`` ITK would write for a field (x fastest, xyz interleaved), quantized."""
    field = sitk.DisplacementFieldTransform(piece).GetDisplacementField()
    values, largest = _quantize_blocks(sitk.GetArrayViewFromImage(field), quantum)
    limit = quantum * float(2 ** 24)
    if not largest < limit:
        what = "NaN/Inf vectors" if not np.isfinite(largest) else f"vectors of {largest:.6g} mm"
        raise TransformFileError(f"displacement field has {what}: not storable at a {quantum:g} mm quantum "
                                 f"(float32 holds multiples of it exactly below {limit:g} mm)")
    return values


def write_compact_h5(transform: sitk.Transform | list[sitk.Transform], path: PathLike,
                     quantum: float = FIELD_QUANTUM_MM, level: int = GZIP_LEVEL) -> StoredChunks:
    """Write ``transform`` (or the composite of a list of its :func:`leaves`) to ``path``, an
    ``.h5`` file; not atomic: give it a temporary name.

    Every ``DisplacementFieldTransform`` piece is stored quantized to ``quantum`` mm, as float32,
    shuffled and gzipped (``level`` 1-9); everything else exactly as ``sitk.WriteTransform``
    writes it. A nested composite is written flat (the same mapping). The chunks are shuffled
    and compressed here, on SimpleITK's global number of threads, and stored as they are; the
    returned :data:`StoredChunks` lets :func:`verify_compact_h5` compare the file with them.
    Raises :class:`InputError` for a bad quantum or level and :class:`TransformFileError` when
    writing fails.
    """
    import h5py  # noqa: PLC0415  (only needed here)

    if not (np.isfinite(quantum) and quantum > 0.0):
        raise InputError(f"field quantum must be a positive number of mm, got {quantum}")
    if not 1 <= int(level) <= 9:
        raise InputError(f"gzip level must be 1-9, got {level}")
    # (a list saves taking a large composite apart again: each GetNthTransform copies a field)
    pieces = list(transform) if isinstance(transform, (list, tuple)) else leaves(transform)
    stand_ins = [_placeholder() if piece.GetName() == _FIELD_TYPE else piece for piece in pieces]
    written = stand_ins[0] if len(pieces) == 1 else sitk.CompositeTransform(stand_ins)
    stored: StoredChunks = {}
    try:
        sitk.WriteTransform(written, os.fspath(path))
        with h5py.File(os.fspath(path), "r+") as store:
            for number, piece in enumerate(pieces):
                if piece.GetName() != _FIELD_TYPE:
                    continue
                group = store[_group_of(number, len(pieces))]
                kind = _text(group["TransformType"][0])
                if not kind.startswith(_FIELD_TYPE):
                    raise TransformFileError(f"ITK wrote a {kind} where the displacement field was expected")
                values = _field_values(piece, quantum)
                del group["TransformParameters"], group["TransformFixedParameters"]
                group.create_dataset("TransformFixedParameters",
                                     data=np.asarray(piece.GetFixedParameters(), dtype=np.float64))
                chunk = max(1, min(len(values), _CHUNK))
                dataset = group.create_dataset("TransformParameters", shape=values.shape, dtype=np.float32,
                                               chunks=(chunk,), shuffle=True, compression="gzip",
                                               compression_opts=int(level))
                chunks = _compressed_chunks(values, chunk, int(level))
                for index, data in enumerate(chunks):
                    dataset.id.write_direct_chunk((index * chunk,), data, 0)
                stored[dataset.name] = [(0, data) for data in chunks]
    except (RuntimeError, OSError, KeyError, ValueError) as error:
        raise TransformFileError(f"transform cannot be written to '{path}' ({' '.join(str(error).split())[:160]})") \
            from None
    return stored


def _compressed_chunks(values: np.ndarray, chunk: int, level: int) -> list[bytes]:
    """``values`` (flat float32) as HDF5 stores them in ``chunk``-long chunks through its shuffle
    and deflate filters: each chunk (the last padded with zeros) byte-shuffled (every value's
    first byte, then every second byte, ...) and zlib-compressed; several chunks at once on
    SimpleITK's global number of threads (zlib releases the GIL)."""
    def compress(start: int) -> bytes:
        part = values[start:start + chunk]
        if len(part) < chunk:
            part = np.concatenate([part, np.zeros(chunk - len(part), dtype=np.float32)])
        shuffled = np.ascontiguousarray(part.view(np.uint8).reshape(chunk, 4).T)
        return zlib.compress(shuffled.tobytes(), level)

    starts = range(0, len(values), chunk)
    threads = min(len(starts), max(1, sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()))
    if threads == 1:
        return [compress(start) for start in starts]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(compress, starts))


def verify_compact_h5(path: PathLike, pieces: list[sitk.Transform], stored: StoredChunks, final: str) -> None:
    """Raise :class:`RegSuiteError` unless ``path`` holds ``pieces`` as written: every piece's
    kind and fixed parameters, a linear piece's parameters (ITK stores doubles: exactly) and each
    field's raw chunks byte for byte as ``stored`` (what :func:`write_compact_h5` or
    :func:`write_compact_composite` returned). Catches a file cut short by a full disk without
    decompressing 30 million values; ``final`` is the name used in the message."""
    import h5py  # noqa: PLC0415

    try:
        with h5py.File(os.fspath(path), "r") as store:
            same = len(pieces) == 1 or _text(store["TransformGroup/0/TransformType"][0]).startswith(
                "CompositeTransform")
            for number, piece in enumerate(pieces):
                if not same:
                    break
                group = store[_group_of(number, len(pieces))]
                same = (_text(group["TransformType"][0]).split("_")[0] == piece.GetName()
                        and np.array_equal(group["TransformFixedParameters"][()],
                                           np.asarray(piece.GetFixedParameters(), dtype=np.float64)))
                if not same:
                    break
                dataset = group["TransformParameters"]
                if piece.GetName() == _FIELD_TYPE and dataset.name in stored:
                    same = _raw_chunks(dataset) == stored[dataset.name]
                elif piece.GetName() == _FIELD_TYPE:  # copied from a full-precision file: exact
                    field = sitk.DisplacementFieldTransform(piece).GetDisplacementField()
                    same = np.array_equal(dataset[()], sitk.GetArrayViewFromImage(field).reshape(-1))
                else:
                    same = np.array_equal(dataset[()], np.asarray(piece.GetParameters(), dtype=np.float64))
    except (RuntimeError, OSError, KeyError, ValueError):
        raise RegSuiteError(f"'{final}' was not written completely (disk full?)") from None
    if not same:
        raise RegSuiteError(f"'{final}' reads back different from the transform written (disk full?)")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _group_of(leaf: int, count: int) -> str:
    """HDF5 group of leaf number ``leaf`` in a file holding ``count`` leaves (0 holds a composite's header)."""
    return f"TransformGroup/{leaf if count == 1 else leaf + 1}"


def write_compact_composite(parts: list[sitk.Transform], part_files: list[PathLike],
                            path: PathLike) -> StoredChunks:
    """Write the composite of ``parts`` (ITK order) to ``path`` reusing the parts' compact files.

    ``part_files[i]`` holds ``parts[i]`` as :func:`write_compact_h5` (or ITK, for a piece without a
    field) wrote it. Each displacement field's stored datasets are copied from there as they are
    (compressed chunks, no second quantization or compression), so the composite maps points
    exactly like the part files. Returns the copied fields' raw chunks, as read from the part
    files, for :func:`verify_compact_h5`. Not atomic: give ``path`` a temporary name.
    """
    import h5py  # noqa: PLC0415

    if len(parts) != len(part_files):
        raise InputError(f"{len(parts)} transform parts but {len(part_files)} part files")
    pieces = [leaves(part) for part in parts]
    flat = [piece for group in pieces for piece in group]
    stand_ins = [_placeholder() if piece.GetName() == _FIELD_TYPE else piece for piece in flat]
    stored: StoredChunks = {}
    try:
        sitk.WriteTransform(stand_ins[0] if len(flat) == 1 else sitk.CompositeTransform(stand_ins), os.fspath(path))
        with h5py.File(os.fspath(path), "r+") as store:
            first = 0  # leaf number of the part's first piece in the composite
            for group, source_path in zip(pieces, part_files):
                fields = [index for index, piece in enumerate(group) if piece.GetName() == _FIELD_TYPE]
                if fields:
                    with h5py.File(os.fspath(source_path), "r") as source:
                        for index in fields:
                            target = store[_group_of(first + index, len(flat))]
                            origin = source[_group_of(index, len(group))]
                            for name in ("TransformParameters", "TransformFixedParameters"):
                                del target[name]
                                source.copy(origin[name], target, name)
                            chunks = _raw_chunks(origin["TransformParameters"])
                            if chunks is not None:
                                stored[target["TransformParameters"].name] = chunks
                first += len(group)
    except (RuntimeError, OSError, KeyError, ValueError) as error:
        raise TransformFileError(f"transform cannot be written to '{path}' ({' '.join(str(error).split())[:160]})") \
            from None
    return stored


def _raw_chunks(dataset) -> list[tuple[int, bytes]] | None:  # noqa: ANN001  (an h5py Dataset)
    """A chunked 1D dataset's chunks as stored (filter mask, filtered bytes), in order; None when
    it is not chunked."""
    if not dataset.chunks:
        return None
    return [dataset.id.read_direct_chunk((start,)) for start in range(0, dataset.shape[0], dataset.chunks[0])]

