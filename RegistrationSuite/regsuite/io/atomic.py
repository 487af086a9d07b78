"""Atomic output files: a half-written file never appears under the final name.

Example:
    >>> import os, tempfile
    >>> from regsuite.io.atomic import atomic_output
    >>> folder = tempfile.mkdtemp()
    >>> with atomic_output(os.path.join(folder, "out.txt")) as tmp:
    ...     with open(tmp, "w") as stream:
    ...         _ = stream.write("done")
    >>> open(os.path.join(folder, "out.txt")).read()
    'done'
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import InputError

_DOUBLE_SUFFIXES = (".nii.gz", ".seg.nrrd", ".mrk.json")


def split_suffix(path: str | os.PathLike[str]) -> tuple[str, str]:
    """Split ``path`` into stem and suffix, keeping double suffixes such as ``.nii.gz``."""
    text = str(path)
    lower = text.lower()
    for suffix in _DOUBLE_SUFFIXES:
        if lower.endswith(suffix):
            return text[: -len(suffix)], text[-len(suffix):]
    stem, suffix = os.path.splitext(text)
    return stem, suffix


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    The temporary name keeps the suffix of ``path`` so that writers choosing a format from the
    extension (SimpleITK, matplotlib) behave as for the final name.
    """
    final = Path(path)
    folder = final.parent if str(final.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"output folder '{folder}' does not exist (for '{final}')")
    _, suffix = split_suffix(final.name)
    handle, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".part{suffix}", dir=folder)
    os.close(handle)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
