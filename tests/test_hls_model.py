"""HLS phase 2: the transformer kernels and whole generated models in C-simulation.

* Each kernel of hls/include/gsb (LayerNorms with the bit-by-bit isqrt, qkv split, value
  planes, Q.K^T, softmax, attention planes, GSB A.V, 8-bit patch embedding and heads,
  requantized residual, fc1 activation) runs in hls/tb/vit_kernels_tb.cpp under two shape
  and folding configurations, and its outputs must equal gsbsim.golden's step functions;
  matrix kernels must count exactly the cycle model's iterations.
* Whole random models with the digits shape are generated (`gsbsim hls`) and C-simulated
  (`gsbsim csim`) on real digits test images: every trace tensor equal, ITERS equal to
  folding.cycle_report; a flipped weight bit must fail naming its layer; one build runs
  under ASan + UBSan; bad inputs are one-line errors with exit code 2.

Every build is started once, in the background, when the module's first test asks for it.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from gsbsim.format import conventions as cv
from gsbsim.hlsgen import csim, toolchain
from gsbsim.engine import errors, golden_ops
from gsbsim.cli.app import main
from gsbsim.hw.folding import Fold, cycle_report, folding_from_dict, global_folding, mvau_cycles
from gsbsim.hw.stages import lane_dims
from gsbsim.hlsgen.project import load_project, trace_specs
from gsbsim.hlsgen.synth_view import compile_synthesis_view
from gsbsim.format.model_file import IntModel, save_model
from gsbsim.format.random_model import random_model
from tests.support.hls_builds import Builds

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1

# ============================================================================ kernel testbench configs
# A: nothing a multiple of SIMD or 64, several PE; B: words above 64 bits (LN, proj, fc2, head:
# 768-bit int8 words), PE = the whole row count, 3 input channels, G = 4.
KERNEL_CFGS = {
    "a": dict(E=40, H=4, N=18, G=3, HD=72, C=10, CIN=1, IMG=8, P=2, LN_SIMD=16, QKV_PE=8, QK_SIMD=4,
              QK_PE=3, AV_SIMD=8, AV_PE=5, PROJ_SIMD=16, RES_PE=4, FC1_PE=6, FC2_SIMD=16, PATCH_SIMD=3,
              PATCH_PE=8, HEAD_SIMD=16, HEAD_PE=5, VP_EPC=5, AP_EPC=6, SM_EPC=6),
    "b": dict(E=96, H=2, N=11, G=4, HD=100, C=7, CIN=3, IMG=6, P=2, LN_SIMD=70, QKV_PE=32, QK_SIMD=48,
              QK_PE=11, AV_SIMD=11, AV_PE=1, PROJ_SIMD=96, RES_PE=96, FC1_PE=100, FC2_SIMD=100,
              PATCH_SIMD=5, PATCH_PE=96, HEAD_SIMD=96, HEAD_PE=7, VP_EPC=1, AP_EPC=11, SM_EPC=1),
}
RATIOS = {"a": (179, 230), "b": (150, 200, 240)}


# ============================================================================ the models
FOLDING_A = {"patch": {"pe": 8, "simd": 3}, "blocks.*.qkv": {"pe": 12, "simd": 7},
             "blocks.0.qk": {"pe": 3, "simd": 5}, "blocks.1.qk": {"pe": 9, "simd": 16},
             "blocks.*.av": {"pe": 4, "simd": 8}, "blocks.1.av": {"pe": 16, "simd": 18},
             "blocks.*.proj": {"pe": 4, "simd": 32}, "blocks.*.fc1": {"pe": 8, "simd": 10},
             "blocks.*.fc2": {"pe": 2, "simd": 64}, "head": {"pe": 5, "simd": 32},
             # foldable stages (elements per cycle): d = 16, N = 18
             "blocks.0.value_planes": {"pe": 4}, "blocks.1.value_planes": {"pe": 16},
             "blocks.*.attention_planes": {"pe": 3}, "blocks.1.softmax": {"pe": 9}}


class ModelBuilds(Builds):
    """Every C++ build of this module, compiled once in the background (2 at a time)."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.models: dict[str, IntModel] = {}
        self.paths: dict[str, Path] = {}
        # model A: G = 3, row statistic, per-layer folding file; model B: G = 1, image statistic
        specs = {"A": (dict(embed_dim=32, num_heads=2, mlp_hidden=64, groups=3, mask_stat="row"),
                       ["--folding", self._folding_file()]),
                 "B": (dict(embed_dim=24, num_heads=3, mlp_hidden=48, groups=1, ratios=(), mask_stat="image"),
                       ["--pe", "2", "--simd", "8"])}
        for k, (kw, fold_args) in specs.items():
            self.models[k] = random_model(np.random.default_rng(100 + ord(k)), depth=2, **kw)
            self.paths[k] = self.generate(k, self.models[k], *fold_args)
        # the longest first
        self.submit("B-asan", csim.build, load_project(root / "B"), True)
        for cfg, defines in KERNEL_CFGS.items():
            self.testbench(f"kernels-{cfg}", "vit_kernels_tb.cpp", {f"CFG_{k}": v for k, v in defines.items()},
                           flags=("-O1",))
        self.submit("A", csim.build, load_project(root / "A"))
        self.submit("B", csim.build, load_project(root / "B"))
        self.submit("B-make", self._make, root / "B")
        for k in ("A", "B"):   # the synthesis view of every generated project (gsbsim/hlsgen/synth_view.py)
            self.submit(f"{k}-synth", compile_synthesis_view, load_project(root / k))

    def _folding_file(self) -> str:
        path = self.root / "fold_A.json"
        path.write_text(json.dumps(FOLDING_A))
        return str(path)

    def _make(self, project: Path) -> subprocess.CompletedProcess:
        """The generated Makefile itself (g++ -O2 -Wall -Wextra), in a copy of the project."""
        copy = self.root / "B_make"
        shutil.copytree(project, copy, ignore=shutil.ignore_patterns("build", "vectors", ".*"))
        return subprocess.run(["make", "-C", str(copy)], capture_output=True, text=True, timeout=600)

    def vectors(self, key: str) -> Path:
        """The project's vectors folder, written (2 digits images) if no earlier test did."""
        d = self.root / key / "vectors"
        if not d.is_dir():
            assert main(["vectors", "--model", str(self.paths[key]), "--out", str(self.root / key),
                         "--images", "2"]) == 0
        return d


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelBuilds]:
    with ModelBuilds(tmp_path_factory.mktemp("hls_model")) as b:
        yield b


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, out: str, err: str, *fragments: str) -> None:
    assert rc == 2, (rc, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gsbsim: error: "), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


# ============================================================================ kernel harness
def run_kernel(builds: ModelBuilds, cfg: str, kernel: str, d: Path, **inputs: np.ndarray) -> tuple[dict, int]:
    """Write the inputs, run one kernel, return its outputs {name: int64 array} and ITERS."""
    d.mkdir(parents=True, exist_ok=True)
    for name, arr in inputs.items():
        np.save(d / f"{name}.npy", np.ascontiguousarray(arr))
    proc = subprocess.run([str(builds[f"kernels-{cfg}"]), kernel, str(d)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    outs = {p.stem[4:]: np.load(p) for p in d.glob("out_*.npy")}
    return outs, int(re.search(r"^ITERS (\d+)$", proc.stdout, re.M).group(1))


def run_kernel_error(builds: ModelBuilds, cfg: str, kernel: str, d: Path, **inputs: np.ndarray) -> str:
    d.mkdir(parents=True, exist_ok=True)
    for name, arr in inputs.items():
        np.save(d / f"{name}.npy", np.ascontiguousarray(arr))
    proc = subprocess.run([str(builds[f"kernels-{cfg}"]), kernel, str(d)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    return proc.stderr


def shape_of(cfg: str) -> dict:
    c = dict(KERNEL_CFGS[cfg])
    c["D"] = c["E"] // c["H"]
    c["T"] = (c["IMG"] // c["P"]) ** 2
    return c


def s2_max(e: int, eps: int) -> int:
    return (2 ** 62 - 1 - eps) // e


# ============================================================================ LayerNorms
def test_isqrt_bit_by_bit_is_exact(builds: ModelBuilds, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    edges = [0, 1, 2, 3, 4, 15, 16, 17, (2 ** 31 - 1) ** 2 - 1, (2 ** 31 - 1) ** 2, (2 ** 31 - 1) ** 2 + 1,
             2 ** 62 - 1, 2 ** 62]
    squares = rng.integers(0, 2 ** 31, 40, dtype=np.int64)
    v = np.concatenate([edges, squares ** 2, squares ** 2 - 1, squares ** 2 + 1,
                        rng.integers(0, 2 ** 62, 200, dtype=np.int64)]).astype(np.int64)
    v = v[v >= 0]
    outs, iters = run_kernel(builds, "a", "isqrt", tmp_path, v=v)
    assert np.array_equal(outs["root"], cv.isqrt(v))
    assert iters == 32 * len(v)                 # one result bit per iteration


@pytest.mark.parametrize("cfg", ["a", "b"])
def test_layernorm_bits_matches_golden(builds: ModelBuilds, tmp_path: Path, cfg: str) -> None:
    s = shape_of(cfg)
    e = s["E"]
    rng = np.random.default_rng(2)
    x = rng.integers(-(2 ** 20), 2 ** 20, (9, e)).astype(np.int64)
    x[0] = 12345                                   # D = 0 everywhere: every thr 0 channel is a tie
    x[1] = rng.integers(-3, 4, e)                  # tiny values: sigma dominated by ln_eps
    x[2] = rng.choice([-(2 ** 30) // e, 2 ** 30 // e], e)   # E*S2 = 2^60: near the int64 limits
    x[3] = 0
    x[3, 0] = 1                                    # V = E - 1 + eps = 256: sigma = 16 divides D*2^ln
    sign = rng.choice(np.array([-1, 0, 1], dtype=np.int8), e)
    thr = rng.integers(-(2 ** 17), 2 ** 17, e)
    thr[::5] = 0
    thr[sign == 0] = rng.integers(0, 2, int((sign == 0).sum()))
    eps = 257 - e
    d, sigma = golden_ops.ln_stats(x[3:4], eps, "t")
    assert sigma[0] == 16
    tie = (np.arange(e) % 3 == 1) & (sign != 0)
    thr[tie] = sign[tie] * d[0, tie] * 2 ** 8 // 16  # exact ties on token 3: bit 1
    want = golden_ops.ln_bits(x.astype(np.int32), sign, thr, 8, eps, "t")
    outs, iters = run_kernel(builds, cfg, "ln_bits", tmp_path, x=x.astype(np.int32), sign=sign, thr=thr,
                             p=np.array([8, eps, s2_max(e, eps)], dtype=np.int64))
    assert np.array_equal(outs["bits"], want)
    assert want[0][thr == 0].all() and want[3][tie].all()   # the ties went to 1
    # per token: statistics E, isqrt 32, one output word of LN_SIMD channels per cycle
    assert iters == len(x) * (e + 32 + -(-e // s["LN_SIMD"]))


def test_layernorm_overflow_is_an_error(builds: ModelBuilds, tmp_path: Path) -> None:
    e = shape_of("a")["E"]
    x = np.zeros((3, e), dtype=np.int32)
    x[2] = INT32_MAX                               # E * S2 >= 2^62 on token 2
    err = run_kernel_error(builds, "a", "ln_bits", tmp_path, x=x, sign=np.ones(e, np.int8),
                           thr=np.zeros(e, np.int64), p=np.array([8, 1, s2_max(e, 1)], dtype=np.int64))
    assert "ln_bits: LayerNorm E*S2 + ln_eps reaches 2^62 at token 2" in err
    with pytest.raises(errors.IntegerOverflowError, match="at image 0, token 2"):
        golden_ops.ln_stats(x[None].astype(np.int64), 1, "ln_bits")


@pytest.mark.parametrize("cfg", ["a", "b"])
def test_final_layernorm_rounds_half_up_and_clamps(builds: ModelBuilds, tmp_path: Path, cfg: str) -> None:
    s = shape_of(cfg)
    e, n, k = s["E"], s["N"], 12
    rng = np.random.default_rng(3)
    x = rng.integers(-(2 ** 16), 2 ** 16, (n, e)).astype(np.int32)
    x[1] = -77                                     # token 1: D = 0, q = round(offset / 2^k)
    gain = rng.integers(-(2 ** 22), 2 ** 22, (2, e))
    offset = rng.integers(-(2 ** 20), 2 ** 20, (2, e))
    offset[1] = (2 * rng.integers(-200, 200, e) + 1) * 2 ** (k - 1)   # exact .5 ties, both signs
    eps = 5
    want = np.stack([golden_ops.head_inputs(x[None, t].astype(np.int64), gain[t], offset[t], k, eps, "t")[0]
                     for t in range(2)])
    outs, _ = run_kernel(builds, cfg, "final_ln", tmp_path, x=x, gain=gain, offset=offset,
                         p=np.array([k, eps, s2_max(e, eps)], dtype=np.int64))
    assert np.array_equal(outs["q"], want)
    assert (want == 127).any() and (want == -128).any()           # both clamps hit
    half = offset[1] / 2 ** k
    assert np.array_equal(want[1], np.clip(np.floor(half + 0.5), -128, 127))  # ties went up


# ============================================================================ attention
def qkv_case(cfg: str, rng: np.random.Generator):
    s = shape_of(cfg)
    e, n = s["E"], s["N"]
    acc = rng.integers(-e, e + 1, (n, 3 * e)).astype(np.int32)
    q_thr = acc[rng.integers(0, n, e), np.arange(e)]              # every channel has a tie
    k_thr = acc[rng.integers(0, n, e), e + np.arange(e)]
    q_thr[0], k_thr[-1] = INT32_MIN, INT32_MAX
    v_offset = rng.integers(-(2 ** 40), 2 ** 40, e)
    return acc, q_thr.astype(np.int32), k_thr.astype(np.int32), v_offset


@pytest.mark.parametrize("cfg", ["a", "b"])
def test_qkv_split_matches_golden(builds: ModelBuilds, tmp_path: Path, cfg: str) -> None:
    s = shape_of(cfg)
    acc, q_thr, k_thr, v_offset = qkv_case(cfg, np.random.default_rng(4))
    q, k, vq = golden_ops.split_qkv(acc[None], q_thr, k_thr, v_offset, s["H"], 8)
    outs, _ = run_kernel(builds, cfg, "qkv_split", tmp_path, acc=acc, q_thr=q_thr, k_thr=k_thr,
                         v_offset=v_offset, p=np.array([8], dtype=np.int64))
    assert np.array_equal(outs["q"], q[0]) and np.array_equal(outs["k"], k[0])
    assert np.array_equal(outs["vq"], vq[0])


def value_case(cfg: str, rng: np.random.Generator) -> np.ndarray:
    """Vq with exact mask ties: the row max is 256*m and some values are r*m."""
    s = shape_of(cfg)
    h, n, d = s["H"], s["N"], s["D"]
    vq = rng.integers(-(2 ** 30), 2 ** 30, (h, n, d)).astype(np.int64)
    r = RATIOS[cfg][0]
    vq[:, :, 0] = 256 * 2 ** 22                               # row max (and image max)
    vq[:, :, 1] = r * 2 ** 22                                 # 256*Vq == r*mx: not a mask bit
    vq[:, :, 2] = -(256 * 2 ** 22) - 5                         # row min
    vq[:, 3:5, 3] = 0                                          # sign(0) = +1
    return vq


@pytest.mark.parametrize("cfg", ["a", "b"])
@pytest.mark.parametrize("stat", ["row", "image"])
def test_value_planes_match_golden(builds: ModelBuilds, tmp_path: Path, cfg: str, stat: str) -> None:
    s = shape_of(cfg)
    vq = value_case(cfg, np.random.default_rng(5))
    vq[1, 4] //= 1000                                          # one row far below the image max
    want = golden_ops.value_planes(vq[None], RATIOS[cfg], stat)[0]
    outs, iters = run_kernel(builds, cfg, "value_planes", tmp_path, vq=vq,
                             ratio=np.array((0,) + RATIOS[cfg], dtype=np.int32),
                             p=np.array([stat == "image"], dtype=np.int64))
    assert outs["planes"].shape == (s["G"], s["H"], s["N"], s["D"])
    assert np.array_equal(outs["planes"], want)
    # VP_EPC channels per cycle (cfg a: 5 of d = 10): the stage model's count (gsbsim/hw/stages.py)
    assert iters == 2 * s["H"] * s["N"] * s["D"] // s["VP_EPC"]   # statistics, planes (no clearing pass)
    assert want[0][:, 3:5, 3].all() and not want[1][0, :, 1].any()   # sign(0) = +1; strict mask tie


@pytest.mark.parametrize("cfg", ["a", "b"])
def test_attention_scores_match_golden_and_cycle_model(builds: ModelBuilds, tmp_path: Path, cfg: str) -> None:
    s = shape_of(cfg)
    rng = np.random.default_rng(6)
    q = rng.integers(0, 2, (s["H"], s["N"], s["D"])).astype(np.uint8)
    k = rng.integers(0, 2, (s["H"], s["N"], s["D"])).astype(np.uint8)
    k[0, 1] = q[0, 0]                                          # score d
    k[0, 2] = 1 - q[0, 0]                                      # score -d
    want = golden_ops.attention_scores(q[None], k[None])[0]
    outs, iters = run_kernel(builds, cfg, "qk", tmp_path, q=q, k=k)
    assert np.array_equal(outs["scores"], want)
    assert want[0, 0, 1] == s["D"] and want[0, 0, 2] == -s["D"]
    # the MVAU, and per head the copy of the N query rows (ceil(D/SIMD) words each) into its input FIFO
    copy = s["H"] * s["N"] * -(-s["D"] // s["QK_SIMD"])
    assert iters == mvau_cycles(s["N"], s["D"], s["QK_PE"], s["QK_SIMD"], vectors=s["N"], repeats=s["H"]) + copy


@pytest.mark.parametrize("cfg", ["a", "b"])
def test_softmax_matches_golden(builds: ModelBuilds, tmp_path: Path, cfg: str) -> None:
    s = shape_of(cfg)
    h, n, d = s["H"], s["N"], s["D"]
    rng = np.random.default_rng(7)
    q = rng.integers(0, 2, (h, n, d)).astype(np.uint8)
    k = rng.integers(0, 2, (h, n, d)).astype(np.uint8)
    k[:, :3] = q[:, :1]                                        # repeated maxima in a row
    scores = golden_ops.attention_scores(q[None], k[None])[0]
    lut = cv.round_half_up(2.0 ** 16 * np.exp(-0.3 * np.arange(d + 1)))
    lut[-3:] = 0                                              # far scores underflow to 0
    bias = rng.integers(-(2 ** 12), 2 ** 12, (h, n, n)).astype(np.int32)
    want = golden_ops.softmax_probs(scores[None], lut, bias, 16, 48)[0]
    outs, iters = run_kernel(builds, cfg, "softmax", tmp_path, scores=scores, lut=lut, bias=bias,
                             p=np.array([16, 48], dtype=np.int64))
    assert np.array_equal(outs["a"], want)
    # per row: N/QK_PE reads, N/SM_EPC exp, 1 reciprocal, N/SM_EPC scaling (cfg a: SM_EPC 6 of 18)
    assert iters == h * n * (n // s["QK_PE"] + 2 * (n // s["SM_EPC"]) + 1)


def test_softmax_rejects_odd_score_differences(builds: ModelBuilds, tmp_path: Path) -> None:
    s = shape_of("a")
    scores = np.zeros((s["H"], s["N"], s["N"]), dtype=np.int32)
    scores[1, 2, 5] = -1                                       # parity differs from its row
    err = run_kernel_error(builds, "a", "softmax", tmp_path, scores=scores,
                           lut=np.full(s["D"] + 1, 2 ** 16, np.int64),
                           bias=np.zeros_like(scores), p=np.array([16, 48], dtype=np.int64))
    assert "softmax: head 1 row 2: score -1 and row max 0 differ by 1" in err


def test_softmax_exp_width_bound_is_checked(builds: ModelBuilds, tmp_path: Path) -> None:
    """e_j is held in 31 bits (gsb/softmax.hpp exp_t) because exp_lut is in [0, 2^prob]: a table
    entry above 2^prob is a C-simulation error, not a truncated value."""
    s = shape_of("a")
    scores = np.zeros((s["H"], s["N"], s["N"]), dtype=np.int32)
    lut = np.full(s["D"] + 1, 2 ** 16, np.int64)
    lut[0] = 2 ** 16 + 1                                         # planted: above 2^prob
    err = run_kernel_error(builds, "a", "softmax", tmp_path, scores=scores, lut=lut,
                           bias=np.zeros_like(scores), p=np.array([16, 48], dtype=np.int64))
    assert "softmax: exp value 65537 outside [0, 2^prob], prob 16" in err


@pytest.mark.parametrize("cfg", ["a", "b"])
@pytest.mark.parametrize("stat", ["row", "image"])
def test_attention_planes_match_golden(builds: ModelBuilds, tmp_path: Path, cfg: str, stat: str) -> None:
    s = shape_of(cfg)
    h, n = s["H"], s["N"]
    rng = np.random.default_rng(8)
    a = rng.integers(-(2 ** 12), 2 ** 14, (h, n, n)).astype(np.int64)
    r = RATIOS[cfg][0]
    a[:, :, 0] = 256 * 100                                     # row max
    a[:, :, 1] = r * 100                                       # 256*A == r*amax: strict, not set
    thr1 = 4096
    a[:, :, 2] = thr1                                          # base plane tie: set
    a[0, 3] = rng.integers(-50, 50, n)                         # a row with a tiny max
    want = golden_ops.attention_planes(a[None], thr1, RATIOS[cfg], stat)[0]
    outs, iters = run_kernel(builds, cfg, "a_planes", tmp_path, a=a,
                             ratio=np.array((0,) + RATIOS[cfg], dtype=np.int32),
                             p=np.array([thr1, stat == "image"], dtype=np.int64))
    assert np.array_equal(outs["planes"], want)
    # AP_EPC keys per cycle (cfg a: 6 of N = 18, b: all 11): the stage model's count
    assert iters == 2 * h * n * n // s["AP_EPC"]   # statistic, planes (no clearing pass)
    assert want[0][1, :, 2].all() and not want[1][1, :, 1].any()    # ties: b1 set, mask strict


@pytest.mark.parametrize("cfg", ["a", "b"])
def test_gsb_av_and_proj_input_match_golden(builds: ModelBuilds, tmp_path: Path, cfg: str) -> None:
    s = shape_of(cfg)
    g, h, n, d, e = s["G"], s["H"], s["N"], s["D"], s["E"]
    rng = np.random.default_rng(9)
    ap = (rng.random((g, h, n, n)) < 0.4).astype(np.uint8)
    vp = (rng.random((g, h, n, d)) < 0.5).astype(np.uint8)
    ap[0, 0, 0] = 1                                            # all keys: reaches +-N
    vp[0, 0, :, 0] = 1
    scale = rng.integers(-(2 ** 40), 2 ** 40, (g, g))
    ctx = golden_ops.gsb_context(ap[None], vp[None], scale)[0]
    thr = ctx[rng.integers(0, n, e), np.arange(e)]             # a tie in every channel
    outs, iters = run_kernel(builds, cfg, "av", tmp_path, ap=ap, vp=vp, scale=scale, thr=thr)
    assert np.array_equal(outs["ctx"], ctx)
    assert np.array_equal(outs["bits"], (ctx >= thr).astype(np.uint8))
    assert iters == mvau_cycles(d, n, s["AV_PE"], s["AV_SIMD"], vectors=n, repeats=h * g * g)


# ============================================================================ 8-bit layers
def kernel_model(cfg: str, seed: int) -> IntModel:
    s = shape_of(cfg)
    return random_model(np.random.default_rng(seed), img_size=s["IMG"], patch_size=s["P"], in_chans=s["CIN"],
                        embed_dim=s["E"], num_heads=s["H"], mlp_hidden=s["HD"], num_classes=s["C"],
                        groups=s["G"], ratios=RATIOS[cfg], depth=1)


@pytest.mark.parametrize("cfg", ["a", "b"])
def test_patch_embedding_matches_golden(builds: ModelBuilds, tmp_path: Path, cfg: str) -> None:
    s = shape_of(cfg)
    model = kernel_model(cfg, 10)
    a = model.arrays
    rng = np.random.default_rng(11)
    img = rng.integers(-128, 128, (3, s["CIN"], s["IMG"], s["IMG"])).astype(np.int8)
    img[0] = -128                                              # extreme pixels and weights
    w = a["patch.weight"].copy()
    w[0] = -128
    model.arrays["patch.weight"] = w
    acc, x = golden_ops.patch_embed(model, img)
    outs, iters = run_kernel(builds, cfg, "patch", tmp_path, img=img, w=w, mult=a["patch.mult"],
                             bias=a["patch.bias"], tokens=a["tokens"], pos=a["pos"],
                             p=np.array([model.shifts["patch"]], dtype=np.int64))
    assert np.array_equal(outs["acc"], acc) and np.array_equal(outs["x"], x)
    assert acc[0, :, 0].max() == 128 * 128 * s["CIN"] * s["P"] ** 2
    assert iters == len(img) * mvau_cycles(s["E"], s["CIN"] * s["P"] ** 2, s["PATCH_PE"], s["PATCH_SIMD"],
                                           vectors=s["T"])


@pytest.mark.parametrize("cfg", ["a", "b"])
def test_heads_logits_and_argmax_match_golden(builds: ModelBuilds, tmp_path: Path, cfg: str) -> None:
    s = shape_of(cfg)
    model = kernel_model(cfg, 12)
    a = model.arrays
    rng = np.random.default_rng(13)
    for name in ("head.weight", "head_dist.weight"):         # classes 1 and 4 tie exactly
        w = a[name].copy()
        w[4] = w[1]
        a[name] = w
    bias = a["logit.bias"].copy()
    bias[4] = bias[1] = 10 ** 9                                # ... and are the largest
    a["logit.bias"] = bias
    q = rng.integers(-128, 128, (6, 2, s["E"])).astype(np.int8)
    acc, logits = golden_ops.head_logits(model, q)
    pred = golden_ops.argmax_first(logits)
    outs, iters = run_kernel(builds, cfg, "head", tmp_path, q=q, w=a["head.weight"], wd=a["head_dist.weight"],
                             bias=bias, p=np.array([int(a["head.mult"]), int(a["head_dist.mult"])], np.int64))
    assert np.array_equal(outs["acc"], acc) and np.array_equal(outs["logits"], logits)
    assert np.array_equal(outs["pred"], pred)
    assert (logits[:, 1] == logits[:, 4]).all() and (pred == 1).any()   # ties -> lowest index
    assert iters == len(q) * mvau_cycles(s["C"], s["E"], s["HEAD_PE"], s["HEAD_SIMD"], vectors=2)


# ============================================================================ residual, fc1
@pytest.mark.parametrize("cfg", ["a", "b"])
def test_requant_residual_rounds_half_up(builds: ModelBuilds, tmp_path: Path, cfg: str) -> None:
    e = shape_of(cfg)["E"]
    rng = np.random.default_rng(14)
    t, mult, shift = 7, 3_000_001, 16
    acc = rng.integers(-e, e + 1, (t, e)).astype(np.int32)
    x = rng.integers(-(2 ** 28), 2 ** 28, (t, e)).astype(np.int32)
    prod = acc[0].astype(np.int64) * mult
    bias = (2 ** (shift - 1) - np.mod(prod, 2 ** shift)) + rng.integers(-3, 3, e) * 2 ** shift  # .5 ties on token 0
    want = golden_ops.residual_add(x, acc, mult, bias, shift, "t")
    outs, _ = run_kernel(builds, cfg, "residual", tmp_path, x=x, acc=acc, bias=bias,
                         p=np.array([mult, shift], dtype=np.int64))
    assert np.array_equal(outs["out"], want)
    ties = np.mod(prod + bias, 2 ** shift) == 2 ** (shift - 1)
    assert ties.all() and ((prod + bias) < 0).any() and ((prod + bias) > 0).any()

    x[5, 3] = INT32_MAX                                        # overflow: an error, never a wrap
    acc[5, 3], bias[3] = 1, 2 ** 20
    err = run_kernel_error(builds, cfg, "residual", tmp_path / "ovf", x=x, acc=acc, bias=bias,
                           p=np.array([mult, shift], dtype=np.int64))
    assert "residual: residual stream overflows int32 at token 5, channel 3" in err


@pytest.mark.parametrize("cfg", ["a", "b"])
def test_fc1_two_sided_activation(builds: ModelBuilds, tmp_path: Path, cfg: str) -> None:
    s = shape_of(cfg)
    hd, e = s["HD"], s["E"]
    rng = np.random.default_rng(15)
    acc = rng.integers(-e, e + 1, (5, hd)).astype(np.int32)
    hi = acc[rng.integers(0, 5, hd), np.arange(hd)]           # ties on the high side
    lo = np.minimum(acc[rng.integers(0, 5, hd), np.arange(hd)], hi - 1)   # and on the low side
    hi[::4], lo[::4] = e + 1, -e - 1                           # never
    want = golden_ops.fc1_bits(acc, hi, lo)
    outs, iters = run_kernel(builds, cfg, "fc1_act", tmp_path, acc=acc, lo=lo.astype(np.int32),
                             hi=hi.astype(np.int32))
    assert np.array_equal(outs["bits"], want)
    assert not want[:, ::4].any() and 0 < want.sum() < want.size
    assert iters == 5 * hd // s["FC1_PE"]


# ============================================================================ widths from the spec's bounds
def test_narrow_widths_hold_at_their_bounds(builds: ModelBuilds, tmp_path: Path) -> None:
    """The narrowed datapaths (gsb/requant.hpp, gsb/layernorm.hpp) at the extremes of the bounds
    they rely on, bit-exact against golden: |acc| = K and |mult| = 2^61 / K with |bias| = 2^61
    (the requant and logit products and their 64-bit sums); LayerNorm with ln = 24, thr at both
    ends of int32 and sigma near 2^31 (the 32 x 31 compare product); |gain| = 2^22, |offset| = 2^28."""
    s = shape_of("a")
    e, n = s["E"], s["N"]
    rng = np.random.default_rng(16)
    # residual (K = E), shift 40: acc*mult + bias up to 2^62
    mmax = 2 ** 61 // e
    acc = rng.choice([-e, e], (5, e)).astype(np.int32)
    bias = rng.choice([-(2 ** 61), 2 ** 61], e)
    x = rng.integers(-(2 ** 28), 2 ** 28, (5, e)).astype(np.int32)
    for mult in (mmax, -mmax):
        want = golden_ops.residual_add(x, acc, mult, bias, 40, "t")
        outs, _ = run_kernel(builds, "a", "residual", tmp_path / f"res{mult > 0}", x=x, acc=acc, bias=bias,
                             p=np.array([mult, 40], dtype=np.int64))
        assert np.array_equal(outs["out"], want)
    # patch embedding (K = Cin*P*P), shift 40, |acc| = 128*128*K on channel 0
    model = kernel_model("a", 10)
    a = model.arrays
    model.header["shifts"]["patch"] = 40
    amax = 128 * 128 * s["CIN"] * s["P"] ** 2
    w = a["patch.weight"].copy()
    w[0] = -128
    a["patch.weight"] = w
    a["patch.mult"] = rng.choice([-1, 1], e) * (2 ** 61 // amax)
    a["patch.bias"] = rng.choice([-(2 ** 61), 2 ** 61], e)
    img = np.full((1, s["CIN"], s["IMG"], s["IMG"]), -128, np.int8)
    pacc, px = golden_ops.patch_embed(model, img)
    outs, _ = run_kernel(builds, "a", "patch", tmp_path / "patch", img=img, w=w, mult=a["patch.mult"],
                         bias=a["patch.bias"], tokens=a["tokens"], pos=a["pos"], p=np.array([40], dtype=np.int64))
    assert np.array_equal(outs["x"], px) and pacc[0, :, 0].max() == amax
    # logits (|acc| <= 128*128*E): both products at 2^61 and the bias at 2^61, logit ~ 3 * 2^61
    model = kernel_model("a", 12)
    a = model.arrays
    hmax = 2 ** 61 // (128 * 128 * e)
    for name in ("head.weight", "head_dist.weight"):
        w = a[name].copy()
        w[0] = -128
        a[name] = w
    a["head.mult"], a["head_dist.mult"] = np.int64(hmax), np.int64(hmax)
    a["logit.bias"] = rng.choice([-(2 ** 61), 2 ** 61], s["C"])
    a["logit.bias"][0] = 2 ** 61
    q = np.full((1, 2, e), -128, np.int8)
    hacc, logits = golden_ops.head_logits(model, q)
    outs, _ = run_kernel(builds, "a", "head", tmp_path / "head", q=q, w=a["head.weight"], wd=a["head_dist.weight"],
                         bias=a["logit.bias"], p=np.array([hmax, hmax], np.int64))
    assert np.array_equal(outs["logits"], logits) and logits[0, 0] > 2 * 2 ** 61
    # LayerNorm -> bits, ln 24: one channel at the largest value E*S2 allows, thr at the int32 ends
    eps = 1
    xl = np.zeros((3, e), np.int64)
    xl[0, 0] = cv.isqrt(np.array([s2_max(e, eps)]))[0]
    xl[1, 0] = -xl[0, 0]
    xl[2] = rng.integers(-(2 ** 20), 2 ** 20, e)
    sign = rng.choice(np.array([-1, 1], dtype=np.int8), e)
    thr = rng.choice([INT32_MIN, INT32_MAX, -1, 0, 1], e).astype(np.int64)
    d, sigma = golden_ops.ln_stats(xl[:1], eps, "t")
    assert sigma[0] > 2 ** 30
    want = golden_ops.ln_bits(xl.astype(np.int32), sign, thr, 24, eps, "t")
    outs, _ = run_kernel(builds, "a", "ln_bits", tmp_path / "ln", x=xl.astype(np.int32), sign=sign, thr=thr,
                         p=np.array([24, eps, s2_max(e, eps)], dtype=np.int64))
    assert np.array_equal(outs["bits"], want) and 0 < want.sum() < want.size
    # final LayerNorm: |gain| = 2^22, |offset| = 2^28, k = 24
    xf = rng.integers(-(2 ** 24), 2 ** 24, (n, e)).astype(np.int32)
    gain = rng.choice([-(2 ** 22), 2 ** 22], (2, e))
    offset = rng.choice([-(2 ** 28), 2 ** 28], (2, e))
    want = np.stack([golden_ops.head_inputs(xf[None, t].astype(np.int64), gain[t], offset[t], 24, 5, "t")[0]
                     for t in range(2)])
    outs, _ = run_kernel(builds, "a", "final_ln", tmp_path / "final", x=xf, gain=gain, offset=offset,
                         p=np.array([24, 5, s2_max(e, 5)], dtype=np.int64))
    assert np.array_equal(outs["q"], want)


def _planted(cfg: str, kernel: str, field: str, value: int) -> dict:
    """Valid inputs of `kernel` (config `cfg`) with one value planted at `field`."""
    s = shape_of(cfg)
    e, n = s["E"], s["N"]
    if kernel == "residual":
        ins = dict(x=np.zeros((4, e), np.int32), acc=np.zeros((4, e), np.int32), bias=np.zeros(e, np.int64),
                   p=np.array([1, 16], dtype=np.int64))
        {"acc": lambda: ins["acc"].__setitem__((2, 3), value), "bias": lambda: ins["bias"].__setitem__(3, value),
         "mult": lambda: ins["p"].__setitem__(0, value), "shift": lambda: ins["p"].__setitem__(1, value)}[field]()
    elif kernel == "patch":
        a = kernel_model(cfg, 10).arrays
        ins = dict(img=np.zeros((1, s["CIN"], s["IMG"], s["IMG"]), np.int8), w=a["patch.weight"],
                   mult=a["patch.mult"].copy(), bias=a["patch.bias"].copy(), tokens=a["tokens"], pos=a["pos"],
                   p=np.array([16], dtype=np.int64))
        if field == "shift":
            ins["p"][0] = value
        else:
            ins[field][2] = value
    elif kernel == "head":
        a = kernel_model(cfg, 12).arrays
        ins = dict(q=np.zeros((1, 2, e), np.int8), w=a["head.weight"], wd=a["head_dist.weight"],
                   bias=a["logit.bias"].copy(), p=np.array([1, 1], np.int64))
        if field == "bias":
            ins["bias"][3] = value
        else:
            ins["p"][int(field == "dist_mult")] = value
    elif kernel == "ln_bits":
        ins = dict(x=np.ones((2, e), np.int32), sign=np.ones(e, np.int8), thr=np.zeros(e, np.int64),
                   p=np.array([8, 1, s2_max(e, 1)], dtype=np.int64))
        if field == "thr":
            ins["thr"][4] = value
        else:
            ins["p"][0] = value
    else:   # final_ln
        ins = dict(x=np.ones((n, e), np.int32), gain=np.zeros((2, e), np.int64), offset=np.zeros((2, e), np.int64),
                   p=np.array([12, 5, s2_max(e, 5)], dtype=np.int64))
        if field == "k":
            ins["p"][0] = value
        else:
            ins[field][1 if field == "gain" else 0, 3 if field == "gain" else 2] = value
    return ins


_E, _AMAX = KERNEL_CFGS["a"]["E"], 128 * 128 * KERNEL_CFGS["a"]["CIN"] * KERNEL_CFGS["a"]["P"] ** 2


@pytest.mark.parametrize("kernel, field, value, message", [
    ("residual", "acc", _E + 1, f"residual: accumulator {_E + 1} outside [-{_E}, {_E}] at token 2, channel 3"),
    ("residual", "mult", -(2 ** 61 // _E) - 1,
     f"residual: multiplier {-(2 ** 61 // _E) - 1} outside [-{2 ** 61 // _E}, {2 ** 61 // _E}] (|mult| * {_E} <= 2^61)"),
    ("residual", "bias", 2 ** 61 + 1, f"residual: bias[3] = {2 ** 61 + 1} outside [-2^61, 2^61]"),
    ("residual", "shift", 41, "residual: requantization shift 41 outside 1..40"),
    ("patch", "mult", 2 ** 61 // _AMAX + 1, f"embed: multiplier {2 ** 61 // _AMAX + 1} outside "
                                            f"[-{2 ** 61 // _AMAX}, {2 ** 61 // _AMAX}] (|mult| * {_AMAX} <= 2^61)"),
    ("patch", "bias", -(2 ** 61) - 1, f"embed: bias[2] = {-(2 ** 61) - 1} outside [-2^61, 2^61]"),
    ("patch", "shift", 41, "embed: requantization shift 41 outside 1..40"),
    ("head", "head_mult", 2 ** 61 // (2 ** 14 * _E) + 1, f"logits: head.mult: multiplier {2 ** 61 // (2 ** 14 * _E) + 1}"),
    ("head", "dist_mult", -(2 ** 61 // (2 ** 14 * _E)) - 1, "logits: head_dist.mult: multiplier "),
    ("head", "bias", 2 ** 61 + 1, f"logits: logit.bias[3] = {2 ** 61 + 1} outside [-2^61, 2^61]"),
    ("ln_bits", "thr", 2 ** 31, "ln_bits: threshold thr[4] = 2147483648 outside the int32 range"),
    ("ln_bits", "thr", -(2 ** 31) - 1, "ln_bits: threshold thr[4] = -2147483649 outside the int32 range"),
    ("ln_bits", "ln", 25, "ln_bits: LayerNorm shift 25 outside 0..24"),
    ("final_ln", "gain", 2 ** 22 + 1, f"head_dist_norm: gain[3] = {2 ** 22 + 1} outside [-2^22, 2^22]"),
    ("final_ln", "offset", -(2 ** 28) - 1, f"norm: offset[2] = {-(2 ** 28) - 1} outside [-2^28, 2^28]"),
    ("final_ln", "k", 25, "final_layernorm: shift head_ln 25 outside 0..24")])
def test_narrow_width_bounds_are_checked(builds: ModelBuilds, tmp_path: Path, kernel: str, field: str, value: int,
                                         message: str) -> None:
    """Each bound a narrowed width relies on, planted one at a time: a one-line C-simulation error
    naming the unit, never a truncated value."""
    err = run_kernel_error(builds, "a", kernel, tmp_path, **_planted("a", kernel, field, value))
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ERROR: {message}"), err


# ============================================================================ whole models
def check_pass(builds: ModelBuilds, capsys, key: str, *extra: str) -> str:
    rc, out, err = run_cli(capsys, "csim", builds.root / key, *extra)
    assert rc == 0, out + err
    assert re.search(r"^PASS: 43 traced tensors bit-exact on \d+ images; C-sim iterations equal the cycle "
                     r"model for all 14 layers and the stage model for all 31 other processes$", out, re.M), out
    return out


@pytest.mark.parametrize("key", ["A", "B"])
def test_model_csim_on_digits_equals_gsbsim(builds: ModelBuilds, capsys, key: str) -> None:
    """G = 3 / row statistic with a per-layer folding file; G = 1 / image statistic with --pe/--simd."""
    project = load_project(builds.root / key)
    builds[key]                                                # wait for the background build
    out = check_pass(builds, capsys, key, "--images", 5)
    manifest = json.loads((project.vectors_dir / "manifest.json").read_text())
    assert manifest["data"] == "digits/test" and manifest["images"] == 5   # real digits images
    # the testbench's own report: every tensor, and ITERS equal to the cycle model, layer by layer
    exe, _, rebuilt = csim.build(project)
    assert not rebuilt                                         # cached
    rep = csim.run_testbench(project, exe)
    want = cycle_report(project.header, project.folding).per_layer
    assert rep.iters == want and rep.passed and rep.tensors_passed == len(trace_specs(project.header))
    assert {"blocks.1.softmax", "blocks.0.ln1", "final_norm", "embed"} <= set(rep.stages)
    for name, cycles in want.items():
        assert re.search(rf"^{re.escape(name)}\s+{cycles}\s+{cycles}\s+ok$", out, re.M)
    if key == "A":
        fold = folding_from_dict(project.header, FOLDING_A)
        # the residual-stream lanes at 1 are not written to project.json (a default project is unchanged)
        ones = {k for k in lane_dims(project.header) if fold.get(k) == Fold(1, 1) and k not in project.folding}
        assert project.folding == {k: v for k, v in fold.items() if k not in ones} and want["blocks.1.av"] == mvau_cycles(16, 18, 16, 18, 18, 2 * 9)
    else:
        assert project.folding == global_folding(project.header, 2, 8)
        assert project.header["groups"] == 1 and project.header["mask_stat"] == "image"


def test_flipped_parameter_bit_fails_naming_the_layer(builds: ModelBuilds, capsys) -> None:
    builds["A"]
    builds.vectors("A")
    flipped = builds.root / "A_flipped"
    shutil.copytree(builds.root / "A", flipped)
    header = flipped / "src" / "params" / "block_0.h"
    text = header.read_text()
    start = text.index("b0_proj_weight")
    m = re.compile(r"0x([0-9A-F]+)ULL").search(text, start)  # lane 0, tile 0: W[0][0..SIMD)
    word = int(m.group(1), 16) ^ 1                             # flip W[row 0][column 0]
    header.write_text(text[:m.start()] + f"0x{word:X}ULL" + text[m.end():])
    rc, out, err = run_cli(capsys, "csim", flipped, "--keep-vectors")
    assert rc == 1, out + err
    fail = [l for l in out.splitlines() if l.startswith("FAIL: MISMATCH")]
    assert len(fail) == 1 and fail[0].startswith("FAIL: MISMATCH blocks.0.proj.acc[0, 0, 0]: got "), out
    assert "(layer blocks.0.proj, image 0)" in fail[0]
    got, want = map(int, re.search(r"got (-?\d+) expected (-?\d+)", fail[0]).groups())
    assert abs(got - want) == 2                                # exactly one +-1 product changed sign
    assert "PASS" not in out


def test_iteration_count_differing_from_the_cycle_model_fails(builds: ModelBuilds, capsys) -> None:
    """A project whose recorded folding no longer matches its code: ITERS != cycle model, exit 1."""
    builds["B"]
    builds.vectors("B")
    stale = builds.root / "B_stale"
    shutil.copytree(builds.root / "B", stale)                  # keeps the cached build
    pj = json.loads((stale / "project.json").read_text())
    assert pj["folding"]["blocks.0.fc1"] == {"pe": 2, "simd": 8}
    pj["folding"]["blocks.0.fc1"]["pe"] = 4
    (stale / "project.json").write_text(json.dumps(pj))
    rc, out, err = run_cli(capsys, "csim", stale, "--keep-vectors")
    assert rc == 1, out + err
    assert "build cached" in out                               # the same executable as B's
    assert "FAIL: layer blocks.0.fc1: C-sim counted 1296 iterations, the cycle model 648" in out
    # the fc1 activation's lanes follow fc1's PE: the stage model catches it too
    assert "FAIL: process blocks.0.fc1_act: C-sim counted 432 iterations, the stage model 216" in out
    assert re.search(r"^blocks\.0\.fc1\s+1296\s+648\s+DIFFERENT$", out, re.M)
    assert "PASS" not in out


@pytest.mark.parametrize("key", ["A", "B"])
def test_synthesis_view_compiles(builds: ModelBuilds, key: str) -> None:
    """-Wall -Wextra -Werror with __SYNTHESIS__ and the declaration-only hls::stream."""
    assert builds[f"{key}-synth"].is_file()


def test_sanitizer_build_passes(builds: ModelBuilds, capsys) -> None:
    """ASan + UBSan over the whole model (G = 1, image statistic): no memory error, no UB."""
    builds["B-asan"]
    builds.vectors("B")
    out = check_pass(builds, capsys, "B", "--sanitize", "--keep-vectors")
    assert "(ASan+UBSan)" in out


def test_generated_makefile_builds_without_warnings(builds: ModelBuilds, capsys) -> None:
    proc = builds["B-make"]
    assert proc.returncode == 0, proc.stderr
    assert "-O2 -Wall -Wextra" in proc.stdout and "warning" not in proc.stderr.lower()
    copy = builds.root / "B_make"
    assert run_cli(capsys, "vectors", "--model", builds.paths["B"], "--out", copy, "--images", 2)[0] == 0
    run = subprocess.run(["make", "-C", str(copy), "csim"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "PASS 43 tensors, 2 images" in run.stdout, run.stdout + run.stderr


def test_generated_project_layout(builds: ModelBuilds) -> None:
    root = builds.root / "A"
    for rel in ("src/top.cpp", "src/top.h", "src/config.h", "src/params/embed.h", "src/params/block_0.h",
                "src/params/block_1.h", "src/params/head.h", "tb/tb.cpp", "Makefile", "vitis.tcl", "project.json"):
        assert (root / rel).is_file(), rel
    pj = json.loads((root / "project.json").read_text())
    assert pj["model_sha256"] == csim.sha256_file(builds.paths["A"])
    assert pj["folding"]["blocks.1.qk"] == {"pe": 9, "simd": 16} and pj["header"]["groups"] == 3
    config = (root / "src" / "config.h").read_text()
    assert "const unsigned B1_AV_PE = 16, B1_AV_SIMD = 18;" in config
    assert f"AP_TYPES ?= {toolchain.find_ap_types()}" in (root / "Makefile").read_text()
    tcl = (root / "vitis.tcl").read_text()
    assert "set_top gsb_top" in tcl and "csynth_design" in tcl and "create_clock -period 5.000" in tcl
    block = (root / "src" / "params" / "block_0.h").read_text()
    assert "// blocks.0.qkv.weight: +-1 weights 3E x E" in block      # a comment per array
    assert "uint64_t b0_fc2_weight[B0_FC2_PE][gsb::mvau_shape<HD, E, B0_FC2_SIMD, B0_FC2_PE>::TILES]" in block


# ============================================================================ bad inputs
def test_csim_errors_are_one_line(builds: ModelBuilds, capsys, monkeypatch: pytest.MonkeyPatch,
                                  tmp_path: Path) -> None:
    builds.wait_all()                      # the background builds read $CXX and $GSBSIM_AP_TYPES too
    b = builds.root / "B"
    # not a project
    assert_one_line_error(*run_cli(capsys, "csim", tmp_path), "is not a gsbsim HLS project")
    assert_one_line_error(*run_cli(capsys, "csim", tmp_path / "nope"), "is not a folder")
    # missing compiler, missing ap_types
    with monkeypatch.context() as m:
        m.setenv("CXX", "/nonexistent")
        assert_one_line_error(*run_cli(capsys, "csim", b, "--keep-vectors"),
                              "C++ compiler not found (CXX=/nonexistent)")
    with monkeypatch.context() as m:
        m.setenv("GSBSIM_AP_TYPES", "/nonexistent")
        assert_one_line_error(*run_cli(capsys, "csim", b, "--keep-vectors"),
                              "GSBSIM_AP_TYPES=/nonexistent does not contain ap_int.h")
    # a project generated from another model: the file at its model path changed
    other = tmp_path / "other.npz"
    shutil.copy(builds.paths["B"], other)
    assert run_cli(capsys, "hls", "--model", other, "--out", tmp_path / "prj")[0] == 0
    m2 = random_model(np.random.default_rng(999), embed_dim=24, num_heads=3, mlp_hidden=48, groups=1, ratios=())
    save_model(other, m2.header, m2.arrays)
    assert_one_line_error(*run_cli(capsys, "csim", tmp_path / "prj"), "was generated from another model",
                          str(other))
    # missing vectors
    shutil.copy(builds.paths["B"], other)                      # the very file of model B again
    assert run_cli(capsys, "hls", "--model", other, "--out", tmp_path / "prj")[0] == 0
    assert_one_line_error(*run_cli(capsys, "csim", tmp_path / "prj", "--keep-vectors"), "missing vectors",
                          "manifest.json not found")
    shutil.copytree(builds.vectors("B"), tmp_path / "prj" / "vectors")
    (tmp_path / "prj" / "vectors" / "blocks.1.ctx.npy").unlink()
    assert_one_line_error(*run_cli(capsys, "csim", tmp_path / "prj", "--keep-vectors"), "missing vectors",
                          "blocks.1.ctx.npy not found")
    # a generated file missing: not a (complete) project
    (tmp_path / "prj" / "tb" / "tb.cpp").unlink()
    assert_one_line_error(*run_cli(capsys, "csim", tmp_path / "prj"), "tb/tb.cpp is missing")


def test_hls_errors_are_one_line(builds: ModelBuilds, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds.wait_all()
    path = builds.paths["B"]
    assert_one_line_error(*run_cli(capsys, "hls", "--model", tmp_path / "none.npz", "--out", tmp_path / "p"),
                          "model file not found")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert_one_line_error(*run_cli(capsys, "hls", "--model", path, "--out", tmp_path / "busy"),
                          "not a gsbsim HLS project; refusing to write into it")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    bad = tmp_path / "fold.json"
    bad.write_text(json.dumps({"blocks.0.qkv": {"pe": 5}}))
    assert_one_line_error(*run_cli(capsys, "hls", "--model", path, "--out", tmp_path / "p", "--folding", bad),
                          "pe 5 does not divide MH = 72")
    assert_one_line_error(*run_cli(capsys, "hls", "--model", path, "--out", tmp_path / "p", "--pe", 0),
                          "--pe must be a positive integer")
    assert not (tmp_path / "p").exists()                      # nothing half-written
    # regenerating over a project replaces it (and drops its build)
    assert run_cli(capsys, "hls", "--model", path, "--out", tmp_path / "p", "--pe", 3)[0] == 0
    assert run_cli(capsys, "hls", "--model", path, "--out", tmp_path / "p", "--pe", 4)[0] == 0
    assert load_project(tmp_path / "p").folding["blocks.0.fc1"].pe == 4
    assert [p.name for p in (tmp_path / "p").iterdir() if p.name.startswith(".")] == []
    # a folder holding only gsbsim vectors may receive the project; missing ap_types only
    # leave the Makefile asking for AP_TYPES (csim reports them as an error)
    (tmp_path / "v" / "vectors").mkdir(parents=True)
    monkeypatch.setenv("GSBSIM_AP_TYPES", "/nonexistent")
    assert run_cli(capsys, "hls", "--model", path, "--out", tmp_path / "v")[0] == 0
    assert "AP_TYPES ?= \nifeq ($(AP_TYPES),)" in (tmp_path / "v" / "Makefile").read_text()
