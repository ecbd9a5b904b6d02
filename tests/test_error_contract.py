"""The error contract of every command (docs/errors.md), table-driven.

Every row feeds one command one mistake and checks the whole contract: the exit status
(2 for bad input), exactly one line ``PROG: error: ...`` on stderr naming the problem,
nothing on stdout, and the folder it ran in exactly as it was (nothing half-written).
Then the signal policy, in real processes: a closed stdout pipe ends the command quietly
with status 0, Ctrl-C ends it with one line and status 130 and no temporary left, and
kill -9 at random moments leaves the old or the new complete output, never a part of one.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gsbsim.format.model_file import save_model
from gsbsim.format.random_model import random_model

ROOT = Path(__file__).resolve().parents[1]


def _gsbsim(argv):
    from gsbsim.cli.app import main
    return main(argv)


def _train(argv):
    from reference.train.entry import main
    return main(argv)


def _export(argv):
    from reference.export import main
    return main(argv)


def _agreement(argv):
    from reference.agreement import main
    return main(argv)


def _demo(argv):
    from reference.demo import main
    return main(argv)


COMMANDS = {"gsbsim": _gsbsim, "python -m reference.train": _train, "python -m reference.export": _export,
            "python -m reference.agreement": _agreement, "python -m reference.demo": _demo}

# (program, argv, fragment of the one error line); in argv, M is a valid model file, F a plain
# file, D an empty folder, N a missing path, J a file of junk bytes, P a FIFO, L a symlink to
# itself, all inside the test's folder
CASES = [
    # gsbsim run
    ("gsbsim", ["run"], "--model"),
    ("gsbsim", ["run", "--model", "N/m.npz"], "not found"),
    ("gsbsim", ["run", "--model", "D"], "is a folder"),
    ("gsbsim", ["run", "--model", "J"], "not a readable .npz archive"),
    ("gsbsim", ["run", "--model", "M", "--images", "0"], "--images"),
    ("gsbsim", ["run", "--model", "M", "--clock-mhz", "inf"], "--clock-mhz"),
    ("gsbsim", ["run", "--model", "M", "--clock-mhz", "1e-300"], "--clock-mhz"),
    ("gsbsim", ["run", "--model", "M", "--data", "F"], "unknown data"),
    ("gsbsim", ["run", "--model", "M", "--pe", "0"], "--pe"),
    ("gsbsim", ["run", "--model", "M", "--folding", "J"], "J"),
    ("gsbsim", ["run", "--model", "M", "--plot", "N/x.png"], "does not exist"),
    ("gsbsim", ["run", "--model", "M", "--plot", "D"], "is a folder"),
    ("gsbsim", ["run", "--model", "M", "--plot", "P"], "not a regular file"),
    ("gsbsim", ["run", "--model", "M", "--plot", "L"], "cannot be used"),
    ("gsbsim", ["run", "--model", "P"], "not a regular file"),
    ("gsbsim", ["run", "--model", "L"], "symbolic links"),
    ("gsbsim", ["run", "--model", "M", "--data", "P.npy"], "not found"),
    ("gsbsim", ["run", "--model", ""], "must not be empty"),
    ("gsbsim", ["nope"], "invalid choice"),
    ("gsbsim", ["run", "--model", "M", "--data", "random", "--images", str(10 ** 12)], "out of memory"),
    # gsbsim info
    ("gsbsim", ["info", "--model", "F"], "not an .npz archive"),
    ("gsbsim", ["info", "--model", "M", "--bogus"], "unrecognized arguments"),
    # gsbsim vectors
    ("gsbsim", ["vectors", "--model", "M", "--out", "F"], "not a folder"),
    ("gsbsim", ["vectors", "--model", "M", "--out", ""], "must not be empty"),
    ("gsbsim", ["vectors", "--model", "M", "--out", "L"], "not a folder"),
    ("gsbsim", ["vectors", "--model", "M", "--out", "D", "--images", "-3"], "--images"),
    ("gsbsim", ["vectors", "--model", "N", "--out", "D/o"], "not found"),
    ("gsbsim", ["vectors", "--model", "M", "--out", "D/o", "--data", "J.npy"], "not found"),
    ("gsbsim", ["vectors", "--model", "M", "--out", "D/o", "--data", "random", "--images", str(10 ** 12)],
     "out of memory"),
    # gsbsim hls
    ("gsbsim", ["hls", "--model", "M", "--out", "D/p", "--clock-mhz", "nan"], "--clock-mhz"),
    ("gsbsim", ["hls", "--model", "M", "--out", "D/p", "--part", "a;b"], "--part"),
    ("gsbsim", ["hls", "--model", "M", "--out", "F"], "not a folder"),
    ("gsbsim", ["hls", "--model", "M", "--out", "D/p", "--pe", "3", "--folding", "J"], "mutually exclusive"),
    ("gsbsim", ["hls", "--model", "M", "--out", "D/p", "--sizing-images", "2"], "--sizing-images needs --size-fifos"),
    ("gsbsim", ["hls", "--model", "M", "--out", "D/p", "--size-fifos", "--sizing-images", "0"], "--sizing-images"),
    ("gsbsim", ["hls", "--model", "M", "--out", "D/p", "--size-fifos", "--folding", "J"], "J"),
    # gsbsim cycles, fold, edge
    ("gsbsim", ["cycles"], "--model"),
    ("gsbsim", ["cycles", "--model", "N/m.npz"], "not found"),
    ("gsbsim", ["cycles", "--model", "M", "--images", "1"], "--images"),
    ("gsbsim", ["cycles", "--model", "M", "--pe", "0"], "--pe"),
    ("gsbsim", ["cycles", "--project", "D"], "not a gsbsim HLS project"),
    ("gsbsim", ["cycles", "--project", "N"], "not a folder"),
    ("gsbsim", ["cycles", "--project", "D", "--model", "M"], "give one of --model"),
    ("gsbsim", ["cycles", "--project", "D", "--pe", "2"], "--project takes the folding"),
    ("gsbsim", ["fold", "--model", "M", "--target-fps", "0", "--out", "N/f.json"], "--target-fps"),
    ("gsbsim", ["fold", "--model", "M", "--target-fps", "10", "--out", "N/f.json"], "does not exist"),
    ("gsbsim", ["fold", "--model", "J", "--target-fps", "10", "--out", "D/f.json"], "not a readable .npz archive"),
    ("gsbsim", ["edge", "--method", "nosuch", "--out", "N"], "--method"),
    ("gsbsim", ["edge", "--method", "gsb", "--out", "F"], "not a folder"),
    # gsbsim csim
    ("gsbsim", ["csim", "D"], "not a gsbsim HLS project"),
    ("gsbsim", ["csim", "N"], "N"),
    ("gsbsim", ["csim", "D", "--timeout", "inf"], "--timeout"),
    # reference.train
    ("python -m reference.train", ["--epochs", "0"], "--epochs"),
    ("python -m reference.train", ["--lr", "inf"], "--lr"),
    ("python -m reference.train", ["--weight-decay", "nan"], "--weight-decay"),
    ("python -m reference.train", ["--seed", str(2 ** 70)], "--seed"),
    ("python -m reference.train", ["--distill", "medium"], "--distill"),
    ("python -m reference.train", ["--preset", "nope", "--out", "D/o"], "unknown preset"),
    ("python -m reference.train", ["--out", "F", "--epochs", "1"], "not a folder"),
    ("python -m reference.train", ["--out", ""], "must not be empty"),
    ("python -m reference.train", ["--method", "bit", "--groups", "2"], "one binary plane"),
    ("python -m reference.train", ["--groups", "9"], "--groups"),
    ("python -m reference.train", ["--resume", "--out", "D/o", "--stage", "teacher"], "nothing to resume"),
    ("python -m reference.train", ["--stage", "stage1", "--teacher", "J", "--out", "D/o"], "not a readable checkpoint"),
    # reference.export
    ("python -m reference.export", ["--random", "--out", "D/m.npz", "--num-classes", "0"], "--num-classes"),
    ("python -m reference.export", ["--random", "--out", "D/m.npz", "--in-chans", "-1"], "--in-chans"),
    ("python -m reference.export", ["--checkpoint", "J", "--out", "D/m.npz", "--calib-images", "0"], "--calib-images"),
    ("python -m reference.export", ["--checkpoint", "J", "--out", "D/m.npz"], "not a readable checkpoint"),
    ("python -m reference.export", ["--checkpoint", "D", "--out", "D/m.npz"], "is a folder"),
    ("python -m reference.export", ["--random", "--out", "D"], "is a folder"),
    ("python -m reference.export", ["--random", "--out", "N/m.npz"], "does not exist"),
    ("python -m reference.export", ["--random", "--out", "P"], "not a regular file"),
    ("python -m reference.export", ["--random", "--out", "D/m.npz", "--groups", "9"], "--groups"),
    ("python -m reference.export", ["--random", "--out", "D/m.npz", "--method", "didb", "--groups", "2"],
     "one binary plane"),
    ("python -m reference.export", ["--checkpoint", "M", "--out", "D/m.npz"], "is an integer model file"),
    ("python -m reference.export", ["--random", "--out", ""], "must not be empty"),
    ("python -m reference.export", ["--checkpoint", "P", "--out", "D/m.npz"], "not a regular file"),
    ("python -m reference.export", ["--random", "--checkpoint", "J", "--out", "D/m.npz"], "not allowed with"),
    ("python -m reference.export", ["--random", "--out", "D/m.npz", "--verify-images", str(10 ** 12)],
     "out of memory"),
    # reference.agreement
    ("python -m reference.agreement", ["--checkpoint", "J", "--model", "M"], "not a readable checkpoint"),
    ("python -m reference.agreement", ["--checkpoint", "J", "--model", "M", "--layers", "-1"], "--layers"),
    ("python -m reference.agreement", ["--model", "M"], "--checkpoint"),
    # reference.demo
    ("python -m reference.demo", ["--epochs", "0"], "--epochs"),
    ("python -m reference.demo", ["--seed", "-1"], "--seed"),
]


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory) -> bytes:
    m = random_model(np.random.default_rng(11), embed_dim=16, depth=1, num_heads=2, mlp_hidden=32)
    path = tmp_path_factory.mktemp("contract") / "m.npz"
    save_model(path, m.header, m.arrays)
    return path.read_bytes()


def _tree(d: Path) -> dict:
    """Every entry under d: folders None, symlinks their target, FIFOs 'fifo', files their bytes."""
    def content(p: Path):
        if p.is_symlink():
            return ("symlink", os.readlink(p))
        if p.is_fifo():
            return "fifo"
        return None if p.is_dir() else p.read_bytes()
    return {str(p.relative_to(d)): content(p) for p in sorted(d.rglob("*"))}


def _call(prog: str, argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = COMMANDS[prog](argv)
        except SystemExit as e:  # argparse-level errors of the reference tools exit through SystemExit
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("prog, argv, fragment", CASES, ids=[f"{c[0].split('.')[-1]}:{' '.join(c[1])}"[:60]
                                                              for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(prog, argv, fragment, tmp_path, model_bytes, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("M").write_bytes(model_bytes)
    Path("F").write_text("a plain file\n")
    Path("J").write_bytes(b"PK\x03\x04 junk, not an archive nor a checkpoint")
    Path("D").mkdir()
    os.mkfifo("P")
    os.symlink("L", "L")
    before = _tree(tmp_path)
    rc, out, err = _call(prog, argv)
    assert rc == 2, (rc, out, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert fragment in lines[0], (fragment, lines[0])
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_help_exits_0(prog):
    rc, out, err = _call(prog, ["--help"])
    assert rc == 0 and "usage:" in out and err == ""


# ============================================================================ signals, in real processes
def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


@pytest.fixture()
def model_file(tmp_path, model_bytes) -> Path:
    p = tmp_path / "m.npz"
    p.write_bytes(model_bytes)
    return p


@pytest.mark.parametrize("argv", [
    ["-m", "gsbsim", "info", "--model", "MODEL"],
    ["-m", "gsbsim", "run", "--model", "MODEL", "--images", "8", "--count-ops"],
    ["-m", "gsbsim", "info", "--model", "MODEL", "--json"],
    ["-m", "reference.export", "--random", "--out", "OUT"],
])
def test_closed_stdout_pipe_ends_quietly(argv, model_file, tmp_path):
    """`cmd | head -0`: the reader is gone before the first line; exit 0, nothing on stderr."""
    argv = [{"MODEL": str(model_file), "OUT": str(tmp_path / "o.npz")}.get(a, a) for a in argv]
    r, w = os.pipe()
    os.close(r)  # the reader has already left
    try:
        proc = subprocess.run([sys.executable, *argv], stdout=w, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                              env=_env(), timeout=300)
    finally:
        os.close(w)
    assert proc.returncode == 0 and proc.stderr == "", (proc.returncode, proc.stderr)


_INTERRUPT = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's background job (`pytest &`) ignores SIGINT
import {module} as target
real = target.{function}
def interrupted(*a, **k):
    os.kill(os.getpid(), signal.{signal})   # a real Ctrl-C (or kill), mid-way through the work
    return real(*a, **k)
target.{function} = interrupted
from {entry} import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("module, function, entry, argv, prog, sig", [
    ("gsbsim.cli.app", "_forward_all", "gsbsim.cli.app", ["run", "--model", "MODEL"], "gsbsim", "SIGINT"),
    ("gsbsim.engine.vectors", "_swap_in", "gsbsim.cli.app", ["vectors", "--model", "MODEL", "--out", "DIR"], "gsbsim",
     "SIGINT"),
    ("gsbsim.engine.vectors", "_swap_in", "gsbsim.cli.app", ["vectors", "--model", "MODEL", "--out", "DIR"], "gsbsim",
     "SIGTERM"),
    ("gsbsim.hlsgen.project", "_vitis_tcl", "gsbsim.cli.app", ["hls", "--model", "MODEL", "--out", "DIR/p"],
     "gsbsim", "SIGINT"),
    ("numpy", "savez", "reference.export", ["--random", "--out", "DIR/o.npz"], "python -m reference.export",
     "SIGINT"),
    ("numpy", "savez", "reference.export", ["--random", "--out", "DIR/o.npz"], "python -m reference.export",
     "SIGTERM"),
])
def test_ctrl_c_or_kill_is_one_line_and_leaves_nothing(module, function, entry, argv, prog, sig, model_file,
                                                        tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = [a.replace("MODEL", str(model_file)).replace("DIR", str(out_dir)) for a in argv]
    code = _INTERRUPT.format(module=module, function=function, entry=entry, signal=sig)
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT,
                          env=_env(), timeout=300)
    status, word = (130, "interrupted") if sig == "SIGINT" else (143, "terminated")
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    assert proc.stderr == f"{prog}: {word}\n", proc.stderr
    assert list(out_dir.iterdir()) == []  # no temporary, no half output


def _complete_vectors(folder: Path) -> bool:
    manifest = json.loads((folder / "manifest.json").read_text())
    return all(np.load(folder / t["file"]).shape == tuple(t["shape"]) for t in manifest["tensors"])


def test_kill_9_at_random_moments_leaves_old_or_new_vectors(model_file, tmp_path):
    """vectors replaced under kill -9: always a complete old or new folder; the next run clears the debris."""
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "gsbsim", "vectors", "--model", str(model_file), "--out", str(out)]
    assert subprocess.run(cmd + ["--images", "1"], cwd=ROOT, env=_env(), capture_output=True).returncode == 0
    rng = random.Random(4)
    for _ in range(4):
        proc = subprocess.Popen(cmd + ["--images", "64"], cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        images = json.loads((out / "vectors" / "manifest.json").read_text())["images"]
        assert images in (1, 64) and _complete_vectors(out / "vectors")
    assert subprocess.run(cmd + ["--images", "2"], cwd=ROOT, env=_env(), capture_output=True).returncode == 0
    assert [p.name for p in out.iterdir()] == ["vectors"]
    assert json.loads((out / "vectors" / "manifest.json").read_text())["images"] == 2


_DIE_AT_RENAME = """
import os, sys
calls = {{"n": 0}}
real = os.rename
def dying(*a, **k):
    calls["n"] += 1
    if calls["n"] == {n}:
        os._exit(137)            # like kill -9: no cleanup of any kind runs
    return real(*a, **k)
os.rename = dying
from gsbsim.cli.app import main
sys.exit(main(sys.argv[1:]))
"""


def _project_state(out: Path) -> str:
    """'pe=N' for a complete project (config.h agrees with project.json), or load_project's error."""
    from gsbsim.hlsgen.project import HlsGenError, load_project
    try:
        proj = load_project(out)
    except HlsGenError as e:
        return f"error: {e}"
    pe = proj.folding["patch"].pe
    assert f"PATCH_PE = {pe}," in (out / "src" / "config.h").read_text()  # the sources are the same project's
    return f"pe={pe}"


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_kill_9_during_hls_regeneration_is_never_a_mixed_project(model_file, tmp_path, n):
    """Killed between any two renames of a regeneration: the old or the new project, or one that says
    its regeneration was interrupted; a new `gsbsim hls` then completes it and leaves no debris."""
    out = tmp_path / "p"
    base = ["hls", "--model", str(model_file), "--out", str(out)]
    assert subprocess.run([sys.executable, "-m", "gsbsim", *base, "--pe", "2"], cwd=ROOT, env=_env(),
                          capture_output=True).returncode == 0
    proc = subprocess.run([sys.executable, "-c", _DIE_AT_RENAME.format(n=n), *base, "--pe", "3"], cwd=ROOT,
                          env=_env(), capture_output=True, text=True)
    state = _project_state(out)
    assert state in ("pe=2", "pe=3") or "regeneration was interrupted" in state, (proc.returncode, state)
    rc = subprocess.run([sys.executable, "-m", "gsbsim", *base, "--pe", "4"], cwd=ROOT, env=_env(),
                        capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr
    assert _project_state(out) == "pe=4"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_kill_9_at_random_moments_leaves_old_or_new_export(tmp_path):
    """reference.export under kill -9: --out is the old model or the new one; the next export removes
    the temporaries the killed ones left."""
    from gsbsim.format.model_file import load_model
    out = tmp_path / "m.npz"
    cmd = [sys.executable, "-m", "reference.export", "--random", "--out", str(out)]
    assert subprocess.run(cmd + ["--seed", "1"], cwd=ROOT, env=_env(), capture_output=True).returncode == 0
    rng = random.Random(5)
    for _ in range(4):
        proc = subprocess.Popen(cmd + ["--seed", "2"], cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert load_model(out).header["source"] in ("random(seed=1)", "random(seed=2)")
    assert subprocess.run(cmd + ["--seed", "3"], cwd=ROOT, env=_env(), capture_output=True).returncode == 0
    assert load_model(out).header["source"] == "random(seed=3)"
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


_DIE_IN_SAVEZ = """
import os, sys
import numpy as np
def dying(f, *a, **k):
    f.write(b"PK half an archive")
    f.flush()
    os._exit(137)                # like kill -9 in the middle of the write
np.savez = dying
from reference.export import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_9_inside_the_export_write(tmp_path):
    """Killed while writing the temporary: the old model stays; the next export removes the temporary."""
    from gsbsim.format.model_file import load_model
    out = tmp_path / "m.npz"
    cmd = ["--random", "--out", str(out)]
    assert subprocess.run([sys.executable, "-m", "reference.export", *cmd, "--seed", "1"], cwd=ROOT, env=_env(),
                          capture_output=True).returncode == 0
    proc = subprocess.run([sys.executable, "-c", _DIE_IN_SAVEZ, *cmd, "--seed", "2"], cwd=ROOT, env=_env(),
                          capture_output=True)
    assert proc.returncode == 137
    stray = [p.name for p in tmp_path.iterdir() if p.name != "m.npz"]
    assert len(stray) == 1 and stray[0].startswith(".m.npz.") and stray[0].endswith(".tmp.npz")
    assert load_model(out).header["source"] == "random(seed=1)"
    assert subprocess.run([sys.executable, "-m", "reference.export", *cmd, "--seed", "3"], cwd=ROOT, env=_env(),
                          capture_output=True).returncode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]
