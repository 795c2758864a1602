"""The portable suite, run for real under the MicroPython unix binary."""

import ast
import os
import re

from mpstage import REPO, run_portable_suite

PORTABLE = os.path.join(REPO, "tests", "portable")


def count_portable_tests():
    n = 0
    for fn in sorted(os.listdir(PORTABLE)):
        if fn.startswith("test_") and fn.endswith(".py"):
            with open(os.path.join(PORTABLE, fn), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            n += sum(1 for node in tree.body
                     if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"))
    return n


def test_portable_suite_passes_under_micropython():
    proc = run_portable_suite()
    out = proc.stdout + proc.stderr
    m = re.search(r"^(\d+) passed, (\d+) failed$", proc.stdout, re.M)
    assert m, out
    passed, failed = int(m.group(1)), int(m.group(2))
    assert failed == 0, out
    assert passed == count_portable_tests(), out
    assert passed > 0
    assert proc.returncode == 0, out
