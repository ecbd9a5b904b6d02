"""The synthesis view of a generated project: its top compiled as Vitis HLS would see it.

Vitis defines __SYNTHESIS__, which removes every C-simulation helper (bounded-FIFO threads,
traces, checks, iteration counters) and turns gsb::stream into hls::stream.  No Vitis here, so
the view compiles ``src/top.cpp`` with g++ (-Wall -Wextra -Werror) in a wrapper source that
includes ap_int.h and gsbsim's declaration-only hls::stream (hls/synth_view/hls_stream.h: the
const char* constructor, read, write, empty, full, nothing else), then defines __SYNTHESIS__
and includes the top.  (Defining it on the command line instead breaks the ap_types headers,
which have tool-only branches.)  It proves that the synthesis branch parses, type-checks and
uses only what Vitis' stream offers; it says nothing about what Vitis would build from it.

``compile_vitis_view`` does the same for Vitis' own csim and cosim steps (vitis.tcl), which
compile the testbench and the top with -DGSB_VITIS and without __SYNTHESIS__: the testbench
must call gsb_top with hls::stream ports, exactly the synthesized signature.
"""
from __future__ import annotations

from pathlib import Path

from gsbsim.hlsgen import toolchain
from gsbsim.hlsgen.project import Project

__all__ = ["WRAPPER", "synth_view_dir", "compile_synthesis_view", "compile_vitis_view"]

WRAPPER = """\
// The synthesis view of this project (gsbsim/hlsgen/synth_view.py); compiled, never linked.
#include <ap_int.h>
#include <hls_stream.h>

#define __SYNTHESIS__
#include "top.cpp"
"""


def synth_view_dir() -> Path:
    """hls/synth_view: the declaration-only hls_stream.h."""
    return toolchain.repo_hls_dir() / "synth_view"


def compile_synthesis_view(project: Project) -> Path:
    """Compile DIR/src/top.cpp as synthesis sees it; returns the object file (HlsEnvError on failure)."""
    out = project.build_dir / "synth_view"
    out.mkdir(parents=True, exist_ok=True)
    src = out / "synth_view.cpp"
    src.write_text(WRAPPER, encoding="utf-8")
    # the kernels' iteration counters are unused once __SYNTHESIS__ removes the counting
    return toolchain.compile_cpp([src], out / "synth_view.o", include_dirs=[synth_view_dir(), project.root / "src"],
                                 flags=("-c", "-O0", "-Wno-unused-parameter"))


def compile_vitis_view(project: Project) -> list[Path]:
    """Compile tb.cpp and top.cpp as vitis.tcl's csim/cosim would (-DGSB_VITIS, the declaration-only
    hls::stream); returns the object files (HlsEnvError on failure)."""
    out = project.build_dir / "vitis_view"
    out.mkdir(parents=True, exist_ok=True)
    return [toolchain.compile_cpp([src], out / f"{src.stem}.o", include_dirs=[synth_view_dir(), project.root / "src"],
                                  flags=("-c", "-O0", "-DGSB_VITIS", "-Wno-unused-parameter"))
            for src in project.sources()]
