"""
The parts of one optimisation step that pretraining and finetuning share: the next batch the loader
could read, the crops of a global batch, a micro-batch's forward and backward, and the update.

Two ideas run through them.
- A step's random draws are made for the *global* batch (all processes' clips), keyed by (seed,
  step, micro-batch), and each process takes its own slice. So N processes on N batches make exactly
  the update of one process on all of them, and a resumed run draws what an uninterrupted one draws.
- Nothing here asks the GPU for a number: the loss and the gradient's norm stay tensors on the
  device, and the scripts read them only when they log or save. A host sync per step would idle the
  GPU while Python waits.
"""

from contextlib import nullcontext

import torch

from augment import sample_crops
from training import autocast_for, generator


def next_readable(batches, unreadable: set):
    """The next batch that holds clips; the files the
    loader could not read are added to `unreadable`."""
    batch = next(batches)
    unreadable.update(batch.unreadable)
    while batch.clips is None:                      # every file of it unreadable
        batch = next(batches)
        unreadable.update(batch.unreadable)
    return batch


def my_slice(n, procs) -> slice:
    """This process's rows of a global batch of n clips per process."""
    return slice(procs.rank * n, (procs.rank + 1) * n)


def global_batch_crops(n, procs, keys, crop_scale, flip, device):
    """This process's crop boxes and flips, drawn for the
    global batch (n clips on each process) and sliced."""
    boxes, flips = sample_crops(n * procs.world, tuple(crop_scale), flip=flip, device=device,
                                generator=generator(device, *keys, "crop"))
    mine = my_slice(n, procs)
    return boxes[mine], flips[mine]


def backward(model, procs, micro, accum, precision, forward, scaler=None):
    """One micro-batch: forward() under autocast, then the backward pass of its share of the step's
    loss (loss / accum, so that accum micro-batches add up to the mean). DDP averages gradients over
    processes in backward; before the last micro-batch that is wasted work, so it is skipped
    (no_sync). Returns the loss, detached."""
    last = micro == accum - 1
    with model.no_sync() if procs.world > 1 and not last else nullcontext():
        with autocast_for(procs.device, precision):
            loss = forward()
        share = loss / accum
        (scaler.scale(share) if scaler is not None else share).backward()
    return loss.detach()


def update(model, optimizer, clip_grad, scaler=None):
    """Clip the gradient to clip_grad, take the optimizer's step, clear the gradients. Returns the
    norm before clipping, a tensor on the device: inf or nan when the gradient is not finite (fp16's
    scaler then skips the step itself and lowers its scale; the scripts stop on it otherwise)."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm
