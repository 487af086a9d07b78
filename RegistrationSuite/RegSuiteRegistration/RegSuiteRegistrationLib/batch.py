"""Batch registration with Slicer (no window): load files, register through the Logic, save.

Usage::

    Slicer --no-main-window --python-script <path>/RegSuiteRegistrationLib/batch.py \\
        --fixed fixed.nrrd --moving moving.nii.gz --preset brain-mri \\
        --output-transform moving_to_fixed.h5 [--output-volume registered.nrrd] \\
        [--fixed-mask fixed_mask.seg.nrrd] [--moving-mask mask.nrrd] [--initial-transform init.tfm] \\
        [--device auto|cpu|cuda] [--threads N] [--quiet]

Exit code 0 on success, 2 for bad input, 1 when the registration fails; on failure one line
``error: ...`` is printed. Outputs are written under a temporary name and renamed when complete,
so a failed run never leaves a half-written file; input files are only read.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any, Sequence

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump, no SystemExit
        raise _ArgumentError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="Slicer --no-main-window --python-script batch.py",
                     description="Register a moving image to a fixed image with Registration Suite.")
    parser.add_argument("--fixed", required=True, help="fixed image file")
    parser.add_argument("--moving", required=True, help="moving image file")
    parser.add_argument("--preset", default="affine", help="preset name or JSON file (default: affine)")
    parser.add_argument("--output-transform", required=True, help="result transform (.h5, .tfm, .txt)")
    parser.add_argument("--output-volume", help="moving image resampled onto the fixed grid")
    parser.add_argument("--fixed-mask", help="fixed mask: label map image or .seg.nrrd segmentation")
    parser.add_argument("--moving-mask", help="moving mask: label map image or .seg.nrrd segmentation")
    parser.add_argument("--initial-transform", help="initial transform file (fixed -> moving, ITK convention)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def _read(scene: Any, path: str, node_class: str, storage_class: str, role: str) -> Any:
    import slicer  # noqa: PLC0415

    from regsuite.errors import InputError  # noqa: PLC0415

    if not os.path.isfile(path):
        raise InputError(f"{role} '{path}' does not exist")
    node = scene.AddNewNodeByClass(node_class, os.path.basename(path).split(".")[0])
    storage = getattr(slicer, storage_class)()
    storage.SetFileName(path)
    if node_class == "vtkMRMLLabelMapVolumeNode":
        storage.SetCenterImage(False)
    if not storage.ReadData(node) or (hasattr(node, "GetImageData") and node.IsA("vtkMRMLVolumeNode")
                                      and node.GetImageData() is None):
        scene.RemoveNode(node)
        raise InputError(f"{role} '{path}' cannot be read")
    return node


def _read_mask(scene: Any, path: str | None, role: str) -> Any:
    if path is None:
        return None
    if path.lower().endswith(".seg.nrrd"):
        return _read(scene, path, "vtkMRMLSegmentationNode", "vtkMRMLSegmentationStorageNode", role)
    return _read(scene, path, "vtkMRMLLabelMapVolumeNode", "vtkMRMLVolumeArchetypeStorageNode", role)


def _write(node: Any, path: str, role: str) -> None:
    """Write ``node`` with its default storage node to ``path`` atomically."""
    from regsuite.errors import InputError  # noqa: PLC0415

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"folder of the {role} '{path}' does not exist")
    name = os.path.basename(path)
    stem, dot, ext = name.partition(".")
    handle, tmp = tempfile.mkstemp(prefix=f".{stem}.tmp-", suffix=dot + ext, dir=folder)
    os.close(handle)
    try:
        storage = node.CreateDefaultStorageNode()
        storage.SetFileName(tmp)
        if not storage.WriteData(node):
            raise InputError(f"{role} cannot be written to '{path}' (unsupported extension?)")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def run(args: argparse.Namespace, scene: Any) -> int:
    """Register the files named in ``args`` inside ``scene``; raises RegSuiteError on failure."""
    from RegSuiteRegistrationLib.logic import RegSuiteRegistrationLogic  # noqa: PLC0415

    from regsuite.errors import InputError  # noqa: PLC0415

    inputs = {os.path.abspath(p) for p in (args.fixed, args.moving, args.fixed_mask, args.moving_mask,
                                            args.initial_transform) if p}
    for option, value in (("--output-transform", args.output_transform), ("--output-volume", args.output_volume)):
        if not value:
            continue
        if os.path.abspath(value) in inputs:
            raise InputError(f"{option} '{value}' is an input file; choose another path")
        if not os.path.isdir(os.path.dirname(os.path.abspath(value))):
            raise InputError(f"folder of {option} '{value}' does not exist")
    fixed = _read(scene, args.fixed, "vtkMRMLScalarVolumeNode", "vtkMRMLVolumeArchetypeStorageNode", "fixed image")
    moving = _read(scene, args.moving, "vtkMRMLScalarVolumeNode", "vtkMRMLVolumeArchetypeStorageNode", "moving image")
    fixed_mask = _read_mask(scene, args.fixed_mask, "fixed mask")
    moving_mask = _read_mask(scene, args.moving_mask, "moving mask")
    initial = None
    if args.initial_transform:
        initial = _read(scene, args.initial_transform, "vtkMRMLTransformNode", "vtkMRMLTransformStorageNode",
                        "initial transform")
    output_volume = None
    if args.output_volume:
        output_volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "registered")

    def progress(event: dict[str, Any]) -> None:
        if not args.quiet and (event["iteration"] % 20 == 0 or event["iteration"] == event["iterations"]):
            print(f"[{event['stage']}/{event['stages']} {event['stage_name']}] level "
                  f"{event['level']}/{event['levels']} iteration {event['iteration']}/{event['iterations']} "
                  f"metric {event['metric']:.5g} ({event['elapsed']:.1f} s)", flush=True)

    logic = RegSuiteRegistrationLogic()
    outputs = logic.process(fixed, moving, preset=args.preset, outputVolume=output_volume, fixedMask=fixed_mask,
                            movingMask=moving_mask, initialTransform=initial, device=args.device,
                            threads=args.threads, seed=args.seed, progress=progress,
                            log=None if args.quiet else print, waitForCompletion=True, showResult=False)
    _write(outputs.transformNode, args.output_transform, "output transform")
    if output_volume is not None:
        _write(output_volume, args.output_volume, "output volume")
    if not args.quiet:
        print(outputs.summaryText(), flush=True)
    return EXIT_OK


def main(argv: Sequence[str] | None = None, scene: Any = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), register, save; returns the exit code."""
    try:
        from regsuite.errors import InputError, RegSuiteError  # noqa: PLC0415
    except ImportError as error:
        print(f"error: the regsuite engine cannot be imported ({error})", file=sys.stderr)
        return EXIT_FAILED
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except _ArgumentError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if scene is None:
        import slicer  # noqa: PLC0415

        scene = slicer.mrmlScene
    try:
        return run(args, scene)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RegSuiteError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code or EXIT_FAILED


if __name__ == "__main__":
    # Run as a script file: make the module folder (RegSuiteRegistrationLib) and the folder holding
    # the regsuite engine importable, as they are for modules loaded by Slicer.
    _here = os.path.dirname(os.path.abspath(__file__))
    for _folder in (os.path.dirname(_here), os.path.dirname(os.path.dirname(_here))):
        if _folder not in sys.path:
            sys.path.append(_folder)
    code = main()
    try:
        import slicer

        if getattr(slicer, "app", None) is not None:
            slicer.util.exit(code)
    except ImportError:
        pass
    sys.exit(code)
