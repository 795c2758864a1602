"""`ccidkit pyscard-run`: run a pyscard script over ccidkit's driver, unchanged.

    ccidkit pyscard-run script.py ARGS...                       # real readers (libusb)
    ccidkit pyscard-run --emulated gemalto-pctwin --card usim usim_read.py
    ccidkit pyscard-run --emulated sysmosimbank-96 --card usim bank_test.py

For the time of the run ``import smartcard`` gives ccidkit's pyscard-
compatible subset (ccidkit.core.host.pyscard_shim) over the readers chosen
here; an installed pyscard is neither used nor changed. The script runs as
``__main__`` with ``sys.argv`` = [script, ARGS...] and its folder first on
``sys.path``, as ``python script.py ARGS`` would run it.

Exit status: the script's own (0 when it ends normally), 2 for a usage error
(unknown profile or card, no such script).
"""

import argparse
import os
import runpy
import sys

from ccidkit.core.host import reader_options as ro
from ccidkit.core.host import shim_loader


def register(sub):
    p = sub.add_parser("pyscard-run", help="run a pyscard script over ccidkit's readers",
                       description="Run a Python script written for pyscard against real "
                                   "readers or emulated ones (--emulated), through "
                                   "ccidkit's pyscard-compatible module.")
    ro.add_reader_arguments(p)
    p.add_argument("script", metavar="SCRIPT.py", help="the pyscard script")
    p.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS",
                   help="arguments for the script")
    p.set_defaults(func=run)


def _exit_status(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write("%s\n" % (code,))
    return 1


def run(args):
    script = args.script
    if not os.path.isfile(script):
        sys.stderr.write("ccidkit pyscard-run: no script %r\n" % script)
        return 2
    try:
        mgr = ro.open_manager(args)
        if not args.emulated and not ro.reader_names(mgr):
            sys.stderr.write("ccidkit pyscard-run: warning: %s\n" % ro.no_readers_error(mgr).message)
    except ro.ReaderOptionsError as e:
        sys.stderr.write("ccidkit pyscard-run: %s\n" % e.message)
        return 2
    saved_argv = sys.argv
    saved_path = list(sys.path)
    sys.argv = [script] + list(args.script_args)
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    shim_loader.activate(mgr)
    try:
        runpy.run_path(script, run_name="__main__")
        status = 0
    except SystemExit as e:
        status = _exit_status(e.code)
    finally:
        shim_loader.deactivate()
        sys.argv = saved_argv
        sys.path[:] = saved_path
        sys.stdout.flush()
    return status
