"""`ccidkit demo`, the README's main job until the UEFI demo exists."""

import subprocess
import sys

from ccidkit.scripts.main import main


def test_demo_passes_every_check(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "demo: all checks passed" in out
    assert "FAIL" not in out
    assert "-> FF 11 96 78" in out                          # the PPS request
    assert "8 of 8 scripted faults hit the line" in out
    assert out.count("<- 00 07 0E 15") == 2                # 4 KiB echo over T=1 and over T=0


def test_demo_small_and_clean_line(capsys):
    assert main(["demo", "--size", "300", "--no-faults", "-v"]) == 0
    out = capsys.readouterr().out
    assert "clean line" in out and "scripted faults" not in out
    assert "ECHO 300 bytes each way" in out


def test_demo_as_a_command():
    proc = subprocess.run([sys.executable, "-m", "ccidkit.scripts.main", "demo", "--size", "64"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all checks passed" in proc.stdout


def test_demo_short_echo_follows_61xx_and_rejects_bad_sizes(capsys):
    assert main(["demo", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "<- 61 40" in out and "all checks passed" in out
    import pytest
    with pytest.raises(SystemExit) as e:
        main(["demo", "--size", "70000"])
    assert e.value.code == 2
