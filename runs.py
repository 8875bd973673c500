"""
A training run on disk and in time: its folder (made once the inputs are checked, held by one
process at a time, never overwritten unasked), its checkpoints (written atomically, with the random
states that make a resume exact), its log, a resume's checks, and stopping cleanly when the cluster
or the user asks (SIGTERM, Ctrl-C).
"""

import contextlib
import fcntl
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

from training import AT_FAIL, fail

# -----------------------------------------------------------------------------
# checkpoints (reading one, from a file or a released model's name, is checkpoints.load_checkpoint)


def rng_states():
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(states):
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def check_out_folder(out, flag="--out"):
    """Stop with one line unless `out` is, or can become, a folder this process may write: not when
    it is a file, lies under a file, or its nearest existing parent may not be written. Creates
    nothing, so a script can check its output folder before its work and write there after it."""
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
    """Make a training run's folder, or stop with one line: when it cannot be a folder
    (check_out_folder), or when it holds a run (any of `holds`) that this one would destroy: such a
    run is continued with --resume, or replaced only when the user says --overwrite. Removes the
    temporary files that killed runs left behind."""
    check_out_folder(out)
    os.makedirs(out, exist_ok=True)
    held = [name for name in holds if os.path.exists(os.path.join(out, name))]
    if held and not resume and not overwrite:
        fail(f"--out {out} already holds a run ({', '.join(held)}): "
             f"continue it with --resume auto, or write to "
             f"another --out (--overwrite replaces it)")
    if held and overwrite and not resume:
        for name in held:
            remove_if_there(os.path.join(out, name))
    # checkpoint.pt.tmp<pid> of a process that no longer runs
    for name in os.listdir(out):
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


# folder -> its open lock file: the lock lasts while the file is open, so until the process ends
_held_folders = {}


def hold_folder(folder, flag="--out"):
    """Take the folder for this process, or stop with one line naming the process that holds it. The
    lock is the operating system's (flock on FOLDER/.lock): it dies with its process, however that
    ends, so a killed run never leaves a folder locked. Two runs writing one folder would interleave
    their logs and checkpoints."""
    folder = os.path.abspath(folder)
    # this process holds it already (a script's main run twice)
    if folder in _held_folders:
        return
    created = not os.path.exists(folder)
    # the first real write: where os.access says yes but means no
    try:
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
        fail(f"{flag} {folder} is in use by process {holder or '(unknown)'}: "
             f"wait for it to end, or write to another "
             f"{flag}")
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    _held_folders[folder] = (lock, created)


def check_results_folder(out, results, overwrite, flag="--out"):
    """For the scripts that evaluate, before any work: --out must be a folder they can write, and
    the results of an earlier run there are not replaced without --overwrite, as the trainers do.
    Creates nothing."""
    check_out_folder(out, flag)
    there = [name for name in results if os.path.exists(os.path.join(out, name))]
    if there and not overwrite:
        fail(f"{flag} {out} already holds results ({', '.join(there)}): "
             f"write to another {flag}, or say --overwrite")


def release_folder(folder, tidy=False):
    """Let another process take the folder (the end of a run; the end of the process does the same).
    tidy: a folder this process made and wrote nothing into (a run that stopped at a bad input) is
    removed again."""
    lock, created = _held_folders.pop(os.path.abspath(folder), (None, False))
    if lock is None:
        return
    lock.close()                                    # closing the file releases the lock
    if tidy and created and os.listdir(folder) == [".lock"]:
        remove_if_there(os.path.join(folder, ".lock"))
        with contextlib.suppress(OSError):
            os.rmdir(folder)


class StopRequests:
    """SIGTERM (what SLURM and most clusters send a while before they kill a job) and Ctrl-C ask a
    training run to stop: the handler only notes the request, the loop finishes its step, saves a
    checkpoint and exits with one line. A second Ctrl-C stops at once, without saving. Installed for
    the loop, removed by close()."""

    NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C"}
    # installed and not yet closed (fail() closes them)
    active = []

    def __init__(self):
        self.signal = None
        self.previous = {sig: signal.signal(sig, self.handle) for sig in self.NAMES}
        StopRequests.active.append(self)

    def handle(self, signum, frame):
        if self.signal == signal.SIGINT and signum == signal.SIGINT:
            # the second Ctrl-C: at once (the script says so in one line)
            raise KeyboardInterrupt
        if self.signal is None:
            self.signal = signum
            # the loader's workers may be ending too (a cluster signals every process of a job):
            # torch's SIGCHLD handler would raise its error anywhere, even inside the checkpoint's
            # write; without it, the next fetch of a batch reports them, and the loop stops there
            # (workers_gone)
            self.previous.setdefault(signal.SIGCHLD, signal.signal(signal.SIGCHLD, signal.SIG_DFL))
            again = (" (a second Ctrl-C stops at once, without one)"
                     if signum == signal.SIGINT else "")
            print(f"\n{self.NAMES[signum]}: stopping after this step, with a checkpoint{again}",
                  file=sys.stderr, flush=True)

    @property
    def name(self):
        return self.NAMES.get(self.signal)

    @property
    def exit_code(self):
        # the shell's code for "ended by this signal": 143, 130
        return 128 + self.signal

    def close(self):
        if self in StopRequests.active:
            StopRequests.active.remove(self)
            for sig, handler in self.previous.items():
                signal.signal(sig, handler)


def ignore_ctrl_c(*_):
    """For data-loader workers: Ctrl-C reaches the terminal's whole process group, and the main
    process decides when to stop. SIGTERM keeps its meaning: Python's exit ends the workers with it
    (ignoring it would hang the exit). A cluster that sends SIGTERM to every process of a job ends
    the workers at once: see workers_gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def workers_gone(error, requests) -> bool:
    """Whether an error fetching a batch means the loader's workers were ended by the stop signal
    that the run received too: the run then stops at the step it is in, whose update was not taken,
    and saves it."""
    return (requests.signal is not None and isinstance(error, RuntimeError)
            and "DataLoader worker" in str(error))


def all_finite(tensors) -> bool:
    """Whether every value of every tensor is finite. One host sync: for the moment before a
    checkpoint is written, so that no checkpoint ever holds a NaN."""
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def save_checkpoint(path, state):
    """Write atomically: to a temporary file beside `path`, flushed to disk, then renamed over it. A
    crash mid-write leaves the previous checkpoint whole, and so does a full disk: an OSError that
    names the file."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # a full disk (torch.save reports it as a RuntimeError)
        remove_if_there(tmp)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "the disk may be full"
        raise OSError(f"cannot write {path} ({reason})") from None


# -----------------------------------------------------------------------------
# the log


def finite_or_none(value):
    """A number for strict JSON: NaN and infinities, which JSON has no words for, become null."""
    return value if not isinstance(value, float) or math.isfinite(value) else None


class RunLog:
    """JSON lines in out/log.jsonl, written by the main process; resuming appends, dropping lines
    past the resumed step (they were written after the checkpoint the run resumes from) and a last
    line cut short by a crash. Every line is strict JSON: a non-finite number is written as null."""

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
        """The log's records; a line that is not JSON
        (cut short by a kill mid-write) is left out."""
        if not os.path.exists(self.path):
            return []
        records = []
        for line in open(self.path):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records


def let_go():
    """What fail() does before the process exits: release the folders this process holds (removing
    those it made and wrote nothing into) and give the signals their usual meaning back."""
    for folder in list(_held_folders):
        release_folder(folder, tidy=True)
    for requests in list(StopRequests.active):
        requests.close()


AT_FAIL.append(let_go)


def check_resumed_flags(saved: dict, args, may_change, source):
    """Stop with one line when a resumed run's flags differ from those its checkpoint was made with,
    apart from those that may change (where files are, how many workers, when to stop): a resume
    continues one run."""
    differs = [f"--{k} {saved[k]} (this run: {v})" for k, v in sorted(vars(args).items())
               if k in saved and k not in may_change and normal(saved[k]) != normal(v)]
    if differs:
        fail(f"--resume {source} was made with other flags: {'; '.join(differs)}. "
             f"Give the run's own flags, or "
             f"start a new run in another --out "
             f"(these may change: {', '.join('--' + k for k in sorted(may_change))})")


def normal(value):
    """A flag's value as a checkpoint keeps it and as argparse gives it: tuples and lists alike."""
    return list(value) if isinstance(value, (tuple, list)) else value
