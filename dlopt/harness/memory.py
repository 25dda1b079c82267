"""Memory of the current process: resident set now and its peak (high-water mark).

The peak comes from `VmHWM` in /proc/self/status on Linux. `ru_maxrss` is not used there: the
kernel carries the pre-exec high-water mark into it, so a worker started from a large parent
would report the parent's peak. Elsewhere `ru_maxrss` is the fallback.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import psutil

_STATUS = Path("/proc/self/status")


def rss_bytes() -> int:
    """Resident set size of this process now."""
    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int:
    """Highest resident set size this process has had so far."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
