"""How closely the integer model follows the float model it was exported from.

    python -m reference.agreement --checkpoint runs/digits/stage2/best.pt --model m.npz

Runs the PyTorch stage-2 model and gsbsim's integer model on the same split and reports
top-1 of each and the fraction of images on which their predictions agree.
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


@dataclass
class Agreement:
    images: int
    float_top1: float
    int_top1: float
    agreement: float

    def line(self) -> str:
        return (f"float top-1 {100 * self.float_top1:.2f}%  integer top-1 {100 * self.int_top1:.2f}%  "
                f"agreement {100 * self.agreement:.2f}% on {self.images} images")


@torch.no_grad()
def float_predictions(model: torch.nn.Module, images: np.ndarray, batch: int = 256) -> np.ndarray:
    model.eval()
    out = [model(torch.from_numpy(images[i:i + batch]).float()).argmax(-1).numpy()
           for i in range(0, len(images), batch)]
    return np.concatenate(out)


def _moved(m, x: torch.Tensor) -> torch.Tensor:
    """A linear's input after its learnable shift (the `sign` method has none)."""
    return m.move(x) if m.move is not None else x


def _plane(x: torch.Tensor) -> torch.Tensor:
    """A single sign plane x >= 0 laid out as a GSB plane stack [B, 1, ...]."""
    return (x >= 0).unsqueeze(1)


def _attention_hooks(at, p: str) -> list[tuple[torch.nn.Module, str, object]]:
    """(module, trace name, input -> bits) of the attention binarizers of each method."""
    out = []
    if hasattr(at, "band_gain"):                       # didb: the HFSC bands
        for qk in ("q", "k"):
            for band in ("low", "high"):
                out.append((getattr(at, f"{qk}_bin_{band}"), f"{p}{qk}.{band}", lambda m, x: x >= 0))
    else:
        out += [(at.q_bin, p + "q.bits", lambda m, x: x >= 0), (at.k_bin, p + "k.bits", lambda m, x: x >= 0)]
    if hasattr(at, "v_gsb"):
        out.append((at.v_gsb, p + "v.planes", lambda m, x: torch.stack(m.planes(x)[0], 1)))
        out.append((at.a_gsb, p + "a.planes", lambda m, x: torch.stack(m.planes(x)[0], 1)))
    else:                                              # sign: a*sign(V); its 1[A >= 1/N] has no module
        out.append((at.v_bin, p + "v.planes", lambda m, x: _plane(x)))
    return out


@torch.no_grad()
def float_bits(model: torch.nn.Module, images: np.ndarray) -> dict[str, np.ndarray]:
    """The float model's binarized tensors, named and laid out as gsbsim's trace (uint8 0/1).

    Captured with forward hooks: the bits each binarizer produces, so a disagreement
    with the integer model can be located to the first layer where it appears. Every
    method with an integer model (gsb, bit, sign, reactnet, didb).
    """
    bits: dict[str, np.ndarray] = {}
    hooks = []

    def keep(name, fn):
        return lambda mod, inp: bits.__setitem__(name, fn(mod, inp[0]).to(torch.uint8).numpy())

    for i, blk in enumerate(model.blocks):
        at, mlp, p = blk.attn, blk.mlp, f"blocks.{i}."
        taps = [(at.qkv, p + "ln1.bits", lambda m, x: _moved(m, x) >= 0)]
        taps += _attention_hooks(at, p)
        taps += [(at.proj, p + "proj.bits", lambda m, x: _moved(m, x) >= 0),
                 (mlp.fc1, p + "ln2.bits", lambda m, x: _moved(m, x) >= 0),
                 (mlp.fc2, p + "fc1.bits", lambda m, x: _moved(m, x) >= m.act_q.scales() / 2)]
        hooks += [mod.register_forward_pre_hook(keep(name, fn)) for mod, name, fn in taps]
    try:
        model.eval()
        model(torch.from_numpy(images).float())
    finally:
        for h in hooks:
            h.remove()
    return bits


def layer_agreement(model: torch.nn.Module, int_model, images: np.ndarray) -> dict[str, float]:
    """Fraction of equal bits per binarized tensor, float model vs integer model (golden trace)."""
    from gsbsim.engine import golden
    fb = float_bits(model, images)
    _, trace = golden.forward(int_model, pixels_to_int8(images), trace=True)
    return {name: float(np.mean(fb[name].reshape(trace[name].shape) == trace[name])) for name in fb}


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
        bundle = build_datasets(**checkpoint_data(meta, args.data_path), augment=False)
        images, labels = dataset_arrays(getattr(bundle, args.split))
    except (CheckpointError, ModelFileError, DataError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    result = measure(model, int_model, images, labels)
    out = asdict(result)
    if args.layers:
        out["layers"] = layer_agreement(model, int_model, images[:args.layers])
    if args.json:
        print(json.dumps(out))
    else:
        print(result.line())
        for name, frac in out.get("layers", {}).items():
            print(f"  {name:<22} {100 * frac:8.3f}% equal bits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
