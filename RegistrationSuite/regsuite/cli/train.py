"""``regsuite train``: train a registration network from a config (see :mod:`regsuite.learning.training`).

Example:
    $ regsuite train --config RegistrationSuite/regsuite/models/brain-t1-voxelmorph/train.json \\
          --output-dir runs/vxm --iterations 4000
    $ regsuite train --config ... --output-dir runs/vxm --resume     # after a kill
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError


def cmd_train(args: argparse.Namespace) -> int:
    from ..engine.registration import resolve_device
    from ..io.safety import usable_threads
    from ..learning.config import TrainingConfig
    from ..learning.training import Trainer

    config = TrainingConfig.from_file(args.config)
    if args.iterations is not None and args.iterations < 1:
        raise InputError(f"--iterations must be a positive integer, got {args.iterations}")
    device = resolve_device(args.device)
    if config.architecture == "affine":
        from ..learning.affine_training import AffineTrainer as Trainer  # noqa: N806
    trainer = Trainer(config, args.output_dir, device, args.data_root, log=lambda line: print(line, file=sys.stderr),
                      threads=usable_threads(args.threads))
    trainer.run(args.iterations, args.resume)
    if not args.no_export:
        # the straight run that gives these weights (a resumed run gives the same ones, see the
        # tests); the output folder is named by its last part, which is all a reader needs
        command = (f"regsuite train --config {_shown(args.config)} --output-dir runs/{Path(args.output_dir).name} "
                   f"--iterations {trainer.step} --device {args.device}"
                   + (f" --threads {args.threads}" if args.threads else "")
                   + (f" --data-root {_shown(args.data_root)}" if args.data_root else ""))
        card = trainer.export(command)
        print(f"wrote {card.parent / 'weights.pt'} and {card}")
    return 0


def _shown(path: str) -> str:
    """``path`` as a card records it: relative to the working folder when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
