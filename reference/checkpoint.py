"""Checkpoints of the reference trainer: atomic writes, validated reads, model rebuild.

A checkpoint is a plain dict saved with ``torch.save`` and read back with
``weights_only=True`` (no pickled code runs on load). It holds everything needed
to continue training (optimizer, scheduler, RNG states) and to rebuild the model
from the file alone (preset fields, kind, class count, channels, image size,
quant options), so the exporter needs nothing but the path.
"""
from __future__ import annotations

import dataclasses
import os
import random
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
import torch
import torch.nn as nn

from .torch_files import UnreadableFile, torch_load

# What every checkpoint of ours holds, and what load_model needs to rebuild the model.
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "epoch", "best_val", "rng", "args", "preset", "kind",
                   "num_classes", "in_chans", "img_size", "quant_options")
MODEL_KEYS = ("model", "preset", "kind", "num_classes", "in_chans", "img_size", "quant_options")
# Training state that load_model leaves out of the returned meta.
TRAINING_STATE = ("model", "optimizer", "scheduler", "rng")


class CheckpointError(Exception):
    """A checkpoint file is missing, unreadable or does not fit the model it describes."""


# ----------------------------------------------------------------------------- atomic writes
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write a file through a temporary sibling + os.replace: readers see the old or the new file, never half.

    On any failure (including KeyboardInterrupt) the temporary file is removed and the
    previous file at `path`, if any, is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """torch.save `state` to `path` atomically."""
    atomic_write(path, lambda f: torch.save(state, f))


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a small text file (summary.json) atomically."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


# ----------------------------------------------------------------------------- RNG states
def capture_rng() -> dict:
    """Python, numpy and torch RNG states, as types that load with weights_only=True."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Inverse of capture_rng."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- presets in checkpoints
def preset_to_dict(preset) -> dict:
    """The architecture fields of a Preset (its recipes are training data, not model data)."""
    d = dataclasses.asdict(preset)
    d.pop("recipes", None)
    return d


def preset_from_dict(d: dict):
    """Rebuild a Preset from preset_to_dict's output (independent of the PRESETS registry)."""
    from .presets import Preset

    known = {f.name for f in dataclasses.fields(Preset)}
    return Preset(**{k: v for k, v in d.items() if k in known})


# ----------------------------------------------------------------------------- reading
def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    required: tuple[str, ...] = MODEL_KEYS) -> dict:
    """Read a checkpoint and check it holds `required`; CheckpointError naming the file otherwise."""
    from gsbsim.paths import input_file_problem
    path = Path(path)
    problem = input_file_problem(path)
    if problem:
        raise CheckpointError(f"{path}: checkpoint {problem}")
    try:
        ckpt = torch_load(path, map_location)
    except UnreadableFile as e:
        if _is_integer_model(path):
            raise CheckpointError(f"{path}: is an integer model file (gsbsim .npz), not a training checkpoint "
                                  "(.pt from python -m reference.train)") from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({e})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a reference checkpoint (holds a {type(ckpt).__name__}, not a dict)")
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a reference checkpoint (missing {', '.join(missing)})")
    return ckpt


def _is_integer_model(path: Path) -> bool:
    """Whether ``path`` is a zip holding gsbsim's format_version array (a model given as a checkpoint)."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as z:
            return "format_version.npy" in z.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def build_from_checkpoint(ckpt: dict, path: str | os.PathLike = "<checkpoint>") -> nn.Module:
    """Build the (untrained) model a checkpoint describes, via models.build_model."""
    from .models import build_model

    try:
        preset = preset_from_dict(ckpt["preset"])
        return build_model(preset, ckpt["kind"], int(ckpt["num_classes"]), int(ckpt["in_chans"]),
                           int(ckpt["img_size"]), **dict(ckpt["quant_options"]))
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: cannot rebuild its model ({e})") from None


def load_weights(model: nn.Module, state_dict: dict, path: str | os.PathLike = "<checkpoint>") -> None:
    """model.load_state_dict(strict=True) with a CheckpointError naming the file on mismatch."""
    try:
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: weights do not fit the model ({first})") from None


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model from a checkpoint alone and load its weights; returns (model in eval mode, meta).

    meta is the checkpoint without its training state (model/optimizer/scheduler/rng):
    kind, preset (dict), num_classes, in_chans, img_size, quant_options, epoch,
    best_val, args.
    """
    ckpt = load_checkpoint(path, map_location=map_location)
    model = build_from_checkpoint(ckpt, path)
    load_weights(model, ckpt["model"], path)
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k not in TRAINING_STATE}
    return model, meta


def checkpoint_data(meta: dict, data_path: str | None = None) -> dict:
    """build_datasets keywords for the data a checkpoint was trained on (name, path, image size).

    The dataset name and path are the training run's (``meta['dataset']``, ``meta['args']``);
    ``data_path`` overrides the path (the data moved, or another machine).
    """
    args = meta.get("args") or {}
    name = meta.get("dataset") or args.get("data") or "digits"
    return {"name": name, "path": data_path or args.get("data_path"), "img_size": meta.get("img_size")}


__all__ = ["CHECKPOINT_KEYS", "checkpoint_data", "CheckpointError", "atomic_write", "build_from_checkpoint", "capture_rng",
           "load_checkpoint", "load_model", "load_weights", "preset_from_dict", "preset_to_dict", "restore_rng",
           "save_checkpoint", "write_text_atomic"]
