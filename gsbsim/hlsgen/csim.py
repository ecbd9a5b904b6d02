"""``gsbsim csim``: build and run the C-simulation of a generated HLS project.

The project (``gsbsim hls``, gsbsim/hlsgen/project.py) holds the top function, the parameter
headers and a testbench that runs the model image by image on gsbsim's vectors
(``DIR/vectors``, written by ``gsbsim vectors``) and compares every traced tensor. This
module checks that the project still belongs to its model file (sha256), builds the
testbench with g++ (``gsbsim.hlsgen.toolchain.compile_cpp``; cached until a source, the library,
the compiler or the flags change), runs it, and compares the per-layer iteration counts it
reports with gsbsim's cycle model (``folding.cycle_report``) for the project's folding: the
MVAU layers' and every other process's (gsbsim/hw/stages.py).
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from gsbsim.hlsgen import toolchain
from gsbsim.hw.folding import BOUND_IGNORES, cycle_report
from gsbsim.hlsgen.project import Project, sha256_file, trace_producer, trace_specs

__all__ = ["CsimError", "CsimReport", "check_model", "check_vectors", "build", "run_testbench",
           "report_text", "depth_cap_flags"]

_ITERS = re.compile(r"^ITERS (\S+) (\d+)$")
_STAGE = re.compile(r"^STAGE (\S+) (\d+)$")
_DEADLOCK = re.compile(r"^image \d+: DEADLOCK: ")
_MISMATCH = re.compile(r"^MISMATCH (\S+)\[([\d, ]+)\]: got (-?\d+) expected (-?\d+)$")


class CsimError(RuntimeError):
    """The C-simulation cannot run (stale project, missing vectors, build or testbench error)."""


# ============================================================================ checks
def check_model(project: Project) -> None:
    """The model file the project was generated from must still be the same file."""
    path = Path(project.model_path)
    if not path.is_file():
        raise CsimError(f"{project.root}: its model file {path} no longer exists")
    sha = sha256_file(path)
    if sha != project.model_sha256:
        raise CsimError(f"{project.root} was generated from another model: {path} now has sha256 "
                        f"{sha[:12]}..., the project {project.model_sha256[:12]}...; regenerate it with "
                        f"`gsbsim hls --model {path} --out {project.root}`")


def check_vectors(project: Project) -> int:
    """DIR/vectors must hold every trace tensor of this model; returns the number of images."""
    vdir = project.vectors_dir
    manifest = vdir / "manifest.json"
    hint = f"write them with `gsbsim vectors --model {project.model_path} --out {project.root}`"
    if not manifest.is_file():
        raise CsimError(f"missing vectors: {manifest} not found; {hint} (or run csim without --keep-vectors)")
    try:
        m = json.loads(manifest.read_text(encoding="utf-8"))
        sha, images = m["model_sha256"], int(m["images"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CsimError(f"missing vectors: {manifest} is not a vectors manifest ({e}); {hint}") from None
    if sha != project.model_sha256:
        raise CsimError(f"{vdir} holds vectors of another model (sha256 {str(sha)[:12]}...); {hint}")
    for name, _, _ in trace_specs(project.header):
        if not (vdir / f"{name}.npy").is_file():
            raise CsimError(f"missing vectors: {vdir / (name + '.npy')} not found; {hint}")
    return images


# ============================================================================ build
def depth_cap_flags(cap: int | None) -> tuple[str, ...]:
    """Compiler flags capping every FIFO of the C-simulation at ``cap`` words (gsb/stream.hpp)."""
    return () if cap is None else (f"-DGSB_FIFO_DEPTH_CAP={int(cap)}",)


def _stamp(project: Project, exe: Path, flags: list[str], sanitize: bool) -> str:
    """Hash of everything the executable depends on: sources, headers, library, compiler, flags."""
    h = hashlib.sha256()
    # project files by their path inside the project (a copied project keeps its build)
    files = sorted(list((project.root / "src").rglob("*")) + [project.root / "tb" / "tb.cpp"])
    lib = toolchain.library_include_dir()
    for name, f in ([(str(f.relative_to(project.root)), f) for f in files] +
                    [(str(f), f) for f in sorted((lib / "gsb").glob("*.hpp"))]):
        if f.is_file():
            h.update(name.encode() + b"\0" + f.read_bytes())
    h.update(json.dumps([toolchain.find_compiler(), str(toolchain.find_ap_types()), flags, sanitize,
                         toolchain.WARNING_FLAGS, exe.name]).encode())
    return h.hexdigest()


def build(project: Project, sanitize: bool = False, flags: tuple[str, ...] = ()) -> tuple[Path, float, bool]:
    """Compile the testbench (cached); returns (executable, seconds, whether it was rebuilt).

    top.cpp and tb.cpp are compiled side by side (two processes), then linked. Plain builds
    use -O1 (the C-simulation is tiny; -O2 compiles about twice as long), sanitized builds
    (ASan + UBSan) -O0 (five times faster to compile than -O1). ``flags`` come last and win.
    HlsEnvError for a missing compiler or ap_types headers and for compile errors.
    """
    flags = ("-O0" if sanitize else "-O1", "-pthread", *flags)   # the dataflow's processes are threads
    exe = project.build_dir / ("tb_asan" if sanitize else "tb")
    stamp_file = exe.with_suffix(".stamp")
    stamp = _stamp(project, exe, list(flags), sanitize)
    if exe.is_file() and stamp_file.is_file() and stamp_file.read_text() == stamp:
        return exe, 0.0, False
    start = time.monotonic()
    stamp_file.unlink(missing_ok=True)
    toolchain.find_compiler()      # fail in this thread, with the environment's message
    toolchain.find_ap_types()
    objs = [exe.with_name(f"{exe.name}_{src.stem}.o") for src in project.sources()]
    inc = [project.root / "src"]
    with ThreadPoolExecutor(max_workers=len(objs)) as pool:
        jobs = [pool.submit(toolchain.compile_cpp, [src], obj, include_dirs=inc, sanitize=sanitize,
                            flags=("-c", *flags)) for src, obj in zip(project.sources(), objs)]
        for job in jobs:
            job.result()
    toolchain.compile_cpp(objs, exe, sanitize=sanitize, flags=flags)
    stamp_file.write_text(stamp)
    return exe, time.monotonic() - start, True


# ============================================================================ run and report
@dataclass
class CsimReport:
    """What one testbench run said, next to gsbsim's cycle model."""
    returncode: int
    stdout: str
    stderr: str
    run_s: float
    iters: dict[str, int] = field(default_factory=dict)
    stages: dict[str, int] = field(default_factory=dict)
    expected_iters: dict[str, int] = field(default_factory=dict)
    expected_stages: dict[str, int] = field(default_factory=dict)
    mismatch: tuple[str, str, int, int] | None = None   # (trace name, "image, i, j", got, expected)
    tensors_passed: int = 0
    deadlock: list[str] = field(default_factory=list)   # the DEADLOCK report: first line, stalled processes

    @property
    def tensors_equal(self) -> bool:
        return self.returncode == 0 and self.mismatch is None and not self.deadlock and self.tensors_passed > 0

    @property
    def iter_differences(self) -> list[tuple[str, int | None, int]]:
        """(layer, C-sim count or None, cycle model) for every layer where they differ."""
        return [(name, self.iters.get(name), want) for name, want in self.expected_iters.items()
                if self.iters.get(name) != want]

    @property
    def stage_differences(self) -> list[tuple[str, int | None, int | None]]:
        """(process, C-sim count or None, analytic count or None) for every process where they differ."""
        names = sorted(set(self.stages) | set(self.expected_stages))
        return [(k, self.stages.get(k), self.expected_stages.get(k)) for k in names
                if self.stages.get(k) != self.expected_stages.get(k)]

    @property
    def passed(self) -> bool:
        return self.tensors_equal and not self.iter_differences and not self.stage_differences


def run_testbench(project: Project, exe: Path, timeout: float = 600.0) -> CsimReport:
    """Run the testbench on DIR/vectors and parse its output (CsimError if it could not run)."""
    start = time.monotonic()
    try:
        proc = subprocess.run([str(exe), str(project.vectors_dir)], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CsimError(f"C-simulation {exe} ran longer than {timeout:.0f} s") from None
    except OSError as e:
        raise CsimError(f"cannot run C-simulation {exe}: {e}") from None
    cyc = cycle_report(project.header, project.folding)
    rep = CsimReport(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start,
                     expected_iters=cyc.per_layer, expected_stages=cyc.stages)
    for line in proc.stdout.splitlines():
        if _DEADLOCK.match(line) or (rep.deadlock and line.startswith("  process ")):
            rep.deadlock.append(line)
        elif m := _ITERS.match(line):
            rep.iters[m.group(1)] = int(m.group(2))
        elif m := _STAGE.match(line):
            rep.stages[m.group(1)] = int(m.group(2))
        elif (m := _MISMATCH.match(line)) and rep.mismatch is None:
            rep.mismatch = (m.group(1), m.group(2), int(m.group(3)), int(m.group(4)))
        elif line.startswith("PASS "):
            rep.tensors_passed = int(line.split()[1])
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and rep.mismatch is None and not rep.deadlock):
        lines = [l for l in proc.stderr.splitlines() if l.strip()]
        errors = [l for l in lines if l.startswith("ERROR: ") or "runtime error" in l or "Sanitizer" in l]
        msg = (errors or lines or [f"exit status {proc.returncode}, no message"])[0].removeprefix("ERROR: ")
        if "cannot open .npy file" in msg:
            msg = f"missing vectors: {msg}"
        raise CsimError(f"C-simulation failed: {msg}")
    return rep


def report_text(project: Project, rep: CsimReport, images: int, build_s: float, rebuilt: bool,
                sanitize: bool) -> str:
    """The human-readable csim report: iteration table, then PASS or FAIL with the reason."""
    rows = [f"{'layer':<18} {'csim iters':>12} {'cycle model':>12}"]
    for name, want in rep.expected_iters.items():
        got = rep.iters.get(name)
        rows.append(f"{name:<18} {'-' if got is None else got:>12} {want:>12}  "
                    f"{'ok' if got == want else 'DIFFERENT'}")
    build = f"{build_s:.1f} s" if rebuilt else "cached"
    rows.append(f"build {build}{' (ASan+UBSan)' if sanitize else ''}, run {rep.run_s:.2f} s, {images} images")
    if rep.mismatch is not None:
        name, idx, got, want = rep.mismatch
        producer = trace_producer(name, project.header["method"])
        rows.append(f"FAIL: MISMATCH {name}[{idx}]: got {got} expected {want} "
                    f"(layer {producer}, image {idx.split(',')[0]})")
    if rep.deadlock:
        rows.append(f"FAIL: {rep.deadlock[0]}")
        rows += rep.deadlock[1:]
    for name, got, want in ([] if rep.deadlock else rep.iter_differences):   # a deadlocked run counts nothing
        rows.append(f"FAIL: layer {name}: C-sim counted {got if got is not None else 'no'} iterations, "
                    f"the cycle model {want}")
    for name, got, want in ([] if rep.deadlock else rep.stage_differences):
        rows.append(f"FAIL: process {name}: C-sim counted {got if got is not None else 'no'} iterations, "
                    f"the stage model {want if want is not None else 'has no such process'}")
    if not rep.deadlock:
        c = cycle_report(project.header, project.folding)
        rows.append(f"dataflow: slowest process {c.bottleneck} {c.ii} cycles per image at one iteration per "
                    f"cycle (a lower bound on the II: it ignores {BOUND_IGNORES})")
    if rep.passed:
        rows.append(f"PASS: {rep.tensors_passed} traced tensors bit-exact on {images} image{'s' if images != 1 else ''}; C-sim "
                    f"iterations equal the cycle model for all {len(rep.expected_iters)} layers and the "
                    f"stage model for all {len(rep.expected_stages)} other processes")
    return "\n".join(rows)
