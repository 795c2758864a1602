"""The emulated serial GemPC PinPad under libccid's serial driver (reader.conf
``<pty>:GemPCPinPad``): libccid gives it bPINSupport 03, so pcscd offers
FEATURE_VERIFY_PIN_DIRECT; pyscard sends PIN_VERIFY_STRUCTURE through
SCardControl, the emulated keypad types the PIN, and the PIV card in the
slot judges it (T=1 at TPDU level: libccid puts its own NAD and PCB in
bTeoPrologue, CCID §6.1.11)."""

import struct

import pytest

from ccidkit.emu.pcscd import private_pcscd, serial_reader, unavailable_reason
from ccidkit.emu.serial_reader import SerialReaderBridge, make_serial_reader

pytest.importorskip("smartcard")
cards = pytest.importorskip("ccidkit.emu.cards")
from smartcard import scard  # noqa: E402
from smartcard.CardConnection import CardConnection  # noqa: E402

from pcschelp import close, connect, tx, wait_state  # noqa: E402

READER = "GemPCPinPad serial 00 00"
PIV_AID = bytes.fromhex("A000000308000010000100")
# PC/SC part 10 §2.3: GET_FEATURE_REQUEST is SCARD_CTL_CODE(3400); the tags
FEATURE_VERIFY_PIN_DIRECT = 0x06
FEATURE_MODIFY_PIN_DIRECT = 0x07
# SP 800-73-4 VERIFY for the PIV Card Application PIN: 8 bytes, ASCII, padded FF
VERIFY_TEMPLATE = bytes.fromhex("0020008008") + b"\xFF" * 8


def _verify_structure(apdu):
    # PC/SC part 10 §2.5.2 PIN_VERIFY_STRUCTURE, written out field by field:
    # bTimerOut 30 s, bTimerOut2 0, bmFormatString 82 (byte units, position 0,
    # left justified, ASCII), bmPINBlockString 08 (8-byte block, no length
    # field), bmPINLengthFormat 00, wPINMaxExtraDigit 06 min / 08 max,
    # bEntryValidationCondition 02 (OK key), bNumberMessage 01, wLangId 0409,
    # bMsgIndex 0, bTeoPrologue 00 00 00, ulDataLength, abData
    return struct.pack("<BBBBBHBBHB", 30, 0, 0x82, 0x08, 0x00, 0x0608, 0x02, 0x01, 0x0409,
                       0) + b"\x00\x00\x00" + struct.pack("<I", len(apdu)) + apdu


@pytest.fixture(scope="module")
def pinpad():
    reason = unavailable_reason()
    if reason:
        pytest.skip("private pcscd: " + reason)
    card = cards.make_card("auth", seed="serial pin pad")
    reader, echo = make_serial_reader("GemPCPinPad", {0: card})
    assert echo is True
    with SerialReaderBridge(reader, echo=echo) as bridge:
        with private_pcscd([serial_reader(bridge.device, model="GemPCPinPad",
                                          name="GemPCPinPad serial")]) as daemon:
            daemon.activate()
            _, atr = wait_state(READER, scard.SCARD_STATE_PRESENT)
            assert atr == card.atr
            bridge.card = card
            bridge.daemon = daemon
            yield bridge


def _features(conn):
    raw = bytes(conn.control(scard.SCARD_CTL_CODE(3400), []))
    out = {}
    # PC/SC part 10 §2.2: tag, length 4, control code big-endian
    for i in range(0, len(raw) - 5, 6):
        assert raw[i + 1] == 4
        out[raw[i]] = struct.unpack(">I", raw[i + 2:i + 6])[0]
    return out


def test_libccid_offers_verify_and_modify_pin_direct(pinpad):
    assert "Firmware: GemPC Pinpad V1.00" in pinpad.daemon.read_log()
    # libccid loaded its display strings (Escape B2 A0 00 4D 4C): en, LANG aside
    assert len(pinpad.link.display_strings) == 10 and pinpad.link.display_strings[0]
    conn = connect(READER)
    try:
        features = _features(conn)
    finally:
        close(conn)
    assert FEATURE_VERIFY_PIN_DIRECT in features
    assert FEATURE_MODIFY_PIN_DIRECT in features
    # libccid's control codes: SCARD_CTL_CODE(0x330000 + tag)
    assert features[FEATURE_VERIFY_PIN_DIRECT] == scard.SCARD_CTL_CODE(0x330000 + 6)


def test_verify_pin_direct_typed_on_the_keypad(pinpad):
    reader = pinpad.reader
    conn = connect(READER)
    try:
        assert conn.getProtocol() == CardConnection.T1_protocol
        data, sw = tx(conn, b"\x00\xA4\x04\x00" + bytes((len(PIV_AID),)) + PIV_AID + b"\x00")
        assert sw == 0x9000 and data[:1] == b"\x61"
        verify = _features(conn)[FEATURE_VERIFY_PIN_DIRECT]
        # before: not verified, 3 tries (SP 800-73-4 §3.2.1: 63 Cx)
        assert tx(conn, "0020008000") == (b"", 0x63C3)
        reader.keypad(0, "654321")
        answer = bytes(conn.control(verify, list(_verify_structure(VERIFY_TEMPLATE))))
        assert answer == b"\x63\xC2"                      # a wrong PIN counts down
        reader.keypad(0, "123456")
        answer = bytes(conn.control(verify, list(_verify_structure(VERIFY_TEMPLATE))))
        assert answer == b"\x90\x00"
        assert tx(conn, "0020008000") == (b"", 0x9000)    # the card holds it verified
        # the PIN pad's user presses cancel: bError PIN_CANCELLED, no card exchange
        before = pinpad.card.count(0x20)
        reader.keypad(0, "cancel")
        answer = bytes(conn.control(verify, list(_verify_structure(VERIFY_TEMPLATE))))
        assert answer == b"\x64\x01"         # libccid reports PIN_CANCELLED as SW 6401
        assert pinpad.card.count(0x20) == before
    finally:
        close(conn)
    # libccid framed each VERIFY as a PC_to_RDR_Secure (69h), never with the PIN
    secure = [line for line in pinpad.link.trace if line.startswith("-> 69")]
    assert len(secure) == 3
    log = pinpad.daemon.read_log().upper()
    for pin in ("123456", "654321"):
        digits = pin.encode("ascii").hex().upper()
        assert digits not in log.replace(" ", "")
        assert digits not in "".join(pinpad.link.trace).replace(" ", "")
