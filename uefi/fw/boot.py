"""/boot.py: the dispatcher the UEFI runtime starts.

Command line (the shell's, or the line of \\ccidkit\\args.txt on the boot
volume): ``APP [ARG ...]``; no APP means ``hello``. APP names the module
``ccidkit.uefi.fw.apps.<APP with dashes as underscores>``; its
``main(argv)`` returns the status (None is 0). Then the marker line
``CCIDKIT-EXIT status=<N>`` and efi.exit(N). An uncaught exception prints
its traceback and gives 70, an unknown app 64.

An app that hands the machine over to the next boot option (efi.boot_next,
e.g. preboot-auth after a login) does so inside its ``main``: the marker
and isa-debug-exit come only when the app really ends (no next option, or
the started image returned), never before the hand-over.
"""

import sys

STATUS_UNKNOWN_APP = 64
STATUS_CRASHED = 70

# /lib first; the boot volume's root (this script's folder) not at all: its
# \ccidkit folder (args.txt) would otherwise shadow the ccidkit package.
_rest = [p for p in sys.path if p not in ("", "/", "/lib", "/lib/tests/portable")]
sys.path[:] = ["/lib", "/lib/tests/portable"] + _rest

from ccidkit.core.errors import CcidkitError  # noqa: E402  (needs sys.path above)
from ccidkit.uefi.fw import efi  # noqa: E402
from ccidkit.uefi.fw.apps import _registry  # noqa: E402  (written by the image builder)

# Everything an app can raise short of SystemExit, named (the subset allows
# no catch-all): the dispatcher reports it and carries on to the exit marker.
_CRASHES = (CcidkitError, ArithmeticError, AssertionError, AttributeError, ImportError,
            LookupError, MemoryError, NameError, NotImplementedError, OSError, RuntimeError,
            StopIteration, SyntaxError, TypeError, ValueError, KeyboardInterrupt)


def _write(text):
    sys.stdout.write(text)


def _traceback(e):
    if hasattr(sys, "print_exception"):
        sys.print_exception(e)
    else:
        _write("%s: %s\n" % (type(e).__name__, e))


def run(argv):
    app = argv[0] if argv else "hello"
    args = list(argv[1:])
    name = app.replace("-", "_")
    try:
        module = _registry.load(name)
    except _CRASHES as e:
        _traceback(e)
        return STATUS_CRASHED
    if module is None:
        _write("ccidkit: unknown app %r; apps: %s\n" % (app, ", ".join(_registry.NAMES)))
        return STATUS_UNKNOWN_APP
    try:
        status = module.main(args)
    except SystemExit as e:
        status = e.args[0] if e.args else 0
    except _CRASHES as e:
        _traceback(e)
        return STATUS_CRASHED
    if status is None:
        return 0
    if not isinstance(status, int):
        _write("ccidkit: %s returned %r, not an int\n" % (app, status))
        return STATUS_CRASHED
    return status


def main():
    status = run(sys.argv[1:])
    _write("CCIDKIT-EXIT status=%d\n" % status)
    efi.exit(status)


main()
