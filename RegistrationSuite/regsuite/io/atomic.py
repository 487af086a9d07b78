"""Atomic output files: a half-written file never appears under the final name.

:func:`atomic_output` hands the writer a path inside a private hidden folder next to the final
file (``.<name>.tmpXXXX/<name>``, suffix in lower case so that ITK picks the right format for
``.MHA``/``.H5``...). When the block ends without an exception, the written file and any
companion files the writer put beside it (the pixel data of a detached ``.mhd``/``.nhdr``
header, whose name ITK writes into the header) are moved to their final names; otherwise the
private folder and everything in it are removed, so an error, Ctrl-C or SIGTERM (turned into an
exception by the command line) leaves no hidden temporary behind.

Example:
    >>> import os, tempfile
    >>> from regsuite.io.atomic import atomic_output
    >>> folder = tempfile.mkdtemp()
    >>> with atomic_output(os.path.join(folder, "out.txt")) as tmp:
    ...     with open(tmp, "w") as stream:
    ...         _ = stream.write("done")
    >>> open(os.path.join(folder, "out.txt")).read()
    'done'
    >>> os.listdir(folder)
    ['out.txt']
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import InputError, RegSuiteError

_DOUBLE_SUFFIXES = (".nii.gz", ".seg.nrrd", ".mrk.json")
#: Free space kept in reserve beyond a file's expected size (file system metadata, headers).
SPACE_MARGIN_BYTES = 1 << 20


def split_suffix(path: str | os.PathLike[str]) -> tuple[str, str]:
    """Split ``path`` into stem and suffix, keeping double suffixes such as ``.nii.gz``."""
    text = str(path)
    lower = text.lower()
    for suffix in _DOUBLE_SUFFIXES:
        if lower.endswith(suffix):
            return text[: -len(suffix)], text[-len(suffix):]
    stem, suffix = os.path.splitext(text)
    return stem, suffix


def check_suffix(path: str | os.PathLike[str], allowed: Sequence[str], what: str = "output") -> str:
    """Return the lower-case suffix of ``path``; raise :class:`InputError` unless it is in ``allowed``.

    Upper-case suffixes are accepted (``.MHA`` is written as MetaImage), but a mixed-case NIfTI
    suffix (``.nii.GZ``) is refused: the NIfTI library would not read the file back.
    """
    suffix = split_suffix(Path(path).name)[1]
    lower = suffix.lower()
    if lower not in allowed:
        raise InputError(f"{what} '{path}' has extension '{suffix or '(none)'}'; use {', '.join(allowed)}")
    if lower.startswith(".nii") and suffix not in (lower, suffix.upper()):
        raise InputError(f"{what} '{path}' has the mixed-case extension '{suffix}', which NIfTI readers "
                         f"refuse; use '{lower}'")
    return lower


def _folder_of(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def check_output_path(path: str | os.PathLike[str], what: str = "output") -> Path:
    """Raise :class:`InputError` unless a file can be created at ``path``; return it as a Path.

    The folder must exist and accept a new file (tried for real: permission bits do not tell
    for root or read-only mounts) and ``path`` must not be an existing folder.
    """
    final = Path(path)
    folder = _folder_of(final)
    if not folder.is_dir():
        raise InputError(f"{what} '{final}': folder '{folder}' does not exist")
    if final.is_dir():
        raise InputError(f"{what} '{final}' is an existing folder; give a file name")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise InputError(f"{what} '{final}': folder '{folder}' is not writable "
                         f"({error.strerror or error})") from None
    return final


def file_size_limit() -> int | None:
    """The largest file this process may write (``RLIMIT_FSIZE``), or ``None`` when unlimited."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def check_space(path: str | os.PathLike[str], expected_bytes: int) -> None:
    """Raise :class:`RegSuiteError` when a file of ``expected_bytes`` cannot be written at ``path``.

    Compares against the free space of the folder (plus :data:`SPACE_MARGIN_BYTES`) and the
    process's file size limit, so that libraries that crash on a full disk (HDF5) never start.
    """
    final = Path(path)
    free = shutil.disk_usage(_folder_of(final)).free
    needed = int(expected_bytes) + SPACE_MARGIN_BYTES
    if free < needed:
        raise RegSuiteError(f"not enough free space for '{final}': needs about {_mb(needed)}, "
                            f"{_mb(free)} free")
    limit = file_size_limit()
    if limit is not None and expected_bytes > limit:
        raise RegSuiteError(f"'{final}' would need about {_mb(expected_bytes)}, more than this "
                            f"process's file size limit ({_mb(limit)}, ulimit -f)")


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], expected_bytes: int | None = None) -> Iterator[str]:
    """Yield a private temporary path for ``path``; move it (and companions) into place on success.

    ``expected_bytes`` (an upper bound of the file size, when known) is checked against the free
    space before anything is written. The yielded path has the final file name with its suffix in
    lower case, inside a hidden folder beside ``path``; that folder is always removed.
    """
    final = check_output_path(path)
    if expected_bytes is not None:
        check_space(final, expected_bytes)
    folder = _folder_of(final)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp", dir=folder))
    stem, suffix = split_suffix(final.name)
    staged = staging / (stem + suffix.lower())
    try:
        try:
            yield str(staged)
            _publish(staging, staged, final)
        except OSError as error:
            raise RegSuiteError(_write_error(final, error)) from None
        except RegSuiteError as error:
            text = str(error).replace(str(staged), str(final)).replace(str(staging), str(folder))
            if text != str(error):
                raise type(error)(text) from None
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send what C++ libraries print on file descriptor 2 to the null device within the block.

    ITK's MetaImage and HDF5 writers print their own lines (up to 150 of them for HDF5) before
    raising; the caller reports the failure in one line instead. Python's ``sys.stderr`` is
    flushed first; nothing is written to disk (a full disk is what the block may be facing).
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable descriptor 2 (embedded interpreters)
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _write_error(final: Path, error: OSError) -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"cannot write '{final}': the disk is full"
    if error.errno == errno.EFBIG:
        return f"cannot write '{final}': the file size limit was reached"
    return f"cannot write '{final}': {error.strerror or error}"


def _publish(staging: Path, staged: Path, final: Path) -> None:
    """Move the companions, then the main file, from ``staging`` to the folder of ``final``."""
    if not staged.is_file():
        raise RegSuiteError(f"nothing was written to '{final}'")
    folder = _folder_of(final)
    companions = [item for item in staging.iterdir() if item != staged]
    for item in companions:
        if not item.is_file() or item.name.startswith("."):
            raise RegSuiteError(f"writing '{final}' left an unexpected '{item.name}'")
        if (folder / item.name).is_dir():
            raise InputError(f"the data file '{folder / item.name}' of '{final}' is an existing folder")
    umask = os.umask(0)
    os.umask(umask)
    for item in companions + [staged]:
        os.chmod(item, 0o666 & ~umask)  # writers may create private files; give the usual permissions
    for item in companions:
        os.replace(item, folder / item.name)
    os.replace(staged, final)
