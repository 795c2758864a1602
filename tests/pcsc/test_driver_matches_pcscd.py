"""The same virtual cards read two ways give the same bytes:

- pyscard through a private pcscd + vpcd (the card served by ``Vicc``);
- ccidkit's own driver: the card in an emulated GemPC Twin reached through
  the pyusb backend, T=0 / T=1 at TPDU level run by core/, the PC/SC API of
  core/pcsc.py.

The USIM's 250 ADN records (class A0, TS 51.011) and the PIV card's
authentication certificate (GET DATA 5FC105, SP 800-73-4) are compared byte
for byte. One card object serves both paths in turn."""

import pytest

from ccidkit.core import pcsc
from ccidkit.core.host.emulated import emulated_manager

pytest.importorskip("smartcard")
cards = pytest.importorskip("ccidkit.emu.cards")
from smartcard import scard  # noqa: E402

from pcschelp import close, connect, read_adn, wait_state  # noqa: E402

READER0 = "Virtual PCD 00 00"
PIV_AID = bytes.fromhex("A000000308000010000100")
MAX_GET_RESPONSE = 64


class DriverConnection:
    """What pcschelp needs of a pyscard connection (``transmit``), over core/pcsc.py."""

    def __init__(self, card, profile="gemalto-pctwin"):
        self.manager = emulated_manager(profile, cards={0: card})
        self.ctx = pcsc.SCardEstablishContext(pcsc.SCARD_SCOPE_USER, self.manager)
        name = pcsc.SCardListReaders(self.ctx)[0]
        self.hcard, self.protocol = pcsc.SCardConnect(
            self.ctx, name, pcsc.SCARD_SHARE_SHARED,
            pcsc.SCARD_PROTOCOL_T0 | pcsc.SCARD_PROTOCOL_T1)

    def transmit(self, apdu):
        resp = pcsc.SCardTransmit(self.hcard, None, bytes(apdu))
        return list(resp[:-2]), resp[-2], resp[-1]

    def close(self):
        pcsc.SCardDisconnect(self.hcard, pcsc.SCARD_UNPOWER_CARD)
        pcsc.SCardReleaseContext(self.ctx)


def _tx(conn, apdu):
    data, sw1, sw2 = conn.transmit(list(apdu))
    return bytes(data), (sw1 << 8) | sw2


def _tx_all(conn, apdu):
    """Data and SW of a short APDU, collecting 61xx answers with GET RESPONSE
    (ISO/IEC 7816-4 §5.1.3: over T=0 the case-4 answer comes that way)."""
    data, sw = _tx(conn, apdu)
    out = data
    for _ in range(MAX_GET_RESPONSE):
        if sw >> 8 != 0x61:
            break
        data, sw = _tx(conn, bytes((0x00, 0xC0, 0x00, 0x00, sw & 0xFF)))
        out += data
    return out, sw


def piv_certificate(conn):
    """SELECT the PIV application, GET DATA 5FC105 (short APDUs)."""
    fci, sw = _tx_all(conn, b"\x00\xA4\x04\x00" + bytes((len(PIV_AID),)) + PIV_AID + b"\x00")
    assert sw == 0x9000 and fci[:1] == b"\x61", "%04X" % sw
    cert, sw = _tx_all(conn, bytes.fromhex("00CB3FFF055C035FC10500"))
    assert sw == 0x9000, "%04X" % sw
    return fci + cert


def _through_pcscd(daemon, card, read):
    vicc = daemon.vicc(card)
    try:
        assert wait_state(READER0, scard.SCARD_STATE_PRESENT)[1] == card.atr
        conn = connect(READER0)
        try:
            return read(conn)
        finally:
            close(conn)
    finally:
        vicc.stop()


def _through_driver(card, read, expect_protocol):
    conn = DriverConnection(card)
    try:
        assert conn.protocol == expect_protocol
        return read(conn)
    finally:
        conn.close()


def test_usim_adn_records_identical(pcscd_vpcd):
    card = cards.make_card("usim", protocols=(0, 1))
    by_pcscd = _through_pcscd(pcscd_vpcd, card, read_adn)
    by_driver = _through_driver(card, read_adn, pcsc.SCARD_PROTOCOL_T0)
    assert len(by_pcscd) == 250
    assert by_driver == by_pcscd
    assert by_pcscd == [bytes(r) for r in card.adn().records]


def test_auth_certificate_identical(pcscd_vpcd):
    card = cards.make_card("auth", seed="driver and pcscd")
    by_pcscd = _through_pcscd(pcscd_vpcd, card, piv_certificate)
    by_driver = _through_driver(card, piv_certificate, pcsc.SCARD_PROTOCOL_T0)
    # the application property template, then 53 { 70 cert, 71 00, FE 00 }
    cert = by_pcscd[by_pcscd.index(b"\x53\x82"):]
    assert len(cert) > 700 and cert[4:6] == b"\x70\x82"
    assert by_driver == by_pcscd
