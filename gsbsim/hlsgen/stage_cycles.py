"""Analytic iteration counts of every process of a generated top that is not a matrix layer.

gsbsim's cycle model (gsbsim/hw/folding.py) counts the MVAU layers; a generated top
(gsbsim/hlsgen/project.py) also has LayerNorms, forks, residual adds, thresholds, splits,
softmax, planes, ... each its own DATAFLOW process with pipelined loops. This module counts
their loop iterations per image from the same shapes and folding, loop by loop as the kernels
in hls/include/gsb are written; ``gsbsim csim`` checks every count against the C-simulation
(the ``STAGE`` lines), as it checks the layers against the cycle model.

At one iteration per cycle a process needs that many cycles per image, so the largest count
over all processes (layers and stages) is a lower bound on the dataflow's II: it ignores
pipeline fill, FIFO back-pressure between processes, a loop whose II exceeds 1 (docs/hls.md
§6 lists the suspects) and the softmax's per-row divider. ``dataflow_bound`` gives it with the
process that sets it, and the II the same processes would have run one after another inside
each block (the generated code before every region had DATAFLOW).
"""
from __future__ import annotations

from typing import Any, Mapping

from gsbsim.format.methods import method_of
from gsbsim.hw.folding import Fold, cycle_report

__all__ = ["stage_iterations", "dataflow_bound"]

ISQRT_STEPS = 32   # gsb/layernorm.hpp isqrt64: one iteration per result bit


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _tiles(mw: int, mh: int, simd: int, pe: int) -> int:
    """mvau_shape<MW, MH, SIMD, PE>::TILES."""
    return (mh // pe) * _cdiv(mw, simd)


def stage_iterations(header: Mapping[str, Any], folding: Mapping[str, Fold]) -> dict[str, int]:
    """Per image: iterations of every non-layer process, under its process name."""
    e, n, h, d = (int(header[k]) for k in ("embed_dim", "num_tokens", "num_heads", "head_dim"))
    hd, g, c = int(header["mlp_hidden"]), int(header["groups"]), int(header["num_classes"])
    cin, img, p = int(header["in_chans"]), int(header["img_size"]), int(header["patch_size"])
    f = method_of(header["method"])
    act, didb = f.act_unit, f.attention == "hfsc_diba"
    t, kp = n - 2, cin * p * p
    patch, head = folding["patch"], folding["head"]
    ln = n * (2 * e + ISQRT_STEPS)                      # statistics, isqrt, output, per token
    out = {"load_image": cin * img * img, "im2col": t * _cdiv(kp, patch.simd), "embed": n * e,
           "final_norm": 2 * (2 * e + ISQRT_STEPS) + (n - 2) * e,   # tokens 0, 1; the rest read and dropped
           "logits": 2 * (c // head.pe), "logits_out": c, "argmax": c // head.pe}
    for i in range(int(header["depth"])):
        b = f"blocks.{i}."
        qkv, qk, av, fc1 = (folding[b + k] for k in ("qkv", "qk", "av", "fc1"))
        qk_sf, qk_tiles = _cdiv(d, qk.simd), _tiles(d, n, qk.simd, qk.pe)
        av_tiles, av_sf = _tiles(n, d, av.simd, av.pe), _cdiv(n, av.simd)
        row = n // qk.pe + n + 1 + n                      # row max, exp, reciprocal, probabilities
        s = {"fork1": n * e, "ln1": ln, "fork2": n * e, "ln2": ln, "proj_residual": n * e,
             "fc2_residual": n * e, "ctx_threshold": n * e, "fc1_act": n * (hd // fc1.pe),
             "value_planes": g * h * av.pe * av_tiles + 2 * h * n * d,
             "softmax": h * n * row, "attention_planes": g * h * n * av_sf + 2 * h * n * n}
        if didb:
            s["qkv_split"] = n * (3 * e // qkv.pe)
            s["haar"] = 2 * h * n * qk_sf + 2 * h * qk.pe * qk_tiles + n * 2 * e
            s["hfsc"] = h * n * (n // qk.pe)
            s["diba"] = h * n * (av_sf + d)
        else:
            s["qkv_split"] = h * n * qk_sf + h * qk.pe * qk_tiles + n * (3 * e // qkv.pe)
        if act:
            for lin, rows in (("qkv", 3 * e), ("proj", e), ("fc1", hd), ("fc2", e)):
                s[f"{lin}.act"] = n * (rows // folding[b + lin].pe)
        out.update({b + k: v for k, v in s.items()})
    return out


def dataflow_bound(header: Mapping[str, Any], folding: Mapping[str, Fold]) -> dict[str, Any]:
    """The largest per-image count over all processes (a lower bound on the dataflow's II at one
    iteration per cycle) and its process; and the largest per-block sum, the II of the same
    kernels run one after another inside each block."""
    counts = {**cycle_report(header, folding).per_layer, **stage_iterations(header, folding)}
    name = max(counts, key=lambda k: counts[k])
    blocks = {}
    for k, v in counts.items():
        if k.startswith("blocks."):
            blk = ".".join(k.split(".")[:2])
            blocks[blk] = blocks.get(blk, 0) + v
    seq = max(blocks, key=lambda k: blocks[k]) if blocks else name
    return {"ii": counts[name], "process": name, "sequential_ii": blocks.get(seq, counts[name]),
            "sequential_region": seq}
