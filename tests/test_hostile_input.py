"""Hostile input to gsbsim and the reference tools: rejected before anything is written, in one line.

Each test plants the bad input (or the fault) and checks the answer: exit status 2, one
line on stderr naming the problem, and the file system as it was (or the old output whole).
The trainer's cases (resume checks, locking, stale temporaries) are in test_train.py; the
table over every command is test_error_contract.py.
"""
from __future__ import annotations

import json
import os
import stat
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gsbsim.cli.app import main
from gsbsim.format.model_file import ModelFileError, load_model, save_model
from gsbsim.format.random_model import random_model
from gsbsim.outputs import OutputError, OutputLocked, folder_lock, staging_dir


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hostile")
    m = random_model(np.random.default_rng(3), embed_dim=16, depth=1, num_heads=2, mlp_hidden=32)
    path = d / "m.npz"
    save_model(path, m.header, m.arrays)
    return path


def gsbsim_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([os.fspath(a) if isinstance(a, Path) else str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc: int, err: str, prog: str = "gsbsim", *fragments: str) -> str:
    assert rc == 2, (rc, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def tree(d: Path) -> dict[str, bytes | None]:
    """Every path under d with its content (None for folders): to compare before and after."""
    return {str(p.relative_to(d)): (None if p.is_dir() else p.read_bytes()) for p in sorted(d.rglob("*"))}


# ============================================================================ gsbsim hls
@pytest.mark.parametrize("clock", ["inf", "-inf", "nan", "0", "-5", "1e9"])
def test_hls_bad_clock_writes_nothing(model_path, tmp_path, capsys, clock):
    rc, out, err = gsbsim_cli(capsys, "hls", "--model", model_path, "--out", tmp_path / "p", "--clock-mhz", clock)
    one_line_error(rc, err, "gsbsim", "--clock-mhz")
    assert out == "" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("part", ["xc7z020}; exec rm -rf ~; #", "a b", "[exec ls]", "", "-x", "x" * 65, "pärt"])
def test_hls_part_is_validated_before_writing(model_path, tmp_path, capsys, part):
    rc, _, err = gsbsim_cli(capsys, "hls", "--model", model_path, "--out", tmp_path / "p", "--part", part)
    one_line_error(rc, err, "gsbsim", "--part")
    assert list(tmp_path.iterdir()) == []


def test_generate_refuses_a_bad_part_or_clock_itself(model_path, tmp_path):
    """The library call checks too (not only the command line): nothing is written."""
    from gsbsim.hlsgen.project import HlsGenError, generate
    from gsbsim.hw.folding import global_folding
    model = load_model(model_path)
    fold = global_folding(model.header, 1, 1)
    with pytest.raises(HlsGenError, match="--part"):
        generate(model, model_path, tmp_path / "p", fold, part="x}\nexec evil")
    with pytest.raises(HlsGenError, match="--clock-mhz"):
        generate(model, model_path, tmp_path / "p", fold, clock_mhz=float("inf"))
    assert list(tmp_path.iterdir()) == []


def test_hls_creates_missing_parents_with_normal_permissions(model_path, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        rc, _, err = gsbsim_cli(capsys, "hls", "--model", model_path, "--out", tmp_path / "a" / "b" / "c")
    finally:
        os.umask(old)
    assert rc == 0, err
    for d in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c", tmp_path / "a" / "b" / "c" / "src"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o755, d
    assert not [p for p in (tmp_path / "a" / "b" / "c").iterdir() if p.name.startswith(".")]


def test_hls_removes_a_killed_runs_staging_folder(model_path, tmp_path, capsys):
    out = tmp_path / "p"
    assert gsbsim_cli(capsys, "hls", "--model", model_path, "--out", out)[0] == 0
    (out / ".gsbsim-hls-deadbeef" / "src").mkdir(parents=True)  # what kill -9 during a regeneration leaves
    assert gsbsim_cli(capsys, "hls", "--model", model_path, "--out", out)[0] == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_hls_refuses_a_non_utf8_path(model_path, tmp_path, capsys):
    odd = os.fsdecode(os.fsencode(str(tmp_path)) + b"/m\xff.npz")
    Path(odd).write_bytes(model_path.read_bytes())
    rc, _, err = gsbsim_cli(capsys, "hls", "--model", odd, "--out", tmp_path / "p")
    one_line_error(rc, err, "gsbsim", "not valid UTF-8")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("command", ["hls", "vectors"])
def test_writing_into_a_locked_folder_is_refused(model_path, tmp_path, capsys, command):
    out = tmp_path / "p"
    with folder_lock(out):  # as a running hls, vectors or csim holds it
        rc, _, err = gsbsim_cli(capsys, command, "--model", model_path, "--out", out)
        one_line_error(rc, err, "gsbsim", str(out), "in use by another running process")
    assert not out.exists()  # the lock created it for the test and removed it, still empty


# ============================================================================ gsbsim vectors
def test_vectors_never_replaces_a_users_file(model_path, tmp_path, capsys):
    (tmp_path / "vectors").write_text("my notes\n")
    before = tree(tmp_path)
    rc, _, err = gsbsim_cli(capsys, "vectors", "--model", model_path, "--out", tmp_path)
    one_line_error(rc, err, "gsbsim", str(tmp_path / "vectors"), "refusing to replace")
    assert tree(tmp_path) == before


def test_vectors_never_replaces_a_users_folder(model_path, tmp_path, capsys):
    (tmp_path / "vectors").mkdir()
    (tmp_path / "vectors" / "data.npy").write_bytes(b"mine")
    (tmp_path / "vectors" / "manifest.json").write_text('{"mine": true}')  # not gsbsim's manifest
    before = tree(tmp_path)
    rc, _, err = gsbsim_cli(capsys, "vectors", "--model", model_path, "--out", tmp_path)
    one_line_error(rc, err, "gsbsim", "did not write")
    assert tree(tmp_path) == before


def test_vectors_replaces_its_own_output_with_normal_permissions(model_path, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        assert gsbsim_cli(capsys, "vectors", "--model", model_path, "--out", tmp_path / "o", "--images", "2")[0] == 0
        (tmp_path / "o" / ".vectors-killed").mkdir()  # a killed run's staging folder
        assert gsbsim_cli(capsys, "vectors", "--model", model_path, "--out", tmp_path / "o", "--images", "3")[0] == 0
    finally:
        os.umask(old)
    v = tmp_path / "o" / "vectors"
    assert json.loads((v / "manifest.json").read_text())["images"] == 3
    assert stat.S_IMODE(v.stat().st_mode) == 0o755
    assert stat.S_IMODE((v / "manifest.json").stat().st_mode) == 0o644
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["vectors"]  # no staging folder left


def test_vectors_failure_leaves_no_folder(model_path, tmp_path, capsys):
    rc, _, err = gsbsim_cli(capsys, "vectors", "--model", model_path, "--out", tmp_path / "a" / "b",
                            "--data", tmp_path / "missing.npy")
    one_line_error(rc, err, "gsbsim", "missing.npy")
    assert list(tmp_path.iterdir()) == []


# ============================================================================ gsbsim csim / run
@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_csim_timeout_must_be_finite_and_positive(tmp_path, capsys, value):
    rc, _, err = gsbsim_cli(capsys, "csim", tmp_path, "--timeout", value)
    one_line_error(rc, err, "gsbsim", "--timeout")


@pytest.mark.parametrize("argv", [["--images", "0"], ["--clock-mhz", "nan"], ["--images", "x"]])
def test_run_rejects_bad_numbers(model_path, capsys, argv):
    rc, _, err = gsbsim_cli(capsys, "run", "--model", model_path, *argv)
    one_line_error(rc, err, "gsbsim", argv[0])


def test_run_refuses_an_npy_that_declares_more_than_it_holds(model_path, tmp_path, capsys):
    """A 200-byte .npy whose header declares 60 GiB: refused from its header, nothing allocated."""
    from numpy.lib import format as npy_format
    big = tmp_path / "big.npy"
    with open(big, "wb") as f:
        npy_format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (10 ** 9, 1, 8, 8)})
        f.write(b"x" * 100)
    rc, _, err = gsbsim_cli(capsys, "run", "--model", model_path, "--data", big)
    one_line_error(rc, err, "gsbsim", str(big))


# ============================================================================ model files
def _with_member(src: Path, dst: Path, name: str, size: int, compress=zipfile.ZIP_DEFLATED) -> Path:
    """src's archive plus a member ``name`` of ``size`` zero bytes (deflated: a few KiB on disk)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=compress) as zout:
        for info in zin.infolist():
            if info.filename != name:
                zout.writestr(info.filename, zin.read(info.filename))
        with zout.open(name, "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            for _ in range(size >> 20):
                f.write(chunk)
    return dst


@pytest.mark.parametrize("member, needle", [("surprise.npy", "unknown array 'surprise'"),
                                            ("patch.mult.npy", "member 'patch.mult.npy' declares")])
def test_load_model_checks_members_before_inflating(model_path, tmp_path, member, needle):
    """A small file declaring a 64 MiB member is refused from the zip directory alone."""
    bomb = _with_member(model_path, tmp_path / "bomb.npz", member, 64 << 20)
    assert bomb.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=needle) as e:
            load_model(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(bomb) in str(e.value) and "not read" in str(e.value)
    assert peak < 8 << 20, peak  # nothing near the declared 64 MiB was allocated


def test_load_model_refuses_odd_member_names(model_path, tmp_path):
    odd = tmp_path / "odd.npz"
    with zipfile.ZipFile(model_path) as zin, zipfile.ZipFile(odd, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
        zout.writestr("README.txt", b"hello")
    with pytest.raises(ModelFileError, match="not .npy arrays"):
        load_model(odd)


def test_load_model_refuses_a_huge_header_member(model_path, tmp_path):
    big = _with_member(model_path, tmp_path / "big.npz", "header.npy", 8 << 20)
    with pytest.raises(ModelFileError, match="member 'header.npy' declares"):
        load_model(big)


# ============================================================================ output helpers
def test_staging_dir_has_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        d = staging_dir(tmp_path, ".x-")
    finally:
        os.umask(old)
    assert stat.S_IMODE(d.stat().st_mode) == 0o750


def test_folder_lock_excludes_a_second_holder(tmp_path):
    with folder_lock(tmp_path / "o"):
        with pytest.raises(OutputLocked, match="in use"):
            with folder_lock(tmp_path / "o"):
                pass
    with folder_lock(tmp_path / "o"):  # released: usable again
        pass
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        with folder_lock(tmp_path / "f"):
            pass


# ============================================================================ reference.export / agreement
@pytest.mark.parametrize("argv, needle", [
    (["--random", "--num-classes", "0"], "--num-classes"),
    (["--random", "--in-chans", "0"], "--in-chans"),
    (["--random", "--in-chans", "-1"], "--in-chans"),
    (["--random", "--groups", "0"], "--groups"),
    (["--random", "--seed", str(2 ** 70)], "--seed"),
    (["--checkpoint", "x.pt", "--calib-images", "0"], "--calib-images"),
    (["--random", "--bogus"], "unrecognized arguments"),
])
def test_export_rejects_bad_arguments_in_one_line(tmp_path, capsys, argv, needle):
    from reference import export
    with pytest.raises(SystemExit) as e:
        export.main([*argv, "--out", str(tmp_path / "m.npz")])
    assert e.value.code == 2
    one_line_error(2, capsys.readouterr().err, "python -m reference.export", needle)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("out, needle", [("DIR", "is a folder"), ("DIR/no/m.npz", "does not exist")])
def test_export_checks_out_before_any_work(tmp_path, capsys, out, needle):
    from reference import export
    assert export.main(["--random", "--out", out.replace("DIR", str(tmp_path))]) == 2
    one_line_error(2, capsys.readouterr().err, "python -m reference.export", needle)


def test_agreement_rejects_negative_layers(capsys):
    from reference import agreement
    with pytest.raises(SystemExit) as e:
        agreement.main(["--checkpoint", "c.pt", "--model", "m.npz", "--layers", "-1"])
    assert e.value.code == 2
    one_line_error(2, capsys.readouterr().err, "python -m reference.agreement", "--layers")


def test_remove_dead_temps_keeps_a_live_writers(tmp_path):
    import subprocess
    import sys
    from gsbsim.outputs import remove_dead_temps
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target = tmp_path / "m.npz"
    names = {"dead": f".m.npz.{dead.pid}.x1.tmp.npz", "live": f".m.npz.{os.getpid()}.x2.tmp.npz",
             "other": f".n.npz.{dead.pid}.x3.tmp.npz", "user": ".m.npz.notes"}
    for n in names.values():
        (tmp_path / n).write_bytes(b"")
    assert remove_dead_temps(target) == [names["dead"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(v for k, v in names.items() if k != "dead")


@pytest.mark.parametrize("argv, needle", [
    (["vectors", "--model", "MODEL", "--out", "RO"], "--out RO is not writable"),
    (["vectors", "--model", "MODEL", "--out", "RO/a/b"], "--out RO/a/b cannot be created: RO is not writable"),
    (["hls", "--model", "MODEL", "--out", "RO/p"], "cannot be created: RO is not writable"),
    (["run", "--model", "MODEL", "--plot", "RO/p.png"], "--plot RO/p.png: folder RO is not writable"),
])
def test_unwritable_output_folders_are_named_not_their_temporaries(model_path, tmp_path, capsys, monkeypatch,
                                                                   argv, needle):
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == str(ro) else real(p, mode))
    argv = [a.replace("MODEL", str(model_path)).replace("RO", str(ro)) for a in argv]
    rc, _, err = gsbsim_cli(capsys, *argv)
    one_line_error(rc, err, "gsbsim", needle.replace("RO", str(ro)))
    assert list(ro.iterdir()) == []


def test_export_into_an_unwritable_folder(tmp_path, capsys, monkeypatch):
    from reference import export
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == str(tmp_path) else real(p, mode))
    assert export.main(["--random", "--out", str(tmp_path / "m.npz")]) == 2
    one_line_error(2, capsys.readouterr().err, "python -m reference.export", f"folder {tmp_path} is not writable")


def test_a_failed_vectors_write_names_the_folder_not_the_temporary(model_path, tmp_path, capsys, monkeypatch):
    import errno

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".vectors-abc" / "x.npy"))
    monkeypatch.setattr(np, "save", full)
    rc, _, err = gsbsim_cli(capsys, "vectors", "--model", model_path, "--out", tmp_path / "o")
    line = one_line_error(rc, err, "gsbsim", f"--out {tmp_path / 'o'}: cannot write the vectors",
                          "No space left on device")
    assert ".vectors-" not in line and not (tmp_path / "o").exists()
