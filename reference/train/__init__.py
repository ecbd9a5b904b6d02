"""Train the reference models: full-precision teacher -> stage 1 -> stage 2 (``python -m reference.train``).

The recipe is the released GSB one (research/gsb.md §4): AdamW, cosine schedule
stepped per epoch, DeiT hard-label distillation from the teacher, stage 2
initialised from stage 1's best checkpoint. Each stage writes <out>/<stage>/:
last.pt, best.pt (best *validation* top-1), metrics.jsonl, curves.png,
summary.json. ``--resume`` continues an interrupted stage and reaches the same
weights as an uninterrupted run (single process): RNG states, optimizer and
scheduler are restored and epoch e's data order is seeded by seed + e.

Under torchrun (RANK/WORLD_SIZE set) every process trains on its DistributedSampler
share; --batch-size is the *total* batch (each process takes batch/world_size) and
the lr is the lr of that total batch, not rescaled, so a 2-process run follows the
same recipe as a 1-process one. Validation and test are scored on disjoint shards
and summed; float buffers (BatchNorm statistics) are averaged after each epoch;
only rank 0 writes files and prints. Resuming a torchrun job restores rank 0's
RNG state (other ranks are re-seeded), so bit-exact resume is a 1-process property.

Modules: cli (arguments), distributed (processes, devices), schedule (optimiser, cosine), loop (one
epoch, evaluation), stages (one stage and its files), main (the entry point).
"""
