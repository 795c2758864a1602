"""libccid's own serial driver (libccidtwin.so) drives the emulated GemPC Twin
on a pty, inside a private pcscd; pyscard judges through it. libccid runs its
own T=1 at TPDU level against the card (IFS request, chaining, R-blocks)."""

import time

import pytest

from ccidkit.core import ccid as C
from ccidkit.emu.card.minicard import AID, FID_EF_1K, MiniCard, ef_content
from ccidkit.emu.pcscd import private_pcscd, serial_reader, unavailable_reason
from ccidkit.emu.reader import EmulatedReader
from ccidkit.emu.serial_reader import SerialReaderBridge

pytest.importorskip("smartcard")
from smartcard import scard  # noqa: E402
from smartcard.System import readers  # noqa: E402

READER = "GemPCTwin serial 00 00"
WAIT = 15.0


@pytest.fixture(scope="module")
def twin():
    reason = unavailable_reason()
    if reason:
        pytest.skip("private pcscd: " + reason)
    card = MiniCard()
    reader = EmulatedReader("gemalto-pctwin", cards={0: card})
    # the pty must exist before pcscd reads reader.conf
    with SerialReaderBridge(reader) as bridge:
        with private_pcscd([serial_reader(bridge.device)]) as daemon:
            daemon.activate()
            bridge.card = card
            bridge.daemon = daemon
            _wait_state(scard.SCARD_STATE_PRESENT)
            yield bridge


def _state():
    hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert hresult == scard.SCARD_S_SUCCESS
    try:
        hresult, states = scard.SCardGetStatusChange(ctx, 0, [(READER, scard.SCARD_STATE_UNAWARE)])
        assert hresult == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hresult)
        return states[0][1], bytes(states[0][2])
    finally:
        scard.SCardReleaseContext(ctx)


def _wait_state(flag):
    deadline = time.monotonic() + WAIT
    while True:
        try:
            state, atr = _state()
        except AssertionError:
            state, atr = 0, b""            # the reader is not listed yet
        if state & flag:
            return state, atr
        assert time.monotonic() < deadline, "state %#x" % state
        time.sleep(0.05)


def _connect():
    for r in readers():
        if str(r) == READER:
            conn = r.createConnection()
            conn.connect()
            return conn
    raise AssertionError("no %s in %r" % (READER, readers()))


def _tx(conn, apdu):
    data, sw1, sw2 = conn.transmit(list(apdu))
    return bytes(data), (sw1 << 8) | sw2


def test_libccid_opens_the_serial_reader(twin):
    log = twin.daemon.read_log()
    assert "Firmware: GemTwin V1.10" in log
    assert READER in [str(r) for r in readers()]
    # both probes went through the link: the version escape and the notification mode
    assert any(line.startswith("-> 6B 01 00 00 00") and line.endswith(" 02")
               for line in twin.link.trace)
    assert any(line.endswith("01 01 01") for line in twin.link.trace)
    assert twin.link.naks == 0


def test_t1_apdus_select_and_read_binary(twin):
    _, atr = _state()
    assert atr == twin.card.atr
    conn = _connect()
    try:
        from smartcard.CardConnection import CardConnection
        assert conn.getProtocol() == CardConnection.T1_protocol
        data, sw = _tx(conn, b"\x00\xA4\x04\x00" + bytes((len(AID),)) + AID + b"\x00")
        assert sw == 0x9000 and AID in data
        assert _tx(conn, bytes.fromhex("00A4000C022F00")) == (b"", 0x9000)
        got = b""
        while len(got) < 1024:
            n = min(0xFF, 1024 - len(got))
            data, sw = _tx(conn, bytes((0x00, 0xB0, len(got) >> 8, len(got) & 0xFF, n)))
            assert sw == 0x9000 and len(data) == n
            got += data
        assert got == ef_content(FID_EF_1K)
    finally:
        conn.disconnect()
        conn.release()
    # what went over the wire were T=1 blocks in XfrBlock messages, not APDUs
    blocks = [bytes.fromhex(line[3:])[C.CCID_HEADER_LENGTH:] for line in twin.link.trace
              if line.startswith("-> 6F")]
    select = [b for b in blocks if b[3:8] == b"\x00\xA4\x04\x00\x09"]
    assert select, blocks[:4]
    nad, pcb, length = select[0][:3]
    # ISO/IEC 7816-3 §11.3: an I-block (b8 = 0), INF = the APDU, one LRC byte after it
    assert nad == 0 and pcb & 0x80 == 0 and length == len(select[0]) - 4
    assert twin.card.count(0xB0) >= 5


def test_extended_echo_4k_with_t1_chaining(twin):
    payload = bytes((i * 29 + 3) & 0xFF for i in range(4096))
    conn = _connect()
    try:
        before = len(twin.link.trace)
        data, sw = _tx(conn, b"\x80\xEE\x00\x00\x00\x10\x00" + payload + b"\x00\x00")
        assert sw == 0x9000 and data == payload
    finally:
        conn.disconnect()
        conn.release()
    # 4 KiB each way needs many I-blocks: at most 254 information bytes each
    blocks = [line for line in twin.link.trace[before:] if line.startswith("-> 6F")]
    assert len(blocks) >= 2 * 4096 // 254


def test_removal_and_insertion_seen_through_slot_status(twin):
    reader = twin.reader
    reader.remove_card(0)
    _wait_state(scard.SCARD_STATE_EMPTY)
    reader.insert_card(0, twin.card)
    _, atr = _wait_state(scard.SCARD_STATE_PRESENT)
    assert atr == twin.card.atr
    conn = _connect()
    try:
        assert _tx(conn, bytes.fromhex("80EE0000020A0B00")) == (b"\x0A\x0B", 0x9000)
    finally:
        conn.disconnect()
        conn.release()
    # libccid learnt both changes from GetSlotStatus polls
    assert any(line.startswith("-> 65") for line in twin.link.trace)
