"""The emulated serial GemCore SIM Pro under libccid's serial driver
(reader.conf ``<pty>:GemCoreSIMPro``): libccid gives it two slots over one
port and expects no echo; pcscd lists two readers, and the card in each
answers through its own bSlot."""

import pytest

from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.pcscd import private_pcscd, serial_reader, unavailable_reason
from ccidkit.emu.serial_reader import SerialReaderBridge, make_serial_reader

pytest.importorskip("smartcard")
cards = pytest.importorskip("ccidkit.emu.cards")
from smartcard import scard  # noqa: E402
from smartcard.CardConnection import CardConnection  # noqa: E402
from smartcard.System import readers  # noqa: E402

from pcschelp import close, connect, gsm_select, tx, wait_state  # noqa: E402

SLOT0 = "GemCoreSIMPro serial 00 00"
SLOT1 = "GemCoreSIMPro serial 00 01"
ICCID = "8988211000000777777"
# TS 102 221 §13.2: BCD with swapped nibbles, padded F
ICCID_BCD = bytes.fromhex("988812010000707777F7")


@pytest.fixture(scope="module")
def simpro():
    reason = unavailable_reason()
    if reason:
        pytest.skip("private pcscd: " + reason)
    usim = cards.make_card("usim", iccid=ICCID)
    mini = MiniCard()
    reader, echo = make_serial_reader("GemCoreSIMPro", {0: usim, 1: mini})
    assert echo is False and len(reader.slots) == 2
    with SerialReaderBridge(reader) as bridge:
        entry = serial_reader(bridge.device, model="GemCoreSIMPro", name="GemCoreSIMPro serial")
        with private_pcscd([entry]) as daemon:
            daemon.activate()
            bridge.usim, bridge.mini, bridge.daemon = usim, mini, daemon
            yield bridge


def test_pcscd_lists_two_slots_each_with_its_card(simpro):
    _, atr0 = wait_state(SLOT0, scard.SCARD_STATE_PRESENT)
    _, atr1 = wait_state(SLOT1, scard.SCARD_STATE_PRESENT)
    assert (atr0, atr1) == (simpro.usim.atr, simpro.mini.atr)
    names = [str(r) for r in readers()]
    assert SLOT0 in names and SLOT1 in names
    assert "Firmware: GemCore SIM Pro V1.00" in simpro.daemon.read_log()
    assert simpro.link.echo is False


def test_both_cards_answer_in_turn(simpro):
    c0 = connect(SLOT0)
    c1 = connect(SLOT1)
    try:
        assert c0.getProtocol() == CardConnection.T0_protocol
        assert c1.getProtocol() == CardConnection.T1_protocol
        for i in range(3):
            gsm_select(c0, 0x3F00)
            gsm_select(c0, 0x2FE2)
            data, sw = tx(c0, "A0B000000A")
            assert sw == 0x9000 and data == ICCID_BCD
            payload = bytes((i, 0xA5, 0x5A))
            assert tx(c1, b"\x80\xEE\x00\x00\x03" + payload + b"\x00") == (payload, 0x9000)
    finally:
        close(c0)
        close(c1)
    # the exchanges reached both slots of the one serial port
    slots = set()
    for line in simpro.link.trace:
        if line.startswith("-> 6F"):
            slots.add(bytes.fromhex(line[3:])[5])
    assert slots == {0, 1}
    assert simpro.mini.count(0xEE) == 3
    assert simpro.usim.count(0xB0) == 3
