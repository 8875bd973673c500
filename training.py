"""
Plumbing the scripts share: processes (DDP), flags (bundles of defaults, checked values, one-line
errors), autocast, the order of the data, the learning-rate schedule, run folders and checkpoints
that survive a crash, and the run's log. It knows neither data formats nor model internals.

Reproducibility is built on one idea: every random choice is keyed by *what it is for*, never drawn
from a stream that carries state from step to step. The clip of a video, its crops and its mask at
optimisation step s are functions of (seed, s, the sample's position in the global batch). So a run
resumed at step k sees exactly the data an uninterrupted run sees, and 2 processes with 8 samples
each see what 1 process with 16 sees.
"""

import argparse
import hashlib
import math
import os
import re
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

# -----------------------------------------------------------------------------
# processes


class Processes:
    """This process's place in the run: rank, world size, device. Under torchrun (WORLD_SIZE > 1) it
    joins the process group: NCCL on GPUs, gloo on CPUs; torchrun's own rendezvous handles several
    nodes."""

    def __init__(self, device="auto"):
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.rank = int(os.environ.get("RANK", 0))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.started = time.time()                   # for --max_minutes: the setup counts too
        if device != "auto" and not re.fullmatch(r"cpu|cuda(:\d+)?", device):
            fail(f"--device {device!r}: choose auto, cpu, cuda or cuda:N")
        if device.startswith("cuda") and not torch.cuda.is_available():
            fail(f"--device {device}: this machine has no CUDA GPU that torch can use "
                 f"(try --device cpu)")
        use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
        if use_cuda:
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device("cpu")
        if self.world > 1:
            dist.init_process_group("nccl" if use_cuda else "gloo",
                                    device_id=self.device if use_cuda else None)
            # decisions (stop now?) travel on the CPU through
            # gloo, so asking them never waits for the GPU
            self.control = dist.new_group(backend="gloo")

    @property
    def main(self) -> bool:                       # rank 0 logs, draws and writes checkpoints
        return self.rank == 0

    def print(self, *args):
        if self.main:
            print(*args, flush=True)

    def any(self, *flags):
        """For each flag, whether it is True on any rank: the same answer on every rank, so that all
        stop together, at the same step. CPU tensors on the gloo control group: asking never waits
        for the GPU."""
        if self.world > 1:
            t = torch.tensor([float(f) for f in flags])
            dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
            flags = [bool(v) for v in t.tolist()]
        return flags[0] if len(flags) == 1 else tuple(flags)

    def close(self):
        if self.world > 1:
            # wait for rank 0's last checkpoint and figure: a rank that tears gloo down while a peer
            # is still busy can abort at exit ("terminate called without an active exception")
            dist.barrier()
            dist.destroy_process_group()


# What fail() lets go of before the process exits, as the end of the process would (a script's main
# may run inside a test, which goes on after it): runs.py adds the release of its run folders and
# signal handlers.
AT_FAIL = []


def fail(message, code=2):
    """One clear line and a non-zero exit: for bad flags, missing data, missing checkpoints. What
    the process holds (its run folders, the signals) is let go first, as the end of the process
    would (a main may run in a test)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    for let_go in AT_FAIL:
        let_go()
    sys.exit(code)

def run_script(main, parse_args, interrupted="stopped by Ctrl-C"):
    """A script's entry point: Ctrl-C (before a training loop takes it over, or a second one during
    it) ends the script with one line and the shell's code for it, never a traceback."""
    try:
        return main(parse_args())
    except KeyboardInterrupt:
        fail(interrupted, code=130)

# -----------------------------------------------------------------------------
# flags


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (`error: argument --lr: must be > 0, got '0'`), without
    the usage block that would push the reason off a narrow terminal. Every script's parser is one
    of these."""

    def error(self, message):
        fail(message)


def checked(convert, test, condition):
    """An argparse `type` that converts the text and
    refuses values failing `test`, saying `condition`."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {condition}, got {text!r}") from None
        # NaN fails every comparison, so it is refused too
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {condition}, got {text!r}")
        return value
    parse.__name__ = condition                     # what argparse names in its own messages
    return parse


def require_order(p: argparse.ArgumentParser, flag: str, pair):
    """A two-number flag such as --crop_scale gives its smaller number first."""
    if pair[0] > pair[1]:
        p.error(f"argument --{flag}: the smaller number comes first, got {pair[0]} {pair[1]}")


positive_int = checked(int, lambda v: v >= 1, "a whole number >= 1")
nonnegative_int = checked(int, lambda v: v >= 0, "a whole number >= 0")
positive_float = checked(float, lambda v: 0 < v < math.inf, "a number > 0")
nonnegative_float = checked(float, lambda v: 0 <= v < math.inf, "a number >= 0")
open_fraction = checked(float, lambda v: 0 < v < 1, "a number between 0 and 1, both excluded")
unit_interval = checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
fraction = checked(float, lambda v: 0 < v <= 1, "a number in (0, 1]")
# AdamW computes its step, lr / (1 - beta1^t), in float32,
# whose largest number is 3.4e38: --lr 1e300 cannot be a step
learning_rate_flag = checked(float, lambda v: 0 < v <= 1e37, "a number in (0, 1e37]")
final_learning_rate_flag = checked(float, lambda v: 0 <= v <= 1e37, "a number in [0, 1e37]")
# what torch's seeds hold
seed_int = checked(int, lambda v: 0 <= v < 2 ** 63, "a whole number in [0, 2**63)")


def resolve_precision(device: torch.device, precision="auto") -> str:
    """'auto' is bf16 on GPUs (the H100/H200's fast
    matmuls, no loss scaling needed) and fp32 on CPUs."""
    return precision if precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")


def autocast_for(device: torch.device, precision="auto"):
    """The forward pass's precision: bf16 or fp16 autocast,
    or plain fp32. (fp16 also needs a GradScaler.)"""
    precision = resolve_precision(device, precision)
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=precision != "fp32")

# -----------------------------------------------------------------------------
# keyed randomness and the order of the data


def seed_of(*keys) -> int:
    """A 63-bit seed from any keys (numbers, strings): a
    stable hash, the same in every process and on every run."""
    return int.from_bytes(hashlib.sha256(repr(keys).encode()).digest()[:8], "little") >> 1


def generator(device, *keys) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed_of(*keys))


class StepSampler(Sampler):
    """The data stream of a run, cut into global batches. Epoch e is a permutation of the items
    seeded by (seed, e); the epochs follow each other without a gap, and global batch s is positions
    [s*B, (s+1)*B) of that stream (B = batch per process x processes). This process takes its own
    contiguous slice of each global batch, so no item is seen twice in an epoch across processes.
    Yields (item index, item seed): the dataset keys its random choices (which clip of a video) by
    the item seed. Starts at `start_step`: resuming costs no decoding."""

    def __init__(self, num_items, batch_per_process, rank=0, world=1, seed=0, start_step=0):
        self.n, self.batch, self.rank, self.world = num_items, batch_per_process, rank, world
        self.seed, self.start_step = seed, start_step

    def order(self, epoch):
        return np.random.default_rng(seed_of(self.seed, "epoch", epoch)).permutation(self.n)

    def __iter__(self):
        global_batch = self.batch * self.world
        # in the endless stream
        position = self.start_step * global_batch + self.rank * self.batch
        epoch, order = None, None
        while True:
            for p in range(position, position + self.batch):
                if p // self.n != epoch:
                    epoch = p // self.n
                    order = self.order(epoch)
                yield int(order[p % self.n]), seed_of(self.seed, "item", p)
            position += global_batch

    def epoch_at(self, step) -> float:
        return step * self.batch * self.world / self.n

# -----------------------------------------------------------------------------
# the learning rate


def learning_rate(step, base_lr, schedule="constant", warmup_steps=0, total_steps=None, min_lr=0.0):
    """The paper's constant lr, or the authors' later
    linear warmup then half-cosine decay to min_lr."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr schedule {schedule!r}; choose 'constant' or 'cosine'")


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def unwrap(model):
    """The model inside DDP and torch.compile wrappers (what checkpoints hold)."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)
