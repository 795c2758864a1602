"""PC/SC v2 part 10 features and the control codes of a CCID reader (as libccid offers them).

Control codes use the Linux pcsc-lite numbering: SCARD_CTL_CODE(code) =
0x42000000 + code. GET_FEATURE_REQUEST (SCARD_CTL_CODE(3400)) answers a TLV
list: tag (1 byte), length 4, the control code of the feature big endian
(part 10 §2.2). The feature codes are SCARD_CTL_CODE(0x330000 + tag), as
libccid numbers them.

    control(reader, slot, code, data) -> bytes    # what SCardControl reaches

Secure PIN entry: FEATURE_VERIFY_PIN_DIRECT / FEATURE_MODIFY_PIN_DIRECT take
the part 10 PIN_VERIFY_STRUCTURE / PIN_MODIFY_STRUCTURE and become a
PC_to_RDR_Secure (CCID §6.1.11): bTimerOut2 and ulDataLength are dropped.
NAD: SCARD_CTL_CODE(3600) with ``3F 00 00`` (get) or ``3E 00 01 NAD`` (set)
answers ``cmd 00 len status [NAD]`` (status 00 = done); the NAD then goes
into the T=1 blocks of that slot.
"""

import struct

from .errors import CcidkitError
from .ccid import PINVerification, PINModification, CCIDError
from .ccid_descriptor import EXCHANGE_EXTENDED_APDU
from .driver import ReaderError


def SCARD_CTL_CODE(code):
    return 0x42000000 + code


CLASS2_IOCTL_MAGIC = 0x330000
CM_IOCTL_GET_FEATURE_REQUEST = SCARD_CTL_CODE(3400)
IOCTL_SMARTCARD_VENDOR_IFD_EXCHANGE = SCARD_CTL_CODE(1)
IOCTL_NAD = SCARD_CTL_CODE(3600)
NAD_GET = 0x3F
NAD_SET = 0x3E

# PC/SC v2 part 10 feature tags
FEATURE_VERIFY_PIN_START = 0x01
FEATURE_VERIFY_PIN_FINISH = 0x02
FEATURE_MODIFY_PIN_START = 0x03
FEATURE_MODIFY_PIN_FINISH = 0x04
FEATURE_GET_KEY_PRESSED = 0x05
FEATURE_VERIFY_PIN_DIRECT = 0x06
FEATURE_MODIFY_PIN_DIRECT = 0x07
FEATURE_MCT_READER_DIRECT = 0x08
FEATURE_MCT_UNIVERSAL = 0x09
FEATURE_IFD_PIN_PROPERTIES = 0x0A
FEATURE_ABORT = 0x0B
FEATURE_SET_SPE_MESSAGE = 0x0C
FEATURE_VERIFY_PIN_DIRECT_APP_ID = 0x0D
FEATURE_MODIFY_PIN_DIRECT_APP_ID = 0x0E
FEATURE_WRITE_DISPLAY = 0x0F
FEATURE_GET_KEY = 0x10
FEATURE_IFD_DISPLAY_PROPERTIES = 0x11
FEATURE_GET_TLV_PROPERTIES = 0x12
FEATURE_CCID_ESC_COMMAND = 0x13

FEATURE_NAMES = {
    0x01: "FEATURE_VERIFY_PIN_START", 0x02: "FEATURE_VERIFY_PIN_FINISH",
    0x03: "FEATURE_MODIFY_PIN_START", 0x04: "FEATURE_MODIFY_PIN_FINISH",
    0x05: "FEATURE_GET_KEY_PRESSED", 0x06: "FEATURE_VERIFY_PIN_DIRECT",
    0x07: "FEATURE_MODIFY_PIN_DIRECT", 0x08: "FEATURE_MCT_READER_DIRECT",
    0x09: "FEATURE_MCT_UNIVERSAL", 0x0A: "FEATURE_IFD_PIN_PROPERTIES",
    0x0B: "FEATURE_ABORT", 0x0C: "FEATURE_SET_SPE_MESSAGE",
    0x0D: "FEATURE_VERIFY_PIN_DIRECT_APP_ID", 0x0E: "FEATURE_MODIFY_PIN_DIRECT_APP_ID",
    0x0F: "FEATURE_WRITE_DISPLAY", 0x10: "FEATURE_GET_KEY",
    0x11: "FEATURE_IFD_DISPLAY_PROPERTIES", 0x12: "FEATURE_GET_TLV_PROPERTIES",
    0x13: "FEATURE_CCID_ESC_COMMAND",
}

# part 10 §2.6.14 GET_TLV_PROPERTIES tags
PCSCv2_PART10_PROPERTY_wLcdLayout = 0x01
PCSCv2_PART10_PROPERTY_bEntryValidationCondition = 0x02
PCSCv2_PART10_PROPERTY_bTimeOut2 = 0x03
PCSCv2_PART10_PROPERTY_wLcdMaxCharacters = 0x04
PCSCv2_PART10_PROPERTY_wLcdMaxLines = 0x05
PCSCv2_PART10_PROPERTY_bMinPINSize = 0x06
PCSCv2_PART10_PROPERTY_bMaxPINSize = 0x07
PCSCv2_PART10_PROPERTY_sFirmwareID = 0x08
PCSCv2_PART10_PROPERTY_bPPDUSupport = 0x09
PCSCv2_PART10_PROPERTY_dwMaxAPDUDataSize = 0x0A
PCSCv2_PART10_PROPERTY_wIdVendor = 0x0B
PCSCv2_PART10_PROPERTY_wIdProduct = 0x0C

VERIFY_HEADER = 19     # PIN_VERIFY_STRUCTURE up to abData
MODIFY_HEADER = 24     # PIN_MODIFY_STRUCTURE up to abData


class Part10Error(CcidkitError):
    """A control request that cannot be served: name INVALID_PARAMETER (malformed
    input), UNSUPPORTED (no such feature on this reader)."""


def feature_ioctl(tag):
    return SCARD_CTL_CODE(CLASS2_IOCTL_MAGIC + tag)


def features(reader):
    """[(tag, control code)] this reader offers, in tag order."""
    tags = []
    pin = reader.pin_support
    if pin & 0x01:
        tags.append(FEATURE_VERIFY_PIN_DIRECT)
    if pin & 0x02:
        tags.append(FEATURE_MODIFY_PIN_DIRECT)
    if pin & 0x03:
        tags.append(FEATURE_IFD_PIN_PROPERTIES)
    tags.append(FEATURE_GET_TLV_PROPERTIES)
    if not reader.quirks.get("no_escape"):
        tags.append(FEATURE_CCID_ESC_COMMAND)
    return [(t, feature_ioctl(t)) for t in tags]


def feature_tlv(reader):
    """The GET_FEATURE_REQUEST answer."""
    out = bytearray()
    for tag, code in features(reader):
        out.append(tag)
        out.append(4)
        out.extend(struct.pack(">I", code))
    return bytes(out)


def parse_feature_tlv(data):
    """{tag: control code} of a GET_FEATURE_REQUEST answer; Part10Error when malformed."""
    out = {}
    pos = 0
    n = len(data)
    while pos < n:
        if pos + 2 > n:
            raise Part10Error("TLV cut after %d bytes" % pos, name="INVALID_PARAMETER")
        tag = data[pos]
        ln = data[pos + 1]
        if ln != 4 or pos + 2 + ln > n:
            raise Part10Error("feature 0x%02X: length %d" % (tag, ln), name="INVALID_PARAMETER")
        out[tag] = struct.unpack(">I", bytes(data[pos + 2:pos + 6]))[0]
        pos += 6
    return out


def tlv_properties(reader):
    """GET_TLV_PROPERTIES (part 10 §2.6.14): tag, length, little-endian value."""
    desc = reader.descriptor
    out = bytearray()

    def put(tag, fmt, value):
        v = struct.pack(fmt, value)
        out.append(tag)
        out.append(len(v))
        out.extend(v)

    put(PCSCv2_PART10_PROPERTY_wLcdLayout, "<H", desc.wLcdLayout)
    if reader.pin_support & 0x03:
        put(PCSCv2_PART10_PROPERTY_bEntryValidationCondition, "<B", 0x07)
        put(PCSCv2_PART10_PROPERTY_bTimeOut2, "<B", 0)
    if reader.exchange == EXCHANGE_EXTENDED_APDU:
        put(PCSCv2_PART10_PROPERTY_dwMaxAPDUDataSize, "<I", 65536)
    else:
        put(PCSCv2_PART10_PROPERTY_dwMaxAPDUDataSize, "<I", 0)
    put(PCSCv2_PART10_PROPERTY_wIdVendor, "<H", reader.vid & 0xFFFF)
    put(PCSCv2_PART10_PROPERTY_wIdProduct, "<H", reader.pid & 0xFFFF)
    return bytes(out)


def ifd_pin_properties(reader):
    """PIN_PROPERTIES_STRUCTURE: wLcdLayout, bEntryValidationCondition, bTimeOut2."""
    return struct.pack("<HBB", reader.descriptor.wLcdLayout, 0x07, 0)


def verify_structure_to_ccid(data):
    """PIN_VERIFY_STRUCTURE (part 10) -> abData of PC_to_RDR_Secure (bPINOperation 00)."""
    data = bytes(data)
    if len(data) < VERIFY_HEADER:
        raise Part10Error("PIN_VERIFY_STRUCTURE of %d bytes" % len(data), name="INVALID_PARAMETER")
    ln = struct.unpack_from("<I", data, 15)[0]
    if VERIFY_HEADER + ln != len(data) or ln < 4:
        raise Part10Error("ulDataLength %d with %d bytes of abData" % (
            ln, len(data) - VERIFY_HEADER), name="INVALID_PARAMETER")
    try:
        s = PINVerification.from_bytes(data[0:1] + data[2:15] + data[VERIFY_HEADER:])
    except CCIDError as e:
        raise Part10Error(str(e), name="INVALID_PARAMETER")
    return b"\x00" + s.to_bytes()


def modify_structure_to_ccid(data):
    """PIN_MODIFY_STRUCTURE (part 10) -> abData of PC_to_RDR_Secure (bPINOperation 01)."""
    data = bytes(data)
    if len(data) < MODIFY_HEADER:
        raise Part10Error("PIN_MODIFY_STRUCTURE of %d bytes" % len(data), name="INVALID_PARAMETER")
    v = struct.unpack_from("<BBBBBBBHBBBHBBB", data, 0)
    ln = struct.unpack_from("<I", data, 20)[0]
    if MODIFY_HEADER + ln != len(data) or ln < 4:
        raise Part10Error("ulDataLength %d with %d bytes of abData" % (
            ln, len(data) - MODIFY_HEADER), name="INVALID_PARAMETER")
    # v: bTimerOut, bTimerOut2, bmFormatString, bmPINBlockString, bmPINLengthFormat,
    #    bInsertionOffsetOld, bInsertionOffsetNew, wPINMaxExtraDigit, bConfirmPIN,
    #    bEntryValidationCondition, bNumberMessage, wLangId, bMsgIndex1..3
    s = PINModification(v[0], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11],
                        v[12], v[13], v[14], data[17:20], data[MODIFY_HEADER:])
    return b"\x01" + s.to_bytes()


def build_verify_structure(apdu, bTimerOut=30, bmFormatString=0x82, bmPINBlockString=0x04,
                           bmPINLengthFormat=0x00, min_pin=4, max_pin=8,
                           bEntryValidationCondition=0x02, bNumberMessage=0x01,
                           wLangId=0x0409, bMsgIndex=0, bTeoPrologue=b"\x00\x00\x00"):
    """A PIN_VERIFY_STRUCTURE for FEATURE_VERIFY_PIN_DIRECT (what a PC/SC client sends)."""
    apdu = bytes(apdu)
    return struct.pack("<BBBBBHBBHB", bTimerOut, 0, bmFormatString, bmPINBlockString,
                       bmPINLengthFormat, (min_pin << 8) | max_pin, bEntryValidationCondition,
                       bNumberMessage, wLangId, bMsgIndex) + bytes(bTeoPrologue) + \
        struct.pack("<I", len(apdu)) + apdu


def build_modify_structure(apdu, bInsertionOffsetOld=0, bInsertionOffsetNew=8, bTimerOut=30,
                           bmFormatString=0x82, bmPINBlockString=0x04, bmPINLengthFormat=0x00,
                           min_pin=4, max_pin=8, bConfirmPIN=0x03,
                           bEntryValidationCondition=0x02, bNumberMessage=0x03,
                           wLangId=0x0409, msg_indexes=(0, 1, 2), bTeoPrologue=b"\x00\x00\x00"):
    """A PIN_MODIFY_STRUCTURE for FEATURE_MODIFY_PIN_DIRECT."""
    apdu = bytes(apdu)
    return struct.pack("<BBBBBBBHBBBHBBB", bTimerOut, 0, bmFormatString, bmPINBlockString,
                       bmPINLengthFormat, bInsertionOffsetOld, bInsertionOffsetNew,
                       (min_pin << 8) | max_pin, bConfirmPIN, bEntryValidationCondition,
                       bNumberMessage, wLangId, msg_indexes[0], msg_indexes[1],
                       msg_indexes[2]) + bytes(bTeoPrologue) + struct.pack("<I", len(apdu)) + apdu


def nad_control(reader, slot, data):
    """SCARD_CTL_CODE(3600): ``3F 00 00`` get, ``3E 00 01 NAD`` set."""
    data = bytes(data)
    if len(data) < 3:
        raise Part10Error("NAD command of %d bytes" % len(data), name="INVALID_PARAMETER")
    cmd = data[0]
    ln = (data[1] << 8) | data[2]
    if len(data) != 3 + ln:
        raise Part10Error("NAD command length %d with %d bytes" % (ln, len(data) - 3),
                          name="INVALID_PARAMETER")
    s = reader.slot(slot)
    if cmd == NAD_GET and ln == 0:
        return bytes((cmd, 0, 2, 0, s.nad))
    if cmd == NAD_SET and ln == 1:
        try:
            reader.set_nad(slot, data[3])
        except ReaderError:
            return bytes((cmd, 0, 1, 1))
        return bytes((cmd, 0, 1, 0))
    raise Part10Error("unknown NAD command %02X" % cmd, name="INVALID_PARAMETER")


def control(reader, slot, code, data):
    """What SCardControl reaches for a CCID reader. Part10Error / ReaderError on failure."""
    data = bytes(data or b"")
    if code == CM_IOCTL_GET_FEATURE_REQUEST:
        return feature_tlv(reader)
    if code == IOCTL_NAD:
        return nad_control(reader, slot, data)
    offered = {}
    for tag, c in features(reader):
        offered[c] = tag
    tag = offered.get(code)
    if tag is None and code == IOCTL_SMARTCARD_VENDOR_IFD_EXCHANGE and \
            not reader.quirks.get("no_escape"):
        tag = FEATURE_CCID_ESC_COMMAND
    if tag is None:
        raise Part10Error("control code 0x%08X not offered by %s" % (code, reader.name),
                          name="UNSUPPORTED")
    if tag == FEATURE_VERIFY_PIN_DIRECT:
        return reader.secure(slot, verify_structure_to_ccid(data))
    if tag == FEATURE_MODIFY_PIN_DIRECT:
        return reader.secure(slot, modify_structure_to_ccid(data))
    if tag == FEATURE_IFD_PIN_PROPERTIES:
        return ifd_pin_properties(reader)
    if tag == FEATURE_GET_TLV_PROPERTIES:
        return tlv_properties(reader)
    return reader.escape(data, slot)
