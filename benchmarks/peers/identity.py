"""The identity transform: the "before registration" row of every table.

Example:
    >>> # run("fixed.nii.gz", "moving.nii.gz", "out/identity")["seconds"]
    >>> # 0.0
"""

from __future__ import annotations

from typing import Optional

import SimpleITK as sitk

from benchmarks.peers._common import out_path, peak_rss_mb, write_transform


def run(fixed_path: str, moving_path: str, out_dir: str, fixed_mask: Optional[str] = None,
        threads: int = 2, suite: str = "brain") -> dict:
    """Write an identity transform (no registration)."""
    path = write_transform(sitk.Transform(3, sitk.sitkIdentity), out_path(out_dir, "transform.tfm"))
    return dict(transform_path=path, seconds=0.0, peak_rss_mb=peak_rss_mb())
