"""Whole-model benchmark: bit-exact GSB DeiT-Tiny (gsbsim.fast) against timm's float32 DeiT-Tiny.

Usage:  .venv/bin/python benchmarks/model.py [--repeats 21] [--batch 16] [--no-write]
                                             [--model dt.npz] [--model-g1 dt_g1.npz]

The integer models are random exports of the deit_tiny preset (made on first use with
``python -m reference.export --random --preset deit_tiny [--groups 1] --out ...`` into
$TMPDIR/gsbsim-bench/ unless given). Measured in one process, interleaved repeat by repeat
so that both sides see the same machine load:

1. latency, 1 image, 1 thread: gsbsim.engine.fast.forward vs timm.create_model(
   'deit_tiny_patch16_224', pretrained=False) in eval/inference mode with
   torch.set_num_threads(1) (BLAS also held to one thread), and vs the same model exported to
   ONNX and run by onnxruntime with one thread (optional: the ``bench`` extra installs it);
   each repeat is a round of 5 calls of each model in turn (best call of each), the ratios are
   taken per round;
2. batch throughput, 1 and 2 threads: gsbsim.engine.fast.forward_batch(threads=2) vs timm with
   torch.set_num_threads(2), images/s;
3. the op split of the integer model (gsbsim.engine.fast.forward_profiled, median over repeats);
4. GSB's cost: the whole attention (split q/k/v + Q.K^T + softmax + planes + A.V + ctx
   thresholds) and the A.V context alone, G=3 model vs G=1 model, summed over the 12 blocks
   (per repeat the best of 3 profiled runs of each model, alternating).

Wall-clock and this thread's CPU time are both reported: the machine is shared, and CPU
time is what a call costs with a core to itself. Results are printed and written to the
"## Whole model" section of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow running from a checkout without installing gsbsim
    sys.path.insert(0, str(ROOT))

from benchmarks.kernels import machine, write_section  # noqa: E402
from gsbsim.engine.popcnt import vector_isa  # noqa: E402
from gsbsim.engine import fast, golden  # noqa: E402
from gsbsim.format.model_file import load_model  # noqa: E402
from gsbsim.format.methods import DEFAULT_METHOD  # noqa: E402
from gsbsim.format.random_model import random_images  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "gsbsim-bench"   # the exports are made once, outside the checkout
SECTION = "## Whole model"
TARGETS = {"timm fp32": 8.0, "onnxruntime fp32": 6.0}   # issue 15's latency targets (peer / gsbsim)
STAGE_GROUPS = {  # op split rows: stage names of fast.forward_profiled, grouped
    "binary GEMMs (qkv, proj, fc1, fc2)": ("qkv (xnor)", "proj (xnor)", "fc1 (xnor)", "fc2 (and)"),
    "attention: split q/k/v": ("attention: split q/k/v",),
    "attention: Q.K^T + softmax + planes": ("attention: scores+softmax+planes",),
    "attention: GSB A.V context": ("attention: A.V context",),
    "thresholds (ctx -> bits, fc1 GELU)": ("attention: ctx thresholds", "fc1 thresholds"),
    "residual requant + layernorm -> bits": ("layernorm -> bits", "residual requant + layernorm -> bits"),
    "patch embedding (8-bit)": ("patch embedding",),
    "final norm + heads (8-bit)": ("final norm + heads",),
    "weight layout + Python glue": ("weight layout", "other"),
}


def export(path: Path, groups: int, method: str = DEFAULT_METHOD) -> Path:
    """The random deit_tiny export at `path`, made with reference.export if missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "reference.export", "--random", "--preset", "deit_tiny",
               "--groups", str(groups), "--method", method, "--out", str(path)]
        print("making", path, "with:", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
    return path


def timed(fn) -> tuple[float, float]:
    """(wall seconds, this thread's CPU seconds) of one call."""
    t0, c0 = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - t0, time.thread_time() - c0


def stats(values) -> tuple[float, float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(np.median(v)), float(v.min()), float(v.max())


def fmt(s: tuple[float, float, float], scale: float = 1.0, digits: int = 1) -> str:
    return f"{s[0] * scale:.{digits}f} ({s[1] * scale:.{digits}f}-{s[2] * scale:.{digits}f})"


def onnx_peer(timm_model, x: np.ndarray):
    """timm's model exported to ONNX and run by onnxruntime (fp32, 1 intra- and inter-op thread,
    all graph optimisations), as a callable on float images; None (and why) without onnxruntime/onnx."""
    try:
        import onnxruntime as ort
        import onnx  # noqa: F401  (torch.onnx.export needs it)
    except ImportError as err:
        return None, f"onnxruntime skipped ({err.name} not installed: pip install -e .[bench])"
    import torch

    path = CACHE / "deit_tiny_timm.onnx"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with torch.inference_mode():
        want = timm_model(torch.from_numpy(x)).numpy()
    # a cached export of another timm model (e.g. other random weights) is made again, once
    for fresh in (not path.exists(), True):
        if fresh:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.onnx.export(timm_model, (torch.from_numpy(x),), str(path), dynamo=False, opset_version=17,
                              input_names=["x"], output_names=["logits"])
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        if np.allclose(sess.run(None, {"x": x})[0], want, atol=1e-3):
            break
    else:
        raise AssertionError("onnxruntime must compute timm's model")
    return (lambda: sess.run(None, {"x": x})), f"onnxruntime {ort.__version__}"


def bench_latency(model, timm_model, rounds: int, per_round: int = 5) -> dict:
    """1 image, 1 thread: `rounds` rounds of `per_round` gsbsim calls, then `per_round` calls of each
    float peer (timm eager, onnxruntime when installed); per round the best call of each (timeit's
    rule: the least disturbed call on a shared machine; each model runs on warm caches, as when it
    serves requests) and the peer / gsbsim ratio of that round."""
    import torch
    from threadpoolctl import threadpool_limits

    x = random_images(np.random.default_rng(0), model, 1)
    xf = np.ascontiguousarray(x.astype(np.float32) / 128.0)
    xt = torch.from_numpy(xf)
    peers = {"timm fp32": lambda: timm_model(xt)}
    ort_call, ort_note = onnx_peer(timm_model, xf)
    if ort_call is not None:
        peers["onnxruntime fp32"] = ort_call
    rows = []
    with threadpool_limits(limits=1), torch.inference_mode():
        torch.set_num_threads(1)
        for _ in range(3):  # warm-up (compilation, caches)
            fast.forward(model, x)
            for call in peers.values():
                call()
        for _ in range(rounds):
            row = [np.min([timed(lambda: fast.forward(model, x)) for _ in range(per_round)], axis=0)]
            row += [np.min([timed(call) for _ in range(per_round)], axis=0) for call in peers.values()]
            rows.append(row)
    r = np.array(rows)                     # [round, contender, (wall, cpu)]
    out = dict(gsb_wall=stats(r[:, 0, 0]), gsb_cpu=stats(r[:, 0, 1]), peers={}, ort_note=ort_note)
    for p, name in enumerate(peers, start=1):
        ratios = {key: r[:, p, c] / r[:, 0, c] for key, c in (("wall", 0), ("cpu", 1))}
        out["peers"][name] = dict(wall=stats(r[:, p, 0]), cpu=stats(r[:, p, 1]),
                                  ratio_wall=stats(ratios["wall"]), ratio_cpu=stats(ratios["cpu"]),
                                  under_wall=int((ratios["wall"] < TARGETS[name]).sum()),
                                  under_cpu=int((ratios["cpu"] < TARGETS[name]).sum()))
    out["rounds"] = rounds
    return out


def bench_throughput(model, timm_model, batch: int, repeats: int) -> dict:
    """Images/s of a batch with 1 and 2 threads (gsbsim: forward_batch; timm: torch threads)."""
    import torch
    from threadpoolctl import threadpool_limits

    x = random_images(np.random.default_rng(1), model, batch)
    xt = torch.from_numpy(x.astype(np.float32) / 128.0)
    want = fast.forward(model, x)[0]
    assert np.array_equal(fast.forward_batch(model, x, threads=2), want)
    out = {}
    with torch.inference_mode():
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with threadpool_limits(limits=threads):
                fast.forward_batch(model, x, threads=threads)
                timm_model(xt)
                g, t = [], []
                for _ in range(max(3, repeats // 3)):
                    g.append(batch / timed(lambda: fast.forward_batch(model, x, threads=threads))[0])
                    t.append(batch / timed(lambda: timm_model(xt))[0])
            out[threads] = dict(gsb=stats(g), timm=stats(t), ratio=stats(np.array(g) / np.array(t)))
    torch.set_num_threads(1)
    return out


def profile(model, repeats: int) -> tuple[dict, dict]:
    """Median seconds per stage (forward_profiled, 1 image, 1 thread) and the total."""
    from threadpoolctl import threadpool_limits

    x = random_images(np.random.default_rng(0), model, 1)
    with threadpool_limits(limits=1):
        fast.forward_profiled(model, x)
        runs = [fast.forward_profiled(model, x)[1] for _ in range(repeats)]
    stages = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
    return stages, dict(total=sum(stages.values()))


def bench_gsb_cost(g3, g1, repeats: int, per_round: int = 3) -> dict:
    """Attention and A.V time of the G=3 model over the G=1 model: per repeat, the best of
    `per_round` profiled runs of each model (alternating)."""
    from threadpoolctl import threadpool_limits

    x = random_images(np.random.default_rng(0), g3, 1)
    att = fast.ATTENTION_PHASES

    def best(model) -> tuple[float, float]:
        runs = [fast.forward_profiled(model, x)[1] for _ in range(per_round)]
        return min(sum(p[k] for k in att) for p in runs), min(p["attention: A.V context"] for p in runs)

    rows = []
    with threadpool_limits(limits=1):
        fast.forward_profiled(g3, x)
        fast.forward_profiled(g1, x)
        for _ in range(repeats):
            (a3, c3), (a1, c1) = best(g3), best(g1)
            rows.append((a3, a1, c3, c1))
    r = np.array(rows)
    return dict(att3=stats(r[:, 0]), att1=stats(r[:, 1]), att_ratio=stats(r[:, 0] / r[:, 1]),
                av3=stats(r[:, 2]), av1=stats(r[:, 3]), av_ratio=stats(r[:, 2] / r[:, 3]))


def bench_methods(models: dict, repeats: int) -> dict:
    """Whole-model thread CPU time per image of each method's model (alternating, best of 3 per round)."""
    x = random_images(np.random.default_rng(0), next(iter(models.values())), 1)
    for m in models.values():
        fast.forward(m, x)                       # compile / warm up
    rows = {name: [] for name in models}
    for _ in range(repeats):
        for name, m in models.items():
            rows[name].append(min(timed(lambda: fast.forward(m, x))[1] for _ in range(3)))
    base = np.asarray(rows["gsb G=1"])
    return {name: (stats(v), stats(np.asarray(v) / base)) for name, v in rows.items()}


def plane_density(model) -> list[float]:
    """Mean density of each attention plane over the 12 blocks (1 image), for the report."""
    x = random_images(np.random.default_rng(0), model, 1)
    tr = fast.forward(model, x, trace=True)[1]
    planes = [tr[f"blocks.{i}.a.planes"][0] for i in range(model.depth)]
    return [float(np.mean([p[a].mean() for p in planes])) for a in range(model.groups)]


def report(lat: dict, thr: dict, stages: dict, total: dict, cost: dict, dens3: list, dens1: list,
           batch: int, repeats: int, command: str, methods: dict) -> str:
    from numba import __version__ as numba_version
    import torch

    lines = [
        SECTION,
        "",
        f"Machine: {machine()}; vector popcount: {vector_isa()}; numba {numba_version}, torch {torch.__version__}.",
        f"Command: `{command}` ({repeats} repeats; median (min-max) over repeats; both models timed in the same",
        "process, alternating; a latency repeat is a round of 5 calls of each model, best call of each). Integer",
        "models: random exports",
        "`python -m reference.export --random --preset deit_tiny --out dt.npz` (G=3) and",
        "`... --groups 1 --out dt_g1.npz` (G=1). timm: `timm.create_model('deit_tiny_patch16_224',",
        "pretrained=False)`, eval, torch.inference_mode, float32. gsbsim.fast is bit-exact (tests/test_fast.py).",
        "",
        "### Latency, 1 image, 1 thread",
        "",
        f"Peers: timm eager (torch.set_num_threads(1)); {lat['ort_note']}"
        + (" (timm's model exported by `torch.onnx.export(..., dynamo=False, opset_version=17)`, 1 intra- and "
           "inter-op thread, sequential, all graph optimisations)." if not lat["ort_note"].startswith("onnxruntime skipped")
           else "."),
        "",
        "| peer | clock | gsbsim.fast (G=3, ms) | peer fp32 (ms) | peer / gsbsim | rounds under the target |",
        "|---|---|---|---|---|---|",
        *[f"| {name} | {clock} | {fmt(lat['gsb_' + key], 1e3, 2)} | {fmt(p[key], 1e3, 2)} | "
          f"{fmt(p['ratio_' + key], 1, 2)}x | {p['under_' + key]} of {lat['rounds']} under {TARGETS[name]:g}x |"
          for name, p in lat["peers"].items() for clock, key in (("thread CPU time", "cpu"), ("wall clock", "wall"))],
        "",
        f"### Batch throughput, {batch} images (images/s, wall clock)",
        "",
        "| threads | gsbsim.engine.fast.forward_batch | timm fp32 | gsbsim / timm |",
        "|---|---|---|---|",
    ]
    for threads, r in thr.items():
        lines.append(f"| {threads} | {fmt(r['gsb'], 1, 0)} | {fmt(r['timm'], 1, 0)} | {fmt(r['ratio'], 1, 2)}x |")
    tot = total["total"]
    lines += [
        "",
        f"### Op split of gsbsim.fast (1 image, 1 thread, median of {repeats} profiled runs per stage, sum "
        f"{tot * 1e3:.2f} ms)",
        "",
        "Thread CPU time per stage (fast.forward_profiled; the attention's phases apportioned by their cycle",
        "counts). The stages are timed on the per-layer path (Python between the layers); fast.forward runs",
        f"the same kernels with one jitted call for all blocks, {lat['gsb_cpu'][0] * 1e3:.2f} ms in the latency table "
        "(thread CPU median), so its glue is below the last row's.",
        "",
        "| stage | ms | share |",
        "|---|---|---|",
    ]
    grouped = {name: sum(stages.get(k, 0.0) for k in keys) for name, keys in STAGE_GROUPS.items()}
    for name, sec in sorted(grouped.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {sec * 1e3:.2f} | {100 * sec / tot:.1f}% |")
    lines += [
        "",
        "### GSB's cost: G=3 vs a plain binary (G=1) model, 12 blocks, 1 image",
        "",
        "Whole attention = split q/k/v + Q.K^T + softmax + attention planes + A.V context + ctx thresholds.",
        f"Attention plane densities (b1, M_2, M_3): G=3 {', '.join(f'{d:.3f}' for d in dens3)}; "
        f"G=1 {', '.join(f'{d:.3f}' for d in dens1)}.",
        "",
        "| | G=3 (ms) | G=1 (ms) | G=3 / G=1 |",
        "|---|---|---|---|",
        f"| whole attention | {fmt(cost['att3'], 1e3, 2)} | {fmt(cost['att1'], 1e3, 2)} | "
        f"{fmt(cost['att_ratio'], 1, 2)}x |",
        f"| A.V context alone | {fmt(cost['av3'], 1e3, 2)} | {fmt(cost['av1'], 1e3, 2)} | "
        f"{fmt(cost['av_ratio'], 1, 2)}x |",
        "",
        "### Other methods: whole model, 1 image, 1 thread (thread CPU time, best of 3 calls per round)",
        "",
        "Random deit_tiny exports `python -m reference.export --random --preset deit_tiny --groups 1 --method M`;",
        "every one bit-exact with the golden path (tests/test_fast.py, tests/test_fast_methods.py).",
        "",
        "| model | ms | / gsb G=1 |",
        "|---|---|---|",
        *[f"| {name} | {fmt(t, 1e3, 2)} | {fmt(r, 1, 2)}x |" for name, (t, r) in methods.items()],
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--model", type=Path, default=CACHE / "deit_tiny_g3.npz")
    parser.add_argument("--model-g1", type=Path, default=CACHE / "deit_tiny_g1.npz")
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = parser.parse_args()
    import timm
    import torch

    g3 = load_model(export(args.model, 3))
    g1 = load_model(export(args.model_g1, 1))
    x = random_images(np.random.default_rng(0), g3, 1)
    assert np.array_equal(fast.forward(g3, x)[0], golden.forward(g3, x)[0])  # benchmark what is correct
    torch.manual_seed(0)
    timm_model = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()

    lat = bench_latency(g3, timm_model, args.repeats)
    thr = bench_throughput(g3, timm_model, args.batch, args.repeats)
    stages, total = profile(g3, args.repeats)
    cost = bench_gsb_cost(g3, g1, args.repeats)
    others = {"gsb G=1": g1, "gsb G=3": g3}
    for method in ("bit", "reactnet", "didb"):
        others[method] = load_model(export(CACHE / f"deit_tiny_{method}.npz", 1, method))
    methods = bench_methods(others, args.repeats)
    command = "python benchmarks/model.py" + (f" --repeats {args.repeats}" if args.repeats != 21 else "") + \
        (f" --batch {args.batch}" if args.batch != 16 else "")
    section = report(lat, thr, stages, total, cost, plane_density(g3), plane_density(g1), args.batch,
                     args.repeats, command, methods)
    print(section)
    if not args.no_write:
        write_section(section, SECTION)


if __name__ == "__main__":
    main()
