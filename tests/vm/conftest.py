"""VM tests: each boots QEMU (TCG) through the ccidkit pytest plugin's fixtures.

Every test here carries the ``vm`` marker (``-m "not vm"`` leaves them out).
Boots are expensive (several seconds of a whole core each), so scenarios are
grouped into few boots; the plugin runs one VM at a time.
"""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "host"))   # mpstage


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.fspath).startswith(HERE + os.sep):
            item.add_marker(pytest.mark.vm)


@pytest.fixture(scope="session")
def esp_dir(uefi_image):
    from ccidkit.emu.qemu import resolve_esp
    return resolve_esp(uefi_image)


@pytest.fixture
def ccidkit_cli():
    """Run the real `ccidkit` command line in a subprocess (bounded)."""

    def run(*argv, timeout=900):
        return subprocess.run([sys.executable, "-m", "ccidkit.scripts.main"] + list(argv),
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    return run
