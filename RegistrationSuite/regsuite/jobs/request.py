"""What a registration job is asked to do, what it produced, and where its files live.

A job folder (``output_dir``) holds, besides the request, the files the worker writes:

==================  ==========================================================================
``request.json``    the :class:`RegistrationRequest` (written by the parent)
``progress.jsonl``  one JSON object a line, appended and flushed by the worker: ``kind``
                    ``"progress"`` (the fields of the engine's ``ProgressEvent``) or ``"log"``
                    (``message``)
``cancel.flag``     created by the parent to ask the worker to stop
``result.json``     the :class:`JobResult`, written last (its presence means success)
``error.json``      ``{"type", "message", "exit_code"}`` when the worker failed or was cancelled;
                    ``type`` names a class of :mod:`regsuite.errors` (an unexpected
                    exception is a ``RegistrationFailed`` whose message points to the log)
``worker.log``      the worker's stdout and stderr
``transform.h5``    the full transform (fixed world -> moving world)
``part-N-KIND.*``   each part of the composite, N = 1, 2, ... in composite order; KIND is
                    ``linear`` (``.tfm``), ``bspline`` or ``field`` (``.h5``)
``inverse.h5``      the inverse (moving world -> fixed world), when the model has one
==================  ==========================================================================

Every output is written atomically (temporary file, then ``os.replace``).

Example:
    >>> request = RegistrationRequest("fixed.nii.gz", "moving.nii.gz", preset="rigid", seed=3)
    >>> RegistrationRequest.from_json(request.to_json()) == request
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Union

from ..errors import InputError

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = ["RegistrationRequest", "JobResult", "JobFiles", "PART_KINDS", "CANCELLED_MESSAGE", "PARENT_PID_VARIABLE", "one_line",
           "write_text_atomic"]

#: Kinds of transform parts, in the order a composite may hold them.
PART_KINDS = ("linear", "bspline", "field")

#: The message of a cancelled job (the engine's ``RegistrationCancelled`` text).
CANCELLED_MESSAGE = "registration cancelled by the user"

#: Environment variable through which the worker learns the pid of the process that started it.
PARENT_PID_VARIABLE = "REGSUITE_JOB_PARENT_PID"

PresetSpec = Union[str, "dict[str, Any]"]


def one_line(error: BaseException) -> str:
    """The error's message on one line (its type name when it has none).

    Example:
        >>> one_line(ValueError("two\\nlines"))
        'two lines'
    """
    return " ".join(str(error).split()) or type(error).__name__


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) so that ``path`` never holds a half-written file."""
    from ..io.atomic import atomic_output

    with atomic_output(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def _from_dict(cls: type, data: Any, what: str) -> Any:
    """Build dataclass ``cls`` from a JSON object; unknown or missing keys are one-line errors."""
    if not isinstance(data, Mapping):
        raise InputError(f"{what} must be a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(f"{what}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(fields)}")
    missing = [name for name, f in fields.items() if name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise InputError(f"{what}: missing key(s) {', '.join(missing)}")
    return cls(**data)


def _parse(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{what} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path)) if path else path


def _absolute_optional(path: str | None) -> str | None:
    return None if path is None else _absolute(path)


@dataclass
class RegistrationRequest:
    """Everything a background registration needs, as plain JSON-able values.

    ``preset`` is a preset name (``regsuite presets``), the path of a preset JSON file, or a
    preset dictionary (``RegistrationConfig.to_dict()``; a ``RegistrationConfig`` itself is
    converted). ``output_dir`` empty means a fresh temporary folder chosen when the job starts.

    Example:
        >>> request = RegistrationRequest("f.nii.gz", "m.nii.gz", preset={"stages": [{"model": "rigid"}]})
        >>> request.preset["stages"][0]["model"], request.device
        ('rigid', 'auto')
    """

    fixed: str
    moving: str
    preset: PresetSpec = "affine"
    output_dir: str = ""
    fixed_mask: str | None = None
    moving_mask: str | None = None
    initial_transform: str | None = None
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    #: also compute and write ``inverse.h5`` (for a svf model that is a second integration and a
    #: second full-grid field file; callers that never use the inverse turn it off)
    write_inverse: bool = True

    def __post_init__(self) -> None:
        if hasattr(self.preset, "to_dict") and not isinstance(self.preset, (str, dict)):
            self.preset = self.preset.to_dict()  # a RegistrationConfig
        for name in ("fixed", "moving", "output_dir", "fixed_mask", "moving_mask", "initial_transform"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                setattr(self, name, os.fspath(value))

    def to_json(self) -> str:
        """The request as a JSON object (text).

        Example:
            >>> json.loads(RegistrationRequest("f.nii", "m.nii").to_json())["preset"]
            'affine'
        """
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "RegistrationRequest":
        """Parse :meth:`to_json` text; a malformed request is a one-line :class:`InputError`.

        Example:
            >>> RegistrationRequest.from_json('{"fixed": "f.nii", "moving": "m.nii", "seed": 2}').seed
            2
        """
        return _from_dict(cls, _parse(text, "registration request"), "registration request")

    def resolved(self, output_dir: str) -> "RegistrationRequest":
        """A copy with absolute file paths and ``output_dir`` set, so the worker's cwd is irrelevant.

        A preset string that looks like a file (ends in ``.json``, holds a path separator or
        names an existing file) becomes absolute; a preset name is kept.

        Example:
            >>> r = RegistrationRequest("f.nii", "m.nii", preset="my.json").resolved("/tmp/job")
            >>> os.path.isabs(r.fixed), os.path.isabs(r.preset), r.output_dir
            (True, True, '/tmp/job')
        """
        preset = self.preset
        if isinstance(preset, str) and (preset.lower().endswith(".json") or "/" in preset
                                        or os.sep in preset or os.path.isfile(preset)):
            preset = _absolute(preset)
        return dataclasses.replace(
            self, fixed=_absolute(self.fixed), moving=_absolute(self.moving), preset=preset,
            output_dir=_absolute(output_dir), fixed_mask=_absolute_optional(self.fixed_mask),
            moving_mask=_absolute_optional(self.moving_mask),
            initial_transform=_absolute_optional(self.initial_transform))


@dataclass
class JobResult:
    """The files and numbers of a finished registration job.

    ``transform_path`` holds the full transform (fixed world -> moving world); ``part_paths``
    the parts of the composite in ITK composite order (the last part is applied to a point
    first), with ``part_kinds`` ``"linear"`` (``.tfm``), ``"bspline"`` or ``"field"`` (``.h5``).

    Example:
        >>> result = JobResult("t.h5", ["part-1-linear.tfm"], ["linear"], None, {}, [], 1.5)
        >>> JobResult.from_json(result.to_json()) == result
        True
    """

    transform_path: str
    part_paths: list[str]
    part_kinds: list[str]
    inverse_path: str | None
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0

    def load_transform(self) -> "sitk.Transform":
        """The full transform, read from ``transform_path``.

        Example:
            >>> job.result.load_transform().TransformPoint((0.0, 0.0, 0.0))  # doctest: +SKIP
        """
        from ..io.transforms import read_transform

        return read_transform(self.transform_path)

    def load_parts(self) -> list["sitk.Transform"]:
        """Each part of the composite, read from its own file, in composite order.

        Example:
            >>> [t.GetName() for t in job.result.load_parts()]  # doctest: +SKIP
            ['Euler3DTransform', 'BSplineTransform']
        """
        from ..io.transforms import read_transform

        return [read_transform(path) for path in self.part_paths]

    def load_inverse(self) -> "sitk.Transform | None":
        """The inverse (moving world -> fixed world), or None when the model has none."""
        from ..io.transforms import read_transform

        return read_transform(self.inverse_path) if self.inverse_path else None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "JobResult":
        return _from_dict(cls, _parse(text, "job result"), "job result")


class JobFiles:
    """Names of the files in a job folder (see the module docstring).

    Example:
        >>> files = JobFiles("/tmp/job")
        >>> files.progress.name, files.part(1, "linear").name, files.part(2, "bspline").name
        ('progress.jsonl', 'part-1-linear.tfm', 'part-2-bspline.h5')
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.request = self.folder / "request.json"
        self.progress = self.folder / "progress.jsonl"
        self.cancel = self.folder / "cancel.flag"
        self.result = self.folder / "result.json"
        self.error = self.folder / "error.json"
        self.log = self.folder / "worker.log"
        self.transform = self.folder / "transform.h5"
        self.inverse = self.folder / "inverse.h5"

    def part(self, number: int, kind: str) -> Path:
        return self.folder / f"part-{number}-{kind}{'.tfm' if kind == 'linear' else '.h5'}"

    def outputs(self) -> list[Path]:
        """Result files present now, including temporary files of unfinished atomic writes."""
        names = [self.result, self.transform, self.inverse, *self.folder.glob("part-*-*.*")]
        partial = [path for path in self.folder.glob(".*.part*")
                   if path.name.startswith((".part-", ".result.json.", ".error.json.",
                                            f".{self.transform.name}.", f".{self.inverse.name}."))]
        return [path for path in names if path.exists()] + partial

    def remove_outputs(self) -> None:
        """Delete every result file (finished or half-written) of a previous or cancelled run."""
        for path in self.outputs():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def prepare(self) -> None:
        """Create the folder and clear what a previous run left (outputs, flags, progress, error)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.remove_outputs()
        for path in (self.progress, self.cancel, self.error):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
