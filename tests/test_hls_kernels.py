"""HLS C++ kernels (hls/include/gsb) in g++ C-simulation against gsbsim.conventions.

Each testbench configuration is compiled once per session (in parallel, on all cores)
and run on random cases written as .npy; the expected integers come from the numpy
reference functions in gsbsim.conventions, and every kernel's pipelined iteration count
must equal gsbsim's FINN cycle model.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsbsim.format import conventions as cv
from gsbsim.hlsgen import toolchain
from gsbsim.hw.folding import mvau_cycles
from tests.support.hls_builds import Builds, CsimResult, run_csim, testbench_dir

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MISMATCH_RE = re.compile(r"^MISMATCH (\w+)\[(\d+)\]: got (-?\d+) expected (-?\d+)$")
POLICY_MACROS = {"threshold": "GSB_THRESHOLD", "two_sided": "GSB_TWO_SIDED",
                 "requant": "GSB_REQUANT", "raw": "GSB_RAW"}
MODE_TYPES = {"xnor": "XnorMode", "and": "AndMode"}


# ----------------------------------------------------------------------------- build configurations
@dataclass(frozen=True)
class MvauCfg:
    mw: int
    mh: int
    simd: int
    pe: int
    mode: str      # "xnor" | "and"
    policy: str    # "threshold" | "two_sided" | "requant" | "raw"
    sanitize: bool = False

    @property
    def sf(self) -> int:
        return math.ceil(self.mw / self.simd)

    def defines(self) -> dict[str, int | str]:
        return {"CFG_MW": self.mw, "CFG_MH": self.mh, "CFG_SIMD": self.simd, "CFG_PE": self.pe,
                "CFG_MODE": MODE_TYPES[self.mode], "CFG_POLICY": POLICY_MACROS[self.policy]}


@dataclass(frozen=True)
class Build:
    source: str                      # testbench file in hls/tb
    defines: Mapping[str, int | str]
    sanitize: bool = False


# K (= MW) is never a multiple of 64 and mostly not of SIMD; SIMD spans < 64, = 64, > 64
# (two uint64 chunks per word), odd (5, 37); PE spans 1, 2, 3, 4, 8, 16 (= MH, one fold).
MVAU = {
    "xnor_threshold": MvauCfg(100, 12, 16, 4, "xnor", "threshold"),
    "xnor_raw": MvauCfg(130, 24, 64, 8, "xnor", "raw"),
    "and_threshold": MvauCfg(200, 6, 128, 3, "and", "threshold"),
    "and_raw": MvauCfg(70, 10, 8, 2, "and", "raw"),
    "xnor_two_sided": MvauCfg(37, 5, 37, 1, "xnor", "two_sided"),
    "xnor_requant_asan": MvauCfg(96, 16, 32, 16, "xnor", "requant", sanitize=True),
    "and_requant": MvauCfg(65, 8, 5, 4, "and", "requant"),
}
ARGMAX_N, ARGMAX_PE = 10, 2
RESIDUAL_N, RESIDUAL_PE = 12, 4
BUILDS: dict[str, Build] = {
    **{name: Build("mvau_tb.cpp", cfg.defines(), cfg.sanitize) for name, cfg in MVAU.items()},
    "argmax": Build("argmax_tb.cpp", {"CFG_N": ARGMAX_N, "CFG_PE": ARGMAX_PE}),
    "residual": Build("residual_tb.cpp", {"CFG_N": RESIDUAL_N, "CFG_PE": RESIDUAL_PE}),
    "npy_stream": Build("npy_stream_tb.cpp", {}),
}


class KernelBuilds(Builds):
    """Every testbench configuration, compiled in parallel on all cores when the first test asks."""

    def __init__(self, root: Path):
        super().__init__(root, workers=os.cpu_count() or 2)
        # longest first: the sanitizer build takes about three times the others
        for name, b in sorted(BUILDS.items(), key=lambda item: not item[1].sanitize):
            self.testbench(name, b.source, b.defines, sanitize=b.sanitize)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builds]:
    with KernelBuilds(tmp_path_factory.mktemp("hls_builds")) as b:
        yield b


# ----------------------------------------------------------------------------- case writing
def finn_weight_tiles(w_bits: np.ndarray, simd: int, pe: int) -> np.ndarray:
    """[MH, MW] weight bits -> uint64 [PE, TILES, ceil(SIMD/64)] in the kernel's FINN layout.

    Row r goes to lane r % PE, fold r // PE; tile = nf * SF + sf; bit i of a SIMD word is
    column sf * SIMD + i, the last word zero-padded; each word is split into 64-bit chunks
    with cv.pack_bits (LSB first).
    """
    mh, mw = w_bits.shape
    sf = math.ceil(mw / simd)
    padded = np.zeros((mh, sf * simd), dtype=np.uint8)
    padded[:, :mw] = w_bits
    chunks = cv.pack_bits(padded.reshape(mh, sf, simd))          # [MH, SF, C]
    c = chunks.shape[-1]
    return np.ascontiguousarray(chunks.reshape(mh // pe, pe, sf, c).transpose(1, 0, 2, 3)
                                .reshape(pe, (mh // pe) * sf, c)).astype("<u8")


def save(d: Path, **arrays: np.ndarray) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        np.save(d / f"{name}.npy", np.asarray(arr, order="C"))


@dataclass
class MvauCase:
    a_bits: np.ndarray   # [reps, MW]
    w_bits: np.ndarray   # [MH, MW]
    dots: np.ndarray     # [reps, MH] int64, from gsbsim.conventions

    @property
    def reps(self) -> int:
        return self.a_bits.shape[0]


def random_mvau_case(cfg: MvauCfg, rng: np.random.Generator, reps: int) -> MvauCase:
    a = (rng.random((reps, cfg.mw)) < rng.uniform(0.2, 0.8)).astype(np.uint8)
    w = (rng.random((cfg.mh, cfg.mw)) < 0.5).astype(np.uint8)
    pa, pw = cv.pack_bits(a), cv.pack_bits(w)
    dots = cv.xnor_dot(pa, pw, cfg.mw) if cfg.mode == "xnor" else cv.and_dot(pa, pw)
    return MvauCase(a, w, dots)


def write_mvau_case(d: Path, cfg: MvauCfg, case: MvauCase, expected: np.ndarray, **params: np.ndarray) -> Path:
    save(d, **{"in": cv.pack_bits(case.a_bits).astype("<u8"),
               "weights": finn_weight_tiles(case.w_bits, cfg.simd, cfg.pe),
               "expected": expected}, **params)
    return d


def tie_values(case: MvauCase, rng: np.random.Generator) -> np.ndarray:
    """Per row, the accumulator value of a random input vector: a threshold that is hit exactly."""
    return case.dots[rng.integers(0, case.reps, case.dots.shape[1]), np.arange(case.dots.shape[1])]


def run_ok(exe: Path, d: Path, expected_iters: int) -> CsimResult:
    res = run_csim(exe, d)
    assert res.passed, f"C-sim failed (exit {res.returncode}):\n{res.stdout}\n{res.stderr}"
    assert res.iters == expected_iters
    return res


def mvau_iters(cfg: MvauCfg, reps: int) -> int:
    expected = reps * (cfg.mh // cfg.pe) * math.ceil(cfg.mw / cfg.simd)
    assert mvau_cycles(cfg.mh, cfg.mw, cfg.pe, cfg.simd, vectors=reps) == expected
    return expected


# ----------------------------------------------------------------------------- policy cases
def threshold_case(cfg: MvauCfg, case: MvauCase, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    thr = tie_values(case, rng)
    loose = rng.random(cfg.mh) < 0.3
    thr[loose] = rng.integers(-cfg.mw, cfg.mw + 1, loose.sum())
    thr[0], thr[-1] = INT32_MIN, INT32_MAX          # "always 1" and "always 0" channels
    expected = (case.dots >= thr).astype(np.uint8)
    assert np.any(case.dots == thr), "the case must contain exact threshold ties"
    assert expected[:, 0].all() and not expected[:, -1].any()
    return expected, {"thr": thr.astype("<i4")}


def two_sided_case(cfg: MvauCfg, case: MvauCase, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    a, b = tie_values(case, rng), tie_values(case, rng)
    lo, hi = np.minimum(a, b) - 1, np.maximum(a, b) + 1
    lo[::2] += 1                                     # exact ties on the low side ...
    hi[1::2] -= 1                                    # ... and on the high side
    lo, hi = np.minimum(lo, hi - 1), np.maximum(hi, lo + 1)
    expected = ((case.dots >= hi) | (case.dots <= lo)).astype(np.uint8)
    assert np.any(case.dots == lo) and np.any(case.dots == hi)
    assert 0 < expected.sum() < expected.size
    return expected, {"lo": lo.astype("<i4"), "hi": hi.astype("<i4")}


def requant_case(cfg: MvauCfg, case: MvauCase, rng: np.random.Generator, mult: int, shift: int
                 ) -> tuple[np.ndarray, dict]:
    """Biases put one input vector per row exactly on a .5 rounding tie, on both signs."""
    prod = case.dots * mult
    if shift == 0:
        bias = rng.integers(-1000, 1000, cfg.mh)
    else:
        half, one = 1 << (shift - 1), 1 << shift
        j = rng.integers(0, case.reps, cfg.mh)
        k = rng.integers(-3, 3, cfg.mh)               # multiples of 2^shift: both signs
        bias = half - np.mod(prod[j, np.arange(cfg.mh)], one) + k * one
    x = prod + bias
    expected = cv.requant(x, 1, shift)
    assert expected.min() >= INT32_MIN and expected.max() <= INT32_MAX
    return expected.astype("<i4"), {"requant": np.array([mult, shift], dtype="<i8"),
                                    "bias": bias.astype("<i8")}


def assert_half_ties_both_signs(case: MvauCase, params: dict, shift: int, mult: int) -> None:
    x = case.dots * mult + params["bias"]
    ties = np.mod(x, 1 << shift) == (1 << (shift - 1))
    assert np.any(ties & (x < 0)) and np.any(ties & (x > 0)), "need .5 ties on negative and positive values"


# ----------------------------------------------------------------------------- mvau tests
@pytest.mark.parametrize("name", ["xnor_threshold", "and_threshold"])
def test_mvau_threshold_ties(builds: Builds, tmp_path: Path, name: str) -> None:
    cfg = MVAU[name]
    rng = np.random.default_rng(11)
    for trial in range(3):
        case = random_mvau_case(cfg, rng, reps=7)
        expected, params = threshold_case(cfg, case, rng)
        d = write_mvau_case(tmp_path / str(trial), cfg, case, expected, **params)
        run_ok(builds[name], d, mvau_iters(cfg, case.reps))


def test_mvau_two_sided_threshold(builds: Builds, tmp_path: Path) -> None:
    cfg = MVAU["xnor_two_sided"]
    rng = np.random.default_rng(12)
    for trial in range(3):
        case = random_mvau_case(cfg, rng, reps=9)
        expected, params = two_sided_case(cfg, case, rng)
        d = write_mvau_case(tmp_path / str(trial), cfg, case, expected, **params)
        run_ok(builds["xnor_two_sided"], d, mvau_iters(cfg, case.reps))


@pytest.mark.parametrize("name", ["xnor_raw", "and_raw"])
def test_mvau_raw_dot_products(builds: Builds, tmp_path: Path, name: str) -> None:
    cfg = MVAU[name]
    rng = np.random.default_rng(13)
    case = random_mvau_case(cfg, rng, reps=5)
    # extreme vectors: all ones and all zeros reach the ends of the accumulator range
    case.a_bits[0], case.a_bits[1] = 1, 0
    case.w_bits[0] = 1
    pa, pw = cv.pack_bits(case.a_bits), cv.pack_bits(case.w_bits)
    case.dots = cv.xnor_dot(pa, pw, cfg.mw) if cfg.mode == "xnor" else cv.and_dot(pa, pw)
    assert case.dots[0, 0] == cfg.mw
    d = write_mvau_case(tmp_path, cfg, case, case.dots.astype("<i4"))
    run_ok(builds[name], d, mvau_iters(cfg, case.reps))


@pytest.mark.parametrize("name,mult,shift", [("xnor_requant_asan", 37, 4), ("xnor_requant_asan", -5, 1),
                                             ("and_requant", 1000, 9), ("and_requant", 3, 0)])
def test_mvau_requant_rounding(builds: Builds, tmp_path: Path, name: str, mult: int, shift: int) -> None:
    """Round half up at exact .5 on negative and positive values; xnor_requant_asan runs under ASan+UBSan."""
    cfg = MVAU[name]
    rng = np.random.default_rng(14 + shift)
    case = random_mvau_case(cfg, rng, reps=6)
    expected, params = requant_case(cfg, case, rng, mult, shift)
    if shift:
        assert_half_ties_both_signs(case, params, shift, mult)
    d = write_mvau_case(tmp_path, cfg, case, expected, **params)
    run_ok(builds[name], d, mvau_iters(cfg, case.reps))


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), mult=st.integers(-(2**20), 2**20), shift=st.integers(0, 24),
       reps=st.integers(1, 4))
def test_mvau_requant_hypothesis(builds: Builds, seed: int, mult: int, shift: int, reps: int) -> None:
    cfg = MVAU["and_requant"]
    rng = np.random.default_rng(seed)
    case = random_mvau_case(cfg, rng, reps=reps)
    expected, params = requant_case(cfg, case, rng, mult, shift)
    with tempfile.TemporaryDirectory() as tmp:
        d = write_mvau_case(Path(tmp), cfg, case, expected, **params)
        run_ok(builds["and_requant"], d, mvau_iters(cfg, reps))


def test_mvau_flipped_weight_bit_is_reported(builds: Builds, tmp_path: Path) -> None:
    cfg = MVAU["xnor_raw"]
    rng = np.random.default_rng(15)
    case = random_mvau_case(cfg, rng, reps=3)
    d = write_mvau_case(tmp_path, cfg, case, case.dots.astype("<i4"))
    run_ok(builds["xnor_raw"], d, mvau_iters(cfg, case.reps))

    # flip W[row 2 * PE + 1][column SIMD + 3]: lane 1, fold 2, synapse fold 1, bit 3
    row, col = 2 * cfg.pe + 1, cfg.simd + 3
    tiles = np.load(d / "weights.npy")
    bit = col % cfg.simd
    tiles[row % cfg.pe, (row // cfg.pe) * cfg.sf + col // cfg.simd, bit // 64] ^= np.uint64(1 << (bit % 64))
    np.save(d / "weights.npy", tiles)
    res = run_csim(builds["xnor_raw"], d)
    assert res.returncode == 1 and not res.passed
    m = MISMATCH_RE.match(res.mismatches[0])
    assert m, res.stdout
    name, index, got, want = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
    assert (name, index, want) == ("out", row, case.dots[0, row])   # first vector, that row
    a = 1 if case.a_bits[0, col] else -1
    w = 1 if case.w_bits[row, col] else -1
    assert got - want == -2 * a * w                  # exactly that product changed sign
    assert f"FAIL {case.reps} mismatches" in res.stdout


def test_mvau_rejects_nonzero_pad_bits(builds: Builds, tmp_path: Path) -> None:
    cfg = MVAU["xnor_threshold"]                     # MW=100, SIMD=16: 12 pad bits in the last word
    rng = np.random.default_rng(16)
    case = random_mvau_case(cfg, rng, reps=2)
    expected, params = threshold_case(cfg, case, rng)
    d = write_mvau_case(tmp_path, cfg, case, expected, **params)
    tiles = np.load(d / "weights.npy")
    tiles[0, cfg.sf - 1, 0] |= np.uint64(1 << (cfg.simd - 1))   # a bit above MW
    np.save(d / "weights.npy", tiles)
    res = run_csim(builds["xnor_threshold"], d)
    assert res.returncode == 2
    assert "weights[0][6] has non-zero pad bits above MW=100" in res.stderr


def test_mvau_testbench_rejects_bad_inputs(builds: Builds, tmp_path: Path) -> None:
    cfg = MVAU["xnor_raw"]
    case = random_mvau_case(cfg, np.random.default_rng(17), reps=2)
    d = write_mvau_case(tmp_path, cfg, case, case.dots.astype("<i8"))   # wrong dtype
    res = run_csim(builds["xnor_raw"], d)
    assert res.returncode == 2
    assert "expected.npy: dtype '<i8' does not match the expected '<i4'" in res.stderr
    save(d, expected=case.dots[:, :-1].astype("<i4"))                   # wrong shape
    res = run_csim(builds["xnor_raw"], d)
    assert res.returncode == 2 and "expected.npy: shape (2, 23) does not match the expected (2, 24)" in res.stderr


# ----------------------------------------------------------------------------- argmax, residual
def test_argmax_ties_lowest_index(builds: Builds, tmp_path: Path) -> None:
    rng = np.random.default_rng(18)
    reps = 40
    logits = rng.integers(-4, 4, (reps, ARGMAX_N)).astype("<i4")     # small range: many ties
    logits[0] = INT32_MIN
    logits[1] = 7
    logits[2, [3, 8]] = INT32_MAX
    expected = np.argmax(logits, axis=1).astype("<i8")                # numpy: first maximum
    assert tuple(expected[:3]) == (0, 0, 3)
    assert np.sum((logits == logits.max(axis=1, keepdims=True)).sum(axis=1) > 1) > 5
    save(tmp_path, logits=logits, expected=expected)
    run_ok(builds["argmax"], tmp_path, reps * ARGMAX_N // ARGMAX_PE)


def test_residual_add(builds: Builds, tmp_path: Path) -> None:
    rng = np.random.default_rng(19)
    reps = 6
    a = rng.integers(-(2**30), 2**30, (reps, RESIDUAL_N), dtype=np.int64)
    b = rng.integers(-(2**30), 2**30, (reps, RESIDUAL_N), dtype=np.int64)
    a[0, 0], b[0, 0] = INT32_MAX - 5, 5                              # exactly INT32_MAX
    a[0, 1], b[0, 1] = INT32_MIN + 5, -5                             # exactly INT32_MIN
    save(tmp_path, a=a.astype("<i4"), b=b.astype("<i4"), expected=(a + b).astype("<i4"))
    run_ok(builds["residual"], tmp_path, reps * RESIDUAL_N // RESIDUAL_PE)

    a[3, 7], b[3, 7] = INT32_MAX, 1              # overflow must be loud: row 3 -> words 9..11
    save(tmp_path, a=a.astype("<i4"), b=b.astype("<i4"))
    res = run_csim(builds["residual"], tmp_path)
    assert res.returncode == 2 and "2147483647 + 1 overflows int32 (word 10, lane 3)" in res.stderr


# ----------------------------------------------------------------------------- npy and stream helpers
def test_npy_round_trip_and_loud_errors(builds: Builds, tmp_path: Path) -> None:
    rng = np.random.default_rng(20)
    arrays = {"i1": rng.integers(-128, 128, (3, 5)).astype(np.int8),
              "u1": rng.integers(0, 256, (7,)).astype(np.uint8),
              "i4": rng.integers(INT32_MIN, INT32_MAX, (2, 3, 4)).astype("<i4"),
              "i8": np.array(5, dtype="<i8"),                                    # 0-d
              "u8": np.array([[0], [1], [2**63], [2**64 - 1]], dtype="<u8")}
    save(tmp_path, **arrays)
    res = run_csim(builds["npy_stream"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    for tag, arr in arrays.items():
        back = np.load(tmp_path / f"out_{tag}.npy")
        assert back.dtype == arr.dtype and back.shape == arr.shape and np.array_equal(back, arr)
    assert "EMPTY_READ gsb::stream 'probe': read from an empty stream (1 elements read so far)" in res.stdout
    assert f"DTYPE_ERROR {tmp_path}/i4.npy: dtype '<i4' does not match the expected '<i8'" in res.stdout
    assert f"SHAPE_ERROR {tmp_path}/i4.npy: shape (2, 3, 4) does not match the expected (7, 7)" in res.stdout

    np.save(tmp_path / "i4.npy", np.asfortranarray(arrays["i4"]))           # Fortran order is refused
    res = run_csim(builds["npy_stream"], tmp_path)
    assert res.returncode == 2 and "i4.npy: Fortran-order arrays are not supported" in res.stderr


# ----------------------------------------------------------------------------- environment errors
def test_missing_compiler_is_a_clear_error(builds: Builds, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    builds.wait_all()                     # the background compiles read $CXX too
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    with pytest.raises(toolchain.HlsEnvError, match=r"C\+\+ compiler not found \(CXX=/nonexistent/g\+\+\)"):
        toolchain.find_compiler()
    with pytest.raises(toolchain.HlsEnvError, match="install g\\+\\+"):
        toolchain.compile_cpp([testbench_dir() / "npy_stream_tb.cpp"], tmp_path / "x")


def test_missing_ap_types_is_a_clear_error(builds: Builds, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    builds.wait_all()
    monkeypatch.setenv("GSBSIM_AP_TYPES", "/nonexistent")
    with pytest.raises(toolchain.HlsEnvError, match=r"GSBSIM_AP_TYPES=/nonexistent does not contain ap_int.h"):
        toolchain.find_ap_types()
    with pytest.raises(toolchain.HlsEnvError, match="pip install --no-deps hls4ml"):
        toolchain.compile_cpp([testbench_dir() / "npy_stream_tb.cpp"], tmp_path / "x")


def test_compile_error_reports_compiler_output(tmp_path: Path) -> None:
    src = tmp_path / "bad.cpp"
    src.write_text('#include "gsb/mvau.hpp"\nint main() { return undeclared_name; }\n')
    with pytest.raises(toolchain.HlsEnvError, match=r"(?s)bad.cpp failed.*undeclared_name"):
        toolchain.compile_cpp([src], tmp_path / "bad")


def test_sanitize_build_catches_memory_errors_and_ub(tmp_path: Path) -> None:
    """sanitize=True really instruments: a use after free and a signed overflow both abort."""
    src = tmp_path / "bad.cpp"
    src.write_text('#include <cstring>\n#include "gsb/kernels.hpp"\n'
                   "int main(int argc, char** argv) {\n"
                   "  if (std::strcmp(argv[1], \"ub\") == 0) { int x = 0x7fffffff - 2 + argc; return x + 1; }\n"
                   "  int* p = new int[4](); delete[] p; return p[argc]; }\n")
    exe = toolchain.compile_cpp([src], tmp_path / "bad", sanitize=True)
    res = run_csim(exe, "ub")
    assert res.returncode != 0 and "runtime error: signed integer overflow" in res.stderr
    res = run_csim(exe, "heap")
    assert res.returncode != 0 and "AddressSanitizer: heap-use-after-free" in res.stderr
