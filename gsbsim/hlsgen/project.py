"""``gsbsim hls``: generate the HLS C++ project of one integer model (hls4ml style).

A fixed skeleton (hls/include/gsb kernels, called in dataflow order) is filled per model:

    DIR/src/config.h        shapes, folding (PE/SIMD per layer), shifts, ratios
    DIR/src/params/*.h      packed weights (ap_uint<SIMD>, FINN layout), thresholds, LUTs, ...
    DIR/src/top.h, top.cpp  gsb_top(image, logits, pred): AXI streams, a DATAFLOW of one process per kernel
    DIR/tb/tb.cpp           C-simulation testbench: every trace tensor vs gsbsim's vectors
    DIR/Makefile            g++ -std=c++14 -O2 -Wall, ap_types via -isystem (AP_TYPES=... overrides)
    DIR/include/gsb/        a copy of the kernel library (hls/include/gsb) at generation time
    DIR/vitis.tcl           the Vitis HLS flow (csim, csynth, cosim, export_design), relative paths
    DIR/project.json        model path + sha256, folding, header, part, clock

The block's C++ per method (gsb/bit/sign, reactnet, didb) comes from gsbsim/hlsgen/blocks.py.
The generated C++ reproduces ``gsbsim.golden`` exactly; ``gsbsim csim`` (gsbsim/hlsgen/csim.py)
compiles and runs it against ``gsbsim vectors`` output. docs/hls.md describes the flow.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from gsbsim.engine.trace import trace_names
from gsbsim.hw.costs import layers
from gsbsim.hw.folding import Fold, FoldingError, cycle_report
from gsbsim.hw.stages import stage_dims
from gsbsim.hlsgen.blocks import block_cpp
from gsbsim.hlsgen.dataflow import DEFAULT_DEPTH, macros, process, stream_decl
from gsbsim.hlsgen.toolchain import HlsEnvError, find_ap_types, library_include_dir
from gsbsim.hlsgen.params import c_array, c_int, c_scalar, c_struct, finn_tiles, packed_rows_to_bits
from gsbsim.format.methods import method_of
from gsbsim.format.model_file import IntModel
from gsbsim.outputs import remove_stale, staging_dir

__all__ = ["HlsGenError", "Project", "generate", "load_project", "sha256_file", "layer_macro",
           "trace_specs", "trace_producer", "PROJECT_FILE", "DEFAULT_PART", "TOP_NAME"]

PROJECT_FILE = "project.json"
PROJECT_FORMAT = 1
GENERATOR = "gsbsim hls"
TOP_NAME = "gsb_top"
DEFAULT_PART = "xczu7ev-ffvc1156-2-e"   # ZCU104; any part works for csim, csynth needs a licensed one
GENERATED = ("src", "tb", "include", "Makefile", "vitis.tcl", PROJECT_FILE)
# the part is written into vitis.tcl: letters, digits, '-', '_', '.' only (no tcl syntax can get in)
PART_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
STAGING_PREFIX = ".gsbsim-hls-"
# project.json is moved here while a regeneration swaps the files: a kill -9 in that window
# leaves a folder that is recognisably ours (regenerate it) but never a mix that passes for a project
REGENERATING = ".gsbsim-regenerating.json"  # not STAGING_PREFIX: remove_stale must keep it


class HlsGenError(ValueError):
    """A project folder or generation request that cannot be used; the message names it."""


# ============================================================================ names and tables
def layer_macro(name: str) -> str:
    """Layer name -> C identifier prefix: patch -> PATCH, blocks.3.fc1 -> B3_FC1, head -> HEAD."""
    if name.startswith("blocks."):
        _, i, op = name.split(".")
        return f"B{i}_{op.upper()}"
    return name.upper()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def trace_specs(header: Mapping[str, Any]) -> list[tuple[str, str, tuple[int, ...]]]:
    """(trace name, numpy dtype, shape without the batch axis) of every traced tensor (spec §12)."""
    e, n, h, d = header["embed_dim"], header["num_tokens"], header["num_heads"], header["head_dim"]
    hd, g, c = header["mlp_hidden"], header["groups"], header["num_classes"]
    cin, img = header["in_chans"], header["img_size"]
    t = n - 2
    block = {"ln1.bits": ("uint8", (n, e)), "qkv.acc": ("int32", (n, 3 * e)), "q.bits": ("uint8", (h, n, d)),
             "k.bits": ("uint8", (h, n, d)), "v.q": ("int64", (h, n, d)), "v.planes": ("uint8", (g, h, n, d)),
             "scores": ("int32", (h, n, n)), "probs": ("int64", (h, n, n)), "a.planes": ("uint8", (g, h, n, n)),
             "ctx": ("int64", (n, e)), "proj.bits": ("uint8", (n, e)), "proj.acc": ("int32", (n, e)),
             "resid1": ("int32", (n, e)), "ln2.bits": ("uint8", (n, e)), "fc1.acc": ("int32", (n, hd)),
             "fc1.bits": ("uint8", (n, hd)), "fc2.acc": ("int32", (n, e)), "resid2": ("int32", (n, e)),
             # §13: the activation units' z (reactnet, didb), didb's Haar bits, score maps and Laplacian
             "qkv.z": ("int32", (n, 3 * e)), "proj.z": ("int32", (n, e)), "fc1.z": ("int32", (n, hd)),
             "fc2.z": ("int32", (n, e)), "q.low": ("uint8", (h, n, d)), "q.high": ("uint8", (h, n, d)),
             "k.low": ("uint8", (h, n, d)), "k.high": ("uint8", (h, n, d)), "scores.low": ("int32", (h, n, n)),
             "scores.high": ("int32", (h, n, n)), "hfsc": ("int64", (h, n, n)), "lap": ("int32", (n, e))}
    other = {"input": ("int8", (cin, img, img)), "patch.acc": ("int32", (t, e)), "embed": ("int32", (n, e)),
             "head.q": ("int8", (2, e)), "head.acc": ("int32", (2, c)), "logits": ("int64", (c,)),
             "pred": ("int64", ())}
    out = []
    for name in trace_names(int(header["depth"]), header["method"]):
        if name.startswith("blocks."):
            dtype, shape = block[name.split(".", 2)[2]]
        else:
            dtype, shape = other[name]
        out.append((name, dtype, tuple(int(s) for s in shape)))
    return out


# trace (block part) -> the layer or elementwise stage of the generated top that produces it
_BLOCK_PRODUCER = {"ln1.bits": "ln1", "qkv.acc": "qkv", "q.bits": "qkv_split", "k.bits": "qkv_split",
                   "v.q": "qkv_split", "v.planes": "value_planes", "scores": "qk", "probs": "softmax",
                   "a.planes": "attention_planes", "ctx": "av", "proj.bits": "ctx_threshold",
                   "proj.acc": "proj", "resid1": "proj_residual", "ln2.bits": "ln2", "fc1.acc": "fc1",
                   "fc1.bits": "fc1_act", "fc2.acc": "fc2", "resid2": "fc2_residual",
                   "qkv.z": "qkv.act", "proj.z": "proj.act", "fc1.z": "fc1.act", "fc2.z": "fc2.act",
                   "q.low": "haar", "q.high": "haar", "k.low": "haar", "k.high": "haar", "scores.low": "qk",
                   "scores.high": "qk", "hfsc": "hfsc", "lap": "diba"}
_OTHER_PRODUCER = {"input": "input", "patch.acc": "patch", "embed": "embed", "head.q": "final_norm",
                   "head.acc": "head", "logits": "logits", "pred": "argmax"}


def trace_producer(name: str, method: str = "gsb") -> str:
    """The layer (cycle-model name) or elementwise stage whose output a trace tensor is."""
    if name.startswith("blocks."):
        _, i, rest = name.split(".", 2)
        if method_of(method).attention == "hfsc_diba" and rest == "ctx":
            return f"blocks.{i}.diba"           # blocks.{i}.av, then the DIBA terms
        return f"blocks.{i}.{_BLOCK_PRODUCER[rest]}"
    return _OTHER_PRODUCER[name]


# ============================================================================ the project record
@dataclass
class Project:
    """A generated project folder (what project.json records)."""
    root: Path
    model_path: str
    model_sha256: str
    folding: dict[str, Fold]
    header: dict
    part: str
    clock_mhz: float

    @property
    def vectors_dir(self) -> Path:
        return self.root / "vectors"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    def sources(self) -> list[Path]:
        return [self.root / "src" / "top.cpp", self.root / "tb" / "tb.cpp"]

    def to_json(self) -> dict:
        return {"generator": GENERATOR, "format": PROJECT_FORMAT, "top": TOP_NAME,
                "model": self.model_path, "model_sha256": self.model_sha256,
                "folding": {k: {"pe": f.pe, "simd": f.simd} for k, f in self.folding.items()},
                "part": self.part, "clock_mhz": self.clock_mhz, "header": self.header}


def load_project(folder: str | os.PathLike) -> Project:
    """Read DIR/project.json; HlsGenError if DIR is not a project generated by ``gsbsim hls``."""
    root = Path(folder)
    if not root.is_dir():
        raise HlsGenError(f"{root} is not a folder (expected a project written by `gsbsim hls`)")
    pj = root / PROJECT_FILE
    if not pj.is_file() and (root / REGENERATING).is_file():
        raise HlsGenError(f"{root}: its regeneration was interrupted; run `gsbsim hls --model M.npz --out {root}` "
                          "again")
    if not pj.is_file():
        raise HlsGenError(f"{root} is not a gsbsim HLS project (no {PROJECT_FILE}; create one with "
                          f"`gsbsim hls --model M.npz --out {root}`)")
    try:
        d = json.loads(pj.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HlsGenError(f"{pj}: not a readable project file: {e}") from None
    if not isinstance(d, dict) or d.get("generator") != GENERATOR or d.get("format") != PROJECT_FORMAT:
        raise HlsGenError(f"{pj}: not a project file of `{GENERATOR}` format {PROJECT_FORMAT}")
    try:
        folding = {k: Fold(int(v["pe"]), int(v["simd"])) for k, v in d["folding"].items()}
        proj = Project(root, str(d["model"]), str(d["model_sha256"]), folding, dict(d["header"]),
                       str(d["part"]), float(d["clock_mhz"]))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise HlsGenError(f"{pj}: incomplete project file ({type(e).__name__}: {e})") from None
    for path in proj.sources():
        if not path.is_file():
            raise HlsGenError(f"{root}: generated file {path.relative_to(root)} is missing; regenerate "
                              f"with `gsbsim hls`")
    return proj


# ============================================================================ config.h
def _config_h(model: IntModel, folding: Mapping[str, Fold], sha: str) -> str:
    hd = model.header
    e, n, h, d = model.embed_dim, model.num_tokens, model.num_heads, model.head_dim
    sh = model.shifts
    ln_s2_max = (2 ** 62 - 1 - model.ln_eps) // e      # largest S2 with E*S2 + ln_eps < 2^62
    cyc = cycle_report(hd, dict(folding)).per_layer
    ratios = [0] + list(model.ratios)
    lines = [
        f"// config.h: generated by gsbsim hls for {os.path.basename(model.path)} (sha256 {sha[:16]}...).",
        "// Shapes, constants and folding of one integer model (docs/integer_model.md notation).",
        "#ifndef GSB_MODEL_CONFIG_H", "#define GSB_MODEL_CONFIG_H", "", "#include <cstdint>", "",
        "namespace cfg {", "",
        "// ---- architecture",
        f"const unsigned IMG = {model.img_size};        // img_size",
        f"const unsigned PATCH = {model.patch_size};      // patch_size P",
        f"const unsigned CIN = {model.in_chans};        // in_chans",
        f"const unsigned KP = CIN * PATCH * PATCH;  // patch-embedding inputs per patch",
        "const unsigned IN_ELEMS = CIN * IMG * IMG;  // int8 pixels of one image",
        f"const unsigned E = {e};         // embed_dim",
        f"const unsigned H = {h};          // num_heads",
        f"const unsigned D = {d};         // head_dim = E / H",
        f"const unsigned N = {n};         // num_tokens (cls, dist, patches)",
        "const unsigned T = N - 2;        // patches",
        f"const unsigned HD = {model.mlp_hidden};        // mlp_hidden",
        f"const unsigned C = {model.num_classes};         // num_classes",
        f"const unsigned G = {model.groups};          // GSB groups",
        f"const unsigned DEPTH = {model.depth};      // blocks",
        f"const bool MASK_IMAGE = {'true' if model.mask_stat == 'image' else 'false'};  "
        f"// mask statistic: {model.mask_stat!r} (false = per row, true = per image)",
        "// mask ratio numerators over 256 of plane p (p >= 1: r_{p+1}); [0] unused (base/sign plane)",
        f"const int32_t PLANE_RATIO[G] = {{{', '.join(str(r) for r in ratios)}}};",
        *([f"const unsigned GRID = {model.img_size // model.patch_size};      // patch grid side (didb: "
            "Haar split and DIBA Laplacian on the GRID x GRID patches)"] if model.features.attention == "hfsc_diba" else []),
        "",
        "// ---- fixed point (header 'shifts', 'frac_bits', 'ln_eps')",
        f"const unsigned FRAC_BITS = {model.frac_bits};",
    ]
    for k in ("patch", "resid", "ln", "head_ln", "value", "prob", "recip", "ctx", "logit"):
        lines.append(f"const unsigned SHIFT_{k.upper()} = {sh[k]};")
    lines += [
        f"const int64_t LN_EPS = {c_int(model.ln_eps)};",
        f"const int64_t LN_S2_MAX = {c_int(ln_s2_max)};  // largest S2 with E*S2 + ln_eps < 2^62 "
        "(LayerNorm overflow check)",
        "",
        "// ---- folding: PE output lanes, SIMD input lanes per matrix layer; cycles per image at II=1",
    ]
    for l in layers(hd):
        f = folding[l.name]
        lines.append(f"const unsigned {layer_macro(l.name)}_PE = {f.pe}, {layer_macro(l.name)}_SIMD = {f.simd};"
                     f"  // {l.name}: MH {l.mh}, MW {l.mw}, {l.vectors} vectors x {l.repeats}: "
                     f"{cyc[l.name]} cycles")
    lines += ["", "// ---- folding: elements per cycle of the foldable stages (gsbsim/hw/stages.py); cycles per image"]
    stages = cycle_report(hd, dict(folding)).stages
    for name, (dim, what) in stage_dims(hd).items():
        pe = folding[name].pe if name in folding else 1
        lines.append(f"const unsigned {layer_macro(name)}_PE = {pe};  // {name}: {what} {dim}: {stages[name]} cycles")
    lines += ["", "}  // namespace cfg", "", "#endif  // GSB_MODEL_CONFIG_H", ""]
    return "\n".join(lines)


# ============================================================================ params/*.h
def _tiles_decl(name: str, matrix: np.ndarray, fold: Fold, macro: str, mw: str, mh: str, lane_bits: int,
                what: str) -> str:
    """A weight matrix as FINN tiles of lane_bits*SIMD-bit words held as uint64 (gsb/weights.hpp)."""
    words = finn_tiles(matrix, fold.simd, fold.pe, lane_bits)
    width = lane_bits * fold.simd
    dims = [f"{macro}_PE", f"gsb::mvau_shape<{mw}, {mh}, {macro}_SIMD, {macro}_PE>::TILES"]
    layout = (f"FINN layout [PE][TILES] of {width}-bit words: row r in lane r % PE, tile (r / PE) * SF + "
              f"c / SIMD, {'bit' if lane_bits == 1 else 'int8 lane'} c % SIMD; pads 0")
    if width <= 64:
        return c_array("uint64_t", name, words, f"{what} [{matrix.shape[0]} x {matrix.shape[1]}], {layout}",
                       dims, fmt=lambda v: f"0x{v:X}ULL")
    chunks = (width + 63) // 64
    split = [[[(w >> (64 * c)) & (2 ** 64 - 1) for c in range(chunks)] for w in row] for row in words]
    return c_array("uint64_t", name, split, f"{what} [{matrix.shape[0]} x {matrix.shape[1]}], {layout}, "
                   f"each word as {chunks} uint64 chunks (chunk c = bits 64c..64c+63)",
                   dims + [str(chunks)], fmt=lambda v: f"0x{v:X}ULL")


def _header_file(title: str, body: list[str]) -> str:
    guard = "GSB_PARAMS_" + title.upper().replace(".", "_").replace("/", "_")
    return "\n".join([f"// params/{title}: generated by gsbsim hls; one array per model parameter "
                      "(docs/integer_model.md §1).", f"#ifndef {guard}", f"#define {guard}", "",
                      "#include <ap_int.h>", "", "#include <cstdint>", "", '#include "config.h"',
                      '#include "gsb/kernels.hpp"', "", "namespace params {", "using namespace cfg;", "",
                      *body, "}  // namespace params", "", f"#endif  // {guard}", ""])


def _embed_params(model: IntModel, folding: Mapping[str, Fold]) -> str:
    a = model.arrays
    body = [
        _tiles_decl("patch_weight", a["patch.weight"], folding["patch"], "PATCH", "KP", "E", 8,
                    "patch.weight: int8 conv weights E x Cin*P*P, (c, ky, kx) order"),
        c_array("int64_t", "patch_mult", a["patch.mult"], "patch.mult [E]: requant multiplier per channel", ["E"]),
        c_array("int64_t", "patch_bias", a["patch.bias"], "patch.bias [E]: requant bias per channel", ["E"]),
        c_array("int32_t", "embed_tokens", a["tokens"], "tokens [2][E]: cls and distillation tokens, 2^-F",
                ["2", "E"]),
        c_array("int32_t", "embed_pos", a["pos"], "pos [N][E]: position embedding, 2^-F", ["N", "E"]),
    ]
    return _header_file("embed.h", body)


def _block_params(model: IntModel, i: int, folding: Mapping[str, Fold]) -> str:
    blk = model.block(i)
    e, hd = model.embed_dim, model.mlp_hidden
    p, n = f"b{i}_", f"blocks.{i}."

    def f(op: str) -> Fold:
        return folding[n + op]

    def m(op: str) -> str:
        return layer_macro(n + op)

    def rows(values: np.ndarray) -> str:
        return ",\n        ".join(", ".join(c_int(v, "int32_t") for v in values[k:k + 16])
                                  for k in range(0, len(values), 16))
    lo, hi = rows(blk["fc1.thr_lo"]), rows(blk["fc1.thr_hi"])
    act, didb = model.features.act_unit, model.features.attention == "hfsc_diba"

    def act_unit(lin: str, c: str, mult: str, bias: str) -> str:
        return c_struct(f"gsb::ActUnit<{c}, N>", f"{p}{lin}_act_unit",
                        f"{n}{lin} activation unit (§13.1, gsb/act.hpp): {n}{mult}, {n}{bias} [{c}], "
                        f"{n}{lin}.tok_in, .tok_out [N], .slope, .out [{c}]",
                        [("mult", blk[mult]), ("bias", blk[bias]), ("tok_in", blk[f"{lin}.tok_in"]),
                         ("tok_out", blk[f"{lin}.tok_out"]), ("slope", blk[f"{lin}.slope"]),
                         ("out", blk[f"{lin}.out"])])

    def requant(lin: str) -> list[str]:
        if act:
            return [act_unit(lin, "E", f"{lin}.mult", f"{lin}.bias")]
        return [c_scalar("int64_t", f"{p}{lin}_mult", int(blk[f"{lin}.mult"]), f"{n}{lin}.mult: requant multiplier"),
                c_array("int64_t", f"{p}{lin}_bias", blk[f"{lin}.bias"], f"{n}{lin}.bias [E]: requant bias", ["E"])]

    body = [
        c_array("int8_t", p + "ln1_sign", blk["ln1.sign"], n + "ln1.sign [E]: sign of the LayerNorm gain", ["E"]),
        c_array("int64_t", p + "ln1_thr", blk["ln1.thr"], n + "ln1.thr [E]: LayerNorm -> bit thresholds (§3)", ["E"]),
        _tiles_decl(p + "qkv_weight", packed_rows_to_bits(blk["qkv.weight"], e), f("qkv"), m("qkv"), "E",
                    "3 * E", 1, n + "qkv.weight: +-1 weights 3E x E (bit 1 = +1)"),
    ]
    if act:
        body.append(act_unit("qkv", "3 * E", "qkv.mult", "qkv.bias"))
    if didb:
        body += [c_array("int64_t", f"{p}{qk}_thr_{band}", blk[f"{qk}.thr_{band}"],
                         f"{n}{qk}.thr_{band} [E]: {qk.upper()} {band}-band bit thresholds on the Haar S4 (§13.2)",
                         ["E"]) for qk in ("q", "k") for band in ("low", "high")]
        body.append(c_array("int64_t", p + "v_offset", blk["v.offset"], n + "v.offset [E]: Vq = z + v.offset",
                            ["E"]))
        u = len(blk["exp_hi"])
        body += [c_array("int64_t", p + "score_w", blk["score.w"], n + "score.w [2][H]: low/high score weights "
                         "per head, 2^-16 (§13.2)", ["2", "H"]),
                 c_array("int64_t", p + "exp_lo", blk["exp_lo"], n + "exp_lo [256]: exp(-r/2^16), 2^-prob", ["256"]),
                 c_array("int64_t", p + "exp_mid", blk["exp_mid"], n + "exp_mid [256]: exp(-s/2^8), 2^-prob",
                         ["256"]),
                 f"// {n}exp_hi: its length U (the softmax_hfsc template argument)\n"
                 f"static const unsigned B{i}_EXP_HI_LEN = {u};\n",
                 c_array("int64_t", p + "exp_hi", blk["exp_hi"], n + "exp_hi [U]: exp(-u), 2^-prob; last entry 0",
                         [f"B{i}_EXP_HI_LEN"])]
    else:
        body += [
            c_array("int32_t", p + "q_thr", blk["q.thr"], n + "q.thr [E]: Q bit thresholds on the qkv "
                    + ("z" if act else "accumulator"), ["E"]),
            c_array("int32_t", p + "k_thr", blk["k.thr"], n + "k.thr [E]: K bit thresholds", ["E"]),
            c_array("int64_t", p + "v_offset", blk["v.offset"],
                    n + ("v.offset [E]: Vq = z + v.offset" if act else "v.offset [E]: Vq = acc * 2^value + v.offset"),
                    ["E"]),
            c_array("int64_t", p + "exp_lut", blk["exp_lut"], n + "exp_lut [d+1]: exact exp table of the softmax, "
                    "2^-prob", ["D + 1"])]
    body += [
        c_array("int32_t", p + "att_bias", blk["att_bias"], n + "att_bias [H][N][N]: attention bias, 2^-prob",
                ["H", "N", "N"]),
        c_scalar("int64_t", p + "a_thr1", int(blk["a.thr1"]), n + "a.thr1: base attention plane threshold"),
        c_array("int64_t", p + "ctx_scale", blk["ctx.scale"], n + "ctx.scale [G][G]: scale products "
                "S[a][v], 2^-ctx", ["G", "G"]),
    ]
    if didb:
        body += [c_scalar("int64_t", p + "ctx_vscale", int(blk["ctx.vscale"]), n + "ctx.vscale: alpha_V, 2^-ctx "
                          "(DIBA, §13.3)"),
                 c_array("int64_t", p + "ctx_local", blk["ctx.local"], n + "ctx.local [H]: lambda_h * alpha_V, "
                         "2^-ctx (DIBA Laplacian weight)", ["H"])]
    body += [
        c_array("int64_t", p + "proj_in_thr", blk["proj.in_thr"], n + "proj.in_thr [E]: context -> proj "
                "input bit thresholds", ["E"]),
        _tiles_decl(p + "proj_weight", packed_rows_to_bits(blk["proj.weight"], e), f("proj"), m("proj"), "E", "E",
                    1, n + "proj.weight: +-1 weights E x E"),
        *requant("proj"),
        c_array("int8_t", p + "ln2_sign", blk["ln2.sign"], n + "ln2.sign [E]: sign of the LayerNorm gain", ["E"]),
        c_array("int64_t", p + "ln2_thr", blk["ln2.thr"], n + "ln2.thr [E]: LayerNorm -> bit thresholds", ["E"]),
        _tiles_decl(p + "fc1_weight", packed_rows_to_bits(blk["fc1.weight"], e), f("fc1"), m("fc1"), "E", "HD",
                    1, n + "fc1.weight: +-1 weights Hd x E"),
    ]
    if act:
        body.append(act_unit("fc1", "HD", "fc1.mult", "fc1.bias"))
    on, sec = ("z", "§13.1") if act else ("acc", "§8")
    body += [
        f"// {n}fc1.thr_lo, {n}fc1.thr_hi [Hd]: two-sided thresholds, bit = {on} >= hi || {on} <= lo ({sec})\n"
        f"static const gsb::TwoSidedThresholdPolicy<HD, {m('fc1')}_PE> {p}fc1_act = {{\n"
        f"    {{{lo}}},\n    {{{hi}}}}};\n",
        _tiles_decl(p + "fc2_weight", packed_rows_to_bits(blk["fc2.weight"], hd), f("fc2"), m("fc2"), "HD", "E",
                    1, n + "fc2.weight: +-1 weights E x Hd ({0,1} inputs)"),
        *requant("fc2"),
    ]
    return _header_file(f"block_{i}.h", body)


def _head_params(model: IntModel, folding: Mapping[str, Fold]) -> str:
    a = model.arrays
    body = [
        c_array("int64_t", "final_gain", np.stack([a["norm.gain"], a["head_dist_norm.gain"]]),
                "norm.gain, head_dist_norm.gain [2][E]: final LayerNorm gains of tokens 0 and 1 (§9)", ["2", "E"]),
        c_array("int64_t", "final_offset", np.stack([a["norm.offset"], a["head_dist_norm.offset"]]),
                "norm.offset, head_dist_norm.offset [2][E]: final LayerNorm offsets", ["2", "E"]),
        _tiles_decl("head_weight", a["head.weight"], folding["head"], "HEAD", "E", "C", 8,
                    "head.weight: int8 weights C x E (token 0)"),
        _tiles_decl("head_dist_weight", a["head_dist.weight"], folding["head"], "HEAD", "E", "C", 8,
                    "head_dist.weight: int8 weights C x E (token 1)"),
        c_scalar("int64_t", "head_mult", int(a["head.mult"]), "head.mult: logit multiplier of the head"),
        c_scalar("int64_t", "head_dist_mult", int(a["head_dist.mult"]), "head_dist.mult: logit multiplier"),
        c_array("int64_t", "logit_bias", a["logit.bias"], "logit.bias [C]: logit bias, 2^-logit", ["C"]),
    ]
    return _header_file("head.h", body)


# ============================================================================ top.h / top.cpp
_TOP_H = """\
// top.h: generated by gsbsim hls. The model's top function, one image per call; the same
// signature for C-simulation, synthesis and co-simulation (AXI-stream ports).
#ifndef GSB_MODEL_TOP_H
#define GSB_MODEL_TOP_H

#include <cstdint>

#include "config.h"
#include "gsb/stream.hpp"

/**
 * image: IN_ELEMS words, the int8 pixels (uint8 - 128) in C order [Cin][I][I];
 * logits: C words, int64, 2^-logit; pred: one word, the argmax of the logits (ties -> lowest index).
 * In C-simulation the traced tensors and iteration counts go to gsb::recorder() (gsb/probe.hpp).
 */
void gsb_top(gsb::stream<int8_t>& image, gsb::stream<int64_t>& logits, gsb::stream<uint32_t>& pred);

#endif  // GSB_MODEL_TOP_H
"""

_TOP_PRELUDE = """\
// top.cpp: generated by gsbsim hls for {model} (sha256 {sha}...).
// The integer model of docs/integer_model.md as a streaming dataflow of hls/include/gsb kernels:
// every region (gsb_top, embed_stage, block_i, head_stage) is a DATAFLOW of one process per
// kernel over FIFOs of the depths below (docs/hls.md §3).  In C-simulation only, each process
// runs as a thread over bounded FIFOs that detect a deadlock, each matrix layer's pipelined
// iterations are recorded under its cycle-model name, other processes under their own names,
// and every traced tensor under its gsbsim trace name (gsb/probe.hpp).
#include "top.h"

#include "gsb/kernels.hpp"
{includes}

{macros}
using namespace cfg;
using namespace params;

// ============================================================================ patch embedding (§2)
static void embed_stage(gsb::stream<int8_t>& image, gsb::stream<int32_t>& x) {{
#pragma HLS DATAFLOW
    GSB_PIPO int8_t pixels[IN_ELEMS];  // PIPO: im2col reads the image in patch order
    const gsb::RawPolicy<E, PATCH_PE> raw = {{}};
{embed_streams}    GSB_REGION(df, "embed")
{embed_procs}    GSB_JOIN(df)
#ifdef GSB_CSIM
    GSB_TRACE("patch.acc", gsb::trace::lanes(acc))
    GSB_TRACE("embed", gsb::trace::scalars(x))
#endif
}}
"""

_HEAD = """
// ============================================================================ final norm, heads, logits (§9)
// one MVAU, two weight matrices: head on token 0, head_dist on token 1 (one process)
static void head_mvau(gsb::stream<ap_uint<8 * HEAD_SIMD>>& q, gsb::stream<gsb::vec<int32_t, HEAD_PE>>& acc,
                      gsb::iter_count iters) {{
    const gsb::RawPolicy<C, HEAD_PE> raw = {{}};
    gsb::mvau<E, C, HEAD_SIMD, HEAD_PE, gsb::Int8Mode>(q, acc, head_weight, raw, 1, iters);
    gsb::mvau<E, C, HEAD_SIMD, HEAD_PE, gsb::Int8Mode>(q, acc, head_dist_weight, raw, 1, iters);
}}

static void head_stage(gsb::stream<int32_t>& x, gsb::stream<int64_t>& logits, gsb::stream<uint32_t>& pred) {{
#pragma HLS DATAFLOW
{head_streams}    GSB_REGION(df, "head")
{head_procs}    GSB_JOIN(df)
#ifdef GSB_CSIM
    GSB_TRACE("head.q", gsb::trace::int8_lanes<HEAD_SIMD>(q, E))
    GSB_TRACE("head.acc", gsb::trace::lanes(acc))
#endif
}}

// ============================================================================ the top function
void gsb_top(gsb::stream<int8_t>& image, gsb::stream<int64_t>& logits, gsb::stream<uint32_t>& pred) {{
#pragma HLS INTERFACE axis port=image
#pragma HLS INTERFACE axis port=logits
#pragma HLS INTERFACE axis port=pred
#pragma HLS DATAFLOW
{streams}    GSB_REGION(df, "top")
{procs}    GSB_JOIN(df)
}}
"""


def _top_cpp(model: IntModel, sha: str) -> str:
    depth, d = model.depth, DEFAULT_DEPTH
    includes = "\n".join(['#include "params/embed.h"'] + [f'#include "params/block_{i}.h"' for i in range(depth)]
                         + ['#include "params/head.h"'])
    names = ["embed"] + [f"blocks.{i}.resid2" for i in range(depth)]
    streams = "".join(stream_decl("int32_t", f"x_{k}", nm, d, "residual stream, one int32 per word")
                      for k, nm in enumerate(names))
    procs = (process("embed_stage", "embed_stage(image, x_0)") +
             "".join(process(f"block_{i}", f"block_{i}(x_{i}, x_{i + 1})") for i in range(depth)) +
             process("head_stage", f"head_stage(x_{depth}, logits, pred)"))
    embed_streams = (stream_decl("ap_uint<8 * PATCH_SIMD>", "cols", "patch.in", d) +
                     stream_decl("gsb::vec<int32_t, PATCH_PE>", "acc", "patch.acc", d))
    embed_procs = (process("load_image", "gsb::stream_to_array<IN_ELEMS>(image, pixels, GSB_IT)") +
                   process("im2col", "gsb::im2col<CIN, IMG, PATCH, PATCH_SIMD>(pixels, cols, GSB_IT)",
                           after=("load_image",)) +
                   process("patch", "gsb::mvau<KP, E, PATCH_SIMD, PATCH_PE, gsb::Int8Mode>(cols, acc, patch_weight, raw, "
                           "T, GSB_IT)", layer=True) +
                   process("embed", "gsb::patch_embed<N, E, PATCH_PE>(acc, embed_tokens, embed_pos, patch_mult, "
                           "patch_bias, SHIFT_PATCH, x, GSB_IT)"))
    head_streams = (stream_decl("ap_uint<8 * HEAD_SIMD>", "q", "head.q", d) +
                    stream_decl("gsb::vec<int32_t, HEAD_PE>", "acc", "head.acc", d) +
                    stream_decl("gsb::vec<int64_t, HEAD_PE>", "logit_words", "logits.words", d) +
                    stream_decl("gsb::vec<int64_t, HEAD_PE>", "to_argmax", "logits.argmax", d))
    head_procs = (process("final_norm", "gsb::final_layernorm<E, HEAD_SIMD>(x, q, final_gain, final_offset, "
                          "SHIFT_HEAD_LN, LN_EPS, LN_S2_MAX, N, GSB_IT)") +
                  process("head", "head_mvau(q, acc, GSB_IT)", layer=True) +
                  process("logits", "gsb::logits_combine<C, HEAD_PE>(acc, head_mult, head_dist_mult, logit_bias, "
                          "logit_words, GSB_IT)") +
                  process("logits_out", "gsb::fork_lanes<C, HEAD_PE>(logit_words, logits, to_argmax, GSB_IT)") +
                  process("argmax", "gsb::argmax<C, HEAD_PE, int64_t>(to_argmax, pred, 1, GSB_IT)"))
    out = _TOP_PRELUDE.format(model=os.path.basename(model.path), sha=sha[:16], includes=includes, macros=macros,
                              embed_streams=embed_streams, embed_procs=embed_procs)
    out += "".join(block_cpp(i, model.header["method"], model.num_tokens, model.embed_dim) for i in range(depth))
    out += _HEAD.format(streams=streams, procs=procs, head_streams=head_streams, head_procs=head_procs)
    return out


# ============================================================================ tb.cpp
_TB = """\
// tb.cpp: generated by gsbsim hls. C-simulation testbench of gsb_top.
//
// usage: tb VECTORS_DIR    (the folder `gsbsim vectors` writes: <trace name>.npy per tensor)
// Runs gsb_top on every image of input.npy, then prints
//   ITERS <layer> <n>     pipelined iterations of each matrix layer, per image (cycle-model names)
//   STAGE <stage> <n>     iterations of each elementwise stage, per image (not in the cycle model)
// and compares every traced tensor, in execution order, element by element with the vectors:
//   MISMATCH <name>[image, index...]: got X expected Y    then FAIL <name>, exit 1 (first bad tensor)
//   PASS <tensors> tensors, <images> images                  exit 0
//   image <b>: DEADLOCK: ... (one line per stalled process)  exit 1: the dataflow's FIFOs are too shallow
// Any error (missing or malformed vector file, a kernel check such as an overflow) -> stderr, exit 2.
#include <cstdint>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "gsb/npy.hpp"
#include "gsb/probe.hpp"
#include "top.h"
#ifdef GSB_CSIM
#include "gsb/dataflow.hpp"
#endif

namespace {{

struct Tensor {{
    const char* name;
    const char* dtype;                // numpy dtype of the vector file
    std::vector<std::size_t> shape;   // without the batch axis
}};

const Tensor TENSORS[] = {{
{tensors}
}};

const char* const LAYERS[] = {{
{layers}
}};

template <typename T>
std::vector<int64_t> load_as(const std::string& path, const std::vector<std::size_t>& shape) {{
    const gsb::npy::array<T> a = gsb::npy::load<T>(path, shape);
    return std::vector<int64_t>(a.data.begin(), a.data.end());
}}

std::vector<int64_t> load_tensor(const std::string& dir, const Tensor& t, std::size_t batch) {{
    std::vector<std::size_t> shape(1, batch);
    shape.insert(shape.end(), t.shape.begin(), t.shape.end());
    const std::string path = dir + "/" + t.name + ".npy", dtype = t.dtype;
    if (dtype == "int8") return load_as<int8_t>(path, shape);
    if (dtype == "uint8") return load_as<uint8_t>(path, shape);
    if (dtype == "int32") return load_as<int32_t>(path, shape);
    if (dtype == "int64") return load_as<int64_t>(path, shape);
    throw std::runtime_error(path + ": unsupported dtype " + dtype);
}}

std::string index_str(std::size_t image, std::size_t flat, const std::vector<std::size_t>& shape) {{
    std::vector<std::size_t> idx(shape.size());
    for (std::size_t k = shape.size(); k-- > 0;) {{
        idx[k] = flat % shape[k];
        flat /= shape[k];
    }}
    std::string s = std::to_string(image);
    for (std::size_t v : idx) s += ", " + std::to_string(v);
    return s;
}}

int run(const std::string& dir) {{
    const gsb::npy::array<int8_t> input = gsb::npy::load<int8_t>(dir + "/input.npy");
    if (input.shape.size() != 4 || input.shape[1] != cfg::CIN || input.shape[2] != cfg::IMG || input.shape[3] != cfg::IMG)
        throw std::runtime_error(dir + "/input.npy: shape " + gsb::npy::shape_str(input.shape) +
                                 " is not (B, " + std::to_string(cfg::CIN) + ", " + std::to_string(cfg::IMG) + ", " +
                                 std::to_string(cfg::IMG) + ")");
    const std::size_t batch = input.shape[0];
    std::vector<std::vector<int64_t>> expected;
    for (const Tensor& t : TENSORS) expected.push_back(load_tensor(dir, t, batch));  // every file before running

    std::vector<gsb::Probe> probes(batch);
    for (std::size_t b = 0; b < batch; ++b) {{
        gsb::stream<int8_t> image("image");          // testbench side: unbounded, like hls::stream
        gsb::stream<int64_t> logits("logits");
        gsb::stream<uint32_t> pred("pred");
        for (std::size_t i = 0; i < cfg::IN_ELEMS; ++i) image.write(input.data[b * cfg::IN_ELEMS + i]);
        const std::string at = "image " + std::to_string(b) + ": ";
#ifdef GSB_CSIM
        gsb::take_recording();                         // start this image's traces afresh
        try {{
            gsb_top(image, logits, pred);
        }} catch (const gsb::deadlock_error& e) {{
            std::printf("%s%s\\n", at.c_str(), e.what());
            return 1;
        }} catch (const std::exception& e) {{
            throw std::runtime_error(at + e.what());
        }}
        probes[b] = gsb::take_recording();
#else
        gsb_top(image, logits, pred);                  // Vitis csim/cosim: the ports only
#endif
        std::vector<int64_t> pixels(&input.data[b * cfg::IN_ELEMS], &input.data[b * cfg::IN_ELEMS] + cfg::IN_ELEMS);
        std::vector<int64_t> out(cfg::C);
        for (unsigned c = 0; c < cfg::C; ++c) {{
            if (logits.empty()) throw std::runtime_error(at + "the top function wrote only " + std::to_string(c) + " logits");
            out[c] = logits.read();
        }}
        if (pred.empty()) throw std::runtime_error(at + "the top function wrote no prediction");
        const int64_t best = int64_t(pred.read());
        if (!logits.empty() || !pred.empty() || !image.empty())
            throw std::runtime_error(at + "the top function wrote more than C logits or one prediction, or left pixels unread");
        probes[b].put("input", pixels);                // the top function's ports themselves
        probes[b].put("logits", out);
        probes[b].put("pred", std::vector<int64_t>(1, best));
    }}

#ifdef GSB_CSIM
    for (const char* layer : LAYERS) {{
        const unsigned long n = probes[0].layer_iters[layer];
        for (std::size_t b = 1; b < batch; ++b)
            if (probes[b].layer_iters[layer] != n)
                throw std::runtime_error(std::string("layer ") + layer + ": iteration count differs between images");
        std::printf("ITERS %s %lu\\n", layer, n);
    }}
    for (const auto& stage : probes[0].stage_iters) std::printf("STAGE %s %lu\\n", stage.first.c_str(), stage.second);
#endif

    std::size_t k = 0;
    for (const Tensor& t : TENSORS) {{
        const std::vector<int64_t>& want = expected[k++];
        const std::size_t per = want.size() / batch;
        for (std::size_t b = 0; b < batch; ++b) {{
            if (!probes[b].tensors.count(t.name)) {{
#ifndef GSB_CSIM
                if (b == 0) std::printf("SKIP %s (Vitis csim: ports only)\\n", t.name);
                continue;
#endif
                throw std::runtime_error(std::string("the top function recorded no tensor ") + t.name);
            }}
            const std::vector<int64_t>& got = probes[b].tensors[t.name];
            if (got.size() != per)
                throw std::runtime_error(std::string(t.name) + ": the top function recorded " + std::to_string(got.size()) +
                                         " values, the vectors hold " + std::to_string(per) + " per image");
            for (std::size_t i = 0; i < per; ++i)
                if (got[i] != want[b * per + i]) {{
                    std::printf("MISMATCH %s[%s]: got %lld expected %lld\\n", t.name, index_str(b, i, t.shape).c_str(),
                                (long long)got[i], (long long)want[b * per + i]);
                    std::printf("FAIL %s\\n", t.name);
                    return 1;
                }}
        }}
    }}
    std::printf("PASS %zu tensors, %zu images\\n", sizeof(TENSORS) / sizeof(TENSORS[0]), batch);
    return 0;
}}

}}  // namespace

int main(int argc, char** argv) {{
    if (argc != 2) {{
        std::fprintf(stderr, "usage: %s VECTORS_DIR\\n", argv[0]);
        return 2;
    }}
    try {{
        return run(argv[1]);
    }} catch (const std::exception& e) {{
        std::fflush(stdout);
        std::fprintf(stderr, "ERROR: %s\\n", e.what());
        return 2;
    }}
}}
"""


def _tb_cpp(header: Mapping[str, Any]) -> str:
    tensors = ",\n".join(f'    {{"{name}", "{dtype}", {{{", ".join(map(str, shape))}}}}}'
                         for name, dtype, shape in trace_specs(header))
    lyrs = ",\n".join(f'    "{l.name}"' for l in layers(header))
    return _TB.format(tensors=tensors, layers=lyrs)


# ============================================================================ Makefile, vitis.tcl
def _makefile(ap_types: str) -> str:
    return f"""\
# Generated by gsbsim hls. C-simulation of the generated model with plain g++ (no Vitis):
#   make            build build/tb
#   make csim       build and run it on vectors/ (write them with `gsbsim vectors --out .`
#                   or let `gsbsim csim .` do everything)
# AP_TYPES: the Apache-2.0 ap_int.h headers, found by gsbsim at generation time; override with
#   make AP_TYPES=/path/to/ap_types
AP_TYPES ?= {ap_types}
ifeq ($(AP_TYPES),)
$(error AP_TYPES is not set: point it at the ap_types headers, e.g. make AP_TYPES=/path/to/ap_types)
endif
HLS_INCLUDE ?= include
CXX ?= g++
CXXFLAGS ?= -std=c++14 -O2 -Wall -Wextra -Wno-unknown-pragmas -Wno-uninitialized -Wno-maybe-uninitialized
SRC := src/top.cpp tb/tb.cpp
DEPS := $(SRC) src/top.h src/config.h $(wildcard src/params/*.h) $(wildcard $(HLS_INCLUDE)/gsb/*.hpp)

.PHONY: all csim clean
all: build/tb

build/tb: $(DEPS)
\tmkdir -p build
\t$(CXX) $(CXXFLAGS) -pthread -isystem $(AP_TYPES) -I$(HLS_INCLUDE) -Isrc $(SRC) -o $@

csim: build/tb
\t./build/tb vectors

clean:
\trm -rf build
"""


def _vitis_tcl(part: str, clock_mhz: float) -> str:
    period = 1000.0 / clock_mhz
    return f"""\
# Generated by gsbsim hls: the Vitis HLS flow of this project (never run by gsbsim's tests; no Vitis here).
#   cd <this folder> && vitis_hls -f vitis.tcl
# Paths are relative to this folder; include/ is a copy of gsbsim's hls/include made at generation.
# csim_design and cosim_design run tb/tb.cpp on vectors/ (write them first with
# `gsbsim vectors --model <model.npz> --out .`); with -DGSB_VITIS they use Vitis' hls::stream and
# compare the top's ports (logits, prediction) only; gsbsim csim compares every traced tensor.
open_project -reset gsb_vit_prj
set_top {TOP_NAME}
add_files src/top.cpp -cflags "-std=c++14 -Iinclude -Isrc -DGSB_VITIS"
add_files -tb tb/tb.cpp -cflags "-std=c++14 -Iinclude -Isrc -DGSB_VITIS"
open_solution -reset solution1 -flow_target vivado
set_part {{{part}}}
create_clock -period {period:.3f} -name default
# every FIFO gets its depth from the STREAM pragmas; arrays between processes are PIPOs
config_dataflow -default_channel fifo -fifo_depth 2
csim_design -argv "[pwd]/vectors"
csynth_design
cosim_design -argv "[pwd]/vectors"
export_design -format ip_catalog
exit
"""


# ============================================================================ generate
def generate(model: IntModel, model_path: str | os.PathLike, out: str | os.PathLike,
             folding: Mapping[str, Fold], part: str = DEFAULT_PART, clock_mhz: float = 200.0) -> Project:
    """Write the HLS project of ``model`` (read from ``model_path``) into ``out``.

    Everything is written into a temporary folder first and moved into place when complete.
    An existing ``out`` must be empty, hold only ``vectors/``, or be a project generated
    before (its generated files are replaced, its build folder removed; vectors are kept,
    csim checks their model).
    """
    out = Path(out)
    model_path = os.path.abspath(os.fspath(model_path))
    if out.exists() and not out.is_dir():
        raise HlsGenError(f"--out {out} exists and is not a folder")
    ours = (out / PROJECT_FILE).is_file() or (out / REGENERATING).is_file()
    if out.is_dir() and not ours and any(p.name != "vectors" for p in out.iterdir()):
        raise HlsGenError(f"--out {out} is a non-empty folder that is not a gsbsim HLS project; "
                          "refusing to write into it")
    if not out.parent.resolve().is_dir():
        raise HlsGenError(f"--out {out}: parent folder does not exist")
    if not (isinstance(clock_mhz, (int, float)) and math.isfinite(clock_mhz) and clock_mhz > 0):
        raise HlsGenError(f"--clock-mhz must be a finite positive number, got {clock_mhz!r}")
    if not (isinstance(part, str) and PART_PATTERN.match(part)):
        raise HlsGenError(f"--part {part!r} is not an FPGA part name (letters, digits, '-', '_', '.')")
    missing = [l.name for l in layers(model.header) if l.name not in folding]
    if missing:
        raise FoldingError(f"folding has no entry for layer {missing[0]}")
    try:
        ap_types = str(find_ap_types())
    except HlsEnvError:
        ap_types = ""        # the Makefile then asks for AP_TYPES=...; csim reports the missing headers
    sha = sha256_file(model_path)
    folding = {**{l.name: folding[l.name] for l in layers(model.header)},   # + every foldable stage's PE
               **{k: folding.get(k, Fold(1, 1)) for k in stage_dims(model.header)}}
    project = Project(out, model_path, sha, folding, dict(model.header), part, float(clock_mhz))

    files = {
        "src/config.h": _config_h(model, folding, sha),
        "src/top.h": _TOP_H,
        "src/top.cpp": _top_cpp(model, sha),
        "src/params/embed.h": _embed_params(model, folding),
        **{f"src/params/block_{i}.h": _block_params(model, i, folding) for i in range(model.depth)},
        "src/params/head.h": _head_params(model, folding),
        "tb/tb.cpp": _tb_cpp(model.header),
        "Makefile": _makefile(ap_types),
        "vitis.tcl": _vitis_tcl(part, clock_mhz),
        PROJECT_FILE: json.dumps(project.to_json(), indent=1) + "\n",
    }
    existed = out.is_dir()
    if existed:
        remove_stale(out, [STAGING_PREFIX])  # a killed run's staging folder (the caller holds out's lock)
    staging = staging_dir(out if existed else out.parent, STAGING_PREFIX)  # umask permissions, not mkdtemp's 0700
    try:
        for rel, text in files.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        # the kernel library beside the sources: vitis.tcl and the Makefile use relative paths
        shutil.copytree(library_include_dir() / "gsb", staging / "include" / "gsb")
        if not existed:
            os.rename(staging, out)
        else:  # project.json goes first and comes back last: it exists only over a complete project
            if (out / PROJECT_FILE).is_file():
                os.replace(out / PROJECT_FILE, out / REGENERATING)
            for item in GENERATED:
                _remove(out / item)
                os.rename(staging / item, out / item)
            _remove(out / REGENERATING)
            _remove(out / "build")
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, OSError) and not isinstance(e, BrokenPipeError):  # name --out, not the staging folder
            raise HlsGenError(f"--out {out}: cannot write the project ({e.strerror or e})") from None
        raise
    return project


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
