"""The cluster around ``tf.distribute``: TF_CONFIG, free ports on 127.0.0.1, and a supervisor for local processes.

Part of exercise 5.3 (:mod:`tfbench.distributed`).  ``MultiWorkerMirroredStrategy`` learns who
is in the cluster and which member *this* process is from the ``TF_CONFIG`` environment
variable, a JSON document::

    {"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}, "task": {"type": "worker", "index": 0}}

Every machine gets the same ``cluster`` and its own ``task``; worker 0 is the chief (it writes
checkpoints and logs).  :func:`parse_tf_config` checks such a document and turns each mistake
into a one-line :class:`~tfbench.plumbing.errors.UserError`; :func:`local_tf_configs` writes one per
local worker on free ports of 127.0.0.1.

:class:`Supervisor` starts child processes and guarantees none outlives the command: they are
stopped (SIGTERM, then SIGKILL after a grace period) when the command ends, on Ctrl-C, on
SIGTERM, on an error, and as soon as one of them fails; and each child runs
:func:`exit_with_parent`, so even a SIGKILLed parent leaves no orphan behind.
This module imports no TensorFlow: the launcher stays light and starts in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Callable, Sequence

from tfbench.plumbing.errors import UserError

LOCALHOST = "127.0.0.1"
PARENT_ENV = "TFBENCH_PARENT_PID"
CHILD_ENV = "TFBENCH_DISTRIBUTED_CHILD"


# ----------------------------------------------------------------------------- TF_CONFIG


@dataclass(frozen=True)
class TaskConfig:
    """A checked TF_CONFIG: the worker addresses and which of them this process is."""

    workers: tuple[str, ...]
    index: int
    task_type: str = "worker"

    @property
    def num_workers(self) -> int:
        """How many workers the cluster has."""
        return len(self.workers)

    @property
    def is_chief(self) -> bool:
        """Worker 0 is the chief (no separate "chief" task in our clusters)."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.index == 0)

    def to_json(self) -> str:
        """The TF_CONFIG text for this task."""
        return json.dumps({"cluster": {"worker": list(self.workers)},
                           "task": {"type": self.task_type, "index": self.index}})


def parse_tf_config(text: str, source: str = "TF_CONFIG") -> TaskConfig:
    """Check a TF_CONFIG document; every mistake is a one-line UserError saying what was expected."""
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{source} is not valid JSON ({err.msg} at character {err.pos}): {text[:80]!r}") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise UserError(f'{source} needs a "cluster" object, e.g. {{"cluster": {{"worker": ["host:port", ...]}}, '
                        f'"task": {{"type": "worker", "index": 0}}}}')
    cluster = config["cluster"]
    unsupported = sorted(set(cluster) - {"worker", "chief"})
    if unsupported:
        raise UserError(f"{source}: task types {unsupported} are not used by MultiWorkerMirroredStrategy "
                        "(only 'worker' and optionally 'chief')")
    if "chief" in cluster:
        raise UserError(f"{source}: a separate 'chief' task is not supported here; worker 0 is the chief")
    workers = cluster.get("worker")
    if not isinstance(workers, list) or not workers or not all(isinstance(w, str) for w in workers):
        raise UserError(f'{source}: cluster.worker must be a non-empty list of "host:port" strings, got {workers!r}')
    for address in workers:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UserError(f"{source}: worker address {address!r} is not host:port with a port in 1..65535")
    if len(set(workers)) != len(workers):
        raise UserError(f"{source}: worker addresses repeat: {workers}")
    task = config.get("task")
    if not isinstance(task, dict):
        raise UserError(f'{source} needs a "task" object like {{"type": "worker", "index": 0}}')
    if task.get("type") != "worker":
        raise UserError(f"{source}: task.type must be 'worker', got {task.get('type')!r}")
    index = task.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(workers):
        raise UserError(f"{source}: task.index {index!r} is out of range: the cluster has {len(workers)} "
                        f"worker(s), so it must be 0..{len(workers) - 1}")
    return TaskConfig(tuple(workers), index)


def env_tf_config() -> TaskConfig | None:
    """The checked TF_CONFIG of the environment, or None when it is unset or empty."""
    text = os.environ.get("TF_CONFIG", "").strip()
    return parse_tf_config(text) if text else None


def worker_task(strategy: str, workers: int | None) -> TaskConfig | None:
    """Which worker of the TF_CONFIG cluster this process is under ``multiworker`` (None for the other strategies).

    ``--workers`` (``workers``) is for ``multiworker`` only, and must agree with TF_CONFIG where both are given.
    """
    if strategy != "multiworker":
        if workers is not None:
            raise UserError(f"--workers is for --strategy multiworker, not {strategy!r}")
        return None
    task = env_tf_config()
    if task is not None and workers is not None and workers != task.num_workers and not os.environ.get(CHILD_ENV):
        raise UserError(f"--workers {workers} but TF_CONFIG describes {task.num_workers} workers; "
                        "omit --workers when TF_CONFIG is set")
    return task


def free_ports(count: int, host: str = LOCALHOST) -> list[int]:
    """``count`` distinct TCP ports that are free on ``host`` right now (the OS picks them).

    All sockets stay open until every port is chosen, so the ports differ; a tiny race remains
    between closing them here and TensorFlow binding them (another program could take one).
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    except OSError as err:
        raise UserError(f"cannot bind a port on {host!r}: {err.strerror}") from err
    finally:
        for s in sockets:
            s.close()


def local_tf_configs(num_workers: int, host: str = LOCALHOST) -> list[TaskConfig]:
    """One TF_CONFIG per local worker, on free ports of ``host``."""
    if num_workers < 1:
        raise UserError(f"--workers must be at least 1, got {num_workers}")
    workers = tuple(f"{host}:{port}" for port in free_ports(num_workers, host))
    return [TaskConfig(workers, i) for i in range(num_workers)]


# ----------------------------------------------------------------------------- child processes


def exit_with_parent(poll_seconds: float = 0.5) -> None:
    """In a child started by :class:`Supervisor`: exit at once if the parent process disappears.

    A daemon thread compares ``os.getppid()`` with the parent's pid from the environment;
    when the parent dies (even by SIGKILL, which runs no cleanup), the child is re-parented
    and notices within ``poll_seconds``.
    """
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(poll_seconds)
        os._exit(3)  # no cleanup: the job is gone, and TF's shutdown could wait on dead peers

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


@dataclass
class Child:
    """One started process: its name (used as output prefix) and the Popen handle."""

    name: str
    process: subprocess.Popen

    @property
    def pid(self) -> int:
        """Process id."""
        return self.process.pid


class ChildFailed(Exception):
    """A supervised process exited with a non-zero code (the others have been stopped)."""

    def __init__(self, child: Child, code: int):
        super().__init__(f"{child.name} (pid {child.pid}) exited with code {code}")
        self.child, self.code = child, code


class Supervisor:
    """Start child processes, relay their output with a prefix, and stop every one of them at the end.

    Use as a context manager; leaving the block (normally, by exception or Ctrl-C) stops all
    children that still run.  SIGTERM to this process is turned into KeyboardInterrupt while the
    block runs, so ``kill <pid>`` cleans up too.
    """

    def __init__(self, grace_seconds: float = 5.0, out: IO[str] | None = None):
        self.grace_seconds = grace_seconds
        self.out = out or sys.stdout
        self.children: list[Child] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._old_sigterm: object = None

    def __enter__(self) -> "Supervisor":
        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop_all()
        finally:
            if self._old_sigterm is not None:
                signal.signal(signal.SIGTERM, self._old_sigterm)  # type: ignore[arg-type]

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None,
              prefix: bool = True) -> Child:
        """Start ``argv`` with ``env`` added to this environment; its output lines go to ``out``."""
        child_env = {**os.environ, **(env or {}), PARENT_ENV: str(os.getpid()), CHILD_ENV: "1",
                     "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(list(argv), env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, text=True, bufsize=1)
        child = Child(name, process)
        self.children.append(child)
        thread = threading.Thread(target=self._relay, args=(child, prefix), daemon=True)
        thread.start()
        self._threads.append(thread)
        return child

    def _relay(self, child: Child, prefix: bool) -> None:
        assert child.process.stdout is not None
        for line in child.process.stdout:
            with self._lock:
                self.out.write(f"[{child.name}] {line}" if prefix else line)
                self.out.flush()

    def wait(self, timeout: float | None = None, poll_seconds: float = 0.2,
             on_poll: Callable[[], None] | None = None) -> None:
        """Wait until every child has exited; raise :class:`ChildFailed` (after stopping the rest) if one fails."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            running = False
            for child in self.children:
                code = child.process.poll()
                if code is None:
                    running = True
                elif code != 0:
                    self.stop_all()
                    raise ChildFailed(child, code)
            if not running:
                break
            if deadline is not None and time.monotonic() > deadline:
                self.stop_all()
                raise UserError(f"processes still running after {timeout:.0f} s; stopped them")
            if on_poll is not None:
                on_poll()
            time.sleep(poll_seconds)
        for thread in self._threads:
            thread.join(timeout=5)

    def stop_all(self) -> None:
        """SIGTERM every child that still runs, then SIGKILL those alive after the grace period."""
        alive = [c for c in self.children if c.process.poll() is None]
        for child in alive:
            with contextlib.suppress(ProcessLookupError):
                child.process.terminate()
        deadline = time.monotonic() + self.grace_seconds
        for child in alive:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                child.process.wait(timeout=10)


def _sigterm_to_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def python_module_argv(module: str, args: Sequence[str]) -> list[str]:
    """``[sys.executable, "-m", module, *args]``: how children are started (same interpreter and venv)."""
    return [sys.executable, "-m", module, *args]
