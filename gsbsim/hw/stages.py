"""Analytic iteration counts of every process of the streaming dataflow that is not a matrix layer.

gsbsim's cycle model (gsbsim/hw/folding.py) counts the MVAU layers with FINN's formula; the
generated HLS top (gsbsim/hlsgen/project.py) also has LayerNorms, forks, residual adds,
thresholds, splits, softmax, planes, ... each its own DATAFLOW process with pipelined loops.
This module counts their loop iterations per image from the shapes and the folding, loop by
loop as the kernels in hls/include/gsb are written; ``gsbsim csim`` checks every count against
the C-simulation (the ``STAGE`` lines), as it checks the layers.

Foldable stages (``FOLDABLE``) take a PE, elements per cycle, from the folding under their
process name (``blocks.0.value_planes``); the PE must divide the dimension the stage walks.

The residual stream's writers (``LANES``: ``embed``, ``blocks.i.proj_residual``,
``blocks.i.fc2_residual``) take a PE too: the int32 lanes of the words they write (it must
divide E).  Their readers follow the width they are given: a fork copies whole words, a
LayerNorm's statistics read one word per cycle, the residual adds and the patch embedding walk
gcd(input lanes, layer PE, output lanes) channels per cycle (hls/include/gsb/lanes.hpp), the
final LayerNorm reads one word and writes one output word of the head's SIMD per cycle.
``knobs`` names, per process, the folding parameters its count depends on (the search raises them).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from gsbsim.format.methods import method_of

__all__ = ["ISQRT_STEPS", "FOLDABLE", "LANES", "stage_dims", "lane_dims", "lane_inputs", "pe_of", "stream_lanes",
           "lanes_per_cycle", "stage_iterations", "driver", "knobs"]

ISQRT_STEPS = 32   # gsb/layernorm.hpp isqrt64: one iteration per result bit

# foldable stage of a block -> (the dimension its PE must divide, what that dimension is)
FOLDABLE: dict[str, Callable[[Mapping[str, Any]], tuple[int, str]]] = {
    "value_planes": lambda h: (int(h["head_dim"]), "head_dim d"),
    "attention_planes": lambda h: (int(h["num_tokens"]), "num_tokens N"),
    "softmax": lambda h: (int(h["num_tokens"]), "num_tokens N"),
}


# the residual stream's writers: their PE is the lanes of the words they write (must divide E)
LANES = ("proj_residual", "fc2_residual")   # per block; the top's "embed" too


# stages that walk the words of a layer's folding (one PE-lane word per iteration; softmax reads
# its scores so; a LayerNorm writes one SIMD-bit word of its consumer per cycle): raising that
# layer's PE (SIMD) speeds them up.  Stage -> (layer, "pe" | "simd"); blocks' names without the prefix.
_DRIVEN = {"ln1": ("qkv", "simd"), "ln2": ("fc1", "simd"), "ctx_threshold": ("proj", "simd"), "qkv_split": ("qkv", "pe"), "fc1_act": ("fc1", "pe"), "hfsc": ("qk", "pe"), "softmax": ("qk", "pe"),
           "qkv.act": ("qkv", "pe"), "proj.act": ("proj", "pe"), "fc1.act": ("fc1", "pe"), "fc2.act": ("fc2", "pe")}
_DRIVEN_TOP = {"im2col": ("patch", "simd"), "logits": ("head", "pe"), "argmax": ("head", "pe"),
               "final_norm": ("head", "simd")}


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


def lane_dims(header: Mapping[str, Any]) -> dict[str, tuple[int, str]]:
    """The stages whose PE is the lanes of a stream word (listed in generated files only where > 1):
    the image port's reader load_image (pixels per word) and the residual stream's writers (E)."""
    e = (int(header["embed_dim"]), "embed_dim E")
    pixels = (int(header["in_chans"]) * int(header["img_size"]) ** 2, "image pixels Cin*I*I")
    return {"load_image": pixels, "embed": e, **{f"blocks.{i}.{k}": e for i in range(int(header["depth"])) for k in LANES}}


def pe_of(folding: Mapping[str, Any], name: str) -> int:
    """The PE of process ``name`` in ``folding``; 1 where the folding does not name it."""
    return folding[name].pe if name in folding else 1


def _layer_of(name: str) -> str:
    """The linear whose output a residual add adds: blocks.i.proj_residual -> blocks.i.proj."""
    return name[:-len("_residual")]


def lane_inputs(header: Mapping[str, Any]) -> dict[str, str]:
    """The writer of the residual words each reader reads: fork1 and the attention's residual add
    of block i read block i-1's fc2_residual (block 0: embed), fork2 and the MLP's add read the
    block's proj_residual, final_norm reads the last block's."""
    out, prev = {}, "embed"
    for i in range(int(header["depth"])):
        b = f"blocks.{i}."
        out.update({b + "fork1": prev, b + "ln1": prev, b + "proj_residual": prev,
                    b + "fork2": b + "proj_residual", b + "ln2": b + "proj_residual",
                    b + "fc2_residual": b + "proj_residual"})
        prev = b + "fc2_residual"
    out["final_norm"] = prev
    return out


def stream_lanes(header: Mapping[str, Any], folding: Mapping[str, Any]) -> dict[str, int]:
    """The lanes of the words each ``lane_dims`` writer writes (int32 residual words, image pixels)."""
    return {k: pe_of(folding, k) for k in lane_dims(header)}


def lanes_per_cycle(header: Mapping[str, Any], folding: Mapping[str, Any]) -> dict[str, int]:
    """Channels per iteration of every residual-stream process and of load_image: a reader (fork,
    LayerNorm statistics, final LayerNorm) the lanes of the words it reads, a residual add and
    embed gcd(lanes in, their layer's PE, lanes out), load_image its pixels per word."""
    own = stream_lanes(header, folding)
    out = {k: own[v] for k, v in lane_inputs(header).items()}
    out["load_image"] = own["load_image"]
    out["embed"] = math.gcd(pe_of(folding, "patch"), own["embed"])
    for k in own:
        if k.split(".")[-1] in LANES:
            out[k] = math.gcd(out[k], pe_of(folding, _layer_of(k)), own[k])
    return out


def knobs(header: Mapping[str, Any], name: str) -> tuple[list[tuple[str, str, int]], bool]:
    """The folding parameters (key, "pe" | "simd", the dimension they divide) that set the count of
    a residual-stream process, and whether the count is a gcd of them (all must grow together)."""
    e = int(header["embed_dim"])
    src = lane_inputs(header).get(name)
    parts = name.split(".")
    if name == "embed":
        return [("embed", "pe", e), ("patch", "pe", e)], True
    if name == "load_image":
        return [("load_image", "pe", lane_dims(header)["load_image"][0])], False
    if src is None:
        return [], False
    ks = [(src, "pe", e)]
    if parts[-1] in LANES:
        return ks + [(_layer_of(name), "pe", e), (name, "pe", e)], True
    lay = driver(name)
    if lay is not None:   # a LayerNorm: statistics at the input's lanes, output words at the layer's SIMD
        ks.append((lay[0], lay[1], e))
    return ks, False


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
    per = lanes_per_cycle(header, folding)
    ln = lambda li, simd: n * (e // li + ISQRT_STEPS + _cdiv(e, simd))   # noqa: E731  statistics, isqrt, words out
    last = per["final_norm"]
    out = {"load_image": cin * img * img // per["load_image"], "im2col": t * _cdiv(kp, patch.simd),
           "embed": n * e // per["embed"],
           # tokens 0, 1: statistics, isqrt, one output word per cycle; the rest read and dropped
           "final_norm": 2 * (e // last + ISQRT_STEPS + _cdiv(e, head.simd)) + (n - 2) * (e // last),
           "logits": 2 * (c // head.pe), "logits_out": c, "argmax": c // head.pe}
    for i in range(int(header["depth"])):
        b = f"blocks.{i}."
        qkv, qk, av, proj, fc1 = (folding[b + k] for k in ("qkv", "qk", "av", "proj", "fc1"))
        l1, lp = per[b + "fork1"], per[b + "fork2"]   # lanes of the block's input and of resid1
        stage_pe = {k: pe_of(folding, b + k) for k in FOLDABLE}
        av_sf = _cdiv(n, av.simd)
        sm = stage_pe["softmax"]
        row = n // qk.pe + n // sm + 1 + n // sm          # row max, exp, reciprocal, probabilities
        s = {"fork1": n * e // l1, "ln1": ln(l1, qkv.simd), "fork2": n * e // lp, "ln2": ln(lp, fc1.simd),
             "proj_residual": n * e // per[b + "proj_residual"], "fc2_residual": n * e // per[b + "fc2_residual"],
             "ctx_threshold": n * _cdiv(e, proj.simd), "fc1_act": n * (hd // fc1.pe),
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
