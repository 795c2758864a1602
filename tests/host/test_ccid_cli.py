"""`ccidkit ccid descriptor` / `ccidkit ccid decode`: human and JSON output, exit statuses."""

import json
import os
import subprocess
import sys

from ccidkit.scripts.main import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

QEMU = ("36 21 1001 00 07 01000000 A00F0000 00000100 00 80250000 00C20100 00"
        " FE000000 00000000 00000000 FE040100 12000100 FF FF 0000 01 01")
# configuration: interface 0 class 0B, the class descriptor, three endpoints
QEMU_CONFIG = ("09 02 5D00 01 01 00 80 32  09 04 00 00 03 0B 00 00 00  " + QEMU +
               "  07 05 81 03 4000 FF  07 05 82 02 4000 00  07 05 03 02 4000 00")


def test_descriptor_human(capsys):
    assert main(["ccid", "descriptor"] + QEMU.split()) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "CCID class descriptor"
    assert " dwFeatures: 0x000104FE" in out
    assert "  00010000 TPDU level exchange" in out
    assert "  00000080 automatic PPS by the CCID from the active parameters" in out
    assert " dwMaxCCIDMessageLength: 65554 bytes" in out
    assert " bMaxCCIDBusySlots: 1" in out and not [x for x in out if "warning" in x]


def test_descriptor_json_from_a_configuration(capsys):
    assert main(["ccid", "descriptor", "--json", QEMU_CONFIG.replace(" ", "")]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["dwFeatures"] == 0x000104FE and d["exchange_level"] == "TPDU"
    assert (d["dwMaxIFSD"], d["dwMaxCCIDMessageLength"], d["bPINSupport"],
            d["bMaxCCIDBusySlots"]) == (254, 65554, 1, 1)
    assert d["protocols"] == ["T=0"] and d["bInterfaceNumber"] == 0
    assert [e["bEndpointAddress"] for e in d["endpoints"]] == [0x81, 0x82, 0x03]
    assert "auto_pps_active" in d["features"] and "clock_stop" not in d["features"]
    assert main(["ccid", "descriptor", "--json", "--all", QEMU_CONFIG]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


def test_descriptor_errors(capsys):
    assert main(["ccid", "descriptor", QEMU[:41]]) == 1
    assert "TRUNCATED" in capsys.readouterr().err
    assert main(["ccid", "descriptor", "09 02 1200 01 01 00 80 32 09 04 00 00 00 03 00 00 00"]) == 1
    assert "NO_CCID_INTERFACE" in capsys.readouterr().err
    assert main(["ccid", "descriptor", "3621xyz"]) == 2
    assert main(["ccid", "descriptor"]) == 2
    assert main(["ccid"]) == 2


def test_decode_messages(capsys):
    assert main(["ccid", "decode", "6F", "05000000", "00", "01", "04", "0000", "00A4040000"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "PC_to_RDR_XfrBlock (0x6F)"
    assert " bBWI: 4" in out and " abData: 00 A4 04 00 00" in out
    assert main(["ccid", "decode", "--json", "82 07000000 00 02 00 00 01 1110004D002000"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["name"] == "RDR_to_PC_Parameters" and d["bProtocolNum"] == 1
    assert d["abProtocolDataStructure"]["bIFSC"] == 0x20
    assert d["abProtocolDataStructure"]["bmWaitingIntegersT1"] == 0x4D
    assert d["bmCommandStatus"] == 0 and "error" not in d
    assert main(["ccid", "decode", "--json", "80 00000000 00 03 41 FE 00"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["error"] == "ICC_MUTE" and d["bmICCStatus"] == 1
    assert main(["ccid", "decode", "--json", "--slots", "2", "50 0E"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["slots"] == [{"slot": 0, "present": False, "changed": True},
                          {"slot": 1, "present": True, "changed": True}]


def test_decode_hides_pins_unless_asked(capsys):
    verify = "6F 0D000000 00 01 00 0000 0020008108 31323334FFFFFFFF"
    assert main(["ccid", "decode", verify]) == 0
    assert "31 32 33 34" not in capsys.readouterr().out
    assert main(["ccid", "decode", "--json", verify]) == 0
    assert "31323334" not in capsys.readouterr().out
    assert main(["ccid", "decode", "--show-pin", verify]) == 0
    assert "31 32 33 34" in capsys.readouterr().out


def test_decode_errors(capsys):
    assert main(["ccid", "decode", "80 FFFFFFFF 00 01 00 00 00"]) == 1
    assert "TOO_LONG" in capsys.readouterr().err
    assert main(["ccid", "decode", "--max-length", "12", "80 03000000 00 01 00 00 00 010203"]) == 1
    assert "TOO_LONG" in capsys.readouterr().err
    assert main(["ccid", "decode", "6F 05000000 00 01 00 0000 00A4"]) == 1
    assert "TRUNCATED" in capsys.readouterr().err
    assert main(["ccid", "decode", "--slots", "0", "50 03"]) == 2
    assert main(["ccid", "decode", "-", "50"]) == 2


def test_decode_from_stdin_in_a_subprocess():
    exe = os.path.join(os.path.dirname(sys.executable), "ccidkit")
    proc = subprocess.run([exe, "ccid", "decode", "--json", "-"], cwd=REPO,
                          input="51 00 07 01\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert (d["name"], d["bSeq"], d["bHardwareErrorCode"]) == ("RDR_to_PC_HardwareError", 7, 1)
