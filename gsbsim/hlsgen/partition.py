"""ARRAY_PARTITION pragmas of a generated top: every array a kernel reads or writes several
elements of per cycle, partitioned where it is defined (UG1399: "within the boundaries of the
function where the array variable is defined"; FINN does the same for its weights and thresholds).

A kernel's parallel accesses are facts of its header (hls/include/gsb/), listed here in ``RULES``:
for a kernel, which call argument, which dimension of that argument, and how.  The generator
(``with_partitions``) reads the process calls of a DATAFLOW region and writes, before the
region's processes, one pragma per (array, dimension): the PIPO arrays are declared in the region,
the parameter arrays (weights, thresholds, tables) are the project's globals (params/*.h), which
the region function uses.  ``missing`` checks a generated top.cpp against the same rules, per
region, and names each array whose pragma is absent (tests/test_hls_partition.py plants one);
that test also scans the headers, so a kernel access lanes-wide that no rule covers fails it.

Rules:
* weights [PE][TILES] of every MVAU (and the K rows, value planes as runtime weights): complete
  on the PE dimension (FINN: ``weights.m_weights complete dim=1``);
* thresholds and per-channel constants read at row nf*PE + pe: cyclic, factor PE (FINN
  reshapes them to [PE][TMEM] and partitions dim 1: the same banks);
* arrays read EPC (a stage's PE) consecutive elements per cycle: cyclic, factor EPC;
* small tables read with data-dependent indices EPC times per cycle (softmax's exp table, D + 1
  words): complete, i.e. registers with one read mux per lane (EPC copies would do the same);
* G planes read or written in one cycle: complete on the plane dimension.
When two kernels need different cyclic factors on one dimension of one array (a PIPO written
with the softmax's PE, read with the planes' PE), the pragma's factor is their product: a
multiple of each, so both access patterns hit distinct banks.

``GAPS`` lists the parallel accesses no pragma fixes, with the reason; docs/hls.md §6 repeats them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Rule", "RULES", "GAPS", "calls", "required", "pragmas", "with_partitions", "missing"]


@dataclass(frozen=True)
class Rule:
    arg: int                      # call argument (0-based)
    dim: int                      # dimension of that argument (1-based)
    kind: str                     # "complete" or "cyclic"
    factor: int | None = None     # cyclic: the template argument (0-based) that is the factor
    members: tuple[str, ...] = ()  # the argument is a struct: partition these array members


C, Y = "complete", "cyclic"
RULES: dict[str, tuple[Rule, ...]] = {
    # gsb/mvau.hpp: weights[pe][tile] for every PE lane
    "mvau": (Rule(2, 1, C),),
    # gsb/attention_qk.hpp: the K rows as the unit's runtime weights [H][PE][TILES]
    "attention_qk": (Rule(1, 2, C),),
    # gsb/qkv_split.hpp: PE_QKV channels per cycle
    "qkv_split": (Rule(1, 1, Y, 3), Rule(2, 1, Y, 3), Rule(3, 1, Y, 3), Rule(7, 3, Y, 3)),
    # gsb/haar.hpp: PE_QKV channels per cycle
    "qkv_z_split": (Rule(1, 1, Y, 3), Rule(2, 2, Y, 3), Rule(3, 3, Y, 3)),
    # gsb/value_planes.hpp: EPC channels per cycle, G planes written together, a word per PE lane
    "value_planes": (Rule(0, 3, Y, 7), Rule(1, 1, C), Rule(2, 1, C), Rule(2, 3, C)),
    # gsb/attention_planes.hpp: EPC keys per cycle, G planes written together
    "attention_planes": (Rule(0, 3, Y, 5), Rule(2, 1, C), Rule(3, 1, C)),
    # gsb/softmax.hpp: EPC exps per cycle (table, D + 1 words), biases and probabilities
    "softmax": (Rule(1, 1, C), Rule(2, 3, Y, 4), Rule(5, 3, Y, 4)),
    # gsb/hfsc.hpp: biases and probabilities EPC per cycle (its exp tables: GAPS)
    "softmax_hfsc": (Rule(4, 3, Y, 4), Rule(7, 3, Y, 4)),
    # gsb/gsb_av.hpp: plane 0 and plane pv of every PE lane, ctx PE channels per cycle
    "gsb_av": (Rule(1, 1, C), Rule(1, 3, C), Rule(3, 2, Y, 5)),
    # gsb/gsb_av.hpp ctx_threshold: one proj input word, SIMD channels of ctx and thr, per cycle
    "ctx_threshold": (Rule(0, 2, Y, 2), Rule(1, 1, Y, 2)),
    # gsb/diba.hpp diba_fork: the sign plane PE words per cycle, into two copies
    "diba_fork": (Rule(1, 3, C), Rule(3, 3, C), Rule(5, 2, C)),
    # gsb/binarize.hpp activate_bits: TwoSidedThresholdPolicy lo/hi at row nf*PE + pe
    "activate_bits": (Rule(2, 1, Y, 1, ("lo", "hi")),),
    # gsb/act_unit.hpp: per-channel members at channel fold*PE + pe (per-token ones: one element)
    "act_unit": (Rule(2, 1, Y, 2, ("bias", "slope", "out")),),
    # gsb/layernorm.hpp layernorm_bits: SIMD output bits per cycle
    "layernorm_bits": (Rule(2, 1, Y, 1), Rule(3, 1, Y, 1)),
    # gsb/embed.hpp patch_embed: up to PE channels of the constants per cycle (gcd chunks of them)
    "patch_embed": (Rule(1, 2, Y, 2), Rule(2, 2, Y, 2), Rule(3, 1, Y, 2), Rule(4, 1, Y, 2)),
    # gsb/layernorm.hpp final_layernorm: gain/offset of SIMD channels (one output word) per cycle
    "final_layernorm": (Rule(2, 2, Y, 1), Rule(3, 2, Y, 1)),
    # gsb/head.hpp logits_combine: PE logits per cycle
    "logits_combine": (Rule(3, 1, Y, 1),),
}

# (kernel, parameter): why no partition pragma covers it (docs/hls.md §6)
GAPS: dict[tuple[str, str], str] = {
    ("qkv_split", "q_rows"): "whole words assembled in a register; up to ceil(PE_QKV/SIMD_QK) + 1 word writes per "
                             "cycle (one when PE_QKV <= SIMD_QK and the lanes stay in one head)",
    ("qkv_split", "k_tiles"): "same as q_rows",
    ("softmax_hfsc", "exp_hi"): "three tables read with data-dependent indices EPC times per cycle: EPC copies "
                                "needed above EPC 2 (dual-port ROM), not emitted",
    ("im2col", "image"): "SIMD pixels of a patch row per cycle from the image PIPO: not a fixed stride, not partitioned",
    ("stream_to_array", "out"): "load_image writes the image port's L pixels per cycle into the image PIPO, which "
                                "im2col reads SIMD at a time (see im2col): not partitioned",
    ("diba_context", "s_tiles"): "nine sign-plane neighbours per cycle (laplacian8): not partitioned",
}

_CALL = re.compile(r"gsb::(\w+)<")


def _split(text: str) -> list[str]:
    """Top-level comma-separated items of a template or argument list."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += {"<": 1, "(": 1, "[": 1, ">": -1, ")": -1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return parts + [cur.strip()]


def _close(text: str, start: int, open_: str, close: str) -> int:
    """Index just past the bracket that closes the one at ``start``."""
    depth = 0
    for i in range(start, len(text)):
        depth += (text[i] == open_) - (text[i] == close)
        if depth == 0:
            return i + 1
    raise ValueError(f"unbalanced {open_}{close} in generated code")


def calls(region: str) -> list[tuple[str, list[str], list[str]]]:
    """(kernel, template arguments, call arguments) of every gsb:: kernel call in ``region``."""
    out = []
    for m in _CALL.finditer(region):
        t_end = _close(region, m.end() - 1, "<", ">")
        if t_end >= len(region) or region[t_end] != "(":
            continue   # a type (gsb::stream<...>, gsb::vec<...>), not a call
        a_end = _close(region, t_end, "(", ")")
        out.append((m.group(1), _split(region[m.end():t_end - 1]), _split(region[t_end + 1:a_end - 1])))
    return out


def required(region: str) -> dict[tuple[str, int], tuple[str, str, list[str]]]:
    """(variable, dimension of its definition) -> (kind, factor, the kernels needing it) for the
    calls of ``region``; cyclic factors of several kernels multiply."""
    need: dict[tuple[str, int], tuple[str, str, list[str]]] = {}
    for kernel, targs, args in calls(region):
        for rule in RULES.get(kernel, ()):
            m = re.fullmatch(r"(\w+)((?:\[[^\]]*\])*)", args[rule.arg])
            if not m:
                continue
            dim = rule.dim + m.group(2).count("[")   # an argument like k_tiles[0] is one dimension in
            factor = targs[rule.factor] if rule.kind == Y else ""
            for var in [f"{m.group(1)}.{x}" for x in rule.members] or [m.group(1)]:
                kind, old, users = need.get((var, dim), (rule.kind, "", []))
                if rule.kind == C or kind == C:
                    kind, factor_all = C, ""
                else:
                    factors = [f for f in old.split(" * ") if f] + [factor]
                    factor_all = " * ".join(dict.fromkeys(factors))
                need[(var, dim)] = (kind, factor_all, users + [kernel])
    return need


def _banks(var: str, dim: int) -> str:
    """The constant naming a product of cyclic factors (a pragma takes a constant, not an expression)."""
    return f"{var.replace('.', '_').upper()}_BANKS{dim}"


def _spec(var: str, dim: int, kind: str, factor: str) -> str:
    if kind == C:
        return "complete"
    return f"cyclic factor={_banks(var, dim) if ' * ' in factor else factor}"


def pragmas(code: str) -> str:
    """The partition pragma lines the kernel calls in ``code`` need, each naming its kernels (a
    product of factors first declared as a constant: a declaration, as a DATAFLOW region allows)."""
    out = []
    for (v, d), (k, f, u) in sorted(required(code).items()):
        if k == Y and " * " in f:
            # unused by g++ (it ignores the pragma): the attribute keeps -Wall -Werror quiet
            out.append(f"    const unsigned {_banks(v, d)} __attribute__((unused)) = {f};  // a multiple of each kernel's lanes\n")
        out.append(f"#pragma HLS ARRAY_PARTITION variable={v} {_spec(v, d, k, f)} dim={d}  "
                   f"// {', '.join(dict.fromkeys(u))}\n")
    return "".join(out)


def with_partitions(region: str, marker: str = "    GSB_REGION(") -> str:
    """``region`` (one DATAFLOW function's C++) with its partition pragmas before ``marker``."""
    at = region.index(marker)
    return region[:at] + pragmas(region) + region[at:]


def _functions(top: str) -> list[str]:
    """The bodies of the static functions of a generated top.cpp (its DATAFLOW regions)."""
    out = []
    for m in re.finditer(r"\nstatic void \w+\([^)]*\) \{", top):
        out.append(top[m.end() - 1:_close(top, m.end() - 1, "{", "}")])
    return out


def missing(top: str) -> list[str]:
    """One line per required pragma absent from a generated top.cpp, naming the array."""
    out = []
    for body in _functions(top):
        have = set(re.findall(r"#pragma HLS ARRAY_PARTITION variable=(\S+) (complete|cyclic factor=[^d]+?) dim=(\d+)",
                              body))
        for (var, dim), (kind, factor, users) in required(body).items():
            spec = _spec(var, dim, kind, factor)
            banks = f"const unsigned {_banks(var, dim)} __attribute__((unused)) = {factor};"
            if (var, spec, str(dim)) not in have or (" * " in factor and banks not in body):
                out.append(f"{var}: no '{spec} dim={dim}' partition pragma (read/written lanes-wide by "
                           f"{', '.join(dict.fromkeys(users))})")
    return out
