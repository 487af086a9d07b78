"""``regsuite change``: longitudinal volume change between a baseline and a follow-up scan.

The pair is registered both ways (two tasks, run side by side where the runner allows) and
the two answers are combined symmetrically; see :mod:`regsuite.population.change` for the
formulas and the outputs. Progress lines go to stderr (none with ``--quiet``); the summary
(whole brain, then the labels of largest change) to stdout.

Example:
    $ regsuite change --baseline m00.nii.gz --followup m12.nii.gz --segment m00_aseg.nii.gz \\
          --labels FreeSurferColorLUT.txt --output-dir change --workers 2
    >>> import argparse
    >>> commands = argparse.ArgumentParser(prog="regsuite").add_subparsers(dest="command")
    >>> add_change_parser(commands)
    >>> args = commands.choices["change"].parse_args(["--baseline", "a.nii.gz", "--followup", "b.nii.gz",
    ...                                               "--output-dir", "out"])
    >>> args.preset, args.handler is cmd_change
    ('brain-mri', True)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .population import add_runner_options, progress_printer, runner_from

__all__ = ["add_change_parser", "cmd_change", "SHOWN_LABELS"]

#: Labels listed on stdout after the whole brain (largest |change| first); all are in change.csv.
SHOWN_LABELS = 10


def add_change_parser(commands: Any) -> None:
    """Add the ``change`` subcommand to ``commands`` (the subparsers of ``regsuite``)."""
    change = commands.add_parser("change", help="longitudinal volume change between a baseline and a follow-up scan")
    change.add_argument("--baseline", required=True, help="baseline scan")
    change.add_argument("--followup", required=True, help="follow-up scan of the same subject")
    change.add_argument("--segment", help="label map on the baseline grid (integer or whole-number values); "
                                          "without it only the whole brain is measured")
    change.add_argument("--followup-segment", help="the same labels on the follow-up grid "
                                                   "(default: --segment warped to the follow-up)")
    change.add_argument("--labels", help="label names: a FreeSurfer/Slicer colour table ('value name r g b a' lines)")
    change.add_argument("--preset", default="brain-mri", help="registration preset (name or JSON file; "
                                                              "default brain-mri)")
    change.add_argument("--output-dir", required=True, help="folder for change.json/.csv/.png, the Jacobian maps "
                                                            "and the two transforms (created)")
    change.add_argument("--work-dir", help="keep the two registrations here (default: a temporary folder)")
    change.add_argument("--resume", action="store_true", help="continue the run in --work-dir, skipping finished tasks")
    add_runner_options(change)
    change.set_defaults(handler=cmd_change)


def cmd_change(args: argparse.Namespace) -> int:
    """Run ``regsuite change``; print the summary unless ``--quiet``."""
    from ..population.change import measure_change

    with runner_from(args) as runner:
        summary = measure_change(args.baseline, args.followup, args.output_dir, segment=args.segment,
                                 followup_segment=args.followup_segment, labels=args.labels, preset=args.preset,
                                 runner=runner, work_dir=args.work_dir, resume=args.resume,
                                 progress=progress_printer(args.quiet), seed=args.seed, device=args.device)
    if not args.quiet:
        rows = summary["rows"]
        shown = rows[:1] + sorted(rows[1:], key=lambda row: -abs(row["change_percent"]))[:SHOWN_LABELS]
        for row in shown:
            name = f" {row['name']}" if row.get("name") else ""
            print(f"{row['label']}{name}: {row['baseline_ml']:.3f} ml -> {row['followup_ml']:.3f} ml "
                  f"({row['change_percent']:+.2f} %)")
        if len(rows) - 1 > SHOWN_LABELS:
            print(f"... and {len(rows) - 1 - SHOWN_LABELS} more labels in change.csv")
        print(f"measured in {summary['meta']['seconds']:.1f} s ({summary['meta']['runner']}); "
              f"wrote {args.output_dir}", file=sys.stdout)
    return 0
