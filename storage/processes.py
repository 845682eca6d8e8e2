"""Who owns a temp file or a lease: this machine's boot and pid namespace plus a pid, and whether that owner lives."""

from __future__ import annotations

import hashlib
import os
import socket
from functools import cache


@cache
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        return "unknown-boot"


@cache
def _pid_namespace() -> str:
    # Two containers sharing DATA_DIR may show each other the same pids for different processes: a pid means
    # something only inside its own namespace.
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "no-namespace"


def _short(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


@cache
def place() -> str:
    """8 hex digits naming this host and pid namespace (where a pid can be checked)."""
    return _short(socket.gethostname(), _pid_namespace())


@cache
def boot() -> str:
    """8 hex digits naming this boot of the machine (every process of an earlier boot is gone)."""
    return _short(_boot_id())


def owner_tag(pid: int | None = None) -> str:
    """`<place><boot>-<pid>`: enough to tell later whether the process that wrote something still runs."""
    return f"{place()}{boot()}-{pid if pid is not None else os.getpid()}"


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it is just not ours
    return True


def owner_gone(tag: str) -> bool | None:
    """True: the owner is provably dead (same place: its pid is gone, or it ran in an earlier boot).
    False: it runs. None: it lives elsewhere (another host or container) and nothing can be proved from here.
    `tag` starts with an owner_tag(); anything after a further "-" is ignored."""
    head, _, rest = tag.partition("-")
    pid_text = rest.partition("-")[0]
    if len(head) != 16 or not pid_text.isdigit():
        return None
    owner_place, owner_boot = head[:8], head[8:]
    if owner_place != place():
        return None
    if owner_boot != boot():
        return True
    return not pid_alive(int(pid_text))
