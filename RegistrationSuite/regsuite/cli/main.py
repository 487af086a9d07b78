"""The ``regsuite`` command: register, apply, evaluate, presets, train, segment, template, change, demo.

Every transform maps a fixed world point (LPS mm) to a moving world point. Expected problems
(missing files, bad presets, wrong extensions...) print one line ``regsuite: error: ...`` on
stderr and exit with 2 (bad input) or 1 (failure); Ctrl-C exits with 130 and leaves no partial
output (every output is staged in a temporary file and moved into place at the end).

Example:
    $ regsuite presets
    $ regsuite register --fixed f.nii.gz --moving m.nii.gz --preset affine --output-transform t.tfm
    $ regsuite apply --reference f.nii.gz --input m.nii.gz --transform t.tfm --output w.nii.gz
    >>> from regsuite.cli.main import main
    >>> main(["presets", "--show", "rigid"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import InputError, PresetError, RegSuiteError, TransformFileError
from ..io.atomic import atomic_output, split_suffix
from ..io.images import IMAGE_SUFFIXES  # the writers own the extensions they write
from ..io.safety import (Terminated, check_distinct, check_output, check_seed,
                     termination_as_exception, usable_threads)
from ..io.transforms import ANY_SUFFIXES as ANY_TRANSFORM_SUFFIXES
from ..io.transforms import FIELD_SUFFIXES
from ..io.transforms import LINEAR_SUFFIXES as LINEAR_TRANSFORM_SUFFIXES

INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor,
                 "bspline": sitk.sitkBSpline}


class _ArgumentError(Exception):
    """argparse problem, reported as one line like every other bad input."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgumentError(f"{self.prog.split()[-1] if ' ' in self.prog else 'regsuite'}: {message}")


# ---------------------------------------------------------------------------- helpers
def suffix_of(path: str | os.PathLike[str]) -> str:
    """Lower-case extension, double ones (``.nii.gz``) kept."""
    return split_suffix(Path(path).name)[1].lower()


def native_pixel_id(path: str | os.PathLike[str]) -> int | None:
    """Pixel type stored in an image file (``None`` for folders or unreadable headers)."""
    if not Path(path).is_file():
        return None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return reader.GetPixelID()


def read_native(path: str, role: str) -> sitk.Image:
    """Read an image keeping its pixel type (validated as a 3D scalar image)."""
    from ..io.images import read_native_image

    return read_native_image(path, role)


def write_json(data: Any, path: str | os.PathLike[str]) -> None:
    """Write ``data`` as indented JSON atomically (numpy values converted, NaN/Inf -> null)."""
    text = json.dumps(_plain(data), indent=2, allow_nan=False)
    with atomic_output(path) as tmp:
        Path(tmp).write_text(text + "\n")


def _plain(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays -> Python, NaN/Inf -> None, paths -> str."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return _plain(dataclasses.asdict(value))
    return value


def stage_outputs(stack: contextlib.ExitStack, writers: Sequence[tuple[str | None, Callable[[str], None]]]) -> None:
    """Write each ``(path, writer)`` into a temporary file; all move into place when ``stack`` closes.

    If anything fails (or Ctrl-C arrives) before the stack closes, every temporary is removed.
    """
    for path, writer in writers:
        if path is not None:
            writer(stack.enter_context(atomic_output(path)))


def describe_config(preset: str) -> str:
    return preset if not preset.lower().endswith(".json") else Path(preset).name


# ---------------------------------------------------------------------------- register
def cmd_register(args: argparse.Namespace) -> int:
    from ..engine.config import INVERTIBLE_MODELS, load_preset, preset_file
    from ..io.images import read_image, read_mask
    from ..io.transforms import is_linear, read_transform

    config = load_preset(args.preset)
    name = describe_config(args.preset)
    if args.hyper_lambda is not None:
        from ..engine.config import with_lambda
        config = with_lambda(config, args.hyper_lambda)
    check_output(args.output_transform, LINEAR_TRANSFORM_SUFFIXES + ANY_TRANSFORM_SUFFIXES, "output transform")
    check_output(args.output_inverse, LINEAR_TRANSFORM_SUFFIXES + ANY_TRANSFORM_SUFFIXES, "output inverse")
    check_output(args.output_image, IMAGE_SUFFIXES, "output image")
    check_output(args.output_field, FIELD_SUFFIXES, "output displacement field")
    check_output(args.output_jacobian, IMAGE_SUFFIXES, "output Jacobian")
    check_output(args.log_json, (".json",), "JSON log")
    outputs = [args.output_transform, args.output_inverse, args.output_image, args.output_field,
               args.output_jacobian, args.log_json]
    check_distinct([args.fixed, args.moving, args.fixed_mask, args.moving_mask, args.initial_transform,
                    preset_file(args.preset)], outputs)
    args.threads = usable_threads(args.threads)
    check_seed(args.seed)

    initial = read_transform(args.initial_transform) if args.initial_transform else None
    linear = config.is_linear and (initial is None or is_linear(initial))
    for path, what in ((args.output_transform, "output transform"), (args.output_inverse, "output inverse")):
        if path is not None and not linear and suffix_of(path) in LINEAR_TRANSFORM_SUFFIXES:
            cause = f"preset '{name}' has a non-linear stage" if not config.is_linear else \
                "the initial transform is non-linear"
            raise TransformFileError(f"{what} '{path}': {cause}, so the result must be saved as .h5")
    if args.output_inverse is not None:
        missing = [s.model for s in config.stages if not s.is_invertible]
        if missing:
            raise InputError(f"--output-inverse: preset '{name}' has a '{missing[0]}' stage, which has "
                             f"no inverse ({', '.join(INVERTIBLE_MODELS)} stages do)")

    fixed = read_image(args.fixed, "fixed image")
    moving = read_image(args.moving, "moving image")
    fixed_mask = read_mask(args.fixed_mask, fixed, "fixed mask") if args.fixed_mask else None
    moving_mask = read_mask(args.moving_mask, moving, "moving mask") if args.moving_mask else None

    result, elapsed = run_registration(fixed, moving, config, args, fixed_mask=fixed_mask,
                                       moving_mask=moving_mask, initial=initial)
    if args.output_inverse is not None and result.inverse is None:
        raise InputError(f"--output-inverse: the registration with preset '{name}' gave no inverse transform")
    write_registration_outputs(result, fixed, moving, args, elapsed, name)
    if not args.quiet:
        print(f"registration finished in {elapsed:.1f} s (preset {name})")
        for path in outputs:
            if path is not None:
                print(f"wrote {path}")
    return 0


def run_registration(fixed: sitk.Image, moving: sitk.Image, config: Any, args: argparse.Namespace, *,
                     fixed_mask: sitk.Image | None, moving_mask: sitk.Image | None,
                     initial: sitk.Transform | None) -> tuple[Any, float]:
    """Call the engine with a progress bar on stderr (unless ``--quiet``)."""
    from ..engine.registration import register
    from .progress import ProgressBar

    import warnings

    from ..errors import InputWarning

    bar = None if args.quiet else ProgressBar(sys.stderr)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", InputWarning)
            result = register(fixed, moving, config, fixed_mask=fixed_mask, moving_mask=moving_mask,
                              initial_transform=initial, device=args.device, threads=args.threads,
                              seed=args.seed, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    for warning in caught:
        if issubclass(warning.category, InputWarning):
            print(f"regsuite: warning: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return result, time.perf_counter() - start


def write_registration_outputs(result: Any, fixed: sitk.Image, moving: sitk.Image,
                               args: argparse.Namespace, elapsed: float, name: str) -> None:
    """Stage every requested output of ``register``, then move them all into place."""
    from ..evaluation.jacobian import jacobian_determinant
    from ..io.images import cast_like, write_image
    from ..io.transforms import write_displacement_field, write_transform

    def warped(tmp: str) -> None:
        image = result.resample(moving)
        write_image(cast_like(image, native_pixel_id(args.moving)), tmp)

    log = {"preset": name, "fixed": str(args.fixed), "moving": str(args.moving),
           "elapsed_s": elapsed, "metrics": result.metrics, "history": result.history}
    with contextlib.ExitStack() as stack:
        stage_outputs(stack, [
            (args.output_transform, lambda tmp: write_transform(result.transform, tmp)),
            (args.output_inverse, lambda tmp: write_transform(result.inverse, tmp)),
            (args.output_image, warped),
            (args.output_field, lambda tmp: write_displacement_field(result.transform, fixed, tmp)),
            (args.output_jacobian, lambda tmp: write_image(jacobian_determinant(result.transform, fixed), tmp)),
            (args.log_json, lambda tmp: write_json(log, tmp)),
        ])


# ---------------------------------------------------------------------------- apply
def cmd_apply(args: argparse.Namespace) -> int:
    from ..io.images import cast_like, read_image, write_image
    from ..io.transforms import read_transform

    check_output(args.output, IMAGE_SUFFIXES, "output image")
    check_distinct([args.reference, args.input, args.transform], [args.output])
    transform = read_transform(args.transform)
    reference = read_image(args.reference, "reference image")
    image = read_native(args.input, "input image")
    integer = sitk.GetArrayViewFromImage(image).dtype.kind in "iu"
    interpolation = args.interpolation or ("nearest" if integer else "linear")
    if integer and interpolation != "nearest":
        print(f"regsuite: warning: --interpolation {interpolation} on the integer image '{args.input}' "
              f"({image.GetPixelIDTypeAsString()}) blends neighbouring values; a label map needs nearest",
              file=sys.stderr)
    elif args.interpolation is None and looks_like_labels(image):
        print(f"regsuite: warning: the float image '{args.input}' holds only a few whole-number values "
              "(a label map?); linear interpolation invents in-between labels: pass --interpolation nearest "
              "(or --interpolation linear to keep linear and silence this)", file=sys.stderr)
    default = check_default_value(args.default_value, image)
    # Interpolated in float64 and rounded to the input's type (ITK's own cast would truncate).
    warped = sitk.Resample(image, reference, transform, INTERPOLATORS[interpolation], default,
                           image.GetPixelID() if interpolation == "nearest" else sitk.sitkFloat64)
    write_image(cast_like(warped, image.GetPixelID()), args.output)
    return 0


#: A float image is taken for a label map when its voxels are whole numbers with at most this
#: many distinct values (atlases have up to ~1000 labels; intensity images have more values).
LABEL_LIKE_MAX_VALUES = 1000


def looks_like_labels(image: sitk.Image) -> bool:
    """Whether a float image looks like a label map stored as float (whole numbers, few values).

    The distinct values are counted on at most ~1 million evenly strided voxels.
    """
    values = sitk.GetArrayViewFromImage(image).ravel()
    if values.dtype.kind != "f" or not np.array_equal(values, np.round(values)):
        return False
    sample = values[:: max(1, values.size // 1_000_000)]
    return len(np.unique(sample)) <= LABEL_LIKE_MAX_VALUES


def check_default_value(value: float, image: sitk.Image) -> float:
    """``value`` if the pixel type of ``image`` holds it exactly; :class:`InputError` otherwise.

    An integer image takes whole numbers in its type's range (anything else would wrap or be
    truncated); a float image takes any number its type can hold.
    """
    dtype = sitk.GetArrayViewFromImage(image).dtype
    kind = image.GetPixelIDTypeAsString()
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not np.isfinite(value) or value != np.floor(value) or not info.min <= value <= info.max:
            raise InputError(f"--default-value {value:g} does not fit the input image's pixel type "
                             f"({kind}: whole numbers {info.min} .. {info.max})")
    elif np.isfinite(value) and abs(value) > np.finfo(dtype).max:
        raise InputError(f"--default-value {value:g} does not fit the input image's pixel type ({kind})")
    return float(value)


# ---------------------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.report import evaluate, format_table
    from ..io.images import read_image, read_label_image
    from ..io.points import read_points
    from ..io.transforms import read_transform

    check_output(args.json, (".json",), "JSON output")
    check_distinct([args.transform, args.fixed, args.fixed_labels, args.moving_labels,
                    args.fixed_points, args.moving_points, args.mask], [args.json])
    transform = read_transform(args.transform) if args.transform else None
    fixed = read_image(args.fixed, "fixed image") if args.fixed else None
    fixed_labels = read_label_image(args.fixed_labels, "fixed labels") if args.fixed_labels else None
    moving_labels = read_label_image(args.moving_labels, "moving labels") if args.moving_labels else None
    fixed_grid = fixed if fixed is not None else fixed_labels
    fixed_points = read_points(args.fixed_points, fixed_grid) if args.fixed_points else None
    moving_points = read_points(args.moving_points, moving_labels) if args.moving_points else None
    results = evaluate(transform=transform, fixed=fixed, fixed_labels=fixed_labels,
                       moving_labels=moving_labels, fixed_points=fixed_points,
                       moving_points=moving_points, mask=args.mask)
    print(format_table(results))
    if args.json:
        write_json(results, args.json)
    return 0


# ---------------------------------------------------------------------------- presets
def cmd_presets(args: argparse.Namespace) -> int:
    from ..engine.config import list_presets, load_preset, preset_path

    if args.show:
        source = _preset_file(args.show, preset_path)
        load_preset(str(source))  # validates, one-line PresetError otherwise
        print(source.read_text().rstrip())
        return 0
    if args.copy:
        name, destination = args.copy
        source = _preset_file(name, preset_path)
        load_preset(str(source))
        check_output(destination, (".json",), "preset copy")
        check_distinct([str(source)], [destination])
        if Path(destination).exists() and not args.force:
            raise InputError(f"preset copy '{destination}' already exists; use --force to replace it")
        with atomic_output(destination) as tmp:
            Path(tmp).write_text(source.read_text())
        print(f"wrote {destination}: edit it and pass it as --preset {destination}")
        return 0
    names = list_presets()
    width = max(len(n) for n in names) + 2 if names else 0
    for name in names:
        try:
            lines = load_preset(name).description.strip().splitlines()
            description = lines[0] if lines else ""
        except PresetError as error:
            description = f"(invalid preset: {error})"
        print(f"{name.ljust(width)}{description}")
    return 0


def _preset_file(name: str, preset_path: Callable[[str], Path]) -> Path:
    if name.lower().endswith(".json") or os.sep in name:
        if not Path(name).is_file():
            raise PresetError(f"preset file '{name}' does not exist")
        return Path(name)
    return preset_path(name)


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="regsuite", description="Physical-space image registration (fixed world -> moving world transforms).")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"regsuite {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    reg = commands.add_parser("register", help="register a moving image to a fixed image")
    reg.add_argument("--fixed", required=True, help="fixed (reference) 3D image")
    reg.add_argument("--moving", required=True, help="moving 3D image")
    reg.add_argument("--preset", required=True, help="preset name (see 'regsuite presets') or a preset JSON file")
    reg.add_argument("--output-transform", required=True, help="transform file: .tfm/.txt (linear presets) or .h5")
    reg.add_argument("--output-image", help="moving image resampled onto the fixed grid")
    reg.add_argument("--output-field", help="displacement field T(x) - x on the fixed grid (.nii.gz/.nrrd/.mha)")
    reg.add_argument("--output-inverse", help="inverse transform (moving world -> fixed world)")
    reg.add_argument("--output-jacobian", help="Jacobian determinant of the transform on the fixed grid")
    reg.add_argument("--fixed-mask", help="mask on the fixed grid (non-zero = inside)")
    reg.add_argument("--moving-mask", help="mask on the moving grid (non-zero = inside)")
    reg.add_argument("--initial-transform", help="initial transform (fixed world -> moving world)")
    reg.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    reg.add_argument("--threads", type=int, help="CPU threads used by torch")
    reg.add_argument("--seed", type=int, default=0)
    reg.add_argument("--quiet", action="store_true", help="no progress display or summary")
    reg.add_argument("--log-json", help="write per-iteration history and metrics as JSON")
    reg.add_argument("--lambda", dest="hyper_lambda", type=float, metavar="L",
                     help="HyperMorph presets: regularization weight lambda in [0, 1] (higher: smoother)")
    reg.set_defaults(handler=cmd_register)

    train = commands.add_parser("train", help="train a registration network (VoxelMorph, HyperMorph)")
    train.add_argument("--config", required=True, help="training config JSON (e.g. regsuite/models/<name>/train.json)")
    train.add_argument("--output-dir", required=True, help="folder for checkpoints, weights.pt and card.json")
    train.add_argument("--iterations", type=int, help="train up to this step (default: the config's)")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    train.add_argument("--threads", type=int, help="CPU threads used by torch")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --output-dir")
    train.add_argument("--data-root", help="training data folder (default: the config's data.root)")
    train.add_argument("--no-export", action="store_true", help="stop after training, without weights/card")
    train.set_defaults(handler=_train_handler)

    app = commands.add_parser("apply", help="resample an image with a transform")
    app.add_argument("--reference", required=True, help="image whose grid the output takes")
    app.add_argument("--input", required=True, help="image to resample (its pixel type is kept)")
    app.add_argument("--transform", required=True, help="transform file (reference world -> input world)")
    app.add_argument("--output", required=True, help="output image")
    app.add_argument("--interpolation", choices=tuple(INTERPOLATORS), default=None,
                     help="default: nearest for integer images (label maps keep their labels), "
                          "linear for float images (a warning when a float image looks like a label "
                          "map); linear/bspline on an integer image warns")
    app.add_argument("--default-value", type=float, default=0.0,
                     help="value outside the input (default 0); must fit the input's pixel type "
                          "(whole numbers in range for integer images), else refused")
    app.set_defaults(handler=cmd_apply)

    ev = commands.add_parser("evaluate", help="Dice/HD95, landmark errors and Jacobian statistics")
    ev.add_argument("--transform", help="transform (fixed world -> moving world); identity if omitted")
    ev.add_argument("--fixed", help="fixed image (grid for the Jacobian)")
    ev.add_argument("--fixed-labels")
    ev.add_argument("--moving-labels")
    ev.add_argument("--fixed-points", help="fixed landmarks (elastix .txt, .csv, .fcsv, .mrk.json)")
    ev.add_argument("--moving-points", help="moving landmarks, same order")
    ev.add_argument("--mask", help="mask on the fixed grid for the Jacobian statistics")
    ev.add_argument("--json", help="write the results as JSON")
    ev.set_defaults(handler=cmd_evaluate)

    pre = commands.add_parser("presets", help="list, show or copy the registration presets")
    group = pre.add_mutually_exclusive_group()
    group.add_argument("--show", metavar="NAME", help="print a preset's JSON")
    group.add_argument("--copy", nargs=2, metavar=("NAME", "DEST"), help="write an editable copy of a preset")
    pre.add_argument("--force", action="store_true", help="with --copy: replace DEST if it exists")
    pre.set_defaults(handler=cmd_presets)

    from .population import add_segment_parser, add_template_parser

    add_segment_parser(commands)
    add_template_parser(commands)
    from .change import add_change_parser

    add_change_parser(commands)

    demo = commands.add_parser("demo", help="register the shipped lung CT sample pair")
    demo.add_argument("--output-dir", default="regsuite-demo", help="folder for the outputs (created)")
    demo.add_argument("--quick", action="store_true", help="far fewer iterations (for tests)")
    demo.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    demo.add_argument("--threads", type=int)
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(handler=_demo_handler)
    return parser


def _train_handler(args: argparse.Namespace) -> int:
    from .train import cmd_train

    return cmd_train(args)


def _demo_handler(args: argparse.Namespace) -> int:
    from .demo import cmd_demo

    return cmd_demo(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``regsuite`` command with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    try:
        with termination_as_exception():
            return _run(argv)
    except KeyboardInterrupt:
        print("\nregsuite: interrupted; no output written", file=sys.stderr)
        return 130
    except Terminated as stop:
        print(f"\nregsuite: terminated by {stop}; no output written", file=sys.stderr)
        return 128 + stop.signum


def _run(argv: Sequence[str] | None) -> int:
    """Parse and run one command; expected problems become one line on stderr and a status."""
    try:
        parser = build_parser()
        args = parser.parse_args(list(argv) if argv is not None else None)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        return int(args.handler(args))
    except SystemExit as stop:  # --help / --version
        return stop.code if isinstance(stop.code, int) else 0
    except _ArgumentError as error:
        print(f"regsuite: error: {error}", file=sys.stderr)
        return 2
    except RegSuiteError as error:
        print(f"regsuite: error: {_one_line(error)}", file=sys.stderr)
        return int(getattr(error, "exit_code", 1))
    except BrokenPipeError:  # stdout piped into a reader that stopped (``| head``): end quietly
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:
        print(f"regsuite: error: {_one_line(error)}", file=sys.stderr)
        return 1


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
