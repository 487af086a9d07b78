"""Sample data shipped with regsuite: a small real lung CT pair (elastix test data, Apache-2.0).

See ``sample/README.md`` for what each file is and ``sample/LICENSE.txt`` for its licence.

Example:
    >>> from regsuite.data import sample_paths
    >>> paths = sample_paths()
    >>> sorted(paths)
    ['fixed', 'fixed_mask', 'fixed_points', 'moving', 'moving_points']
    >>> paths["fixed"].name
    'lung_fixed.mha'
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"

_SAMPLE_FILES = {
    "fixed": "lung_fixed.mha",
    "moving": "lung_moving.mha",
    "fixed_mask": "lung_fixed_mask.mha",
    "fixed_points": "lung_fixed_points.txt",
    "moving_points": "lung_moving_points.txt",
}


def sample_paths() -> dict[str, Path]:
    """Return the paths of the sample pair by role.

    Keys: ``fixed`` and ``moving`` (int16 HU CT, world LPS geometry kept), ``fixed_mask``
    (uint8 lung mask on the fixed grid), ``fixed_points`` and ``moving_points`` (51
    corresponding landmarks, elastix point files in world LPS mm).

    Raises:
        InputError: a sample file is missing from the installation.
    """
    paths = {role: SAMPLE_DIR / name for role, name in _SAMPLE_FILES.items()}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise InputError(f"sample data file '{missing[0]}' is missing from the regsuite installation")
    return paths


__all__ = ["SAMPLE_DIR", "sample_paths"]
