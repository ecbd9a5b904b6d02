"""Benchmark of gsbsim's packed binary GEMMs against the CPU's popcount limit and torch float32.

Usage:  .venv/bin/python benchmarks/kernels.py [--repeats 15] [--no-write] [--linears-only]

It measures the limit (benchmarks/limit.py: a register-tiled xor + popcount microkernel on
L1-resident data, gsbsim's own tile and, when a C compiler is there, a hand-written C tile),
then for every DeiT-S / DeiT-T linear shape (197 tokens x K -> N) the jitted GEMMs as
gsbsim.fast runs them (xnor_into, and_into), the public wrappers (xnor_gemm, and_gemm) and
torch's float32 ``F.linear`` with torch.set_num_threads(1), interleaved round by round in one
process, and reports GMAC/s = M*N*K / time and each GEMM as a fraction of the limit measured
in the same round (median and min-max over rounds). It prints the vector instruction set. It also
times GSB's multi-plane A.V product on one attention head (197 queries x 197 keys, head
dim 64), G=3 planes against G=1: the plane-pair popcount kernel ``gsb_av`` and the
combined context kernel (``kernels.context_head``, the one gsbsim.fast runs) with its
sparse bit walk and its popcount form, on sparse planes (densities of the random DeiT-Tiny
export) and on dense planes (1/2). Results are printed and written to the "## Kernels"
section of benchmarks/RESULTS.md (other sections are kept).
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
if str(ROOT) not in sys.path:  # allow running from a checkout without installing gsbsim
    sys.path.insert(0, str(ROOT))

from gsbsim.format import conventions as cv  # noqa: E402
from gsbsim.engine import kernels as kn  # noqa: E402
from gsbsim.engine.popcnt import vector_isa  # noqa: E402
from benchmarks import limit  # noqa: E402

TOKENS = 197
# (model, layer, K, N): the four linears of a block
SHAPES = [
    ("DeiT-S", "qkv", 384, 1152),
    ("DeiT-S", "proj", 384, 384),
    ("DeiT-S", "fc1", 384, 1536),
    ("DeiT-S", "fc2", 1536, 384),
    ("DeiT-T", "qkv", 192, 576),
    ("DeiT-T", "proj", 192, 192),
    ("DeiT-T", "fc1", 192, 768),
    ("DeiT-T", "fc2", 768, 192),
]
HEAD_DIM = 64


def time_calls(fn: Callable[[], object], repeats: int, min_time: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Seconds per call, one value per repeat, as (wall clock, this thread's CPU time).

    Each repeat loops enough calls to last about min_time. The CPU time is what the
    call costs when it has a core to itself: on a shared machine it moves much less
    than the wall clock (it is meaningless for multi-threaded calls).
    """
    fn()  # warm-up (compilation, caches)
    t0 = time.perf_counter()
    fn()
    per_call = max(time.perf_counter() - t0, 1e-7)
    number = max(1, int(min_time / per_call))
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(number):
            fn()
        wall.append((time.perf_counter() - t0) / number)
        cpu.append((time.thread_time() - c0) / number)
    return np.array(wall), np.array(cpu)


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = re.search(r"Model name:\s*(.+)", lscpu).group(1).strip()
    except (OSError, subprocess.CalledProcessError, AttributeError):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} cores"


def gmacs(macs: int, times: tuple[np.ndarray, np.ndarray]) -> dict:
    """GMAC/s per repeat from time_calls: wall (median, min, max) and CPU-time median."""
    wall = macs / times[0] / 1e9
    cpu = macs / np.maximum(times[1], 1e-9) / 1e9
    return dict(wall=(float(np.median(wall)), float(wall.min()), float(wall.max())), cpu=float(np.median(cpu)))


def fmt(stat: dict) -> str:
    med, lo, hi = stat["wall"]
    return f"{med:.0f} ({lo:.0f}-{hi:.0f})"


def _round_time(fn: Callable[[], object], min_time: float = 0.02) -> tuple[float, float]:
    """(wall, thread CPU) seconds per call of fn, looping calls for about min_time."""
    t0 = time.perf_counter()
    fn()
    number = max(1, int(min_time / max(time.perf_counter() - t0, 1e-7)))
    t0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number, (time.thread_time() - c0) / number


@njit(nogil=True, boundscheck=False)
def row_loop_xnor(a, w_t, k, out):
    """The GEMM as it was before the register tiles (kernels._counts_xor: one output row at a time,
    LLVM's own vectorisation), on numpy's (16-byte aligned) transposed weights: the same-round baseline."""
    acc = np.empty(w_t.shape[1], dtype=np.int64)
    for m in range(a.shape[0]):
        kn._counts_xor(a, m, w_t, acc)
        for n in range(acc.shape[0]):
            out[m, n] = k - 2 * acc[n]


def bench_linears(repeats: int) -> tuple[list[dict], dict]:
    """Per round (repeats rounds), interleaved: the limit kernels, then for every shape the jitted
    GEMMs as gsbsim.fast runs them (prepared 64-byte aligned weights), the public wrappers and torch.
    Fractions of the limit are taken per round (both sides saw the same machine), then the median."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    limits = [limit.numba_limit()]
    c_lim, c_why = limit.c_limit()
    if c_lim is not None:
        limits.append(c_lim)
    lim_reps = {lim.name: max(1, int(2e8 / lim.macs(1))) for lim in limits}   # ~0.2 G MACs a call
    cases = []
    for model, layer, k, n in SHAPES:
        a = cv.pack_bits(rng.integers(0, 2, (TOKENS, k), dtype=np.uint8))
        w = cv.pack_bits(rng.integers(0, 2, (n, k), dtype=np.uint8))
        w_t, out = kn.weight_layout(w), np.empty((TOKENS, n), dtype=np.int32)
        kn.xnor_into(a, w_t, k, out)
        assert np.array_equal(out, cv.xnor_dot(a, w, k))          # benchmark what is correct
        kn.and_into(a, w_t, out)
        assert np.array_equal(out, cv.and_dot(a, w))
        w_np = np.ascontiguousarray(w.T)
        row_loop_xnor(a, w_np, k, out)
        assert np.array_equal(out, cv.xnor_dot(a, w, k))
        x, wf = torch.randn(TOKENS, k), torch.randn(n, k)
        calls = {
            "xnor_into": lambda a=a, w_t=w_t, k=k, out=out: kn.xnor_into(a, w_t, k, out),
            "and_into": lambda a=a, w_t=w_t, out=out: kn.and_into(a, w_t, out),
            "row_loop": lambda a=a, w_np=w_np, k=k, out=out: row_loop_xnor(a, w_np, k, out),
            "xnor_gemm": lambda a=a, w=w, k=k: kn.xnor_gemm(a, w, k),
            "and_gemm": lambda a=a, w=w: kn.and_gemm(a, w),
            "xnor_gemm_par": lambda a=a, w=w, k=k: kn.xnor_gemm_par(a, w, k),
            "torch": lambda x=x, wf=wf: F.linear(x, wf),
        }
        cases.append((dict(model=model, layer=layer, k=k, n=n, macs=TOKENS * n * k), calls))
    lim_rate = {lim.name: [] for lim in limits}
    rates = [{name: ([], []) for name in calls} for _, calls in cases]      # (wall, cpu) G/s per round
    with torch.no_grad():
        for _ in range(repeats):
            for lim in limits:
                _, cpu = _round_time(lambda: lim.run(lim_reps[lim.name]))
                lim_rate[lim.name].append(lim.macs(lim_reps[lim.name]) / cpu / 1e9)
            for (info, calls), rate in zip(cases, rates):
                for name, fn in calls.items():
                    wall, cpu = _round_time(fn)
                    rate[name][0].append(info["macs"] / wall / 1e9)
                    rate[name][1].append(info["macs"] / max(cpu, 1e-9) / 1e9)
    rows = []
    base = np.array(lim_rate["numba"])
    for (info, _), rate in zip(cases, rates):
        row = dict(info)
        for name, (wall, cpu) in rate.items():
            wall, cpu = np.array(wall), np.array(cpu)
            row[name] = dict(wall=(float(np.median(wall)), float(wall.min()), float(wall.max())),
                             cpu=float(np.median(cpu)), frac=np.quantile(cpu / base, [0.5, 0.0, 1.0]).tolist())
        rows.append(row)
    lims = {name: np.quantile(v, [0.5, 0.0, 1.0]).tolist() for name, v in lim_rate.items()}
    if "c" in lim_rate:
        lims["numba/c"] = np.quantile(base / np.array(lim_rate["c"]), [0.5, 0.0, 1.0]).tolist()
    describe = {lim.name: lim.describe for lim in limits}
    return rows, dict(rates=lims, describe=describe, c_skipped=c_why)


# attention plane densities (b1, M_2, M_3) of the random DeiT-Tiny export, and dense planes
AV_DENSITIES = {"sparse (DeiT-T export)": (0.009, 0.072, 0.014), "dense (1/2)": (0.5, 0.5, 0.5)}
V_DENSITIES = (0.5, 0.12, 0.05)  # value planes: sign, M_2, M_3


def _us(times: tuple[np.ndarray, np.ndarray]) -> dict:
    wall, cpu = times
    return dict(us=float(np.median(wall)) * 1e6, lo=float(wall.min()) * 1e6, hi=float(wall.max()) * 1e6,
                cpu_us=float(np.median(cpu)) * 1e6)


def bench_av(repeats: int) -> dict:
    """{(planes, G, method): timing} of one head's A.V: gsb_av (plane pairs) and context_head."""
    rng = np.random.default_rng(1)
    out = {}
    for label, dens in AV_DENSITIES.items():
        for g in (1, 3):
            a_bits = np.stack([(rng.random((TOKENS, TOKENS)) < dens[k]).astype(np.uint8) for k in range(g)])
            v_bits = np.stack([(rng.random((TOKENS, HEAD_DIM)) < V_DENSITIES[k]).astype(np.uint8) for k in range(g)])
            planes = cv.pack_bits(a_bits)
            scale = rng.integers(2 ** 15, 2 ** 18, (g, g))           # the export's ctx.scale magnitudes
            s_cols, m_cols = cv.pack_bits(v_bits[0].T), cv.pack_bits(v_bits[1:].transpose(0, 2, 1))
            out[label, g, "gsb_av"] = _us(time_calls(lambda: kn.gsb_av(planes, s_cols, m_cols), repeats))
            weights = (np.uint8(1) << np.arange(g, dtype=np.uint8))[:, None, None]
            codes = np.ascontiguousarray((v_bits * weights).sum(0, dtype=np.uint8))
            counts = kn.row_popcounts(planes)
            ws = kn.context_workspace(scale, TOKENS, HEAD_DIM)
            ctx = np.empty((TOKENS, HEAD_DIM), np.int64)
            want = kn.gsb_av_context(planes, v_bits, scale, "dense")
            for name, method in (("context sparse", 1), ("context popcount", 2), ("context auto", 0)):
                def call():
                    kn.context_head(planes, counts, codes, scale, TOKENS, ctx, 0, 0, method, ws)
                call()
                assert np.array_equal(ctx, want)                       # benchmark what is correct
                out[label, g, name] = _us(time_calls(call, repeats))
    return out


def _q(q: list, fmt_: str = ".0f", scale: float = 1.0) -> str:
    return f"{q[0] * scale:{fmt_}} ({q[1] * scale:{fmt_}}-{q[2] * scale:{fmt_}})"


def report(rows: list[dict], lims: dict, av: dict, repeats: int, command: str) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    r = lims["rates"]
    lines = [
        "## Kernels",
        "",
        f"Machine: {machine()}; vector popcount of the tile kernels: {vector_isa()}; "
        f"load average at the end of the run: {load} (other jobs share the cores).",
        f"Command: `{command}` ({repeats} rounds; every round runs the limit kernels and then every contender on",
        "every shape, about 20 ms each, so a round's ratios compare like with like; median (min-max) over rounds).",
        "",
        "### The limit: register-tiled xor + popcount + add on L1-resident, 64-byte aligned data (benchmarks/limit.py)",
        "",
        "| kernel | GMAC/s (thread CPU time) |",
        "|---|---|",
        f"| {lims['describe']['numba']} | {_q(r['numba'])} |",
    ]
    if "c" in r:
        lines.append(f"| {lims['describe']['c']}, `cc -O3 -march=native` | {_q(r['c'])} |")
        lines += ["", f"The Numba tile reaches {_q(r['numba/c'], '.2f')}x the hand-written C tile in the same rounds: "
                  "it is the limit the fractions below use."]
    else:
        lines += ["", f"C tile skipped: {lims['c_skipped']}."]
    lines += [
        "",
        "### Packed GEMMs, 197 tokens x K -> N, one thread",
        "",
        "GMAC/s = 197 * N * K / time from the thread's CPU time (what a call costs with a core to itself);",
        "`xnor_into` / `and_into`: the jitted GEMMs as gsbsim.fast calls them (weights laid out once by",
        "`kernels.weight_layout`, 64-byte aligned); `xnor_gemm` / `and_gemm`: the public wrappers (validation,",
        "weight layout and output allocation in every call); torch = float32 `F.linear`, torch.set_num_threads(1);",
        f"`xnor_gemm_par`: rows over {os.cpu_count()} threads, wall clock. \"of limit\": the kernel's rate over the",
        "Numba limit's in the same round. `row loop (before)`: the xnor GEMM as it was before the register tiles",
        "(one output row per pass, numpy's 16-byte aligned weights), same rounds.",
        "",
        "| model | layer | K | N | xnor_into | of limit | and_into | of limit | row loop (before) | of limit "
        "| xnor_gemm | and_gemm | torch fp32 | xnor_into/torch | xnor_gemm_par (wall) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        x, a, t = row["xnor_into"], row["and_into"], row["torch"]
        lines.append(
            f"| {row['model']} | {row['layer']} | {row['k']} | {row['n']} | {x['cpu']:.0f} | {_q(x['frac'], '.0f', 100)} % "
            f"| {a['cpu']:.0f} | {_q(a['frac'], '.0f', 100)} % | {row['row_loop']['cpu']:.0f} "
            f"| {_q(row['row_loop']['frac'], '.0f', 100)} % | {row['xnor_gemm']['cpu']:.0f} | {row['and_gemm']['cpu']:.0f} "
            f"| {t['cpu']:.0f} | {x['cpu'] / t['cpu']:.0f}x | {fmt(row['xnor_gemm_par'])} |"
        )
    if av is None:
        return "\n".join(lines)
    lines += [
        "",
        f"GSB A.V on one head (197 queries x 197 keys, D={HEAD_DIM}), median (min-max) microseconds per call",
        "(CPU-time median in brackets). `gsb_av`: the G x G plane-pair popcount kernel (public wrapper,",
        "value-plane transposition included). `context`: kernels.context_head, the G x G products already",
        "combined with the scale products as gsbsim.fast runs it (jitted core, prepared inputs): the sparse",
        "bit walk over the attention planes, the popcount form, and auto (the cost model's choice).",
        "",
        "| planes | kernel | G=1 (us) | G=3 (us) | G=3 / G=1 |",
        "|---|---|---|---|---|",
    ]
    for label in AV_DENSITIES:
        for name in ("gsb_av", "context sparse", "context popcount", "context auto"):
            one, three = av[label, 1, name], av[label, 3, name]
            cells = [f"{r['us']:.0f} ({r['lo']:.0f}-{r['hi']:.0f}) [{r['cpu_us']:.0f}]" for r in (one, three)]
            lines.append(f"| {label} | {name} | {cells[0]} | {cells[1]} | {three['us'] / one['us']:.1f}x |")
    lines += [
        "",
        "The popcount form needs 2G-1 popcounts per (attention plane, value column, key word), so G=3 costs",
        "about 15x G=1; the bit walk costs one row of value lookups per set attention bit (D/16 vpermd on",
        "AVX-512, else a value-table row's additions), so it follows the planes' density (the masks keep the",
        "keys near the row maximum: sparse), and the cost model picks the popcount form when planes are",
        "dense. The whole-attention ratio is in the \"Whole model\" section.",
        "",
    ]
    return "\n".join(lines)


def write_section(section: str, title: str, path: Path = RESULTS) -> None:
    """Replace (or append) the `title` section of RESULTS.md, keeping the others, and say so."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    parser.add_argument("--linears-only", action="store_true", help="skip the A.V table (implies --no-write)")
    args = parser.parse_args()
    rows, lims = bench_linears(args.repeats)
    if args.linears_only:
        print(report(rows, lims, None, args.repeats, "python benchmarks/kernels.py --linears-only"))
        return
    av = bench_av(args.repeats)
    command = "python benchmarks/kernels.py" + (f" --repeats {args.repeats}" if args.repeats != 15 else "")
    section = report(rows, lims, av, args.repeats, command)
    print(section)
    if not args.no_write:
        write_section(section, "## Kernels")


if __name__ == "__main__":
    main()
