"""``gsbsim edge``: write an edge-case model and its images (gsbsim/verify/edge_models.py) for ``hls`` and
``csim``, and print the branches of the spec they reach (gsbsim/verify/edge_coverage.py)."""
from __future__ import annotations

import argparse
import os

import numpy as np

from gsbsim.cli.args import int_at_least, nonempty_path, seed
from gsbsim.format.methods import METHOD_NAMES

__all__ = ["add_parser", "run_edge", "EdgeCommandError"]


class EdgeCommandError(Exception):
    """A bad input of `gsbsim edge` (gsbsim/cli/app.py prints it as one line, exit 2)."""

_EXAMPLES = """examples:
  gsbsim edge --method gsb --out build/edge              build/edge/model.npz + images.npy
  gsbsim edge --method gsb --mask-stat image --out build/edge-image
  gsbsim edge --method didb --prob 0 --out build/edge-prob0
then:
  gsbsim hls --model build/edge/model.npz --out build/edge/hls --pe 2 --simd 8
  gsbsim csim build/edge/hls --data build/edge/images.npy --images 8
Exit status: 0 every branch reached, 1 some branch not reached (the table says which), 2 an error.
"""


def add_parser(sub, fmt, func) -> None:
    """The `edge` subcommand; `func(args)` runs it (app.py's wrapper of run_edge)."""
    p = sub.add_parser("edge", help="write an edge-case model + images that reach every branch and tie",
                       description="Generate a valid integer model of a method whose constants put its "
                       "images exactly on every branch and tie of docs/integer_model.md (thresholds met "
                       "with equality, requantizations half-way, LayerNorm ties where a rounding square "
                       "root differs, gain sign 0, fc1 lower rays, int8 clamps, argmax ties...), write "
                       "DIR/model.npz and DIR/images.npy (uint8 [8, C, H, W]) and print how often each "
                       "branch is reached. Feed them to `gsbsim hls` and `gsbsim csim --data`.",
                       epilog=_EXAMPLES, formatter_class=fmt)
    p.add_argument("--method", required=True, choices=METHOD_NAMES, help="method of the model (the method table)")
    p.add_argument("--mask-stat", default="row", choices=("row", "image"),
                   help="statistic of the GSB masks (default row)")
    p.add_argument("--prob", type=int_at_least(0, 30), default=None, metavar="P",
                   help="shifts.prob of the model, 0..30 (default 16; 0 gives didb's three-level exp a "
                   "rounding shift of 0)")
    p.add_argument("--seed", type=seed, default=0, metavar="S", help="seed of the generator (default 0)")
    p.add_argument("--out", required=True, type=nonempty_path, metavar="DIR",
                   help="output folder (created if missing); an older edge model.npz and images.npy in it "
                   "are replaced, other files of those names never")
    p.set_defaults(func=func)


def _check_replaceable(model_path: str, images_path: str) -> None:
    """Replace model.npz and images.npy only when model.npz is an edge model (never what we did not write)."""
    from gsbsim.format.model_file import ModelFileError, load_model
    if os.path.lexists(model_path):
        try:
            ours = load_model(model_path).header.get("preset") == "edge"
        except ModelFileError:
            ours = False
        if not ours:
            raise EdgeCommandError(f"{model_path} exists and is not an edge model written by gsbsim edge; "
                                   "refusing to replace it")
    elif os.path.lexists(images_path):
        raise EdgeCommandError(f"{images_path} exists without an edge model beside it; refusing to replace it")


def run_edge(args: argparse.Namespace, atomic_write) -> int:
    """Write args.out/model.npz and images.npy, print the coverage; `atomic_write(path, write, flag)` is
    app.py's temporary-file-and-rename writer. Exit code 0 (every branch reached) or 1."""
    from gsbsim.format.model_file import ModelFileError, save_model
    from gsbsim.outputs import folder_lock
    from gsbsim.verify.edge_coverage import branch_counts, coverage_table
    from gsbsim.verify.edge_models import EdgeModelError, edge_model

    if os.path.lexists(args.out) and not os.path.isdir(args.out):
        raise EdgeCommandError(f"--out {args.out} exists and is not a folder")
    try:
        model, images = edge_model(args.method, args.mask_stat, args.seed, prob=args.prob)
    except EdgeModelError as e:
        raise EdgeCommandError(f"{e} (seed {args.seed}); try another --seed") from None
    counts = branch_counts(model, images)
    model_path, images_path = os.path.join(args.out, "model.npz"), os.path.join(args.out, "images.npy")
    with folder_lock(args.out, "--out"):  # removed again if this run fails: nothing half-written
        _check_replaceable(model_path, images_path)
        try:
            save_model(model_path, model.header, model.arrays)
        except ModelFileError as e:
            raise EdgeCommandError(str(e)) from None

        def write_images(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.save(f, images, allow_pickle=False)
        atomic_write(images_path, write_images, "--out")
    reached = sum(1 for n in counts.values() if n)
    print(f"wrote {model_path} (method {args.method}, mask_stat {args.mask_stat}, seed {args.seed}) and "
          f"{images_path} ({len(images)} images)")
    print(f"{reached} of {len(counts)} branches reached (times reached, branch, spec):")
    print(coverage_table(counts))
    print(f"next: gsbsim hls --model {model_path} --out {os.path.join(args.out, 'hls')} && "
          f"gsbsim csim {os.path.join(args.out, 'hls')} --data {images_path} --images {len(images)}")
    return 0 if reached == len(counts) else 1
