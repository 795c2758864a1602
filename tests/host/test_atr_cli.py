"""`ccidkit atr`: explanation, --json, stdin mode, exit statuses."""

import io
import json
import os
import subprocess
import sys

import pytest

from ccidkit.scripts.main import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
T1_CARD = "3B DC 96 FF 81 11 FE 80 31 C8 54 43 56 35 07 73 FF A1 C0 3C"
INVERSE_LINE = "03 4B FF 1B FA 75 BE 41 FF FF FF B5 FF CF F6 FF"


def test_explain_from_many_arguments(capsys):
    assert main(["atr"] + T1_CARD.split()) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "ATR: " + T1_CARD
    assert "TA3 = FE  IFSC = 254 (T=1)" in out
    assert "TCK = 3C  correct checksum" in out
    assert [x for x in out if x.startswith("TA1 = 96") and "250000 bit/s at 4 MHz" in x]


def test_explain_one_argument_and_clock(capsys):
    assert main(["atr", "--clock", "5", T1_CARD.replace(" ", ":")]) == 0
    out = capsys.readouterr().out
    assert "312500 bit/s at 5 MHz" in out and "250000" not in out


def test_json(capsys):
    assert main(["atr", "--json", T1_CARD.replace(" ", "")]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["atr"] == T1_CARD.replace(" ", "")
    assert (d["fi"], d["di"], d["ifsc"], d["tck_ok"]) == (512, 32, 254, True)
    assert d["protocols"] == [1] and d["convention"] == "direct" and d["ts"] == "3B"
    assert d["clock_hz"] == 4000000 and d["baud_rate"] == 250000
    for key in ("fmax_mhz", "n", "specific_mode", "bwi", "cwi", "edc", "wi", "clock_stop",
                "class", "historical", "historical_decoded", "tck", "warnings"):
        assert key in d


def test_json_inverse_line(capsys):
    assert main(["atr", "--json"] + INVERSE_LINE.split()) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["ts"] == "3F" and d["convention"] == "inverse" and d["protocols"] == [0]
    assert d["historical"] == "27A051827D00000052000C9000" and d["tck_ok"] is None


def test_stdin_json_lines(capsys, monkeypatch):
    text = "%s\n\n  \nnot hex\n3A 00\n%s\n" % (T1_CARD, INVERSE_LINE)
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    assert main(["atr", "-"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    objs = [json.loads(x) for x in lines]
    assert objs[0]["ifsc"] == 254 and "error" not in objs[0]
    assert objs[1]["input"] == "not hex" and "ATR_NOT_HEX" in objs[1]["error"]
    assert "ATR_BAD_TS" in objs[2]["error"]
    assert objs[3]["ts"] == "3F"


def test_stdin_all_good_exits_0(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("3B 00\n3B 02 10 50\n"))
    assert main(["atr", "-"]) == 0
    objs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [o["atr"] for o in objs] == ["3B00", "3B021050"]


def test_unparsable_exit_1(capsys):
    assert main(["atr", "3A", "00"]) == 1
    err = capsys.readouterr().err
    assert "ATR_BAD_TS" in err and "3A" in err
    assert main(["atr", "3B0"]) == 1
    assert "odd number of hex digits" in capsys.readouterr().err


def test_warnings_still_exit_0(capsys):
    assert main(["atr", "3B DC 96 FF"]) == 0
    assert "Warning: truncated: TD1 missing" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys):
    assert main(["atr"]) == 2
    assert "give an ATR" in capsys.readouterr().err
    assert main(["atr", "-", "3B"]) == 2
    assert main(["atr", "--clock", "0", "3B00"]) == 2
    assert main(["atr", "--clock", "nan", "3B00"]) == 2
    with pytest.raises(SystemExit) as e:
        main(["atr", "--clock", "fast", "3B00"])
    assert e.value.code == 2


def test_subprocess():
    exe = os.path.join(REPO, ".venv", "bin", "ccidkit")
    proc = subprocess.run([exe, "atr", "-"], input=T1_CARD + "\nxyz\n", capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    first, second = [json.loads(x) for x in proc.stdout.splitlines()]
    assert first["fi"] == 512 and first["tck_ok"] is True
    assert second["input"] == "xyz" and "error" in second
    proc = subprocess.run([exe, "atr"] + T1_CARD.split(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("ATR: " + T1_CARD + "\n")
