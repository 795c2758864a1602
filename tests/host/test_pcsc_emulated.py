"""The PC/SC-like API over emulated readers (pyusb path): names, connect/transmit,
sharing, dispositions, attributes, control, status change with event counters."""

import threading

import pytest

from ccidkit.core import pcsc
from ccidkit.core.pcsc import PCSCError
from ccidkit.core.host.emulated import emulated_manager
from ccidkit.emu.reader import EmulatedReader
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.core import part10

SELECT_AID = bytes.fromhex("00A4040009F063636964 6B69740100".replace(" ", ""))
FCI = bytes.fromhex("6F168409F0636369646B697401A5095007636369646B6974")


def ctx_for(*profiles, **kw):
    mgr = emulated_manager(*profiles, **kw)
    return mgr, pcsc.SCardEstablishContext(pcsc.SCARD_SCOPE_USER, mgr)


def code_of(excinfo):
    return excinfo.value.code


def test_reader_names_numbers_and_slots():
    mgr, ctx = ctx_for("gemalto-pctwin", "gemalto-pctwin", "sysmooctsim")
    names = pcsc.SCardListReaders(ctx)
    assert len(names) == 10
    assert names[0].startswith("Gemplus USB SmartCard Reader (") and names[0].endswith(" 00 00")
    assert names[1].endswith(" 01 00")
    octo = [n for n in names if n.startswith("sysmocom")]
    assert [n[-5:] for n in octo] == ["02 %02X" % i for i in range(8)]
    # unplug the first reader, plug a new one: it takes the lowest free number (00)
    first = mgr.emulated[0]
    mgr.backend.remove(first)
    assert len(pcsc.SCardListReaders(ctx)) == 9
    mgr.backend.add(EmulatedReader("cherry-st", cards={0: MiniCard()}))
    names = pcsc.SCardListReaders(ctx)
    cherry = [n for n in names if n.startswith("Cherry")]
    assert len(cherry) == 1 and cherry[0].endswith(" 00 00")
    pcsc.SCardReleaseContext(ctx)
    with pytest.raises(PCSCError) as e:
        pcsc.SCardListReaders(ctx)
    assert code_of(e) == pcsc.SCARD_E_INVALID_HANDLE == 0x80100003


def test_no_readers():
    mgr = pcsc.ResourceManager([])
    ctx = pcsc.SCardEstablishContext(pcsc.SCARD_SCOPE_USER, mgr)
    with pytest.raises(PCSCError) as e:
        pcsc.SCardListReaders(ctx)
    assert e.value.name == "SCARD_E_NO_READERS_AVAILABLE" and e.value.code == 0x8010002E


def test_connect_transmit_status_attributes():
    mgr, ctx = ctx_for("au9560")
    name = pcsc.SCardListReaders(ctx)[0]
    hcard, proto = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED,
                                     pcsc.SCARD_PROTOCOL_T0 | pcsc.SCARD_PROTOCOL_T1)
    assert proto == pcsc.SCARD_PROTOCOL_T0
    assert pcsc.SCardTransmit(hcard, pcsc.SCARD_PCI_T0, SELECT_AID) == FCI + b"\x90\x00"
    with pytest.raises(PCSCError) as e:
        pcsc.SCardTransmit(hcard, pcsc.SCARD_PCI_T1, SELECT_AID)
    assert code_of(e) == pcsc.SCARD_E_PROTO_MISMATCH
    names, state, p, atr = pcsc.SCardStatus(hcard)
    assert names == [name] and p == proto and atr == MiniCard().atr
    assert state == pcsc.SCARD_PRESENT | pcsc.SCARD_POWERED | pcsc.SCARD_SPECIFIC
    assert pcsc.SCardGetAttrib(hcard, pcsc.SCARD_ATTR_ATR_STRING) == atr
    assert pcsc.SCardGetAttrib(hcard, pcsc.SCARD_ATTR_VENDOR_NAME) == b"Generic\x00"
    assert pcsc.SCardGetAttrib(hcard, pcsc.SCARD_ATTR_VENDOR_IFD_VERSION) == \
        (0x0120 << 16).to_bytes(4, "little")
    ch = int.from_bytes(pcsc.SCardGetAttrib(hcard, pcsc.SCARD_ATTR_CHANNEL_ID), "little")
    assert ch >> 16 == 0x0020
    assert pcsc.SCardGetAttrib(hcard, pcsc.SCARD_ATTR_CURRENT_D) == (16).to_bytes(4, "little")
    with pytest.raises(PCSCError) as e:
        pcsc.SCardGetAttrib(hcard, 0x12345)
    assert e.value.name == "SCARD_E_UNSUPPORTED_FEATURE" and code_of(e) == 0x8010001F
    pcsc.SCardDisconnect(hcard, pcsc.SCARD_UNPOWER_CARD)
    with pytest.raises(PCSCError) as e:
        pcsc.SCardStatus(hcard)
    assert code_of(e) == pcsc.SCARD_E_INVALID_HANDLE


def test_sharing_transactions_and_reset_warning():
    mgr, ctx = ctx_for("gemalto-pctwin")
    name = pcsc.SCardListReaders(ctx)[0]
    h1, _ = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_ANY)
    h2, _ = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_ANY)
    with pytest.raises(PCSCError) as e:
        pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_EXCLUSIVE, pcsc.SCARD_PROTOCOL_ANY)
    assert code_of(e) == pcsc.SCARD_E_SHARING_VIOLATION
    pcsc.SCardBeginTransaction(h1)
    with pytest.raises(PCSCError) as e:
        pcsc.SCardTransmit(h2, pcsc.SCARD_PCI_T0, SELECT_AID)
    assert code_of(e) == pcsc.SCARD_E_SHARING_VIOLATION
    assert pcsc.SCardTransmit(h1, pcsc.SCARD_PCI_T0, SELECT_AID) == b"\x61\x18"
    pcsc.SCardEndTransaction(h1, pcsc.SCARD_LEAVE_CARD)
    with pytest.raises(PCSCError) as e:
        pcsc.SCardEndTransaction(h1)
    assert code_of(e) == pcsc.SCARD_E_NOT_TRANSACTED
    # h1 resets the card: h2 is told once, then reconnects
    pcsc.SCardDisconnect(h1, pcsc.SCARD_RESET_CARD)
    with pytest.raises(PCSCError) as e:
        pcsc.SCardTransmit(h2, pcsc.SCARD_PCI_T0, SELECT_AID)
    assert code_of(e) == pcsc.SCARD_W_RESET_CARD == 0x80100068
    assert pcsc.SCardReconnect(h2, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_ANY,
                               pcsc.SCARD_LEAVE_CARD) == pcsc.SCARD_PROTOCOL_T0
    assert pcsc.SCardTransmit(h2, pcsc.SCARD_PCI_T0, SELECT_AID) == b"\x61\x18"
    # a direct connection needs no card
    mgr.emulated[0].remove_card(0)
    with pytest.raises(PCSCError) as e:
        pcsc.SCardTransmit(h2, pcsc.SCARD_PCI_T0, SELECT_AID)
    assert code_of(e) in (pcsc.SCARD_W_REMOVED_CARD,)
    hd, p = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_DIRECT, 0)
    assert p == pcsc.SCARD_PROTOCOL_UNDEFINED
    feats = part10.parse_feature_tlv(pcsc.SCardControl(hd, pcsc.CM_IOCTL_GET_FEATURE_REQUEST))
    assert part10.FEATURE_VERIFY_PIN_DIRECT not in feats
    with pytest.raises(PCSCError) as e:
        pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_ANY)
    assert code_of(e) == pcsc.SCARD_E_NO_SMARTCARD


def test_removal_and_unplug_mid_exchange():
    mgr, ctx = ctx_for("gemalto-pctwin")
    name = pcsc.SCardListReaders(ctx)[0]
    h, _ = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_ANY)
    mgr.emulated[0].faults.remove_mid_exchange(0)
    with pytest.raises(PCSCError) as e:
        pcsc.SCardTransmit(h, pcsc.SCARD_PCI_T0, SELECT_AID)
    assert code_of(e) == pcsc.SCARD_W_REMOVED_CARD == 0x80100069
    mgr.emulated[0].insert_card(0, MiniCard())
    h, _ = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_ANY)
    mgr.emulated[0].faults.unplug_on_command(1)
    with pytest.raises(PCSCError) as e:
        pcsc.SCardTransmit(h, pcsc.SCARD_PCI_T0, SELECT_AID)
    assert code_of(e) == pcsc.SCARD_E_READER_UNAVAILABLE == 0x80100017
    with pytest.raises(PCSCError) as e:
        pcsc.SCardStatus(h)
    assert code_of(e) == pcsc.SCARD_E_READER_UNAVAILABLE


def test_status_change_counts_card_events():
    mgr, ctx = ctx_for("gemalto-pctwin")
    name = pcsc.SCardListReaders(ctx)[0]
    st = pcsc.SCardGetStatusChange(ctx, 0, [(name, pcsc.SCARD_STATE_UNAWARE)])
    ev0 = st[0][1]
    assert ev0 & pcsc.SCARD_STATE_PRESENT and ev0 & pcsc.SCARD_STATE_CHANGED
    assert st[0][2] == MiniCard().atr
    with pytest.raises(PCSCError) as e:
        pcsc.SCardGetStatusChange(ctx, 300, [(name, ev0 & ~pcsc.SCARD_STATE_CHANGED)])
    assert code_of(e) == pcsc.SCARD_E_TIMEOUT
    emu = mgr.emulated[0]
    # a card swapped between two calls: same "present" state, yet two events
    # (the reader merges them into one NotifySlotChange: present, changed)
    emu.remove_card(0)
    emu.insert_card(0, MiniCard(historical=b"\x80\x57swapped"))
    st = pcsc.SCardGetStatusChange(ctx, 1000, [(name, ev0 & ~pcsc.SCARD_STATE_CHANGED)])
    ev1 = st[0][1]
    assert ev1 & pcsc.SCARD_STATE_PRESENT and ev1 & pcsc.SCARD_STATE_CHANGED
    assert (ev1 >> 16) - (ev0 >> 16) == 2
    assert st[0][2].endswith(b"swapped") or b"swapped" in st[0][2]
    emu.remove_card(0)
    st = pcsc.SCardGetStatusChange(ctx, 1000, [(name, ev1 & ~pcsc.SCARD_STATE_CHANGED)])
    ev2 = st[0][1]
    assert ev2 & pcsc.SCARD_STATE_EMPTY and (ev2 >> 16) - (ev1 >> 16) == 1


def test_status_change_sees_a_plug_and_unplug_between_two_calls():
    mgr, ctx = ctx_for("gemalto-pctwin")
    pnp = pcsc.PNP_NOTIFICATION
    st = pcsc.SCardGetStatusChange(ctx, 0, [(pnp, 0)])
    cur = st[0][1] & ~pcsc.SCARD_STATE_CHANGED
    with pytest.raises(PCSCError):
        pcsc.SCardGetStatusChange(ctx, 200, [(pnp, cur)])
    extra = EmulatedReader("cherry-st", cards={0: MiniCard()})
    mgr.backend.add(extra)
    pcsc.SCardListReaders(ctx)           # the reader is seen...
    mgr.backend.remove(extra)
    pcsc.SCardListReaders(ctx)           # ...and gone again: same number of readers
    st = pcsc.SCardGetStatusChange(ctx, 0, [(pnp, cur)])
    assert st[0][1] & pcsc.SCARD_STATE_CHANGED
    assert (st[0][1] >> 16) - (cur >> 16) == 2


def test_unknown_reader_and_cancel():
    mgr, ctx = ctx_for("gemalto-pctwin")
    st = pcsc.SCardGetStatusChange(ctx, 0, [("No Such Reader 00 00", 0)])
    assert st[0][1] & pcsc.SCARD_STATE_UNKNOWN and st[0][1] & pcsc.SCARD_STATE_CHANGED
    with pytest.raises(PCSCError) as e:
        pcsc.SCardConnect(ctx, "No Such Reader 00 00", pcsc.SCARD_SHARE_SHARED, 3)
    assert code_of(e) == pcsc.SCARD_E_UNKNOWN_READER
    name = pcsc.SCardListReaders(ctx)[0]
    ev = pcsc.SCardGetStatusChange(ctx, 0, [(name, 0)])[0][1] & ~pcsc.SCARD_STATE_CHANGED
    box = {}

    def wait():
        try:
            pcsc.SCardGetStatusChange(ctx, pcsc.INFINITE, [(name, ev)])
        except PCSCError as ex:
            box["e"] = ex

    mgr.sleep_ms = None
    th = threading.Thread(target=wait)
    th.start()
    for _ in range(200):
        pcsc.SCardCancel(ctx)
        th.join(0.01)
        if not th.is_alive():
            break
    th.join(5)
    assert box["e"].code == pcsc.SCARD_E_CANCELLED == 0x80100002


def test_secure_pin_through_scardcontrol():
    class PinCard(MiniCard):
        def process_apdu(self, apdu):
            apdu = bytes(apdu)
            if apdu[1:2] == b"\x20":
                return b"\x90\x00" if apdu[5:9] == b"4321" else b"\x63\xC2"
            return MiniCard.process_apdu(self, apdu)

    mgr, ctx = ctx_for("pinpad", cards={0: PinCard()})
    name = pcsc.SCardListReaders(ctx)[0]
    h, _ = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_ANY)
    feats = part10.parse_feature_tlv(pcsc.SCardControl(h, pcsc.CM_IOCTL_GET_FEATURE_REQUEST))
    verify = part10.build_verify_structure(bytes.fromhex("0020000108") + b"\xFF" * 8)
    mgr.emulated[0].keypad(0, "4321")
    assert pcsc.SCardControl(h, feats[part10.FEATURE_VERIFY_PIN_DIRECT], verify) == b"\x90\x00"
    with pytest.raises(PCSCError) as e:
        pcsc.SCardControl(h, feats[part10.FEATURE_VERIFY_PIN_DIRECT], b"\x00\x01")
    assert code_of(e) == pcsc.SCARD_E_INVALID_PARAMETER
    with pytest.raises(PCSCError) as e:
        pcsc.SCardControl(h, pcsc.SCARD_CTL_CODE(3999), b"")
    assert e.value.name == "SCARD_E_UNSUPPORTED_FEATURE"


def test_card_swapped_under_an_idle_handle():
    mgr, ctx = ctx_for("gemalto-pctwin")
    name = pcsc.SCardListReaders(ctx)[0]
    h, _ = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_ANY)
    mgr.emulated[0].remove_card(0)
    mgr.emulated[0].insert_card(0, MiniCard())
    with pytest.raises(PCSCError) as e:
        pcsc.SCardTransmit(h, pcsc.SCARD_PCI_T0, SELECT_AID)
    assert code_of(e) == pcsc.SCARD_W_REMOVED_CARD
    pcsc.SCardDisconnect(h, pcsc.SCARD_LEAVE_CARD)
    h, _ = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_ANY)
    assert pcsc.SCardTransmit(h, pcsc.SCARD_PCI_T0, SELECT_AID) == b"\x61\x18"


def test_usb_manager_with_the_host_clock():
    from ccidkit.core.host.pyusb_transport import usb_manager
    from ccidkit.emu.pyusb_backend import EmulatedBackend
    backend = EmulatedBackend([EmulatedReader("gemalto-pctwin", cards={0: MiniCard()})])
    mgr = usb_manager(backend, poll_ms=5)
    ctx = pcsc.SCardEstablishContext(pcsc.SCARD_SCOPE_USER, mgr)
    name = pcsc.SCardListReaders(ctx)[0]
    ev = pcsc.SCardGetStatusChange(ctx, 0, [(name, 0)])[0][1] & ~pcsc.SCARD_STATE_CHANGED
    with pytest.raises(PCSCError) as e:
        pcsc.SCardGetStatusChange(ctx, 30, [(name, ev)])
    assert code_of(e) == pcsc.SCARD_E_TIMEOUT
    # no reader at all: the wait is a real sleep of the host
    empty = usb_manager(EmulatedBackend([]), poll_ms=5)
    ctx2 = pcsc.SCardEstablishContext(pcsc.SCARD_SCOPE_USER, empty)
    with pytest.raises(PCSCError) as e:
        pcsc.SCardGetStatusChange(ctx2, 20, [(pcsc.PNP_NOTIFICATION, 0)])
    assert code_of(e) == pcsc.SCARD_E_TIMEOUT
