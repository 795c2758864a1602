import struct

from ccidkit.core import ccid_descriptor as cd
from ccidkit.core.ccid import CCIDError
from support import h, raises

# QEMU 7.2 usb-ccid, field by field (CCID 1.1 §5.1 offsets in comments).
QEMU = h("36 21 1001 00 07"            # 0 bLength, bDescriptorType, bcdCCID, slot, voltage
         " 01000000"                   # 6 dwProtocols: T=0
         " A00F0000 00000100 00"       # 10 dwDefaultClock 4000 kHz, 14 dwMaximumClock, 18
         " 80250000 00C20100 00"       # 19 dwDataRate 9600, 23 dwMaxDataRate 115200, 27
         " FE000000 00000000 00000000" # 28 dwMaxIFSD, 32 dwSynchProtocols, 36 dwMechanical
         " FE040100 12000100"          # 40 dwFeatures, 44 dwMaxCCIDMessageLength
         " FF FF 0000 01 01")          # 48 bClassGetResponse, bClassEnvelope, wLcdLayout, ...


def patched(base, *changes):
    """Copy of ``base`` with (offset, fmt, value) fields overwritten."""
    b = bytearray(base)
    for off, fmt, value in changes:
        struct.pack_into("<" + fmt, b, off, value)
    return bytes(b)


# A GemPC Twin-like TPDU reader: T=0/T=1, 3.58 MHz, TPDU + auto clock/baud + NAD.
GEMPC_TWIN = patched(QEMU, (2, "H", 0x0100), (6, "I", 3), (10, "I", 3580), (14, "I", 3580),
                     (19, "I", 9600), (23, "I", 344100), (40, "I", 0x00010230),
                     (44, "I", 271), (52, "B", 0))
# A short-APDU pinpad reader with a 2x16 LCD, PIN verify + modify.
SHORT_APDU = patched(QEMU, (6, "I", 3), (40, "I", 0x000200BA), (44, "I", 271),
                     (50, "H", 0x0210), (52, "B", 3))
# An 8-slot reader answering on all slots at once, extended APDU, wake-up, mechanics.
EIGHT_SLOTS = patched(QEMU, (4, "B", 7), (6, "I", 3), (18, "B", 2), (27, "B", 3),
                      (36, "I", 0x0000000B), (40, "I", 0x00140FFE), (53, "B", 8))


def test_qemu_usb_ccid_descriptor():
    d = cd.parse_ccid_descriptor(QEMU)
    assert (d.bLength, d.bDescriptorType, d.bcdCCID, d.ccid_version) == (54, 0x21, 0x0110, "1.10")
    assert (d.bMaxSlotIndex, d.slots, d.bVoltageSupport, d.voltages()) == (
        0, 1, 7, ["5.0V", "3.0V", "1.8V"])
    assert (d.dwProtocols, d.protocols(), d.supports_t0, d.supports_t1) == (
        1, ["T=0"], True, False)
    assert (d.dwDefaultClock, d.dwMaximumClock, d.bNumClockSupported) == (4000, 65536, 0)
    assert (d.dwDataRate, d.dwMaxDataRate, d.bNumDataRatesSupported) == (9600, 115200, 0)
    assert (d.dwMaxIFSD, d.dwSynchProtocols, d.dwMechanical) == (254, 0, 0)
    assert d.dwFeatures == 0x000104FE and d.dwMaxCCIDMessageLength == 65554
    assert (d.bClassGetResponse, d.bClassEnvelope, d.wLcdLayout) == (0xFF, 0xFF, 0)
    assert (d.bPINSupport, d.bMaxCCIDBusySlots) == (1, 1)
    assert d.exchange_level == "TPDU" and d.tpdu_level and not d.apdu_level
    assert d.features() == ["auto_atr_parameters", "auto_activation", "auto_voltage",
                            "auto_clock", "auto_baud", "auto_pps_negotiation",
                            "auto_pps_active", "auto_ifsd"]
    assert d.auto_pps and d.auto_ifsd and not d.clock_stop and not d.nad_other_than_0
    assert not d.iccd and not d.usb_wake_up
    assert d.pin_verification and not d.pin_modification
    assert d.max_data_length == 65544 and d.notify_slot_change_length == 2
    assert d.warnings == [] and d.to_bytes() == QEMU
    lines = d.describe()
    for expected in (" dwFeatures: 0x000104FE", "  00010000 TPDU level exchange",
                     " dwDefaultClock: 4.000 MHz", " dwMaxIFSD: 254", "  T=0",
                     " bMaxCCIDBusySlots: 1", "  PIN verification"):
        assert expected in lines, expected


def test_tpdu_short_apdu_and_multi_slot_readers():
    g = cd.parse_ccid_descriptor(GEMPC_TWIN)
    assert g.ccid_version == "1.00" and g.protocols() == ["T=0", "T=1"]
    assert g.exchange_level == "TPDU" and g.character_level is False
    assert g.features() == ["auto_clock", "auto_baud", "nad_other_than_0"]
    assert not g.auto_pps and not g.auto_ifsd and g.nad_other_than_0
    assert (g.dwDefaultClock, g.dwMaxDataRate, g.dwMaxCCIDMessageLength) == (3580, 344100, 271)
    assert not g.pin_verification and g.warnings == []
    assert " dwDefaultClock: 3.580 MHz" in g.describe()

    s = cd.parse_ccid_descriptor(SHORT_APDU)
    assert s.exchange_level == "short APDU" and s.apdu_level and not s.extended_apdu_level
    assert s.features() == ["auto_atr_parameters", "auto_voltage", "auto_clock", "auto_baud",
                            "auto_pps_active"]
    assert (s.lcd_lines, s.lcd_columns) == (2, 16)
    assert s.pin_verification and s.pin_modification
    assert " wLcdLayout: 0x0210 (2 lines of 16 characters)" in s.describe()

    e = cd.parse_ccid_descriptor(EIGHT_SLOTS)
    assert (e.slots, e.bMaxCCIDBusySlots, e.notify_slot_change_length) == (8, 8, 3)
    assert e.exchange_level == "short and extended APDU" and e.extended_apdu_level
    assert e.clock_stop and e.nad_other_than_0 and e.iccd and e.usb_wake_up
    assert e.mechanical() == ["card accept mechanism", "card ejection mechanism",
                              "card lock/unlock mechanism"]
    assert (e.bNumClockSupported, e.bNumDataRatesSupported) == (2, 3)
    assert e.as_dict()["features"][-3:] == ["auto_ifsd", "iccd", "usb_wake_up"]
    assert e.as_dict()["slots"] == 8

    odd = cd.parse_ccid_descriptor(patched(QEMU, (40, "I", 0x00030000)))
    assert odd.exchange_level == "invalid" and odd.warnings


def config(*descriptors):
    body = b"".join(descriptors)
    total = 9 + len(body)
    return struct.pack("<BBHBBBBB", 9, 2, total, 1, 1, 0, 0x80, 50) + body


def interface(number, cls, protocol=0, endpoints=3):
    return bytes((9, 4, number, 0, endpoints, cls, 0, protocol, 0))


def endpoint(addr, attr, mps, interval=0):
    return struct.pack("<BBBBHB", 7, 5, addr, attr, mps, interval)


QEMU_EPS = endpoint(0x81, 3, 64, 255) + endpoint(0x82, 2, 64) + endpoint(0x03, 2, 64)


def test_finder_in_a_configuration_descriptor():
    cfg = config(interface(0, 0x0B), QEMU, QEMU_EPS)
    d = cd.find_ccid_descriptor(cfg)
    assert d.dwFeatures == 0x000104FE and d.warnings == []
    assert (d.bInterfaceNumber, d.bInterfaceClass, d.bInterfaceProtocol) == (0, 0x0B, 0)
    assert d.endpoints == [(0x81, 3, 64, 255), (0x82, 2, 64, 0), (0x03, 2, 64, 0)]
    assert d.as_dict()["endpoints"][1]["bEndpointAddress"] == 0x82
    assert "  endpoint 0x81 interrupt IN, wMaxPacketSize 64, bInterval 255" in d.describe()
    # descriptor after the endpoints, behind another interface (HID, class 03)
    other = interface(0, 0x03, endpoints=1) + bytes((9, 0x21, 0x11, 0x01, 0, 1, 0x22, 0x20, 0))
    cfg2 = config(other, endpoint(0x84, 3, 8, 10), interface(1, 0x0B), QEMU_EPS, QEMU)
    found = cd.find_ccid_interfaces(cfg2)
    assert len(found) == 1 and found[0].bInterfaceNumber == 1
    assert len(found[0].endpoints) == 3
    # two CCID interfaces
    assert len(cd.find_ccid_interfaces(config(interface(0, 0x0B), QEMU,
                                              interface(1, 0x0B), GEMPC_TWIN))) == 2


def test_finder_vendor_class_and_odd_lengths():
    vendor = cd.find_ccid_descriptor(config(interface(0, 0xFF), QEMU, QEMU_EPS))
    assert vendor.bInterfaceClass == 0xFF and "pre-1.0" in vendor.warnings[0]
    vendor_type = patched(QEMU, (1, "B", 0xFF))
    v2 = cd.find_ccid_descriptor(config(interface(0, 0xFF), vendor_type))
    assert "bDescriptorType 0xFF" in v2.warnings[0]
    # a vendor interface without a 54-byte descriptor is not a reader
    short_vendor = bytes((9, 0x21)) + QEMU[2:9]
    assert cd.find_ccid_interfaces(config(interface(0, 0xFF), short_vendor)) == []
    # bLength 55: fields complete, warning
    long_desc = bytes((55,)) + QEMU[1:] + b"\x00"
    d = cd.find_ccid_descriptor(config(interface(0, 0x0B), long_desc))
    assert d.dwFeatures == 0x000104FE and "bLength is 55" in d.warnings[0]
    # bLength 50: fields missing
    cut = bytes((50,)) + QEMU[1:50]
    with raises(CCIDError, "TRUNCATED"):
        cd.find_ccid_descriptor(config(interface(0, 0x0B), cut))
    with raises(CCIDError, "NO_CCID_INTERFACE"):
        cd.find_ccid_descriptor(config(interface(0, 0x03), QEMU_EPS))
    with raises(CCIDError, "MALFORMED"):           # a zero bLength would loop forever
        cd.find_ccid_interfaces(config(interface(0, 0x0B)) + b"\x00\x00")
    with raises(CCIDError, "TRUNCATED"):
        cd.find_ccid_interfaces(config(interface(0, 0x0B), QEMU)[:40])
    with raises(CCIDError, "TRUNCATED"):
        cd.parse_ccid_descriptor(QEMU[:53])
    with raises(CCIDError, "NOT_CCID"):
        cd.parse_ccid_descriptor(patched(QEMU, (1, "B", 0x24)))
