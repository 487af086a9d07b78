"""Atlases for multi-atlas segmentation: an intensity image and a label map on its grid.

Atlases come as ``(image, labels)`` pairs or from a CSV file with the columns ``image``,
``labels`` and optionally ``name`` (relative paths are read from the CSV's folder). Before any
registration starts, :func:`check_atlases` reads the headers and the label values and refuses,
in one line, a label map that is not on its image's grid or atlases whose label sets differ
(naming the labels missing and where).

Example:
    >>> Atlas("a.nii.gz", "a_labels.nii.gz").name
    'a'
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import geometry_differences
from ..io.images import read_label_image

if TYPE_CHECKING:
    from ..engine.grid import Grid

__all__ = ["Atlas", "read_atlas_list", "check_atlases", "label_values"]


def _stem(path: str) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".nhdr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


@dataclass(frozen=True)
class Atlas:
    """One atlas: ``image`` (intensities), ``labels`` (label map on the image's grid), ``name``."""

    image: str
    labels: str
    name: str = field(default="")

    def __post_init__(self) -> None:
        if not self.name:
            parent = Path(self.image).parent.name
            stem = _stem(self.image)
            object.__setattr__(self, "name", stem if stem not in {"t1", "image", "t1weighted_brain"} or not parent
                               else parent)


def read_atlas_list(path: str, labels_required: bool = True) -> list[Atlas]:
    """Atlases (or images) listed in a CSV file: columns ``image``, ``labels`` and optionally ``name``.

    Relative paths are read from the CSV's folder. With ``labels_required=False`` (a template's
    image list) the ``labels`` column may be absent or empty; ``Atlas.labels`` is then ``""``.
    """
    location = Path(path)
    what = "atlas list" if labels_required else "image list"
    columns = {"image", "labels"} if labels_required else {"image"}
    try:
        with open(location, newline="") as stream:
            rows = list(csv.DictReader(stream))
    except OSError as error:
        raise InputError(f"{what} '{path}' cannot be read ({error.strerror})") from None
    if not rows or not columns <= set(rows[0]):
        wanted = "image,labels[,name]" if labels_required else "image[,labels][,name]"
        raise InputError(f"{what} '{path}' needs a header line with the columns {wanted} and one item a line")
    items = []
    for number, row in enumerate(rows, start=2):
        image, labels = ((row.get(key) or "").strip() for key in ("image", "labels"))
        if not image or (labels_required and not labels):
            raise InputError(f"{what} '{path}' line {number}: "
                             + ("image and labels are both needed" if labels_required else "no image"))
        items.append(Atlas(str((location.parent / image).resolve()),
                           str((location.parent / labels).resolve()) if labels else "", (row.get("name") or "").strip()))
    return items


def _header(path: str, role: str) -> "Grid":
    """The grid of the image file at ``path`` (only its header is read)."""
    from ..engine.grid import Grid

    if not Path(path).is_file():
        raise InputError(f"{role} '{path}' does not exist")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(f"{role} '{path}' cannot be read as an image") from None
    if reader.GetDimension() != 3:
        raise InputError(f"{role} '{path}' is {reader.GetDimension()}D; a 3D image is needed")
    return Grid(reader.GetSize(), reader.GetSpacing(), reader.GetOrigin(), np.array(reader.GetDirection()))


def label_values(path: str) -> set[int]:
    """The label values in the label map at ``path`` (0 included when present)."""
    image = read_label_image(path, "atlas labels")  # kept alive while its array view is read
    return {int(v) for v in np.unique(sitk.GetArrayViewFromImage(image))}


def check_atlases(atlases: Sequence[Atlas], minimum: int = 1, allow_missing_labels: bool = False) -> set[int]:
    """Refuse unusable atlases (one line); return the label values found in any of them.

    Checks: at least ``minimum`` atlases, unique names, files that exist and read as 3D images,
    each label map on its image's grid, and the same label values in every atlas (unless
    ``allow_missing_labels``: manual atlases often lack a small structure or two, and then a
    label missing from some atlases gets fewer votes).
    """
    if len(atlases) < minimum:
        raise InputError(f"at least {minimum} atlases are needed, got {len(atlases)}")
    names = [atlas.name for atlas in atlases]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise InputError(f"atlas names must be unique; '{duplicated[0]}' is used twice (name them in the atlas list)")
    sets = []
    for atlas in atlases:
        image = _header(atlas.image, f"atlas '{atlas.name}' image")
        labels = _header(atlas.labels, f"atlas '{atlas.name}' labels")
        differences = geometry_differences(labels, image)
        if differences:
            raise InputError(f"atlas '{atlas.name}': labels '{atlas.labels}' are not on the grid of its image "
                             f"({'; '.join(differences[:2])})")
        sets.append(label_values(atlas.labels))
    union = set().union(*sets)
    for atlas, values in zip(atlases, sets):
        missing = sorted(union - values)
        if missing and not allow_missing_labels:
            shown = ", ".join(str(v) for v in missing[:8]) + (" ..." if len(missing) > 8 else "")
            holders = [other.name for other, other_values in zip(atlases, sets) if missing[0] in other_values]
            raise InputError(f"atlases have different label sets: atlas '{atlas.name}' lacks label(s) {shown} "
                             f"(label {missing[0]} is in {', '.join(holders[:3])}); "
                             "allow it with --allow-missing-labels")
    return union
