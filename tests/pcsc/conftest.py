"""Tests that start a real, private pcscd (emu/pcscd.py): one per test module.

They are skipped where the machine cannot run one (no pcscd/vpcd installed,
no namespaces, no pyscard)."""

import pytest

from ccidkit.emu.pcscd import pcscd_vpcd  # noqa: F401  (the module-scoped fixture)

pytest.importorskip("smartcard", reason="pyscard is not installed")
