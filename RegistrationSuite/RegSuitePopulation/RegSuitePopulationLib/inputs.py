"""Inputs of the population workflows: the nodes and paths checked, then exported for the command.

The ``regsuite`` command reads files only. Checks (each raises :class:`regsuite.errors.InputError`
with a one-line message): :func:`require_volume` (a scalar volume node with image data),
:func:`require_file`, :func:`run_options` (preset, workers, threads, Dask scheduler). Exports into
a job's temporary folder: :func:`write_volume` (a volume node), :func:`labels_on_grid` (a
segmentation or label map node as a label image on a volume's grid), :func:`export_atlases`
(scene atlases: ``--atlas IMAGE LABELS`` arguments, segments matched by name to label values),
:func:`write_label_table` (the names of those values for ``--labels``); :func:`atlas_list` and
:func:`image_source` turn a CSV file or a folder into the command's arguments.

SimpleITK, NumPy and the ``regsuite`` engine are imported inside the functions that need them
(never PyTorch).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any

from .messages import input_error, quoted_name, regsuite_errors

__all__ = ["IMAGE_SUFFIXES", "LABELS_SUFFIX", "ATLAS_LIST_NAME", "is_node", "require_volume", "require_file",
           "safe_name", "unique_stem", "image_stem", "run_options", "write_volume", "atlas_list", "image_source",
           "export_atlases", "labels_on_grid", "label_value", "write_label_table"]

#: Image files a folder of images or atlases may hold.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
LABELS_SUFFIX = "_labels"
ATLAS_LIST_NAME = "atlases.csv"


# ---------------------------------------------------------------------------- names
def safe_name(text: str) -> str:
    """``text`` usable as a file name stem (letters, digits, ``-``, ``_``, ``.``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("._") or "volume"


def unique_stem(stem: str, taken: set[str]) -> str:
    name, number = stem, 2
    while name.lower() in taken:
        name, number = f"{stem}_{number}", number + 1
    taken.add(name.lower())
    return name


def image_stem(path: Path) -> str | None:
    """The name of an image file without its image suffix (None for other files)."""
    lower = path.name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return path.name[: -len(suffix)]
    return None


# ---------------------------------------------------------------------------- checks
def is_node(value: Any) -> bool:
    return hasattr(value, "IsA") and hasattr(value, "GetID")


def require_volume(node: Any, role: str) -> Any:
    if node is None:
        raise input_error(f"no {role} is selected")
    if not is_node(node) or not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
        what = node.GetClassName() if hasattr(node, "GetClassName") else type(node).__name__
        raise input_error(f"{role} {node.GetName() if hasattr(node, 'GetName') else node!r} is a {what}, "
                          "not a scalar volume")
    if node.GetImageData() is None:
        raise input_error(f"{role} {quoted_name(node)} has no image data")
    return node


def require_file(path: Any, role: str) -> str:
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not text:
        raise input_error(f"{role} {path!r} is neither a scene node nor a file path")
    if not os.path.isfile(text):
        raise input_error(f"{role} '{text}' does not exist")
    return os.path.abspath(text)


def run_options(preset: str | None, workers: int | None, threads: int | None, scheduler: str | None) -> list[str]:
    """The command's options for the registration preset and where the registrations run."""
    errors = regsuite_errors()
    options: list[str] = []
    for value, name in ((workers, "workers"), (threads, "threads per worker")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise errors.InputError(f"{name} must be a whole number of at least 1, got {value!r}")
    scheduler = (scheduler or "").strip()
    if scheduler and workers is not None:
        raise errors.InputError("a number of workers starts a local cluster; leave it automatic when a "
                                "Dask scheduler address is given")
    if scheduler and (any(c.isspace() for c in scheduler) or scheduler.startswith("-")):
        raise errors.InputError(f"Dask scheduler address '{scheduler}' is not valid; e.g. tcp://host:8786")
    if preset:
        from regsuite.engine.config import load_preset  # noqa: PLC0415  (no PyTorch)

        load_preset(os.fspath(preset))  # PresetError (one line) for an unknown or broken preset
        options += ["--preset", os.fspath(preset)]
    if workers is not None:
        options += ["--workers", str(workers)]
    if threads is not None:
        options += ["--threads-per-worker", str(threads)]
    if scheduler:
        options += ["--scheduler", scheduler]
    return options


# ---------------------------------------------------------------------------- files and folders
def atlas_list(path: str, folder: str) -> str:
    """An atlas CSV file, or the ``atlases.csv`` of a folder, or one written for a folder's pairs."""
    errors = regsuite_errors()
    location = Path(os.fspath(path)).expanduser()
    if location.is_file():
        return str(location.resolve())
    if not location.is_dir():
        raise errors.InputError(f"atlas list '{path}' does not exist (give a CSV file or an atlas folder)")
    if (location / ATLAS_LIST_NAME).is_file():
        return str((location / ATLAS_LIST_NAME).resolve())
    stems = {}
    for file in sorted(location.iterdir()):
        stem = image_stem(file)
        if stem is not None and file.is_file():
            stems[stem] = file
    pairs = [(stems[stem], stems[stem + LABELS_SUFFIX]) for stem in sorted(stems)
             if not stem.endswith(LABELS_SUFFIX) and stem + LABELS_SUFFIX in stems]
    if not pairs:
        raise errors.InputError(f"atlas folder '{path}' holds no {ATLAS_LIST_NAME} and no image/label pairs "
                                f"named <name>.nii.gz and <name>{LABELS_SUFFIX}.nii.gz")
    listing = Path(folder) / ATLAS_LIST_NAME
    with open(listing, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["image", "labels", "name"])
        for image, labels in pairs:
            writer.writerow([str(image.resolve()), str(labels.resolve()), image_stem(image)])
    return str(listing)


def image_source(path: str) -> list[str]:
    """``--image-list`` for a CSV file, ``--images`` with every image of a folder."""
    errors = regsuite_errors()
    location = Path(path).expanduser()
    if location.is_file():
        if image_stem(location) is not None:
            raise errors.InputError(f"'{path}' is one image; give a folder of images or a CSV image list")
        return ["--image-list", str(location.resolve())]
    if not location.is_dir():
        raise errors.InputError(f"image list '{path}' does not exist (give a CSV file or a folder of images)")
    images = []
    for file in sorted(location.iterdir()):
        stem = image_stem(file)
        if file.is_file() and stem is not None and not stem.endswith(LABELS_SUFFIX):
            images.append(str(file.resolve()))
    if len(images) < 2:
        raise errors.InputError(f"image folder '{path}' holds {len(images)} image file(s); a template needs "
                                "at least 2")
    return ["--images", *images]


# ---------------------------------------------------------------------------- scene nodes to files
def write_volume(node: Any, path: str, role: str) -> None:
    from regsuite.io.images import write_image  # noqa: PLC0415
    from regsuite.mrml import volume_to_sitk  # noqa: PLC0415

    write_image(volume_to_sitk(node, role), path)


def export_atlases(pairs: list[Any], folder: str, colorNode: Any) -> tuple[list[str], dict[int, tuple[str, Any]]]:
    """``--atlas IMAGE LABELS`` arguments for ``pairs`` (scene nodes written into ``folder``)."""
    errors = regsuite_errors()
    arguments: list[str] = []
    values: dict[str, int] = {}  # segment name -> label value, shared by every scene atlas
    names: dict[int, tuple[str, Any]] = {}
    taken: set[str] = {"target", "labels"}  # the job folder's own files
    for number, pair in enumerate(pairs, start=1):
        try:
            image, labels = pair
        except (TypeError, ValueError):
            raise errors.InputError(f"atlas {number} is not an (image, labels) pair") from None
        if image is None or labels is None:
            raise errors.InputError(f"atlas {number} needs both an image and its labels")
        if is_node(image):
            node = require_volume(image, f"atlas {number} image")
            stem = unique_stem(safe_name(node.GetName()), taken)
            imagePath = os.path.join(folder, f"{stem}.nii.gz")
            write_volume(node, imagePath, f"atlas image {quoted_name(node)}")
        else:
            imagePath = require_file(image, f"atlas {number} image")
            stem = unique_stem(safe_name(image_stem(Path(imagePath)) or Path(imagePath).stem), taken)
        if is_node(labels):
            if not is_node(image):
                raise errors.InputError(f"atlas {number}: labels {quoted_name(labels)} from the scene need their "
                                        "image from the scene too")
            labelImage, found = labels_on_grid(labels, image, f"atlas {number} labels", colorNode, values)
            names.update(found)
            from regsuite.io.images import write_image  # noqa: PLC0415

            labelsPath = os.path.join(folder, f"{stem}{LABELS_SUFFIX}.nii.gz")
            write_image(labelImage, labelsPath)
        else:
            labelsPath = require_file(labels, f"atlas {number} labels")
        arguments += ["--atlas", imagePath, labelsPath]
    return arguments, names


def labels_on_grid(labels: Any, volume: Any, role: str, colorNode: Any,
                   values: dict[str, int] | None = None) -> tuple[Any, dict[int, tuple[str, Any]]]:
    """A label map (SimpleITK, uint16) of ``labels`` on ``volume``'s grid, and value -> (name, colour).

    A segmentation gives one value per segment: by name from ``values`` (shared between
    calls), else from ``colorNode``, else the next free value. A label map volume keeps its
    values (resampled, nearest neighbour, when on another grid); names from its colour node.
    """
    import numpy as np  # noqa: PLC0415
    import SimpleITK as sitk  # noqa: PLC0415
    from regsuite.geometry import same_grid  # noqa: PLC0415
    from regsuite.io.images import read_label_image  # noqa: PLC0415
    from regsuite.mrml import mask_from_node, volume_to_sitk  # noqa: PLC0415

    errors = regsuite_errors()
    values = {} if values is None else values
    reference = volume_to_sitk(volume, f"volume of the {role}")
    found: dict[int, tuple[str, Any]] = {}
    if is_node(labels) and labels.IsA("vtkMRMLSegmentationNode"):
        segmentation = labels.GetSegmentation()
        if segmentation.GetNumberOfSegments() == 0:
            raise errors.InputError(f"{role} {quoted_name(labels)} has no segments")
        array = np.zeros(sitk.GetArrayViewFromImage(reference).shape, np.uint16)
        for index in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(index)
            segment = segmentation.GetSegment(segmentId)
            name = segment.GetName()
            if name not in values:
                values[name] = label_value(name, set(values.values()), colorNode)
            mask = mask_from_node(labels, volume, f"segment '{name}' of {role}", [segmentId])
            array[sitk.GetArrayViewFromImage(mask) != 0] = values[name]
            found[values[name]] = (name, tuple(float(c) for c in segment.GetColor()))
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(reference)
        return image, found
    if not is_node(labels) or not labels.IsA("vtkMRMLScalarVolumeNode"):
        raise errors.InputError(f"{role} must be a segmentation or a label map volume")
    image = read_label_image(volume_to_sitk(labels, role), f"{role} {quoted_name(labels)}")
    if not same_grid(image, reference):
        image = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, image.GetPixelID())
    present = sorted(int(v) for v in np.unique(sitk.GetArrayViewFromImage(image)) if v != 0)
    if not present:
        raise errors.InputError(f"{role} {quoted_name(labels)} is empty on the grid of {quoted_name(volume)}")
    display = labels.GetDisplayNode()
    colors = display.GetColorNode() if display is not None else None
    for value in present:
        name = colors.GetColorName(value) if colors is not None else ""
        if name and name.lower() not in ("(none)", "invalid"):
            rgba = [0.0, 0.0, 0.0, 0.0]
            colors.GetColor(value, rgba)
            found[value] = (name, tuple(rgba[:3]))
    return image, found


def label_value(name: str, used: set[int], colorNode: Any) -> int:
    """The label value of segment ``name``: its index in ``colorNode``, else the first value that is
    neither ``used`` nor named in ``colorNode``."""
    listed = colorNode.GetColorIndexByName(name) if colorNode is not None else -1
    if listed > 0 and listed not in used:
        return listed

    def named(value: int) -> bool:
        return (colorNode is not None and value < colorNode.GetNumberOfColors()
                and colorNode.GetColorName(value) not in ("", "(none)"))

    value = 1
    while value in used or named(value):
        value += 1
    return value


def write_label_table(path: str, values: dict[int, tuple[str, Any]]) -> None:
    """A colour table file ``value name r g b a`` (names without spaces) for ``--labels``."""
    lines = ["# value name r g b a (written by the Registration Population module)"]
    for value, (name, color) in sorted(values.items()):
        red, green, blue = (int(round(255 * c)) for c in (color or (0.5, 0.5, 0.5)))
        lines.append(f"{value} {safe_name(name)} {red} {green} {blue} 255")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
