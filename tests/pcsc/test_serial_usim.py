"""The virtual USIM (T=0 only) in the emulated serial GemPC Twin: libccid's
serial driver runs T=0 at TPDU level (procedure bytes, 9Fxx, GET RESPONSE)
and pyscard reads the whole phone book through it."""

import pytest

from ccidkit.emu.pcscd import private_pcscd, serial_reader, unavailable_reason
from ccidkit.emu.reader import EmulatedReader
from ccidkit.emu.serial_reader import SerialReaderBridge

pytest.importorskip("smartcard")
cards = pytest.importorskip("ccidkit.emu.cards")
from smartcard import scard  # noqa: E402
from smartcard.CardConnection import CardConnection  # noqa: E402

from pcschelp import close, connect, read_adn, wait_state  # noqa: E402

READER = "GemPCTwin serial 00 00"


def test_pyscard_reads_250_adn_records_over_libccid_t0():
    reason = unavailable_reason()
    if reason:
        pytest.skip("private pcscd: " + reason)
    try:
        card = cards.make_card("usim")
    except cards.CardOSError as e:
        pytest.skip("usim card: %s" % e)
    expected = [bytes(r) for r in card.adn().records]
    reader = EmulatedReader("gemalto-pctwin", cards={0: card})
    with SerialReaderBridge(reader) as bridge:
        with private_pcscd([serial_reader(bridge.device)], apdu=False) as daemon:
            daemon.activate()
            _, atr = wait_state(READER, scard.SCARD_STATE_PRESENT)
            assert atr == card.atr
            conn = connect(READER)
            try:
                assert conn.getProtocol() == CardConnection.T0_protocol
                records = read_adn(conn)
            finally:
                close(conn)
    assert len(records) == 250 and records == expected
    # T=0 at TPDU level: case-2 READ RECORD went as 5-byte headers in XfrBlock
    # (abData = the TPDU), never as APDUs with data
    reads = [line for line in bridge.link.trace
             if line.startswith("-> 6F 05 00 00 00") and line[33:38] == "A0 B2"]
    assert len(reads) == 250
