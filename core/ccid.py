"""USB CCID rev 1.1 messages: encode, decode, bStatus/bError, bSeq bookkeeping.

Sans-I/O: this module turns CCID messages into bytes and back and keeps the
bSeq books; the caller moves the bytes over bulk-OUT, bulk-IN, interrupt-IN
and control transfers. References are to the "Universal Serial Bus Device
Class: Smart Card CCID" specification, revision 1.1 (§6 messages, §5.3 class
requests). Multi-byte fields are little endian (§6).

    msg = CCIDMessage(PC_to_RDR_XfrBlock, bSlot=0, bSeq=7, abData=apdu)
    out = msg.to_bytes()
    rsp = decode_bulk_in(answer)      # RDR_to_PC_DataBlock, .bStatus, .abData
    check_response(rsp)               # CCIDError(ICC_MUTE, ...) when it failed

The class descriptor parser lives in ccid_descriptor.py.
"""

import struct

from .errors import CcidkitError
from .hexutil import PIN_INS, to_hex

try:
    from micropython import const
except ImportError:
    def const(x):
        return x


# §6.1 bulk-OUT messages (PC to reader)
PC_to_RDR_IccPowerOn = const(0x62)
PC_to_RDR_IccPowerOff = const(0x63)
PC_to_RDR_GetSlotStatus = const(0x65)
PC_to_RDR_XfrBlock = const(0x6F)
PC_to_RDR_GetParameters = const(0x6C)
PC_to_RDR_ResetParameters = const(0x6D)
PC_to_RDR_SetParameters = const(0x61)
PC_to_RDR_Escape = const(0x6B)
PC_to_RDR_IccClock = const(0x6E)
PC_to_RDR_T0APDU = const(0x6A)
PC_to_RDR_Secure = const(0x69)
PC_to_RDR_Mechanical = const(0x71)
PC_to_RDR_Abort = const(0x72)
PC_to_RDR_SetDataRateAndClockFrequency = const(0x73)

# §6.2 bulk-IN messages (reader to PC)
RDR_to_PC_DataBlock = const(0x80)
RDR_to_PC_SlotStatus = const(0x81)
RDR_to_PC_Parameters = const(0x82)
RDR_to_PC_Escape = const(0x83)
RDR_to_PC_DataRateAndClockFrequency = const(0x84)

# §6.3 interrupt-IN messages
RDR_to_PC_NotifySlotChange = const(0x50)
RDR_to_PC_HardwareError = const(0x51)

CCID_HEADER_LENGTH = const(10)
# §5.1 dwMaxCCIDMessageLength tops out at 65544 + 10 (extended APDU level).
DEFAULT_MAX_MESSAGE_LENGTH = const(65554)

# §6.2.6 bStatus: bmICCStatus (bits 0-1) and bmCommandStatus (bits 6-7).
ICC_STATUS_PRESENT_ACTIVE = const(0)
ICC_STATUS_PRESENT_INACTIVE = const(1)
ICC_STATUS_NOT_PRESENT = const(2)
COMMAND_STATUS_NO_ERROR = const(0)
COMMAND_STATUS_FAILED = const(1)
COMMAND_STATUS_TIME_EXTENSION = const(2)

ICC_STATUS_NAMES = ("present and active", "present and inactive", "no ICC present", "RFU")
COMMAND_STATUS_NAMES = ("processed without error", "failed", "time extension requested", "RFU")

# §6.2.6 Table 6.2-2: slot error register, bError when bmCommandStatus = 1.
CMD_NOT_SUPPORTED = const(0x00)
CMD_ABORTED = const(0xFF)
ICC_MUTE = const(0xFE)
XFR_PARITY_ERROR = const(0xFD)
XFR_OVERRUN = const(0xFC)
HW_ERROR = const(0xFB)
BAD_ATR_TS = const(0xF8)
BAD_ATR_TCK = const(0xF7)
ICC_PROTOCOL_NOT_SUPPORTED = const(0xF6)
ICC_CLASS_NOT_SUPPORTED = const(0xF5)
PROCEDURE_BYTE_CONFLICT = const(0xF4)
DEACTIVATED_PROTOCOL = const(0xF3)
BUSY_WITH_AUTO_SEQUENCE = const(0xF2)
PIN_TIMEOUT = const(0xF0)
PIN_CANCELLED = const(0xEF)
CMD_SLOT_BUSY = const(0xE0)

_ERRORS = (
    (0x00, "CMD_NOT_SUPPORTED", "command not supported"),
    (0xFF, "CMD_ABORTED", "command aborted by the host"),
    (0xFE, "ICC_MUTE", "card absent or mute (timeout)"),
    (0xFD, "XFR_PARITY_ERROR", "parity error while talking to the card"),
    (0xFC, "XFR_OVERRUN", "overrun error while talking to the card"),
    (0xFB, "HW_ERROR", "hardware error while activating the card"),
    (0xF8, "BAD_ATR_TS", "bad ATR TS"),
    (0xF7, "BAD_ATR_TCK", "bad ATR TCK"),
    (0xF6, "ICC_PROTOCOL_NOT_SUPPORTED", "card protocol not supported"),
    (0xF5, "ICC_CLASS_NOT_SUPPORTED", "card class not supported"),
    (0xF4, "PROCEDURE_BYTE_CONFLICT", "T=0 procedure byte conflict"),
    (0xF3, "DEACTIVATED_PROTOCOL", "protocol deactivated"),
    (0xF2, "BUSY_WITH_AUTO_SEQUENCE", "busy with an automatic sequence (activation, PPS)"),
    (0xF0, "PIN_TIMEOUT", "PIN entry timed out"),
    (0xEF, "PIN_CANCELLED", "PIN entry cancelled"),
    (0xE0, "CMD_SLOT_BUSY", "slot busy with another command"),
)

# §6.2.6 bClockStatus of RDR_to_PC_SlotStatus
CLOCK_STATUS_NAMES = ("running", "stopped in state L", "stopped in state H",
                      "stopped in an unknown state")

# §6.1.1 bPowerSelect
POWER_SELECT_NAMES = ("automatic", "5.0 V", "3.0 V", "1.8 V")

# §6.2.1 bChainParameter / §6.1.4 wLevelParameter (extended APDU level)
CHAIN_BEGIN_END = const(0x00)
CHAIN_BEGIN = const(0x01)
CHAIN_END = const(0x02)
CHAIN_CONTINUE = const(0x03)
CHAIN_EMPTY_CONTINUE = const(0x10)

# §6.1.11 bPINOperation
PIN_VERIFICATION = const(0x00)
PIN_MODIFICATION = const(0x01)
PIN_TRANSFER = const(0x02)
PIN_WAIT_ICC_RESPONSE = const(0x03)
PIN_CANCEL = const(0x04)
PIN_RESEND_I_BLOCK = const(0x05)
PIN_SEND_NEXT_APDU_PART = const(0x06)

# §6.3.2 bHardwareErrorCode
HARDWARE_ERROR_OVERCURRENT = const(0x01)

# §5.3 class-specific requests
REQUEST_ABORT = const(0x01)
REQUEST_GET_CLOCK_FREQUENCIES = const(0x02)
REQUEST_GET_DATA_RATES = const(0x03)


class CCIDError(CcidkitError):
    """A CCID failure.

    For a failed command ``code`` is the bError of the reader's answer and
    ``name`` its §6.2.6 name (``ICC_MUTE``...). For a malformed message the
    name says what is wrong (``TRUNCATED``, ``BAD_LENGTH``...) and ``code`` is
    the offset of the offending field when there is one - the very bError a
    reader would answer (§6.2.6: "index of not supported / incorrect
    message parameter") - else None.
    """

    def __init__(self, message, code=None, name=None, response=None):
        CcidkitError.__init__(self, message, code, name)
        self.response = response


def error_name(bError):
    """The §6.2.6 name of a bError value."""
    for code, name, _ in _ERRORS:
        if code == bError:
            return name
    if 0x01 <= bError <= 0x7F:
        return "BAD_PARAMETER"
    if 0x81 <= bError <= 0xC0:
        return "USER_DEFINED"
    return "RFU"


# Field at each header offset, for the "index of bad parameter" errors.
_OFFSET_NAMES = ("bMessageType", "dwLength", "dwLength", "dwLength", "dwLength",
                 "bSlot", "bSeq")


def error_text(bError, bMessageType=None):
    """One line explaining a bError (of a failed command)."""
    for code, name, text in _ERRORS:
        if code == bError:
            return text
    if 0x01 <= bError <= 0x7F:
        if bError < 7:
            field = _OFFSET_NAMES[bError]
        elif bError < 10:
            layout = _MESSAGES.get(bMessageType)
            field = _field_at(layout[1], bError - 7) if layout else "byte %d" % bError
        else:
            field = "abData[%d]" % (bError - 10)
        return "parameter at offset %d (%s) not supported or incorrect" % (bError, field)
    if 0x81 <= bError <= 0xC0:
        return "user-defined error 0x%02X" % bError
    return "RFU error 0x%02X" % bError


def _field_at(fields, index, want=None):
    """Name of the header field covering byte ``index`` (or None/"?"); with
    ``want``, that name when the layout has it, else None."""
    pos = 0
    for name, size in fields:
        if want is not None:
            if name == want:
                return name
        elif pos <= index < pos + size:
            return name
        pos += size
    return None if want is not None else "?"


# Structured data fields a bulk message may be given (see CCIDMessage).
_DATA_FIELDS = ("abProtocolDataStructure", "bPINOperation", "abPINDataStructure",
                "abPINData", "dwClockFrequency", "dwDataRate")


def icc_status(bStatus):
    """bmICCStatus: 0 present and active, 1 present and inactive, 2 not present."""
    return bStatus & 0x03


def command_status(bStatus):
    """bmCommandStatus: 0 no error, 1 failed, 2 time extension requested."""
    return (bStatus >> 6) & 0x03


def make_status(icc, command):
    """bStatus from bmICCStatus and bmCommandStatus."""
    return (icc & 0x03) | ((command & 0x03) << 6)


def status_text(bStatus, bError=0, bMessageType=None):
    """Human text of bStatus (and bError when the command failed or asked for time)."""
    icc = icc_status(bStatus)
    cmd = command_status(bStatus)
    s = "ICC %s, command %s" % (ICC_STATUS_NAMES[icc], COMMAND_STATUS_NAMES[cmd])
    if cmd == COMMAND_STATUS_FAILED:
        s += ": %s (0x%02X) %s" % (error_name(bError), bError, error_text(bError, bMessageType))
    elif cmd == COMMAND_STATUS_TIME_EXTENSION:
        s += ": BWT multiplier %d" % bError
    return s


# ---------------------------------------------------------------------------
# Message layouts. Header bytes 7..9 of each message, as (name, size) pairs:
# names starting with "ab" hold bytes, the others little-endian integers.

_RFU3 = (("abRFU", 3),)
_RFU2 = ("abRFU", 2)
_IN_STATUS = (("bStatus", 1), ("bError", 1))

_MESSAGES = {
    # §6.1.1 .. §6.1.14
    0x62: ("PC_to_RDR_IccPowerOn", (("bPowerSelect", 1), _RFU2)),
    0x63: ("PC_to_RDR_IccPowerOff", _RFU3),
    0x65: ("PC_to_RDR_GetSlotStatus", _RFU3),
    0x6F: ("PC_to_RDR_XfrBlock", (("bBWI", 1), ("wLevelParameter", 2))),
    0x6C: ("PC_to_RDR_GetParameters", _RFU3),
    0x6D: ("PC_to_RDR_ResetParameters", _RFU3),
    0x61: ("PC_to_RDR_SetParameters", (("bProtocolNum", 1), _RFU2)),
    0x6B: ("PC_to_RDR_Escape", _RFU3),
    0x6E: ("PC_to_RDR_IccClock", (("bClockCommand", 1), _RFU2)),
    0x6A: ("PC_to_RDR_T0APDU", (("bmChanges", 1), ("bClassGetResponse", 1),
                                ("bClassEnvelope", 1))),
    0x69: ("PC_to_RDR_Secure", (("bBWI", 1), ("wLevelParameter", 2))),
    0x71: ("PC_to_RDR_Mechanical", (("bFunction", 1), _RFU2)),
    0x72: ("PC_to_RDR_Abort", _RFU3),
    0x73: ("PC_to_RDR_SetDataRateAndClockFrequency", _RFU3),
    # §6.2.1 .. §6.2.5
    0x80: ("RDR_to_PC_DataBlock", _IN_STATUS + (("bChainParameter", 1),)),
    0x81: ("RDR_to_PC_SlotStatus", _IN_STATUS + (("bClockStatus", 1),)),
    0x82: ("RDR_to_PC_Parameters", _IN_STATUS + (("bProtocolNum", 1),)),
    0x83: ("RDR_to_PC_Escape", _IN_STATUS + (("bRFU", 1),)),
    0x84: ("RDR_to_PC_DataRateAndClockFrequency", _IN_STATUS + (("bRFU", 1),)),
}

# dwLength each message must carry (-1: any). §6.1 / §6.2 tables.
_FIXED_LENGTH = {
    0x62: 0, 0x63: 0, 0x65: 0, 0x6C: 0, 0x6D: 0, 0x6E: 0, 0x6A: 0, 0x71: 0, 0x72: 0,
    0x73: 8, 0x81: 0,
}

# Per message type, computed once: (name, default) of each header field, and
# (name, offset, kind) to decode it (kind 0 bytes, 1 a byte, 2 a little-endian word).
_DEFAULTS = {}
_DECODE = {}
for _code in _MESSAGES:
    _d = []
    _k = []
    _pos = 7
    for _name, _size in _MESSAGES[_code][1]:
        if _name[:2] == "ab":
            _d.append((_name, bytes(_size)))
            _k.append((_name, _pos, 0, _size))
        else:
            _d.append((_name, 0))
            _k.append((_name, _pos, 1 if _size == 1 else 2, _size))
        _pos += _size
    _DEFAULTS[_code] = tuple(_d)
    _DECODE[_code] = tuple(_k)
# types whose abData is plain bytes (no structure decoded from it)
_PLAIN_DATA = (0x62, 0x63, 0x65, 0x6F, 0x6C, 0x6D, 0x6B, 0x6E, 0x6A, 0x71, 0x72,
               0x80, 0x81, 0x83)

# The answer each command gets (§6.1 tables, "Response" row).
RESPONSE_TYPE = {
    0x62: 0x80, 0x63: 0x81, 0x65: 0x81, 0x6F: 0x80, 0x6C: 0x82, 0x6D: 0x82, 0x61: 0x82,
    0x6B: 0x83, 0x6E: 0x81, 0x6A: 0x81, 0x69: 0x80, 0x71: 0x81, 0x72: 0x81, 0x73: 0x84,
}

MESSAGE_NAMES = {
    0x50: "RDR_to_PC_NotifySlotChange",
    0x51: "RDR_to_PC_HardwareError",
}
for _code in _MESSAGES:
    MESSAGE_NAMES[_code] = _MESSAGES[_code][0]


def message_name(bMessageType):
    return MESSAGE_NAMES.get(bMessageType, "unknown message 0x%02X" % bMessageType)


def is_bulk_out(bMessageType):
    return bMessageType in _MESSAGES and bMessageType < 0x80


def is_bulk_in(bMessageType):
    return bMessageType in _MESSAGES and bMessageType >= 0x80


# ---------------------------------------------------------------------------
# §6.1.7 abProtocolDataStructure

class T0Parameters:
    """abProtocolDataStructure for T=0 (§6.1.7, 5 bytes)."""

    bProtocolNum = 0
    LENGTH = 5

    def __init__(self, bmFindexDindex=0x11, bmTCCKST0=0x00, bGuardTimeT0=0x00,
                 bWaitingIntegerT0=0x0A, bClockStop=0x00):
        self.bmFindexDindex = bmFindexDindex
        self.bmTCCKST0 = bmTCCKST0
        self.bGuardTimeT0 = bGuardTimeT0
        self.bWaitingIntegerT0 = bWaitingIntegerT0
        self.bClockStop = bClockStop

    @staticmethod
    def from_bytes(data):
        if len(data) != 5:
            raise CCIDError("T=0 abProtocolDataStructure is 5 bytes, got %d" % len(data),
                            CCID_HEADER_LENGTH, "BAD_LENGTH")
        return T0Parameters(data[0], data[1], data[2], data[3], data[4])

    def to_bytes(self):
        return bytes((self.bmFindexDindex, self.bmTCCKST0, self.bGuardTimeT0,
                      self.bWaitingIntegerT0, self.bClockStop))

    @property
    def Findex(self):
        return self.bmFindexDindex >> 4

    @property
    def Dindex(self):
        return self.bmFindexDindex & 0x0F

    @property
    def inverse_convention(self):
        return bool(self.bmTCCKST0 & 0x02)

    def fields(self):
        return [("bmFindexDindex", self.bmFindexDindex), ("bmTCCKST0", self.bmTCCKST0),
                ("bGuardTimeT0", self.bGuardTimeT0),
                ("bWaitingIntegerT0", self.bWaitingIntegerT0), ("bClockStop", self.bClockStop)]

    def __eq__(self, other):
        return isinstance(other, T0Parameters) and self.to_bytes() == other.to_bytes()

    def __repr__(self):
        return "T0Parameters(%s)" % _fields_repr(self.fields())


class T1Parameters:
    """abProtocolDataStructure for T=1 (§6.1.7, 7 bytes)."""

    bProtocolNum = 1
    LENGTH = 7

    def __init__(self, bmFindexDindex=0x11, bmTCCKST1=0x10, bGuardTimeT1=0x00,
                 bmWaitingIntegersT1=0x4D, bClockStop=0x00, bIFSC=0x20, bNadValue=0x00):
        self.bmFindexDindex = bmFindexDindex
        self.bmTCCKST1 = bmTCCKST1
        self.bGuardTimeT1 = bGuardTimeT1
        self.bmWaitingIntegersT1 = bmWaitingIntegersT1
        self.bClockStop = bClockStop
        self.bIFSC = bIFSC
        self.bNadValue = bNadValue

    @staticmethod
    def from_bytes(data):
        if len(data) != 7:
            raise CCIDError("T=1 abProtocolDataStructure is 7 bytes, got %d" % len(data),
                            CCID_HEADER_LENGTH, "BAD_LENGTH")
        return T1Parameters(data[0], data[1], data[2], data[3], data[4], data[5], data[6])

    def to_bytes(self):
        return bytes((self.bmFindexDindex, self.bmTCCKST1, self.bGuardTimeT1,
                      self.bmWaitingIntegersT1, self.bClockStop, self.bIFSC, self.bNadValue))

    @property
    def Findex(self):
        return self.bmFindexDindex >> 4

    @property
    def Dindex(self):
        return self.bmFindexDindex & 0x0F

    @property
    def inverse_convention(self):
        return bool(self.bmTCCKST1 & 0x02)

    @property
    def crc(self):
        """True when the epilogue is a CRC, False for LRC (bmTCCKST1 bit 0)."""
        return bool(self.bmTCCKST1 & 0x01)

    @property
    def BWI(self):
        return self.bmWaitingIntegersT1 >> 4

    @property
    def CWI(self):
        return self.bmWaitingIntegersT1 & 0x0F

    def fields(self):
        return [("bmFindexDindex", self.bmFindexDindex), ("bmTCCKST1", self.bmTCCKST1),
                ("bGuardTimeT1", self.bGuardTimeT1),
                ("bmWaitingIntegersT1", self.bmWaitingIntegersT1),
                ("bClockStop", self.bClockStop), ("bIFSC", self.bIFSC),
                ("bNadValue", self.bNadValue)]

    def __eq__(self, other):
        return isinstance(other, T1Parameters) and self.to_bytes() == other.to_bytes()

    def __repr__(self):
        return "T1Parameters(%s)" % _fields_repr(self.fields())


def decode_protocol_data(bProtocolNum, data):
    """T0Parameters / T1Parameters for protocol 0 / 1; None for another protocol."""
    if bProtocolNum == 0:
        return T0Parameters.from_bytes(data)
    if bProtocolNum == 1:
        return T1Parameters.from_bytes(data)
    return None


# ---------------------------------------------------------------------------
# §6.1.11 PIN verification / modification data structures

class PINVerification:
    """PIN verification data structure (§6.1.11.7), after bPINOperation 00h.

    abPINApdu is the APDU template the reader completes with the PIN typed
    on its keypad: it never holds the PIN itself.
    """

    _FMT = "<BBBBHBBHB"

    def __init__(self, bTimeOut=0, bmFormatString=0x82, bmPINBlockString=0x08,
                 bmPINLengthFormat=0x00, wPINMaxExtraDigit=0x0408,
                 bEntryValidationCondition=0x02, bNumberMessage=0x01, wLangId=0x0409,
                 bMsgIndex=0x00, bTeoPrologue=b"\x00\x00\x00", abPINApdu=b""):
        self.bTimeOut = bTimeOut
        self.bmFormatString = bmFormatString
        self.bmPINBlockString = bmPINBlockString
        self.bmPINLengthFormat = bmPINLengthFormat
        self.wPINMaxExtraDigit = wPINMaxExtraDigit
        self.bEntryValidationCondition = bEntryValidationCondition
        self.bNumberMessage = bNumberMessage
        self.wLangId = wLangId
        self.bMsgIndex = bMsgIndex
        self.bTeoPrologue = bytes(bTeoPrologue)
        self.abPINApdu = bytes(abPINApdu)

    @staticmethod
    def from_bytes(data):
        if len(data) < 14:
            raise CCIDError("PIN verification structure needs 14 bytes, got %d" % len(data),
                            CCID_HEADER_LENGTH + 1, "TRUNCATED")
        v = struct.unpack_from(PINVerification._FMT, data, 0)
        return PINVerification(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8],
                               bytes(data[11:14]), bytes(data[14:]))

    def to_bytes(self):
        out = bytearray(14 + len(self.abPINApdu))
        struct.pack_into(self._FMT, out, 0, self.bTimeOut, self.bmFormatString,
                         self.bmPINBlockString, self.bmPINLengthFormat, self.wPINMaxExtraDigit,
                         self.bEntryValidationCondition, self.bNumberMessage, self.wLangId,
                         self.bMsgIndex)
        out[11:14] = _prologue(self.bTeoPrologue)
        out[14:] = self.abPINApdu
        return bytes(out)

    @property
    def min_pin_size(self):
        """wPINMaxExtraDigit XXYY: XX, the minimum PIN size in digits."""
        return self.wPINMaxExtraDigit >> 8

    @property
    def max_pin_size(self):
        return self.wPINMaxExtraDigit & 0xFF

    def fields(self):
        return [("bTimeOut", self.bTimeOut), ("bmFormatString", self.bmFormatString),
                ("bmPINBlockString", self.bmPINBlockString),
                ("bmPINLengthFormat", self.bmPINLengthFormat),
                ("wPINMaxExtraDigit", self.wPINMaxExtraDigit),
                ("bEntryValidationCondition", self.bEntryValidationCondition),
                ("bNumberMessage", self.bNumberMessage), ("wLangId", self.wLangId),
                ("bMsgIndex", self.bMsgIndex), ("bTeoPrologue", self.bTeoPrologue),
                ("abPINApdu", self.abPINApdu)]

    def __eq__(self, other):
        return isinstance(other, PINVerification) and self.to_bytes() == other.to_bytes()

    def __repr__(self):
        return "PINVerification(%s)" % _fields_repr(self.fields())


def _message_indexes(bNumberMessage):
    # §6.1.11.8: bMsgIndex2 is present when bNumberMessage is not 0, bMsgIndex3
    # when it is 3; FFh (the reader's default messages) is read as 3 like libccid.
    if bNumberMessage == 0:
        return 1
    if bNumberMessage == 3 or bNumberMessage == 0xFF:
        return 3
    return 2


class PINModification:
    """PIN modification data structure (§6.1.11.8), after bPINOperation 01h.

    bMsgIndex2 / bMsgIndex3 are None when bNumberMessage leaves them out.
    """

    _FMT = "<BBBBBBHBBBH"

    def __init__(self, bTimeOut=0, bmFormatString=0x82, bmPINBlockString=0x08,
                 bmPINLengthFormat=0x00, bInsertionOffsetOld=0x00, bInsertionOffsetNew=0x08,
                 wPINMaxExtraDigit=0x0408, bConfirmPIN=0x03, bEntryValidationCondition=0x02,
                 bNumberMessage=0x03, wLangId=0x0409, bMsgIndex1=0x00, bMsgIndex2=0x01,
                 bMsgIndex3=0x02, bTeoPrologue=b"\x00\x00\x00", abPINApdu=b""):
        self.bTimeOut = bTimeOut
        self.bmFormatString = bmFormatString
        self.bmPINBlockString = bmPINBlockString
        self.bmPINLengthFormat = bmPINLengthFormat
        self.bInsertionOffsetOld = bInsertionOffsetOld
        self.bInsertionOffsetNew = bInsertionOffsetNew
        self.wPINMaxExtraDigit = wPINMaxExtraDigit
        self.bConfirmPIN = bConfirmPIN
        self.bEntryValidationCondition = bEntryValidationCondition
        self.bNumberMessage = bNumberMessage
        self.wLangId = wLangId
        self.bMsgIndex1 = bMsgIndex1
        n = _message_indexes(bNumberMessage)
        self.bMsgIndex2 = (bMsgIndex2 or 0) if n >= 2 else None
        self.bMsgIndex3 = (bMsgIndex3 or 0) if n >= 3 else None
        self.bTeoPrologue = bytes(bTeoPrologue)
        self.abPINApdu = bytes(abPINApdu)

    @staticmethod
    def from_bytes(data):
        if len(data) < 13:
            raise CCIDError("PIN modification structure is cut short (%d bytes)" % len(data),
                            CCID_HEADER_LENGTH + 1, "TRUNCATED")
        v = struct.unpack_from(PINModification._FMT, data, 0)
        n = _message_indexes(v[9])
        end = 13 + n + 3
        if len(data) < end:
            raise CCIDError("PIN modification structure needs %d bytes, got %d"
                            % (end, len(data)), CCID_HEADER_LENGTH + 1, "TRUNCATED")
        idx = data[13:13 + n]
        return PINModification(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9],
                               v[10], idx[0], idx[1] if n > 1 else None,
                               idx[2] if n > 2 else None,
                               bytes(data[13 + n:end]), bytes(data[end:]))

    def to_bytes(self):
        n = _message_indexes(self.bNumberMessage)
        out = bytearray(13 + n + 3 + len(self.abPINApdu))
        struct.pack_into(self._FMT, out, 0, self.bTimeOut, self.bmFormatString,
                         self.bmPINBlockString, self.bmPINLengthFormat,
                         self.bInsertionOffsetOld, self.bInsertionOffsetNew,
                         self.wPINMaxExtraDigit, self.bConfirmPIN,
                         self.bEntryValidationCondition, self.bNumberMessage, self.wLangId)
        out[13] = self.bMsgIndex1
        if n > 1:
            out[14] = self.bMsgIndex2 or 0
        if n > 2:
            out[15] = self.bMsgIndex3 or 0
        out[13 + n:16 + n] = _prologue(self.bTeoPrologue)
        out[16 + n:] = self.abPINApdu
        return bytes(out)

    @property
    def min_pin_size(self):
        return self.wPINMaxExtraDigit >> 8

    @property
    def max_pin_size(self):
        return self.wPINMaxExtraDigit & 0xFF

    def fields(self):
        f = [("bTimeOut", self.bTimeOut), ("bmFormatString", self.bmFormatString),
             ("bmPINBlockString", self.bmPINBlockString),
             ("bmPINLengthFormat", self.bmPINLengthFormat),
             ("bInsertionOffsetOld", self.bInsertionOffsetOld),
             ("bInsertionOffsetNew", self.bInsertionOffsetNew),
             ("wPINMaxExtraDigit", self.wPINMaxExtraDigit), ("bConfirmPIN", self.bConfirmPIN),
             ("bEntryValidationCondition", self.bEntryValidationCondition),
             ("bNumberMessage", self.bNumberMessage), ("wLangId", self.wLangId),
             ("bMsgIndex1", self.bMsgIndex1)]
        if self.bMsgIndex2 is not None:
            f.append(("bMsgIndex2", self.bMsgIndex2))
        if self.bMsgIndex3 is not None:
            f.append(("bMsgIndex3", self.bMsgIndex3))
        f.append(("bTeoPrologue", self.bTeoPrologue))
        f.append(("abPINApdu", self.abPINApdu))
        return f

    def __eq__(self, other):
        return isinstance(other, PINModification) and self.to_bytes() == other.to_bytes()

    def __repr__(self):
        return "PINModification(%s)" % _fields_repr(self.fields())


def _prologue(p):
    p = bytes(p)
    if len(p) != 3:
        raise CCIDError("bTeoPrologue is 3 bytes, got %d" % len(p), None, "BAD_LENGTH")
    return p


def _fields_repr(fields):
    parts = []
    for name, value in fields:
        if isinstance(value, (bytes, bytearray)):
            parts.append("%s=%s" % (name, to_hex(value, "") or "''"))
        elif value is None:
            parts.append("%s=None" % name)
        else:
            parts.append("%s=0x%02X" % (name, value))
    return ", ".join(parts)


# ---------------------------------------------------------------------------
# Bulk messages

class CCIDMessage:
    """One bulk-OUT or bulk-IN CCID message; every field an attribute named as in §6.

    Common: bMessageType, bSlot, bSeq, dwLength (computed), abData.
    Header bytes 7..9 per message (bPowerSelect, bBWI, wLevelParameter,
    bStatus, bError, bChainParameter, bClockStatus, bProtocolNum, abRFU...).
    Structured data, decoded and re-encoded from:
      SetParameters / Parameters: abProtocolDataStructure (T0Parameters,
        T1Parameters, or None for an empty or other-protocol structure);
      Secure: bPINOperation and abPINDataStructure (PINVerification,
        PINModification, else None with the bytes after bPINOperation in
        abPINData);
      SetDataRateAndClockFrequency / DataRateAndClockFrequency:
        dwClockFrequency and dwDataRate (None when the answer is empty).
    For these, abData is computed from the structured fields.
    """

    # Structured data absent until set (class-level defaults: a decoded
    # message of the usual kinds never pays for setting them).
    abProtocolDataStructure = None
    bPINOperation = None
    abPINDataStructure = None
    abPINData = b""
    dwClockFrequency = None
    dwDataRate = None
    _raw = b""

    def __init__(self, bMessageType, bSlot=0, bSeq=0, **fields):
        layout = _MESSAGES.get(bMessageType)
        if layout is None:
            raise CCIDError("unknown bMessageType 0x%02X" % bMessageType, 0, "UNKNOWN_MESSAGE")
        self.bMessageType = bMessageType
        self.bSlot = bSlot
        self.bSeq = bSeq
        self._layout = layout[1]
        for name, value in _DEFAULTS[bMessageType]:
            setattr(self, name, value)
        if not fields:
            return
        data = fields.pop("abData", None)
        for name in fields:
            if name not in _DATA_FIELDS and _field_at(self._layout, -1, name) is None:
                raise CCIDError("%s has no field %s" % (layout[0], name), None,
                                "UNKNOWN_FIELD")
            setattr(self, name, fields[name])
        if data is not None:
            self.abData = data

    # -- data ------------------------------------------------------------
    @property
    def abData(self):
        t = self.bMessageType
        if t == 0x61 or t == 0x82:
            if self.abProtocolDataStructure is not None:
                return self.abProtocolDataStructure.to_bytes()
        elif t == 0x69:
            if self.bPINOperation is not None:
                if self.abPINDataStructure is not None:
                    tail = self.abPINDataStructure.to_bytes()
                else:
                    tail = self.abPINData
                return bytes((self.bPINOperation,)) + tail
        elif t == 0x73 or t == 0x84:
            if self.dwClockFrequency is not None:
                return struct.pack("<II", self.dwClockFrequency, self.dwDataRate or 0)
        return self._raw

    @abData.setter
    def abData(self, data):
        data = bytes(data)
        t = self.bMessageType
        self._raw = data
        if t == 0x61 or t == 0x82:
            self.abProtocolDataStructure = None
            if data:
                self.abProtocolDataStructure = decode_protocol_data(self.bProtocolNum, data)
        elif t == 0x69:
            self.bPINOperation = None
            self.abPINDataStructure = None
            self.abPINData = b""
            # §6.1.11: only the first (or only) block of a chain starts with bPINOperation.
            if data and self.wLevelParameter in (0, 1):
                self.bPINOperation = data[0]
                rest = data[1:]
                if data[0] == PIN_VERIFICATION:
                    self.abPINDataStructure = PINVerification.from_bytes(rest)
                elif data[0] == PIN_MODIFICATION:
                    self.abPINDataStructure = PINModification.from_bytes(rest)
                else:
                    self.abPINData = rest
        elif t == 0x73 or t == 0x84:
            self.dwClockFrequency = None
            self.dwDataRate = None
            if len(data) == 8:
                self.dwClockFrequency, self.dwDataRate = struct.unpack("<II", data)
            elif data:
                raise CCIDError("%s carries 8 bytes, got %d" % (self.name, len(data)),
                                1, "BAD_LENGTH")

    @property
    def dwLength(self):
        return len(self.abData)

    @property
    def name(self):
        return _MESSAGES[self.bMessageType][0]

    # -- status (bulk-IN) --------------------------------------------------
    @property
    def icc_status(self):
        return self.bStatus & 0x03

    @property
    def command_status(self):
        return (self.bStatus >> 6) & 0x03

    @property
    def failed(self):
        return self.bMessageType >= 0x80 and self.command_status == COMMAND_STATUS_FAILED

    @property
    def time_extension(self):
        return self.bMessageType >= 0x80 and self.command_status == COMMAND_STATUS_TIME_EXTENSION

    @property
    def error_name(self):
        return error_name(self.bError)

    # -- encoding ------------------------------------------------------------
    def encoded_length(self):
        return CCID_HEADER_LENGTH + len(self.abData)

    def encode_into(self, buf, offset=0):
        """Write the message into ``buf`` at ``offset``; returns its length."""
        data = self.abData
        n = len(data)
        pds = self.abProtocolDataStructure
        if pds is not None and pds.bProtocolNum != self.bProtocolNum:
            raise CCIDError("bProtocolNum %d with a T=%d structure"
                            % (self.bProtocolNum, pds.bProtocolNum), 7, "BAD_PROTOCOL")
        struct.pack_into("<BIBB", buf, offset, self.bMessageType, n, self.bSlot, self.bSeq)
        pos = offset + 7
        for name, size in self._layout:
            value = getattr(self, name)
            if size == 1 and name[:2] != "ab":
                buf[pos] = value
            elif name[:2] == "ab":
                value = bytes(value)
                if len(value) != size:
                    raise CCIDError("%s is %d bytes" % (name, size), pos - offset, "BAD_LENGTH")
                buf[pos:pos + size] = value
            else:
                struct.pack_into("<H", buf, pos, value)
            pos += size
        buf[offset + 10:offset + 10 + n] = data
        return CCID_HEADER_LENGTH + n

    def to_bytes(self):
        out = bytearray(self.encoded_length())
        self.encode_into(out, 0)
        return bytes(out)

    # -- inspection ------------------------------------------------------------
    def fields(self):
        """(name, value) pairs in wire order; structured data as its object."""
        f = [("bMessageType", self.bMessageType), ("dwLength", self.dwLength),
             ("bSlot", self.bSlot), ("bSeq", self.bSeq)]
        for name, _ in self._layout:
            f.append((name, getattr(self, name)))
        t = self.bMessageType
        if (t == 0x61 or t == 0x82) and self.abProtocolDataStructure is not None:
            f.append(("abProtocolDataStructure", self.abProtocolDataStructure))
        elif t == 0x69 and self.bPINOperation is not None:
            f.append(("bPINOperation", self.bPINOperation))
            if self.abPINDataStructure is not None:
                f.append(("abPINDataStructure", self.abPINDataStructure))
            else:
                f.append(("abPINData", self.abPINData))
        elif (t == 0x73 or t == 0x84) and self.dwClockFrequency is not None:
            f.append(("dwClockFrequency", self.dwClockFrequency))
            f.append(("dwDataRate", self.dwDataRate))
        else:
            f.append(("abData", self.abData))
        return f

    def describe(self, redact=True):
        """Human lines; with ``redact`` the data of PIN-carrying APDUs is hidden."""
        lines = ["%s (0x%02X)" % (self.name, self.bMessageType)]
        for name, value in self.fields()[1:]:
            if isinstance(value, (T0Parameters, T1Parameters, PINVerification,
                                  PINModification)):
                lines.append(" %s:" % name)
                for n2, v2 in value.fields():
                    lines.append("  %s: %s" % (n2, _value_text(v2)))
            elif name == "abData" and redact and carries_pin(self):
                lines.append(" abData: %s ... (%d bytes, PIN command data hidden)"
                             % (to_hex(value[:5]), len(value)))
            else:
                lines.append(" %s: %s" % (name, _value_text(value)))
        if self.bMessageType >= 0x80:
            lines.append(" -> " + status_text(self.bStatus, self.bError))
            if self.bMessageType == 0x81 and self.bClockStatus < 4:
                lines.append(" -> clock " + CLOCK_STATUS_NAMES[self.bClockStatus])
        elif self.bMessageType == 0x62 and self.bPowerSelect < 4:
            lines.append(" -> voltage " + POWER_SELECT_NAMES[self.bPowerSelect])
        return lines

    def __eq__(self, other):
        return isinstance(other, CCIDMessage) and self.to_bytes() == other.to_bytes()

    def __repr__(self):
        parts = []
        for name, value in self.fields()[1:]:
            if name == "abData" and carries_pin(self):
                parts.append("abData=<%d bytes>" % len(value))
            elif isinstance(value, (bytes, bytearray)):
                parts.append("%s=%s" % (name, to_hex(value, "") or "''"))
            elif isinstance(value, int):
                parts.append("%s=0x%02X" % (name, value))
            else:
                parts.append("%s=%r" % (name, value))
        return "%s(%s)" % (self.name, ", ".join(parts))


def _value_text(v):
    if isinstance(v, (bytes, bytearray)):
        return to_hex(v) if v else "(none)"
    if v is None:
        return "(absent)"
    return "0x%02X (%d)" % (v, v) if v > 9 else "%d" % v


# ISO/IEC 7816-4 commands whose data carries a PIN: VERIFY, CHANGE REFERENCE
# DATA, RESET RETRY COUNTER (even and odd INS).
_PIN_INS = PIN_INS    # one rule for every trace (core/hexutil.py)


def carries_pin(msg):
    """True when msg is an XfrBlock whose APDU (or T=1 I-block) is a PIN command."""
    if msg.bMessageType != 0x6F:
        return False
    d = msg.abData
    if len(d) > 5 and d[1] in _PIN_INS:
        return True
    # a T=1 I-block at TPDU level: NAD PCB LEN CLA INS ...
    return len(d) > 8 and not (d[1] & 0x80) and d[4] in _PIN_INS


# ---------------------------------------------------------------------------
# Decoding

def peek_header(buf):
    """(bMessageType, dwLength, bSlot, bSeq) of a bulk message header; no checks on type."""
    if len(buf) < CCID_HEADER_LENGTH:
        raise CCIDError("a CCID header is 10 bytes, got %d" % len(buf), None, "TRUNCATED")
    return struct.unpack_from("<BIBB", buf, 0)


def _decode_bulk(buf, max_length, allow_trailing, want):
    n = len(buf)
    if n < CCID_HEADER_LENGTH:
        raise CCIDError("a CCID message is at least 10 bytes, got %d" % n, None, "TRUNCATED")
    t, dw, slot, seq = struct.unpack_from("<BIBB", buf, 0)
    layout = _MESSAGES.get(t)
    if layout is None:
        raise CCIDError("unknown bMessageType 0x%02X" % t, 0, "UNKNOWN_MESSAGE")
    if want == 1 and t >= 0x80:
        raise CCIDError("%s is not a bulk-OUT message" % layout[0], 0, "UNEXPECTED_MESSAGE")
    if want == 2 and t < 0x80:
        raise CCIDError("%s is not a bulk-IN message" % layout[0], 0, "UNEXPECTED_MESSAGE")
    if dw > max_length - CCID_HEADER_LENGTH:
        raise CCIDError("dwLength %d exceeds the %d-byte message limit" % (dw, max_length),
                        1, "TOO_LONG")
    if n < CCID_HEADER_LENGTH + dw:
        raise CCIDError("dwLength announces %d data bytes, %d present"
                        % (dw, n - CCID_HEADER_LENGTH), 1, "TRUNCATED")
    if n > CCID_HEADER_LENGTH + dw and not allow_trailing:
        raise CCIDError("%d bytes after the %d announced" % (n - CCID_HEADER_LENGTH - dw, dw),
                        1, "TRAILING_DATA")
    return _decode_valid(buf, t, dw, slot, seq)


def _decode_valid(buf, t, dw, slot, seq):
    """The message of a header already checked but for a fixed dwLength."""
    fixed = _FIXED_LENGTH.get(t, -1)
    if fixed >= 0 and dw != fixed:
        raise CCIDError("%s carries dwLength %d, got %d" % (_MESSAGES[t][0], fixed, dw),
                        1, "BAD_LENGTH")
    msg = CCIDMessage(t, slot, seq)
    for name, pos, kind, size in _DECODE[t]:
        if kind == 1:
            setattr(msg, name, buf[pos])
        elif kind == 2:
            setattr(msg, name, buf[pos] | (buf[pos + 1] << 8))
        else:
            setattr(msg, name, bytes(buf[pos:pos + size]))
    if t in _PLAIN_DATA:
        # what the abData setter does for these types
        msg._raw = bytes(buf[CCID_HEADER_LENGTH:CCID_HEADER_LENGTH + dw])
    else:
        msg.abData = memoryview(buf)[CCID_HEADER_LENGTH:CCID_HEADER_LENGTH + dw]
    return msg


def decode_bulk_out(buf, max_length=DEFAULT_MAX_MESSAGE_LENGTH, allow_trailing=False):
    """Decode a PC_to_RDR message; raises CCIDError for anything else."""
    return _decode_bulk(buf, max_length, allow_trailing, 1)


def decode_bulk_in(buf, max_length=DEFAULT_MAX_MESSAGE_LENGTH, allow_trailing=False):
    """Decode a RDR_to_PC bulk message; raises CCIDError for anything else."""
    return _decode_bulk(buf, max_length, allow_trailing, 2)


def decode_message(buf, max_length=DEFAULT_MAX_MESSAGE_LENGTH, slots=None,
                   allow_trailing=False):
    """Decode any CCID message: bulk-OUT, bulk-IN or interrupt-IN (by bMessageType).

    ``max_length`` bounds the whole message (header included) whatever
    dwLength announces; ``slots`` is the reader's slot count for
    NotifySlotChange. Returns a CCIDMessage, NotifySlotChange or
    HardwareError; raises CCIDError for anything malformed.
    """
    if len(buf) and (buf[0] == 0x50 or buf[0] == 0x51):
        return decode_interrupt(buf, slots)
    return _decode_bulk(buf, max_length, allow_trailing, 0)


# ---------------------------------------------------------------------------
# Fast paths for the driver: no message object, a reused buffer.

def encode_header_into(buf, bMessageType, dwLength, bSlot, bSeq, b7=0, b8=0, b9=0, offset=0):
    """Write a 10-byte header; returns 10."""
    struct.pack_into("<BIBBBBB", buf, offset, bMessageType, dwLength, bSlot, bSeq, b7, b8, b9)
    return CCID_HEADER_LENGTH


def encode_xfr_block_into(buf, bSlot, bSeq, data, bBWI=0, wLevelParameter=0):
    """PC_to_RDR_XfrBlock into ``buf`` (big enough); returns the message length."""
    n = len(data)
    struct.pack_into("<BIBBBH", buf, 0, PC_to_RDR_XfrBlock, n, bSlot, bSeq, bBWI,
                     wLevelParameter)
    buf[CCID_HEADER_LENGTH:CCID_HEADER_LENGTH + n] = data
    return CCID_HEADER_LENGTH + n


def encode_simple_into(buf, bMessageType, bSlot, bSeq, b7=0):
    """A data-less command (IccPowerOn with bPowerSelect = b7, IccPowerOff,
    GetSlotStatus, GetParameters, ResetParameters, Abort, IccClock...)."""
    struct.pack_into("<BIBBBBB", buf, 0, bMessageType, 0, bSlot, bSeq, b7, 0, 0)
    return CCID_HEADER_LENGTH


# ---------------------------------------------------------------------------
# Responses

def check_response(msg, bSlot=None, bSeq=None):
    """Return ``msg`` when its command succeeded; raise CCIDError otherwise.

    A failed command raises with code = bError and its §6.2.6 name; a time
    extension request raises nothing (see ``msg.time_extension``). With
    bSlot/bSeq given, an answer to another command raises too.
    """
    if not isinstance(msg, CCIDMessage) or msg.bMessageType < 0x80:
        raise CCIDError("not a bulk-IN response: %r" % (msg,), None, "UNEXPECTED_MESSAGE")
    if bSlot is not None and msg.bSlot != bSlot:
        raise CCIDError("answer for slot %d, expected %d" % (msg.bSlot, bSlot), None,
                        "FOREIGN_RESPONSE", msg)
    if bSeq is not None and msg.bSeq != bSeq:
        raise CCIDError("answer bSeq %d, expected %d" % (msg.bSeq, bSeq), None,
                        "STALE_RESPONSE", msg)
    if msg.command_status == COMMAND_STATUS_FAILED:
        raise CCIDError("%s on slot %d: %s" % (msg.name, msg.bSlot,
                                               error_text(msg.bError)),
                        msg.bError, error_name(msg.bError), msg)
    if msg.command_status == 3:
        raise CCIDError("%s: bmCommandStatus RFU value 3" % msg.name, None, "BAD_STATUS", msg)
    return msg


# ---------------------------------------------------------------------------
# §6.3 interrupt-IN

MAX_SLOTS = const(256)   # bMaxSlotIndex is a byte


class NotifySlotChange:
    """RDR_to_PC_NotifySlotChange (§6.3.1): 2 bits per slot, slot 0 in the low bits
    of the first byte - bit 2n: ICC present, bit 2n+1: state changed."""

    bMessageType = RDR_to_PC_NotifySlotChange
    name = "RDR_to_PC_NotifySlotChange"

    def __init__(self, bmSlotICCState, slots=None):
        self.bmSlotICCState = bytes(bmSlotICCState)
        if not self.bmSlotICCState:
            raise CCIDError("NotifySlotChange without bmSlotICCState", 1, "TRUNCATED")
        if slots is None:
            slots = 4 * len(self.bmSlotICCState)
        if slots < 1 or slots > MAX_SLOTS:
            raise CCIDError("%d slots (1..256)" % slots, None, "BAD_SLOT_COUNT")
        if (slots + 3) // 4 > len(self.bmSlotICCState):
            raise CCIDError("%d slots need %d bytes of bmSlotICCState, got %d"
                            % (slots, (slots + 3) // 4, len(self.bmSlotICCState)),
                            1, "TRUNCATED")
        self.slots = slots

    @staticmethod
    def from_states(present, changed=None):
        """Build from per-slot sequences of booleans (changed defaults to none)."""
        n = len(present)
        buf = bytearray((n + 3) // 4)
        for i in range(n):
            if present[i]:
                buf[i >> 2] |= 1 << ((i & 3) * 2)
            if changed is not None and changed[i]:
                buf[i >> 2] |= 2 << ((i & 3) * 2)
        return NotifySlotChange(buf, n)

    def _bits(self, slot):
        if not 0 <= slot < self.slots:
            raise CCIDError("no slot %d (%d slots)" % (slot, self.slots), 5, "BAD_SLOT")
        return (self.bmSlotICCState[slot >> 2] >> ((slot & 3) * 2)) & 3

    def present(self, slot):
        return bool(self._bits(slot) & 1)

    def changed(self, slot):
        return bool(self._bits(slot) & 2)

    def states(self):
        """[(present, changed)] for every slot."""
        out = []
        for i in range(self.slots):
            b = self._bits(i)
            out.append((bool(b & 1), bool(b & 2)))
        return out

    def changed_slots(self):
        return [i for i in range(self.slots) if self._bits(i) & 2]

    def to_bytes(self):
        return bytes((RDR_to_PC_NotifySlotChange,)) + self.bmSlotICCState

    def fields(self):
        return [("bMessageType", 0x50), ("bmSlotICCState", self.bmSlotICCState)]

    def describe(self, redact=True):
        lines = ["RDR_to_PC_NotifySlotChange (0x50)",
                 " bmSlotICCState: %s" % to_hex(self.bmSlotICCState)]
        for i in range(self.slots):
            b = self._bits(i)
            lines.append("  slot %d: %s%s" % (i, "ICC present" if b & 1 else "no ICC",
                                              ", changed" if b & 2 else ""))
        return lines

    def __eq__(self, other):
        return isinstance(other, NotifySlotChange) and self.to_bytes() == other.to_bytes()

    def __repr__(self):
        return "RDR_to_PC_NotifySlotChange(bmSlotICCState=%s)" % to_hex(self.bmSlotICCState, "")


class HardwareError:
    """RDR_to_PC_HardwareError (§6.3.2): bSlot, bSeq, bHardwareErrorCode (01h overcurrent)."""

    bMessageType = RDR_to_PC_HardwareError
    name = "RDR_to_PC_HardwareError"

    def __init__(self, bSlot=0, bSeq=0, bHardwareErrorCode=HARDWARE_ERROR_OVERCURRENT):
        self.bSlot = bSlot
        self.bSeq = bSeq
        self.bHardwareErrorCode = bHardwareErrorCode

    def to_bytes(self):
        return bytes((RDR_to_PC_HardwareError, self.bSlot, self.bSeq, self.bHardwareErrorCode))

    def fields(self):
        return [("bMessageType", 0x51), ("bSlot", self.bSlot), ("bSeq", self.bSeq),
                ("bHardwareErrorCode", self.bHardwareErrorCode)]

    def describe(self, redact=True):
        what = "overcurrent" if self.bHardwareErrorCode == 1 else "RFU"
        return ["RDR_to_PC_HardwareError (0x51)", " bSlot: %d" % self.bSlot,
                " bSeq: %d" % self.bSeq,
                " bHardwareErrorCode: 0x%02X (%s)" % (self.bHardwareErrorCode, what)]

    def __eq__(self, other):
        return isinstance(other, HardwareError) and self.to_bytes() == other.to_bytes()

    def __repr__(self):
        return "RDR_to_PC_HardwareError(bSlot=%d, bSeq=%d, bHardwareErrorCode=0x%02X)" % (
            self.bSlot, self.bSeq, self.bHardwareErrorCode)


def decode_interrupt(buf, slots=None):
    """Decode an interrupt-IN message; ``slots`` = bMaxSlotIndex + 1 when known."""
    n = len(buf)
    if n < 1:
        raise CCIDError("empty interrupt message", None, "TRUNCATED")
    t = buf[0]
    if t == RDR_to_PC_NotifySlotChange:
        if n > 1 + MAX_SLOTS // 4:
            raise CCIDError("bmSlotICCState of %d bytes: more than 256 slots" % (n - 1), 1,
                            "TOO_LONG")
        return NotifySlotChange(buf[1:], slots)
    if t == RDR_to_PC_HardwareError:
        if n != 4:
            raise CCIDError("RDR_to_PC_HardwareError is 4 bytes, got %d" % n, None,
                            "BAD_LENGTH")
        return HardwareError(buf[1], buf[2], buf[3])
    raise CCIDError("unknown interrupt message 0x%02X" % t, 0, "UNKNOWN_MESSAGE")


# ---------------------------------------------------------------------------
# Bulk-IN reassembly

_NOTHING = ()


class BulkInReassembler:
    """Whole RDR_to_PC messages out of bulk-IN reads.

    ``feed(data)`` takes what one read returned (one or more USB packets) and
    returns a tuple of the messages it completed (usually none or one).
    With ``max_packet_size`` set, USB rules apply: a read shorter than a
    multiple of it (a short packet) ends the transfer, so a message still
    incomplete then raises CCIDError("TRUNCATED"); one transfer carries one
    message; the zero-length packet after a message that filled its last
    packet is swallowed. With ``max_packet_size=None`` the input is a plain
    byte stream (serial readers, tests): dwLength alone frames messages.

    The buffer grows only with bytes actually received, never to what a
    header announces; announcements beyond ``max_message_length`` raise at
    once. After any CCIDError the reassembler is empty again.
    """

    def __init__(self, max_packet_size=64, max_message_length=DEFAULT_MAX_MESSAGE_LENGTH,
                 decode=True):
        if max_message_length < CCID_HEADER_LENGTH:
            raise CCIDError("max_message_length %d is below a header" % max_message_length,
                            None, "BAD_LENGTH")
        self.max_packet_size = max_packet_size
        self.max_message_length = max_message_length
        self.decode = decode
        self._buf = bytearray(min(max_message_length, 512))
        self._fill = 0
        self._need = -1          # total length of the message in progress, -1 unknown
        self._expect_zlp = False

    def reset(self):
        self._fill = 0
        self._need = -1
        self._expect_zlp = False

    @property
    def pending(self):
        """Bytes of an incomplete message held."""
        return self._fill

    def _fail(self, text, name, code=None):
        self.reset()
        raise CCIDError(text, code, name)

    def _store(self, data, start, count):
        end = self._fill + count
        if end > len(self._buf):
            size = len(self._buf)
            while size < end:
                size *= 2
            if size > self.max_message_length:
                size = self.max_message_length
            grown = bytearray(size)
            grown[0:self._fill] = self._buf[0:self._fill]
            self._buf = grown
        self._buf[self._fill:end] = data[start:start + count]
        self._fill = end

    def feed(self, data):
        n = len(data)
        mps = self.max_packet_size
        if n == 0:
            if self._expect_zlp:
                self._expect_zlp = False
                return _NOTHING
            if self._fill and mps:
                self._fail("transfer ended after %d bytes of %s" % (
                    self._fill, self._need if self._need >= 0 else "a header"), "TRUNCATED")
            return _NOTHING
        self._expect_zlp = False
        if self._need < 0 and self._fill == 0 and n >= CCID_HEADER_LENGTH:
            # fast path: one whole message in one transfer (the usual case) is
            # decoded where it lies; anything else takes the general path below,
            # which also raises every error
            t = data[0]
            total = CCID_HEADER_LENGTH + (data[1] | (data[2] << 8) | (data[3] << 16) | (
                data[4] << 24))
            if total == n and t >= 0x80 and t in _MESSAGES and total <= self.max_message_length:
                if self.decode:
                    # the checks decode_bulk_in would make all passed just above
                    msg = _decode_valid(data, t, total - CCID_HEADER_LENGTH, data[5], data[6])
                else:
                    msg = bytes(data)
                if mps and total % mps == 0:
                    self._expect_zlp = True
                return (msg,)
        out = None
        pos = 0
        while pos < n:
            if self._need < 0:
                take = CCID_HEADER_LENGTH - self._fill
                if take > n - pos:
                    take = n - pos
                self._store(data, pos, take)
                pos += take
                if self._fill < CCID_HEADER_LENGTH:
                    break
                t = self._buf[0]
                dw = self._buf[1] | (self._buf[2] << 8) | (self._buf[3] << 16) | (
                    self._buf[4] << 24)
                if t not in _MESSAGES or t < 0x80:
                    self._fail("bulk-IN bMessageType 0x%02X" % t, "UNKNOWN_MESSAGE", 0)
                if dw > self.max_message_length - CCID_HEADER_LENGTH:
                    self._fail("dwLength %d exceeds the %d-byte message limit"
                               % (dw, self.max_message_length), "TOO_LONG", 1)
                self._need = CCID_HEADER_LENGTH + dw
            take = self._need - self._fill
            if take > n - pos:
                take = n - pos
            if take:
                self._store(data, pos, take)
                pos += take
            if self._fill < self._need:
                break
            # complete
            if mps and pos < n:
                self._fail("%d bytes after a %d-byte message in one transfer"
                           % (n - pos, self._need), "TRAILING_DATA")
            total = self._need
            self._fill = 0          # empty before decoding: a bad message leaves no residue
            self._need = -1
            view = memoryview(self._buf)[0:total]
            if self.decode:
                msg = decode_bulk_in(view, self.max_message_length)
            else:
                msg = bytes(view)
            if mps and total % mps == 0:
                self._expect_zlp = True
            if out is None:
                out = [msg]
            else:
                out.append(msg)
        if mps and self._fill and n % mps:
            self._fail("short packet after %d bytes of %s" % (
                self._fill, self._need if self._need >= 0 else "a header"), "TRUNCATED")
        if out is None:
            return _NOTHING
        return tuple(out)


# ---------------------------------------------------------------------------
# bSeq bookkeeping

class SeqTracker:
    """Issues bSeq values and pairs answers with their commands.

    Several slots may have a command in flight at once (up to ``max_busy``,
    the reader's bMaxCCIDBusySlots), each slot one command at a time (§5.2.2)
    except for the PC_to_RDR_Abort that cancels it. An answer must match an
    outstanding (bSlot, bSeq): an answer with a bSeq already answered or
    never sent raises CCIDError("STALE_RESPONSE"), one with a bSeq sent to
    another slot CCIDError("FOREIGN_RESPONSE"). A time extension answer
    keeps its command outstanding.
    """

    HISTORY = 16

    def __init__(self, start=0, max_busy=None):
        self._next = start & 0xFF
        self.max_busy = max_busy
        self._out = {}            # bSeq -> (bSlot, bMessageType)
        self._busy = {}           # bSlot -> commands outstanding
        self._answered = []       # recent (bSeq, bSlot), oldest first, bounded

    def _add(self, seq, bSlot, bMessageType):
        self._out[seq] = (bSlot, bMessageType)
        self._busy[bSlot] = self._busy.get(bSlot, 0) + 1

    def _remove(self, seq):
        slot = self._out.pop(seq)[0]
        left = self._busy[slot] - 1
        if left:
            self._busy[slot] = left
        else:
            del self._busy[slot]

    def issue(self, bSlot, bMessageType=None):
        """Next bSeq for a command to ``bSlot``, recorded as outstanding."""
        if bSlot in self._busy:
            if bMessageType != PC_to_RDR_Abort:
                raise CCIDError("slot %d already has a command in flight" % bSlot,
                                CMD_SLOT_BUSY, "CMD_SLOT_BUSY")
        elif self.max_busy is not None and len(self._busy) >= self.max_busy:
            raise CCIDError("%d slots busy (bMaxCCIDBusySlots %d)"
                            % (len(self._busy), self.max_busy), CMD_SLOT_BUSY, "CMD_SLOT_BUSY")
        for _ in range(256):
            seq = self._next
            self._next = (seq + 1) & 0xFF
            if seq not in self._out:
                self._add(seq, bSlot, bMessageType)
                return seq
        raise CCIDError("256 commands outstanding", None, "SEQ_EXHAUSTED")

    def sent(self, bSlot, bSeq, bMessageType=None):
        """Record a command sent with a bSeq chosen elsewhere (e.g. a replay)."""
        bSeq &= 0xFF
        if bSeq in self._out:
            raise CCIDError("bSeq %d is already outstanding" % bSeq, 6, "SEQ_IN_USE")
        self._add(bSeq, bSlot, bMessageType)

    def match(self, bSlot, bSeq, time_extension=False, bMessageType=None, failed=False):
        """Pair an answer with its command; returns the command's bMessageType (or None)."""
        entry = self._out.get(bSeq)
        if entry is None:
            for seq, slot in self._answered:
                if seq == bSeq and slot == bSlot:
                    raise CCIDError("bSeq %d of slot %d was already answered" % (bSeq, bSlot),
                                    None, "STALE_RESPONSE")
            raise CCIDError("bSeq %d (slot %d) was never sent" % (bSeq, bSlot), None,
                            "STALE_RESPONSE")
        if entry[0] != bSlot:
            raise CCIDError("bSeq %d was sent to slot %d, answered by slot %d"
                            % (bSeq, entry[0], bSlot), None, "FOREIGN_RESPONSE")
        if (bMessageType is not None and entry[1] is not None and not failed
                and RESPONSE_TYPE.get(entry[1]) != bMessageType):
            raise CCIDError("%s answered by %s" % (message_name(entry[1]),
                                                    message_name(bMessageType)),
                            None, "UNEXPECTED_RESPONSE")
        if not time_extension:
            self._remove(bSeq)
            self._answered.append((bSeq, bSlot))
            if len(self._answered) > self.HISTORY:
                self._answered.pop(0)
        return entry[1]

    def match_response(self, msg):
        """match() for a decoded bulk-IN CCIDMessage."""
        t = msg.bMessageType
        st = (msg.bStatus >> 6) & 0x03 if t >= 0x80 else -1    # msg.command_status
        return self.match(msg.bSlot, msg.bSeq, st == COMMAND_STATUS_TIME_EXTENSION, t,
                          st == COMMAND_STATUS_FAILED)

    def forget(self, bSlot, bSeq):
        """Drop an outstanding command (timed out, aborted, device reset)."""
        entry = self._out.get(bSeq)
        if entry is not None and entry[0] == bSlot:
            self._remove(bSeq)
            return True
        return False

    def forget_slot(self, bSlot):
        for seq in sorted(self._out):
            if self._out[seq][0] == bSlot:
                self._remove(seq)

    def outstanding(self):
        """Sorted [(bSlot, bSeq)] of the commands awaiting an answer."""
        return sorted([(self._out[s][0], s) for s in self._out])

    def busy_slots(self):
        return sorted(self._busy)

    def is_busy(self, bSlot):
        return bSlot in self._busy


# ---------------------------------------------------------------------------
# §5.3 class-specific requests (control transfers on the CCID interface)

def abort_request(interface, bSlot, bSeq):
    """ABORT setup: (bmRequestType, bRequest, wValue, wIndex, wLength); wValue = bSeq:bSlot."""
    return (0x21, REQUEST_ABORT, ((bSeq & 0xFF) << 8) | (bSlot & 0xFF), interface, 0)


def get_clock_frequencies_request(interface, count):
    """GET_CLOCK_FREQUENCIES setup for ``count`` (bNumClockSupported) dwords."""
    return (0xA1, REQUEST_GET_CLOCK_FREQUENCIES, 0, interface, 4 * count)


def get_data_rates_request(interface, count):
    """GET_DATA_RATES setup for ``count`` (bNumDataRatesSupported) dwords."""
    return (0xA1, REQUEST_GET_DATA_RATES, 0, interface, 4 * count)


def setup_packet(request):
    """The 8-byte SETUP packet of a (bmRequestType, bRequest, wValue, wIndex, wLength)."""
    return struct.pack("<BBHHH", request[0], request[1], request[2], request[3], request[4])


def parse_dword_array(data, expected=None):
    """Little-endian dwords of a GET_CLOCK_FREQUENCIES (kHz) / GET_DATA_RATES (bps)
    answer; with ``expected`` (the descriptor's count, when non-zero) extra
    entries are dropped and missing ones raise."""
    n = len(data)
    if n % 4:
        raise CCIDError("answer of %d bytes is not a whole number of dwords" % n, None,
                        "BAD_LENGTH")
    count = n // 4
    if expected:
        if count < expected:
            raise CCIDError("%d values, %d announced" % (count, expected), None, "TRUNCATED")
        count = expected
    return [struct.unpack_from("<I", data, 4 * i)[0] for i in range(count)]


def parse_abort_request(wValue):
    """(bSlot, bSeq) of an ABORT request's wValue."""
    return (wValue & 0xFF, (wValue >> 8) & 0xFF)
