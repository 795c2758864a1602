"""Helpers for the portable tests: the same test functions run under pytest
(CPython) and under tests/portable/runner.py (MicroPython, also inside UEFI).

Portable tests are plain functions named test_* with plain asserts; no
fixtures, no parametrize (loop inside the test), no dict-order assumptions.
"""

import binascii


def h(text):
    """Bytes from spaced hex: h("00 A4 04 00")."""
    return binascii.unhexlify(text.replace(" ", "").replace("\n", ""))


class raises:
    """Context manager: ``with raises(T1Error) as r: ...``; r.value is the exception."""

    def __init__(self, exc_type, match=None):
        self.exc_type = exc_type
        self.match = match
        self.value = None

    def __enter__(self):
        return self

    def __exit__(self, etype, evalue, tb):
        if etype is None:
            raise AssertionError("did not raise " + self.exc_type.__name__)
        if not issubclass(etype, self.exc_type):
            return False
        if self.match is not None and self.match not in str(evalue):
            raise AssertionError("%r does not contain %r" % (str(evalue), self.match))
        self.value = evalue
        return True
