"""core-tests: the portable core test suite, run inside UEFI.

    core-tests [-v] [MODULE ...]   the suite (default: every module the image
                                   lists in _manifest.MODULES)
    core-tests --exit N            run nothing and return N (lets the host
                                   check that an app's status reaches it)

The very test functions pytest runs on CPython, through
tests/portable/runner.py (embedded as /lib/tests/portable/runner.mpy). One
line per failure, then ``N passed, M failed``; status 0 only when nothing
failed (and something ran), 1 otherwise, 2 for bad arguments.
"""

import sys

import runner  # /lib/tests/portable/runner.mpy; the firmware puts that folder on sys.path

PORTABLE_DIR = "/lib/tests/portable"


def _out(line):
    sys.stdout.write(line + "\n")


def main(argv):
    if argv[:1] == ["--exit"]:
        if len(argv) != 2 or not argv[1].isdigit() or int(argv[1]) > 255:
            _out("usage: core-tests --exit N   (0 <= N <= 255)")
            return 2
        return int(argv[1])
    verbose = "-v" in argv
    modules = [a for a in argv if a != "-v"] or runner.discover(PORTABLE_DIR)
    _out("core-tests: %d modules: %s" % (len(modules), " ".join(modules)))
    passed, failed = runner.run(modules, verbose, _out)
    if failed or not passed:
        return 1
    return 0
