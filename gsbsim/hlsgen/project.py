"""``gsbsim hls``: generate the HLS C++ project of one integer model (hls4ml style).

A fixed skeleton (hls/include/gsb kernels, called in dataflow order) is filled per model:

    DIR/src/config.h        shapes, folding (PE/SIMD per layer), shifts, ratios
    DIR/src/params/*.h      packed weights (ap_uint<SIMD>, FINN layout), thresholds, LUTs, ...
    DIR/src/top.h, top.cpp  gsb_top(image, logits, pred): AXI streams, a DATAFLOW of one process per kernel
    DIR/tb/tb.cpp           C-simulation testbench: every trace tensor vs gsbsim's vectors
    DIR/Makefile            g++ -std=c++14 -O2 -Wall, ap_types via -isystem (AP_TYPES=... overrides)
    DIR/include/gsb/        a copy of the kernel library (hls/include/gsb) at generation time
    DIR/vitis.tcl           the Vitis HLS flow (csim, csynth, cosim, export_design), relative paths
    DIR/project.json        model path + sha256, folding, header, part, clock, FIFO depths (and how chosen)

top.h, the frame of top.cpp, tb.cpp, the Makefile and vitis.tcl are template files
(gsbsim/hlsgen/templates, filled by templating.render); the block's C++ per method (gsb/bit/sign,
reactnet, didb) comes from gsbsim/hlsgen/blocks.py.
The generated C++ reproduces ``gsbsim.golden`` exactly; ``gsbsim csim`` (gsbsim/hlsgen/csim.py)
compiles and runs it against ``gsbsim vectors`` output. docs/hls.md describes the flow.
"""
from __future__ import annotations

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
from gsbsim.hw import fifo_plan
from gsbsim.hw.fifo_plan import FifoDepths
from gsbsim.hw.folding import Fold, FoldingError, cycle_report
from gsbsim.hw.process_network import build_network
from gsbsim.hw.stages import lane_dims, pe_of, stage_dims, stream_lanes
from gsbsim.hlsgen.blocks import block_cpp, x_trace, x_word
from gsbsim.hlsgen.partition import pragmas
from gsbsim.hlsgen.dataflow import fifo_decl, process
from gsbsim.hlsgen.toolchain import HlsEnvError, find_ap_types, library_include_dir
from gsbsim.hlsgen.templating import render
from gsbsim.hlsgen.params import c_array, c_int, c_scalar, c_struct, finn_tiles, packed_rows_to_bits
from gsbsim.format.methods import DEFAULT_METHOD, method_of
from gsbsim.format.model_file import IntModel
from gsbsim.outputs import remove_stale, staging_dir
from gsbsim.paths import sha256_file  # re-exported: csim compares the model and the vectors by it

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


def trace_producer(name: str, method: str = DEFAULT_METHOD) -> str:
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
    fifos: dict | None = None   # project.json's FIFO record (FifoDepths.to_json); None in a project older than it
    sizing_s: float = 0.0       # what the FIFO sizing took in the run that generated it (not recorded)

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
                "part": self.part, "clock_mhz": self.clock_mhz, "header": self.header,
                **({"fifos": self.fifos} if self.fifos is not None else {})}


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
                       str(d["part"]), float(d["clock_mhz"]), d.get("fifos"))
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
        pe = pe_of(folding, name)
        lines.append(f"const unsigned {layer_macro(name)}_PE = {pe};  // {name}: {what} {dim}: {stages[name]} cycles")
    folded = [k for k in lane_dims(hd) if k in folding and folding[k].pe > 1]
    if folded:   # the stream types of top.cpp carry these widths (gsb/lanes.hpp); here for the reader
        lines += ["", "// ---- folding: int32 lanes per word of the residual stream's writers (1 where not listed)"]
        lines += [f"const unsigned {layer_macro(k)}_LANES = {folding[k].pe};  // {k}: {stages[k]} cycles" for k in folded]
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
                        f"{n}{lin} activation unit (§13.1, gsb/act_unit.hpp): {n}{mult}, {n}{bias} [{c}], "
                        f"{n}{lin}.tok_in, .tok_out [N], .slope, .out [{c}], shifts.slope",
                        [("mult", blk[mult]), ("bias", blk[bias]), ("tok_in", blk[f"{lin}.tok_in"]),
                         ("tok_out", blk[f"{lin}.tok_out"]), ("slope", blk[f"{lin}.slope"]),
                         ("out", blk[f"{lin}.out"]), ("slope_shift", model.slope_shift)])

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
def _top_cpp(model: IntModel, sha: str, fifos: FifoDepths, folding: Mapping[str, Fold]) -> str:
    depth = model.depth
    # int32 lanes per residual-stream word of each writer (gsb/lanes.hpp; 1 where not folded)
    lanes = stream_lanes(model.header, folding)
    writers = ["embed"] + [f"blocks.{i}.fc2_residual" for i in range(depth)]   # (lanes also holds load_image)

    def decl(ctype: str, var: str, name: str, why: str = "") -> str:
        return fifo_decl(ctype, var, name, fifos, why)

    includes = "\n".join(['#include "params/embed.h"'] + [f'#include "params/block_{i}.h"' for i in range(depth)]
                         + ['#include "params/head.h"'])
    names = ["embed"] + [f"blocks.{i}.resid2" for i in range(depth)]
    streams = "".join(decl(x_word(lanes[w]), f"x_{k}", nm, "residual stream, one int32 per word" if lanes[w] == 1
                           else f"residual stream, {lanes[w]} int32 per word")
                      for k, (nm, w) in enumerate(zip(names, writers)))
    procs = (process("embed_stage", "embed_stage(image, x_0)") +
             "".join(process(f"block_{i}", f"block_{i}(x_{i}, x_{i + 1})") for i in range(depth)) +
             process("head_stage", f"head_stage(x_{depth}, logits, pred)"))
    embed_streams = (decl("ap_uint<8 * PATCH_SIMD>", "cols", "patch.in") +
                     decl("gsb::vec<int32_t, PATCH_PE>", "acc", "patch.acc"))
    embed_procs = (process("load_image", "gsb::stream_to_array<IN_ELEMS>(image, pixels, GSB_IT)") +
                   process("im2col", "gsb::im2col<CIN, IMG, PATCH, PATCH_SIMD>(pixels, cols, GSB_IT)",
                           after=("load_image",)) +
                   process("patch", "gsb::mvau<KP, E, PATCH_SIMD, PATCH_PE, gsb::Int8Mode>(cols, acc, patch_weight, raw, "
                           "T, GSB_IT)", layer=True) +
                   process("embed", "gsb::patch_embed<N, E, PATCH_PE, KP>(acc, embed_tokens, embed_pos, patch_mult, "
                           "patch_bias, SHIFT_PATCH, x, GSB_IT)"))
    head_streams = (decl("ap_uint<8 * HEAD_SIMD>", "q", "head.q") +
                    decl("gsb::vec<int32_t, HEAD_PE>", "acc", "head.acc") +
                    decl("gsb::vec<int64_t, HEAD_PE>", "logit_words", "logits.words") +
                    decl("gsb::vec<int64_t, HEAD_PE>", "to_argmax", "logits.argmax"))
    head_procs = (process("final_norm", "gsb::final_layernorm<E, HEAD_SIMD>(x, q, final_gain, final_offset, "
                          "SHIFT_HEAD_LN, LN_EPS, LN_S2_MAX, N, GSB_IT)") +
                  process("head", "head_mvau(q, acc, GSB_IT)", layer=True) +
                  process("logits", "gsb::logits_combine<C, HEAD_PE, E>(acc, head_mult, head_dist_mult, logit_bias, "
                          "logit_words, GSB_IT)") +
                  process("logits_out", "gsb::fork_lanes<C, HEAD_PE>(logit_words, logits, to_argmax, GSB_IT)") +
                  process("argmax", "gsb::argmax<C, HEAD_PE, int64_t>(to_argmax, pred, 1, GSB_IT)"))
    blocks = "".join(block_cpp(i, model.header["method"], fifos,
                               (lanes[writers[i]], lanes[f"blocks.{i}.proj_residual"], lanes[writers[i + 1]]))
                     for i in range(depth))
    return render("top.cpp", model=os.path.basename(model.path), sha=sha[:16], includes=includes,
                  image_t=_image_word(folding), x_embed=x_word(lanes["embed"]), x_embed_trace=x_trace(lanes["embed"]), x_head=x_word(lanes[writers[-1]]),
                  embed_streams=embed_streams + pragmas(embed_procs), embed_procs=embed_procs, blocks=blocks,
                  streams=streams, procs=procs, head_streams=head_streams + pragmas(head_procs), head_procs=head_procs)


# ============================================================================ tb.cpp
def _tb_cpp(header: Mapping[str, Any], folding: Mapping[str, Fold]) -> str:
    tensors = ",\n".join(f'    {{"{name}", "{dtype}", {{{", ".join(map(str, shape))}}}}}'
                         for name, dtype, shape in trace_specs(header))
    lyrs = ",\n".join(f'    "{l.name}"' for l in layers(header))
    k = pe_of(folding, "load_image")
    feed = ("        for (std::size_t i = 0; i < cfg::IN_ELEMS; ++i) image.write(input.data[b * cfg::IN_ELEMS + i]);"
            if k == 1 else
            f"        for (std::size_t i = 0; i < cfg::IN_ELEMS; i += {k}) {{  // {k} pixels per word\n"
            f"            {_image_word(folding)} w;\n"
            f"            for (unsigned l = 0; l < {k}; ++l) w[l] = input.data[b * cfg::IN_ELEMS + i + l];\n"
            "            image.write(w);\n        }")
    return render("tb.cpp", tensors=tensors, layers=lyrs, image_t=_image_word(folding), image_feed=feed)


def _image_word(folding: Mapping[str, Fold]) -> str:
    """The top's image port word: one int8 pixel, or load_image's PE pixels (gsb/lanes.hpp)."""
    k = pe_of(folding, "load_image")
    return "int8_t" if k == 1 else f"gsb::vec<int8_t, {k}>"


# ============================================================================ Makefile, vitis.tcl
def _makefile(ap_types: str) -> str:
    return render("Makefile", ap_types=ap_types)


def _vitis_tcl(part: str, clock_mhz: float) -> str:
    return render("vitis.tcl", top=TOP_NAME, part=part, period=f"{1000.0 / clock_mhz:.3f}")


# ============================================================================ generate
def generate(model: IntModel, model_path: str | os.PathLike, out: str | os.PathLike,
             folding: Mapping[str, Fold], part: str = DEFAULT_PART, clock_mhz: float = 200.0,
             size_fifos: int | None = None) -> Project:
    """Write the HLS project of ``model`` (read from ``model_path``) into ``out``.

    FIFO depths: the deadlock-free minimum, or with ``size_fifos`` = K the depths the cycle
    simulation sizes over K images, never below that minimum (gsbsim/hw/fifo_plan.py).

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
               **{k: folding.get(k, Fold(1, 1)) for k in stage_dims(model.header)},
               **{k: folding[k] for k in lane_dims(model.header) if k in folding and folding[k].pe > 1}}
    fifos = fifo_plan.choose(build_network(model.header, folding), size_fifos)
    project = Project(out, model_path, sha, folding, dict(model.header), part, float(clock_mhz), fifos.to_json(),
                      fifos.seconds)

    files = {
        "src/config.h": _config_h(model, folding, sha),
        "src/top.h": render("top.h", image_t=_image_word(folding)),
        "src/top.cpp": _top_cpp(model, sha, fifos, folding),
        "src/params/embed.h": _embed_params(model, folding),
        **{f"src/params/block_{i}.h": _block_params(model, i, folding) for i in range(model.depth)},
        "src/params/head.h": _head_params(model, folding),
        "tb/tb.cpp": _tb_cpp(model.header, folding),
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
