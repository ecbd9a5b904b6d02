"""Where the HLS C-simulation toolchain lives, and how to compile and run it.

The HLS kernels in ``hls/include/gsb`` are plain C++ checked by C-simulation:
g++ compiles them with the Apache-2.0 ``ap_int.h``/``ap_fixed.h`` headers from
the hls4ml wheel (installed with ``pip install --no-deps hls4ml``; nothing else
of hls4ml is used, and never its ``hls_stream.h``).  No Vitis is needed.

Standard library only, so importing gsbsim never pulls in a compiler check.
"""
from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Iterable, Sequence, Union

PathLike = Union[str, "os.PathLike[str]"]

AP_TYPES_ENV = "GSBSIM_AP_TYPES"
CXX_ENV = "CXX"

# ap_private's default constructor reads its own uninitialised storage; GCC reports that
# through inlined system-header code, so -Wuninitialized cannot be limited to our files.
# HLS pragmas are unknown to g++ by design.
WARNING_FLAGS = ("-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas",
                 "-Wno-uninitialized", "-Wno-maybe-uninitialized")
# shift-base off: ap_types sign-extends a signed ap_int<W> by shifting a negative int64 left
# (ap_private.h clearUnusedBits, which the vendor exempts from UBSan under clang only); the kernel
# library itself shifts no negative value left (its narrow signed widths: gsb/gsb_av.hpp, diba.hpp)
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize=shift-base", "-fno-sanitize-recover=all",
                  "-fno-omit-frame-pointer", "-g", "-O1")
STDERR_TAIL_LINES = 40


class HlsEnvError(RuntimeError):
    """The C-simulation toolchain is missing or a compile/run step failed."""


def repo_hls_dir() -> Path:
    """The ``hls/`` directory (kernel library and testbenches): the package's ``library`` (a link to the
    repository's ``hls/`` in a checkout, the copied files in an installed wheel), resolved."""
    return (Path(__file__).parent / "library").resolve()


def library_include_dir() -> Path:
    """Directory to put on the include path so that ``#include "gsb/mvau.hpp"`` works."""
    return repo_hls_dir() / "include"


def find_ap_types() -> Path:
    """Directory holding ``ap_int.h``: $GSBSIM_AP_TYPES, else the installed hls4ml wheel's copy.

    hls4ml is located with importlib.util.find_spec, without importing it.
    """
    override = os.environ.get(AP_TYPES_ENV)
    if override:
        path = Path(override)
        if not (path / "ap_int.h").is_file():
            raise HlsEnvError(f"{AP_TYPES_ENV}={override} does not contain ap_int.h; point it at a "
                              "directory with the Apache-2.0 ap_types headers, or unset it to use "
                              "the hls4ml wheel (pip install --no-deps hls4ml)")
        return path
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        raise HlsEnvError("ap_types headers (ap_int.h) not found: install them with "
                          f"`pip install --no-deps hls4ml`, or set {AP_TYPES_ENV} to their directory")
    for root in spec.submodule_search_locations:
        path = Path(root) / "templates" / "vivado" / "ap_types"
        if (path / "ap_int.h").is_file():
            return path
    raise HlsEnvError("the installed hls4ml has no templates/vivado/ap_types/ap_int.h: reinstall it with "
                      f"`pip install --no-deps --force-reinstall hls4ml`, or set {AP_TYPES_ENV}")


def find_compiler() -> str:
    """The C++ compiler command: $CXX if set, else g++; raises HlsEnvError if it is not runnable."""
    cxx = os.environ.get(CXX_ENV) or "g++"
    words = shlex.split(cxx)
    if not words or shutil.which(words[0]) is None:
        source = f"{CXX_ENV}={cxx}" if os.environ.get(CXX_ENV) else "g++"
        raise HlsEnvError(f"C++ compiler not found ({source}): install g++ (apt-get install g++) "
                          f"or set {CXX_ENV} to a C++14 compiler")
    return cxx


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def compile_cpp(sources: Sequence[PathLike], out: PathLike, include_dirs: Iterable[PathLike] = (),
                flags: Sequence[str] = (), sanitize: bool = False, timeout: float = 600.0) -> Path:
    """Compile and link C++ ``sources`` into the executable ``out``; return its path.

    Runs ``$CXX -std=c++14 -O2`` with -Wall -Wextra -Werror for our code, the ap_types
    headers as -isystem (their warnings are not ours), the kernel library
    (``hls/include``) and ``include_dirs`` as -I, then ``flags`` (later flags win, e.g.
    "-O1" or "-DNAME=1").  ``sanitize`` adds AddressSanitizer and UBSan, aborting on the
    first error.  Raises HlsEnvError with the compiler's stderr tail on failure.
    """
    cxx = shlex.split(find_compiler())
    ap_types = find_ap_types()
    out = Path(out)
    srcs = [Path(s) for s in sources]
    for src in srcs:
        if not src.is_file():
            raise HlsEnvError(f"compile_cpp: source file {src} does not exist")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [*cxx, "-std=c++14", "-O2", *WARNING_FLAGS, "-isystem", str(ap_types),
           "-I", str(library_include_dir())]
    for inc in include_dirs:
        cmd += ["-I", str(inc)]
    cmd += [*(SANITIZE_FLAGS if sanitize else ()), *flags, *map(str, srcs), "-o", str(out)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise HlsEnvError(f"compiling {', '.join(map(str, srcs))} took more than {timeout:.0f} s") from exc
    except OSError as exc:
        raise HlsEnvError(f"cannot run the C++ compiler {cxx[0]}: {exc}") from exc
    if proc.returncode != 0:
        raise HlsEnvError(f"compiling {', '.join(map(str, srcs))} failed (exit {proc.returncode}):\n"
                          f"{_tail(proc.stderr)}")
    return out
