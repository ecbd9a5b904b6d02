"""bit_ids.append_bit_ids: the set bits of a word appended to an int32 list (the A.V walk's key lists).

The A.V context against unpacked references (tests/test_kernels.py) and the whole fast path against the
golden one cover it in use; here every bit pattern class is checked on its own, with both of its forms:
vpcompressb (AVX-512 VBMI2) and the ctz loop (compiled for an AVX-512 CPU without VBMI2 in a subprocess,
where the whole fast path is also checked against the golden one)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

from gsbsim.engine.bit_ids import SPARE, append_bit_ids, has_byte_compress


@njit  # not cached: the cache would not see an edit of the intrinsic
def _walk(words, base, ids, start):
    n = start
    for w in range(words.shape[0]):
        n = append_bit_ids(words[w], base + 64 * w, ids, n)
    return n


def check_patterns() -> None:
    """Densities from empty to full, words of exactly 16/17/32/48/64 bits (the store boundaries), the top
    bit, a list already holding ids, and nothing written before the list's end."""
    rng = np.random.default_rng(0)
    words = [np.zeros(64, bool), np.ones(64, bool)]
    for k in (1, 15, 16, 17, 31, 32, 33, 48, 63):
        b = np.zeros(64, bool)
        b[rng.choice(64, k, replace=False)] = True
        words.append(b)
    top = np.zeros(64, bool)
    top[63] = True
    words.append(top)
    for p in (0.01, 0.07, 0.3, 0.5, 0.9):
        words.extend(rng.random((4, 64)) < p)
    bits = np.array(words)
    packed = np.packbits(bits, axis=1, bitorder="little").view(np.uint64).reshape(-1)
    for start in (0, 5):
        ids = np.full(start + bits.size + SPARE, -7, dtype=np.int32)
        n = _walk(packed, 1 << 24, ids, start)
        want = (1 << 24) + np.flatnonzero(bits.reshape(-1))
        assert n == start + want.size
        assert np.array_equal(ids[start:n], want)
        assert (ids[:start] == -7).all()


def test_every_pattern():
    check_patterns()


_NO_VBMI2 = """
import numpy as np
from gsbsim.engine import fast_ops, kernels
from gsbsim.engine.bit_ids import has_byte_compress
from gsbsim.format.random_model import random_images, random_model
from tests.support.engines import assert_same
from tests.test_bit_ids import check_patterns
assert not has_byte_compress() and kernels.PERMUTE_CONTEXT and not fast_ops.VNNI_PRODUCTS
check_patterns()
rng = np.random.default_rng(0)
for stat in ("row", "image"):    # the whole fast path == golden: value-code lookups, ctz walk, float patches
    m = random_model(rng, embed_dim=64, num_heads=1, mlp_hidden=96, img_size=16, mask_stat=stat)
    assert_same(m, random_images(rng, m, 2))
print("ok")
"""


@pytest.mark.slow
@pytest.mark.skipif(not has_byte_compress(), reason="this target already compiles the ctz loop")
def test_an_avx512_target_without_vbmi2_or_vnni(tmp_path):
    """The same checks compiled for an AVX-512 CPU without VBMI2 and VNNI (Skylake-X; Numba told so,
    the code runs on this one): the ctz loop, and the whole fast path against the golden one there
    (the A.V value-code lookups with the ctz walk, the float patch product)."""
    env = dict(os.environ, NUMBA_CPU_NAME="skylake-avx512", NUMBA_CACHE_DIR=str(tmp_path),
               NUMBA_CPU_FEATURES="+avx512f,+avx512bw,+avx512vl,+avx512dq,+avx512cd,+avx2,+avx,+popcnt,+bmi,"
                                  "+bmi2,+fma,+sse4.2")
    run = subprocess.run([sys.executable, "-c", _NO_VBMI2], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
