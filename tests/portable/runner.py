"""Runs the portable test suite without pytest (MicroPython, also inside UEFI).

    micropython tests/portable/runner.py [MODULE ...]

Imports every test_*.py module of this folder (or the given ones), calls each
function named test_* in source order, prints one line per failure and
finally ``N passed, M failed``. Exits 1 when anything failed.
"""

import sys

try:
    import gc
except ImportError:
    gc = None


def discover(folder):
    try:
        import _manifest  # written by the UEFI image builder
        return list(_manifest.MODULES)
    except ImportError:
        pass
    import os
    names = []
    for name in os.listdir(folder):
        if name.startswith("test_") and (name.endswith(".py") or name.endswith(".mpy")):
            names.append(name.rsplit(".", 1)[0])
    names.sort()
    return names


def tests_of(module):
    found = []
    for name in dir(module):
        if name.startswith("test_"):
            obj = getattr(module, name)
            if callable(obj):
                found.append(name)
    found.sort()
    return found


def run(modules, verbose=False, out=print):
    passed = 0
    failed = 0
    for modname in modules:
        mod = __import__(modname)
        for name in tests_of(mod):
            try:
                getattr(mod, name)()
                passed += 1
                if verbose:
                    out("PASS %s.%s" % (modname, name))
            except Exception as e:  # a test runner reports every failure and goes on
                failed += 1
                out("FAIL %s.%s: %s: %s" % (modname, name, type(e).__name__, e))
                if hasattr(sys, "print_exception"):
                    sys.print_exception(e)
            if gc:
                gc.collect()
    out("%d passed, %d failed" % (passed, failed))
    return passed, failed


def main(argv):
    folder = argv[0].rsplit("/", 1)[0] if "/" in argv[0] else "."
    if folder not in sys.path:
        sys.path.insert(0, folder)
    args = argv[1:]
    verbose = "-v" in args
    args = [a for a in args if a != "-v"]
    modules = args or discover(folder)
    passed, failed = run(modules, verbose)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
