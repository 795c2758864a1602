"""Reader profiles (descriptors as the real readers report them), the timing
model and the class requests of every profile."""

import pytest

from ccidkit.core import ccid as C
from ccidkit.core.ccid_descriptor import FIELDS, find_ccid_interfaces, parse_ccid_descriptor
from ccidkit.emu import timing as T
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.profiles import DEFAULT_QUIRKS, PROFILES, bank_of, class_descriptor_bytes, profile
from ccidkit.emu.reader import (EmulatedReader, EP_BULK_IN, EP_BULK_OUT, EP_INTERRUPT_IN,
                                ReaderStall, ReaderTimeout, create_readers, pseudo_atr)

READERS = sorted(p for p in PROFILES if bank_of(p) is None)


@pytest.mark.parametrize("pid", READERS)
def test_profile_is_complete_and_consistent(pid):
    p = profile(pid)
    assert set(p["ccid"]) == set(FIELDS)
    assert set(p["quirks"]) == set(DEFAULT_QUIRKS)
    for key in ("firmware_us", "card_processing_us", "wtx_interval_us"):
        assert p["timing"][key] > 0
    d = parse_ccid_descriptor(class_descriptor_bytes(p["ccid"]))
    assert d.warnings == []
    assert d.exchange_level in ("TPDU", "short APDU", "short and extended APDU")
    assert 1 <= d.bMaxCCIDBusySlots <= d.slots
    assert d.dwDefaultClock <= d.dwMaximumClock
    assert d.dwDataRate <= d.dwMaxDataRate
    # dwDataRate is the default rate: the default clock / 372 (within rounding)
    assert abs(d.dwDataRate - d.dwDefaultClock * 1000 // 372) <= 4
    if p["clocks_khz"] is not None:
        assert d.dwDefaultClock in p["clocks_khz"]
        assert d.bNumClockSupported in (0, len(p["clocks_khz"]))
    if p["data_rates"] is not None:
        assert max(p["data_rates"]) <= d.dwMaxDataRate
    if p["quirks"]["keypad"]:
        assert d.bPINSupport
    if p["quirks"]["card_always_present"]:
        assert not p["usb"]["interrupt"]
    assert "source" in p


def test_published_values():
    g = profile("gemalto-pctwin")
    assert (g["usb"]["idVendor"], g["usb"]["idProduct"]) == (0x08E6, 0x3437)
    assert g["ccid"]["dwFeatures"] == 0x00010230 and g["ccid"]["dwDefaultClock"] == 4000
    assert g["ccid"]["dwMaxDataRate"] == 344086 and g["ccid"]["dwMaxCCIDMessageLength"] == 271
    a = profile("au9560")
    assert (a["usb"]["idVendor"], a["usb"]["idProduct"]) == (0x058F, 0x9540)
    assert a["ccid"]["dwFeatures"] == 0x000404BE and a["ccid"]["dwMaxDataRate"] == 688172
    assert a["quirks"]["max_working_rate_bps"] == 200000
    s = profile("sysmooctsim")
    assert s["ccid"]["bMaxSlotIndex"] == 7 and s["ccid"]["bMaxCCIDBusySlots"] == 8
    assert s["ccid"]["dwFeatures"] == 0x000100B0 and s["ccid"]["dwProtocols"] == 1
    c = profile("cherry-st")
    assert c["ccid"]["dwDefaultClock"] == 3685 and c["usb"]["idVendor"] == 0x046A
    pp = profile("pinpad")
    assert pp["ccid"]["bPINSupport"] == 3 and pp["ccid"]["wLcdLayout"] == 0x0210
    assert bank_of("sysmosimbank-96") == {"member": "sysmooctsim", "count": 12, "hubs": 3,
                                          "ports_per_hub": 4}
    assert profile("sysmosimbank-96")["id"] == "sysmooctsim"


@pytest.mark.parametrize("pid", READERS)
def test_configuration_descriptor(pid):
    r = EmulatedReader(pid)
    found = find_ccid_interfaces(r.config_descriptor)
    assert len(found) == 1
    d = found[0]
    assert d.to_bytes() == r.class_descriptor
    assert d.bInterfaceNumber == r.usb["interface_number"]
    eps = [(e[0], e[1]) for e in d.endpoints]
    want = [(EP_BULK_OUT, 2), (EP_BULK_IN, 2)]
    if r.usb["interrupt"]:
        want.append((EP_INTERRUPT_IN, 3))
    assert eps == want
    dev = r.device_descriptor
    assert len(dev) == 18 and dev[0] == 18 and dev[1] == 1
    assert dev[8] | dev[9] << 8 == r.usb["idVendor"]
    assert r.string(1) == r.usb["manufacturer"] and r.string(2) == r.usb["product"]
    assert r.string(9) is None
    # GET_DESCRIPTOR through the control endpoint, truncated to wLength
    assert r.control(0x80, 6, 0x0100, 0, 8) == dev[:8]
    assert r.control(0x80, 6, 0x0300, 0, 255) == b"\x04\x03\x09\x04"
    prod = r.control(0x80, 6, 0x0302, 0x0409, 255)
    assert prod[2:].decode("utf-16-le") == r.usb["product"]


def test_class_requests():
    g = EmulatedReader("gemalto-pctwin")
    rates = C.parse_dword_array(g.control(*C.get_data_rates_request(0, 40)[:4], 160))
    assert rates[0] == 10753 and rates[-1] == 344086 and len(rates) == 40
    clocks = C.parse_dword_array(g.control(*C.get_clock_frequencies_request(0, 1)[:4], 4))
    assert clocks == [4000]
    a = EmulatedReader("au9560")
    assert C.parse_dword_array(a.control(0xA1, 2, 0, 0, 12)) == [3700, 4800, 12000]
    with pytest.raises(ReaderStall):
        a.control(0xA1, 3, 0, 0, 256)
    s = EmulatedReader("sysmooctsim")
    with pytest.raises(ReaderTimeout):
        s.control(0xA1, 3, 0, 0, 256)
    with pytest.raises(ReaderStall):
        g.control(0xA1, 3, 0, 1, 256)          # not our interface
    with pytest.raises(ReaderStall):
        g.control(0xC0, 1, 0, 0, 4)            # vendor request
    with pytest.raises(ReaderStall):
        g.control(0x80, 6, 0x0600, 0, 10)      # no device qualifier (full speed)


def test_pseudo_atr_per_pcsc_part3():
    atr = pseudo_atr(b"\x80\x57ccidkit")
    body = bytes.fromhex("3B89800180") + b"\x57ccidkit"
    tck = 0
    for b in body[1:]:
        tck ^= b
    assert atr == body + bytes((tck,))
    assert pseudo_atr(b"") == bytes.fromhex("3B80800101")


def test_bank_cards_by_reader_and_slot():
    card = MiniCard(protocols=(0,))
    readers = create_readers("sysmosimbank-96", cards={(11, 7): card})
    assert len(readers) == 12
    assert readers[11].slots[7].card is card
    assert sum(1 for r in readers for s in r.slots if s.card is not None) == 1
    assert readers[11].port_path == (1, 3, 4)
    one = create_readers("gemalto-pctwin", cards={0: card})
    assert len(one) == 1 and one[0].slots[0].card is card


def test_etu_and_character_times():
    # ISO/IEC 7816-3 §7.1: etu = F / (D f): 372 / 4 MHz = 93 µs
    assert T.etu_us(372, 1, 4000000) == 93.0
    assert T.char_etu(0) == 12 and T.char_etu(1) == 12
    assert T.char_etu(0, 255) == 12 and T.char_etu(1, 255) == 11
    assert T.char_etu(0, 3) == 15
    assert T.char_time_us(512, 32, 4000000, 1, 255) == 11 * 4.0
    assert T.data_rate_bps(512, 32, 3700000) == 231250
    assert T.data_rate_bps(512, 16, 3700000) == 115625
    assert T.tpdu_t0_us(5, 2, 372, 1, 4000000) == 8 * 12 * 93.0
    assert T.block_t1_us(4, 372, 1, 4000000) == (4 * 12 + 22) * 93.0


def test_usb_and_bus_timing():
    assert T.usb_bulk_us(10) == (10 * 8 + 88 + 11) // 12   # rounded up
    assert T.usb_bulk_us(64) == T.usb_bulk_us(64, 64)
    assert T.usb_bulk_us(64) > T.usb_bulk_us(63)        # the zero-length packet
    assert T.next_frame(0) == 0 and T.next_frame(1) == 1000 and T.next_frame(1000) == 1000
    b = T.Bus()
    assert b.transfer(0, 100) == 100
    assert b.transfer(50, 100) == 200                   # waits for the bus
    assert b.transfer(1000, 10) == 1010
    assert (b.transfers, b.busy_us) == (3, 210)


def test_virtual_clock():
    c = T.VirtualClock()
    assert c.now_us() == 0
    c.advance(10)
    c.advance(-5)
    c.advance_to(3)
    assert c.now_us() == 10
    c.advance_to(1000)
    assert c.now_us() == 1000
    with pytest.raises(ValueError):
        T.VirtualClock(-1)
    scaled = T.VirtualClock(time_scale=1e-9)     # sleeps a few ns per emulated second
    scaled.advance(1000000)
    assert scaled.now_us() == 1000000
