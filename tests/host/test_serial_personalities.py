"""The serial readers libccid's serial driver knows by name (GemPCTwin,
GemPCPinPad, GemCoreSIMPro) on the sans-I/O link, and `ccidkit serve-reader`
(no pcscd here; tests/pcsc/test_serial_*.py run libccid)."""

import os
import signal
import subprocess
import sys

import pytest

from ccidkit.core import ccid as C
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.serial_reader import (ESCAPE_LOAD_STRINGS, TIME_REQUEST, Decoder,
                                       GemPcTwinSerial, SerialEvent, SerialLinkError,
                                       SerialReaderBridge, encode_frame, make_serial_reader,
                                       personality)

ESCAPE_VERSION = bytes.fromhex("6B 01000000 00 01 000000 02")


def _escape(data, slot=0, seq=5):
    return C.PC_to_RDR_Escape.to_bytes(1, "little") + len(data).to_bytes(4, "little") + \
        bytes((slot, seq, 0, 0, 0)) + data


def test_personalities_as_libccid_describes_them():
    twin, pad, sim = (personality(n) for n in ("gempctwin", "GemPCPinPad", "GEMCORESIMPRO"))
    assert (twin["name"], pad["name"], sim["name"]) == ("GemPCTwin", "GemPCPinPad",
                                                         "GemCoreSIMPro")
    assert (twin["echo"], pad["echo"], sim["echo"]) == (True, True, False)
    assert (twin["slots"], pad["slots"], sim["slots"]) == (1, 1, 2)
    for p in (twin, pad, sim):
        ccid = p["profile"]["ccid"]
        assert ccid["dwFeatures"] == 0x00010230 and ccid["dwMaxCCIDMessageLength"] == 271
    assert pad["profile"]["ccid"]["bPINSupport"] == 0x03 and pad["profile"]["quirks"]["keypad"]
    assert twin["profile"]["ccid"]["bPINSupport"] == 0
    assert sim["profile"]["ccid"]["dwMaxDataRate"] == 500000
    with pytest.raises(SerialLinkError) as e:
        personality("GemCorePOSPro")
    assert e.value.name == "SERIAL_PERSONALITY"


def test_each_personality_answers_the_firmware_escape():
    for name, version in (("GemPCTwin", b"GemTwin V1.10"), ("GemPCPinPad", b"GemPC Pinpad V1.00"),
                          ("GemCoreSIMPro", b"GemCore SIM Pro V1.00")):
        reader, echo = make_serial_reader(name, {0: MiniCard()})
        link = GemPcTwinSerial(reader, echo=echo)
        events = Decoder().feed(link.receive(encode_frame(ESCAPE_VERSION)))
        if echo:
            assert events[0] == SerialEvent("ccid", ESCAPE_VERSION)
            events = events[1:]
        assert len(events) == 1 and events[0].data[C.CCID_HEADER_LENGTH:] == version


def test_simpro_serves_two_slots_without_echo():
    reader, echo = make_serial_reader("GemCoreSIMPro", {1: MiniCard()})
    link = SerialReaderBridge(reader).link          # echo taken from the personality
    assert link.echo is False
    status = []
    for slot in (0, 1):
        msg = bytes((C.PC_to_RDR_GetSlotStatus, 0, 0, 0, 0, slot, slot, 0, 0, 0))
        (ev,) = Decoder().feed(link.receive(encode_frame(msg)))
        assert ev.data[5] == slot
        status.append(C.icc_status(ev.data[7]))
    assert status == [C.ICC_STATUS_NOT_PRESENT, C.ICC_STATUS_PRESENT_INACTIVE]


def test_pinpad_display_strings_and_their_echo():
    reader, _ = make_serial_reader("GemPCPinPad", {0: MiniCard()})
    link = SerialReaderBridge(reader).link
    strings = [b"Enter PIN", b"New PIN"]
    body = b"".join(s + b" " * (16 - len(s)) for s in strings)
    msg = _escape(ESCAPE_LOAD_STRINGS + body)
    events = Decoder().feed(link.receive(encode_frame(msg)))
    assert link.display_strings == ["Enter PIN", "New PIN"]
    # answered with success, and echoed with that answer (libccid 1.5.2 reads the
    # echo into the answer's 20-byte buffer)
    assert [e.kind for e in events] == ["ccid", "ccid"] and events[0] == events[1]
    answer = events[1].data
    assert answer[0] == C.RDR_to_PC_Escape and answer[6] == 5
    assert C.command_status(answer[7]) == C.COMMAND_STATUS_NO_ERROR
    # the GemPC Twin has no display: the same Escape goes to the reader, which refuses it
    twin, _ = make_serial_reader("GemPCTwin", {0: MiniCard()})
    tlink = SerialReaderBridge(twin).link
    echo, answer = Decoder().feed(tlink.receive(encode_frame(msg)))
    assert echo.data == msg and C.command_status(answer.data[7]) == C.COMMAND_STATUS_FAILED
    assert tlink.display_strings == []


def test_time_extensions_become_time_request_bytes():
    reader, _ = make_serial_reader("GemPCPinPad", {0: MiniCard()})
    link = SerialReaderBridge(reader).link
    power_on = bytes.fromhex("62 00000000 00 03 01 0000")
    Decoder().feed(link.receive(encode_frame(power_on)))
    reader.keypad(0, "1234")
    # PC_to_RDR_Secure, PIN verification: bTimeOut 30, ASCII at byte 0, 8-byte block
    pin_struct = bytes((30, 0x82, 0x08, 0x00, 0x08, 0x04, 0x02, 0x01, 0x09, 0x04, 0x00,
                        0x00, 0x00, 0x00)) + bytes.fromhex("0020000108") + b"\xFF" * 8
    body = b"\x00" + pin_struct
    secure = bytes((C.PC_to_RDR_Secure,)) + len(body).to_bytes(4, "little") + \
        bytes((0, 4, 0, 0, 0)) + body
    out = link.receive(encode_frame(secure))
    events = Decoder().feed(out)
    kinds = [e.kind for e in events]
    # echo, the keypad time as time-request bytes, then the one answer frame
    assert kinds[0] == "ccid" and kinds[-1] == "ccid"
    assert set(kinds[1:-1]) == {"time_request"} and len(kinds) > 2
    assert all(e.data == bytes((TIME_REQUEST,)) for e in events[1:-1])
    assert events[-1].data[0] == C.RDR_to_PC_DataBlock
    assert C.command_status(events[-1].data[7]) != C.COMMAND_STATUS_TIME_EXTENSION
    assert "<- time request" in link.trace


def test_cli_serve_reader_simpro_on_a_pty_link(tmp_path):
    ccidkit = os.path.join(os.path.dirname(sys.executable), "ccidkit")
    link = str(tmp_path / "simpro")
    proc = subprocess.Popen([ccidkit, "serve-reader", "--as", "gemcoresimpro", "--pty", link,
                             "--card", "1:mini", "--exit-after", "60"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        device = proc.stdout.readline().strip()
        assert device == link and os.path.islink(link)
        conf = [proc.stdout.readline() for _ in range(4)][1:]
        assert conf == ['FRIENDLYNAME  "GemCoreSIMPro serial"\n',
                        "DEVICENAME    %s:GemCoreSIMPro\n" % link,
                        "LIBPATH       /usr/lib/pcsc/drivers/serial/libccidtwin.so\n"]
        import select
        import tty
        fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
        try:
            tty.setraw(fd)
            msg = bytes((C.PC_to_RDR_GetSlotStatus, 0, 0, 0, 0, 1, 9, 0, 0, 0))
            os.write(fd, encode_frame(msg))
            dec, events = Decoder(), []
            for _ in range(50):
                if events:
                    break
                r, _, _ = select.select([fd], [], [], 0.2)
                if r:
                    events += dec.feed(os.read(fd, 4096))
            # no echo: the first frame is the answer, for slot 1 which holds the card
            assert events[0].data[0] == C.RDR_to_PC_SlotStatus and events[0].data[5] == 1
            assert C.icc_status(events[0].data[7]) == C.ICC_STATUS_PRESENT_INACTIVE
        finally:
            os.close(fd)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
        assert not os.path.lexists(link)              # the link goes with the reader
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def test_cli_refuses_unknown_names_slots_and_colons(tmp_path):
    ccidkit = os.path.join(os.path.dirname(sys.executable), "ccidkit")
    for argv in (["--as", "GemCorePOSPro"], ["--card", "1:mini"],
                 ["--pty", str(tmp_path / "a:b")]):
        done = subprocess.run([ccidkit, "serial-reader"] + argv + ["--exit-after", "1"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (argv, done.stderr)
        assert "serve-reader: error" in done.stderr
