"""kill -9 and Ctrl-C of a real ``python -m reference.train`` process, then ``--resume``.

Four trainings of the digits preset's teacher (64 images, 4 epochs) start at once: one
runs undisturbed (the reference), one is killed with SIGKILL at a random moment after its
first epoch, one is frozen (SIGSTOP) while its ``.last.pt.*.tmp`` exists and then killed
with SIGKILL, so the kill lands inside the checkpoint write, and one gets SIGINT (Ctrl-C) at
a random moment. Each interrupted folder is then continued with ``--resume``: the run must
finish, its final checkpoints must equal the reference's tensor for tensor, and no
temporary may be left. The random moments come from a seed printed in every failure.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from reference.checkpoint import load_checkpoint
from reference.metrics import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
PROG = "python -m reference.train"
STAGE_FILES = {"last.pt", "best.pt", "metrics.jsonl", "curves.png", "summary.json"}
EPOCHS = 4
ARGS = ["--stage", "teacher", "--preset", "digits", "--limit-train", "64", "--epochs", str(EPOCHS),
        "--no-progress", "--device", "cpu"]
SEED = int(os.environ.get("TRAIN_KILL_SEED", time.time_ns() % 10_000))


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


def _default_sigint() -> None:
    # a shell starts background jobs (`pytest &`, nohup) with SIGINT ignored, and the child would inherit
    # that: give it the default disposition, under which Python turns SIGINT into KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "reference.train", *ARGS, "--out", str(out), *extra], cwd=ROOT,
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def _temps(stage_dir: Path, prefix: str = ".") -> list[str]:
    try:
        return [n for n in os.listdir(stage_dir) if n.startswith(prefix) and n.endswith(".tmp")]
    except FileNotFoundError:
        return []


class _Interrupter:
    """Watches one training and interrupts it once (poll() is called every half millisecond)."""

    def __init__(self, proc: subprocess.Popen, stage_dir: Path, how: str, rng: random.Random):
        self.proc, self.stage_dir, self.how = proc, stage_dir, how
        self.delay = rng.uniform(0.0, 0.8)
        self.armed_at: float | None = None
        self.done = False
        self.note = ""

    def poll(self) -> None:
        if self.done or self.proc.poll() is not None:
            return
        if not (self.stage_dir / "last.pt").exists():  # before the first epoch there is nothing to resume
            return
        if self.how == "in-write":
            self._kill_in_write()
            return
        now = time.monotonic()
        if self.armed_at is None:
            self.armed_at = now
        if now - self.armed_at >= self.delay:
            self.proc.send_signal(signal.SIGKILL if self.how == "kill" else signal.SIGINT)
            self.done = True
            self.note = f"{self.how} {self.delay:.3f} s after the first last.pt"

    def _kill_in_write(self) -> None:
        if not _temps(self.stage_dir, ".last.pt."):
            return
        self.proc.send_signal(signal.SIGSTOP)  # freeze it, then look: the write is under way iff its temp is there
        temps = _temps(self.stage_dir, ".last.pt.")
        if temps:
            self.proc.send_signal(signal.SIGKILL)
            self.done = True
            self.note = f"kill -9 while {temps[0]} was being written"
        else:  # the write finished between the two looks: catch the next epoch's
            self.proc.send_signal(signal.SIGCONT)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path)
    flat = {f"model.{k}": v for k, v in ckpt["model"].items()}
    for i, state in ckpt["optimizer"]["state"].items():
        flat.update({f"optimizer.{i}.{k}": v for k, v in state.items() if torch.is_tensor(v)})
    return flat


def _assert_same_tensors(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        assert torch.equal(a[k], b[k]), f"{what}: {k}"


def test_kill_9_and_ctrl_c_then_resume_equal_an_uninterrupted_run(tmp_path):
    rng = random.Random(SEED)
    ctx = f"TRAIN_KILL_SEED={SEED}"
    ref = tmp_path / "ref"
    outs = {how: tmp_path / how for how in ("kill", "in-write", "ctrl-c")}
    ref_proc = _start(ref)
    watchers = {how: _Interrupter(_start(out), out / "teacher", how, rng) for how, out in outs.items()}
    deadline = time.monotonic() + 600
    while any(w.proc.poll() is None for w in watchers.values()) and time.monotonic() < deadline:
        for w in watchers.values():
            w.poll()
        time.sleep(0.0005)
    for w in watchers.values():
        if w.proc.poll() is None:
            w.proc.kill()
        w.proc.wait()
    ref_err = ref_proc.communicate(timeout=600)[1]
    assert ref_proc.returncode == 0 and ref_err == "", (ref_proc.returncode, ref_err)

    for how, w in watchers.items():
        err = w.proc.stderr.read()
        w.proc.stderr.close()
        where = f"{ctx}: {how}: {w.note}"
        assert w.done, f"{where}: finished before it could be interrupted"
        if how == "ctrl-c":
            assert w.proc.returncode == 130, (where, w.proc.returncode, err)
            assert err == f"{PROG}: interrupted; continue with --resume\n", (where, err)
            assert not _temps(outs[how] / "teacher"), where  # Ctrl-C removes its temporary itself
        else:
            assert w.proc.returncode == -signal.SIGKILL, (where, w.proc.returncode, err)
        if how == "in-write":
            assert _temps(outs[how] / "teacher", ".last.pt."), f"{where}: the kill missed the write"

    resumed = {how: _start(out, "--resume") for how, out in outs.items()}
    for how, proc in resumed.items():
        err = proc.communicate(timeout=600)[1]
        where = f"{ctx}: {how}: {watchers[how].note}"
        assert proc.returncode == 0 and err == "", (where, proc.returncode, err)
        stage_dir = outs[how] / "teacher"
        assert {p.name for p in stage_dir.iterdir()} == STAGE_FILES, (where, sorted(os.listdir(stage_dir)))
        assert [r["epoch"] for r in read_jsonl(stage_dir / "metrics.jsonl")] == list(range(1, EPOCHS + 1)), where
        for name in ("last.pt", "best.pt"):
            _assert_same_tensors(_tensors(stage_dir / name), _tensors(ref / "teacher" / name), f"{where}: {name}")
