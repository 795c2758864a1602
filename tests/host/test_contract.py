"""Every row of core/contract.py, provoked: the entry point given inputs that
cause the documented condition raises the documented class with a documented
name (or returns the documented kind of value)."""

import hashlib
import os
import shutil
import struct
import tempfile

import pytest

from ccidkit.core import contract
from ccidkit.core.contract import _RD, _ED, _ED_HANDLE
from ccidkit.core.errors import CcidkitError
from ccidkit.core import atr as A, pps as P, apdu as AP, ccid as C, t1 as T1, t0 as T0
from ccidkit.core import ccid_descriptor as CD, pcsc
from ccidkit.core.driver import Reader, PROTOCOL_T1
from ccidkit.core.transport import TransportTimeout, TransportStall, ReaderRemoved
from ccidkit.core.host.emulated import open_emulated, emulated_manager
from ccidkit.emu import vicc, vscard, usbredir
from ccidkit.emu.reader import EmulatedReader
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.card.t1 import T1Card
from ccidkit.emu.card.t0 import T0Card
from ccidkit.emu.cards import make_card
from ccidkit.emu.cards.auth import AuthCard, TAG_CHUID
from ccidkit.emu.cardos import CardStatus
from ccidkit.core import part10
from ccidkit.uefi.fw import efi, usb_transport
from ccidkit.uefi.fw import scard_reader as R
from ccidkit.uefi.fw import scard_edge as E
from ccidkit.uefi.fw.efi_status import (
    EFI_SUCCESS, EFI_INVALID_PARAMETER, EFI_UNSUPPORTED, EFI_BUFFER_TOO_SMALL, EFI_NOT_READY,
    EFI_DEVICE_ERROR, EFI_ACCESS_DENIED, EFI_TIMEOUT, EFI_NO_MEDIA, EFI_PROTOCOL_ERROR,
    EFI_NOT_FOUND, status_name,
)

from test_usb_transport_fake import Host

SELECT_AID = bytes.fromhex("00A4040009F0636369646B69740100")
PPS_REQ = bytes.fromhex("FF1096 79".replace(" ", ""))   # T=0, Fi 512 Di 32... PCK below
PPS_REQ = P.build_pps_request(0, 512, 32)


def _reader(profile="gemalto-pctwin", cards=None, **kw):
    backend, ts = open_emulated(profile, cards=cards)
    r = Reader(ts[0], **kw).open()
    r.emulated = backend.readers[0] if not callable(backend.readers) else backend.readers()[0]
    return r


def _t1_run(link, **kw):
    eng = T1.T1Reader(**kw)
    return eng.transceive(SELECT_AID, link)


def _s(stype, response=False, inf=b""):
    return T1.s_block(stype, response, inf).encode()


def _resynch_link(block, timeout_us):
    if block[1] == 0xC0:
        return _s(T1.S_RESYNCH, True)
    return b"\x00\x00"


def _abort_link():
    state = {"n": 0}

    def link(block, timeout_us):
        state["n"] += 1
        if state["n"] == 1:
            return _s(T1.S_ABORT)
        return T1.r_block(0).encode()
    return link


def _t0_transceive(answers, **kw):
    it = iter(answers)

    def link(tpdu, timeout_us):
        return next(it)
    return T0.T0Reader(**kw).transceive(SELECT_AID, link)


def _config_with(ccid_desc):
    iface = bytes((9, 4, 0, 0, 3, 0x0B, 0, 0, 0))
    body = iface + ccid_desc
    return struct.pack("<BBHBBBBB", 9, 2, 9 + len(body), 1, 1, 0, 0x80, 50) + body


def _usbredir_host():
    return usbredir.Codec("host")


def _usbredir_hello(codec):
    # a guest hello: 64-byte version + caps
    return struct.pack("<III", usbredir.HELLO, 68, 0) + b"qemu".ljust(64, b"\0") + \
        struct.pack("<I", 0xFF)


def _pcsc(profile="gemalto-pctwin", cards=None):
    mgr = emulated_manager(profile, cards=cards)
    ctx = pcsc.SCardEstablishContext(pcsc.SCARD_SCOPE_USER, mgr)
    return mgr, ctx, pcsc.SCardListReaders(ctx)[0]


def _connected(profile="gemalto-pctwin"):
    mgr, ctx, name = _pcsc(profile)
    h, _ = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_ANY)
    return mgr, ctx, name, h


def _pcsc_reset_warning():
    mgr, ctx, name, h1 = _connected()
    h2, _ = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_ANY)
    pcsc.SCardDisconnect(h1, pcsc.SCARD_RESET_CARD)
    pcsc.SCardTransmit(h2, pcsc.SCARD_PCI_T0, SELECT_AID)


def _pcsc_removed():
    mgr, ctx, name, h = _connected()
    mgr.emulated[0].faults.remove_mid_exchange(0)
    pcsc.SCardTransmit(h, pcsc.SCARD_PCI_T0, SELECT_AID)


def _pcsc_unplugged():
    mgr, ctx, name, h = _connected()
    mgr.emulated[0].faults.unplug_on_command(1)
    pcsc.SCardTransmit(h, pcsc.SCARD_PCI_T0, SELECT_AID)


def _pcsc_mute():
    mgr, ctx, name, h = _connected()
    mgr.emulated[0].faults.mute(0)
    pcsc.SCardTransmit(h, pcsc.SCARD_PCI_T0, SELECT_AID)


def _pcsc_cancelled():
    mgr, ctx, name = _pcsc()
    ev = pcsc.SCardGetStatusChange(ctx, 0, [(name, 0)])[0][1] & ~pcsc.SCARD_STATE_CHANGED
    poll = mgr.poll

    def poll_then_cancel(timeout_ms=0):            # SCardCancel while it waits
        pcsc.SCardCancel(ctx)
        return poll(timeout_ms)
    mgr.poll = poll_then_cancel
    pcsc.SCardGetStatusChange(ctx, 1000, [(name, ev)])


def _pcsc_timeout():
    mgr, ctx, name = _pcsc()
    ev = pcsc.SCardGetStatusChange(ctx, 0, [(name, 0)])[0][1] & ~pcsc.SCARD_STATE_CHANGED
    pcsc.SCardGetStatusChange(ctx, 0, [(name, ev)])


def _pcsc_no_card():
    mgr, ctx, name = _pcsc()
    mgr.emulated[0].remove_card(0)
    pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_ANY)


def _pcsc_sharing():
    mgr, ctx, name, h = _connected()
    pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_EXCLUSIVE, pcsc.SCARD_PROTOCOL_ANY)


def _pcsc_proto():
    mgr, ctx, name, h = _connected()
    pcsc.SCardTransmit(h, pcsc.SCARD_PCI_T1, SELECT_AID)


def _driver_no_card():
    r = _reader(cards={0: None})
    r.power_on(0)


def _driver_mute():
    r = _reader()
    r.connect(0)
    r.emulated.faults.mute(0)
    r.transmit(0, SELECT_AID)


def _driver_unplugged():
    r = _reader()
    r.connect(0)
    r.emulated.faults.unplug_on_command(1)
    r.transmit(0, SELECT_AID)


def _driver_comm_error():
    r = _reader(cards={0: MiniCard(protocols=(1,))})
    r.connect(0)
    r.emulated.faults.corrupt_t1(0, "reader", 40)
    r.transmit(0, SELECT_AID)


def _driver_stall_not_cleared():
    r = _reader()
    r.connect(0)
    r.emulated.faults.stall("bulk_in", 1)
    r.emulated.faults.stall("control", 1)       # CLEAR_FEATURE(ENDPOINT_HALT) refused
    r.transmit(0, SELECT_AID)


def _driver_unpowered():
    r = _reader()
    r.transmit(0, SELECT_AID)


def _driver_cancelled():
    r = _reader()
    r.connect(0)
    r.emulated.faults.wtx_storm(0, 10)
    r.on_time_extension = lambda rd, slot, n: rd.request_abort(slot)
    r.transmit(0, SELECT_AID)


def _driver_no_protocol():
    r = _reader(cards={0: MiniCard(protocols=(0,))})
    r.power_on(0)
    r.set_protocol(0, PROTOCOL_T1)


class _RefusesPPS(MiniCard):
    pass


def _driver_pts_failure():
    from ccidkit.emu import reader as emu_reader
    real = emu_reader.card_pps_response

    def bad_pck(atr, request):
        resp, line = real(atr, request)
        if resp is None:
            return resp, line
        return resp[:-1] + bytes((resp[-1] ^ 0xFF,)), line
    emu_reader.card_pps_response = bad_pck
    try:
        r = _reader()
        r.power_on(0)
        r.set_protocol(0, PROTOCOL_T1)
    finally:
        emu_reader.card_pps_response = real


def _driver_power_action():
    r = _reader()
    r.emulated.faults.take_overcurrent = lambda slot: True   # every class: overcurrent
    r.power_on(0)


def _driver_not_supported():
    r = _reader("cherry-st")
    r.connect(0)
    r.secure(0, b"\x00" * 20)


def _transport(fault):
    backend, ts = open_emulated("gemalto-pctwin")
    em = backend.readers[0] if not callable(backend.readers) else backend.readers()[0]
    t = ts[0]
    if fault == "timeout":
        return t.bulk_in(64, 10)
    if fault == "stall":
        em.faults.stall("bulk_in", 1)
        return t.bulk_in(64, 10)
    em.unplug()
    return t.bulk_in(64, 10)


def _card_image(bad):
    d = tempfile.mkdtemp()
    p = os.path.join(d, "img")
    with open(p, "wb") as f:
        f.write(b"not an image")
    return make_card("usim", image=p)


def _emu_malformed():
    em = EmulatedReader("gemalto-pctwin", cards={0: MiniCard()})
    em.bulk_out(bytes.fromhex("62 01000000 00 00 000000 FF"))   # IccPowerOn with 1 data byte
    out = C.decode_bulk_in(em.bulk_in(65554, 1000))
    first = out.name == "RDR_to_PC_DataBlock" and out.bError == 1 and out.failed
    em.bulk_out(bytes.fromhex("65 00000000 05 01 000000"))       # bSlot 5 on a 1-slot reader
    out = C.decode_bulk_in(em.bulk_in(65554, 1000))
    return first and out.name == "RDR_to_PC_SlotStatus" and out.bError == 5 and out.failed


# ---------------------------------------------------------------- EFI facades
# The facades run as in the firmware: efi.py over the stand-in host of
# test_usb_transport_fake (its USB services are emulated readers), the
# in-firmware transport, the driver, then the Reader / Edge protocol.

ECHO = bytes.fromhex("80EE000004DEADBEEF00")          # MiniCard echo: DEADBEEF 9000
ANY = R.SCARD_PROTOCOL_T0 | R.SCARD_PROTOCOL_T1
FILL = 0xA5
PIN = b"123456"
SHA256 = E.EFI_HASH_ALGORITHM_SHA256_GUID
PKCS1 = E.EFI_PADDING_RSASSA_PKCS1V1P5_GUID
PNONE = E.EFI_PADDING_NONE_GUID
RSA_SIG = E.SC_EDGE_RSA_SIGNATURE
_AUTH = {}                # "dir": a temporary directory, "base": the personalised image


@pytest.fixture(autouse=True)
def _efi_host_removed():
    yield
    efi.set_host(None)


@pytest.fixture(scope="module", autouse=True)
def _auth_dir(tmp_path_factory):
    _AUTH["dir"] = str(tmp_path_factory.mktemp("contract-edge"))
    yield
    _AUTH.clear()


def _buf(n):
    return bytearray([FILL]) * n


def _sc(profile="gemalto-pctwin", card="minicard"):
    """(emulated reader, EFI_SMART_CARD_READER_PROTOCOL) behind the stand-in host."""
    if card == "minicard":
        card = MiniCard()
    em = EmulatedReader(profile, cards={0: card} if card is not None else {})
    efi.set_host(Host([em]))
    readers = R.locate_readers()
    assert len(readers) == 1
    return em, readers[0]


def _sc_t1(profile="gemalto-pctwin", card="minicard"):
    em, sc = _sc(profile, card)
    assert sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET, R.SCARD_PROTOCOL_T1) == \
        (EFI_SUCCESS, R.SCARD_PROTOCOL_T1)
    return em, sc


class _PinProtectedObjectCard(AuthCard):
    """The PIV card answering GET DATA of Printed Information (5FC109) with 6982, as a
    card does before the PIN when it holds that object (SP 800-73-4 Part 1 Table 3:
    access rule PIN)."""

    def get_data(self, cmd, data):
        if bytes(data) == bytes.fromhex("5C035FC109"):
            raise CardStatus(0x6982)
        return AuthCard.get_data(self, cmd, data)


def _edge(with_card=True, hash_functions=None, card_class=AuthCard):
    """(emulated reader, PIV auth card, EFI_SMART_CARD_EDGE_PROTOCOL), a fresh card copy."""
    d = _AUTH["dir"]
    if "base" not in _AUTH:
        base = os.path.join(d, "base.img")
        AuthCard(image=base, seed=b"ccidkit contract test").close()
        _AUTH["base"] = base
    _AUTH["n"] = _AUTH.get("n", 0) + 1
    path = os.path.join(d, "card%d.img" % _AUTH["n"])
    shutil.copy(_AUTH["base"], path)
    card = card_class(image=path)
    em = EmulatedReader("gemalto-pctwin", cards={0: card} if with_card else {})
    efi.set_host(Host([em]))
    if hash_functions is None:
        hash_functions = {"sha256": hashlib.sha256}
    edge = E.EFI_SMART_CARD_EDGE_PROTOCOL(random_bytes=os.urandom, hash_functions=hash_functions)
    return em, card, edge


def _edge_connected(verified=False, **kw):
    em, card, edge = _edge(**kw)
    st, h = edge.Connect()
    assert st == EFI_SUCCESS
    if verified:
        assert edge.VerifyPin(h, len(PIN), PIN) == (EFI_SUCCESS, True, 3)
    return em, card, edge, h


def _reader_connect_invalid():
    em, sc = _sc()
    calls = ((0, R.SCARD_CA_NORESET, ANY), (R.SCARD_AM_CARD, R.SCARD_CA_UNPOWER, ANY),
             (R.SCARD_AM_READER, R.SCARD_CA_NORESET, R.SCARD_PROTOCOL_T0),
             (R.SCARD_AM_READER, R.SCARD_CA_COLDRESET, 0))
    return all(sc.SCardConnect(*c) == (EFI_INVALID_PARAMETER, 0) for c in calls) and \
        not sc.connected


def _reader_connect_twice():
    em, sc = _sc_t1()
    return sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET, ANY) == \
        (EFI_ACCESS_DENIED, 0) and sc.connected and sc.active_protocol == R.SCARD_PROTOCOL_T1


def _reader_connect_no_card():
    em, sc = _sc(card=None)
    return sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET, ANY) == (EFI_NO_MEDIA, 0) \
        and not sc.connected


def _reader_connect_mute():
    em, sc = _sc()
    em.faults.mute(0)
    return sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_COLDRESET, ANY) == \
        (EFI_NOT_READY, 0) and not sc.connected and not sc.reader.slots[0].powered


def _reader_connect_unsupported():
    em, sc = _sc()
    raw = sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET, R.SCARD_PROTOCOL_RAW)
    ok = sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET, R.SCARD_PROTOCOL_T1)
    sc.SCardDisconnect(R.SCARD_CA_NORESET)
    # the card runs T=1 now: T=0 alone without a reset is not what it runs
    t0 = sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET, R.SCARD_PROTOCOL_T0)
    return raw == (EFI_UNSUPPORTED, 0) and ok == (EFI_SUCCESS, R.SCARD_PROTOCOL_T1) and \
        t0 == (EFI_UNSUPPORTED, 0) and not sc.connected


def _reader_connect_gone():
    em, sc = _sc()
    em.unplug()
    return sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET, ANY) == \
        (EFI_DEVICE_ERROR, 0) and not sc.connected


def _reader_disconnect_invalid():
    em, sc = _sc_t1()
    return sc.SCardDisconnect(9) == EFI_INVALID_PARAMETER and sc.connected


def _reader_disconnect_eject():
    em, sc = _sc_t1()
    return sc.SCardDisconnect(R.SCARD_CA_EJECT) == EFI_UNSUPPORTED and sc.connected


def _reader_disconnect_success():
    em, sc = _sc()
    first = sc.SCardDisconnect(R.SCARD_CA_COLDRESET)          # no SCardConnect before
    sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET, ANY)
    em.remove_card(0)
    return first == EFI_SUCCESS and sc.SCardDisconnect(R.SCARD_CA_COLDRESET) == EFI_SUCCESS \
        and not sc.connected


def _reader_disconnect_gone():
    em, sc = _sc_t1()
    em.unplug()
    return sc.SCardDisconnect(R.SCARD_CA_UNPOWER) == EFI_DEVICE_ERROR and not sc.connected


def _reader_status_invalid():
    em, sc = _sc()
    name = _buf(8)
    return sc.SCardStatus(name, None)[0] == EFI_INVALID_PARAMETER and \
        sc.SCardStatus(name, 9)[0] == EFI_INVALID_PARAMETER and \
        sc.SCardStatus(None, None, _buf(4), None)[0] == EFI_INVALID_PARAMETER and \
        name == _buf(8)


def _reader_status_small():
    em, sc = _sc_t1()
    name = _buf(4)
    atr = _buf(4)
    st, nl, state, proto, al = sc.SCardStatus(name, 4, atr, 4)
    return st == EFI_BUFFER_TOO_SMALL and nl == len(R.str_to_char16(sc.name)) and \
        al == len(MiniCard().atr) and name == _buf(4) and atr == _buf(4)


def _reader_status_gone():
    em, sc = _sc()
    em.unplug()
    return sc.SCardStatus(_buf(200), 200, _buf(40), 40)[0] == EFI_DEVICE_ERROR


def _reader_transmit_invalid():
    em, sc = _sc_t1()
    out = _buf(10)
    cases = ((None, 0, out, 10), (ECHO, 0, out, 10), (ECHO, len(ECHO) + 1, out, 10),
             (ECHO, len(ECHO), None, 10), (ECHO, len(ECHO), out, 11))
    return all(sc.SCardTransmit(*c)[0] == EFI_INVALID_PARAMETER for c in cases) and \
        out == _buf(10)


def _reader_transmit_denied():
    em, sc = _sc()
    unlocked = sc.SCardTransmit(ECHO, len(ECHO), _buf(10), 10)[0]
    sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET, R.SCARD_PROTOCOL_T1)
    seen = []

    def on_wtx(reader, slot, count):          # re-entry while the exchange is pending
        if not seen:
            seen.append(sc.SCardTransmit(ECHO, len(ECHO), _buf(10), 10)[0])
    sc.reader.on_time_extension = on_wtx
    em.faults.wtx_storm(0, 3)
    done = sc.SCardTransmit(ECHO, len(ECHO), _buf(10), 10)
    return unlocked == EFI_ACCESS_DENIED and seen == [EFI_ACCESS_DENIED] and \
        done == (EFI_SUCCESS, 6)


def _reader_transmit_no_card():
    em, sc = _sc_t1()
    em.remove_card(0)
    return sc.SCardTransmit(ECHO, len(ECHO), _buf(10), 10) == (EFI_NO_MEDIA, 10) and \
        sc.connected


def _reader_transmit_not_ready():
    em, sc = _sc()
    sc.SCardConnect(R.SCARD_AM_READER, R.SCARD_CA_NORESET, R.SCARD_PROTOCOL_UNDEFINED)
    unpowered = sc.SCardTransmit(ECHO, len(ECHO), _buf(10), 10)[0]
    sc.SCardDisconnect(R.SCARD_CA_NORESET)
    sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET, R.SCARD_PROTOCOL_T1)
    em.remove_card(0)
    em.insert_card(0, MiniCard())
    swapped = sc.SCardTransmit(ECHO, len(ECHO), _buf(10), 10)[0]
    return unpowered == EFI_NOT_READY and swapped == EFI_NOT_READY


def _reader_transmit_small():
    em, sc = _sc_t1()
    out = _buf(8)
    return sc.SCardTransmit(ECHO, len(ECHO), out, 4) == (EFI_BUFFER_TOO_SMALL, 6) and \
        out == _buf(8)


def _reader_transmit_fault(fault, status):
    em, sc = _sc_t1()
    fault(em)
    out = _buf(10)
    return sc.SCardTransmit(ECHO, len(ECHO), out, 10)[0] == status and out == _buf(10)


def _reader_control_invalid():
    em, sc = _sc_t1("pinpad")
    verify = part10.feature_ioctl(part10.FEATURE_VERIFY_PIN_DIRECT)
    out = _buf(64)
    return sc.SCardControl(R.CM_IOCTL_GET_FEATURE_REQUEST, None, 0, out, None)[0] == \
        EFI_INVALID_PARAMETER and \
        sc.SCardControl(R.CM_IOCTL_GET_FEATURE_REQUEST, None, 0, out, 65)[0] == \
        EFI_INVALID_PARAMETER and \
        sc.SCardControl(verify, None, 0, out, 8)[0] == EFI_INVALID_PARAMETER and out == _buf(64)


def _reader_control_unsupported():
    em, sc = _sc_t1()
    verify = part10.feature_ioctl(part10.FEATURE_VERIFY_PIN_DIRECT)     # no PIN pad here
    return sc.SCardControl(verify, bytes(30), 30, _buf(8), 8)[0] == EFI_UNSUPPORTED and \
        sc.SCardControl(R.SCARD_CTL_CODE(42), None, 0, _buf(8), 8)[0] == EFI_UNSUPPORTED


def _reader_control_small():
    em, sc = _sc_t1("pinpad")
    out = _buf(8)
    st, n = sc.SCardControl(R.CM_IOCTL_GET_FEATURE_REQUEST, None, 0, out, 5)
    return (st, n) == (EFI_BUFFER_TOO_SMALL, len(part10.feature_tlv(sc.reader))) and \
        out == _buf(8)


def _reader_control_no_card():
    em, sc = _sc("pinpad")
    sc.SCardConnect(R.SCARD_AM_READER, R.SCARD_CA_NORESET, R.SCARD_PROTOCOL_UNDEFINED)
    verify = part10.feature_ioctl(part10.FEATURE_VERIFY_PIN_DIRECT)
    s = part10.build_verify_structure(bytes.fromhex("0020000108") + bytes(8))
    unpowered = sc.SCardControl(verify, s, len(s), _buf(8), 8)[0]
    em.remove_card(0)
    absent = sc.SCardControl(verify, s, len(s), _buf(8), 8)[0]
    return unpowered == EFI_NOT_READY and absent == EFI_NO_MEDIA


def _reader_control_denied():
    em, sc = _sc("pinpad")
    return sc.SCardControl(R.CM_IOCTL_GET_FEATURE_REQUEST, None, 0, _buf(64), 64)[0] == \
        EFI_ACCESS_DENIED


def _reader_control_failed():
    em, sc = _sc_t1("pinpad")
    em.unplug()
    out = _buf(64)
    return sc.SCardControl(R.CM_IOCTL_GET_FEATURE_REQUEST, None, 0, out, 64)[0] == \
        EFI_DEVICE_ERROR and out == _buf(64)


def _reader_attrib(card, attrib, buf, length, expect):
    em, sc = _sc(card=card)
    before = bytes(buf) if buf is not None else None
    st = sc.SCardGetAttrib(attrib, buf, length)[0]
    return st == expect and (buf is None or bytes(buf) == before)


def _reader_attrib_invalid():
    return all(_reader_attrib("minicard", R.SCARD_ATTR_VENDOR_NAME, b, n, EFI_INVALID_PARAMETER)
               for b, n in ((None, 10), (_buf(4), 0), (_buf(4), 5)))


def _reader_attrib_unsupported():
    em, sc = _sc_t1("au9560")             # APDU-level exchange: no host-side T=1 engine
    out = _buf(8)
    return sc.SCardGetAttrib(0x7FFF7FFF, out, 8) == (EFI_UNSUPPORTED, 8) and \
        sc.SCardGetAttrib(R.SCARD_ATTR_CURRENT_IFSC, out, 8) == (EFI_UNSUPPORTED, 8) and \
        out == _buf(8)


def _reader_attrib_small():
    em, sc = _sc()
    out = _buf(4)
    st, n = sc.SCardGetAttrib(R.SCARD_ATTR_VENDOR_NAME, out, 2)
    return st == EFI_BUFFER_TOO_SMALL and n == len(sc.reader.transport.manufacturer) + 1 and \
        out == _buf(4)


def _reader_attrib_gone():
    em, sc = _sc()
    em.unplug()
    return sc.SCardGetAttrib(R.SCARD_ATTR_VENDOR_NAME, _buf(64), 64)[0] == EFI_DEVICE_ERROR


def _locate_readers_skips():
    em = EmulatedReader("gemalto-pctwin", cards={0: MiniCard()})
    efi.set_host(Host([em]))
    ts = usb_transport.find_readers()
    em.unplug()
    lines = []
    return len(ts) == 1 and R.locate_readers(ts, log=lines.append) == [] and \
        lines[-1].startswith("cannot use reader 08E6:3437: IFD_NO_SUCH_DEVICE")


def _edge_context_invalid():
    em, card, edge = _edge()
    aids = _buf(8)
    csns = _buf(8)
    return edge.GetContext(2, aids, None, None)[0] == EFI_INVALID_PARAMETER and \
        edge.GetContext(None, None, 2, csns)[0] == EFI_INVALID_PARAMETER and \
        aids == _buf(8) and csns == _buf(8) and not edge.readers[0].connected


def _edge_connect_invalid():
    em, card, edge = _edge()
    aid = _buf(8)
    return edge.Connect(None, aid) == (EFI_INVALID_PARAMETER, None) and \
        edge.Connect(bytes(4), None) == (EFI_INVALID_PARAMETER, None) and aid == _buf(8) and \
        not edge.readers[0].connected


def _edge_connect_no_card():
    em, card, edge = _edge()
    other_csn = edge.Connect(bytes(16), None)
    em2, card2, empty = _edge(with_card=False)
    return other_csn == (EFI_NO_MEDIA, None) and empty.Connect() == (EFI_NO_MEDIA, None) \
        and not edge.readers[0].connected


def _edge_disconnect_invalid():
    em, card, edge, h = _edge_connected()
    return edge.Disconnect(h + 1) == EFI_INVALID_PARAMETER and edge.Disconnect(None) == \
        EFI_INVALID_PARAMETER and edge.readers[0].connected


def _edge_disconnect_removed():
    em, card, edge, h = _edge_connected()
    em.remove_card(0)
    return edge.Disconnect(h) == EFI_SUCCESS and not edge.readers[0].connected and \
        edge.Disconnect(h) == EFI_INVALID_PARAMETER


def _edge_calls(edge, h):
    """Every Edge function taking an SCardHandle, called with valid other arguments."""
    return (
        lambda: edge.GetCsn(h, _buf(16)),
        lambda: edge.GetReaderName(h, 100, _buf(100))[0],
        lambda: edge.VerifyPin(h, len(PIN), PIN)[0],
        lambda: edge.GetPinRemaining(h)[0],
        lambda: edge.GetData(h, E.DATA_ID_CHUID, 10, _buf(10))[0],
        lambda: edge.GetCredential(h, 0, None)[0],
        lambda: edge.SignData(h, 1, RSA_SIG, SHA256, PKCS1, bytes(32), _buf(256)),
        lambda: edge.DecryptData(h, 3, SHA256, PNONE, 256, bytes(256), 300, _buf(300))[0],
        lambda: edge.BuildDHAgreement(h, 4, bytes(32), bytes(32), _buf(32)),
    )


def _edge_handle_unknown():
    em, card, edge, h = _edge_connected()
    ok = [f() for f in _edge_calls(edge, h + 1)] == [EFI_INVALID_PARAMETER] * 9 and \
        [f() for f in _edge_calls(edge, None)] == [EFI_INVALID_PARAMETER] * 9
    return ok and card.pin_remaining == 3


def _edge_handle_removed():
    em, card, edge, h = _edge_connected()
    em.remove_card(0)
    return [f() for f in _edge_calls(edge, h)] == [EFI_NO_MEDIA] * 9 and h in edge.handles


def _edge_csn_short():
    em, card, edge, h = _edge_connected()
    csn = _buf(8)
    return edge.GetCsn(h, csn) == EFI_INVALID_PARAMETER and csn == _buf(8)


def _edge_reader_name_null():
    em, card, edge, h = _edge_connected()
    return edge.GetReaderName(h, None, _buf(100)) == (EFI_INVALID_PARAMETER, None) and \
        edge.GetReaderName(h, None, None) == (EFI_INVALID_PARAMETER, None)


def _edge_reader_name_small():
    em, card, edge, h = _edge_connected()
    need = len(R.str_to_char16(edge.readers[0].name))
    out = _buf(4)
    return edge.GetReaderName(h, 4, out) == (EFI_BUFFER_TOO_SMALL, need) and out == _buf(4) \
        and edge.GetReaderName(h, 0, None) == (EFI_BUFFER_TOO_SMALL, need)


def _edge_pin_invalid():
    em, card, edge, h = _edge_connected()
    cases = ((0, PIN), (-1, PIN), (5, b"12345"), (9, b"123456789"), (6, b"12a456"), (8, PIN))
    return all(edge.VerifyPin(h, n, p) == (EFI_INVALID_PARAMETER, False, 0) for n, p in cases) \
        and card.pin_remaining == 3


def _edge_pin_no_pad():
    em, card, edge, h = _edge_connected()
    return edge.VerifyPin(h, -1, None) == (EFI_UNSUPPORTED, False, 0) and \
        edge.VerifyPin(h, 0, None) == (EFI_UNSUPPORTED, False, 0) and card.pin_remaining == 3


def _edge_pin_wrong():
    em, card, edge, h = _edge_connected()
    wrong = [edge.VerifyPin(h, 6, b"654321") for _ in range(3)]
    return wrong == [(EFI_SUCCESS, False, 2), (EFI_SUCCESS, False, 1),
                     (EFI_SUCCESS, False, 0)] and \
        edge.VerifyPin(h, 6, PIN) == (EFI_SUCCESS, False, 0)       # blocked: 6983


def _edge_get_data(cases, expect):
    em, card, edge, h = _edge_connected()
    outs = []
    for data_id, size, make in cases:
        out = make()
        outs.append(out)
        if edge.GetData(h, data_id, size, out)[0] != expect:
            return False
    return all(o is None or o == _buf(len(o)) for o in outs)


def _edge_data_pin():
    em, card, edge, h = _edge_connected(card_class=_PinProtectedObjectCard)
    out = _buf(64)
    return edge.GetData(h, E.DATA_ID_PRINTED_INFORMATION, 64, out) == \
        (EFI_ACCESS_DENIED, 64) and out == _buf(64) and \
        edge.GetData(h, E.DATA_ID_CHUID, 0, None)[0] == EFI_BUFFER_TOO_SMALL


def _edge_data_small():
    em, card, edge, h = _edge_connected()
    n = len(card.data_object(TAG_CHUID))
    out = _buf(8)
    return edge.GetData(h, E.DATA_ID_CHUID, 0, None) == (EFI_BUFFER_TOO_SMALL, n) and \
        edge.GetData(h, E.DATA_ID_CHUID, 8, out) == (EFI_BUFFER_TOO_SMALL, n) and out == _buf(8)


def _edge_credential_invalid():
    em, card, edge, h = _edge_connected()
    out = _buf(10)
    return all(edge.GetCredential(h, n, b)[0] == EFI_INVALID_PARAMETER
               for n, b in ((None, None), (10, None), (20, out), ("10", out))) and out == _buf(10)


def _edge_credential_small():
    em, card, edge, h = _edge_connected()
    st, n = edge.GetCredential(h, 0, None)
    out = _buf(8)
    return st == EFI_BUFFER_TOO_SMALL and n > 8 and \
        edge.GetCredential(h, 8, out) == (EFI_BUFFER_TOO_SMALL, n) and out == _buf(8)


def _edge_sign_invalid():
    em, card, edge, h = _edge_connected(verified=True)
    d = bytes(32)
    sig = _buf(256)
    cases = ((9, RSA_SIG, SHA256, PKCS1, d, sig), (1, E.SC_EDGE_ECDSA_256, SHA256, PKCS1, d, sig),
             (3, E.SC_EDGE_RSA_EXCHANGE, SHA256, PKCS1, d, sig), (1, RSA_SIG, None, PKCS1, d, sig),
             (1, RSA_SIG, SHA256, E.EFI_PADDING_RSAES_OAEP_GUID, d, sig),
             (1, RSA_SIG, SHA256, PKCS1, bytes(20), sig), (1, RSA_SIG, SHA256, PKCS1, d, _buf(100)))
    return all(edge.SignData(h, *c) == EFI_INVALID_PARAMETER for c in cases) and sig == _buf(256)


def _edge_sign_pss_no_hash():
    em, card, edge, h = _edge_connected(verified=True, hash_functions={})
    sig = _buf(256)
    return edge.SignData(h, 1, RSA_SIG, SHA256, E.EFI_PADDING_RSASSA_PSS_GUID, bytes(32),
                         sig) == EFI_UNSUPPORTED and sig == _buf(256)


def _edge_sign_no_pin():
    em, card, edge, h = _edge_connected()
    sig = _buf(256)
    first = edge.SignData(h, 1, RSA_SIG, SHA256, PKCS1, bytes(32), sig)
    # key 9C (KeyId 2) is PIN Always: one signature per VerifyPin
    edge.VerifyPin(h, len(PIN), PIN)
    ec_sig = _buf(64)
    once = edge.SignData(h, 2, E.SC_EDGE_ECDSA_256, SHA256, PKCS1, bytes(32), ec_sig)
    again = edge.SignData(h, 2, E.SC_EDGE_ECDSA_256, SHA256, PKCS1, bytes(32), _buf(64))
    return first == EFI_ACCESS_DENIED and sig == _buf(256) and once == EFI_SUCCESS and \
        again == EFI_ACCESS_DENIED


_CT = bytes(255) + b"\x01"        # RSA raw: 1^d = 1, a block of no padding but "none"


def _edge_decrypt_invalid():
    em, card, edge, h = _edge_connected(verified=True)
    P = E.EFI_PADDING_RSAES_PKCS1V1P5_GUID
    out = _buf(300)
    cases = ((1, SHA256, P, 256, _CT, 300, out), (7, SHA256, P, 256, _CT, 300, out),
             (3, None, P, 256, _CT, 300, out), (3, SHA256, PKCS1, 256, _CT, 300, out),
             (3, SHA256, P, 0, _CT, 300, out), (3, SHA256, P, 128, _CT[:128], 300, out),
             (3, SHA256, P, 256, _CT, None, out), (3, SHA256, P, 256, _CT, 300, None),
             (3, SHA256, P, 256, _CT, 400, out))
    return all(edge.DecryptData(h, *c)[0] == EFI_INVALID_PARAMETER for c in cases) and \
        out == _buf(300)


def _edge_decrypt_no_pin():
    em, card, edge, h = _edge_connected()
    out = _buf(300)
    return edge.DecryptData(h, 3, SHA256, PNONE, 256, _CT, 300, out) == \
        (EFI_ACCESS_DENIED, 300) and out == _buf(300)


def _edge_decrypt_bad_block():
    em, card, edge, h = _edge_connected(verified=True)
    out = _buf(300)
    return edge.DecryptData(h, 3, SHA256, E.EFI_PADDING_RSAES_PKCS1V1P5_GUID, 256, _CT, 300,
                            out)[0] == EFI_DEVICE_ERROR and out == _buf(300)


def _edge_decrypt_small():
    em, card, edge, h = _edge_connected(verified=True)
    out = _buf(16)
    return edge.DecryptData(h, 3, SHA256, PNONE, 256, _CT, 10, out) == \
        (EFI_BUFFER_TOO_SMALL, 256) and out == _buf(16)


def _edge_dh_invalid():
    em, card, edge, h = _edge_connected(verified=True)
    z = _buf(32)
    q = bytes(32)
    cases = ((1, q, q, z), (9, q, q, z), (4, bytes(31), q, z), (4, q, None, z), (4, q, q, _buf(8)))
    return all(edge.BuildDHAgreement(h, *c) == EFI_INVALID_PARAMETER for c in cases) and \
        z == _buf(32)


def _edge_decoders():
    try:
        E.tlv_items(b"\x30\x05\x01")
    except E.EdgeError as e:
        assert e.name == "EFI_DEVICE_ERROR"
    else:
        raise AssertionError("tlv_items took a cut TLV")
    E.parse_credentials(b"\x00\x01\x01\x01\x00")


class _Runtime:
    """Answers as uefi/runtime/ck_host.c does: "=value", or "!status name message";
    ``answer`` replaces every answer (a runtime out of step)."""

    def __init__(self, answer=None):
        self.answer = answer

    def call(self, name, payload):
        if self.answer is not None:
            return self.answer
        if name == "rng":
            return "=" + "00" * int(payload)
        return "!%016x %s unknown service" % (EFI_UNSUPPORTED, status_name(EFI_UNSUPPORTED))


def _efi_call(host, name, payload):
    efi.set_host(host)
    return efi.call(name, payload)


def _efi_malformed_answers():
    for answer in ("?", "", "!zz EFI_WHAT x"):
        try:
            _efi_call(_Runtime(answer), "rng", "4")
        except efi.EfiError as e:
            assert e.name == "EFI_DEVICE_ERROR", (answer, e.name)
            continue
        raise AssertionError("answer %r taken" % answer)
    _efi_call(_Runtime("=ok"), "rng", "4")          # a well-formed answer is a value
    _efi_call(_Runtime("?"), "rng", "4")


def _efi_argument_range():
    efi.set_host(_Runtime("?"))        # any call reaching the runtime would fail otherwise
    for fn in (lambda: efi.usb_bulk_in(1, 0x02, 64), lambda: efi.usb_bulk_out(1, 0x81, b"x"),
               lambda: efi.stall(-1), lambda: efi.random_bytes(0)):
        try:
            fn()
        except efi.EfiError as e:
            assert e.name == "EFI_INVALID_PARAMETER"
            continue
        raise AssertionError("argument accepted")
    efi.usb_bulk_in(0, 0x82, 64)


def _efi_transport(fault):
    em = EmulatedReader("gemalto-pctwin", cards={0: MiniCard()})
    host = Host([em]) if fault != "other" else _FailingHost([em])
    efi.set_host(host)
    t = usb_transport.find_readers()[0]
    if fault == "stall":
        em.faults.stall("bulk_in")
    elif fault == "gone":
        t.close()
        try:
            t.bulk_in(64, 5)
        except ReaderRemoved:
            pass
        else:
            raise AssertionError("a closed transport transferred")
        t = usb_transport.find_readers()[0]
        em.unplug()
        try:
            t.bulk_out(b"\x65" + bytes(9), 100)
        except ReaderRemoved:
            em.plug()
        else:
            raise AssertionError("an unplugged reader took a bulk-OUT")
        # plugged again: still gone for this transport (the bulk_in below)
    t.bulk_in(64, 5)


class _FailingHost(Host):
    """A host controller error that is neither a stall nor a timeout (UsbStatus CRC)."""

    def call(self, name, payload):
        if name == "usb.bulk_in":
            return "!%016x EFI_DEVICE_ERROR transfer failed, UsbStatus 0x00000004" % \
                EFI_DEVICE_ERROR
        return Host.call(self, name, payload)


# (entry, condition) -> callable. A callable for an exception row must raise;
# one for a value row returns True when the value is the documented one.
PROVOKE = {
    ("parse_atr(data)", "text that is not hex"): lambda: A.parse_atr("3B 0G"),
    ("parse_atr(data)", "no bytes"): lambda: A.parse_atr(b""),
    ("parse_atr(data)", "TS is neither 3B nor 3F (after inverse decoding)"):
        lambda: A.parse_atr(b"\x12\x00"),
    ("parse_atr(data)", "truncated, TCK wrong or over 33 bytes"):
        lambda: bool(A.parse_atr(b"\x3B\xF0").warnings) and bool(
            A.parse_atr(b"\x3B\x80\x01\x00").warnings),
    ("build_pps_request(protocol, fi, di, n)", "protocol/Fi/Di out of range"):
        lambda: P.build_pps_request(0, 512, None),
    ("parse_pps_response(request, response)", "request is not a PPS request"):
        lambda: P.parse_pps_response(b"\x00\x01", PPS_REQ),
    ("parse_pps_response(request, response)", "no answer bytes"):
        lambda: P.parse_pps_response(PPS_REQ, b""),
    ("parse_pps_response(request, response)", "answer cut short"):
        lambda: P.parse_pps_response(PPS_REQ, PPS_REQ[:2]),
    ("parse_pps_response(request, response)", "PPSS is not FF"):
        lambda: P.parse_pps_response(PPS_REQ, b"\xFE" + PPS_REQ[1:]),
    ("parse_pps_response(request, response)", "PCK check fails"):
        lambda: P.parse_pps_response(PPS_REQ, PPS_REQ[:-1] + bytes((PPS_REQ[-1] ^ 1,))),
    ("parse_pps_response(request, response)", "bytes after PCK"):
        lambda: P.parse_pps_response(PPS_REQ, PPS_REQ + b"\x00"),
    ("parse_pps_response(request, response)", "protocol differs from the request"):
        lambda: P.parse_pps_response(PPS_REQ, P.build_pps_request(1, 512, 32)),
    ("parse_pps_response(request, response)", "PPS1/PPS2/PPS3 the request did not send"):
        lambda: P.parse_pps_response(P.build_pps_request(0), P.build_pps_request(0, 512, 32)),
    ("CommandAPDU.parse(raw)", "fewer than 4 bytes"): lambda: AP.CommandAPDU.parse(b"\x00"),
    ("CommandAPDU.parse(raw)", "Lc/Le encoding does not match the length"):
        lambda: AP.CommandAPDU.parse(b"\x00\xA4\x04\x00\x05\x01"),
    ("CommandAPDU(cla, ins, p1, p2, data, ne)", "a header byte outside 0..255"):
        lambda: AP.CommandAPDU(0x100, 0, 0, 0),
    ("CommandAPDU(cla, ins, p1, p2, data, ne)", "more than 65535 data bytes"):
        lambda: AP.CommandAPDU(0, 0xDA, 0, 0, b"\x00" * 65536),
    ("CommandAPDU(cla, ins, p1, p2, data, ne)", "Ne outside 0..65536"):
        lambda: AP.CommandAPDU(0, 0xB0, 0, 0, ne=65537),
    ("ResponseAPDU.parse(raw)", "fewer than 2 bytes"): lambda: AP.ResponseAPDU.parse(b"\x90"),
    ("transmit_with_auto_response(cmd, transmit, max_rounds)",
     "61xx/6Cxx answers beyond max_rounds"):
        lambda: AP.transmit_with_auto_response(b"\x00\xB0\x00\x00\x00",
                                               lambda c: b"\x61\x10", 4),
    ("chain(cmd, max_lc)", "max_lc outside 1..255"):
        lambda: AP.chain(b"\x00\xDA\x00\x00\x02\x01\x02", 0),
    ("decode_bulk_in(buf) / decode_bulk_out(buf) / decode_message(buf)",
     "fewer than 10 bytes or fewer than dwLength announces"):
        lambda: C.decode_bulk_in(bytes.fromhex("80 05000000 00 00 000000 90")),
    ("decode_bulk_in(buf) / decode_bulk_out(buf) / decode_message(buf)",
     "unknown bMessageType"): lambda: C.decode_message(bytes(10)),
    ("decode_bulk_in(buf) / decode_bulk_out(buf)", "a message of the other direction"):
        lambda: C.decode_bulk_in(bytes.fromhex("65 00000000 00 00 000000")),
    ("decode_bulk_in(buf) / decode_bulk_out(buf) / decode_message(buf)",
     "dwLength above max_length (e.g. a peer announcing 4 GB)"):
        lambda: C.decode_bulk_in(bytes.fromhex("80 FFFFFFFF 00 00 000000")),
    ("decode_bulk_in(buf) / decode_bulk_out(buf)", "bytes after dwLength"):
        lambda: C.decode_bulk_in(bytes.fromhex("80 00000000 00 00 000000 00")),
    ("decode_bulk_in(buf) / decode_bulk_out(buf)",
     "dwLength differs from the message's fixed length"):
        lambda: C.decode_bulk_out(bytes.fromhex("65 01000000 00 00 000000 00")),
    ("BulkInReassembler.feed(data)", "header announces more than max_message_length"):
        lambda: C.BulkInReassembler().feed(bytes.fromhex("80 FFFFFFFF 00 00 000000")),
    ("check_response(msg, bSlot, bSeq)", "command failed (bmCommandStatus 1)"):
        lambda: C.check_response(C.decode_bulk_in(bytes.fromhex("80 00000000 00 00 41 FE 00"))),
    ("decode_interrupt(buf)", "empty, not 50/51, or a bad length"):
        lambda: C.decode_interrupt(b"\x51\x00"),
    ("parse_ccid_descriptor(data)", "shorter than 54 bytes or wrong type"):
        lambda: CD.parse_ccid_descriptor(b"\x36\x21"),
    ("find_ccid_interfaces(config)", "malformed configuration descriptor"):
        lambda: CD.find_ccid_interfaces(bytes.fromhex("09 02 20 00 01 01 00 80 32 00 04")),
    ("decode_block(data, edc) / check_block(data, edc)", "shorter than prologue + epilogue"):
        lambda: T1.decode_block(b"\x00\x00"),
    ("decode_block(data, edc) / check_block(data, edc)", "EDC (LRC/CRC) wrong"):
        lambda: T1.decode_block(b"\x00\x00\x00\x01"),
    ("decode_block(data, edc) / check_block(data, edc)", "LEN FF or LEN not the block size"):
        lambda: T1.decode_block(b"\x00\x00\xFF\xFF"),
    ("decode_block(data, edc) / check_block(data, edc)", "NAD FF"):
        lambda: T1.decode_block(b"\xFF\x00\x00\xFF"),
    ("decode_block(data, edc) / check_block(data, edc)", "reserved PCB bits"):
        lambda: T1.decode_block(b"\x00\x1F\x00\x1F"),
    ("i_block(ns, more, inf) / Block.encode()", "INF over 254 bytes"):
        lambda: T1.i_block(0, False, b"\x00" * 255).encode(),
    ("T1Reader.receive(data) / T1Reader.timeout()", "call with no block outstanding"):
        lambda: T1.T1Reader().receive(b"\x00\x00\x00\x00"),
    ("T1Reader.receive(data) / T1Reader.timeout()",
     "invalid or missing blocks, retries exhausted and RESYNCH failed"):
        lambda: _t1_run(lambda b, t: b"\x00\x00"),
    ("T1Reader.receive(data) / T1Reader.timeout()", "the card never answered the exchange"):
        lambda: _t1_run(lambda b, t: None),
    ("T1Reader.receive(data) / T1Reader.timeout()",
     "RESYNCH succeeded after errors: the APDU may not have run"):
        lambda: _t1_run(_resynch_link),
    ("T1Reader.receive(data)", "more S(WTX) requests than the limit"):
        lambda: _t1_run(lambda b, t: _s(T1.S_WTX, False, b"\x01"), max_wtx=5),
    ("T1Reader.receive(data)", "card sent S(ABORT)"): lambda: _t1_run(_abort_link()),
    ("T1Reader.start(apdu)", "empty APDU or an exchange in progress"):
        lambda: T1.T1Reader().start(b""),
    ("check_header(header)", "not 5 bytes, CLA FF, INS 6x/9x"):
        lambda: T0.check_header(b"\xFF\xA4\x00\x00\x00"),
    ("ProcedureEngine.feed(data)", "procedure byte neither NULL, ACK, ~ACK nor SW1"):
        lambda: _t0_engine_feed(b"\x12"),
    ("ProcedureEngine.feed(data)", "ACK with nothing left to move / bytes after SW2"):
        lambda: _t0_engine_feed(b"\x90\x00\x00"),
    ("ProcedureEngine.feed(data)", "more NULL bytes than max_null"):
        lambda: _t0_engine_feed(b"\x60" * 10, max_null=3),
    ("T0Reader.transceive(apdu, link)", "the link returns None (no answer in WT)"):
        lambda: _t0_transceive([None]),
    ("T0Reader.transceive(apdu, link)", "malformed command APDU"):
        lambda: T0.T0Reader().transceive(b"\x00\xA4\x04\x00\x05\x01", lambda t, w: None),
    ("T0Reader.transceive(apdu, link)", "61xx/6Cxx rounds beyond the limit"):
        lambda: _t0_transceive([b"\x61\x10"] * 20, auto_get_response=True, max_rounds=4),
    ("Transport.bulk_in / bulk_out / interrupt_in / control", "nothing within timeout_ms"):
        lambda: _transport("timeout"),
    ("Transport.bulk_in / bulk_out / interrupt_in / control", "endpoint halted"):
        lambda: _transport("stall"),
    ("Transport.bulk_in / bulk_out / interrupt_in / control", "device gone"):
        lambda: _transport("gone"),
    ("Reader.transmit(slot, apdu) / transmit_many / power_on / connect",
     "no card in the slot, or card removed during the exchange"): _driver_no_card,
    ("Reader.transmit(slot, apdu) / transmit_many / power_on / connect",
     "card mute, CCID answer missing, or time extensions beyond the limit"): _driver_mute,
    ("Reader.transmit(slot, apdu) / transmit_many / power_on / connect", "reader unplugged"):
        _driver_unplugged,
    ("Reader.transmit(slot, apdu) / transmit_many / power_on / connect",
     "protocol error the engines could not recover (T=1 resynch failed, bad CCID answer)"):
        _driver_comm_error,
    ("Reader.transmit(slot, apdu) / transmit_many / power_on / connect",
     "bulk-IN stalled and CLEAR_FEATURE(ENDPOINT_HALT) failed, or stalled again after it "
     "(one clear and one retry per answer; a single stall is recovered)"):
        _driver_stall_not_cleared,
    ("Reader.transmit(slot, apdu)", "slot not powered"): _driver_unpowered,
    ("Reader.transmit(slot, apdu)", "request_abort() during the exchange"): _driver_cancelled,
    ("Reader.set_protocol(slot, preferred)", "card and reader share no protocol"):
        _driver_no_protocol,
    ("Reader.set_protocol(slot, preferred)", "PPS refused at every speed"): _driver_pts_failure,
    ("Reader.power_on(slot)", "no voltage class works"): _driver_power_action,
    ("Reader.escape / secure / control", "reader does not offer it"): _driver_not_supported,
    ("SCardConnect / SCardTransmit / SCardStatus / ...", "handle or context not valid"):
        lambda: pcsc.SCardStatus(0x7FFFFFF1),
    ("SCardConnect(hContext, szReader, ...)", "reader name unknown"):
        lambda: pcsc.SCardConnect(_pcsc()[1], "No Such Reader 00 00", 2, 3),
    ("SCardConnect(hContext, szReader, ...)", "no card in the reader"): _pcsc_no_card,
    ("SCardConnect / SCardReconnect", "share mode conflicts with another handle"): _pcsc_sharing,
    ("SCardConnect / SCardTransmit", "protocol not available / PCI mismatch"): _pcsc_proto,
    ("SCardTransmit(hCard, pci, apdu)", "card removed since connect"): _pcsc_removed,
    ("SCardTransmit(hCard, pci, apdu)", "card reset by another handle"): _pcsc_reset_warning,
    ("SCardTransmit(hCard, pci, apdu)", "reader gone"): _pcsc_unplugged,
    ("SCardTransmit(hCard, pci, apdu)", "driver error (IFD_*)"): _pcsc_mute,
    ("SCardGetStatusChange(hContext, dwTimeout, states)", "nothing changed in dwTimeout"):
        _pcsc_timeout,
    ("SCardGetStatusChange(hContext, dwTimeout, states)", "SCardCancel called"):
        _pcsc_cancelled,
    ("card.process_apdu(apdu)", "any bytes, however malformed"):
        lambda: all(len(MiniCard().process_apdu(x)) >= 2 and
                    len(make_card("usim").process_apdu(x)) >= 2
                    for x in (b"", b"\x00", b"\x00\xA4\x04\x00\xFF", b"\xFF" * 300)),
    ("T1Card.receive_block(data)", "bad EDC / malformed block"):
        lambda: T1Card(MiniCard()).receive_block(b"\x00\x00\x00\x01") ==
        T1.r_block(0, T1.R_EDC_ERROR).encode(),
    ("T0Card.process_tpdu(tpdu)", "any TPDU"):
        lambda: T0Card(MiniCard()).process_tpdu(b"\x00\x00\x00\x00\x00")[-2:] == b"\x6D\x00",
    ("make_card(name, image, **options)", "unknown card or option, bad image"):
        lambda: make_card("no-such-card"),
    ("vicc.Decoder.feed(data) / decode_frame(data)", "length above max_payload (e.g. FFFF)"):
        lambda: vicc.Decoder(max_payload=1024).feed(b"\xFF\xFF"),
    ("vicc.Decoder.feed(data) / decode_frame(data)", "zero-length frame"):
        lambda: vicc.decode_frame(b"\x00\x00"),
    ("vicc.Decoder.feed(data) / decode_frame(data)", "1-byte frame not a control code"):
        lambda: vicc.decode_frame(b"\x00\x01\x09"),
    ("vicc.decode_frame(data)", "not exactly one frame"): lambda: vicc.decode_frame(b"\x00\x05\x00"),
    ("vscard.Decoder.feed(data) / decode_message(data)", "length above max_payload (e.g. 4 GB)"):
        lambda: vscard.Decoder().feed(struct.pack(">III", 7, 0, 0xFFFFFFFF)),
    ("vscard.Decoder.feed(data) / decode_message(data)", "unknown message type"):
        lambda: vscard.decode_message(struct.pack(">III", 99, 0, 0)),
    ("vscard.decode_message(data)", "not exactly one message"):
        lambda: vscard.decode_message(struct.pack(">III", 7, 0, 4) + b"\x00"),
    ("vscard.decode_init(payload) / decode_error(payload)", "malformed payload"):
        lambda: vscard.decode_init(b"VSCX\x00\x00\x00\x02"),
    ("usbredir.Codec.feed(data)", "length above max_length (e.g. 4 GB)"):
        lambda: _usbredir_host().feed(struct.pack("<III", usbredir.HELLO, 0xFFFFFFFF, 0)),
    ("usbredir.Codec.feed(data)", "unknown packet type"):
        lambda: _usbredir_host().feed(struct.pack("<III", 0x7777, 0, 0)),
    ("usbredir.Codec.feed(data)", "a packet before the hello"):
        lambda: _usbredir_host().feed(struct.pack("<III", usbredir.RESET, 0, 0)),
    ("usbredir.Codec.feed(data)", "hello or body of the wrong size"):
        lambda: _usbredir_host().feed(struct.pack("<III", usbredir.HELLO, 3, 0) + b"abc"),
    ("usbredir.Codec.feed(data)", "a packet only this side sends"):
        lambda: _usbredir_wrong_side(),
    ("EmulatedReader.bulk_out / bulk_in / interrupt_in / control",
     "faults.unplug_on_command or unplug()"):
        lambda: _emu(lambda em: (em.unplug(), em.bulk_in(64, 10))),
    ("EmulatedReader.bulk_in / interrupt_in", "nothing to read before timeout"):
        lambda: _emu(lambda em: em.bulk_in(64, 10)),
    ("EmulatedReader.bulk_out / bulk_in / interrupt_in / control", "faults.stall(endpoint)"):
        lambda: _emu(lambda em: (em.faults.stall("bulk_in"), em.bulk_in(64, 10))),
    ("EmulatedReader.bulk_out(data)", "malformed CCID message"): _emu_malformed,
    # -- EFI facades: a value row's callable checks the status and that nothing moved
    (_RD + "SCardConnect(AccessMode, CardAction, PreferredProtocols)",
     "AccessMode or CardAction not valid, or SCARD_AM_READER with a protocol or a card action"):
        _reader_connect_invalid,
    (_RD + "SCardConnect(AccessMode, CardAction, PreferredProtocols)",
     "the lock is already held (SCardConnect twice) or an exchange is pending"):
        _reader_connect_twice,
    (_RD + "SCardConnect(AccessMode, CardAction, PreferredProtocols)",
     "SCARD_AM_CARD and no card in the reader"): _reader_connect_no_card,
    (_RD + "SCardConnect(AccessMode, CardAction, PreferredProtocols)",
     "a card is present but gives no ATR (mute, power-up failed)"): _reader_connect_mute,
    (_RD + "SCardConnect(AccessMode, CardAction, PreferredProtocols)",
     "no protocol this stack runs asked for (RAW, none), or the card runs / negotiates "
     "another one"): _reader_connect_unsupported,
    (_RD + "SCardConnect(AccessMode, CardAction, PreferredProtocols)",
     "the reader is gone (unplugged)"): _reader_connect_gone,
    (_RD + "SCardDisconnect(CardAction)", "CardAction not valid"): _reader_disconnect_invalid,
    (_RD + "SCardDisconnect(CardAction)", "SCARD_CA_EJECT (no CCID reader here ejects)"):
        _reader_disconnect_eject,
    (_RD + "SCardDisconnect(CardAction)",
     "no SCardConnect before, or the card was removed before the call"):
        _reader_disconnect_success,
    (_RD + "SCardDisconnect(CardAction)",
     "the reader is gone and CardAction asks for a power action"): _reader_disconnect_gone,
    (_RD + "SCardStatus(ReaderName, ReaderNameLength, Atr, AtrLength)",
     "a buffer without its length, or a length larger than its buffer"): _reader_status_invalid,
    (_RD + "SCardStatus(ReaderName, ReaderNameLength, Atr, AtrLength)",
     "ReaderNameLength or AtrLength smaller than the value"): _reader_status_small,
    (_RD + "SCardStatus(ReaderName, ReaderNameLength, Atr, AtrLength)", "the reader is gone"):
        _reader_status_gone,
    (_RD + "SCardTransmit(CAPDU, CAPDULength, RAPDU, RAPDULength)",
     "CAPDU NULL, CAPDULength 0 or past CAPDU, RAPDU NULL or RAPDULength past RAPDU"):
        _reader_transmit_invalid,
    (_RD + "SCardTransmit(CAPDU, CAPDULength, RAPDU, RAPDULength)",
     "no SCardConnect lock held, or an exchange already pending (re-entry from a callback)"):
        _reader_transmit_denied,
    (_RD + "SCardTransmit(CAPDU, CAPDULength, RAPDU, RAPDULength)",
     "no card in the reader (removed)"): _reader_transmit_no_card,
    (_RD + "SCardTransmit(CAPDU, CAPDULength, RAPDU, RAPDULength)",
     "card not powered (SCARD_AM_READER lock) or another card since SCardConnect"):
        _reader_transmit_not_ready,
    (_RD + "SCardTransmit(CAPDU, CAPDULength, RAPDU, RAPDULength)",
     "the answer is longer than RAPDULength"): _reader_transmit_small,
    (_RD + "SCardTransmit(CAPDU, CAPDULength, RAPDU, RAPDULength)",
     "the card does not answer in time (IFD_RESPONSE_TIMEOUT)"):
        lambda: _reader_transmit_fault(lambda em: em.faults.mute(0), EFI_TIMEOUT),
    (_RD + "SCardTransmit(CAPDU, CAPDULength, RAPDU, RAPDULength)",
     "the T=0 / T=1 engine gave up (resynch failed, bad blocks)"):
        lambda: _reader_transmit_fault(lambda em: em.faults.corrupt_t1(0, to="reader", times=50),
                                       EFI_PROTOCOL_ERROR),
    (_RD + "SCardTransmit(CAPDU, CAPDULength, RAPDU, RAPDULength)",
     "the reader is gone, or another driver failure"):
        lambda: _reader_transmit_fault(lambda em: em.unplug(), EFI_DEVICE_ERROR),
    (_RD + "SCardControl(ControlCode, InBuffer, InBufferLength, OutBuffer, OutBufferLength)",
     "OutBuffer without OutBufferLength, a length past its buffer, or a code that needs "
     "input (VERIFY/MODIFY PIN, escape) without it"): _reader_control_invalid,
    (_RD + "SCardControl(ControlCode, InBuffer, InBufferLength, OutBuffer, OutBufferLength)",
     "ControlCode not offered by this reader (FEATURE list, PC/SC part 10)"):
        _reader_control_unsupported,
    (_RD + "SCardControl(ControlCode, InBuffer, InBufferLength, OutBuffer, OutBufferLength)",
     "the output is longer than OutBufferLength"): _reader_control_small,
    (_RD + "SCardControl(ControlCode, InBuffer, InBufferLength, OutBuffer, OutBufferLength)",
     "the code needs a card and there is none / it is not powered"): _reader_control_no_card,
    (_RD + "SCardControl(ControlCode, InBuffer, InBufferLength, OutBuffer, OutBufferLength)",
     "no SCardConnect lock held, or an exchange already pending"): _reader_control_denied,
    (_RD + "SCardControl(ControlCode, InBuffer, InBufferLength, OutBuffer, OutBufferLength)",
     "the reader is gone, or the reader / card failed during the control"):
        _reader_control_failed,
    (_RD + "SCardGetAttrib(Attrib, OutBuffer, OutBufferLength)",
     "OutBuffer NULL, OutBufferLength 0 or past OutBuffer"): _reader_attrib_invalid,
    (_RD + "SCardGetAttrib(Attrib, OutBuffer, OutBufferLength)",
     "Attrib unknown, or not available here (IFSC / IFSD: the reader runs T=1 itself)"):
        _reader_attrib_unsupported,
    (_RD + "SCardGetAttrib(Attrib, OutBuffer, OutBufferLength)",
     "the attribute needs a card (ATR, protocol, F, D, IFSC, IFSD) and there is none"):
        lambda: _reader_attrib(None, R.SCARD_ATTR_ATR_STRING, _buf(40), 40, EFI_NO_MEDIA),
    (_RD + "SCardGetAttrib(Attrib, OutBuffer, OutBufferLength)",
     "the attribute needs a powered card and the card is not powered"):
        lambda: _reader_attrib("minicard", R.SCARD_ATTR_ATR_STRING, _buf(40), 40, EFI_NOT_READY),
    (_RD + "SCardGetAttrib(Attrib, OutBuffer, OutBufferLength)",
     "the value is longer than OutBufferLength"): _reader_attrib_small,
    (_RD + "SCardGetAttrib(Attrib, OutBuffer, OutBufferLength)", "the reader is gone"):
        _reader_attrib_gone,
    ("scard_reader.locate_readers(transports, log)",
     "a reader that cannot be opened (gone, bad descriptor)"): _locate_readers_skips,
    (_ED + "GetContext(AidTableSize, AidTable, CsnTableSize, CsnTable)",
     "AidTable / CsnTable shorter than the items asked for"): _edge_context_invalid,
    (_ED + "Connect(ScardCsn, ScardAid)",
     "ScardAid shorter than SCARD_AID_MAXSIZE or ScardCsn not SCARD_CSN_SIZE bytes"):
        _edge_connect_invalid,
    (_ED + "Connect(ScardCsn, ScardAid)",
     "no PIV card present, none with that CSN, or the reader was removed"):
        _edge_connect_no_card,
    (_ED + "Disconnect(SCardHandle)", "no connection for SCardHandle"): _edge_disconnect_invalid,
    (_ED + "Disconnect(SCardHandle)", "the card or reader was removed meanwhile"):
        _edge_disconnect_removed,
    (_ED_HANDLE, "no connection for SCardHandle"): _edge_handle_unknown,
    (_ED_HANDLE, "the card or reader of SCardHandle was removed"): _edge_handle_removed,
    (_ED + "GetCsn(SCardHandle, Csn)", "Csn shorter than SCARD_CSN_SIZE"): _edge_csn_short,
    (_ED + "GetReaderName(SCardHandle, ReaderNameLength, ReaderName)", "ReaderNameLength NULL"):
        _edge_reader_name_null,
    (_ED + "GetReaderName(SCardHandle, ReaderNameLength, ReaderName)",
     "ReaderNameLength smaller than the CHAR16 name"): _edge_reader_name_small,
    (_ED + "VerifyPin(SCardHandle, PinSize, PinCode)",
     "PinSize <= 0 with a PinCode, past PinCode, not 6..8, or a non-digit PIN"):
        _edge_pin_invalid,
    (_ED + "VerifyPin(SCardHandle, PinSize, PinCode)",
     "PinCode NULL and the reader has no secure PIN entry (FEATURE_VERIFY_PIN_DIRECT)"):
        _edge_pin_no_pad,
    (_ED + "VerifyPin(SCardHandle, PinSize, PinCode)",
     "wrong PIN (63Cx) or the PIN is blocked (6983)"): _edge_pin_wrong,
    (_ED + "GetData(SCardHandle, DataId, DataSize, Data)",
     "DataId or DataSize NULL, Data NULL with DataSize not 0, or Data shorter than DataSize"):
        lambda: _edge_get_data(((None, 10, lambda: _buf(10)),
                                (E.DATA_ID_CHUID, None, lambda: _buf(10)),
                                (E.DATA_ID_CHUID, 10, lambda: None),
                                (E.DATA_ID_CHUID, 20, lambda: _buf(10))), EFI_INVALID_PARAMETER),
    (_ED + "GetData(SCardHandle, DataId, DataSize, Data)",
     "DataId unknown to this driver, or the card does not hold the object (6A82)"):
        lambda: _edge_get_data((("00000000-0000-0000-0000-000000000000", 10, lambda: _buf(10)),
                                (E.DATA_ID_PRINTED_INFORMATION, 10, lambda: _buf(10))),
                               EFI_NOT_FOUND),
    (_ED + "GetData(SCardHandle, DataId, DataSize, Data)",
     "the card wants the PIN verified for the object (6982)"): _edge_data_pin,
    (_ED + "GetData(SCardHandle, DataId, DataSize, Data)",
     "the object is longer than DataSize (DataSize 0: a size query)"): _edge_data_small,
    (_ED + "GetCredential(SCardHandle, CredentialSize, CredentialList)",
     "CredentialSize NULL, CredentialList NULL with a size, or shorter than CredentialSize"):
        _edge_credential_invalid,
    (_ED + "GetCredential(SCardHandle, CredentialSize, CredentialList)",
     "the list is longer than CredentialSize (0: a size query)"): _edge_credential_small,
    (_ED + "SignData(SCardHandle, KeyId, KeyType, HashAlgorithm, PaddingMethod, "
     "HashedData, SignatureData)",
     "KeyId, KeyType, HashAlgorithm or PaddingMethod not valid / not the key's, HashedData "
     "not the hash size, SignatureData shorter than the signature"): _edge_sign_invalid,
    (_ED + "SignData(SCardHandle, KeyId, KeyType, HashAlgorithm, PaddingMethod, "
     "HashedData, SignatureData)",
     "RSASSA-PSS without a hash function for MGF1 (hash_functions)"): _edge_sign_pss_no_hash,
    (_ED + "SignData(SCardHandle, KeyId, KeyType, HashAlgorithm, PaddingMethod, "
     "HashedData, SignatureData)",
     "the PIN is not verified (6982; key 9C needs it before every use)"): _edge_sign_no_pin,
    (_ED + "DecryptData(SCardHandle, KeyId, HashAlgorithm, PaddingMethod, "
     "EncryptedSize, EncryptedData, PlaintextSize, PlaintextData)",
     "KeyId not an SC_EDGE_RSA_EXCHANGE key, HashAlgorithm / PaddingMethod not valid, "
     "EncryptedSize not the modulus size, a NULL or short buffer"): _edge_decrypt_invalid,
    (_ED + "DecryptData(SCardHandle, KeyId, HashAlgorithm, PaddingMethod, "
     "EncryptedSize, EncryptedData, PlaintextSize, PlaintextData)",
     "the PIN is not verified (6982)"): _edge_decrypt_no_pin,
    (_ED + "DecryptData(SCardHandle, KeyId, HashAlgorithm, PaddingMethod, "
     "EncryptedSize, EncryptedData, PlaintextSize, PlaintextData)",
     "the card's result is not a block of PaddingMethod (wrong key or ciphertext)"):
        _edge_decrypt_bad_block,
    (_ED + "DecryptData(SCardHandle, KeyId, HashAlgorithm, PaddingMethod, "
     "EncryptedSize, EncryptedData, PlaintextSize, PlaintextData)",
     "the plaintext is longer than PlaintextSize"): _edge_decrypt_small,
    (_ED + "BuildDHAgreement(SCardHandle, KeyId, dataQx, dataQy, DHAgreement)",
     "KeyId not an ECDH key, dataQx / dataQy not the key size, DHAgreement too short"):
        _edge_dh_invalid,
    ("scard_edge.parse_credentials(data) / tlv_items(data)",
     "malformed credential list / BER-TLV"): _edge_decoders,
    ("efi.call(name, payload)", "no UEFI runtime (the host module is missing)"):
        lambda: _efi_call(None, "rng", "4"),
    ("efi.call(name, payload)",
     "name or payload not str, or host.call refuses the call (RuntimeError)"):
        lambda: _efi_call(_Runtime(), "rng", 4),
    ("efi.call(name, payload)", "unknown service name (the runtime answers "
     "\"unknown service\")"): lambda: _efi_call(_Runtime(), "no.such.service", ""),
    ("efi.call(name, payload)",
     "malformed payload (a token the service does not accept, an unknown USB handle)"):
        lambda: _efi_call(Host([]), "usb.bulk_in", "99 130 1000 64"),
    ("efi.call(name, payload)",
     "an answer neither \"=value\" nor \"!status name message\", or a status not in hex"):
        _efi_malformed_answers,
    ("efi.stall / random_bytes / usb_bulk_in / usb_bulk_out / usb_control / ...",
     "an argument out of its range (handle, endpoint, length, timeout)"): _efi_argument_range,
    ("EfiUsbTransport.bulk_in / bulk_out / interrupt_in / control",
     "EFI_TIMEOUT, or EFI_DEVICE_ERROR with UsbStatus EFI_USB_ERR_TIMEOUT"):
        lambda: _efi_transport("timeout"),
    ("EfiUsbTransport.bulk_in / bulk_out / interrupt_in / control",
     "EFI_DEVICE_ERROR with UsbStatus EFI_USB_ERR_STALL (UEFI 2.10 §17.2.4)"):
        lambda: _efi_transport("stall"),
    ("EfiUsbTransport.bulk_in / bulk_out / interrupt_in / control",
     "EFI_NOT_FOUND, EFI_NO_MEDIA or an unknown USB handle (device unplugged), or close()d"):
        lambda: _efi_transport("gone"),
    ("EfiUsbTransport.bulk_in / bulk_out / interrupt_in / control",
     "any other EFI_STATUS, or a bulk-OUT that wrote less than the message"):
        lambda: _efi_transport("other"),
}


def _emu(fn):
    return fn(EmulatedReader("gemalto-pctwin", cards={0: MiniCard()}))


def _usbredir_wrong_side():
    c = _usbredir_host()
    c.feed(_usbredir_hello(c))
    hdr = "<IIQ" if c.ids64 else "<III"
    # device_connect is sent by the usb-host side, never received by it
    c.feed(struct.pack(hdr, usbredir.DEVICE_CONNECT, 10, 1) + bytes(10))


def _t0_engine_feed(data, **kw):
    eng = T0.ProcedureEngine(b"\x00\xB0\x00\x00\x02", **kw)
    eng.data_to_send()
    eng.feed(data)


def _row_id(row):
    return "%s|%s" % (row[1], row[2])


def test_every_row_has_a_provoker_and_nothing_else():
    keys = set((r[1], r[2]) for r in contract.ROWS)
    assert keys == set(PROVOKE), (keys ^ set(PROVOKE))
    assert len(keys) == len(contract.ROWS)       # no row twice
    layers = [l for l, _ in contract.LAYERS]
    assert all(r[0] in layers for r in contract.ROWS)
    assert all(len(r) == len(contract.FIELDS) and all(r) for r in contract.ROWS)


@pytest.mark.parametrize("row", contract.ROWS, ids=_row_id)
def test_row_is_honoured(row):
    fn = PROVOKE[(row[1], row[2])]
    if row[3] == "-":
        assert fn() is True
        return
    with pytest.raises(CcidkitError) as e:
        fn()
    err = e.value
    classes = [c.__name__ for c in type(err).__mro__]
    assert row[3] in classes, (row[3], type(err).__name__, str(err))
    names = row[4].split(" / ")
    if row[3] == "CCIDError" and row[1].startswith("check_response"):
        assert err.name == C.error_name(err.code)      # a bError name
        return
    if row[3] == "PCSCError" and "(from_reader_error)" in row[4]:
        names = [n.split(" ")[0] for n in row[4].split(" / ")]
    assert err.name in names, (err.name, names, str(err))


def test_efi_value_rows_name_real_statuses():
    # a returned status is named as UEFI 2.10 Appendix D names it (efi_status knows it)
    from ccidkit.uefi.fw import efi_status
    known = set(efi_status.status_name(getattr(efi_status, n)) for n in dir(efi_status)
                if n.startswith("EFI_") and isinstance(getattr(efi_status, n), int))
    rows = contract.rows_for("efi")
    assert len(rows) >= 60
    for r in rows:
        if r[3] == "-" and r[4].startswith("EFI_"):
            for n in r[4].split(" with ")[0].split(" / "):
                assert n in known, (r[1], n)
        elif r[3] in ("EfiError", "EdgeError"):
            assert all(n in known for n in r[4].split(" / ")), r
    assert "EFI_PROTOCOL_ERROR" in contract.names_for(_RD + "SCardTransmit")
    assert contract.exceptions_for("EfiUsbTransport.") == [
        "TransportTimeout", "TransportStall", "ReaderRemoved", "TransportError"]


def test_helpers():
    assert contract.rows_for("t1")[0][0] == "t1"
    assert "VSC_TOO_LONG" in contract.names_for("vscard.")
    assert contract.exceptions_for("usbredir.") == ["UsbredirError"]
    assert "T1_RESYNCHED" in contract.names_for("T1Reader.")


def test_errors_doc_is_current():
    from ccidkit.scripts import cmd_errors_doc
    with open(cmd_errors_doc.DEFAULT_PATH, encoding="utf-8") as f:
        assert f.read() == cmd_errors_doc.render()
    assert "| `parse_atr(data)` | no bytes | ATRError | ATR_EMPTY |" in cmd_errors_doc.render()
