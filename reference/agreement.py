"""How closely the integer model follows the float model it was exported from.

    python -m reference.agreement --checkpoint runs/digits/stage2/best.pt --model m.npz

Runs the PyTorch stage-2 model and gsbsim's integer model on the same split and reports
top-1 of each and the fraction of images on which their predictions agree; with --layers N,
the equal bits per binarizer end to end and teacher-forced (reference/bit_taps.py). Refuses a
model file whose header records other float weights than the checkpoint's (source_sha256).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

import numpy as np
import torch

from gsbsim.cli.args import OneLineParser, int_at_least, nonempty_path
from gsbsim.cli.signals import guarded
from gsbsim.format.conventions import pixels_to_int8
from .bit_taps import float_bits, float_predictions, forced_bits
from .verify import weights_sha256


@dataclass
class Agreement:
    images: int
    float_top1: float
    int_top1: float
    agreement: float

    def line(self) -> str:
        return (f"float top-1 {100 * self.float_top1:.2f}%  integer top-1 {100 * self.int_top1:.2f}%  "
                f"agreement {100 * self.agreement:.2f}% on {self.images} images")


def layer_agreement(model: torch.nn.Module, int_model, images: np.ndarray,
                    teacher_forced: bool = False) -> dict[str, float]:
    """Fraction of equal bits per binarized tensor, float model vs integer model (golden trace):
    end to end, or teacher-forced (each float binarizer fed the integer model's upstream bits and
    residual stream, reference/bit_taps.py)."""
    from gsbsim.engine import golden
    _, trace = golden.forward(int_model, pixels_to_int8(images), trace=True)
    fb = (forced_bits(model, images, trace, int_model.frac_bits) if teacher_forced else float_bits(model, images))[0]
    return {name: float(np.mean(fb[name].reshape(trace[name].shape) == trace[name])) for name in fb}


def check_source(model: torch.nn.Module, int_model, checkpoint: str) -> None:
    """Refuse a model file whose header says it was exported from other float weights."""
    recorded = int_model.header.get("source_sha256")
    if recorded is not None and recorded != weights_sha256(model):
        raise MismatchError(f"{int_model.path} was not exported from {checkpoint}: its header records float "
                            f"weights sha256 {recorded[:16]}..., the checkpoint's are {weights_sha256(model)[:16]}...")


class MismatchError(ValueError):
    """A checkpoint and a model file that do not belong together."""


def measure(model: torch.nn.Module, int_model, images: np.ndarray, labels: np.ndarray,
            engine: str = "fast") -> Agreement:
    """images: uint8 [N, C, H, W]; int_model: a gsbsim IntModel; engine 'fast' or 'golden'."""
    from gsbsim.engine import fast, golden
    f_pred = float_predictions(model, images)
    logits, _ = (golden if engine == "golden" else fast).forward(int_model, pixels_to_int8(images))
    i_pred = logits.argmax(-1)  # numpy argmax takes the lowest index on ties, as the spec says
    return Agreement(images=len(labels), float_top1=float((f_pred == labels).mean()),
                     int_top1=float((i_pred == labels).mean()), agreement=float((f_pred == i_pred).mean()))


PROG = "python -m reference.agreement"


def main(argv=None) -> int:
    """``python -m reference.agreement``; returns the exit status (docs/errors.md)."""
    return guarded(PROG, _main, argv)


def _main(argv=None) -> int:
    ap = OneLineParser(prog=PROG, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, type=nonempty_path, help="stage-2 checkpoint (reference.train)")
    ap.add_argument("--model", required=True, type=nonempty_path, help="integer model exported from it (reference.export)")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--layers", type=int_at_least(0), default=0, metavar="N",
                    help="also compare every binarized tensor, float vs integer, on N images")
    ap.add_argument("--data-path", default=None,
                    help="where the checkpoint's dataset is now (default: the path it was trained with)")
    args = ap.parse_args(argv)
    from gsbsim.format.model_file import ModelFileError, load_model as load_int
    from .checkpoint import CheckpointError, checkpoint_data, load_model
    from .data import DataError, build_datasets, dataset_arrays
    try:
        model, meta = load_model(args.checkpoint)
        int_model = load_int(args.model)
        check_source(model, int_model, args.checkpoint)  # before decoding a whole split for nothing
        bundle = build_datasets(**checkpoint_data(meta, args.data_path), augment=False)
        images, labels = dataset_arrays(getattr(bundle, args.split))
    except (CheckpointError, ModelFileError, DataError, OSError, MismatchError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    result = measure(model, int_model, images, labels)
    out = asdict(result)
    if args.layers:
        out["layers"] = layer_agreement(model, int_model, images[:args.layers])
        out["layers_teacher_forced"] = layer_agreement(model, int_model, images[:args.layers], teacher_forced=True)
    if args.json:
        print(json.dumps(out))
    else:
        print(result.line())
        if args.layers:
            print(f"  {'equal bits on ' + str(min(args.layers, len(images))) + ' images':<24} end to end  teacher-forced")
        for name, frac in out.get("layers", {}).items():
            print(f"  {name:<24} {100 * frac:9.3f}%  {100 * out['layers_teacher_forced'][name]:13.3f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
