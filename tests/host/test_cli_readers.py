"""`ccidkit readers` and `ccidkit apdu`: pcsc-lite names (the 96 slots of a SIM bank),
cards per slot, real-reader path failing clearly, scriptor-like traces with PIN data hidden."""

import io
import json
import os
import subprocess
import sys

import pytest

from ccidkit.scripts.main import main
from ccidkit.scripts.cmd_apdu import mask_command
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.cards import make_card

CCIDKIT = os.path.join(os.path.dirname(sys.executable), "ccidkit")
MINI_ATR = " ".join("%02X" % b for b in MiniCard().atr)
OCTSIM = "sysmocom - s.f.m.c. GmbH sysmoOCTSIM 0.2.40-172b"


def _skip_if_real_readers():
    from ccidkit.core.host.pyusb_transport import find_readers
    if find_readers():
        pytest.skip("this machine has real CCID readers")


def test_simbank_96_json_names_as_pcsc_lite_numbers_them():
    p = subprocess.run([CCIDKIT, "readers", "--emulated", "sysmosimbank-96", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    items = json.loads(p.stdout)
    assert len(items) == 96
    expected = ["%s (SIMBANK-%02d) %02X %02X" % (OCTSIM, r, r, s)
                for r in range(12) for s in range(8)]
    assert [i["name"] for i in items] == expected
    assert [i["index"] for i in items] == list(range(96))
    assert [(i["reader_number"], i["slot"]) for i in items] == \
        [(r, s) for r in range(12) for s in range(8)]
    assert set(i["vid"] + ":" + i["pid"] for i in items) == {"1D50:6141"}
    assert all(i["card_present"] and i["atr"] == MINI_ATR for i in items)
    assert all(i["emulated"] and i["profile"] == "sysmooctsim" for i in items)
    assert len(set(i["bus_path"] for i in items)) == 12


def test_text_listing_with_cards_per_slot(capsys):
    assert main(["readers", "--emulated", "gemalto-pctwin", "--emulated", "sysmooctsim",
                 "--card", "usim", "--card", "3:none", "--card", "7:mini"]) == 0
    out = capsys.readouterr().out.splitlines()
    usim_atr = " ".join("%02X" % b for b in make_card("usim").atr)
    assert out[0].startswith("0: Gemplus USB SmartCard Reader (") and out[0].endswith(" 00 00")
    assert out[1] == "   card: ATR " + usim_atr
    assert len(out) == 18
    octo = out[2::2]
    assert [x.split(") ")[-1] for x in octo] == ["01 %02X" % s for s in range(8)]
    cards = out[3::2]
    assert cards[3] == "   card: none"
    assert cards[7] == "   card: ATR " + MINI_ATR
    assert cards[0] == cards[6] == "   card: ATR " + usim_atr


def test_real_readers_path_fails_clearly(capsys):
    # no USB here: libusb (through pyusb) finds no reader and says so
    _skip_if_real_readers()
    assert main(["readers"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ccidkit readers: no reader: ")
    assert "libusb" in err and "--emulated" in err
    assert main(["readers", "--card", "mini"]) == 2
    assert "--card needs --emulated" in capsys.readouterr().err
    assert main(["apdu", "00 A4 00 00"]) == 1
    assert "libusb" in capsys.readouterr().err


def test_usage_errors(capsys):
    assert main(["readers", "--emulated", "no-such"]) == 2
    err = capsys.readouterr().err
    assert "unknown reader profile 'no-such'" in err and "gemalto-pctwin" in err
    assert main(["readers", "--emulated", "cherry-st", "--card", "nocard"]) == 2
    assert "nocard" in capsys.readouterr().err
    assert main(["apdu", "--emulated", "cherry-st", "00 A4 0"]) == 2
    assert "not an APDU" in capsys.readouterr().err
    assert main(["apdu", "--emulated", "cherry-st", "--reader", "4", "00 A4 00 00"]) == 2
    assert "no reader number 4" in capsys.readouterr().err
    assert main(["apdu", "--emulated", "cherry-st"]) == 2
    assert main(["readers", "--profiles"]) == 0
    profiles = capsys.readouterr().out.split()
    assert "sysmosimbank-96" in profiles and "gemalto-pctwin" in profiles


def test_apdu_trace_and_verify_masked(capsys):
    assert main(["apdu", "--emulated", "gemalto-pctwin", "--card", "usim",
                 "A0 A4 00 00 02 3F 00", "A0C0000016",
                 "A0 20 00 01 08 31 32 33 34 FF FF FF FF",
                 "00 20 00 01 08 30 30 30 30 FF FF FF FF"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Using reader: Gemplus USB SmartCard Reader (")
    assert out[1] == "Using T=0 protocol"
    assert out[2] == "ATR: " + " ".join("%02X" % b for b in make_card("usim").atr)
    assert out[3:5] == ["-> A0 A4 00 00 02 3F 00", "<- 9F 16"]
    assert out[5] == "-> A0 C0 00 00 16"
    assert out[6].startswith("<- ") and out[6].endswith(" 90 00") and len(out[6].split()) == 25
    assert out[7] == "-> A0 20 00 01 08 ** ** ** ** ** ** ** **"
    assert out[8] == "<- 98 08"        # the PIN is disabled: CHV status contradiction
    assert out[9] == "-> 00 20 00 01 08 ** ** ** ** ** ** ** **"
    assert out[10] == "<- 90 00"
    text = "\n".join(out)
    assert "31 32 33 34" not in text and "30 30 30 30" not in text


def test_apdu_from_stdin_reset_show_pin_and_explain(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(
        "# select the MiniCard application\n"
        "00 A4 04 00 09 F0 63 63 69 64 6B 69 74 01 00\n\n"
        "00 C0 00 00 18   # the FCI\n"
        "reset\n"
        "00 20 00 00 04 31 32 33 34\n"))
    assert main(["apdu", "--emulated", "gemalto-pctwin", "--reader", "Gemplus",
                 "--show-pin", "--explain", "-"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[3] == "-> 00 A4 04 00 09 F0 63 63 69 64 6B 69 74 01 00"
    assert out[4] == "<- 61 18"
    assert out[5].startswith("   61 18: ")
    assert out[6] == "-> 00 C0 00 00 18"
    assert out[7] == "<- 6F 16 84 09 F0 63 63 69 64 6B 69 74 01 A5 09 50 07 63 63 69 64 6B 69 74 90 00"
    assert out[9] == "> reset: ATR " + MINI_ATR
    assert out[10] == "-> 00 20 00 00 04 31 32 33 34"
    assert out[11].startswith("<- ")


def test_apdu_card_missing_is_an_error(capsys):
    assert main(["apdu", "--emulated", "gemalto-pctwin", "--card", "none", "00 A4 00 00"]) == 1
    assert "SCARD_E_NO_SMARTCARD" in capsys.readouterr().err


def test_mask_command():
    assert mask_command(bytes.fromhex("0020000108313233344FFFFFFF")) == \
        "00 20 00 01 08 ** ** ** ** ** ** ** **"
    # extended length: header and the three length bytes stay
    assert mask_command(bytes.fromhex("00240001000004313233343535")) == \
        "00 24 00 01 00 00 04 ** ** ** ** ** **"
    assert mask_command(bytes.fromhex("002C000110" + "31" * 16)).count("**") == 16
    for ins in (0x26, 0x28, 0x21, 0x25, 0x2D):
        assert "**" in mask_command(bytes([0xA0, ins, 0, 1, 2, 0x31, 0x32]))
    assert mask_command(bytes.fromhex("0020000100")) == "00 20 00 01 00"   # no data: nothing to hide
    assert mask_command(bytes.fromhex("00A4000002 3F00".replace(" ", ""))) == "00 A4 00 00 02 3F 00"
    assert mask_command(bytes.fromhex("002000010431323334"), show_pin=True) == \
        "00 20 00 01 04 31 32 33 34"


from hypothesis import given, strategies as st


@given(st.binary(max_size=300), st.booleans())
def test_mask_command_any_bytes(data, show):
    text = mask_command(data, show)
    assert len(text.split()) == len(data)
    if not show and len(data) > 7 and data[1] in (0x20, 0x24, 0x2C):
        assert text.split()[7:] == ["**"] * (len(data) - 7)
