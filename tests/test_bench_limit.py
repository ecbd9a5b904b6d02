"""benchmarks/limit.py: the limit kernels compute what they count, and the optional C tile is skipped
cleanly (with the reason) when no C compiler works. No timing is asserted."""
from __future__ import annotations

import shutil

import pytest

from benchmarks import limit


def test_numba_limit_counts_its_work():
    lim = limit.numba_limit()       # asserts its output against numpy's popcounts
    lim.run(3)
    assert lim.macs(2) == 2 * lim.rows * lim.cols * 64 * limit.WORDS


def test_c_limit_builds_or_says_why(monkeypatch, tmp_path):
    monkeypatch.setattr(limit.tempfile, "gettempdir", lambda: str(tmp_path))
    lim, why = limit.c_limit()
    if shutil.which("cc") or shutil.which("gcc") or shutil.which("clang"):
        assert lim is not None and why == "", why      # built, and its checksum matched
        lim.run(2)
    else:
        assert lim is None and "no C compiler" in why


def test_c_limit_skipped_without_a_compiler(monkeypatch, tmp_path):
    monkeypatch.setattr(limit.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    lim, why = limit.c_limit()
    assert lim is None and "not found" in why
    monkeypatch.delenv("CC")
    monkeypatch.setenv("PATH", str(tmp_path))                 # nothing on PATH either
    lim, why = limit.c_limit()
    assert lim is None and why == "no C compiler (cc, gcc or clang) on PATH"


def test_c_limit_reports_a_failed_build(monkeypatch, tmp_path):
    """A compiler that fails (here: `false`) is reported with its command, not raised."""
    false = shutil.which("false")
    if false is None:
        pytest.skip("no `false` program")
    monkeypatch.setattr(limit.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setenv("CC", false)
    lim, why = limit.c_limit()
    assert lim is None and "failed" in why and "-march=native" in why
