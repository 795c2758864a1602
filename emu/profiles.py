"""Profiles of the emulated CCID readers: one data table, no behaviour.

``PROFILES[id]`` is a dict:

  usb       device / interface facts: idVendor, idProduct, bcdDevice, bcdUSB,
            manufacturer, product, interface_class (0Bh, or FFh for the
            pre-1.0 readers libccid still drives), interface_protocol,
            interface_number, interrupt (an interrupt-IN endpoint exists),
            wMaxPacketSize (bulk endpoints), bMaxPower (2 mA units)
  ccid      every field of the CCID class descriptor (CCID rev 1.1 §5.1), in
            core.ccid_descriptor.FIELDS order and naming
  clocks_khz / data_rates
            the answers to GET_CLOCK_FREQUENCIES / GET_DATA_RATES (§5.3.2,
            §5.3.3); None: the reader does not answer the request (see
            quirks["class_requests"])
  quirks    see DEFAULT_QUIRKS (every key is always present after profile())
  timing    reader-side timing (µs): firmware_us per command, card_processing_us
            (default card processing time per command, when the card object
            does not say), wtx_interval_us (a time-extension answer is sent
            each time this much card time elapses in one command)
  escape    PC_to_RDR_Escape requests the reader answers: bytes -> bytes
  bank      (only for a bank of readers) member profile, count, hub layout
  source    where the descriptor values come from

Descriptor values are the ones the real readers report (libccid's readers/
dumps, named in ``source``); every value that was chosen rather than read
from a real device says so in a comment.
"""

from ..core import ccid_descriptor as _cd

# Quirks every profile has; a profile overrides only what differs.
DEFAULT_QUIRKS = {
    # Above this card/reader data rate (bit/s) every exchange fails with
    # HW_ERROR (the AlcorMicro AU9560 defect); None: no such limit.
    "max_working_rate_bps": None,
    # The card can never be removed (USB tokens); remove_card() is refused.
    "card_always_present": False,
    # Reader builds a PC/SC part 3 pseudo-ATR for the PICC (contactless).
    "contactless": False,
    # The reader has a keypad (PC_to_RDR_Secure is served from the script).
    "keypad": False,
    # How GET_CLOCK_FREQUENCIES / GET_DATA_RATES behave when the profile has
    # no list: "stall" (request error) or "timeout" (never answered).
    "class_requests": "stall",
    # NotifySlotChange on the interrupt endpoint when a card comes or goes.
    "notify_slot_change": True,
}

_GEMPLUS_RATES = [
    10753, 14337, 15625, 17204, 20833, 21505, 23438, 25806, 28674, 31250, 32258, 34409,
    39063, 41667, 43011, 46875, 52083, 53763, 57348, 62500, 64516, 68817, 71685, 78125,
    83333, 86022, 93750, 104167, 107527, 114695, 125000, 129032, 143369, 156250, 166667,
    172043, 215054, 229391, 250000, 344086,
]


def _ccid(**kw):
    """A class descriptor dict: CCID 1.1 defaults overridden by ``kw``."""
    d = {
        "bLength": 54, "bDescriptorType": 0x21, "bcdCCID": 0x0110, "bMaxSlotIndex": 0,
        "bVoltageSupport": 0x07, "dwProtocols": 0x0003, "dwDefaultClock": 4000,
        "dwMaximumClock": 4000, "bNumClockSupported": 0, "dwDataRate": 10752,
        "dwMaxDataRate": 344086, "bNumDataRatesSupported": 0, "dwMaxIFSD": 254,
        "dwSynchProtocols": 0, "dwMechanical": 0, "dwFeatures": 0x00010230,
        "dwMaxCCIDMessageLength": 271, "bClassGetResponse": 0x00, "bClassEnvelope": 0x00,
        "wLcdLayout": 0, "bPINSupport": 0, "bMaxCCIDBusySlots": 1,
    }
    for k in kw:
        if k not in d:
            raise KeyError("not a CCID descriptor field: %s" % k)
        d[k] = kw[k]
    return d


PROFILES = {
    # Gemplus GemPC Twin, USB (libccid readers/GemPCTwin.txt).
    "gemalto-pctwin": {
        "usb": {"idVendor": 0x08E6, "idProduct": 0x3437, "bcdDevice": 0x0100,
                "bcdUSB": 0x0110,            # chosen: full-speed USB 1.1 device
                "manufacturer": "Gemplus", "product": "USB SmartCard Reader",
                "interface_class": 0x0B, "interface_protocol": 0, "interface_number": 0,
                "interrupt": True, "wMaxPacketSize": 64, "bMaxPower": 50},  # power chosen
        "ccid": _ccid(bcdCCID=0x0100, dwDefaultClock=4000, dwMaximumClock=4000,
                      dwDataRate=10752, dwMaxDataRate=344086, dwMaxIFSD=254,
                      dwFeatures=0x00010230, dwMaxCCIDMessageLength=271,
                      bMaxCCIDBusySlots=1),
        "clocks_khz": [4000],
        "data_rates": _GEMPLUS_RATES,
        "quirks": {},
        "timing": {"firmware_us": 150, "card_processing_us": 1000,   # chosen
                   "wtx_interval_us": 1000000},
        # chosen: the firmware-version escape answers a version string
        "escape": {b"\x02": b"GemTwin V1.10"},
        "source": "libccid readers/GemPCTwin.txt",
    },
    # A Cherry keyboard reader. The descriptor follows the Cherry SmartBoard /
    # SmartTerminal dumps of libccid (readers/CherryXX44.txt,
    # CherrySmartTerminalST2XXX.txt); the 3.685 MHz clock, the product id and
    # the TPDU level are chosen for this profile (no dump at hand).
    "cherry-st": {
        "usb": {"idVendor": 0x046A, "idProduct": 0x0010, "bcdDevice": 0x0104,
                "bcdUSB": 0x0110, "manufacturer": "Cherry GmbH",
                "product": "SmartBoard XX44",
                "interface_class": 0x0B, "interface_protocol": 0,
                "interface_number": 1,        # keyboard HID is interface 0 on the real one
                "interrupt": True, "wMaxPacketSize": 64, "bMaxPower": 50},
        "ccid": _ccid(bcdCCID=0x0100, bVoltageSupport=0x07,
                      dwDefaultClock=3685, dwMaximumClock=3685,   # chosen
                      dwDataRate=9906, dwMaxDataRate=316989,       # 3.685 MHz: D=1 and D=32 at F=372
                      dwMaxIFSD=254, dwSynchProtocols=0,
                      dwFeatures=0x00010230, dwMaxCCIDMessageLength=271,
                      bClassGetResponse=0xFF, bClassEnvelope=0xFF, bMaxCCIDBusySlots=1),
        "clocks_khz": [3685],
        "data_rates": None,
        "quirks": {},
        "timing": {"firmware_us": 200, "card_processing_us": 1000, "wtx_interval_us": 1000000},
        "escape": {},
        "source": "libccid readers/CherryXX44.txt (vendor, strings); clock chosen",
    },
    # Gemplus GemPC Pinpad (libccid readers/GemPCPinpad.txt). The real dump
    # reports wLcdLayout 0000; this profile gives it a 2 x 16 display (chosen)
    # so that the LCD path is exercised.
    "pinpad": {
        "usb": {"idVendor": 0x08E6, "idProduct": 0x3478, "bcdDevice": 0x0100,
                "bcdUSB": 0x0110, "manufacturer": "Gemplus",
                "product": "USB GemPCPinpad SmartCard Reader",
                "interface_class": 0x0B, "interface_protocol": 0, "interface_number": 0,
                "interrupt": True, "wMaxPacketSize": 64, "bMaxPower": 50},
        "ccid": _ccid(bcdCCID=0x0100, dwDefaultClock=4000, dwMaximumClock=4000,
                      dwDataRate=10752, dwMaxDataRate=500000, dwMaxIFSD=254,
                      dwFeatures=0x00010230, dwMaxCCIDMessageLength=271,
                      wLcdLayout=0x0210,          # chosen (real: 0x0000)
                      bPINSupport=0x03, bMaxCCIDBusySlots=1),
        "clocks_khz": [4000],
        "data_rates": _GEMPLUS_RATES + [500000],
        "quirks": {"keypad": True},
        "timing": {"firmware_us": 150, "card_processing_us": 1000, "wtx_interval_us": 1000000},
        "escape": {},
        "source": "libccid readers/GemPCPinpad.txt",
    },
    # AlcorMicro AU9560 as the laptops report it: 058F:9540 "EMV Smartcard
    # Reader" (libccid readers/AlcorMicro_AU9560.txt). Extended APDU level
    # with automatic PPS; it announces 688172 bit/s but fails with HW_ERROR
    # above about 200 000 bit/s (libccid's "AU9560 and fast smart cards").
    "au9560": {
        "usb": {"idVendor": 0x058F, "idProduct": 0x9540, "bcdDevice": 0x0120,
                "bcdUSB": 0x0200, "manufacturer": "Generic",
                "product": "EMV Smartcard Reader",
                "interface_class": 0x0B, "interface_protocol": 0, "interface_number": 0,
                "interrupt": True, "wMaxPacketSize": 64, "bMaxPower": 50},
        "ccid": _ccid(bcdCCID=0x0110, bVoltageSupport=0x07, dwDefaultClock=3700,
                      dwMaximumClock=12000, bNumClockSupported=3, dwDataRate=9946,
                      dwMaxDataRate=688172, bNumDataRatesSupported=138, dwMaxIFSD=254,
                      dwSynchProtocols=0x07, dwFeatures=0x000404BE,
                      dwMaxCCIDMessageLength=272, bClassGetResponse=0xFF,
                      bClassEnvelope=0xFF, bMaxCCIDBusySlots=1),
        "clocks_khz": [3700, 4800, 12000],
        # The real reader does not answer GET_DATA_RATES (libccid's dump).
        "data_rates": None,
        "quirks": {"max_working_rate_bps": 200000, "class_requests": "stall"},
        "timing": {"firmware_us": 300, "card_processing_us": 1000, "wtx_interval_us": 1000000},
        "escape": {},
        "source": "libccid readers/AlcorMicro_AU9560.txt",
    },
    # sysmocom sysmoOCTSIM, 8 slots driven in parallel (libccid
    # readers/sysmocom_sysmoOCTSIM.txt): T=0 only, TPDU level, automatic PPS,
    # bMaxCCIDBusySlots 8.
    "sysmooctsim": {
        "usb": {"idVendor": 0x1D50, "idProduct": 0x6141, "bcdDevice": 0x0000,
                "bcdUSB": 0x0200, "manufacturer": "sysmocom - s.f.m.c. GmbH",
                "product": "sysmoOCTSIM 0.2.40-172b",
                "interface_class": 0x0B, "interface_protocol": 0, "interface_number": 0,
                "interrupt": True, "wMaxPacketSize": 64, "bMaxPower": 250},  # power chosen
        "ccid": _ccid(bcdCCID=0x0110, bMaxSlotIndex=7, bVoltageSupport=0x07,
                      dwProtocols=0x0001, dwDefaultClock=2500, dwMaximumClock=20000,
                      bNumClockSupported=4, dwDataRate=6720, dwMaxDataRate=921600,
                      dwMaxIFSD=0, dwFeatures=0x000100B0, dwMaxCCIDMessageLength=272,
                      bClassGetResponse=0xFF, bClassEnvelope=0xFF, bMaxCCIDBusySlots=8),
        "clocks_khz": None,
        "data_rates": None,
        # libccid's dump: both requests time out on the real firmware.
        "quirks": {"class_requests": "timeout"},
        # card_processing_us calibrated (emu/bench/slots.py): one card's phone-book
        # read (256 T=0 APDUs) takes ~5.4 s of emulated time, within the published
        # 5.1 s (this reader) .. 5.56 s (a Gemalto at 250 kbit/s); at 156 kbit/s the
        # line carries a READ RECORD in ~2.9 ms, the rest is the SIM's own work.
        "timing": {"firmware_us": 100, "card_processing_us": 17500,
                   "wtx_interval_us": 1000000},
        "escape": {},
        "source": "libccid readers/sysmocom_sysmoOCTSIM.txt",
    },
    # sysmoSIMBANK 96: 12 sysmoOCTSIM boards behind USB hubs on one bus
    # (3 hubs of 4 ports: the layout is chosen).
    "sysmosimbank-96": {
        "bank": {"member": "sysmooctsim", "count": 12, "hubs": 3, "ports_per_hub": 4},
        "source": "12 x sysmooctsim",
    },
    # A USB crypto token with a CCID interface (ICCD-like): the chip is always
    # there, so no interrupt endpoint (CCID §3: the interrupt pipe is needed
    # only when the ICC can be removed). Values chosen after the common
    # token descriptors in libccid's list: extended APDU level, T=1, 5 V.
    "iccd-token": {
        "usb": {"idVendor": 0x1209, "idProduct": 0x0CC1,          # chosen (pid.codes test range)
                "bcdDevice": 0x0100, "bcdUSB": 0x0200,
                "manufacturer": "ccidkit", "product": "Emulated Token",
                "interface_class": 0x0B, "interface_protocol": 0, "interface_number": 0,
                "interrupt": False, "wMaxPacketSize": 64, "bMaxPower": 50},
        "ccid": _ccid(bcdCCID=0x0110, bVoltageSupport=0x01, dwProtocols=0x0002,
                      dwDefaultClock=3580, dwMaximumClock=3580, dwDataRate=9624,
                      dwMaxDataRate=9624, dwMaxIFSD=254, dwFeatures=0x000408BA,
                      dwMaxCCIDMessageLength=3072, bClassGetResponse=0xFF,
                      bClassEnvelope=0xFF, bMaxCCIDBusySlots=1),
        "clocks_khz": [3580],
        "data_rates": [9624],
        "quirks": {"card_always_present": True, "notify_slot_change": False},
        "timing": {"firmware_us": 100, "card_processing_us": 3000, "wtx_interval_us": 1000000},
        "escape": {},
        "source": "chosen (typical token descriptor)",
    },
    # A contactless (PICC) reader: the Gemalto Prox-DU's contactless class
    # descriptor (its reference manual: 5 V only, 4 MHz, 10752 bit/s,
    # dwFeatures 00040672h extended APDU level); ids and strings chosen.
    "contactless": {
        "usb": {"idVendor": 0x08E6, "idProduct": 0x5503, "bcdDevice": 0x0100,
                "bcdUSB": 0x0200, "manufacturer": "Gemalto",
                "product": "Prox-DU Contactless_",
                "interface_class": 0x0B, "interface_protocol": 0, "interface_number": 0,
                "interrupt": True, "wMaxPacketSize": 64, "bMaxPower": 100},
        "ccid": _ccid(bcdCCID=0x0110, bVoltageSupport=0x01, dwProtocols=0x0003,
                      dwDefaultClock=4000, dwMaximumClock=4000, dwDataRate=10752,
                      dwMaxDataRate=10752, dwMaxIFSD=254, dwFeatures=0x00040672,
                      dwMaxCCIDMessageLength=271,            # chosen
                      bClassGetResponse=0xFF, bClassEnvelope=0xFF, bMaxCCIDBusySlots=1),
        "clocks_khz": [4000],
        "data_rates": [10752],
        "quirks": {"contactless": True},
        "timing": {"firmware_us": 200, "card_processing_us": 2000, "wtx_interval_us": 1000000},
        "escape": {},
        "source": "Prox-DU reference manual (class descriptor); rest chosen",
    },
}


def profile(profile_id):
    """The profile dict of ``profile_id`` with its quirks completed; KeyError if unknown.

    For a bank profile the member's profile is returned (see ``bank_of``).
    """
    p = PROFILES[profile_id]
    if "bank" in p:
        return profile(p["bank"]["member"])
    q = dict(DEFAULT_QUIRKS)
    q.update(p.get("quirks", {}))
    out = dict(p)
    out["quirks"] = q
    out["id"] = profile_id
    return out


def bank_of(profile_id):
    """The bank dict of a bank profile (member, count, hubs...), None otherwise."""
    return PROFILES[profile_id].get("bank")


def class_descriptor_bytes(ccid_fields):
    """The 54 bytes of a CCID class descriptor from its field dict."""
    return _cd.CCIDDescriptor([ccid_fields[f] for f in _cd.FIELDS]).to_bytes()
