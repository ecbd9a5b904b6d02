"""The one C++ build harness of the hls-tier tests (test_hls_kernels, test_hls_methods, test_hls_model,
test_hls_dataflow, test_method_csim): named builds started in the background and compiled once, a
testbench compiled with its generated config.h, a random model turned into a generated project.

A module subclasses Builds, submits its builds in ``__init__`` (the longest first) and yields one
instance from a module fixture (``with``: the pool is shut down after the module). ``builds[name]``
waits for that build and returns its result (an executable, an object file, ...), raising its
compile error in the test that asked. Without g++ or the ap_types headers every test of the module
is skipped with the reason.

Not a test module: imported as ``tests.support.hls_builds``.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest

from gsbsim.hlsgen import toolchain


def require_toolchain() -> None:
    """Skip the calling test (or fixture) when g++ or the ap_types headers are missing."""
    try:
        toolchain.find_compiler()
        toolchain.find_ap_types()
    except toolchain.HlsEnvError as e:  # pragma: no cover - the project's setup installs both
        pytest.skip(str(e))


class Builds:
    """Named background builds under ``root``; ``workers`` compile at a time."""

    def __init__(self, root: Path, workers: int = 2):
        require_toolchain()  # in the caller's thread: a missing toolchain skips instead of failing a job
        self.root = root
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.jobs: dict[str, Future] = {}

    def submit(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.jobs[name] = self.pool.submit(fn, *args, **kwargs)

    def testbench(self, name: str, source: str, defines: Mapping[str, int | str], flags: tuple[str, ...] = (),
                  sanitize: bool = False) -> None:
        """Compile hls/tb/``source`` with ``defines`` as its config.h (in root/name) into root/name/tb."""
        self.submit(name, compile_testbench, self.root / name, source, defines, flags, sanitize)

    def generate(self, key: str, model, *hls_args: str) -> Path:
        """Save ``model`` as root/key.npz and generate its project in root/key (``gsbsim hls``); the model file."""
        from gsbsim.cli.app import main
        from gsbsim.format.model_file import save_model
        path = self.root / f"{key}.npz"
        save_model(path, model.header, model.arrays)
        assert main(["hls", "--model", str(path), "--out", str(self.root / key), *hls_args]) == 0
        return path

    def __getitem__(self, name: str) -> Any:
        return self.jobs[name].result()

    def wait_all(self) -> None:
        for name in list(self.jobs):
            self[name]

    def __enter__(self) -> "Builds":
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True)


def compile_testbench(d: Path, source: str, defines: Mapping[str, int | str], flags: tuple[str, ...] = (),
                      sanitize: bool = False) -> Path:
    """d/config.h from ``defines``, then hls/tb/``source`` compiled into d/tb (library and tb/ on the path)."""
    toolchain.write_config_header(d / "config.h", defines, comment=f"testbench config {d.name}")
    return toolchain.compile_cpp([toolchain.testbench_dir() / source], d / "tb",
                                 include_dirs=[d, toolchain.testbench_dir()], flags=flags, sanitize=sanitize)
