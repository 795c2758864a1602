"""GemPC Twin serial link: frame codec and the reader side over an
EmulatedReader (no pcscd here; tests/pcsc/test_serial_gempctwin.py runs libccid)."""

import struct

import pytest
from hypothesis import given, strategies as st

from ccidkit.core import ccid as C
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.reader import EmulatedReader
from ccidkit.emu.serial_reader import (MAX_CCID_MESSAGE, NAK_FRAME, Decoder, GemPcTwinSerial,
                                       SerialEvent, SerialLinkError, decode_frame,
                                       encode_frame, lrc)

GET_SLOT_STATUS = bytes.fromhex("65 00000000 00 07 000000")
ESCAPE_VERSION = bytes.fromhex("6B 01000000 00 01 000000 02")
ESCAPE_NOTIFY = bytes.fromhex("6B 03000000 00 02 000000 010101")
POWER_ON = bytes.fromhex("62 00000000 00 03 01 0000")


def test_encode_frame_exact_bytes():
    # 03 06 + message + XOR of everything before
    assert encode_frame(GET_SLOT_STATUS) == bytes.fromhex("03 06 65 00000000 00 07 000000 67")
    assert lrc(encode_frame(GET_SLOT_STATUS)) == 0
    assert NAK_FRAME == b"\x03\x15\x16"


def test_encode_frame_limits():
    with pytest.raises(SerialLinkError) as e:
        encode_frame(b"\x65\x00")
    assert e.value.name == "SERIAL_TRUNCATED"
    big = struct.pack("<BIBBBBB", 0x6F, 262, 0, 0, 0, 0, 0) + bytes(262)
    with pytest.raises(SerialLinkError) as e:
        encode_frame(big)
    assert e.value.name == "SERIAL_TOO_LONG" and e.value.code == 272


def test_decoder_events_of_every_kind():
    stream = (b"\x91" + b"\x50\x03" + encode_frame(GET_SLOT_STATUS) + NAK_FRAME
              + b"\x03\x15\x17" + b"\x11\x12")
    dec = Decoder()
    events = dec.feed(stream[:5]) + dec.feed(stream[5:])
    assert events == [SerialEvent("time_request", b"\x91"),
                      SerialEvent("slot_change", b"\x03"),
                      SerialEvent("ccid", GET_SLOT_STATUS),
                      SerialEvent("nak"),
                      SerialEvent("bad_lrc", b"\x03\x15\x17"),
                      SerialEvent("noise", b"\x11\x12")]


def test_decoder_bad_lrc_and_resync():
    frame = bytearray(encode_frame(GET_SLOT_STATUS))
    frame[-1] ^= 0x01
    events = Decoder().feed(bytes(frame) + encode_frame(POWER_ON))
    assert [e.kind for e in events] == ["bad_lrc", "ccid"]
    assert events[1].data == POWER_ON


def test_decoder_refuses_long_messages_from_the_header():
    head = b"\x03\x06" + struct.pack("<BIBBBBB", 0x6F, MAX_CCID_MESSAGE - 9, 0, 0, 0, 0, 0)
    events = Decoder().feed(head)
    assert events[0].kind == "too_long"
    # exactly at the limit: waits for the rest
    ok = b"\x03\x06" + struct.pack("<BIBBBBB", 0x6F, MAX_CCID_MESSAGE - 10, 0, 0, 0, 0, 0)
    dec = Decoder()
    assert dec.feed(ok) == [] and dec.pending == len(ok)


def test_decode_frame_exactly_one():
    assert decode_frame(encode_frame(POWER_ON)) == POWER_ON
    cases = [(b"", "SERIAL_TRUNCATED"), (encode_frame(POWER_ON)[:-1], "SERIAL_TRUNCATED"),
             (encode_frame(POWER_ON) * 2, "SERIAL_TRUNCATED"),
             (encode_frame(POWER_ON)[:-1] + b"\x00", "SERIAL_BAD_LRC"),
             (NAK_FRAME, "SERIAL_NOT_CCID"), (b"\x50\x02", "SERIAL_NOT_CCID")]
    for data, name in cases:
        with pytest.raises(SerialLinkError) as e:
            decode_frame(data)
        assert e.value.name == name, data


@given(st.binary(max_size=600), st.integers(min_value=1, max_value=64))
def test_decoder_never_raises_and_accounts_for_bytes(data, step):
    dec = Decoder()
    events = []
    for i in range(0, len(data), step):
        events += dec.feed(data[i:i + step])
    for e in events:
        assert e.kind in ("ccid", "nak", "slot_change", "time_request", "bad_lrc",
                          "too_long", "noise")
        if e.kind == "ccid":
            assert C.CCID_HEADER_LENGTH <= len(e.data) <= MAX_CCID_MESSAGE
    assert dec.pending <= 2 + MAX_CCID_MESSAGE + 1


@given(st.lists(st.binary(min_size=0, max_size=261), max_size=5))
def test_frames_round_trip(payloads):
    msgs = [struct.pack("<BIBBBBB", 0x6F, len(p), 0, i & 0xFF, 0, 0, 0) + p
            for i, p in enumerate(payloads)]
    stream = b"".join(encode_frame(m) for m in msgs)
    events = Decoder().feed(stream)
    assert [e.data for e in events] == msgs and all(e.kind == "ccid" for e in events)


# -- the reader side --------------------------------------------------------------------

def _answers(out):
    """Decode what the reader sent: [(kind, message)]."""
    return [(e.kind, e.data) for e in Decoder(65536).feed(out)]


def test_echo_then_answer_and_the_two_escape_probes():
    card = MiniCard()
    link = GemPcTwinSerial(EmulatedReader("gemalto-pctwin", cards={0: card}))
    got = _answers(link.receive(encode_frame(ESCAPE_VERSION)))
    assert got[0] == ("ccid", ESCAPE_VERSION)                  # the echo first
    kind, answer = got[1]
    assert kind == "ccid" and answer[0] == C.RDR_to_PC_Escape and answer[6] == 0x01
    assert C.command_status(answer[7]) == C.COMMAND_STATUS_NO_ERROR
    assert answer[10:] == b"GemTwin V1.10"
    got = _answers(link.receive(encode_frame(ESCAPE_NOTIFY)))
    assert got == [("ccid", ESCAPE_NOTIFY),
                   ("ccid", bytes.fromhex("83 00000000 00 02 01 00 00"))]
    got = _answers(link.receive(encode_frame(POWER_ON)))
    assert got[0] == ("ccid", POWER_ON)
    kind, answer = got[1]
    assert answer[0] == C.RDR_to_PC_DataBlock and answer[6] == 0x03
    assert answer[10:] == card.atr
    assert link.trace[0] == "-> 6B 01 00 00 00 00 01 00 00 00 02"


def test_damaged_frames_get_a_nak_and_noise_is_ignored():
    link = GemPcTwinSerial(EmulatedReader("gemalto-pctwin", cards={0: MiniCard()}))
    frame = bytearray(encode_frame(GET_SLOT_STATUS))
    frame[8] ^= 0x40                                   # bSeq: only the LRC tells
    assert link.receive(b"\x00\x7F" + bytes(frame)) == NAK_FRAME
    assert link.naks == 1 and link.noise == 1
    got = _answers(link.receive(encode_frame(GET_SLOT_STATUS)))
    assert got[0] == ("ccid", GET_SLOT_STATUS)
    assert got[1][1][0] == C.RDR_to_PC_SlotStatus and got[1][1][6] == 0x07


def _read_events(fd, want, timeout=10.0):
    import os
    import select
    import time
    dec = Decoder(65536)
    events = []
    deadline = time.monotonic() + timeout
    while len(events) < want:
        left = deadline - time.monotonic()
        assert left > 0, events
        r, _, _ = select.select([fd], [], [], left)
        if r:
            events += dec.feed(os.read(fd, 4096))
    return events


def test_cli_serves_a_pty_like_a_gempc_twin():
    import os
    import signal
    import subprocess
    import sys
    import tty
    ccidkit = os.path.join(os.path.dirname(sys.executable), "ccidkit")
    proc = subprocess.Popen([ccidkit, "serial-reader", "--card", "mini", "--empty"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        device = proc.stdout.readline().strip()
        assert device.startswith("/dev/pts/")
        conf = [proc.stdout.readline() for _ in range(4)][1:]
        assert conf == ['FRIENDLYNAME  "GemPCTwin serial"\n',
                        "DEVICENAME    %s:GemPCTwin\n" % device,
                        "LIBPATH       /usr/lib/pcsc/drivers/serial/libccidtwin.so\n"]
        fd = os.open(device, os.O_RDWR | os.O_NOCTTY)
        try:
            tty.setraw(fd)
            os.write(fd, encode_frame(ESCAPE_VERSION))
            echo, answer = _read_events(fd, 2)
            assert echo == SerialEvent("ccid", ESCAPE_VERSION)
            assert answer.data[10:] == b"GemTwin V1.10"
            os.write(fd, encode_frame(GET_SLOT_STATUS))
            echo, answer = _read_events(fd, 2)
            assert answer.data[0] == C.RDR_to_PC_SlotStatus
            assert C.icc_status(answer.data[7]) == C.ICC_STATUS_NOT_PRESENT
        finally:
            os.close(fd)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
