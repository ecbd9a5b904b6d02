"""Cycle-level simulation of a process network (gsbsim/hw/process_network.py).

What is modelled, cycle by cycle, for ``images`` consecutive images:

* every process runs its schedule: one loop iteration per cycle at most (II 1, no pipeline
  fill or drain, no cycle between loops), an iteration executes only when all its reads find
  their words in the FIFOs and all its writes find room; otherwise the process stalls that cycle;
* FIFOs of the emitted depths: a word written in cycle t can be read from cycle t + 1, a slot
  freed in cycle t can be written from cycle t + 1 (all processes see the FIFO counts of the
  start of the cycle, so the order in which they are visited does not matter);
* PIPOs with two buffers (ping-pong): a process starts image i when the producers of the arrays
  it reads finished image i (in an earlier cycle), and when the consumers of the arrays it writes
  finished image i - 2; successive images overlap (the top restarted at once, ap_ctrl_chain);
* the ports: ``image`` always has a pixel, ``logits`` and ``pred`` always take a word.

A cycle in which no process can proceed, before every process finished every image, is a
deadlock: the report names each stalled process and what it waits for, in the words of the
C-simulation's report (hls/include/gsb/dataflow.hpp), writers to full FIFOs first.

Speed (Numba): stretches in which only FIFO-free loops run are jumped over in one move (the
tests check that the outcome equals stepping every cycle); 4 DeiT-tiny images at PE 4 / SIMD 32
(25 million cycles, 225 processes) take about half a minute.  ``size_fifos`` sizes the FIFOs
as FINN does, from the largest occupancies of a run with unbounded FIFOs.

Not modelled: the HLS schedules themselves (pipeline depth, loops whose II exceeds 1, the
divider of a softmax row, memory ports of the arrays, nested-loop overhead); docs/hls.md §5.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numba
import numpy as np

from gsbsim.hw.process_network import PORTS, Loop, Network, Rep, iterations

__all__ = ["SimResult", "simulate", "analytic_bound", "size_fifos"]

_LOOP, _REP, _END = 0, 1, 2
_RUN, _WAIT, _DONE = 0, 1, 2
_BIG = 1 << 60


@numba.njit(cache=True)
def _control_step(p, pc, sp, stk_pc, stk_n, ins_kind, ins_a, ins_b) -> bool:
    """One control instruction of process p's program; True (pc unchanged) when pc is at a loop
    with iterations. A loop of 0 iterations is skipped; a Rep pushes its count (or is skipped
    when 0); an end-of-Rep jumps back while its count lasts, else pops."""
    c = pc[p]
    kd = ins_kind[c]
    if kd == _LOOP:
        if ins_a[c] > 0:
            return True
        pc[p] += 1
    elif kd == _REP:
        if ins_a[c] == 0:
            pc[p] = ins_b[c] + 1
        else:
            stk_pc[p, sp[p]] = c
            stk_n[p, sp[p]] = ins_a[c]
            sp[p] += 1
            pc[p] += 1
    else:
        stk_n[p, sp[p] - 1] -= 1
        if stk_n[p, sp[p] - 1] > 0:
            pc[p] = stk_pc[p, sp[p] - 1] + 1
        else:
            sp[p] -= 1
            pc[p] += 1
    return False


@numba.njit(cache=True)
def _run(ins_kind, ins_a, ins_b, ins_c, io_fifo, io_write, io_p0, io_plen, pat, prog0, prog1,
         depth, src, in_ptr, in_idx, out_ptr, out_idx, gate, images, max_cycles, jump):
    P, F = prog0.shape[0], depth.shape[0]
    wr = np.zeros(F, np.int64)
    rd = np.zeros(F, np.int64)
    wr_t = np.full(F, -1, np.int64)
    rd_t = np.full(F, -1, np.int64)
    wr_w = np.zeros(F, np.int64)
    rd_w = np.zeros(F, np.int64)
    max_occ = np.zeros(F, np.int64)
    state = np.full(P, _WAIT, np.int64)
    img = np.zeros(P, np.int64)
    pc = prog0.copy()
    it = np.zeros(P, np.int64)
    stk_pc = np.zeros((P, 8), np.int64)
    stk_n = np.zeros((P, 8), np.int64)
    sp = np.zeros(P, np.int64)
    fin = np.zeros(P, np.int64)
    fin_t = np.full(P, -1, np.int64)
    start = np.full((P, images), -1, np.int64)
    finish = np.full((P, images), -1, np.int64)
    busy = np.zeros(P, np.int64)
    st_rd = np.zeros(P, np.int64)
    st_wr = np.zeros(P, np.int64)
    st_pipo = np.zeros(P, np.int64)
    blk_kind = np.zeros(P, np.int64)   # 1 read empty, 2 write full, 3 PIPO input, 4 PIPO buffer, 5 paced input
    blk_what = np.full(P, -1, np.int64)
    done = 0
    t = 0
    deadlock = False
    ran = np.full(P, -1, np.int64)      # the last cycle each process executed an iteration
    while t < max_cycles:
        progress = False
        io_any = False      # an iteration this cycle touched a FIFO, ended a loop or started a process
        ahead = _BIG        # iterations every running I/O-free loop could go on for
        paced = _BIG        # the next cycle an input process may take an image (gate > 0)
        for p in range(P):
            if state[p] == _DONE:
                continue
            if state[p] == _WAIT:
                i = img[p]
                if gate[p] > 0 and t < i * gate[p]:
                    paced = min(paced, i * gate[p])
                    blk_kind[p] = 5
                    continue
                ok = True
                for k in range(in_ptr[p], in_ptr[p + 1]):
                    q = in_idx[k]
                    if fin[q] - (1 if fin_t[q] == t else 0) < i + 1:
                        ok = False
                        blk_kind[p] = 3
                        blk_what[p] = q
                        break
                if ok:
                    for k in range(out_ptr[p], out_ptr[p + 1]):
                        q = out_idx[k]
                        if fin[q] - (1 if fin_t[q] == t else 0) < i - 1:
                            ok = False
                            blk_kind[p] = 4
                            blk_what[p] = q
                            break
                if not ok:
                    if i > 0 or start[p, 0] >= 0:
                        st_pipo[p] += 1
                    continue
                state[p] = _RUN
                io_any = True
                start[p, i] = t
                pc[p] = prog0[p]
                it[p] = 0
                sp[p] = 0
                # enter the program: control instructions up to the first loop with iterations
                while not _control_step(p, pc, sp, stk_pc, stk_n, ins_kind, ins_a, ins_b):
                    pass
            # one iteration of the loop at pc
            c = pc[p]
            ok = True
            for j in range(ins_b[c], ins_c[c]):
                w = pat[io_p0[j] + it[p] % io_plen[j]]
                if w == 0:
                    continue
                f = io_fifo[j]
                if io_write[j]:
                    if depth[f] > 0:
                        r0 = rd[f] - (rd_w[f] if rd_t[f] == t else 0)
                        if wr[f] - r0 + w > depth[f]:
                            ok = False
                            blk_kind[p] = 2
                            blk_what[p] = f
                            break
                elif not src[f]:
                    w0 = wr[f] - (wr_w[f] if wr_t[f] == t else 0)
                    if w0 - rd[f] < w:
                        ok = False
                        blk_kind[p] = 1
                        blk_what[p] = f
                        break
            if not ok:
                if blk_kind[p] == 1:
                    st_rd[p] += 1
                else:
                    st_wr[p] += 1
                continue
            for j in range(ins_b[c], ins_c[c]):
                w = pat[io_p0[j] + it[p] % io_plen[j]]
                if w == 0:
                    continue
                f = io_fifo[j]
                if io_write[j]:
                    wr[f] += w
                    wr_t[f] = t
                    wr_w[f] = w
                    if wr[f] - rd[f] > max_occ[f]:
                        max_occ[f] = wr[f] - rd[f]
                else:
                    rd[f] += w
                    rd_t[f] = t
                    rd_w[f] = w
            progress = True
            busy[p] += 1
            ran[p] = t
            blk_kind[p] = 0
            it[p] += 1
            if ins_b[c] != ins_c[c]:
                io_any = True
            if it[p] < ins_a[c]:
                ahead = min(ahead, ins_a[c] - it[p] - 1)
                continue
            io_any = True
            it[p] = 0
            pc[p] += 1
            while True:
                if pc[p] == prog1[p]:
                    finish[p, img[p]] = t
                    fin[p] += 1
                    fin_t[p] = t
                    img[p] += 1
                    if img[p] == images:
                        state[p] = _DONE
                        done += 1
                    else:
                        state[p] = _WAIT
                    break
                if _control_step(p, pc, sp, stk_pc, stk_n, ins_kind, ins_a, ins_b):
                    break
        t += 1
        if done == P:
            break
        if not progress:
            if paced < _BIG:      # only the paced input waits: go to its next image
                t = paced
                continue
            deadlock = True
            break
        if jump and not io_any and ahead > 0 and paced > t:
            # nothing a stalled process waits for changed this cycle, and every running process is
            # inside a loop without FIFO access: jump ahead over the cycles until one of them
            # reaches its last iteration (the same outcome as stepping, in one move)
            s = min(ahead, max_cycles - t, paced - t)
            for p in range(P):
                if state[p] == _DONE:
                    continue
                if ran[p] == t - 1:
                    it[p] += s
                    busy[p] += s
                elif state[p] == _WAIT:
                    if img[p] > 0 and blk_kind[p] != 5:
                        st_pipo[p] += s
                elif blk_kind[p] == 1:
                    st_rd[p] += s
                else:
                    st_wr[p] += s
            t += s
    return (t, deadlock, start, finish, busy, st_rd, st_wr, st_pipo, blk_kind, blk_what, state, img,
            wr, rd, max_occ)


@dataclass
class SimResult:
    """The outcome of ``simulate``; cycles are counted from 0 (the first pixel read)."""
    network: Network
    images: int
    cycles: int                              # cycles simulated
    deadlock: list[str]                      # empty, or the report (first line, then one per stalled process)
    start: dict[str, list[int]]              # per process: the cycle it started each image
    finish: dict[str, list[int]]             # per process: the cycle of its last iteration of each image
    busy: dict[str, int]                     # iterations executed (all images)
    stalls: dict[str, dict[str, int]]        # per process: cycles stalled on a read, a write, a PIPO
    max_occupancy: dict[str, int]            # per FIFO: the most words it held
    clock_mhz: float = 200.0
    bound: dict = field(default_factory=dict)

    @property
    def completions(self) -> list[int]:
        """The cycle after each image's last output word (the slowest of the output processes)."""
        outs = [fi.producer for fi in self.network.fifos if fi.consumer is None and fi.producer]
        return [max(self.finish[p][k] for p in outs) + 1 for k in range(self.images)]

    @property
    def latency(self) -> int:
        """Cycles from the first pixel of image 0 to its last output (an empty pipeline)."""
        return self.completions[0] - self.start["load_image"][0]

    @property
    def intervals(self) -> list[int]:
        c = self.completions
        return [b - a for a, b in zip(c, c[1:])]

    @property
    def ii(self) -> float:
        """The achieved initiation interval: the mean interval between completed images over the
        second half of the run (the first images fill the pipeline; the intervals may alternate)."""
        c = self.completions
        if len(c) < 2:
            return float(self.latency)
        h = (len(c) - 1) // 2
        return (c[-1] - c[h]) / (len(c) - 1 - h)

    @property
    def fps(self) -> float:
        return self.clock_mhz * 1e6 / self.ii

    def top_stalled(self, k: int = 5, kinds: tuple[str, ...] = ("read", "write", "pipo")) -> list[tuple[str, int, str]]:
        """The k processes that stalled longest on ``kinds``: (name, stall cycles, breakdown)."""
        rows = sorted(self.stalls.items(), key=lambda kv: (-sum(kv[1][x] for x in kinds), kv[0]))[:k]
        return [(n, sum(s[x] for x in kinds), ", ".join(f"{k2} {v}" for k2, v in s.items() if v)) for n, s in rows]

    def to_dict(self) -> dict:
        out = {"images": self.images, "cycles": self.cycles, "deadlock": self.deadlock,
               "clock_mhz": self.clock_mhz, "analytic_bound": self.bound}
        if not self.deadlock:
            out.update({"latency": self.latency, "ii": self.ii, "intervals": self.intervals, "fps": self.fps,
                        "completions": self.completions})
        out["stalls"] = {n: s for n, s in self.stalls.items()}
        out["busy"] = self.busy
        out["max_occupancy"] = self.max_occupancy
        return out


def analytic_bound(net: Network) -> dict:
    """The bound the simulation is checked against: the largest per-image iteration count of any
    process (all its loops).  At one iteration per cycle no process can take a
    new image faster, so the achieved II is at least this."""
    per = {p.name: iterations(p.schedule) for p in net.processes}
    name = max(per, key=lambda k: per[k])
    return {"ii": per[name], "process": name}


def _compile(net: Network, depth_cap: int | None, depths: Mapping[str, int], pace: int):
    fidx = {fi.name: k for k, fi in enumerate(net.fifos)}
    kind, a, bb, cc = [], [], [], []
    io_fifo, io_write, io_p0, io_plen, pat = [], [], [], [], []
    prog0, prog1 = [], []

    def emit(items) -> None:
        for item in items:
            if isinstance(item, Rep):
                at = len(kind)
                kind.append(_REP), a.append(item.count), bb.append(0), cc.append(0)
                emit(item.body)
                bb[at] = len(kind)
                kind.append(_END), a.append(0), bb.append(at), cc.append(0)
            else:
                assert isinstance(item, Loop)
                kind.append(_LOOP), a.append(item.trip), bb.append(len(io_fifo))
                for io in item.io:
                    io_fifo.append(fidx[io.stream]), io_write.append(io.write)
                    io_p0.append(len(pat)), io_plen.append(len(io.pattern))
                    pat.extend(io.pattern)
                cc.append(len(io_fifo))

    for p in net.processes:
        prog0.append(len(kind))
        emit(p.schedule)
        prog1.append(len(kind))
    pidx = {p.name: k for k, p in enumerate(net.processes)}
    in_ptr, in_idx, out_ptr, out_idx = [0], [], [0], []
    for p in net.processes:
        ins = sorted({pidx[q.producer] for q in net.pipos if p.name in q.consumers})
        outs = sorted({pidx[c] for q in net.pipos if q.producer == p.name for c in q.consumers})
        in_idx += ins
        out_idx += outs
        in_ptr.append(len(in_idx))
        out_ptr.append(len(out_idx))
    unknown = sorted(set(depths) - set(fidx))
    if unknown:
        raise ValueError(f"no FIFO named {unknown[0]} in the network")
    depth = [depths.get(fi.name, fi.depth) for fi in net.fifos]
    depth = [0 if fi.name in PORTS else (min(d, depth_cap) if depth_cap else d) for fi, d in zip(net.fifos, depth)]
    src = [fi.producer is None for fi in net.fifos]
    readers = {fi.consumer for fi in net.fifos if fi.producer is None}
    gate = [pace if p.name in readers else 0 for p in net.processes]
    i64 = lambda x: np.asarray(x, np.int64)   # noqa: E731
    return (i64(kind), i64(a), i64(bb), i64(cc), i64(io_fifo), np.asarray(io_write, np.bool_), i64(io_p0),
            i64(io_plen), i64(pat), i64(prog0), i64(prog1), i64(depth), np.asarray(src, np.bool_),
            i64(in_ptr), i64(in_idx), i64(out_ptr), i64(out_idx), i64(gate)), depth


def simulate(net: Network, images: int = 4, depth_cap: int | None = None, clock_mhz: float = 200.0,
             max_cycles: int | None = None, depths: Mapping[str, int] | None = None,
             jump: bool = True, pace: int = 0) -> SimResult:
    """Simulate ``images`` images through ``net``: every FIFO at its depth, or ``depths[name]``,
    and at most ``depth_cap`` deep if given.  ``jump``: skip over stretches in which only
    FIFO-free loops run (same result, faster; False steps every cycle, for the tests).
    ``pace`` > 0: the input takes image i no earlier than cycle i * pace (0: whenever it can)."""
    if images < 1:
        raise ValueError(f"images must be at least 1, got {images}")
    arrays, depth = _compile(net, depth_cap, depths or {}, pace)
    bound = analytic_bound(net)
    total = sum(iterations(p.schedule) for p in net.processes)
    limit = max_cycles if max_cycles is not None else images * (total + pace) + 16
    (t, dead, start, finish, busy, st_rd, st_wr, st_pipo, bk, bw, state, img, wr, rd,
     occ) = _run(*arrays, images, limit, jump)
    names = [p.name for p in net.processes]
    report: list[str] = []
    if dead or t >= limit and not all(state == _DONE):
        report = _deadlock_report(net, names, state, img, bk, bw, wr, rd, depth)
    return SimResult(net, images, int(t), report,
                     {n: [int(x) for x in start[k]] for k, n in enumerate(names)},
                     {n: [int(x) for x in finish[k]] for k, n in enumerate(names)},
                     {n: int(busy[k]) for k, n in enumerate(names)},
                     {n: {"read": int(st_rd[k]), "write": int(st_wr[k]), "pipo": int(st_pipo[k])}
                      for k, n in enumerate(names)},
                     {fi.name: int(occ[k]) for k, fi in enumerate(net.fifos)}, clock_mhz, bound)


def _deadlock_report(net: Network, names, state, img, bk, bw, wr, rd, depth) -> list[str]:
    first, rest = [], []
    for k, n in enumerate(names):
        if state[k] == _DONE:
            continue
        label = net.processes[k].label   # the name in the top, as the C-simulation reports it
        kind, what = int(bk[k]), int(bw[k])
        if kind in (1, 2):
            fi = net.fifos[what]
            if kind == 2:
                first.append(f"  process {label}: gsb::stream '{fi.name}': write to a full stream "
                             f"(depth {depth[what]}, {int(rd[what])} elements read so far)")
            else:
                rest.append(f"  process {label}: gsb::stream '{fi.name}': read from an empty stream "
                            f"({int(rd[what])} elements read so far)")
        elif kind == 3:
            rest.append(f"  process {label}: waiting for process "
                        f"{', '.join(net.process(q).label for q in _waited(net, n, names, img))} to finish (PIPO)")
        else:
            rest.append(f"  process {label}: waiting for process {net.processes[what].label} to release a PIPO buffer "
                        f"(image {int(img[k])})")
    return [f"image {int(min(img[k] for k in range(len(names)) if state[k] != _DONE))}: "
            "DEADLOCK: every process of the dataflow is blocked"] + first + rest


def size_fifos(net: Network, images: int = 4) -> tuple[dict[str, int], SimResult]:
    """FIFO depths that let the network reach its analytic bound, sized as FINN does
    (InsertAndSetFIFODepths): simulate with unbounded FIFOs, the input paced at one image per
    bound, and take each FIFO's largest occupancy (at least the default depth 2).  Returns
    the depths and the paced, unbounded run."""
    from gsbsim.hw.fifo_depth import DEFAULT_DEPTH
    pace = analytic_bound(net)["ii"]
    free = simulate(net, images, depths={fi.name: _BIG for fi in net.fifos if fi.name not in PORTS}, pace=pace)
    if free.deadlock:   # pragma: no cover - unbounded FIFOs cannot block a write
        raise RuntimeError("\n".join(free.deadlock))
    return ({fi.name: max(free.max_occupancy[fi.name], DEFAULT_DEPTH) for fi in net.fifos
             if fi.name not in PORTS}, free)


def _waited(net: Network, name: str, names: list[str], img) -> list[str]:
    """The PIPO producers ``name`` still waits for, less those another of them waits for in turn
    (the C-simulation names the ``after`` list of the generated call, which leaves those out)."""
    k = {n: i for i, n in enumerate(names)}
    todo = [q for q in net.after(name) if img[k[q]] <= img[k[name]]]

    def ancestors(q: str) -> set[str]:
        seen, stack = set(), list(net.after(q))
        while stack:
            x = stack.pop()
            if x not in seen:
                seen.add(x)
                stack += net.after(x)
        return seen

    implied = set().union(*(ancestors(q) for q in todo)) if todo else set()
    return [q for q in todo if q not in implied]
