"""C++ of a DATAFLOW region in a generated top: streams with their depths, processes, traces.

Every region (``gsb_top``, ``embed_stage``, ``block_i``, ``head_stage``) is written the same way,
in the form Vitis wants for DATAFLOW (declarations, then one call per process) and that
C-simulation runs as threads over bounded FIFOs (hls/include/gsb/dataflow.hpp):

    gsb::stream<T> s("name");                 // one per channel
    #pragma HLS STREAM variable=s depth=D      // the FIFO depth (fifo_depth() below)
    GSB_DEPTH(s, D)                           // the same depth in C-simulation
    GSB_REGION(df, "region")                  // C-sim: the region's threads
    GSB_STAGE_PROC(df, "name", "after", call(..., GSB_IT))   // or GSB_LAYER_PROC for a matrix layer
    GSB_JOIN(df)
    #ifdef GSB_CSIM ... GSB_TRACE(...) #endif

The macros are defined at the top of every generated top.cpp (gsbsim/hlsgen/templates/top.cpp).
Outside gsbsim's C-simulation (GSB_CSIM, gsb/common.hpp: synthesis, Vitis csim/cosim) GSB_REGION,
GSB_DEPTH and GSB_JOIN are empty and a process is its call.
``after`` names the processes whose arrays (PIPOs) the process reads: it starts when they finished.
PIPO arrays are declared ``GSB_PIPO``: static in C-simulation (off the threads' stacks), plain
locals otherwise.

FIFO depths (docs/hls.md §3) come from gsbsim/hw/fifo_plan.py, the choice the cycle simulation
uses too: the deadlock-free minimum below, or (``gsbsim hls --size-fifos``) the depths sized by
the cycle simulation, never below that minimum.  The minimum: a FIFO must hold what its
producer writes before its consumer reads the first word.  On a chain (one path from producer
to consumer) the consumer reads as soon as a word arrives, so Vitis' default depth 2 is enough.  Only the residual skips are not
chains: the fork writes each word to the LayerNorm and to the skip, and the residual add reads
the skip only when the branch's first output arrives.  Before the attention's first output the
fork has written the whole tensor (softmax needs every key, and every PIPO of the attention is
filled before its consumer starts): depth N*E.  The MLP works token by token and the
LayerNorm reads one whole token before its first bit: depth E.  (The fork writes the LayerNorm
copy first, so N*E - 1 and E - 1 suffice; tests/test_hls_dataflow.py shows that N*E - 1 passes
and N*E - 2 deadlocks.)
"""
from __future__ import annotations

from gsbsim.hw.fifo_plan import FifoDepths   # the depth choice, shared with the cycle simulation

__all__ = ["fifo_decl", "stream_decl", "process"]


def stream_decl(ctype: str, var: str, name: str, depth: int, why: str = "") -> str:
    """A FIFO of the region with its STREAM pragma and the C-simulation depth."""
    note = f"  // {why}" if why else ""
    return (f"    gsb::stream<{ctype}> {var}(\"{name}\");{note}\n"
            f"#pragma HLS STREAM variable={var} depth={depth}\n"
            f"    GSB_DEPTH({var}, {depth})\n")


def fifo_decl(ctype: str, var: str, name: str, fifos: FifoDepths, why: str = "") -> str:
    """``stream_decl`` at the depth ``fifos`` chose for stream ``name``; ``why`` explains the
    minimum, and a sized depth says so beside it."""
    depth, low = fifos.depths[name], fifos.minimal[name]
    if depth != low:
        why = f"sized by cycle simulation; deadlock-free minimum {low}" + (f" ({why})" if why else "")
    return stream_decl(ctype, var, name, depth, why)


def process(name: str, call: str, layer: bool = False, after: tuple[str, ...] = ()) -> str:
    """One process of the region: ``call`` passes GSB_IT as its iteration counter."""
    macro = "GSB_LAYER_PROC" if layer else "GSB_STAGE_PROC"
    return f"    {macro}(df, \"{name}\", \"{' '.join(after)}\",\n        {call})\n"
