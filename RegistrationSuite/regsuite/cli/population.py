"""``regsuite segment`` and ``regsuite template``: workflows of many registrations.

Both share the options that say where the registrations run (``--workers``,
``--threads-per-worker``, ``--scheduler``; see :mod:`regsuite.population.runner`) and where
their intermediate files live (``--work-dir``, ``--resume``).

Example:
    $ regsuite segment --target t.nii.gz --atlas a1.nii.gz a1_labels.nii.gz --atlas a2.nii.gz a2_labels.nii.gz \\
          --output t_labels.nii.gz --fusion joint --workers 2
    $ regsuite template --images s*.nii.gz --output-dir template --iterations 4 --workers 4
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import InputError


def add_runner_options(parser: argparse.ArgumentParser) -> None:
    """The options every workflow takes: where its tasks run and where it keeps its work."""
    group = parser.add_argument_group("where the registrations run")
    group.add_argument("--workers", type=int, help="a Dask LocalCluster of N worker processes "
                       "(default: what this machine's cores and memory hold; 1: in this process)")
    group.add_argument("--threads-per-worker", type=int, help="threads each registration uses (default 2)")
    group.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://host:8786")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                       help="device of each registration (default cpu)")
    group.add_argument("--quiet", action="store_true", help="no progress lines")


def progress_printer(quiet: bool) -> Any:
    """A runner progress callback printing one line a task on stderr (None when quiet)."""
    if quiet:
        return None

    def show(done: int, total: int, outcome: Any) -> None:
        seconds = (outcome.result or {}).get("seconds")
        detail = f" ({seconds:.1f} s)" if outcome.status == "done" and seconds else ""
        if outcome.status == "failed":
            detail = f": {outcome.error}"
        print(f"regsuite: [{done}/{total}] {outcome.key} {outcome.status}{detail}", file=sys.stderr, flush=True)

    return show


def runner_from(args: argparse.Namespace) -> Any:
    from ..population.runner import make_runner

    return make_runner(args.workers, args.threads_per_worker, args.scheduler)


# ---------------------------------------------------------------------------- segment
def add_segment_parser(commands: Any) -> None:
    seg = commands.add_parser("segment", help="multi-atlas segmentation: register atlases, warp and fuse their labels")
    seg.add_argument("--target", required=True, help="image to segment")
    seg.add_argument("--atlas", nargs=2, action="append", metavar=("IMAGE", "LABELS"), default=[],
                     help="an atlas image and its label map (repeat for each atlas)")
    seg.add_argument("--atlas-list", help="CSV with columns image,labels[,name] (paths relative to the CSV)")
    seg.add_argument("--output", required=True, help="fused label map on the target grid")
    seg.add_argument("--fusion", choices=("majority", "staple", "weighted", "joint"), default="majority")
    seg.add_argument("--preset", default="brain-mri", help="registration preset (name or JSON file)")
    seg.add_argument("--select", type=int, metavar="K", help="use only the K atlases most similar after affine")
    seg.add_argument("--probabilities", metavar="DIR", help="new folder for per-label probability maps")
    seg.add_argument("--work-dir", help="keep the registrations here (default: a temporary folder)")
    seg.add_argument("--resume", action="store_true", help="continue the run in --work-dir, skipping finished tasks")
    seg.add_argument("--allow-missing-labels", action="store_true",
                     help="accept atlases whose label sets differ (a missing label gets fewer votes)")
    fusion = seg.add_argument_group("fusion options")
    fusion.add_argument("--consensus", type=float, default=0.8,
                        help="voxels where at least this share of atlases agree keep their vote (default 0.8)")
    fusion.add_argument("--patch-radius", type=int, default=2, help="joint fusion: patch radius in voxels")
    fusion.add_argument("--search-radius", type=int, default=1, help="joint fusion: search radius in voxels")
    fusion.add_argument("--alpha", type=float, default=0.1, help="joint fusion: ridge added to the error matrix")
    fusion.add_argument("--beta", type=float, default=2.0, help="joint/weighted fusion: weight exponent")
    add_runner_options(seg)
    seg.set_defaults(handler=cmd_segment)


def cmd_segment(args: argparse.Namespace) -> int:
    from ..population.atlases import Atlas, read_atlas_list
    from ..population.segment import segment

    atlases = [Atlas(image, labels) for image, labels in args.atlas]
    if args.atlas_list:
        atlases += read_atlas_list(args.atlas_list)
    if not atlases:
        raise InputError("no atlas given; use --atlas IMAGE LABELS (repeatable) or --atlas-list atlases.csv")
    options = {"consensus": args.consensus}
    if args.fusion == "joint":
        options.update(patch_radius=args.patch_radius, search_radius=args.search_radius, alpha=args.alpha,
                       beta=args.beta)
    elif args.fusion == "weighted":
        options.update(beta=args.beta)
    elif args.fusion == "staple":
        options = {}
    with runner_from(args) as runner:
        summary = segment(args.target, atlases, args.output, fusion=args.fusion, preset=args.preset,
                          select=args.select, probabilities=args.probabilities, work_dir=args.work_dir,
                          resume=args.resume, runner=runner, progress=progress_printer(args.quiet),
                          allow_missing_labels=args.allow_missing_labels, seed=args.seed, device=args.device,
                          fusion_options=options)
    if not args.quiet:
        print(f"segmented with {len(summary['atlases'])} atlases ({args.fusion} fusion, {summary['runner']})")
        print(f"wrote {args.output}")
    return 0


# ---------------------------------------------------------------------------- template
def add_template_parser(commands: Any) -> None:
    tpl = commands.add_parser("template", help="build an unbiased population template (ANTs-style, log-domain update)")
    tpl.add_argument("--images", nargs="+", default=[], metavar="IMAGE", help="the images (at least 2)")
    tpl.add_argument("--image-list", help="CSV with a column image, optional labels and name (paths relative to the CSV)")
    tpl.add_argument("--output-dir", required=True, help="folder for the template, the iterations and the transforms")
    tpl.add_argument("--iterations", type=int, default=4, help="deformable iterations after the affine mean (default 4)")
    tpl.add_argument("--preset", default="brain-mri-coarse",
                     help="registration preset ending in an svf stage (default brain-mri-coarse)")
    tpl.add_argument("--initial-template", help="start from this image instead of the first image")
    tpl.add_argument("--step", type=float, default=1.0, help="share of the mean transform removed per iteration")
    tpl.add_argument("--sharpen", choices=("none", "laplacian"), default="none", help="sharpen each average")
    tpl.add_argument("--resume", action="store_true", help="continue a killed run in --output-dir")
    add_runner_options(tpl)
    tpl.set_defaults(handler=cmd_template)


def cmd_template(args: argparse.Namespace) -> int:
    from ..population.template import build_template

    from ..population.atlases import read_atlas_list

    images: list[Any] = list(args.images)
    if args.image_list:
        images += read_atlas_list(args.image_list, labels_required=False)
    with runner_from(args) as runner:
        summary = build_template(images, args.output_dir, iterations=args.iterations, preset=args.preset,
                                 initial_template=args.initial_template, step=args.step, sharpen=args.sharpen,
                                 resume=args.resume, runner=runner, progress=progress_printer(args.quiet),
                                 seed=args.seed, device=args.device)
    if not args.quiet:
        for record in summary["iterations"]:
            print(f"iteration {record['iteration']}: update {record['velocity_mean_mm']:.3f} mm (velocity) "
                  f"{record['affine_mean_mm']:.3f} mm (affine), sharpness {record['sharpness']:.4g}")
        print(f"wrote {summary['template']}")
    return 0
