"""One epoch: the data loaders, the training step, evaluation and the scale initialisation before DDP."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset

from reference.data.bundle import DataError
from reference.distill import TrainLoss, student_logits
from reference.metrics import percent, top1_correct
from reference.train.distributed import Dist, all_sum, unwrap


# ----------------------------------------------------------------------------- data
def limit_dataset(dataset: Dataset, n: int | None, seed: int) -> Dataset:
    """A fixed random subset of n items (the same for every process and every epoch)."""
    if n is None or n >= len(dataset):
        return dataset
    g = torch.Generator().manual_seed(seed)
    return Subset(dataset, torch.randperm(len(dataset), generator=g)[:n].tolist())


def train_loader(dataset: Dataset, batch_size: int, epoch: int, seed: int, d: Dist, workers: int) -> DataLoader:
    """Epoch e's shuffled loader, seeded by seed + e only, so the order does not depend on history.

    drop_last (as released) unless the (per-process) set is smaller than one batch.
    """
    g = torch.Generator().manual_seed(seed + epoch)
    if d.enabled:
        sampler = DistributedSampler(dataset, num_replicas=d.world_size, rank=d.rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        per_process = len(sampler)
    else:
        sampler = RandomSampler(dataset, generator=g)
        per_process = len(dataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      drop_last=per_process >= batch_size, generator=g)


@contextlib.contextmanager
def batches(loader: DataLoader) -> Iterator:
    """The loader's iterator; its worker processes (--workers N) stop as soon as the loop ends, also
    on an error, not whenever the garbage collector reaches them: they share this process's open
    files, the lock on --out included."""
    it = iter(loader)
    try:
        yield it
    finally:
        stop = getattr(it, "_shutdown_workers", None)  # only multi-process iterators have workers
        if stop is not None:
            stop()


@contextlib.contextmanager
def reading_data(where: str) -> Iterator[None]:
    """A DataError from the data (an image found unreadable when decoded) says ``where`` it happened.

    Raised in a DataLoader worker (--workers N), it arrives with the worker's traceback pasted
    into its message by torch; only the original message is kept, so the report stays one line.
    """
    try:
        yield
    except DataError as e:
        raise DataError(f"{where}: {worker_message(e)}") from None


def worker_message(e: Exception) -> str:
    """The original message of an exception, also when torch re-raised it from a DataLoader worker."""
    msg = str(e)
    if "Original Traceback" not in msg:
        return msg
    last = msg.rstrip().splitlines()[-1]  # "reference.data.bundle.DataError: <the message>"
    for prefix in (f"{type(e).__module__}.{type(e).__qualname__}: ", f"{type(e).__qualname__}: "):
        if last.startswith(prefix):
            return last[len(prefix):]
    return last


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device, d: Dist,
             workers: int = 0) -> float:
    """Top-1 (%) in eval mode; under torchrun each process scores every world_size-th image, then sums."""
    model = unwrap(model)
    was_training = model.training
    model.eval()
    part = Subset(dataset, range(d.rank, len(dataset), d.world_size)) if d.enabled else dataset
    loader = DataLoader(part, batch_size=batch_size, shuffle=False, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))  # leaves the global RNG alone
    correct = total = 0
    with batches(loader) as it:
        for images, labels in it:
            logits = model(images.to(device).float())
            correct += top1_correct(logits, labels.to(device))
            total += len(labels)
    model.train(was_training)
    correct, total = all_sum([correct, total], d, device)
    return percent(correct, total)


def train_one_epoch(model: nn.Module, loss_fn: TrainLoss, optimizer: torch.optim.Optimizer, loader: DataLoader,
                    device: torch.device, d: Dist, desc: str = "", progress: bool = False) -> tuple[float, float]:
    """One pass over the loader; returns (mean loss, top-1 % of the train-mode logits) over all processes."""
    model.train()
    loss_fn.train()
    with batches(loader) as it:
        loss_sum, correct, count = _epoch(model, loss_fn, optimizer, it, device, desc, progress)
    loss_sum, correct, count = all_sum([loss_sum, correct, count], d, device)
    return loss_sum / max(count, 1), percent(correct, count)


def _epoch(model, loss_fn, optimizer, batches_, device, desc, progress) -> tuple[float, int, int]:
    """The steps of one epoch on this process: (loss sum, correct, count)."""
    from tqdm import tqdm

    loss_sum, correct, count = 0.0, 0, 0
    bar = tqdm(batches_, desc=desc, leave=False, disable=not progress, dynamic_ncols=True)
    for images, labels in bar:
        images, labels = images.to(device, non_blocking=True).float(), labels.to(device, non_blocking=True)
        outputs = model(images)
        loss = loss_fn(images, outputs, labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: the loss became {loss.item()}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = len(labels)
        loss_sum += loss.item() * n
        correct += top1_correct(student_logits(outputs).detach(), labels)
        count += n
        bar.set_postfix(loss=f"{loss_sum / count:.4f}")
    bar.close()
    return loss_sum, correct, count


def init_scales_before_ddp(model: nn.Module, dataset: Dataset, batch_size: int, seed: int, d: Dist,
                           device: torch.device) -> None:
    """Run the quantizers' data-dependent scale init before DistributedDataParallel wraps the model.

    The scales are set on a quantizer's first training forward (an ``initialized``
    buffer records it). Left to the first step, every process would take them from
    its own batch and the replicas would drift apart; initialised here, they are
    then made equal by DDP, which broadcasts rank 0's parameters and buffers.
    """
    pending = [name for name, buf in model.named_buffers() if name.endswith("initialized") and not bool(buf)]
    if not pending:
        return
    images, _ = next(iter(train_loader(dataset, batch_size, 0, seed, d, 0)))
    model.train()
    with torch.no_grad():
        model(images.to(device).float())
