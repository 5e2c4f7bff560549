"""What machine a benchmark ran on, in words (for result files and tables), how loaded it was, and
how much CPU time each thread of this process has used (to tell threads' work from the machine's load),
and this process's memory (its resident sizes; the allocator kept from returning freed memory)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine() -> str:
    """The CPU model name and core count, e.g. "AMD EPYC 7B13 (2 cores)"."""
    name = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} cores)"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages ("unknown" where the system does not say)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except (OSError, AttributeError):
        return "unknown"


def thread_cpu_ns() -> dict:
    """CPU time (ns) of every thread of this process so far (Linux; empty elsewhere)."""
    out = {}
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return out
    for t in tasks:
        try:
            with open(f"/proc/self/task/{t}/schedstat") as fh:
                out[t] = int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def tune_allocator() -> None:
    """Keep freed memory in the process (glibc): large tensors then skip page faults on reuse."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 32)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def status_mb(field: str) -> float:
    """A memory figure of this process from /proc (VmHWM: peak resident, VmRSS: resident)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")
