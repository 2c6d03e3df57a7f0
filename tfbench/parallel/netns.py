"""A private network for the local cluster: its own Linux network namespace, with only loopback in it.

Part of exercise 5.3 (:mod:`tfbench.distributed`).  TensorFlow's gRPC servers listen on every
interface whatever address they are given: ``MultiWorkerMirroredStrategy``'s server binds
``0.0.0.0:<port>``, the ``tf.data`` service's dispatcher and workers bind ``[::]:<port>``, and none
of them authenticates (TensorFlow's SECURITY.md: for trusted networks only).  A dataset graph
registered with a dispatcher can read files, so a reachable port is a way into the machine.

When every task of the cluster runs on this machine, tfbench moves the command, before it starts
anything, into a network namespace of its own (``unshare(CLONE_NEWNET)``, with a user namespace
where the user is not root: ``unshare --user --net`` without the tool), brings its loopback up, and
starts the cluster there.  Its children inherit the namespace, so they talk to each other on
127.0.0.1 as before, while no address outside the namespace reaches any of their ports.  Where
that cannot be done (not Linux, namespaces forbidden by the system, a process that already runs
threads), :func:`exposure_line` is the one line the command prints instead, with the ports.
:func:`private_network` decides for a cluster on ``--host``: a loopback host is made private, any
other address is meant to be reached from other machines and stays reachable.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import ipaddress
import os
import socket
import struct
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
PRIVATE_ENV = "TFBENCH_PRIVATE_NETWORK"  # set to "1" in a process (and its children) inside the namespace
#: the one start-up line when the cluster's ports could be made private
PRIVATE_LINE = ("network: the cluster runs in a network namespace of its own (loopback only): no other machine "
                "can reach its ports")


def _threads() -> int:
    try:
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("Threads:")).split()[1])
    except (OSError, StopIteration, ValueError):
        return 0


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def interfaces() -> list[str]:
    """The network interfaces this process sees (``/proc/self/net/dev``)."""
    with open("/proc/self/net/dev") as f:
        return [line.split(":")[0].strip() for line in f.readlines()[2:] if ":" in line]


def in_private_network() -> bool:
    """Whether this process already runs in the namespace :func:`enter_private_network` made."""
    return os.environ.get(PRIVATE_ENV) == "1"


def enter_private_network() -> str | None:
    """Move this process into a new network namespace with only loopback (up); None on success, else why not.

    Must run before any thread starts (the kernel refuses a user namespace to a threaded process).
    Children started afterwards inherit the namespace.
    """
    if in_private_network():
        return None
    if not sys.platform.startswith("linux"):
        return f"network namespaces are Linux-only (this is {sys.platform})"
    if _threads() != 1:
        return "this process already runs threads (call it before TensorFlow starts)"
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    reasons = []
    for flags, what in ([(CLONE_NEWNET, "network namespace")] if uid == 0 else []) + [
            (CLONE_NEWUSER | CLONE_NEWNET, "user + network namespace")]:
        if libc.unshare(flags) != 0:
            reasons.append(f"{what}: {os.strerror(ctypes.get_errno() or errno.EPERM)}")
            continue
        try:
            if flags & CLONE_NEWUSER:  # keep this user's identity inside (files keep their owner)
                _write("/proc/self/setgroups", "deny")
                _write("/proc/self/uid_map", f"{uid} {uid} 1")
                _write("/proc/self/gid_map", f"{gid} {gid} 1")
            _loopback_up()
        except OSError as err:
            return f"made a {what} but could not set it up ({err.strerror}); its loopback may be down"
        os.environ[PRIVATE_ENV] = "1"
        return None
    return "; ".join(reasons)


def exposure_line(ports: list[int], reason: str) -> str:
    """The one start-up line when the cluster's ports could not be made private."""
    shown = ", ".join(str(p) for p in ports)
    return (f"warning: TCP ports {shown} of this cluster listen on every network interface of this machine, without "
            f"authentication (TensorFlow's gRPC servers cannot bind loopback only; no private network namespace: "
            f"{reason}); keep them behind a firewall (docs/security.md)")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def private_network(host: str) -> str | None:
    """Before a local cluster on ``host`` starts: move this process into a network namespace of its own.

    Returns None when it is there (or already was), else why the cluster's ports stay reachable
    from other machines (the caller prints that with the ports, :func:`exposure_line`).
    """
    if in_private_network():
        return None
    if not is_loopback(host):
        return f"--host {host} is not a loopback address, so the cluster is meant to be reached from other machines"
    return enter_private_network()
