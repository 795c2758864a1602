"""The virtual USIM offering T=1 only with IFSC 32, in the emulated serial GemPC
Twin under libccid's serial driver: libccid runs T=1 at TPDU level, so every
block it sends the card carries at most 32 information bytes and longer
commands are chained (ISO/IEC 7816-3 §11.4.2, §11.6.2). pyscard reads the
whole phone book through pcscd; then a MiniCard with the same IFSC echoes a
4 KiB extended APDU both ways over the same link."""

import pytest

from ccidkit.core import ccid as C
from ccidkit.core.atr import parse_atr
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.pcscd import private_pcscd, serial_reader, unavailable_reason
from ccidkit.emu.serial_reader import SerialReaderBridge, make_serial_reader

pytest.importorskip("smartcard")
cards = pytest.importorskip("ccidkit.emu.cards")
from smartcard import scard  # noqa: E402
from smartcard.CardConnection import CardConnection  # noqa: E402

from pcschelp import close, connect, gsm_select, read_adn, tx, wait_state  # noqa: E402

READER = "GemPCTwin serial 00 00"
IFSC = 32


@pytest.fixture(scope="module")
def twin():
    reason = unavailable_reason()
    if reason:
        pytest.skip("private pcscd: " + reason)
    card = cards.make_card("usim", protocols=(1,), ifsc=IFSC)
    reader, _ = make_serial_reader("GemPCTwin", {0: card})
    with SerialReaderBridge(reader) as bridge:
        with private_pcscd([serial_reader(bridge.device)], apdu=False) as daemon:
            daemon.activate()
            bridge.card = card
            yield bridge


def _blocks_to_card(trace, start=0):
    """The T=1 blocks libccid sent (abData of PC_to_RDR_XfrBlock) since ``start``,
    PPS requests (FF ...) left out."""
    out = []
    for line in trace[start:]:
        if line.startswith("-> 6F"):
            block = bytes.fromhex(line[3:])[C.CCID_HEADER_LENGTH:]
            if block[:1] != b"\xFF":
                out.append(block)
    return out


def test_the_usim_offers_t1_only_with_ifsc_32(twin):
    atr = parse_atr(twin.card.atr)
    assert atr.protocols == [1] and atr.ifsc == IFSC
    _, got = wait_state(READER, scard.SCARD_STATE_PRESENT)
    assert got == twin.card.atr


def test_pyscard_reads_250_adn_records_over_t1_ifsc_32(twin):
    expected = [bytes(r) for r in twin.card.adn().records]
    start = len(twin.link.trace)
    conn = connect(READER)
    try:
        assert conn.getProtocol() == CardConnection.T1_protocol
        records = read_adn(conn)
        # a 35-byte command: chained in blocks of at most IFSC bytes
        new = bytes(range(0x41, 0x41 + 16)) + b"\x05\x81\x21\x43\x65" + b"\xFF" * 9
        assert len(new) == 30
        assert tx(conn, bytes((0xA0, 0xDC, 250, 0x04, len(new))) + new) == (b"", 0x9000)
        assert tx(conn, bytes((0xA0, 0xB2, 250, 0x04, 30))) == (new, 0x9000)
    finally:
        close(conn)
    assert len(records) == 250 and records == expected
    blocks = _blocks_to_card(twin.link.trace, start)
    info = [b for b in blocks if len(b) > 1 and not b[1] & 0x80]
    assert info and max(b[2] for b in info) <= IFSC
    # ISO/IEC 7816-3 §11.3.2.2: the M bit (b6 of an I-block's PCB) marks a chained block
    chained = [b for b in info if b[1] & 0x20]
    assert len(chained) == 1 and chained[0][2] == IFSC
    reads = [b for b in info if b[3:5] == b"\xA0\xB2"]
    assert len(reads) == 251


def test_extended_echo_4k_both_ways_at_ifsc_32(twin):
    reader = twin.reader
    reader.remove_card(0)
    wait_state(READER, scard.SCARD_STATE_EMPTY)
    mini = MiniCard(protocols=(1,), ifsc=IFSC)
    reader.insert_card(0, mini)
    _, atr = wait_state(READER, scard.SCARD_STATE_PRESENT)
    assert atr == mini.atr and parse_atr(atr).ifsc == IFSC
    payload = bytes((i * 37 + 11) & 0xFF for i in range(4096))
    start = len(twin.link.trace)
    conn = connect(READER)
    try:
        assert conn.getProtocol() == CardConnection.T1_protocol
        data, sw = tx(conn, b"\x80\xEE\x00\x00\x00\x10\x00" + payload + b"\x00\x00")
    finally:
        close(conn)
    assert sw == 0x9000 and data == payload
    info = [b for b in _blocks_to_card(twin.link.trace, start)
            if len(b) > 1 and not b[1] & 0x80]
    # 4096 + 9 bytes of command in blocks of at most 32: at least 129 I-blocks
    assert len(info) >= (4096 + 9 + IFSC - 1) // IFSC
    assert max(b[2] for b in info) == IFSC
    assert mini.count(0xEE) == 1
