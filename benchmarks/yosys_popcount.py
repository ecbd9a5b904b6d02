"""Calibrate the MVAU popcount datapath of the FINN-R LUT estimate with yosys (not a test dependency).

One PE of a binary MVAU (gsb/mvau.hpp XnorMode): SIMD XNORs, the bit-sum popcount of the SIMD
bits and the accumulator (ACC bits, loaded at a vector's first synapse fold, else added to),
written as a small Verilog module, synthesised by yosys for a Xilinx fabric
(``synth_xilinx -family xcup -flatten -noiopad``: yosys's generic mapping to LUT1-LUT6, MUXF7-9,
CARRY, FDRE, not Vivado), for a grid of SIMD and ACC widths. The LUT count (LUT1..LUT6 cells)
is compared with FINN-R's per-PE datapath terms for W = A = 1 (gsbsim/hw/resources.py):
mult + addertree + acc = 2*SIMD + 2*(2*SIMD - 1) + ACC, before FINN-R's 1.1 factor.

    apt-get install -y yosys        # Debian package (0.23 here)
    python benchmarks/yosys_popcount.py [--simd 8 16 32 64 128] [--acc 8 12 16 24] [--json out.json]

Prints one row per (SIMD, ACC) and three least-squares fits with their worst relative error:
yosys / (mult + addertree + acc) through the origin, a*SIMD + b*ACC + c, and yosys /
(mult + addertree) through the origin (the accumulator lands mostly on CARRY cells). The last
fits best and is gsbsim/hw/resources.py's POPCOUNT_LUT_SCALE (docs/costs.md §5.1).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

VERILOG = """\
module pe #(parameter SIMD = 32, parameter ACC = 10) (
    input clk, input first, input [SIMD-1:0] a, input [SIMD-1:0] w, output reg [ACC-1:0] acc);
  wire [SIMD-1:0] x = ~(a ^ w);          // XNOR: 1 where the +-1 input and weight agree
  integer i;
  reg [ACC-1:0] pc;
  always @* begin                         // the bit-sum popcount
    pc = 0;
    for (i = 0; i < SIMD; i = i + 1) pc = pc + x[i];
  end
  always @(posedge clk) acc <= first ? pc : acc + pc;   // accumulate over the synapse folds
endmodule
"""


def popcount_terms(simd: int) -> int:
    """mult + addertree of FINN-R's MVAU LUT formula for W = A = 1: 2*SIMD + 2*(2*SIMD - 1)."""
    wa = 2
    return simd * (2 * 1 - 1) * wa + wa * (2 * simd - 1)


def finn_r_terms(simd: int, acc: int) -> int:
    """mult + addertree + acc of FINN-R's MVAU LUT formula for W = A = 1 (no 1.1 factor, no 300)."""
    return popcount_terms(simd) + acc


def synth(simd: int, acc: int, workdir: Path) -> dict[str, int]:
    """Cell counts of one PE after synth_xilinx."""
    src = workdir / "pe.v"
    src.write_text(VERILOG)
    script = (f"read_verilog {src}; chparam -set SIMD {simd} -set ACC {acc} pe; "
              f"synth_xilinx -family xcup -top pe -flatten -noiopad; stat")
    out = subprocess.run(["yosys", "-p", script], capture_output=True, text=True, check=True).stdout
    stats = out[out.rindex("Number of cells"):]
    cells = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s+(\w+)\s+(\d+)\s*$", stats, re.M)}
    return {"lut": sum(v for k, v in cells.items() if re.fullmatch(r"LUT\d", k)),
            "muxf": sum(v for k, v in cells.items() if k.startswith("MUXF")),
            "carry": sum(v for k, v in cells.items() if k.startswith("CARRY")),
            "ff": sum(v for k, v in cells.items() if k.startswith("FD"))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--simd", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    ap.add_argument("--acc", type=int, nargs="+", default=[8, 12, 16, 24])
    ap.add_argument("--json", help="also write the rows and fits to this file")
    args = ap.parse_args(argv)
    if shutil.which("yosys") is None:
        print("yosys_popcount.py: error: yosys not found (apt-get install -y yosys)", file=sys.stderr)
        return 2
    version = subprocess.run(["yosys", "-V"], capture_output=True, text=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for simd in args.simd:
            for acc in args.acc:
                if (1 << acc) <= simd:     # the accumulator must hold one popcount
                    continue
                c = synth(simd, acc, Path(tmp))
                rows.append({"simd": simd, "acc": acc, **c, "finn_r": finn_r_terms(simd, acc)})
    print(f"{version}; synth_xilinx -family xcup -flatten -noiopad; one PE: SIMD XNOR + popcount + ACC-bit accumulator")
    print(f"{'SIMD':>5} {'ACC':>4} {'LUT':>6} {'MUXF':>5} {'CARRY':>6} {'FF':>4} {'FINN-R terms':>13} {'ratio':>6}")
    for r in rows:
        print(f"{r['simd']:>5} {r['acc']:>4} {r['lut']:>6} {r['muxf']:>5} {r['carry']:>6} {r['ff']:>4} "
              f"{r['finn_r']:>13} {r['lut'] / r['finn_r']:>6.3f}")
    # least squares through the origin: lut ~ k * finn_r
    k = sum(r["lut"] * r["finn_r"] for r in rows) / sum(r["finn_r"] ** 2 for r in rows)
    worst = max(abs(r["lut"] - k * r["finn_r"]) / r["lut"] for r in rows)
    # lut ~ s * (mult + addertree): the accumulator goes to the carry chain (CARRY cells, 0-2 LUT per bit)
    s = sum(r["lut"] * popcount_terms(r["simd"]) for r in rows) / sum(popcount_terms(r["simd"]) ** 2 for r in rows)
    errs = [abs(r["lut"] - s * popcount_terms(r["simd"])) / r["lut"] for r in rows]
    # lut ~ a*SIMD + b*ACC + c
    import numpy as np
    A = np.array([[r["simd"], r["acc"], 1.0] for r in rows])
    y = np.array([r["lut"] for r in rows], dtype=float)
    (a, b, c), *_ = np.linalg.lstsq(A, y, rcond=None)
    worst_lin = float(np.max(np.abs(A @ np.array([a, b, c]) - y) / y))
    print(f"fit through the origin: yosys LUT = {k:.3f} x (mult + addertree + acc), worst relative error {worst:.1%}")
    print(f"linear fit: yosys LUT = {a:.3f}*SIMD + {b:.3f}*ACC + {c:.1f}, worst relative error {worst_lin:.1%}")
    print(f"popcount fit (used): yosys LUT = {s:.3f} x (mult + addertree), worst relative error {max(errs):.1%}, "
          f"mean {sum(errs) / len(errs):.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps({"yosys": version, "rows": rows, "scale": k, "scale_worst": worst,
                                               "linear": [a, b, c], "linear_worst": worst_lin,
                                               "popcount_scale": s, "popcount_worst": max(errs),
                                               "popcount_mean": sum(errs) / len(errs)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
