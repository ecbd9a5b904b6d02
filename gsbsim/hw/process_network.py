"""The process network of a generated dataflow: processes, FIFOs, PIPO arrays and loop schedules.

A generated top (gsbsim/hlsgen/project.py, blocks.py) is a DATAFLOW of regions (``embed``,
``blocks.i``, ``head``) whose processes are the kernels of hls/include/gsb.  This module
describes the same network for a model and a folding, flattened over the regions:

* a **FIFO** per stream, with its producer, consumer and depth (the deadlock-free minimum of
  gsbsim/hw/fifo_depth.py; the generator emits these, or sized ones, through
  gsbsim/hw/fifo_plan.py); the top's ports (``image``,
  ``logits``, ``pred``) are FIFOs with no producer or no consumer;
* a **PIPO** per whole-tensor array between processes (the ``after`` lists of the generated
  calls): its consumers start when its producer finished the image; two buffers (ping-pong),
  so the producer starts image i only when every consumer finished image i - 2;
* for every process its **schedule**, the sequence of pipelined loops as the kernel is written
  (a ``Loop``: trip count and, per stream, the words read or written at each iteration, II 1),
  nested in ``Rep`` where the kernel repeats a group of loops (per token, head, row, vector).

The iterations of every process equal gsbsim's analytic counts
(gsbsim/hw/folding.py for the matrix layers, stage_iterations for the rest), which the tests
check, so a kernel changed on one side shows up.  gsbsim/hw/cycle_sim.py simulates the network.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Union

from gsbsim.format.methods import method_of
from gsbsim.hw.fifo_depth import DEFAULT_DEPTH, skip_depths
from gsbsim.hw.folding import Fold
from gsbsim.hw.stages import FOLDABLE, ISQRT_STEPS, lanes_per_cycle, pe_of, stream_lanes

__all__ = ["IO", "Loop", "Rep", "Process", "Fifo", "Pipo", "Network", "ISQRT_STEPS", "build_network",
           "iterations", "stream_words"]

PORTS = ("image", "logits", "pred")


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class IO:
    """One stream access of a loop: at iteration i, ``pattern[i % len(pattern)]`` words."""
    stream: str
    write: bool
    pattern: tuple[int, ...] = (1,)


@dataclass(frozen=True)
class Loop:
    trip: int
    io: tuple[IO, ...] = ()


@dataclass(frozen=True)
class Rep:
    count: int
    body: tuple["Item", ...]


Item = Union[Loop, Rep]


@dataclass(frozen=True)
class Process:
    name: str            # unique in the network
    label: str           # the name in the generated top (the two DIDB Q.K^T processes share one)
    region: str
    schedule: tuple[Item, ...]


@dataclass(frozen=True)
class Fifo:
    name: str
    producer: str | None     # None: a top input port
    consumer: str | None     # None: a top output port
    depth: int               # 0 for a port (unbounded)
    words: int               # per image


@dataclass(frozen=True)
class Pipo:
    name: str
    producer: str
    consumers: tuple[str, ...]


@dataclass
class Network:
    processes: list[Process]
    fifos: list[Fifo]
    pipos: list[Pipo]
    meta: dict = field(default_factory=dict)

    def process(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name)

    def after(self, name: str) -> list[str]:
        """The processes whose PIPO arrays ``name`` reads (what it waits for)."""
        return sorted({q.producer for q in self.pipos if name in q.consumers})


def iterations(items: tuple[Item, ...]) -> int:
    """Loop iterations of a schedule per image."""
    n = 0
    for it in items:
        if isinstance(it, Rep):
            n += it.count * iterations(it.body)
        else:
            n += it.trip
    return n


def _loop_words(lp: Loop, io: IO) -> int:
    k, pat = len(io.pattern), io.pattern
    return (lp.trip // k) * sum(pat) + sum(pat[: lp.trip % k])


def stream_words(items: tuple[Item, ...]) -> dict[tuple[str, bool], int]:
    """Words read (False) and written (True) per stream per image by a schedule."""
    out: dict[tuple[str, bool], int] = {}
    for it in items:
        if isinstance(it, Rep):
            for k, v in stream_words(it.body).items():
                out[k] = out.get(k, 0) + it.count * v
        else:
            for io in it.io:
                key = (io.stream, io.write)
                out[key] = out.get(key, 0) + _loop_words(it, io)
    return out


# ---------------------------------------------------------------------------- kernel schedules
def _every(period: int, phase: int = 0) -> tuple[int, ...]:
    """One word every ``period`` iterations, at iteration ``phase`` of each period."""
    return tuple(1 if j == phase else 0 for j in range(period))


def _r(stream: str, pattern: tuple[int, ...] = (1,)) -> IO:
    return IO(stream, False, pattern)


def _w(stream: str, pattern: tuple[int, ...] = (1,)) -> IO:
    return IO(stream, True, pattern)


def _loops(*loops: Loop) -> tuple[Item, ...]:
    return tuple(lp for lp in loops if lp.trip > 0)


def mvau(src: str | None, dst: str, mw: int, mh: int, fold: Fold, reps: int) -> tuple[Item, ...]:
    """gsb/mvau.hpp: reps x NF*SF iterations; the SF input words of a vector are read in its first
    neuron fold (then buffered), an output word is written at the last synapse fold of each."""
    sf, nf = _cdiv(mw, fold.simd), mh // fold.pe
    out = _w(dst, _every(sf, sf - 1))
    first = Loop(sf, ((_r(src),) if src else ()) + (out,))
    return (Rep(reps, _loops(first, Loop((nf - 1) * sf, (out,)))),)


def layernorm(src: str, dst: str, e: int, simd: int, tokens: int, lanes: int = 1) -> tuple[Item, ...]:
    """gsb/layernorm.hpp layernorm_bits: per token, read E/lanes words (statistics), isqrt, then
    one SIMD-bit output word per cycle."""
    return (Rep(tokens, (Loop(e // lanes, (_r(src),)), Loop(ISQRT_STEPS), Loop(_cdiv(e, simd), (_w(dst),)))),)


def _lanes_io(stream: str, lanes: int, chunk: int, write: bool) -> IO:
    """A residual-stream word of ``lanes`` lanes in a loop of ``chunk`` channels per iteration
    (gsb/lanes.hpp): read at the first chunk of the word, written at its last."""
    k = lanes // chunk
    return _w(stream, _every(k, k - 1)) if write else _r(stream, _every(k))


def _streamwise(n: int, *io: IO) -> tuple[Item, ...]:
    return (Loop(n, io),)


@dataclass
class _Builder:
    processes: list[Process] = field(default_factory=list)
    fifos: dict[str, list] = field(default_factory=dict)    # name -> [producer, consumer, depth]
    pipos: list[Pipo] = field(default_factory=list)

    def proc(self, name: str, region: str, schedule: tuple[Item, ...], label: str | None = None) -> None:
        self.processes.append(Process(name, label or name, region, schedule))
        for it in _flat(schedule):
            for io in it.io:
                f = self.fifos.setdefault(io.stream, [None, None, 0])
                f[0 if io.write else 1] = name

    def depth(self, stream: str, depth: int) -> None:
        self.fifos.setdefault(stream, [None, None, 0])[2] = depth


def _flat(items: tuple[Item, ...]):
    for it in items:
        if isinstance(it, Rep):
            yield from _flat(it.body)
        else:
            yield it


def build_network(header: Mapping[str, Any], folding: Mapping[str, Fold]) -> Network:
    """The process network of the top ``gsbsim hls`` generates for this model and folding."""
    e, n, h, d = (int(header[k]) for k in ("embed_dim", "num_tokens", "num_heads", "head_dim"))
    hd, g, c = int(header["mlp_hidden"]), int(header["groups"]), int(header["num_classes"])
    cin, img, p = int(header["in_chans"]), int(header["img_size"]), int(header["patch_size"])
    depth = int(header["depth"])
    f = method_of(header["method"])
    act, didb = f.act_unit, f.attention == "hfsc_diba"
    t, kp = n - 2, cin * p * p
    b = _Builder()

    # ---- embed region (project.py embed_stage)
    patch = folding["patch"]
    lanes = stream_lanes(header, folding)          # lanes of the image and residual words each writer writes
    per = lanes_per_cycle(header, folding)         # channels per iteration of each residual-stream process
    b.proc("load_image", "embed", _streamwise(cin * img * img // per["load_image"], _r("image")))
    b.proc("im2col", "embed", _streamwise(t * _cdiv(kp, patch.simd), _w("patch.in")))
    b.pipos.append(Pipo("pixels", "load_image", ("im2col",)))
    b.proc("patch", "embed", mvau("patch.in", "patch.acc", kp, e, patch, t))
    m = per["embed"]
    out = _lanes_io("embed", lanes["embed"], m, True)
    b.proc("embed", "embed", _loops(Loop(2 * e // m, (out,)),
                                    Loop(t * e // m, (_r("patch.acc", _every(patch.pe // m)), out))))
    for s in ("patch.in", "patch.acc", "embed"):
        b.depth(s, DEFAULT_DEPTH)

    # ---- blocks (blocks.py block_cpp)
    x_in = "embed"
    for i in range(depth):
        r, pre = f"blocks.{i}", f"blocks.{i}."
        fo = {k: folding[pre + k] for k in ("qkv", "qk", "av", "proj", "fc1", "fc2")}
        spe = {k: pe_of(folding, pre + k) for k in FOLDABLE}   # stage PEs
        x_out = pre + "resid2"
        l1, lp, l2 = per[pre + "fork1"], lanes[pre + "proj_residual"], lanes[pre + "fc2_residual"]
        skip1, skip2 = (dep // w for dep, w in zip(skip_depths(n, e), (l1, lp)))   # in words of their lanes
        qk_sf, av_sf = _cdiv(d, fo["qk"].simd), _cdiv(n, fo["av"].simd)

        def acc_or_z(lin: str) -> str:
            return pre + (f"{lin}.z" if act else f"{lin}.acc")

        def act_unit(lin: str, rows: int) -> None:
            if act:
                b.proc(pre + f"{lin}.act", r, _streamwise(n * (rows // fo[lin].pe), _r(pre + f"{lin}.acc"),
                                                          _w(pre + f"{lin}.z")))

        b.proc(pre + "fork1", r, _streamwise(n * e // l1, _r(x_in), _w(pre + "x_ln1"), _w(pre + "x_skip1")))
        b.proc(pre + "ln1", r, layernorm(pre + "x_ln1", pre + "ln1.bits", e, fo["qkv"].simd, n, l1))
        b.proc(pre + "qkv", r, mvau(pre + "ln1.bits", pre + "qkv.acc", e, 3 * e, fo["qkv"], n))
        act_unit("qkv", 3 * e)
        split_read = Loop(n * (3 * e // fo["qkv"].pe), (_r(acc_or_z("qkv")),))
        if didb:
            b.proc(pre + "qkv_split", r, (split_read,))                    # gsb/haar.hpp qkv_z_split
            b.proc(pre + "haar", r, _loops(Loop(n * 2 * e)))
            b.pipos.append(Pipo("zqk", pre + "qkv_split", (pre + "haar",)))
            qk_src = pre + "haar"
        else:
            b.proc(pre + "qkv_split", r, (split_read,))
            qk_src = pre + "qkv_split"
        vp = h * n * (d // spe["value_planes"])
        b.proc(pre + "value_planes", r, _loops(Loop(vp), Loop(vp)))
        b.pipos.append(Pipo("vq", pre + "qkv_split", (pre + "value_planes",)))

        def qk(dst: str) -> tuple[Item, ...]:
            """gsb/attention_qk.hpp: per head, the query rows copied into the unit's input FIFO
            (deep enough for all of them, inside the process), then the MVAU."""
            return (Rep(h, (Loop(n * qk_sf),) + mvau(None, dst, d, n, fo["qk"], n)),)

        def softmax(src: str) -> tuple[Item, ...]:
            """gsb/softmax.hpp (and softmax_hfsc): per row, read N/PE words (row max), N exps,
            the reciprocal, N probabilities; exps and probabilities the softmax's PE at a time."""
            sm = n // spe["softmax"]
            return (Rep(h * n, (Loop(n // fo["qk"].pe, (_r(src),)), Loop(sm), Loop(1), Loop(sm))),)

        if didb:
            for band in ("low", "high"):
                b.proc(pre + f"qk.{band}", r, qk(pre + f"scores.{band}"), label=pre + "qk")
            b.pipos.append(Pipo("q_rows, k_tiles", qk_src, (pre + "qk.low", pre + "qk.high")))
            b.proc(pre + "hfsc", r, _streamwise(h * n * (n // fo["qk"].pe), _r(pre + "scores.low"),
                                                _r(pre + "scores.high"), _w(pre + "hfsc")))
            b.proc(pre + "softmax", r, softmax(pre + "hfsc"))
        else:
            b.proc(pre + "qk", r, qk(pre + "scores"))
            b.pipos.append(Pipo("q_rows, k_tiles", qk_src, (pre + "qk",)))
            b.proc(pre + "softmax", r, softmax(pre + "scores"))
        ap = h * n * (n // spe["attention_planes"])
        b.proc(pre + "attention_planes", r, _loops(Loop(ap), Loop(ap)))
        b.pipos.append(Pipo("att", pre + "softmax", (pre + "attention_planes",)))
        av_loop = (Loop(h * g * g * n * (d // fo["av"].pe) * av_sf),)
        if didb:   # gsb/diba.hpp: the fork feeds av and diba; av writes ctx_av, diba ctx (lap: C-sim only)
            b.proc(pre + "diba_fork", r, _loops(Loop(h * n * av_sf), Loop(h * (d // fo["av"].pe) * av_sf)))
            b.pipos.append(Pipo("a_rows", pre + "attention_planes", (pre + "diba_fork",)))
            b.pipos.append(Pipo("v_tiles", pre + "value_planes", (pre + "diba_fork",)))
            b.proc(pre + "av", r, av_loop)
            b.pipos.append(Pipo("a_av, v_av", pre + "diba_fork", (pre + "av",)))
            b.proc(pre + "diba", r, (Loop(h * n * d),))
            b.pipos.append(Pipo("a_ones, v_sign", pre + "diba_fork", (pre + "diba",)))
            b.pipos.append(Pipo("ctx_av", pre + "av", (pre + "diba",)))
            b.pipos.append(Pipo("ctx", pre + "diba", (pre + "ctx_threshold",)))
        else:
            b.proc(pre + "av", r, av_loop)
            b.pipos.append(Pipo("a_rows", pre + "attention_planes", (pre + "av",)))
            b.pipos.append(Pipo("v_tiles", pre + "value_planes", (pre + "av",)))
            b.pipos.append(Pipo("ctx", pre + "av", (pre + "ctx_threshold",)))
        b.proc(pre + "ctx_threshold", r, (Loop(n * _cdiv(e, fo["proj"].simd), (_w(pre + "proj.bits"),)),))
        b.proc(pre + "proj", r, mvau(pre + "proj.bits", pre + "proj.acc", e, e, fo["proj"], n))
        act_unit("proj", e)
        m = per[pre + "proj_residual"]
        b.proc(pre + "proj_residual", r, _streamwise(n * e // m, _r(acc_or_z("proj"), _every(fo["proj"].pe // m)),
                                                     _lanes_io(pre + "x_skip1", l1, m, False),
                                                     _lanes_io(pre + "resid1", lp, m, True)))
        b.proc(pre + "fork2", r, _streamwise(n * e // lp, _r(pre + "resid1"), _w(pre + "x_ln2"), _w(pre + "x_skip2")))
        b.proc(pre + "ln2", r, layernorm(pre + "x_ln2", pre + "ln2.bits", e, fo["fc1"].simd, n, lp))
        b.proc(pre + "fc1", r, mvau(pre + "ln2.bits", pre + "fc1.acc", e, hd, fo["fc1"], n))
        act_unit("fc1", hd)
        pe1, simd2 = fo["fc1"].pe, fo["fc2"].simd
        bits = tuple(sum(1 for rr in range(nf * pe1, (nf + 1) * pe1) if rr % simd2 == simd2 - 1 or rr == hd - 1)
                     for nf in range(hd // pe1))      # gsb/binarize.hpp: words completed per input word
        b.proc(pre + "fc1_act", r, _streamwise(n * (hd // pe1), _r(acc_or_z("fc1")), _w(pre + "fc1.bits", bits)))
        b.proc(pre + "fc2", r, mvau(pre + "fc1.bits", pre + "fc2.acc", hd, e, fo["fc2"], n))
        act_unit("fc2", e)
        m = per[pre + "fc2_residual"]
        b.proc(pre + "fc2_residual", r, _streamwise(n * e // m, _r(acc_or_z("fc2"), _every(fo["fc2"].pe // m)),
                                                    _lanes_io(pre + "x_skip2", lp, m, False),
                                                    _lanes_io(x_out, l2, m, True)))
        for s, dep in b.fifos.items():
            if s.startswith(pre) and not dep[2]:
                b.depth(s, DEFAULT_DEPTH)
        b.depth(pre + "x_skip1", skip1)
        b.depth(pre + "x_skip2", skip2)
        b.depth(x_out, DEFAULT_DEPTH)
        x_in = x_out

    # ---- head region (project.py head_stage)
    head = folding["head"]
    last = per["final_norm"]
    b.proc("final_norm", "head", (Rep(2, (Loop(e // last, (_r(x_in),)), Loop(ISQRT_STEPS),
                                          Loop(_cdiv(e, head.simd), (_w("head.q"),)))),
                                  Loop((n - 2) * e // last, (_r(x_in),))))
    b.proc("head", "head", mvau("head.q", "head.acc", e, c, head, 2))   # head, then head_dist: one process
    b.proc("logits", "head", _loops(Loop(c // head.pe, (_r("head.acc"),)),
                                    Loop(c // head.pe, (_r("head.acc"), _w("logits.words")))))
    b.proc("logits_out", "head", _streamwise(c, _r("logits.words", _every(head.pe)), _w("logits"),
                                             _w("logits.argmax", _every(head.pe))))
    b.proc("argmax", "head", _streamwise(c // head.pe, _r("logits.argmax"),
                                         _w("pred", _every(c // head.pe, c // head.pe - 1))))
    for s in ("head.q", "head.acc", "logits.words", "logits.argmax"):
        b.depth(s, DEFAULT_DEPTH)

    words: dict[str, int] = {}
    for pr in b.processes:
        for (s, wr), v in stream_words(pr.schedule).items():
            if wr or s == "image":
                words[s] = v
    fifos = [Fifo(s, prod, cons, 0 if s in PORTS else dep, words.get(s, 0))
             for s, (prod, cons, dep) in b.fifos.items()]
    meta = {"method": header["method"], "num_tokens": n, "embed_dim": e, "depth": depth}
    return Network(b.processes, fifos, b.pipos, meta)


def check_network(net: Network) -> list[str]:
    """Consistency problems of a network (empty when sound): every FIFO one producer and one
    consumer (ports: one side), the words written per image equal those read, depths >= 1."""
    probs = []
    reads: dict[str, int] = {}
    for pr in net.processes:
        for (s, wr), v in stream_words(pr.schedule).items():
            if not wr:
                reads[s] = reads.get(s, 0) + v
    for fi in net.fifos:
        port = fi.name in PORTS
        if not port and (fi.producer is None or fi.consumer is None):
            probs.append(f"stream {fi.name}: producer {fi.producer}, consumer {fi.consumer}")
        if not port and fi.depth < 1:
            probs.append(f"stream {fi.name}: depth {fi.depth}")
        if fi.consumer is not None and fi.producer is not None and reads.get(fi.name, 0) != fi.words:
            probs.append(f"stream {fi.name}: {fi.words} words written per image, {reads.get(fi.name, 0)} read")
    names = {pr.name for pr in net.processes}
    for q in net.pipos:
        if q.producer not in names or not set(q.consumers) <= names:
            probs.append(f"PIPO {q.name}: unknown process")
    return probs
