"""C-simulation of the edge-case models (gsbsim/verify/edge_models.py: every method of the table, both
mask statistics, didb with prob 0): every traced tensor bit-exact on the 8 edge images. Then deliberately wrong kernels
(tests/support/edge_faults.py: a rounding square root, > for >= in fc1, an argmax keeping the last
maximum, rounding half away from zero in the final LayerNorm, a value mask >= for >), each planted in a
patched copy of hls/include that the build finds first (-iquote), fail the C-simulation of the gsb edge
model at the tensor of the planted tie, while all of them but fc1's together pass an ordinary random
model's C-simulation (fc1's is caught there too: requant accumulators are small integers).
Tier ``hls`` (tests/conftest.py): it builds C++. Every build starts in the background (2 at a time).
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from gsbsim.cli.app import main
from gsbsim.format.model_file import save_model
from gsbsim.format.random_model import random_images, random_model
from gsbsim.hlsgen import csim, toolchain
from gsbsim.hlsgen.project import Project, load_project
from gsbsim.verify.edge_models import EDGE_IMAGES, edge_model, edge_variants
from tests.support.edge_faults import FAULTS, Fault, faulty_library

VARIANTS = list(edge_variants())
ORDINARY_FAULTS = tuple(f for f in FAULTS if "fc1" not in f.name)


class Builds:
    """Projects of every edge variant, of the gsb edge model once per fault, and of an ordinary model with
    the faults; vectors written here, builds in the background."""

    def __init__(self, root: Path):
        try:
            toolchain.find_compiler()
            toolchain.find_ap_types()
        except toolchain.HlsEnvError as e:  # pragma: no cover - the project's setup installs both
            pytest.skip(str(e))
        self.root = root
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.jobs: dict[str, tuple[Project, Future]] = {}
        lib = toolchain.library_include_dir()
        for name, opts in edge_variants().items():
            model, images = edge_model(**opts)
            self._submit(name, model, images, ())
            if name == "gsb/row":
                for i, f in enumerate(FAULTS):
                    inc = faulty_library(lib, root / f"lib{i}", (f,))
                    self._submit(f.name, model, images, ("-iquote", str(inc)))
        plain = random_model(np.random.default_rng(100), method="gsb")
        images = (random_images(np.random.default_rng(100), plain, EDGE_IMAGES).astype(np.int16) + 128).astype(np.uint8)
        inc = faulty_library(lib, root / "lib_ordinary", ORDINARY_FAULTS)
        self._submit("ordinary", plain, images, ("-iquote", str(inc)))

    def _submit(self, key: str, model, images: np.ndarray, flags: tuple[str, ...]) -> None:
        d = self.root / key.replace("/", "_").replace(" ", "_").replace(">", "gt").replace("=", "eq")
        d.mkdir()
        save_model(d / "model.npz", model.header, model.arrays)
        np.save(d / "images.npy", images)
        prj = d / "hls"
        assert main(["hls", "--model", str(d / "model.npz"), "--out", str(prj), "--pe", "2", "--simd", "8"]) == 0
        assert main(["vectors", "--model", str(d / "model.npz"), "--out", str(prj), "--data", str(d / "images.npy"),
                     "--images", str(EDGE_IMAGES)]) == 0
        project = load_project(prj)
        self.jobs[key] = (project, self.pool.submit(csim.build, project, flags=flags))

    def run(self, key: str) -> csim.CsimReport:
        project, job = self.jobs[key]
        exe = job.result()[0]
        return csim.run_testbench(project, exe, timeout=120)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builds]:
    b = Builds(tmp_path_factory.mktemp("edge_csim"))
    yield b
    b.pool.shutdown(wait=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_edge_model_passes_csim_bit_exactly(builds: Builds, variant: str) -> None:
    rep = builds.run(variant)
    assert rep.passed, (rep.mismatch, rep.stdout[-2000:], rep.stderr[-2000:])
    assert rep.mismatch is None and rep.tensors_passed > 0


def test_the_documented_commands_pass_on_an_edge_model(builds: Builds, capsys) -> None:
    """`gsbsim csim DIR --data images.npy --images 8` on the gsb edge project (reusing its build)."""
    project, job = builds.jobs["gsb/row"]
    job.result()
    d = project.root.parent
    assert main(["csim", str(project.root), "--data", str(d / "images.npy"), "--images", str(EDGE_IMAGES)]) == 0
    out = capsys.readouterr().out
    assert f"bit-exact on {EDGE_IMAGES} images" in out


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_planted_cpp_fault_fails_csim_on_the_edge_model(builds: Builds, fault: Fault) -> None:
    rep = builds.run(fault.name)
    assert not rep.passed
    assert rep.mismatch is not None and rep.mismatch[0] == fault.first_trace, (rep.mismatch, rep.stdout[-1500:])


def test_the_same_cpp_faults_pass_csim_on_an_ordinary_model(builds: Builds) -> None:
    """What every C-simulation before the edge models ran: a random model, random images."""
    rep = builds.run("ordinary")
    assert rep.passed, (rep.mismatch, rep.stdout[-1500:])
