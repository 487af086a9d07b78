"""Helpers shared by the peer wrappers (run inside the benchmark's child process).

Every wrapper turns its tool's output into one SimpleITK-readable transform that maps a
*fixed* world point (LPS mm) to a *moving* world point (ITK resampling convention), so the
harness can evaluate every tool with the same code.

Example:
    >>> import SimpleITK as sitk
    >>> tx = sitk.TranslationTransform(3, (1.0, 0.0, 0.0))
    >>> round(peak_rss_mb()) > 0
    True
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Iterator
from contextlib import contextmanager

import numpy as np
import SimpleITK as sitk


def _own_peak_kb() -> int:
    """Peak resident memory of this process since it started (``VmHWM``), in kB.

    ``ru_maxrss`` of a freshly started process is NOT usable here: Linux carries the parent's
    resident size at fork time over into the child's ``ru_maxrss``, so a child started by a
    large parent (the benchmark after scoring a brain pair holds > 1 GB) would report at least
    that much. ``VmHWM`` belongs to the memory map created by ``exec`` and starts from zero.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # non-Linux fallback


def peak_rss_mb() -> float:
    """Peak resident memory (MB) of this process or of its waited-for children, whichever is larger.

    The children's ``ru_maxrss`` is floored by this process's own resident size when it
    started them, which is small in the benchmark's worker (it only imports SimpleITK before
    starting the ``regsuite`` command line). Call it right after the registration so that the
    conversion work done afterwards does not count.
    """
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(_own_peak_kb(), children) / 1024.0


@contextmanager
def stopwatch() -> Iterator[dict]:
    """Measure the wall time of a block; the result is in ``box['seconds']``."""
    box: dict = {}
    start = time.perf_counter()
    try:
        yield box
    finally:
        box["seconds"] = time.perf_counter() - start


def set_itk_threads(threads: int) -> None:
    """Ask SimpleITK (and, through the environment, any other ITK build) to use ``threads``."""
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))


def read_float(path: str | os.PathLike) -> sitk.Image:
    """Read a scalar image as float32."""
    return sitk.ReadImage(str(path), sitk.sitkFloat32)


def field_transform(field_path: str | os.PathLike) -> sitk.DisplacementFieldTransform:
    """A displacement-field image (vector components x, y, z in world mm) as a transform."""
    field = sitk.ReadImage(str(field_path), sitk.sitkVectorFloat64)
    return sitk.DisplacementFieldTransform(field)


def ras_to_lps_affine(matrix_ras: np.ndarray) -> sitk.AffineTransform:
    """A 4x4 homogeneous matrix mapping RAS points to RAS points, as the same map in LPS.

    Example:
        >>> m = np.eye(4); m[:3, 3] = (1.0, 2.0, 3.0)   # shift by (+1 R, +2 A, +3 S)
        >>> ras_to_lps_affine(m).TransformPoint((0.0, 0.0, 0.0))
        (-1.0, -2.0, 3.0)
    """
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps = flip @ np.asarray(matrix_ras, dtype=float) @ flip
    tx = sitk.AffineTransform(3)
    tx.SetMatrix(lps[:3, :3].ravel().tolist())
    tx.SetTranslation(lps[:3, 3].tolist())
    return tx


def write_transform(transform: sitk.Transform, path: str | os.PathLike) -> str:
    """Write ``transform`` (ITK file, .tfm/.h5) and return the path as a string."""
    sitk.WriteTransform(transform, str(path))
    return str(path)


def write_dense_field(transform: sitk.Transform, reference: sitk.Image, path: str | os.PathLike) -> str:
    """Sample ``transform`` on the reference grid as a displacement field (world mm) and write it."""
    to_field = sitk.TransformToDisplacementFieldFilter()
    to_field.SetReferenceImage(reference)
    to_field.SetOutputPixelType(sitk.sitkVectorFloat64)
    field = to_field.Execute(transform)
    sitk.WriteImage(sitk.Cast(field, sitk.sitkVectorFloat32), str(path), True)
    return str(path)


def out_path(out_dir: str | os.PathLike, name: str) -> Path:
    """``out_dir / name``, creating ``out_dir`` if needed."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name
