"""Virtual cards behind emulated readers, driven through core/pcsc.py:

- the eSIM answers as another logical card on another T=1 NAD, chosen with
  SCARD_CTL_CODE(3600) (3E set / 3F get, libccid's commands) on a TPDU T=1
  reader;
- the card model hears power on / PPS / power off in order, the PPS both
  passed through at TPDU level and made by an automatic-PPS reader after
  SetParameters.
"""

from ccidkit.core import pcsc
from ccidkit.core.host.emulated import emulated_manager
from ccidkit.emu.cards import make_card
from ccidkit.emu.cards.esim import port_nad
from ccidkit.emu.cards.usim import encode_iccid

IOCTL_NAD = pcsc.SCARD_CTL_CODE(3600)
ANY = pcsc.SCARD_PROTOCOL_T0 | pcsc.SCARD_PROTOCOL_T1


def _connect(profile, cards, preferred=ANY):
    mgr = emulated_manager(profile, cards=cards)
    ctx = pcsc.SCardEstablishContext(pcsc.SCARD_SCOPE_USER, mgr)
    name = pcsc.SCardListReaders(ctx)[0]
    h, proto = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, preferred)
    return mgr, ctx, h, proto


def _iccid(h):
    # TS 51.011 class A0: SELECT MF, SELECT EF ICCID, READ BINARY 10 bytes
    assert pcsc.SCardTransmit(h, pcsc.SCARD_PCI_T1, bytes.fromhex("A0A40000023F00"))[-2:-1] \
        == b"\x9F"
    assert pcsc.SCardTransmit(h, pcsc.SCARD_PCI_T1, bytes.fromhex("A0A40000022FE2"))[-2:-1] \
        == b"\x9F"
    resp = pcsc.SCardTransmit(h, pcsc.SCARD_PCI_T1, bytes.fromhex("A0B000000A"))
    assert resp[-2:] == b"\x90\x00"
    return resp[:-2]


def test_esim_ports_by_nad_through_scard_control():
    esim = make_card("esim", ports=3)
    mgr, ctx, h, proto = _connect("gemalto-pctwin", {0: esim})
    try:
        assert proto == pcsc.SCARD_PROTOCOL_T1
        # default NAD 00: port 0
        assert pcsc.SCardControl(h, IOCTL_NAD, b"\x3F\x00\x00") == b"\x3F\x00\x02\x00\x00"
        assert _iccid(h) == encode_iccid(esim.port(0).iccid)
        seen = []
        for port in (1, 2, 0, 2):
            nad = port_nad(port)
            assert pcsc.SCardControl(h, IOCTL_NAD, bytes((0x3E, 0, 1, nad))) == b"\x3E\x00\x01\x00"
            assert pcsc.SCardControl(h, IOCTL_NAD, b"\x3F\x00\x00") == bytes((0x3F, 0, 2, 0, nad))
            seen.append(_iccid(h))
        assert seen == [encode_iccid(esim.port(p).iccid) for p in (1, 2, 0, 2)]
        assert len(set(seen)) == 3
        # the card end saw the APDUs on each NAD (3 per ICCID read)
        t1 = mgr.emulated[0].slots[0].t1
        assert t1.apdus_by_nad == {0x00: 6, 0x10: 3, 0x20: 6}
        # a NAD with bits 8 or 4 set is refused (ISO/IEC 7816-3 §11.3.2.1), the NAD kept
        assert pcsc.SCardControl(h, IOCTL_NAD, b"\x3E\x00\x01\x88") == b"\x3E\x00\x01\x01"
        assert pcsc.SCardControl(h, IOCTL_NAD, b"\x3F\x00\x00") == b"\x3F\x00\x02\x00\x20"
    finally:
        pcsc.SCardDisconnect(h, pcsc.SCARD_UNPOWER_CARD)
        pcsc.SCardReleaseContext(ctx)


def test_esim_port_state_is_per_nad():
    # each port keeps its own current file: a SELECT on port 1 leaves port 0 where it was
    esim = make_card("esim", ports=2)
    mgr, ctx, h, _ = _connect("gemalto-pctwin", {0: esim})
    try:
        assert _iccid(h) == encode_iccid(esim.port(0).iccid)
        pcsc.SCardControl(h, IOCTL_NAD, bytes((0x3E, 0, 1, port_nad(1))))
        assert pcsc.SCardTransmit(h, None, bytes.fromhex("A0A40000023F00"))[-2:-1] == b"\x9F"
        pcsc.SCardControl(h, IOCTL_NAD, bytes((0x3E, 0, 1, port_nad(0))))
        # port 0 still has EF ICCID selected: READ BINARY works without a new SELECT
        resp = pcsc.SCardTransmit(h, None, bytes.fromhex("A0B000000A"))
        assert resp == encode_iccid(esim.port(0).iccid) + b"\x90\x00"
    finally:
        pcsc.SCardReleaseContext(ctx)


def _names(card):
    return [name for name, _ in card.events]


def test_card_hears_power_pps_reset_and_power_off_in_order_tpdu():
    usim = make_card("usim", protocols=(1,))
    mgr, ctx, h, proto = _connect("gemalto-pctwin", {0: usim})
    assert proto == pcsc.SCARD_PROTOCOL_T1
    # the ATR offers TA1 96 (Fi 512, Di 32): the driver's PPS passed through to the card
    assert usim.events == [("power_on", {}), ("pps", {"protocol": 1, "fi": 512, "di": 32})]
    assert pcsc.SCardTransmit(h, None, bytes.fromhex("A0A40000023F00"))[-2:-1] == b"\x9F"
    # CCID 1.1 has no reset message: a reset is IccPowerOff + IccPowerOn, then a new PPS
    pcsc.SCardReconnect(h, pcsc.SCARD_SHARE_SHARED, ANY, pcsc.SCARD_RESET_CARD)
    pcsc.SCardDisconnect(h, pcsc.SCARD_UNPOWER_CARD)
    pps = ("pps", {"protocol": 1, "fi": 512, "di": 32})
    assert usim.events == [("power_on", {}), pps, ("power_off", {}), ("power_on", {}), pps,
                           ("power_off", {})]
    assert usim.powered is False
    pcsc.SCardReleaseContext(ctx)


def test_card_hears_the_pps_an_automatic_pps_reader_makes():
    # sysmoOCTSIM: dwFeatures 80h, the reader makes the PPS after SetParameters
    usim = make_card("usim")
    mgr, ctx, h, proto = _connect("sysmooctsim", {(0, 0): usim}, pcsc.SCARD_PROTOCOL_T0)
    assert proto == pcsc.SCARD_PROTOCOL_T0
    assert _names(usim) == ["power_on", "pps"]
    assert usim.events[1] == ("pps", {"protocol": 0, "fi": 512, "di": 32})
    pcsc.SCardDisconnect(h, pcsc.SCARD_UNPOWER_CARD)
    assert _names(usim) == ["power_on", "pps", "power_off"]
    pcsc.SCardReleaseContext(ctx)


def test_no_pps_event_when_the_card_stays_at_fd_dd():
    # TA1 11 (Fd, Dd): no PPS to make, no pps event
    usim = make_card("usim", protocols=(1,), ta1=0x11)
    mgr, ctx, h, _ = _connect("gemalto-pctwin", {0: usim})
    assert _names(usim) == ["power_on"]
    pcsc.SCardDisconnect(h, pcsc.SCARD_UNPOWER_CARD)
    assert _names(usim) == ["power_on", "power_off"]
    pcsc.SCardReleaseContext(ctx)
