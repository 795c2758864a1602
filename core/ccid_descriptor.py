"""The CCID class descriptor (CCID rev 1.1 §5.1): parse, explain, find.

    desc = find_ccid_descriptor(config_descriptor_bytes)   # or a bare 54-byte descriptor
    desc.exchange_level            # "TPDU", "short APDU", ...
    desc.auto_pps_negotiation      # dwFeatures 00000040h
    for line in desc.describe(): ...

Parsing never trusts a length: a descriptor is read only as far as its bytes
go, and anything short or malformed raises CCIDError.
"""

import struct

from .ccid import CCIDError

try:
    from micropython import const
except ImportError:
    def const(x):
        return x


CCID_DESCRIPTOR_TYPE = const(0x21)
CCID_DESCRIPTOR_LENGTH = const(54)
CCID_INTERFACE_CLASS = const(0x0B)
VENDOR_INTERFACE_CLASS = const(0xFF)

# §5.1 bVoltageSupport
VOLTAGE_5V = const(0x01)
VOLTAGE_3V = const(0x02)
VOLTAGE_1V8 = const(0x04)

# §5.1 dwProtocols (low word)
PROTOCOL_T0 = const(0x0001)
PROTOCOL_T1 = const(0x0002)

# §5.1 dwFeatures
FEATURE_AUTO_ATR_PARAMETERS = const(0x00000002)
FEATURE_AUTO_ACTIVATION = const(0x00000004)
FEATURE_AUTO_VOLTAGE = const(0x00000008)
FEATURE_AUTO_CLOCK = const(0x00000010)
FEATURE_AUTO_BAUD = const(0x00000020)
FEATURE_AUTO_PPS_NEGOTIATION = const(0x00000040)
FEATURE_AUTO_PPS_ACTIVE = const(0x00000080)
FEATURE_CLOCK_STOP = const(0x00000100)
FEATURE_NAD_OTHER_THAN_0 = const(0x00000200)
FEATURE_AUTO_IFSD = const(0x00000400)
FEATURE_ICCD = const(0x00000800)
EXCHANGE_CHARACTER = const(0x00000000)
EXCHANGE_TPDU = const(0x00010000)
EXCHANGE_SHORT_APDU = const(0x00020000)
EXCHANGE_EXTENDED_APDU = const(0x00040000)
EXCHANGE_MASK = const(0x00070000)
FEATURE_USB_WAKE_UP = const(0x00100000)

# (bit, name, text) in dwFeatures order
FEATURES = (
    (0x00000002, "auto_atr_parameters", "automatic parameter configuration based on ATR data"),
    (0x00000004, "auto_activation", "automatic activation of the ICC on insertion"),
    (0x00000008, "auto_voltage", "automatic ICC voltage selection"),
    (0x00000010, "auto_clock", "automatic ICC clock frequency change"),
    (0x00000020, "auto_baud", "automatic baud rate change"),
    (0x00000040, "auto_pps_negotiation",
     "automatic parameter negotiation by the CCID (proprietary PPS or resets)"),
    (0x00000080, "auto_pps_active", "automatic PPS by the CCID from the active parameters"),
    (0x00000100, "clock_stop", "CCID can set the ICC in clock stop mode"),
    (0x00000200, "nad_other_than_0", "NAD value other than 00 accepted (T=1)"),
    (0x00000400, "auto_ifsd", "automatic IFSD exchange as first exchange (T=1)"),
    (0x00000800, "iccd", "ICCD token (not in CCID 1.1)"),
    (0x00100000, "usb_wake_up", "USB wake up signalling on card insertion and removal"),
)

EXCHANGE_LEVELS = (
    (EXCHANGE_CHARACTER, "character"),
    (EXCHANGE_TPDU, "TPDU"),
    (EXCHANGE_SHORT_APDU, "short APDU"),
    (EXCHANGE_EXTENDED_APDU, "short and extended APDU"),
)

VOLTAGES = ((0x01, "5.0V"), (0x02, "3.0V"), (0x04, "1.8V"))
SYNCH_PROTOCOLS = ((0x01, "2-wire"), (0x02, "3-wire"), (0x04, "I2C"))
MECHANICAL = ((0x01, "card accept mechanism"), (0x02, "card ejection mechanism"),
              (0x04, "card capture mechanism"), (0x08, "card lock/unlock mechanism"))

_FMT = "<BBHBBIIIBIIBIIIIIBBHBB"

# Field names in wire order, matching _FMT.
FIELDS = ("bLength", "bDescriptorType", "bcdCCID", "bMaxSlotIndex", "bVoltageSupport",
          "dwProtocols", "dwDefaultClock", "dwMaximumClock", "bNumClockSupported",
          "dwDataRate", "dwMaxDataRate", "bNumDataRatesSupported", "dwMaxIFSD",
          "dwSynchProtocols", "dwMechanical", "dwFeatures", "dwMaxCCIDMessageLength",
          "bClassGetResponse", "bClassEnvelope", "wLcdLayout", "bPINSupport",
          "bMaxCCIDBusySlots")


class CCIDDescriptor:
    """Every §5.1 field as an attribute, plus derived properties.

    ``warnings`` lists what was odd but readable (a bLength other than 54,
    a vendor-specific descriptor type, several exchange levels at once...).
    """

    def __init__(self, values, warnings=None):
        for i in range(len(FIELDS)):
            setattr(self, FIELDS[i], values[i])
        self.warnings = list(warnings or ())
        # Set by the configuration-descriptor finder when it was used.
        self.bInterfaceNumber = None
        self.bAlternateSetting = None
        self.bInterfaceClass = None
        self.bInterfaceSubClass = None
        self.bInterfaceProtocol = None
        self.endpoints = []

    def to_bytes(self):
        return struct.pack(_FMT, *[getattr(self, f) for f in FIELDS])

    # -- derived -------------------------------------------------------------
    @property
    def slots(self):
        return self.bMaxSlotIndex + 1

    @property
    def notify_slot_change_length(self):
        """Bytes of RDR_to_PC_NotifySlotChange: 1 + 2 bits per slot, rounded up."""
        return 1 + (2 * self.slots + 7) // 8

    @property
    def ccid_version(self):
        return "%X.%02X" % (self.bcdCCID >> 8, self.bcdCCID & 0xFF)

    @property
    def exchange_bits(self):
        return self.dwFeatures & EXCHANGE_MASK

    @property
    def exchange_level(self):
        """ "character", "TPDU", "short APDU", "short and extended APDU" or "invalid"."""
        bits = self.exchange_bits
        for value, name in EXCHANGE_LEVELS:
            if value == bits:
                return name
        return "invalid"

    @property
    def tpdu_level(self):
        return self.exchange_bits == EXCHANGE_TPDU

    @property
    def character_level(self):
        return self.exchange_bits == EXCHANGE_CHARACTER

    @property
    def apdu_level(self):
        return self.exchange_bits in (EXCHANGE_SHORT_APDU, EXCHANGE_EXTENDED_APDU)

    @property
    def extended_apdu_level(self):
        return self.exchange_bits == EXCHANGE_EXTENDED_APDU

    def has_feature(self, bit):
        return bool(self.dwFeatures & bit)

    @property
    def auto_atr_parameters(self):
        return self.has_feature(FEATURE_AUTO_ATR_PARAMETERS)

    @property
    def auto_activation(self):
        return self.has_feature(FEATURE_AUTO_ACTIVATION)

    @property
    def auto_voltage(self):
        return self.has_feature(FEATURE_AUTO_VOLTAGE)

    @property
    def auto_clock(self):
        return self.has_feature(FEATURE_AUTO_CLOCK)

    @property
    def auto_baud(self):
        return self.has_feature(FEATURE_AUTO_BAUD)

    @property
    def auto_pps_negotiation(self):
        return self.has_feature(FEATURE_AUTO_PPS_NEGOTIATION)

    @property
    def auto_pps_active(self):
        return self.has_feature(FEATURE_AUTO_PPS_ACTIVE)

    @property
    def auto_pps(self):
        """The CCID does the PPS itself (either way): the host must not send one."""
        return self.has_feature(FEATURE_AUTO_PPS_NEGOTIATION | FEATURE_AUTO_PPS_ACTIVE)

    @property
    def clock_stop(self):
        return self.has_feature(FEATURE_CLOCK_STOP)

    @property
    def nad_other_than_0(self):
        return self.has_feature(FEATURE_NAD_OTHER_THAN_0)

    @property
    def auto_ifsd(self):
        return self.has_feature(FEATURE_AUTO_IFSD)

    @property
    def iccd(self):
        return self.has_feature(FEATURE_ICCD)

    @property
    def usb_wake_up(self):
        return self.has_feature(FEATURE_USB_WAKE_UP)

    def features(self):
        """Names of the dwFeatures bits set (FEATURES order)."""
        return [name for bit, name, _ in FEATURES if self.dwFeatures & bit]

    @property
    def supports_t0(self):
        return bool(self.dwProtocols & PROTOCOL_T0)

    @property
    def supports_t1(self):
        return bool(self.dwProtocols & PROTOCOL_T1)

    def protocols(self):
        out = []
        if self.supports_t0:
            out.append("T=0")
        if self.supports_t1:
            out.append("T=1")
        return out

    def voltages(self):
        return [name for bit, name in VOLTAGES if self.bVoltageSupport & bit]

    def synch_protocols(self):
        return [name for bit, name in SYNCH_PROTOCOLS if self.dwSynchProtocols & bit]

    def mechanical(self):
        return [name for bit, name in MECHANICAL if self.dwMechanical & bit]

    @property
    def pin_verification(self):
        return bool(self.bPINSupport & 0x01)

    @property
    def pin_modification(self):
        return bool(self.bPINSupport & 0x02)

    @property
    def lcd_lines(self):
        return self.wLcdLayout >> 8

    @property
    def lcd_columns(self):
        return self.wLcdLayout & 0xFF

    @property
    def max_data_length(self):
        """abData bytes one message can carry: dwMaxCCIDMessageLength - 10."""
        return max(0, self.dwMaxCCIDMessageLength - 10)

    # -- output ------------------------------------------------------------------
    def as_dict(self):
        """Every field and derived value (the --json view); plain types only."""
        d = {}
        for f in FIELDS:
            d[f] = getattr(self, f)
        d["ccid_version"] = self.ccid_version
        d["slots"] = self.slots
        d["exchange_level"] = self.exchange_level
        d["features"] = self.features()
        d["protocols"] = self.protocols()
        d["voltages"] = self.voltages()
        d["synch_protocols"] = self.synch_protocols()
        d["mechanical"] = self.mechanical()
        d["pin_verification"] = self.pin_verification
        d["pin_modification"] = self.pin_modification
        d["lcd_lines"] = self.lcd_lines
        d["lcd_columns"] = self.lcd_columns
        d["notify_slot_change_length"] = self.notify_slot_change_length
        d["warnings"] = list(self.warnings)
        if self.bInterfaceNumber is not None:
            d["bInterfaceNumber"] = self.bInterfaceNumber
            d["bAlternateSetting"] = self.bAlternateSetting
            d["bInterfaceClass"] = self.bInterfaceClass
            d["bInterfaceSubClass"] = self.bInterfaceSubClass
            d["bInterfaceProtocol"] = self.bInterfaceProtocol
            d["endpoints"] = [{"bEndpointAddress": e[0], "bmAttributes": e[1],
                               "wMaxPacketSize": e[2], "bInterval": e[3]}
                              for e in self.endpoints]
        return d

    def describe(self):
        """The descriptor in human form, one field a line, details indented."""
        L = []
        if self.bInterfaceNumber is not None:
            L.append("Interface %d alt %d: class 0x%02X subclass 0x%02X protocol 0x%02X"
                     % (self.bInterfaceNumber, self.bAlternateSetting, self.bInterfaceClass,
                        self.bInterfaceSubClass, self.bInterfaceProtocol))
            L.append("  " + _PROTOCOL_TEXT.get(self.bInterfaceProtocol,
                                               "unknown bInterfaceProtocol"))
            for addr, attr, mps, interval in self.endpoints:
                L.append("  endpoint 0x%02X %s %s, wMaxPacketSize %d%s" % (
                    addr, _EP_TYPES[attr & 3], "IN" if addr & 0x80 else "OUT", mps,
                    ", bInterval %d" % interval if attr & 3 == 3 else ""))
        L.append("CCID class descriptor")
        L.append(" bLength: %d" % self.bLength)
        L.append(" bDescriptorType: 0x%02X%s" % (
            self.bDescriptorType, "" if self.bDescriptorType == 0x21 else " (vendor-specific)"))
        L.append(" bcdCCID: %s" % self.ccid_version)
        L.append(" bMaxSlotIndex: %d (%d slot%s)" % (self.bMaxSlotIndex, self.slots,
                                                       "" if self.slots == 1 else "s"))
        L.append(" bVoltageSupport: 0x%02X" % self.bVoltageSupport)
        for v in self.voltages():
            L.append("  " + v)
        L.append(" dwProtocols: 0x%08X" % self.dwProtocols)
        for p in self.protocols():
            L.append("  " + p)
        L.append(" dwDefaultClock: %s" % _khz(self.dwDefaultClock))
        L.append(" dwMaximumClock: %s" % _khz(self.dwMaximumClock))
        L.append(" bNumClockSupported: %d%s" % (
            self.bNumClockSupported,
            " (default and maximum only)" if self.bNumClockSupported == 0 else ""))
        L.append(" dwDataRate: %d bps" % self.dwDataRate)
        L.append(" dwMaxDataRate: %d bps" % self.dwMaxDataRate)
        L.append(" bNumDataRatesSupported: %d%s" % (
            self.bNumDataRatesSupported,
            " (any rate between default and maximum)"
            if self.bNumDataRatesSupported == 0 else ""))
        L.append(" dwMaxIFSD: %d" % self.dwMaxIFSD)
        L.append(" dwSynchProtocols: 0x%08X" % self.dwSynchProtocols)
        for p in self.synch_protocols():
            L.append("  " + p)
        L.append(" dwMechanical: 0x%08X" % self.dwMechanical)
        if not self.dwMechanical:
            L.append("  no special characteristics")
        for m in self.mechanical():
            L.append("  " + m)
        L.append(" dwFeatures: 0x%08X" % self.dwFeatures)
        for bit, name, text in FEATURES:
            if self.dwFeatures & bit:
                L.append("  %08X %s" % (bit, text))
        L.append("  %08X %s level exchange" % (self.exchange_bits, self.exchange_level))
        L.append(" dwMaxCCIDMessageLength: %d bytes" % self.dwMaxCCIDMessageLength)
        L.append(" bClassGetResponse: 0x%02X%s" % (
            self.bClassGetResponse,
            " (echoes the APDU class)" if self.bClassGetResponse == 0xFF else ""))
        L.append(" bClassEnvelope: 0x%02X%s" % (
            self.bClassEnvelope,
            " (echoes the APDU class)" if self.bClassEnvelope == 0xFF else ""))
        L.append(" wLcdLayout: 0x%04X%s" % (
            self.wLcdLayout, " (no LCD)" if self.wLcdLayout == 0 else
            " (%d lines of %d characters)" % (self.lcd_lines, self.lcd_columns)))
        L.append(" bPINSupport: 0x%02X" % self.bPINSupport)
        if self.pin_verification:
            L.append("  PIN verification")
        if self.pin_modification:
            L.append("  PIN modification")
        L.append(" bMaxCCIDBusySlots: %d" % self.bMaxCCIDBusySlots)
        for w in self.warnings:
            L.append("warning: " + w)
        return L

    def __repr__(self):
        return "CCIDDescriptor(bcdCCID=%s, slots=%d, %s, dwFeatures=0x%08X)" % (
            self.ccid_version, self.slots, self.exchange_level, self.dwFeatures)


_EP_TYPES = ("control", "isochronous", "bulk", "interrupt")
_PROTOCOL_TEXT = {
    0: "CCID: bulk transfers, optional interrupt-IN",
    1: "ICCD version A: control transfers, no interrupt-IN",
    2: "ICCD version B: control transfers, optional interrupt-IN",
}


def _khz(khz):
    return "%d.%03d MHz" % (khz // 1000, khz % 1000)


def parse_ccid_descriptor(data):
    """CCIDDescriptor from the bytes of one class descriptor (§5.1).

    Needs all 54 bytes of fields; a bLength other than 54 or a vendor
    descriptor type (FFh, pre-1.0 readers) is accepted with a warning.
    """
    n = len(data)
    if n < CCID_DESCRIPTOR_LENGTH:
        raise CCIDError("CCID class descriptor needs 54 bytes, got %d" % n, None, "TRUNCATED")
    values = struct.unpack_from(_FMT, data, 0)
    warnings = []
    if values[0] != CCID_DESCRIPTOR_LENGTH:
        warnings.append("bLength is %d, not 54; the 54 bytes of fields are read" % values[0])
    if values[1] != CCID_DESCRIPTOR_TYPE:
        if values[1] != 0xFF:
            raise CCIDError("bDescriptorType 0x%02X is not a CCID class descriptor" % values[1],
                            None, "NOT_CCID")
        warnings.append("bDescriptorType 0xFF (pre-1.0 vendor-specific descriptor)")
    desc = CCIDDescriptor(values, warnings)
    if desc.exchange_level == "invalid":
        desc.warnings.append("dwFeatures announces several exchange levels (0x%05X)"
                             % desc.exchange_bits)
    if desc.bMaxCCIDBusySlots == 0:
        desc.warnings.append("bMaxCCIDBusySlots is 0")
    return desc


def _walk(data):
    """(offset, bLength, bDescriptorType) of each descriptor in a configuration."""
    out = []
    pos = 0
    n = len(data)
    while pos < n:
        if pos + 2 > n:
            raise CCIDError("descriptor at %d cut short" % pos, None, "TRUNCATED")
        length = data[pos]
        if length < 2:
            raise CCIDError("descriptor at %d has bLength %d" % (pos, length), None, "MALFORMED")
        if pos + length > n:
            raise CCIDError("descriptor at %d announces %d bytes, %d present"
                            % (pos, length, n - pos), None, "TRUNCATED")
        out.append((pos, length, data[pos + 1]))
        pos += length
    return out


def find_ccid_interfaces(config):
    """Every CCID interface of a configuration descriptor, as CCIDDescriptors
    carrying bInterfaceNumber, bAlternateSetting, bInterface* and endpoints.

    An interface counts when its class is 0Bh and a class descriptor (21h)
    follows it, or its class is FFh (pre-1.0 readers) and a 54-byte 21h/FFh
    descriptor follows it. The class descriptor may sit after the endpoint
    descriptors (some readers put it there).
    """
    found = []
    iface = None
    candidate = None
    endpoints = []

    def close():
        if iface is None or candidate is None:
            return
        off, length = candidate
        if length < CCID_DESCRIPTOR_LENGTH:
            raise CCIDError("CCID class descriptor of %d bytes: fields missing" % length,
                            None, "TRUNCATED")
        desc = parse_ccid_descriptor(memoryview(config)[off:off + length])
        (desc.bInterfaceNumber, desc.bAlternateSetting, desc.bInterfaceClass,
         desc.bInterfaceSubClass, desc.bInterfaceProtocol) = iface
        desc.endpoints = endpoints
        if iface[2] == VENDOR_INTERFACE_CLASS:
            desc.warnings.append("interface class 0xFF (pre-1.0 vendor-specific CCID)")
        found.append(desc)

    for off, length, dtype in _walk(config):
        if dtype == 0x04:                       # INTERFACE
            close()
            iface = None
            candidate = None
            endpoints = []
            if length < 9:
                raise CCIDError("interface descriptor of %d bytes" % length, None, "TRUNCATED")
            cls = config[off + 5]
            if cls == CCID_INTERFACE_CLASS or cls == VENDOR_INTERFACE_CLASS:
                iface = (config[off + 2], config[off + 3], cls, config[off + 6],
                         config[off + 7])
        elif iface is None:
            continue
        elif dtype == 0x05 and length >= 7:     # ENDPOINT
            endpoints.append((config[off + 2], config[off + 3],
                              config[off + 4] | (config[off + 5] << 8), config[off + 6]))
        elif candidate is None:
            if iface[2] == CCID_INTERFACE_CLASS and dtype == CCID_DESCRIPTOR_TYPE:
                candidate = (off, length)
            elif (iface[2] == VENDOR_INTERFACE_CLASS and length == CCID_DESCRIPTOR_LENGTH
                  and (dtype == CCID_DESCRIPTOR_TYPE or dtype == 0xFF)):
                candidate = (off, length)
    close()
    return found


def find_ccid_descriptor(data):
    """The first CCID class descriptor in ``data``: a whole configuration
    descriptor (starts 09 02) or a bare class descriptor (starts 36 21)."""
    if len(data) >= 2 and data[1] == 0x02 and data[0] == 9:
        found = find_ccid_interfaces(data)
        if not found:
            raise CCIDError("no CCID interface in this configuration", None, "NO_CCID_INTERFACE")
        return found[0]
    return parse_ccid_descriptor(data)
