"""Training metrics: top-1 counts, the per-epoch JSON-lines log, loss/accuracy curves, the summary table.

Accuracies are percentages (0-100) everywhere in the trainer's files.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import torch

from .checkpoint import atomic_write, write_text_atomic

METRIC_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "val_acc", "time")


def top1_correct(logits: torch.Tensor, labels: torch.Tensor) -> int:
    """Number of rows whose arg-max equals the label (first index on ties, as torch.argmax)."""
    return int((logits.argmax(dim=1) == labels).sum().item())


def percent(correct: int | float, total: int | float) -> float:
    return 100.0 * float(correct) / float(total) if total else 0.0


# ----------------------------------------------------------------------------- metrics.jsonl
def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All records of a JSON-lines file ([] if it does not exist).

    A last line without its newline is a write cut short by a kill: it is dropped. Any
    other line that is not a JSON object is a ValueError naming the file and line.
    """
    path = Path(path)
    if not path.exists():
        return []
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")[:-1]  # after the last newline: "" or a record cut short by a kill
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {i} is not a JSON record (corrupt file; move it away to continue)")
        records.append(record)
    return records


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one record as one line (flushed, so a crash loses at most the line being written)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def truncate_jsonl(path: str | os.PathLike, last_epoch: int) -> list[dict]:
    """Keep only records with epoch <= last_epoch (used on --resume); returns the kept records."""
    kept = [r for r in read_jsonl(path) if isinstance(r.get("epoch"), int) and r["epoch"] <= last_epoch]
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


# ----------------------------------------------------------------------------- curves.png
def plot_curves(records: Sequence[dict], path: str | os.PathLike, title: str = "") -> None:
    """Loss and accuracy vs epoch (matplotlib Agg backend, no display needed), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [r["train_loss"] for r in records], marker=".", label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [r["train_acc"] for r in records], marker=".", label="train top-1")
    ax_acc.plot(epochs, [r["val_acc"] for r in records], marker=".", label="val top-1")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("top-1 (%)")
    ax_acc.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=90))
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- final table
def format_table(rows: Iterable[dict]) -> str:
    """Plain-text table of stage, best val top-1, test top-1 and wall time (rows are summary dicts)."""
    header = ("stage", "best val top-1", "test top-1", "best epoch", "wall time")
    lines = [header]
    for r in rows:
        lines.append((r["stage"], f"{r['best_val_acc']:.2f}%", f"{r['test_acc']:.2f}%", str(r["best_epoch"]),
                      _duration(r["wall_time"])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
