"""EFI_SMART_CARD_READER_PROTOCOL (uefi/fw/scard_reader.py): one test per
@retval of UEFI 2.10 §35.6.1 that applies to a Python API (``This is NULL``
does not), over emulated readers behind the stand-in firmware host, so the
facade runs the in-firmware transport and driver."""

import pytest

from ccidkit.core import part10
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.reader import EmulatedReader
from ccidkit.uefi.fw import efi
from ccidkit.uefi.fw import scard_reader as R
from ccidkit.uefi.fw.efi_status import (
    EFI_SUCCESS, EFI_INVALID_PARAMETER, EFI_UNSUPPORTED, EFI_BUFFER_TOO_SMALL, EFI_NOT_READY,
    EFI_DEVICE_ERROR, EFI_ACCESS_DENIED, EFI_TIMEOUT, EFI_NO_MEDIA, EFI_PROTOCOL_ERROR,
)

from test_usb_transport_fake import Host

ECHO = bytes.fromhex("80EE000004DEADBEEF00")
ECHO_RSP = bytes.fromhex("DEADBEEF9000")
ANY = R.SCARD_PROTOCOL_T0 | R.SCARD_PROTOCOL_T1
FILL = 0xA5


@pytest.fixture
def make():
    """make(profile, card=MiniCard or None) -> (emulated reader, protocol instance)."""

    def build(profile="gemalto-pctwin", card="minicard", **kw):
        if card == "minicard":
            card = MiniCard()
        em = EmulatedReader(profile, cards={0: card} if card is not None else {}, **kw)
        efi.set_host(Host([em]))
        sc = R.locate_readers()
        assert len(sc) == 1
        return em, sc[0]

    yield build
    efi.set_host(None)


def buf(n):
    return bytearray([FILL]) * n


def connect_t1(sc):
    st, proto = sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET, R.SCARD_PROTOCOL_T1)
    assert (st, proto) == (EFI_SUCCESS, R.SCARD_PROTOCOL_T1)


# ================================================================ constants and tables

def test_guid_and_constants_are_the_specifications():
    assert R.EFI_SMART_CARD_READER_PROTOCOL_GUID == "2a4d1adf-21dc-4b81-a42f-8b8ee2380060"
    assert (R.SCARD_AM_READER, R.SCARD_AM_CARD) == (1, 2)
    assert (R.SCARD_CA_NORESET, R.SCARD_CA_COLDRESET, R.SCARD_CA_WARMRESET,
            R.SCARD_CA_UNPOWER, R.SCARD_CA_EJECT) == (0, 1, 2, 3, 4)
    assert (R.SCARD_UNKNOWN, R.SCARD_ABSENT, R.SCARD_INACTIVE, R.SCARD_ACTIVE) == (0, 1, 2, 3)
    assert R.CM_IOCTL_GET_FEATURE_REQUEST == 0x42000D48


def test_mapping_tables_between_uefi_and_pcsc():
    from ccidkit.core import pcsc
    assert R.state_from_pcsc(pcsc.SCARD_ABSENT) == R.SCARD_ABSENT
    assert R.state_from_pcsc(pcsc.SCARD_PRESENT | pcsc.SCARD_SWALLOWED) == R.SCARD_INACTIVE
    assert R.state_from_pcsc(pcsc.SCARD_PRESENT | pcsc.SCARD_POWERED |
                             pcsc.SCARD_NEGOTIABLE) == R.SCARD_ACTIVE
    assert R.state_from_pcsc(pcsc.SCARD_PRESENT | pcsc.SCARD_SWALLOWED | pcsc.SCARD_POWERED |
                             pcsc.SCARD_SPECIFIC) == R.SCARD_ACTIVE
    assert R.state_from_pcsc(pcsc.SCARD_UNKNOWN) == R.SCARD_UNKNOWN
    assert R.state_from_pcsc(0) == R.SCARD_UNKNOWN
    assert [R.pcsc_disposition(a) for a in range(5)] == [
        pcsc.SCARD_LEAVE_CARD, pcsc.SCARD_UNPOWER_CARD, pcsc.SCARD_RESET_CARD,
        pcsc.SCARD_UNPOWER_CARD, pcsc.SCARD_EJECT_CARD]
    assert R.pcsc_disposition(5) is None
    assert (R.protocol_bit(0), R.protocol_bit(1), R.protocol_bit(None)) == (1, 2, 0)


def test_char16_round_trip():
    raw = R.str_to_char16("Lecteur é 00 00")
    assert raw[-2:] == b"\x00\x00" and len(raw) == 2 * 16
    assert R.char16_to_str(raw) == "Lecteur é 00 00"


# ================================================================ SCardConnect

def test_connect_success_card_and_reader(make):
    em, sc = make()
    assert sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET, ANY)[0] == EFI_SUCCESS
    assert sc.SCardDisconnect(R.SCARD_CA_NORESET) == EFI_SUCCESS
    assert sc.SCardConnect(R.SCARD_AM_READER, R.SCARD_CA_NORESET,
                           R.SCARD_PROTOCOL_UNDEFINED) == (EFI_SUCCESS, 0)


def test_connect_invalid_access_mode_takes_no_lock(make):
    em, sc = make()
    for mode in (0, 3, 0x100):
        assert sc.SCardConnect(mode, R.SCARD_CA_NORESET, ANY) == (EFI_INVALID_PARAMETER, 0)
    connect_t1(sc)


def test_connect_invalid_card_action(make):
    em, sc = make()
    for ca in (R.SCARD_CA_UNPOWER, R.SCARD_CA_EJECT, 5, -1):
        assert sc.SCardConnect(R.SCARD_AM_CARD, ca, ANY)[0] == EFI_INVALID_PARAMETER
    assert not sc.connected


def test_connect_invalid_combination_for_reader_access(make):
    em, sc = make()
    assert sc.SCardConnect(R.SCARD_AM_READER, R.SCARD_CA_NORESET,
                           R.SCARD_PROTOCOL_T0)[0] == EFI_INVALID_PARAMETER
    assert sc.SCardConnect(R.SCARD_AM_READER, R.SCARD_CA_COLDRESET,
                           R.SCARD_PROTOCOL_UNDEFINED)[0] == EFI_INVALID_PARAMETER
    assert not sc.connected


def test_connect_not_ready_when_the_card_gives_no_atr(make):
    em, sc = make()
    em.faults.mute(0)
    assert sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_COLDRESET, ANY)[0] == EFI_NOT_READY
    assert not sc.connected


def test_connect_unsupported_protocols(make):
    em, sc = make()
    assert sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET,
                           R.SCARD_PROTOCOL_RAW)[0] == EFI_UNSUPPORTED
    assert sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET, 0)[0] == EFI_UNSUPPORTED
    connect_t1(sc)
    sc.SCardDisconnect(R.SCARD_CA_NORESET)
    # the card already runs T=1: asking for T=0 alone without a reset is refused
    assert sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET,
                           R.SCARD_PROTOCOL_T0)[0] == EFI_UNSUPPORTED
    assert sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_COLDRESET,
                           R.SCARD_PROTOCOL_T0) == (EFI_SUCCESS, R.SCARD_PROTOCOL_T0)


def test_connect_no_media(make):
    em, sc = make(card=None)
    assert sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET, ANY)[0] == EFI_NO_MEDIA
    assert not sc.connected
    # the reader itself needs no card
    assert sc.SCardConnect(R.SCARD_AM_READER, 0, 0)[0] == EFI_SUCCESS


def test_connect_access_denied_while_locked(make):
    em, sc = make()
    connect_t1(sc)
    assert sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET, ANY)[0] == EFI_ACCESS_DENIED
    assert sc.SCardConnect(R.SCARD_AM_READER, 0, 0)[0] == EFI_ACCESS_DENIED


def test_connect_device_error_when_the_reader_left(make):
    em, sc = make()
    em.unplug()
    assert sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET, ANY)[0] == EFI_DEVICE_ERROR


# ================================================================ SCardDisconnect

def test_disconnect_success_also_without_connect_and_after_removal(make):
    em, sc = make()
    assert sc.SCardDisconnect(R.SCARD_CA_UNPOWER) == EFI_SUCCESS      # never connected
    assert not sc.reader.slots[0].powered                            # and nothing done
    connect_t1(sc)
    em.remove_card(0)
    assert sc.SCardDisconnect(R.SCARD_CA_COLDRESET) == EFI_SUCCESS
    assert not sc.connected


def test_disconnect_unpower_and_resets(make):
    em, sc = make()
    connect_t1(sc)
    assert sc.SCardDisconnect(R.SCARD_CA_UNPOWER) == EFI_SUCCESS
    assert sc.SCardStatus()[2] == R.SCARD_INACTIVE
    connect_t1(sc)
    assert sc.SCardDisconnect(R.SCARD_CA_WARMRESET) == EFI_SUCCESS
    assert sc.SCardStatus()[2] == R.SCARD_ACTIVE


def test_disconnect_invalid_card_action_keeps_the_lock(make):
    em, sc = make()
    connect_t1(sc)
    assert sc.SCardDisconnect(9) == EFI_INVALID_PARAMETER
    assert sc.connected
    assert sc.SCardTransmit(ECHO, len(ECHO), buf(8), 8) == (EFI_SUCCESS, 6)


def test_disconnect_eject_unsupported_keeps_the_lock(make):
    em, sc = make()
    connect_t1(sc)
    assert sc.SCardDisconnect(R.SCARD_CA_EJECT) == EFI_UNSUPPORTED
    assert sc.connected


def test_disconnect_device_error_on_reader_removal(make):
    em, sc = make()
    connect_t1(sc)
    em.unplug()
    assert sc.SCardDisconnect(R.SCARD_CA_UNPOWER) == EFI_DEVICE_ERROR
    assert not sc.connected


# ================================================================ SCardStatus

def test_status_success_fills_exactly_and_nothing_beyond(make):
    em, sc = make()
    connect_t1(sc)
    name = buf(200)
    atr = buf(40)
    st, nlen, state, proto, alen = sc.SCardStatus(name, 200, atr, 40)
    expect_name = R.str_to_char16(sc.name)
    assert (st, nlen, state, proto, alen) == (EFI_SUCCESS, len(expect_name), R.SCARD_ACTIVE,
                                              R.SCARD_PROTOCOL_T1, len(MiniCard().atr))
    assert bytes(name[:nlen]) == expect_name
    assert R.char16_to_str(name, nlen) == sc.name
    assert sc.name.startswith("Gemplus USB SmartCard Reader (") and sc.name.endswith(") 00 00")
    assert name[nlen:] == buf(200 - nlen)
    assert bytes(atr[:alen]) == MiniCard().atr and atr[alen:] == buf(40 - alen)


def test_status_invalid_parameter_buffer_without_length(make):
    em, sc = make()
    assert sc.SCardStatus(buf(100), None, None, None)[0] == EFI_INVALID_PARAMETER
    assert sc.SCardStatus(None, None, buf(40), None)[0] == EFI_INVALID_PARAMETER
    # a length the bytearray cannot hold (C could not tell; Python refuses)
    assert sc.SCardStatus(buf(10), 100, None, None)[0] == EFI_INVALID_PARAMETER


def test_status_buffer_too_small_for_the_name(make):
    em, sc = make()
    connect_t1(sc)
    name = buf(20)
    atr = buf(40)
    st, nlen, state, proto, alen = sc.SCardStatus(name, 20, atr, 40)
    assert st == EFI_BUFFER_TOO_SMALL
    assert nlen == len(R.str_to_char16(sc.name)) and alen == len(MiniCard().atr)
    assert name == buf(20) and atr == buf(40)               # nothing written at all


def test_status_buffer_too_small_for_the_atr(make):
    em, sc = make()
    connect_t1(sc)
    name = buf(200)
    atr = buf(40)
    st, nlen, state, proto, alen = sc.SCardStatus(name, 200, atr, 3)
    assert (st, alen) == (EFI_BUFFER_TOO_SMALL, len(MiniCard().atr))
    assert nlen == len(R.str_to_char16(sc.name))            # the name length came back too
    assert atr == buf(40) and name == buf(200)


def test_status_null_buffers_are_size_queries(make):
    em, sc = make()
    connect_t1(sc)
    st, nlen, state, proto, alen = sc.SCardStatus(None, 0, None, 0)
    assert (st, nlen, alen) == (EFI_SUCCESS, len(R.str_to_char16(sc.name)), len(MiniCard().atr))
    assert sc.SCardStatus() == (EFI_SUCCESS, None, R.SCARD_ACTIVE, R.SCARD_PROTOCOL_T1, None)


def test_status_states(make):
    em, sc = make(card=None)
    assert sc.SCardStatus()[2] == R.SCARD_ABSENT
    em.insert_card(0, MiniCard())
    st, _, state, proto, alen = sc.SCardStatus(None, 0, None, 0)
    assert (state, proto, alen) == (R.SCARD_INACTIVE, R.SCARD_PROTOCOL_UNDEFINED, 0)
    connect_t1(sc)
    assert sc.SCardStatus()[2] == R.SCARD_ACTIVE


def test_status_device_error_when_the_reader_left(make):
    em, sc = make()
    em.unplug()
    assert sc.SCardStatus()[0] == EFI_DEVICE_ERROR


# ================================================================ SCardTransmit

def test_transmit_success_writes_the_answer_and_nothing_beyond(make):
    em, sc = make()
    connect_t1(sc)
    r = buf(300)
    assert sc.SCardTransmit(ECHO, len(ECHO), r, 300) == (EFI_SUCCESS, 6)
    assert bytes(r[:6]) == ECHO_RSP and r[6:] == buf(294)
    # CAPDULength counts: the bytes after it are not sent
    assert sc.SCardTransmit(ECHO + b"\xff\xff", len(ECHO), r, 300) == (EFI_SUCCESS, 6)


def test_transmit_invalid_parameter(make):
    em, sc = make()
    connect_t1(sc)
    assert sc.SCardTransmit(None, 5, buf(10), 10)[0] == EFI_INVALID_PARAMETER
    assert sc.SCardTransmit(ECHO, 0, buf(10), 10)[0] == EFI_INVALID_PARAMETER
    assert sc.SCardTransmit(ECHO, 99, buf(10), 10)[0] == EFI_INVALID_PARAMETER
    assert sc.SCardTransmit(ECHO, len(ECHO), None, 10)[0] == EFI_INVALID_PARAMETER
    assert sc.SCardTransmit(ECHO, len(ECHO), buf(10), None)[0] == EFI_INVALID_PARAMETER


def test_transmit_buffer_too_small_writes_nothing(make):
    em, sc = make()
    connect_t1(sc)
    r = buf(16)
    assert sc.SCardTransmit(ECHO, len(ECHO), r, 5) == (EFI_BUFFER_TOO_SMALL, 6)
    assert r == buf(16)


def test_transmit_no_media(make):
    em, sc = make()
    connect_t1(sc)
    em.remove_card(0)
    assert sc.SCardTransmit(ECHO, len(ECHO), buf(10), 10)[0] == EFI_NO_MEDIA


def test_transmit_not_ready_card_unpowered(make):
    em, sc = make()
    assert sc.SCardConnect(R.SCARD_AM_READER, 0, 0)[0] == EFI_SUCCESS
    assert sc.SCardTransmit(ECHO, len(ECHO), buf(10), 10)[0] == EFI_NOT_READY


def test_transmit_not_ready_for_a_card_swapped_since_connect(make):
    em, sc = make()
    connect_t1(sc)
    em.remove_card(0)
    em.insert_card(0, MiniCard())
    assert sc.SCardTransmit(ECHO, len(ECHO), buf(10), 10)[0] == EFI_NOT_READY


def test_transmit_protocol_error(make):
    em, sc = make()
    connect_t1(sc)
    em.faults.corrupt_t1(0, to="reader", times=50)
    assert sc.SCardTransmit(ECHO, len(ECHO), buf(10), 10)[0] == EFI_PROTOCOL_ERROR


def test_transmit_timeout(make):
    em, sc = make()
    connect_t1(sc)
    em.faults.mute(0)
    assert sc.SCardTransmit(ECHO, len(ECHO), buf(10), 10)[0] == EFI_TIMEOUT


def test_transmit_access_denied_while_pending_and_without_connect(make):
    em, sc = make()
    assert sc.SCardTransmit(ECHO, len(ECHO), buf(10), 10)[0] == EFI_ACCESS_DENIED
    connect_t1(sc)
    seen = []

    def on_wtx(reader, slot, count):
        if not seen:
            seen.append(sc.SCardTransmit(ECHO, len(ECHO), buf(10), 10)[0])

    sc.reader.on_time_extension = on_wtx
    em.faults.wtx_storm(0, 3)
    assert sc.SCardTransmit(ECHO, len(ECHO), buf(10), 10) == (EFI_SUCCESS, 6)
    assert seen == [EFI_ACCESS_DENIED]


def test_transmit_device_error_on_reader_removal(make):
    em, sc = make()
    connect_t1(sc)
    em.unplug()
    assert sc.SCardTransmit(ECHO, len(ECHO), buf(10), 10)[0] == EFI_DEVICE_ERROR


# ================================================================ SCardControl

def test_control_success_get_feature_request(make):
    em, sc = make("pinpad")
    connect_t1(sc)
    out = buf(64)
    st, n = sc.SCardControl(R.CM_IOCTL_GET_FEATURE_REQUEST, None, 0, out, 64)
    assert st == EFI_SUCCESS
    assert bytes(out[:n]) == part10.feature_tlv(sc.reader)
    assert bytes(out[:6]) == bytes.fromhex("0604") + (0x42000000 + 0x330000 + 6).to_bytes(4, "big")
    assert out[n:] == buf(64 - n)


def test_control_invalid_parameter_out_buffer_without_length(make):
    em, sc = make()
    connect_t1(sc)
    assert sc.SCardControl(R.CM_IOCTL_GET_FEATURE_REQUEST, None, 0, buf(64),
                           None)[0] == EFI_INVALID_PARAMETER
    # the reverse is fine: no OutBuffer, a length (a size query)
    assert sc.SCardControl(R.CM_IOCTL_GET_FEATURE_REQUEST, None, 0, None, 0)[0] == \
        EFI_BUFFER_TOO_SMALL


def test_control_invalid_parameter_input_missing_or_short(make):
    em, sc = make("pinpad")
    connect_t1(sc)
    verify = part10.feature_ioctl(part10.FEATURE_VERIFY_PIN_DIRECT)
    assert sc.SCardControl(verify, None, 0, buf(8), 8)[0] == EFI_INVALID_PARAMETER
    assert sc.SCardControl(verify, bytes(10), 10, buf(8), 8)[0] == EFI_INVALID_PARAMETER
    assert sc.SCardControl(verify, bytes(10), 20, buf(8), 8)[0] == EFI_INVALID_PARAMETER


def test_control_unsupported(make):
    em, sc = make()
    connect_t1(sc)
    verify = part10.feature_ioctl(part10.FEATURE_VERIFY_PIN_DIRECT)   # no PIN pad here
    assert sc.SCardControl(verify, bytes(30), 30, buf(8), 8)[0] == EFI_UNSUPPORTED
    assert sc.SCardControl(R.SCARD_CTL_CODE(42), None, 0, buf(8), 8)[0] == EFI_UNSUPPORTED


def test_control_buffer_too_small(make):
    em, sc = make("pinpad")
    connect_t1(sc)
    out = buf(8)
    st, n = sc.SCardControl(R.CM_IOCTL_GET_FEATURE_REQUEST, None, 0, out, 5)
    assert (st, n) == (EFI_BUFFER_TOO_SMALL, len(part10.feature_tlv(sc.reader)))
    assert out == buf(8)


def test_control_no_media_and_not_ready_for_pin_entry(make):
    em, sc = make("pinpad")
    assert sc.SCardConnect(R.SCARD_AM_READER, 0, 0)[0] == EFI_SUCCESS
    verify = part10.feature_ioctl(part10.FEATURE_VERIFY_PIN_DIRECT)
    structure = part10.build_verify_structure(bytes.fromhex("0020000108") + bytes(8))
    assert sc.SCardControl(verify, structure, len(structure), buf(8), 8)[0] == EFI_NOT_READY
    em.remove_card(0)
    assert sc.SCardControl(verify, structure, len(structure), buf(8), 8)[0] == EFI_NO_MEDIA
    # the features list needs no card
    assert sc.SCardControl(R.CM_IOCTL_GET_FEATURE_REQUEST, None, 0, buf(64), 64)[0] == \
        EFI_SUCCESS


def test_control_access_denied_without_connect_and_device_error(make):
    em, sc = make()
    assert sc.SCardControl(R.CM_IOCTL_GET_FEATURE_REQUEST, None, 0, buf(64),
                           64)[0] == EFI_ACCESS_DENIED
    connect_t1(sc)
    em.unplug()
    assert sc.SCardControl(R.CM_IOCTL_GET_FEATURE_REQUEST, None, 0, buf(64),
                           64)[0] == EFI_DEVICE_ERROR


# ================================================================ SCardGetAttrib

def test_getattrib_success(make):
    em, sc = make()
    out = buf(64)
    st, n = sc.SCardGetAttrib(R.SCARD_ATTR_VENDOR_NAME, out, 64)
    assert (st, bytes(out[:n])) == (EFI_SUCCESS, b"Gemplus\x00")
    assert out[n:] == buf(64 - n)
    connect_t1(sc)
    assert sc.SCardGetAttrib(R.SCARD_ATTR_CURRENT_PROTOCOL_TYPE, out, 64)[1] == 4
    assert bytes(out[:4]) == b"\x02\x00\x00\x00"
    st, n = sc.SCardGetAttrib(R.SCARD_ATTR_ATR_STRING, out, 64)
    assert bytes(out[:n]) == MiniCard().atr


def test_getattrib_invalid_parameter(make):
    em, sc = make()
    assert sc.SCardGetAttrib(R.SCARD_ATTR_VENDOR_NAME, None, 64)[0] == EFI_INVALID_PARAMETER
    assert sc.SCardGetAttrib(R.SCARD_ATTR_VENDOR_NAME, buf(8), 0)[0] == EFI_INVALID_PARAMETER


def test_getattrib_buffer_too_small(make):
    em, sc = make()
    out = buf(8)
    assert sc.SCardGetAttrib(R.SCARD_ATTR_VENDOR_NAME, out, 3) == (EFI_BUFFER_TOO_SMALL, 8)
    assert out == buf(8)


def test_getattrib_unsupported(make):
    em, sc = make()
    assert sc.SCardGetAttrib(0x7FFF7FFF, buf(8), 8)[0] == EFI_UNSUPPORTED


def test_getattrib_no_media_and_not_ready(make):
    em, sc = make(card=None)
    assert sc.SCardGetAttrib(R.SCARD_ATTR_ATR_STRING, buf(40), 40)[0] == EFI_NO_MEDIA
    em.insert_card(0, MiniCard())
    assert sc.SCardGetAttrib(R.SCARD_ATTR_ATR_STRING, buf(40), 40)[0] == EFI_NOT_READY


def test_getattrib_device_error(make):
    em, sc = make()
    em.unplug()
    assert sc.SCardGetAttrib(R.SCARD_ATTR_VENDOR_NAME, buf(40), 40)[0] == EFI_DEVICE_ERROR


def _verify_structure():
    return part10.build_verify_structure(bytes.fromhex("0020000108") + b"\xff" * 8,
                                         bmFormatString=0x82, bmPINBlockString=0x08)


def test_control_secure_pin_success_entry_timeout_and_protocol_error(make):
    em, sc = make("pinpad")
    connect_t1(sc)
    verify = part10.feature_ioctl(part10.FEATURE_VERIFY_PIN_DIRECT)
    s = _verify_structure()
    em.keypad(0, "1234")
    out = buf(8)
    st, n = sc.SCardControl(verify, s, len(s), out, 8)
    assert st == EFI_SUCCESS and n == 2
    assert bytes(out[:2]) == b"\x6d\x00" and out[2:] == buf(6)      # MiniCard: no VERIFY
    # PIN entry timeout: the reader's answer is SW 64 00 (PC/SC part 10), EFI_SUCCESS
    em.keypad(0, "timeout")
    assert sc.SCardControl(verify, s, len(s), out, 8) == (EFI_SUCCESS, 2)
    assert bytes(out[:2]) == b"\x64\x00"


def test_reader_error_table():
    # SCardControl's EFI_TIMEOUT / EFI_PROTOCOL_ERROR come from this table too (the
    # emulated PIN pad's Secure path ignores the mute and T=1 faults)
    from ccidkit.core.driver import ReaderError
    cases = [("IFD_ICC_NOT_PRESENT", "x", EFI_NO_MEDIA), ("CARD_UNPOWERED", "x", EFI_NOT_READY),
             ("IFD_RESPONSE_TIMEOUT", "card mute", EFI_TIMEOUT),
             ("IFD_COMMUNICATION_ERROR", "T=1: resynch failed", EFI_PROTOCOL_ERROR),
             ("IFD_COMMUNICATION_ERROR", "T=1 after PIN entry: x", EFI_PROTOCOL_ERROR),
             ("IFD_COMMUNICATION_ERROR", "T=0: bad procedure byte", EFI_PROTOCOL_ERROR),
             ("IFD_ERROR_PTS_FAILURE", "x", EFI_PROTOCOL_ERROR),
             ("IFD_COMMUNICATION_ERROR", "malformed answer", EFI_DEVICE_ERROR),
             ("IFD_NO_SUCH_DEVICE", "gone", EFI_DEVICE_ERROR),
             ("IFD_NOT_SUPPORTED", "x", EFI_UNSUPPORTED), ("CANCELLED", "x", EFI_DEVICE_ERROR)]
    for name, msg, status in cases:
        assert R.status_from_reader_error(ReaderError(msg, name)) == status, (name, msg)


def test_control_access_denied_while_the_pin_pad_waits(make):
    em, sc = make("pinpad")
    connect_t1(sc)
    seen = []

    def on_wtx(reader, slot, count):
        if not seen:
            seen.append(sc.SCardControl(R.CM_IOCTL_GET_FEATURE_REQUEST, None, 0, buf(64), 64)[0])
            seen.append(sc.SCardConnect(R.SCARD_AM_READER, 0, 0)[0])
            seen.append(sc.SCardDisconnect(R.SCARD_CA_UNPOWER))

    sc.reader.on_time_extension = on_wtx
    verify = part10.feature_ioctl(part10.FEATURE_VERIFY_PIN_DIRECT)
    s = _verify_structure()
    em.keypad(0, "1234")
    assert sc.SCardControl(verify, s, len(s), buf(8), 8)[0] == EFI_SUCCESS
    assert seen == [EFI_ACCESS_DENIED, EFI_ACCESS_DENIED, EFI_ACCESS_DENIED]
