"""Card events still reach every PC/SC handle when the driver skips the
interrupt-IN read that would only time out (Transport.interrupt_pending)."""

import pytest

from ccidkit.core import pcsc
from ccidkit.core.pcsc import PCSCError
from ccidkit.core.host.emulated import emulated_manager
from ccidkit.emu.reader import EmulatedReader
from ccidkit.emu.card.minicard import MiniCard

SELECT = bytes.fromhex("00A4000C022F00")
READ5 = bytes.fromhex("00B0000005")


def _open(profile="gemalto-pctwin"):
    mgr = emulated_manager(profile)
    ctx = pcsc.SCardEstablishContext(pcsc.SCARD_SCOPE_USER, mgr)
    name = pcsc.SCardListReaders(ctx)[0]
    h, proto = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_T1)
    pci = pcsc.SCARD_PCI_T1 if proto == pcsc.SCARD_PROTOCOL_T1 else pcsc.SCARD_PCI_T0
    assert pcsc.SCardTransmit(h, pci, SELECT) == b"\x90\x00"
    return mgr, ctx, name, h, pci


def _count_interrupt_reads(reader):
    calls = []
    real = reader.interrupt_in

    def counting(max_len, timeout_ms=None):
        calls.append(timeout_ms)
        return real(max_len, timeout_ms)

    reader.interrupt_in = counting
    return calls


def test_emulated_reader_tells_whether_interrupt_in_holds_something():
    r = EmulatedReader("gemalto-pctwin", cards={0: MiniCard()})
    assert r.interrupt_pending() is False
    r.remove_card(0)
    assert r.interrupt_pending() is True
    assert r.interrupt_in(8, 0) == b"\x50\x02"
    assert r.interrupt_pending() is False
    r.faults.stall("interrupt_in")
    assert r.interrupt_pending() is True
    r.faults.clear_stall("interrupt_in")
    assert r.interrupt_pending() is False
    r.unplug()
    assert r.interrupt_pending() is True
    # no interrupt endpoint: a read stalls, so the answer is "read to find out"
    r2 = EmulatedReader("iccd-token", cards={0: MiniCard()})
    assert not r2.has_interrupt and r2.interrupt_pending() is True


def test_no_interrupt_read_per_transmit_while_nothing_is_queued():
    mgr, ctx, name, h, pci = _open()
    calls = _count_interrupt_reads(mgr.emulated[0])
    for _ in range(5):
        assert pcsc.SCardTransmit(h, pci, READ5) == bytes(range(5)) + b"\x90\x00"
    assert calls == []
    # a card event queues a NotifySlotChange: the next check reads it
    mgr.emulated[0].remove_card(0)
    with pytest.raises(PCSCError) as e:
        pcsc.SCardTransmit(h, pci, READ5)
    assert e.value.code == pcsc.SCARD_W_REMOVED_CARD == 0x80100069
    assert len(calls) >= 1
    with pytest.raises(PCSCError) as e:
        pcsc.SCardStatus(h)
    assert e.value.code == pcsc.SCARD_W_REMOVED_CARD


def test_removal_seen_by_status_first():
    mgr, ctx, name, h, pci = _open()
    mgr.emulated[0].remove_card(0)
    with pytest.raises(PCSCError) as e:
        pcsc.SCardStatus(h)
    assert e.value.code == pcsc.SCARD_W_REMOVED_CARD
    with pytest.raises(PCSCError) as e:
        pcsc.SCardTransmit(h, pci, READ5)
    assert e.value.code == pcsc.SCARD_W_REMOVED_CARD


def test_swap_between_two_transmits_is_a_removal():
    mgr, ctx, name, h, pci = _open()
    mgr.emulated[0].remove_card(0)
    mgr.emulated[0].insert_card(0, MiniCard())
    with pytest.raises(PCSCError) as e:
        pcsc.SCardTransmit(h, pci, READ5)
    assert e.value.code == pcsc.SCARD_W_REMOVED_CARD
    pcsc.SCardDisconnect(h, pcsc.SCARD_LEAVE_CARD)
    h2, _ = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_T1)
    assert pcsc.SCardTransmit(h2, pci, SELECT) == b"\x90\x00"
    assert pcsc.SCardTransmit(h2, pci, READ5) == bytes(range(5)) + b"\x90\x00"


def test_reset_by_another_handle_still_warns():
    mgr, ctx, name, h, pci = _open()
    h2, _ = pcsc.SCardConnect(ctx, name, pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_PROTOCOL_T1)
    pcsc.SCardDisconnect(h2, pcsc.SCARD_RESET_CARD)
    with pytest.raises(PCSCError) as e:
        pcsc.SCardTransmit(h, pci, READ5)
    assert e.value.code == pcsc.SCARD_W_RESET_CARD == 0x80100068


def test_stalled_interrupt_endpoint_falls_back_to_slot_status():
    mgr, ctx, name, h, pci = _open()
    er = mgr.emulated[0]
    er.faults.stall("interrupt_in")
    # the armed stall makes the check read: the driver turns to GetSlotStatus polling
    assert pcsc.SCardTransmit(h, pci, READ5) == bytes(range(5)) + b"\x90\x00"
    assert ("stall", "interrupt_in") in er.faults.fired
    er.faults.lose_notify()
    er.remove_card(0)
    with pytest.raises(PCSCError) as e:
        pcsc.SCardTransmit(h, pci, READ5)
    assert e.value.code == pcsc.SCARD_W_REMOVED_CARD


def test_unplug_between_two_transmits():
    mgr, ctx, name, h, pci = _open()
    mgr.backend.remove(mgr.emulated[0])
    with pytest.raises(PCSCError) as e:
        pcsc.SCardTransmit(h, pci, READ5)
    assert e.value.code == pcsc.SCARD_E_READER_UNAVAILABLE == 0x80100017
