"""
Plumbing the scripts share: processes (DDP), flags (bundles of defaults, checked values, one-line errors), autocast,
the order of the data, the learning-rate schedule, run folders and checkpoints that survive a crash, and the run's
log. It knows neither data formats nor model internals.

Reproducibility is built on one idea: every random choice is keyed by *what it is for*, never drawn from a stream
that carries state from step to step. The clip of a video, its crops and its mask at optimisation step s are
functions of (seed, s, the sample's position in the global batch). So a run resumed at step k sees exactly the data
an uninterrupted run sees, and 2 processes with 8 samples each see what 1 process with 16 sees.
"""

import argparse
import contextlib
import fcntl
import hashlib
import json
import math
import os
import random
import re
import signal
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

# -----------------------------------------------------------------------------
# processes


class Processes:
    """This process's place in the run: rank, world size, device. Under torchrun (WORLD_SIZE > 1) it joins the
    process group: NCCL on GPUs, gloo on CPUs; torchrun's own rendezvous handles several nodes."""

    def __init__(self, device="auto"):
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.rank = int(os.environ.get("RANK", 0))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.started = time.time()                   # for --max_minutes: the setup counts too
        if device != "auto" and not re.fullmatch(r"cpu|cuda(:\d+)?", device):
            fail(f"--device {device!r}: choose auto, cpu, cuda or cuda:N")
        if device.startswith("cuda") and not torch.cuda.is_available():
            fail(f"--device {device}: this machine has no CUDA GPU that torch can use (try --device cpu)")
        use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
        if use_cuda:
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device("cpu")
        if self.world > 1:
            dist.init_process_group("nccl" if use_cuda else "gloo", device_id=self.device if use_cuda else None)
            # decisions (stop now?) travel on the CPU through gloo, so asking them never waits for the GPU
            self.control = dist.new_group(backend="gloo")

    @property
    def main(self) -> bool:                       # rank 0 logs, draws and writes checkpoints
        return self.rank == 0

    def print(self, *args):
        if self.main:
            print(*args, flush=True)

    def any(self, *flags):
        """For each flag, whether it is True on any rank: the same answer on every rank, so that all stop together,
        at the same step. CPU tensors on the gloo control group: asking never waits for the GPU."""
        if self.world > 1:
            t = torch.tensor([float(f) for f in flags])
            dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
            flags = [bool(v) for v in t.tolist()]
        return flags[0] if len(flags) == 1 else tuple(flags)

    def close(self):
        if self.world > 1:
            # wait for rank 0's last checkpoint and figure: a rank that tears gloo down while a peer is still
            # busy can abort at exit ("terminate called without an active exception")
            dist.barrier()
            dist.destroy_process_group()


def fail(message, code=2):
    """One clear line and a non-zero exit: for bad flags, missing data, missing checkpoints. The folders this
    process holds are let go first, as the end of the process would (a script's main may run inside a test)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    for folder in list(_held_folders):
        release_folder(folder, tidy=True)
    for requests in list(StopRequests.active):      # and signals get their usual meaning back
        requests.close()
    sys.exit(code)

def run_script(main, parse_args, interrupted="stopped by Ctrl-C"):
    """A script's entry point: Ctrl-C (before a training loop takes it over, or a second one during it) ends the
    script with one line and the shell's code for it, never a traceback."""
    try:
        return main(parse_args())
    except KeyboardInterrupt:
        fail(interrupted, code=130)

# -----------------------------------------------------------------------------
# flags


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (`error: argument --lr: must be > 0, got '0'`), without the usage block
    that would push the reason off a narrow terminal. Every script's parser is one of these."""

    def error(self, message):
        fail(message)


def checked(convert, test, condition):
    """An argparse `type` that converts the text and refuses values failing `test`, saying `condition`."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {condition}, got {text!r}") from None
        if not test(value):                        # NaN fails every comparison, so it is refused too
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
# AdamW computes its step, lr / (1 - beta1^t), in float32, whose largest number is 3.4e38: --lr 1e300 cannot be a step
learning_rate_flag = checked(float, lambda v: 0 < v <= 1e37, "a number in (0, 1e37]")
final_learning_rate_flag = checked(float, lambda v: 0 <= v <= 1e37, "a number in [0, 1e37]")
seed_int = checked(int, lambda v: 0 <= v < 2 ** 63, "a whole number in [0, 2**63)")   # what torch's seeds hold


def check_resumed_flags(saved: dict, args, may_change, source):
    """Stop with one line when a resumed run's flags differ from those its checkpoint was made with, apart from
    those that may change (where files are, how many workers, when to stop): a resume continues one run."""
    differs = [f"--{k} {saved[k]} (this run: {v})" for k, v in sorted(vars(args).items())
               if k in saved and k not in may_change and normal(saved[k]) != normal(v)]
    if differs:
        fail(f"--resume {source} was made with other flags: {'; '.join(differs)}. Give the run's own flags, or "
             f"start a new run in another --out (these may change: {', '.join('--' + k for k in sorted(may_change))})")


def normal(value):
    """A flag's value as a checkpoint keeps it and as argparse gives it: tuples and lists alike."""
    return list(value) if isinstance(value, (tuple, list)) else value


def resolve_precision(device: torch.device, precision="auto") -> str:
    """'auto' is bf16 on GPUs (the H100/H200's fast matmuls, no loss scaling needed) and fp32 on CPUs."""
    return precision if precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")


def autocast_for(device: torch.device, precision="auto"):
    """The forward pass's precision: bf16 or fp16 autocast, or plain fp32. (fp16 also needs a GradScaler.)"""
    precision = resolve_precision(device, precision)
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=precision != "fp32")

# -----------------------------------------------------------------------------
# keyed randomness and the order of the data


def seed_of(*keys) -> int:
    """A 63-bit seed from any keys (numbers, strings): a stable hash, the same in every process and on every run."""
    return int.from_bytes(hashlib.sha256(repr(keys).encode()).digest()[:8], "little") >> 1


def generator(device, *keys) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed_of(*keys))


class StepSampler(Sampler):
    """The data stream of a run, cut into global batches. Epoch e is a permutation of the items seeded by
    (seed, e); the epochs follow each other without a gap, and global batch s is positions [s*B, (s+1)*B) of that
    stream (B = batch per process x processes). This process takes its own contiguous slice of each global batch,
    so no item is seen twice in an epoch across processes. Yields (item index, item seed): the dataset keys its
    random choices (which clip of a video) by the item seed. Starts at `start_step`: resuming costs no decoding."""

    def __init__(self, num_items, batch_per_process, rank=0, world=1, seed=0, start_step=0):
        self.n, self.batch, self.rank, self.world = num_items, batch_per_process, rank, world
        self.seed, self.start_step = seed, start_step

    def order(self, epoch):
        return np.random.default_rng(seed_of(self.seed, "epoch", epoch)).permutation(self.n)

    def __iter__(self):
        global_batch = self.batch * self.world
        position = self.start_step * global_batch + self.rank * self.batch      # in the endless stream
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
    """The paper's constant lr, or the authors' later linear warmup then half-cosine decay to min_lr."""
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

# -----------------------------------------------------------------------------
# writing checkpoints (reading them, from a file or a released model's name, is checkpoints.load_checkpoint)


def rng_states():
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(states):
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def check_out_folder(out, flag="--out"):
    """Stop with one line unless `out` is, or can become, a folder this process may write: not when it is a file, lies
    under a file, or its nearest existing parent may not be written. Creates nothing, so a script can check its output
    folder before its work and write there after it."""
    path = os.path.abspath(out)
    if os.path.exists(path):
        if not os.path.isdir(path):
            fail(f"{flag} {out} is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            fail(f"{flag} {out}: this folder cannot be written to")
        return
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        fail(f"{flag} {out} lies under {parent}, which is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        fail(f"{flag} {out} cannot be created: {parent} cannot be written to")


def prepare_run_folder(out, resume=None, overwrite=False, holds=("checkpoint.pt", "log.jsonl")):
    """Make a training run's folder, or stop with one line: when it cannot be a folder (check_out_folder), or when it
    holds a run (any of `holds`) that this one would destroy: such a run is continued with --resume, or replaced only
    when the user says --overwrite. Removes the temporary files that killed runs left behind."""
    check_out_folder(out)
    os.makedirs(out, exist_ok=True)
    held = [name for name in holds if os.path.exists(os.path.join(out, name))]
    if held and not resume and not overwrite:
        fail(f"--out {out} already holds a run ({', '.join(held)}): continue it with --resume auto, or write to "
             f"another --out (--overwrite replaces it)")
    if held and overwrite and not resume:
        for name in held:
            remove_if_there(os.path.join(out, name))
    for name in os.listdir(out):                    # checkpoint.pt.tmp<pid> of a process that no longer runs
        match = re.fullmatch(r".+\.tmp(\d+)", name)
        if match and not process_alive(int(match.group(1))):
            remove_if_there(os.path.join(out, name))


def process_alive(pid) -> bool:
    try:
        os.kill(pid, 0)                             # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:                         # it exists, under another user
        return True
    return True


def remove_if_there(path):
    try:
        os.remove(path)
    except FileNotFoundError:                       # another process of the run was first
        pass


_held_folders = {}      # folder -> its open lock file: the lock lasts while the file is open, so until the process ends


def hold_folder(folder, flag="--out"):
    """Take the folder for this process, or stop with one line naming the process that holds it. The lock is the
    operating system's (flock on FOLDER/.lock): it dies with its process, however that ends, so a killed run never
    leaves a folder locked. Two runs writing one folder would interleave their logs and checkpoints."""
    folder = os.path.abspath(folder)
    if folder in _held_folders:                     # this process holds it already (a script's main run twice)
        return
    created = not os.path.exists(folder)
    try:                                            # the first real write: where os.access says yes but means no
        os.makedirs(folder, exist_ok=True)
        lock = open(os.path.join(folder, ".lock"), "a+")
    except OSError as e:
        fail(f"{flag} {folder}: cannot write there ({e.strerror})")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip()
        lock.close()
        fail(f"{flag} {folder} is in use by process {holder or '(unknown)'}: wait for it to end, or write to another "
             f"{flag}")
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    _held_folders[folder] = (lock, created)


def check_results_folder(out, results, overwrite, flag="--out"):
    """For the scripts that evaluate, before any work: --out must be a folder they can write, and the results of an
    earlier run there are not replaced without --overwrite, as the trainers do. Creates nothing."""
    check_out_folder(out, flag)
    there = [name for name in results if os.path.exists(os.path.join(out, name))]
    if there and not overwrite:
        fail(f"{flag} {out} already holds results ({', '.join(there)}): write to another {flag}, or say --overwrite")


def release_folder(folder, tidy=False):
    """Let another process take the folder (the end of a run; the end of the process does the same). tidy: a
    folder this process made and wrote nothing into (a run that stopped at a bad input) is removed again."""
    lock, created = _held_folders.pop(os.path.abspath(folder), (None, False))
    if lock is None:
        return
    lock.close()                                    # closing the file releases the lock
    if tidy and created and os.listdir(folder) == [".lock"]:
        remove_if_there(os.path.join(folder, ".lock"))
        with contextlib.suppress(OSError):
            os.rmdir(folder)


class StopRequests:
    """SIGTERM (what SLURM and most clusters send a while before they kill a job) and Ctrl-C ask a training run to
    stop: the handler only notes the request, the loop finishes its step, saves a checkpoint and exits with one line.
    A second Ctrl-C stops at once, without saving. Installed for the loop, removed by close()."""

    NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C"}
    active = []                                     # installed and not yet closed (fail() closes them)

    def __init__(self):
        self.signal = None
        self.previous = {sig: signal.signal(sig, self.handle) for sig in self.NAMES}
        StopRequests.active.append(self)

    def handle(self, signum, frame):
        if self.signal == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt                 # the second Ctrl-C: at once (the script says so in one line)
        if self.signal is None:
            self.signal = signum
            again = " (a second Ctrl-C stops at once, without one)" if signum == signal.SIGINT else ""
            print(f"\n{self.NAMES[signum]}: stopping after this step, with a checkpoint{again}", file=sys.stderr,
                  flush=True)

    @property
    def name(self):
        return self.NAMES.get(self.signal)

    @property
    def exit_code(self):
        return 128 + self.signal                    # the shell's code for "ended by this signal": 143, 130

    def close(self):
        if self in StopRequests.active:
            StopRequests.active.remove(self)
            for sig, handler in self.previous.items():
                signal.signal(sig, handler)


def ignore_stop_signals(*_):
    """For data-loader workers: Ctrl-C reaches the whole process group, and SIGTERM often does too; the main
    process decides when to stop, and its workers end with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def all_finite(tensors) -> bool:
    """Whether every value of every tensor is finite. One host sync: for the moment before a checkpoint is written,
    so that no checkpoint ever holds a NaN."""
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def save_checkpoint(path, state):
    """Write atomically: to a temporary file beside `path`, flushed to disk, then renamed over it. A crash
    mid-write leaves the previous checkpoint whole, and so does a full disk: an OSError that names the file."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:            # a full disk (torch.save reports it as a RuntimeError)
        remove_if_there(tmp)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "the disk may be full"
        raise OSError(f"cannot write {path} ({reason})") from None


def unwrap(model):
    """The model inside DDP and torch.compile wrappers (what checkpoints hold)."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)

# -----------------------------------------------------------------------------
# the log


def finite_or_none(value):
    """A number for strict JSON: NaN and infinities, which JSON has no words for, become null."""
    return value if not isinstance(value, float) or math.isfinite(value) else None


class RunLog:
    """JSON lines in out/log.jsonl, written by the main process; resuming appends, dropping lines past the resumed
    step (they were written after the checkpoint the run resumes from) and a last line cut short by a crash.
    Every line is strict JSON: a non-finite number is written as null."""

    def __init__(self, path, main=True, resume_step=None):
        self.path, self.main = path, main
        if main and resume_step is not None and os.path.exists(path):
            kept = [json.dumps(r) + "\n" for r in self.records() if r.get("step", 0) <= resume_step]
            with open(path, "w") as f:
                f.writelines(kept)
        elif main and resume_step is None and os.path.exists(path):
            os.remove(path)

    def write(self, **record):
        if self.main:
            record = {k: finite_or_none(v) for k, v in record.items()}
            record["time"] = round(time.time(), 2)
            with open(self.path, "a") as f:
                f.write(json.dumps(record, allow_nan=False) + "\n")

    def records(self):
        """The log's records; a line that is not JSON (cut short by a kill mid-write) is left out."""
        if not os.path.exists(self.path):
            return []
        records = []
        for line in open(self.path):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records
