"""The work folder of a workflow run: its manifest, and where each task writes.

``run.json`` records what the run is (workflow, inputs, preset, options). ``--resume`` on a
folder whose manifest says something else is refused, so a half-finished run of one study is
never continued with another study's images; a folder holding an earlier run is not reused
without ``--resume``.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> open_workspace(folder, {"workflow": "segment", "target": "a.nii.gz"}, resume=False).name == folder.split("/")[-1]
    True
    >>> try:
    ...     open_workspace(folder, {"workflow": "segment", "target": "b.nii.gz"}, resume=True)
    ... except Exception as error:
    ...     print(str(error).split(" (")[0])
    work folder ... belongs to another run
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ..errors import InputError
from .steps import write_json_atomic

__all__ = ["open_workspace", "preset_argument", "MANIFEST"]

MANIFEST = "run.json"


def preset_argument(preset: Any) -> Any:
    """What a task receives for ``preset``: a shipped preset's name, or a preset file's content.

    A preset file is read here so that workers on other machines need not see it.
    """
    from ..engine.config import load_preset

    if isinstance(preset, str) and not Path(preset).is_file():
        load_preset(preset)  # unknown names fail here, before any task starts
        return preset
    if isinstance(preset, Mapping):
        load_preset(preset)
        return dict(preset)
    try:
        data = json.loads(Path(preset).read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"preset file '{preset}' cannot be read as JSON ({error})") from None
    load_preset(data)
    return data


def open_workspace(folder: str | Path, manifest: Mapping[str, Any], resume: bool) -> Path:
    """Create or reopen ``folder`` for the run described by ``manifest``; return its path."""
    location = Path(folder)
    if location.exists() and not location.is_dir():
        raise InputError(f"work folder '{folder}' is a file")
    recorded_path = location / MANIFEST
    wanted = json.loads(json.dumps(manifest))
    if recorded_path.is_file():
        try:
            recorded = json.loads(recorded_path.read_text())
        except ValueError:
            raise InputError(f"work folder '{folder}': {MANIFEST} is damaged; choose another folder") from None
        if not resume:
            raise InputError(f"work folder '{folder}' holds an earlier run; pass --resume to continue it "
                             "or choose another folder")
        if recorded != wanted:
            changed = [key for key in sorted(set(recorded) | set(wanted)) if recorded.get(key) != wanted.get(key)]
            raise InputError(f"work folder '{folder}' belongs to another run ({', '.join(changed[:3])} differ); "
                             "choose another folder or repeat that run's options")
        return location
    if resume and location.is_dir() and any(location.iterdir()):
        raise InputError(f"work folder '{folder}' has no {MANIFEST}: it is not a RegistrationSuite run to resume")
    location.mkdir(parents=True, exist_ok=True)
    write_json_atomic(wanted, str(recorded_path))
    return location
