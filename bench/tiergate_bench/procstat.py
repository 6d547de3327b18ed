"""Reading /proc: a process tree, its CPU time (utime + stime) and its resident memory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "TreeSample",
    "core_busy",
    "core_times",
    "cpu_by_pid",
    "cpu_seconds",
    "process_tree",
    "rss_bytes",
    "sample_tree",
]

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3 onwards), or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    return raw[raw.rindex(")") + 2 :].split()


def _parents() -> dict[int, int]:
    """pid -> ppid for every live process."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            parents[int(entry.name)] = int(fields[1])
    return parents


def process_tree(root: int) -> list[int]:
    """`root` and all its live descendants (empty if `root` is gone)."""
    parents = _parents()
    if root not in parents:
        return []
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """User + system CPU time of each of `pids` (all its threads), in seconds."""
    seconds = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:  # utime and stime are fields 14 and 15 of stat
            seconds[pid] = (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return seconds


def cpu_seconds(pids: list[int]) -> float:
    """Sum of user + system CPU time of `pids` (all their threads), in seconds."""
    return sum(cpu_by_pid(pids).values())


def rss_bytes(pids: list[int]) -> int:
    """Sum of resident memory (VmRSS) of `pids`, in bytes."""
    total = 0
    for pid in pids:
        try:
            statm = Path(f"/proc/{pid}/statm").read_text().split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        total += int(statm[1]) * _PAGE
    return total


def core_times() -> list[tuple[int, int, int]]:
    """(busy, steal, total) clock ticks of each CPU since boot, from /proc/stat.

    Steal is time the hypervisor gave this virtual CPU's slot to someone else: noise.
    """
    cores = []
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            # user nice system idle iowait irq softirq steal
            ticks = [int(v) for v in line.split()[1:9]]
            idle = ticks[3] + ticks[4]
            cores.append((sum(ticks) - idle, ticks[7], sum(ticks)))
    return cores


def core_busy(
    before: list[tuple[int, int, int]], after: list[tuple[int, int, int]]
) -> list[tuple[float, float]]:
    """(busy, steal) share of each CPU between two `core_times()` readings."""
    shares = []
    for (b0, s0, t0), (b1, s1, t1) in zip(before, after, strict=True):
        total = max(t1 - t0, 1)
        shares.append(((b1 - b0) / total, (s1 - s0) / total))
    return shares


@dataclass(frozen=True, slots=True)
class TreeSample:
    """CPU seconds and resident bytes of one process tree at one moment."""

    pids: int
    cpu_s: float
    rss: int
    cpu_by_pid: dict[int, float]


def sample_tree(root: int) -> TreeSample:
    """CPU time and RSS of the process tree under `root`, read now."""
    pids = process_tree(root)
    per_pid = cpu_by_pid(pids)
    return TreeSample(
        pids=len(pids), cpu_s=sum(per_pid.values()), rss=rss_bytes(pids), cpu_by_pid=per_pid
    )
