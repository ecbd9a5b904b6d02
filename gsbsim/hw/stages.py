"""Analytic iteration counts of every process of the streaming dataflow that is not a matrix layer.

gsbsim's cycle model (gsbsim/hw/folding.py) counts the MVAU layers with FINN's formula; the
generated HLS top (gsbsim/hlsgen/project.py) also has LayerNorms, forks, residual adds,
thresholds, splits, softmax, planes, ... each its own DATAFLOW process with pipelined loops.
This module counts their loop iterations per image from the shapes and the folding, loop by
loop as the kernels in hls/include/gsb are written; ``gsbsim csim`` checks every count against
the C-simulation (the ``STAGE`` lines), as it checks the layers.

Foldable stages (``FOLDABLE``) take a PE, elements per cycle, from the folding under their
process name (``blocks.0.value_planes``); the PE must divide the dimension the stage walks.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from gsbsim.format.methods import method_of

__all__ = ["ISQRT_STEPS", "FOLDABLE", "stage_dims", "stage_iterations", "driver"]

ISQRT_STEPS = 32   # gsb/layernorm.hpp isqrt64: one iteration per result bit

# foldable stage of a block -> (the dimension its PE must divide, what that dimension is)
FOLDABLE: dict[str, Callable[[Mapping[str, Any]], tuple[int, str]]] = {
    "value_planes": lambda h: (int(h["head_dim"]), "head_dim d"),
    "attention_planes": lambda h: (int(h["num_tokens"]), "num_tokens N"),
    "softmax": lambda h: (int(h["num_tokens"]), "num_tokens N"),
}


# stages that walk the words of a layer's folding (one PE-lane word per iteration; softmax reads
# its scores so; a LayerNorm writes one SIMD-bit word of its consumer per cycle): raising that
# layer's PE (SIMD) speeds them up.  Stage -> (layer, "pe" | "simd"); blocks' names without the prefix.
_DRIVEN = {"ln1": ("qkv", "simd"), "ln2": ("fc1", "simd"), "qkv_split": ("qkv", "pe"), "fc1_act": ("fc1", "pe"), "hfsc": ("qk", "pe"), "softmax": ("qk", "pe"),
           "qkv.act": ("qkv", "pe"), "proj.act": ("proj", "pe"), "fc1.act": ("fc1", "pe"), "fc2.act": ("fc2", "pe")}
_DRIVEN_TOP = {"im2col": ("patch", "simd"), "logits": ("head", "pe"), "argmax": ("head", "pe")}


def driver(name: str) -> tuple[str, str] | None:
    """The layer and its folding parameter ("pe"/"simd") that set stage ``name``'s count, if any."""
    if name in _DRIVEN_TOP:
        return _DRIVEN_TOP[name]
    parts = name.split(".", 2)
    if parts[0] == "blocks" and len(parts) == 3 and parts[2] in _DRIVEN:
        lin, what = _DRIVEN[parts[2]]
        return f"blocks.{parts[1]}.{lin}", what
    return None


def stage_dims(header: Mapping[str, Any]) -> dict[str, tuple[int, str]]:
    """Every foldable process of the model: name -> (dimension its PE must divide, its name)."""
    return {f"blocks.{i}.{k}": dim(header) for i in range(int(header["depth"])) for k, dim in FOLDABLE.items()}


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def stage_iterations(header: Mapping[str, Any], folding: Mapping[str, Any]) -> dict[str, int]:
    """Per image: iterations of every non-layer process, under its process name.

    ``folding`` maps layer names (and foldable stages) to objects with ``pe``/``simd``
    (gsbsim.hw.folding.Fold); a foldable stage it does not name has PE 1."""
    e, n, h, d = (int(header[k]) for k in ("embed_dim", "num_tokens", "num_heads", "head_dim"))
    hd, c = int(header["mlp_hidden"]), int(header["num_classes"])
    cin, img, p = int(header["in_chans"]), int(header["img_size"]), int(header["patch_size"])
    f = method_of(header["method"])
    act, didb = f.act_unit, f.attention == "hfsc_diba"
    t, kp = n - 2, cin * p * p
    patch, head = folding["patch"], folding["head"]
    ln = lambda simd: n * (e + ISQRT_STEPS + _cdiv(e, simd))   # noqa: E731  statistics, isqrt, output words
    out = {"load_image": cin * img * img, "im2col": t * _cdiv(kp, patch.simd), "embed": n * e,
           "final_norm": 2 * (2 * e + ISQRT_STEPS) + (n - 2) * e,   # tokens 0, 1; the rest read and dropped
           "logits": 2 * (c // head.pe), "logits_out": c, "argmax": c // head.pe}
    for i in range(int(header["depth"])):
        b = f"blocks.{i}."
        qkv, qk, av, fc1 = (folding[b + k] for k in ("qkv", "qk", "av", "fc1"))
        stage_pe = {k: (folding[b + k].pe if b + k in folding else 1) for k in FOLDABLE}
        av_sf = _cdiv(n, av.simd)
        sm = stage_pe["softmax"]
        row = n // qk.pe + n // sm + 1 + n // sm          # row max, exp, reciprocal, probabilities
        s = {"fork1": n * e, "ln1": ln(qkv.simd), "fork2": n * e, "ln2": ln(fc1.simd), "proj_residual": n * e,
             "fc2_residual": n * e, "ctx_threshold": n * e, "fc1_act": n * (hd // fc1.pe),
             # statistics, then planes (words assembled in registers: no clearing pass), PE channels at a time
             "value_planes": 2 * h * n * (d // stage_pe["value_planes"]),
             "softmax": h * n * row,
             "attention_planes": 2 * h * n * (n // stage_pe["attention_planes"])}
        if didb:
            s["qkv_split"] = n * (3 * e // qkv.pe)
            s["haar"] = n * 2 * e
            s["hfsc"] = h * n * (n // qk.pe)
            # gsb/diba.hpp: the fork (k_i per row, the sign plane PE words per cycle), then DIBA
            s["diba_fork"] = h * n * av_sf + h * (d // av.pe) * av_sf
            s["diba"] = h * n * d
        else:
            s["qkv_split"] = n * (3 * e // qkv.pe)
        if act:
            for lin, rows in (("qkv", 3 * e), ("proj", e), ("fc1", hd), ("fc2", e)):
                s[f"{lin}.act"] = n * (rows // folding[b + lin].pe)
        out.update({b + k: v for k, v in s.items()})
    return out
