"""Batch registration with Slicer (no window): load files, register through the Logic, save.

Usage::

    Slicer --no-main-window --python-script <path>/RegSuiteRegistrationLib/batch.py \\
        --fixed fixed.nrrd --moving moving.nii.gz --preset brain-mri \\
        --output-transform moving_to_fixed.h5 [--output-volume registered.nrrd] \\
        [--fixed-mask fixed_mask.seg.nrrd] [--moving-mask mask.nrrd] [--initial-transform init.tfm] \\
        [--device auto|cpu|cuda] [--threads N] [--lambda 0..1] [--quiet]

Learned presets (``brain-mri-voxelmorph``, ``brain-mri-fast``, ``brain-mri-hypermorph``) run like
the others; ``--lambda`` sets a HyperMorph preset's regularization weight. The engine's warnings
(e.g. inputs unlike a model's training images) are printed as ``Warning: ...`` lines.

Exit code 0 on success, 2 for bad input, 1 when the registration fails, 130 for Ctrl-C and
128 + n for signal n (SIGTERM, SIGHUP); on failure one line ``error: ...`` is printed. Before
any work, inputs are checked (truncated NIfTI, non-orthonormal directions) and every output
(known extension, writable folder, not an input: preset and masks included); ``--threads`` is
capped to the usable CPU cores. Outputs are written into a hidden private folder, read back,
and moved into place when complete, so a failed or killed run never leaves a half-written or
hidden temporary file; input files are only read.
"""

from __future__ import annotations

import argparse
import os
import sys
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
    parser.add_argument("--lambda", dest="hyper_lambda", type=float, default=None,
                        help="HyperMorph presets: regularization weight in [0, 1] (default: the preset's)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
TRANSFORM_SUFFIXES = (".h5", ".hdf5", ".tfm", ".txt", ".mat")


def _check_image_file(path: str, role: str) -> None:
    """Refuse a truncated NIfTI file or an image whose direction matrix is not orthonormal."""
    from pathlib import Path  # noqa: PLC0415

    import SimpleITK as sitk  # noqa: PLC0415

    from regsuite.io.integrity import check_direction, check_nifti_complete  # noqa: PLC0415

    check_nifti_complete(Path(path), role)
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return  # not an ITK image (e.g. .seg.nrrd read by Slicer): the storage node decides
    check_direction(reader.GetDirection(), role, f"'{path}'")


def _read(scene: Any, path: str, node_class: str, storage_class: str, role: str) -> Any:
    import slicer  # noqa: PLC0415

    from regsuite.errors import InputError  # noqa: PLC0415

    if not os.path.isfile(path):
        raise InputError(f"{role} '{path}' does not exist")
    if node_class != "vtkMRMLTransformNode":
        _check_image_file(path, role)
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
    """Write ``node`` with its default storage node to ``path`` atomically, read back first."""
    from regsuite.errors import RegSuiteError  # noqa: PLC0415
    from regsuite.io.atomic import atomic_output  # noqa: PLC0415

    with atomic_output(path) as tmp:
        storage = node.CreateDefaultStorageNode()
        storage.SetFileName(tmp)
        if not storage.WriteData(node):
            raise RegSuiteError(f"{role} cannot be written to '{path}'")
        _verify(node, tmp, path, role)


def _verify(node: Any, tmp: str, path: str, role: str) -> None:
    """Raise RegSuiteError unless ``tmp`` reads back (volumes: same size; a full disk truncates)."""
    from pathlib import Path  # noqa: PLC0415

    import SimpleITK as sitk  # noqa: PLC0415

    from regsuite.errors import InputError, RegSuiteError  # noqa: PLC0415
    from regsuite.io.integrity import check_nifti_complete  # noqa: PLC0415

    try:
        if node.IsA("vtkMRMLVolumeNode"):
            check_nifti_complete(Path(tmp), role)
            size = tuple(sitk.ReadImage(tmp).GetSize())
            if size != tuple(node.GetImageData().GetDimensions()):
                raise RuntimeError("size differs")
        elif b"Inverse" not in Path(tmp).read_bytes()[:1 << 20]:  # SimpleITK cannot read Inverse* transforms
            sitk.ReadTransform(tmp)
    except (RuntimeError, InputError):
        raise RegSuiteError(f"{role} '{path}' was not written completely (disk full?)") from None


def _check_outputs(args: argparse.Namespace) -> None:
    """Every output: known extension, writable folder, not a folder, not an input, not twice."""
    from regsuite.engine.config import preset_file  # noqa: PLC0415
    from regsuite.io.safety import check_distinct, check_output  # noqa: PLC0415

    check_output(args.output_transform, TRANSFORM_SUFFIXES, "--output-transform")
    check_output(args.output_volume, VOLUME_SUFFIXES, "--output-volume")
    check_distinct([args.fixed, args.moving, args.fixed_mask, args.moving_mask, args.initial_transform,
                    preset_file(args.preset)], [args.output_transform, args.output_volume])


def run(args: argparse.Namespace, scene: Any) -> int:
    """Register the files named in ``args`` inside ``scene``; raises RegSuiteError on failure."""
    from RegSuiteRegistrationLib.logic import RegSuiteRegistrationLogic  # noqa: PLC0415

    from regsuite.io.safety import check_seed, usable_threads  # noqa: PLC0415

    _check_outputs(args)
    args.threads = usable_threads(args.threads)
    check_seed(args.seed)
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
                            log=None if args.quiet else print, waitForCompletion=True, showResult=False,
                            hyperLambda=args.hyper_lambda)
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
    from regsuite.io.safety import Terminated, termination_as_exception  # noqa: PLC0415

    try:
        with termination_as_exception():
            return run(args, scene)
    except InputError as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RegSuiteError as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return error.exit_code or EXIT_FAILED
    except OSError as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("error: interrupted; no output written", file=sys.stderr)
        return 130
    except Terminated as stop:
        print(f"error: terminated by {stop}; no output written", file=sys.stderr)
        return 128 + stop.signum


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


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
