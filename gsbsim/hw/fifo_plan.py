"""The FIFO depths a generated project emits: one choice, made here for the generator and the simulator.

Two ways to obtain them (docs/hls.md §3, §5):

* ``minimal``: the deadlock-free rule of gsbsim/hw/fifo_depth.py (Vitis' default 2 on a chain,
  N*E and E on the two residual skips), as gsbsim/hw/process_network.py sets it on the network;
* ``sized``: every FIFO at max(its size from the cycle simulation, its minimal depth).  The
  sizing is FINN's (gsbsim/hw/cycle_sim.py ``size_fifos``: unbounded FIFOs, input paced at the
  analytic bound, the largest occupancy); the max keeps the deadlock-free guarantee even where
  a sizing run would leave a FIFO shallower than the rule.

``gsbsim hls`` takes its ``STREAM depth=`` and ``GSB_DEPTH`` values from ``choose`` and records
the choice in project.json (``to_json``); ``gsbsim cycles`` simulates the same choice, for a
model and folding or for a generated project (``from_json``), so the two cannot drift.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

from gsbsim.hw.cycle_sim import size_fifos
from gsbsim.hw.process_network import PORTS, Network

__all__ = ["FifoDepths", "HOWS", "SIZING_IMAGES", "choose", "minimal", "sized", "from_json"]

HOWS = ("minimal", "sized")
SIZING_IMAGES = 4    # images of a sizing run unless told (gsbsim cycles' default too)


@dataclass(frozen=True)
class FifoDepths:
    """The depth of every FIFO of a generated dataflow (the top's ports excluded), by stream name."""
    how: str                     # "minimal" or "sized"
    depths: dict[str, int]
    minimal: dict[str, int]      # the deadlock-free minimum of each FIFO (equal to depths when minimal)
    images: int | None = None    # images of the sizing run (sized only)
    seconds: float = 0.0         # time the sizing took (not recorded)

    @property
    def words(self) -> int:
        return sum(self.depths.values())

    def to_json(self) -> dict:
        """project.json's record of the choice."""
        return {"how": self.how, "images": self.images, "words": self.words,
                "minimal_words": sum(self.minimal.values()), "depths": dict(self.depths)}


def minimal(net: Network) -> FifoDepths:
    """The deadlock-free minimum of every FIFO (the depths the network was built with)."""
    d = {fi.name: fi.depth for fi in net.fifos if fi.name not in PORTS}
    return FifoDepths("minimal", d, dict(d))


def sized(net: Network, images: int) -> FifoDepths:
    """Every FIFO at max(the cycle simulation's sizing over ``images`` images, its minimal depth)."""
    if images < 1:
        raise ValueError(f"the sizing needs at least 1 image, got {images}")
    low = minimal(net).minimal
    t0 = time.perf_counter()
    found, _ = size_fifos(net, images)
    return FifoDepths("sized", {k: max(found[k], v) for k, v in low.items()}, low, images,
                      time.perf_counter() - t0)


def choose(net: Network, size_images: int | None = None) -> FifoDepths:
    """The depths to emit: sized over ``size_images`` images when given, else the minimum."""
    return minimal(net) if size_images is None else sized(net, size_images)


def from_json(record: Any, net: Network) -> FifoDepths:
    """A project.json record (``to_json``) read back for ``net``; ValueError naming what is wrong.
    The record must name exactly the network's FIFOs: a project generated for another model or
    folding, or edited by hand, is refused rather than simulated with some depths defaulted."""
    if not (isinstance(record, Mapping) and record.get("how") in HOWS and isinstance(record.get("depths"), Mapping)):
        raise ValueError("'fifos' must be an object with 'how' (minimal or sized) and 'depths'")
    depths = record["depths"]
    bad = next((k for k, v in depths.items() if type(v) is not int or v < 1), None)
    if bad is not None:
        raise ValueError(f"FIFO {bad}: depth {depths[bad]!r} is not an integer >= 1")
    low = minimal(net).minimal
    extra, missing = sorted(set(depths) - set(low)), sorted(set(low) - set(depths))
    if extra or missing:
        what = f"no FIFO named {extra[0]} in" if extra else f"FIFO {missing[0]} missing for"
        raise ValueError(f"{what} the model's dataflow at this folding")
    images = record.get("images")
    if record["how"] == "sized" and (type(images) is not int or images < 1):
        raise ValueError(f"'images' of a sized record must be an integer >= 1, got {images!r}")
    return FifoDepths(record["how"], {k: depths[k] for k in low}, low, images if record["how"] == "sized" else None)
