"""EFI_SMART_CARD_READER_PROTOCOL (UEFI 2.10 §35.6.1) as a Python API, one
instance per reader slot, over the CCID driver (core/driver.py).

    from ccidkit.uefi.fw import scard_reader as R
    readers = R.locate_readers()              # LocateHandleBuffer(gEfiSmartCardReaderProtocolGuid)
    sc = readers[0]
    status, proto = sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET,
                                    R.SCARD_PROTOCOL_T0 | R.SCARD_PROTOCOL_T1)
    rapdu = bytearray(258)
    status, n = sc.SCardTransmit(capdu, len(capdu), rapdu, len(rapdu))
    sc.SCardDisconnect(R.SCARD_CA_NORESET)

Calling convention (close to C). Function names, parameter names and order
are the specification's, without ``This``. Every function returns its
EFI_STATUS; a function with OUT parameters returns the tuple
``(Status, OUT...)`` in the order of the C prototype (IN OUT lengths
included, returned with their output value). Nothing raises for a status
the specification lists. Buffers are caller-provided ``bytearray`` objects
with a separate length, as in C: ``None`` stands for NULL, the function
writes at most ``length`` bytes at the start of the buffer and never
beyond, and writes nothing when it does not return EFI_SUCCESS. A length
larger than the bytearray is EFI_INVALID_PARAMETER (C cannot tell; Python
can). ReaderName is CHAR16: UTF-16LE with a terminating NUL, lengths in
bytes (``char16_to_str`` reads it back). Attributes and control codes are
PC/SC's (part 3 SCARD_ATTR_*, part 10 via SCardControl), as §35.6.1 says.

Where this differs on purpose from the public C port of the CCID driver
(each place is marked ``[port]`` below). The four that reach callers:
SCardTransmit copies a response longer than RAPDULength past the buffer
(here: EFI_BUFFER_TOO_SMALL, nothing written); SCardControl tests "OutBuffer
NULL but OutBufferLength not" instead of the reverse; SCardConnect accepts
SCARD_AM_READER with protocols or a card action, and answers EFI_SUCCESS for
SCARD_AM_CARD without a card (here: EFI_INVALID_PARAMETER, EFI_NO_MEDIA);
SCardStatus fails a NULL Atr as "too small" and returns before the name
length is set (here each pair is answered on its own, a NULL buffer being a
size query). Also: its lock is taken before the parameters are checked
(SCardConnect) and dropped before CardAction is (SCardDisconnect), and an
absent card gives EFI_NOT_READY instead of EFI_NO_MEDIA in SCardTransmit.
"""

import struct

from ccidkit.core.driver import (
    Reader, ReaderError, base_name, slot_name, PROTOCOL_T0, PROTOCOL_T1,
)
from ccidkit.core import part10
from ccidkit.core.part10 import Part10Error
from ccidkit.uefi.fw.efi_status import (
    EFI_SUCCESS, EFI_INVALID_PARAMETER, EFI_UNSUPPORTED, EFI_BUFFER_TOO_SMALL, EFI_NOT_READY,
    EFI_DEVICE_ERROR, EFI_ACCESS_DENIED, EFI_TIMEOUT, EFI_NO_MEDIA, EFI_PROTOCOL_ERROR, EfiError,
)

# UEFI 2.10 §35.6.1: EFI_SMART_CARD_READER_PROTOCOL_GUID
EFI_SMART_CARD_READER_PROTOCOL_GUID = "2a4d1adf-21dc-4b81-a42f-8b8ee2380060"

# access modes
SCARD_AM_READER = 0x0001
SCARD_AM_CARD = 0x0002
# card actions
SCARD_CA_NORESET = 0x0000
SCARD_CA_COLDRESET = 0x0001
SCARD_CA_WARMRESET = 0x0002
SCARD_CA_UNPOWER = 0x0003
SCARD_CA_EJECT = 0x0004
# protocols
SCARD_PROTOCOL_UNDEFINED = 0x0000
SCARD_PROTOCOL_T0 = 0x0001
SCARD_PROTOCOL_T1 = 0x0002
SCARD_PROTOCOL_RAW = 0x0004
# states
SCARD_UNKNOWN = 0x0000
SCARD_ABSENT = 0x0001
SCARD_INACTIVE = 0x0002
SCARD_ACTIVE = 0x0003


def SCARD_CTL_CODE(code):
    return 0x42000000 + code


CM_IOCTL_GET_FEATURE_REQUEST = SCARD_CTL_CODE(3400)

# ---- UEFI <-> PC/SC numbers (where they differ, a table; no arithmetic) ----

# PC/SC (pcsc-lite) SCardStatus dwState bits
PCSC_SCARD_UNKNOWN = 0x0001
PCSC_SCARD_ABSENT = 0x0002
PCSC_SCARD_PRESENT = 0x0004
PCSC_SCARD_SWALLOWED = 0x0008
PCSC_SCARD_POWERED = 0x0010
PCSC_SCARD_NEGOTIABLE = 0x0020
PCSC_SCARD_SPECIFIC = 0x0040

# (PC/SC bit that decides, UEFI state), highest first: UEFI has four states,
# PC/SC a bit set where a powered card also has PRESENT and SWALLOWED
STATE_FROM_PCSC = (
    (PCSC_SCARD_SPECIFIC, SCARD_ACTIVE),
    (PCSC_SCARD_NEGOTIABLE, SCARD_ACTIVE),
    (PCSC_SCARD_POWERED, SCARD_ACTIVE),
    (PCSC_SCARD_SWALLOWED, SCARD_INACTIVE),
    (PCSC_SCARD_PRESENT, SCARD_INACTIVE),
    (PCSC_SCARD_ABSENT, SCARD_ABSENT),
    (PCSC_SCARD_UNKNOWN, SCARD_UNKNOWN),
)

# UEFI card action -> PC/SC disposition (SCARD_LEAVE_CARD 0, SCARD_RESET_CARD 1,
# SCARD_UNPOWER_CARD 2, SCARD_EJECT_CARD 3); a cold reset is PC/SC's
# SCardReconnect with SCARD_UNPOWER_CARD, a warm one with SCARD_RESET_CARD.
CARD_ACTION_TO_PCSC = (
    (SCARD_CA_NORESET, 0),
    (SCARD_CA_COLDRESET, 2),
    (SCARD_CA_WARMRESET, 1),
    (SCARD_CA_UNPOWER, 2),
    (SCARD_CA_EJECT, 3),
)

# driver protocol number (T=0 / T=1) <-> UEFI SCARD_PROTOCOL_* bit (same values as
# PC/SC's, listed so that neither side's numbering is assumed)
PROTOCOL_BITS = ((0, SCARD_PROTOCOL_T0), (1, SCARD_PROTOCOL_T1))
DRIVER_PROTOCOL_MASK = ((SCARD_PROTOCOL_T0, PROTOCOL_T0), (SCARD_PROTOCOL_T1, PROTOCOL_T1))


def state_from_pcsc(dwState):
    for bit, state in STATE_FROM_PCSC:
        if dwState & bit:
            return state
    return SCARD_UNKNOWN


def pcsc_disposition(CardAction):
    for ca, disp in CARD_ACTION_TO_PCSC:
        if ca == CardAction:
            return disp
    return None


def protocol_bit(t):
    for n, bit in PROTOCOL_BITS:
        if n == t:
            return bit
    return SCARD_PROTOCOL_UNDEFINED


def driver_mask(preferred):
    out = 0
    for bit, d in DRIVER_PROTOCOL_MASK:
        if preferred & bit:
            out |= d
    return out


# PC/SC part 3 attributes answered by SCardGetAttrib
SCARD_ATTR_VENDOR_NAME = 0x00010100
SCARD_ATTR_VENDOR_IFD_TYPE = 0x00010101
SCARD_ATTR_VENDOR_IFD_VERSION = 0x00010102
SCARD_ATTR_VENDOR_IFD_SERIAL_NO = 0x00010103
SCARD_ATTR_CHANNEL_ID = 0x00020110
SCARD_ATTR_ASYNC_PROTOCOL_TYPES = 0x00030120
SCARD_ATTR_DEFAULT_CLK = 0x00030121
SCARD_ATTR_MAX_CLK = 0x00030122
SCARD_ATTR_DEFAULT_DATA_RATE = 0x00030123
SCARD_ATTR_MAX_DATA_RATE = 0x00030124
SCARD_ATTR_MAX_IFSD = 0x00030125
SCARD_ATTR_CURRENT_PROTOCOL_TYPE = 0x00080201
SCARD_ATTR_CURRENT_F = 0x00080203
SCARD_ATTR_CURRENT_D = 0x00080204
SCARD_ATTR_CURRENT_IFSC = 0x00080207
SCARD_ATTR_CURRENT_IFSD = 0x00080208
SCARD_ATTR_ICC_PRESENCE = 0x00090300
SCARD_ATTR_ICC_INTERFACE_STATUS = 0x00090301
SCARD_ATTR_ATR_STRING = 0x00090303
SCARD_ATTR_MAXINPUT = 0x0007A007
SCARD_ATTR_DEVICE_FRIENDLY_NAME_A = 0x7FFF0003

MAX_ATR_SIZE = 33


def str_to_char16(text):
    """CHAR16 string bytes: UTF-16LE code units and the terminating NUL."""
    out = bytearray()
    for ch in text:
        c = ord(ch)
        if c > 0xFFFF:
            c -= 0x10000
            for u in (0xD800 | (c >> 10), 0xDC00 | (c & 0x3FF)):
                out.append(u & 0xFF)
                out.append(u >> 8)
        else:
            out.append(c & 0xFF)
            out.append(c >> 8)
    out.append(0)
    out.append(0)
    return bytes(out)


def char16_to_str(buf, length=None):
    """The text of a CHAR16 buffer (up to its NUL or ``length`` bytes)."""
    n = len(buf) if length is None else length
    chars = []
    i = 0
    while i + 1 < n:
        c = buf[i] | (buf[i + 1] << 8)
        if c == 0:
            break
        chars.append(chr(c))
        i += 2
    return "".join(chars)


def _buffer_ok(buf, length):
    """A caller buffer: a bytearray (or None) and a length that fits in it."""
    if buf is None:
        return True
    if not isinstance(buf, (bytearray, memoryview)):
        return False
    return length is None or (isinstance(length, int) and 0 <= length <= len(buf))


def _put(buf, data):
    buf[0:len(data)] = data


def status_from_reader_error(e):
    """The EFI_STATUS for a driver ReaderError (one table)."""
    n = e.name
    if n == "IFD_ICC_NOT_PRESENT":
        return EFI_NO_MEDIA
    if n == "CARD_UNPOWERED":
        return EFI_NOT_READY
    if n == "IFD_RESPONSE_TIMEOUT":
        return EFI_TIMEOUT
    if n in ("IFD_PROTOCOL_NOT_SUPPORTED", "IFD_ERROR_PTS_FAILURE"):
        return EFI_PROTOCOL_ERROR
    if n == "IFD_COMMUNICATION_ERROR" and (e.message.startswith("T=0") or
                                           e.message.startswith("T=1")):
        return EFI_PROTOCOL_ERROR          # the T=0 / T=1 engine gave up
    if n in ("IFD_NOT_SUPPORTED", "IFD_ERROR_NOT_SUPPORTED"):
        return EFI_UNSUPPORTED
    return EFI_DEVICE_ERROR                # reader gone, bad answers, ...


class EFI_SMART_CARD_READER_PROTOCOL:
    """One slot of one reader. ``reader``: an opened core.driver.Reader."""

    def __init__(self, reader, slot=0, name=None):
        self.reader = reader
        self.slot = slot
        self.name = name if name is not None else slot_name(reader.name, 0, slot)
        self.connected = False          # the lock of SCardConnect
        self.access_mode = None
        self.active_protocol = SCARD_PROTOCOL_UNDEFINED
        self.events = None              # the slot's event count at SCardConnect
        self.busy = False               # an exchange is running (re-entry is refused)

    # ------------------------------------------------------------------ helpers

    def _slot(self):
        return self.reader.slots[self.slot]

    def _refresh(self):
        """Take the card events the reader reported; False when the reader is gone."""
        if self.reader.gone:
            return False
        try:
            self.reader.poll_events(0)
        except ReaderError:
            pass
        return not self.reader.gone

    def _pcsc_state(self):
        s = self._slot()
        if self.reader.gone:
            return PCSC_SCARD_UNKNOWN
        if not s.present:
            return PCSC_SCARD_ABSENT
        bits = PCSC_SCARD_PRESENT | PCSC_SCARD_SWALLOWED
        if s.powered:
            bits |= PCSC_SCARD_POWERED
            bits |= PCSC_SCARD_SPECIFIC if s.protocol is not None else PCSC_SCARD_NEGOTIABLE
        return bits

    def _power(self, CardAction):
        r = self.reader
        s = self._slot()
        if CardAction == SCARD_CA_COLDRESET:
            r.power_off(self.slot)
            r.power_on(self.slot)
        elif CardAction == SCARD_CA_WARMRESET:
            # CCID 1.1 has no warm reset message: the driver powers off and on
            r.reset(self.slot, warm=True)
        elif not s.powered:
            r.power_on(self.slot)

    # ------------------------------------------------------------------ SCardConnect

    def SCardConnect(self, AccessMode, CardAction, PreferredProtocols):
        """-> (Status, ActiveProtocol)"""
        # §35.6.1 SCardConnect: AccessMode is SCARD_AM_READER or SCARD_AM_CARD
        if AccessMode not in (SCARD_AM_READER, SCARD_AM_CARD):
            return EFI_INVALID_PARAMETER, SCARD_PROTOCOL_UNDEFINED
        # CardAction: SCARD_CA_NORESET, SCARD_CA_COLDRESET or SCARD_CA_WARMRESET only
        if CardAction not in (SCARD_CA_NORESET, SCARD_CA_COLDRESET, SCARD_CA_WARMRESET):
            return EFI_INVALID_PARAMETER, SCARD_PROTOCOL_UNDEFINED
        # "If AccessMode is set to SCARD_AM_READER, PreferredProtocols must be set to
        # SCARD_PROTOCOL_UNDEFINED and CardAction to SCARD_CA_NORESET" [port: unchecked]
        if AccessMode == SCARD_AM_READER and (PreferredProtocols != SCARD_PROTOCOL_UNDEFINED
                                              or CardAction != SCARD_CA_NORESET):
            return EFI_INVALID_PARAMETER, SCARD_PROTOCOL_UNDEFINED
        if not isinstance(PreferredProtocols, int) or PreferredProtocols < 0:
            return EFI_INVALID_PARAMETER, SCARD_PROTOCOL_UNDEFINED
        # the lock is tested only once the parameters are known good, and taken only
        # on success [port: it locked first, so a bad call left the reader locked]
        if self.connected or self.busy:
            return EFI_ACCESS_DENIED, SCARD_PROTOCOL_UNDEFINED
        if not self._refresh():
            return EFI_DEVICE_ERROR, SCARD_PROTOCOL_UNDEFINED
        if AccessMode == SCARD_AM_READER:
            self._lock(AccessMode, SCARD_PROTOCOL_UNDEFINED)
            return EFI_SUCCESS, SCARD_PROTOCOL_UNDEFINED
        s = self._slot()
        # EFI_NO_MEDIA: SCARD_AM_CARD without a card [port: answered EFI_SUCCESS]
        if not s.present:
            return EFI_NO_MEDIA, SCARD_PROTOCOL_UNDEFINED
        if not driver_mask(PreferredProtocols):
            # EFI_UNSUPPORTED: no protocol this stack can run is asked for (RAW is not)
            return EFI_UNSUPPORTED, SCARD_PROTOCOL_UNDEFINED
        self.busy = True
        try:
            try:
                self._power(CardAction)
            except ReaderError as e:
                st = status_from_reader_error(e)
                if st in (EFI_TIMEOUT, EFI_PROTOCOL_ERROR) or e.name == "IFD_ERROR_POWER_ACTION":
                    st = EFI_NOT_READY     # "inserted but failed to return an ATR"
                return st, SCARD_PROTOCOL_UNDEFINED
            try:
                if s.protocol is None:
                    self.reader.set_protocol(self.slot, driver_mask(PreferredProtocols))
            except ReaderError as e:
                st = status_from_reader_error(e)
                if e.name in ("IFD_PROTOCOL_NOT_SUPPORTED", "IFD_ERROR_PTS_FAILURE"):
                    st = EFI_UNSUPPORTED
                return st, SCARD_PROTOCOL_UNDEFINED
        finally:
            self.busy = False
        bit = protocol_bit(s.protocol)
        if not PreferredProtocols & bit:
            # the card already runs a protocol the caller did not ask for
            return EFI_UNSUPPORTED, SCARD_PROTOCOL_UNDEFINED
        self._lock(AccessMode, bit)
        return EFI_SUCCESS, bit

    def _lock(self, mode, proto):
        self.connected = True
        self.access_mode = mode
        self.active_protocol = proto
        self.events = self._slot().events

    # ------------------------------------------------------------------ SCardDisconnect

    def SCardDisconnect(self, CardAction):
        """-> Status"""
        # EFI_INVALID_PARAMETER: CardAction unknown; the lock stays as it was
        # [port: released the lock before looking at CardAction]
        if pcsc_disposition(CardAction) is None:
            return EFI_INVALID_PARAMETER
        # "If there is no previous call to SCardConnect, this function returns EFI_SUCCESS"
        if not self.connected:
            return EFI_SUCCESS
        if CardAction == SCARD_CA_EJECT:
            # no CCID reader here ejects (PC_to_RDR_Mechanical is not driven):
            # EFI_UNSUPPORTED and the disconnection is not performed
            return EFI_UNSUPPORTED
        if self.busy:
            return EFI_ACCESS_DENIED
        gone = not self._refresh()
        card_left = gone or not self._slot().present or self._slot().events != self.events
        self.connected = False
        self.access_mode = None
        self.active_protocol = SCARD_PROTOCOL_UNDEFINED
        # "In case the smart card has been removed before this call, this function
        # returns EFI_SUCCESS"
        if CardAction == SCARD_CA_NORESET or card_left:
            return EFI_DEVICE_ERROR if gone and CardAction != SCARD_CA_NORESET else EFI_SUCCESS
        try:
            if CardAction == SCARD_CA_UNPOWER:
                self.reader.power_off(self.slot)
            else:
                self._power(CardAction)
        except ReaderError as e:
            if e.name == "IFD_ICC_NOT_PRESENT":
                return EFI_SUCCESS
            return EFI_DEVICE_ERROR
        return EFI_SUCCESS

    # ------------------------------------------------------------------ SCardStatus

    def SCardStatus(self, ReaderName=None, ReaderNameLength=None, Atr=None, AtrLength=None):
        """-> (Status, ReaderNameLength, State, CardProtocol, AtrLength)"""
        # "ReaderName is not NULL but ReaderNameLength is NULL", same for Atr
        if (ReaderName is not None and ReaderNameLength is None) or \
                (Atr is not None and AtrLength is None):
            return EFI_INVALID_PARAMETER, ReaderNameLength, SCARD_UNKNOWN, \
                SCARD_PROTOCOL_UNDEFINED, AtrLength
        if not _buffer_ok(ReaderName, ReaderNameLength) or not _buffer_ok(Atr, AtrLength) \
                or (ReaderNameLength is not None and not isinstance(ReaderNameLength, int)) \
                or (AtrLength is not None and not isinstance(AtrLength, int)):
            return EFI_INVALID_PARAMETER, ReaderNameLength, SCARD_UNKNOWN, \
                SCARD_PROTOCOL_UNDEFINED, AtrLength
        if not self._refresh():
            return EFI_DEVICE_ERROR, ReaderNameLength, SCARD_UNKNOWN, \
                SCARD_PROTOCOL_UNDEFINED, AtrLength
        s = self._slot()
        state = state_from_pcsc(self._pcsc_state())
        proto = protocol_bit(s.protocol) if s.powered and s.protocol is not None \
            else SCARD_PROTOCOL_UNDEFINED
        name = str_to_char16(self.name)
        atr = bytes(s.atr) if s.powered and s.atr else b""
        status = EFI_SUCCESS
        # each OUT pair on its own: a NULL buffer with a length is a size query; the
        # length always comes back as the size needed [port: a short ATR length
        # returned before the name was looked at, and a NULL Atr still "too small"]
        name_out = None
        atr_out = None
        if ReaderNameLength is not None:
            if ReaderName is not None and ReaderNameLength < len(name):
                status = EFI_BUFFER_TOO_SMALL
            name_out = len(name)
        if AtrLength is not None:
            if Atr is not None and AtrLength < len(atr):
                status = EFI_BUFFER_TOO_SMALL
            atr_out = len(atr)
        if status == EFI_SUCCESS:
            if ReaderName is not None:
                _put(ReaderName, name)
            if Atr is not None:
                _put(Atr, atr)
        return status, name_out, state, proto, atr_out

    # ------------------------------------------------------------------ SCardTransmit

    def _usable(self, need_card=True):
        """EFI_SUCCESS or the status that stops an exchange before it starts."""
        if self.busy:
            # "A communication with the reader/card is already pending"
            return EFI_ACCESS_DENIED
        if not self.connected:
            # no SCardConnect lock held: the exclusive access belongs to nobody here
            return EFI_ACCESS_DENIED
        if not self._refresh():
            return EFI_DEVICE_ERROR
        if not need_card:
            return EFI_SUCCESS
        s = self._slot()
        if not s.present:
            return EFI_NO_MEDIA        # "There is no card in the reader" [port: NOT_READY]
        if not s.powered or s.protocol is None or s.events != self.events:
            # a new card since SCardConnect is not powered for this connection
            return EFI_NOT_READY
        return EFI_SUCCESS

    def SCardTransmit(self, CAPDU, CAPDULength, RAPDU, RAPDULength):
        """-> (Status, RAPDULength). The card has run the command when
        EFI_BUFFER_TOO_SMALL comes back: its answer is gone, only its size is told."""
        # "CAPDU is NULL or CAPDULength is 0"
        if CAPDU is None or not isinstance(CAPDULength, int) or CAPDULength <= 0 or \
                CAPDULength > len(CAPDU):
            return EFI_INVALID_PARAMETER, RAPDULength
        # RAPDU and RAPDULength are not OPTIONAL in the prototype
        if RAPDU is None or not isinstance(RAPDULength, int) or \
                not _buffer_ok(RAPDU, RAPDULength):
            return EFI_INVALID_PARAMETER, RAPDULength
        st = self._usable()
        if st != EFI_SUCCESS:
            return st, RAPDULength
        self.busy = True
        try:
            rsp = self.reader.transmit(self.slot, bytes(CAPDU[:CAPDULength]))
        except ReaderError as e:
            self.reader.log("%s: SCardTransmit: %s" % (self.name, e))
            return status_from_reader_error(e), RAPDULength
        finally:
            self.busy = False
        if len(rsp) > RAPDULength:
            # "RAPDULength has been updated to the required value"; nothing written
            # [port: copied the whole response past the caller's buffer]
            return EFI_BUFFER_TOO_SMALL, len(rsp)
        _put(RAPDU, rsp)
        return EFI_SUCCESS, len(rsp)

    # ------------------------------------------------------------------ SCardControl

    def SCardControl(self, ControlCode, InBuffer=None, InBufferLength=0, OutBuffer=None,
                     OutBufferLength=None):
        """-> (Status, OutBufferLength)"""
        # "OutBuffer is not NULL but OutBufferLength is NULL" [port: tested the reverse]
        if OutBuffer is not None and OutBufferLength is None:
            return EFI_INVALID_PARAMETER, OutBufferLength
        if not _buffer_ok(OutBuffer, OutBufferLength) or \
                (OutBufferLength is not None and not isinstance(OutBufferLength, int)):
            return EFI_INVALID_PARAMETER, OutBufferLength
        if InBufferLength is None:
            InBufferLength = 0
        if not isinstance(InBufferLength, int) or InBufferLength < 0 or \
                (InBuffer is None and InBufferLength) or \
                (InBuffer is not None and InBufferLength > len(InBuffer)):
            return EFI_INVALID_PARAMETER, OutBufferLength
        if not isinstance(ControlCode, int):
            return EFI_INVALID_PARAMETER, OutBufferLength
        needs_card = ControlCode not in (CM_IOCTL_GET_FEATURE_REQUEST, part10.IOCTL_NAD)
        offered = {}
        for tag, code in part10.features(self.reader):
            offered[code] = tag
        tag = offered.get(ControlCode)
        if ControlCode not in (CM_IOCTL_GET_FEATURE_REQUEST, part10.IOCTL_NAD) and tag is None:
            return EFI_UNSUPPORTED, OutBufferLength
        if tag in (part10.FEATURE_IFD_PIN_PROPERTIES, part10.FEATURE_GET_TLV_PROPERTIES,
                   part10.FEATURE_CCID_ESC_COMMAND):
            needs_card = False
        # "ControlCode requires input parameters but InBuffer is NULL ..."
        if tag in (part10.FEATURE_VERIFY_PIN_DIRECT, part10.FEATURE_MODIFY_PIN_DIRECT,
                   part10.FEATURE_CCID_ESC_COMMAND) or ControlCode == part10.IOCTL_NAD:
            if InBuffer is None or InBufferLength == 0:
                return EFI_INVALID_PARAMETER, OutBufferLength
        st = self._usable(needs_card)
        if st != EFI_SUCCESS:
            return st, OutBufferLength
        data = bytes(InBuffer[:InBufferLength]) if InBuffer is not None else b""
        self.busy = True
        try:
            out = part10.control(self.reader, self.slot, ControlCode, data)
        except Part10Error as e:
            if e.name == "UNSUPPORTED":
                return EFI_UNSUPPORTED, OutBufferLength
            return EFI_INVALID_PARAMETER, OutBufferLength    # input shorter than expected
        except ReaderError as e:
            return status_from_reader_error(e), OutBufferLength
        finally:
            self.busy = False
        if out and (OutBuffer is None or OutBufferLength < len(out)):
            return EFI_BUFFER_TOO_SMALL, len(out)
        if out:
            _put(OutBuffer, out)
        return EFI_SUCCESS, len(out)

    # ------------------------------------------------------------------ SCardGetAttrib

    def SCardGetAttrib(self, Attrib, OutBuffer, OutBufferLength):
        """-> (Status, OutBufferLength)"""
        # "OutBuffer is NULL or OutBufferLength is 0"
        if OutBuffer is None or not isinstance(OutBufferLength, int) or OutBufferLength <= 0 \
                or not _buffer_ok(OutBuffer, OutBufferLength):
            return EFI_INVALID_PARAMETER, OutBufferLength
        if not self._refresh():
            return EFI_DEVICE_ERROR, OutBufferLength
        try:
            value = self._attribute(Attrib)
        except EfiError as e:
            return e.status, OutBufferLength
        if len(value) > OutBufferLength:
            return EFI_BUFFER_TOO_SMALL, len(value)
        _put(OutBuffer, value)
        return EFI_SUCCESS, len(value)

    def _attribute(self, a):
        r = self.reader
        t = r.transport
        d = r.descriptor
        s = self._slot()
        if a == SCARD_ATTR_VENDOR_NAME:
            return (t.manufacturer or "").encode() + b"\x00"
        if a == SCARD_ATTR_VENDOR_IFD_TYPE:
            return (t.product or "").encode() + b"\x00"
        if a == SCARD_ATTR_VENDOR_IFD_VERSION:
            return _dword((t.bcd_device or 0) << 16)
        if a == SCARD_ATTR_VENDOR_IFD_SERIAL_NO:
            if not t.serial:
                raise EfiError("attribute 0x%08X not supported" % a, EFI_UNSUPPORTED)
            return t.serial.encode()
        if a == SCARD_ATTR_CHANNEL_ID:
            return _dword(0x00200000 | ((t.bus & 0xFF) << 8) | (t.address & 0xFF))
        if a == SCARD_ATTR_ASYNC_PROTOCOL_TYPES:
            return _dword(d.dwProtocols)
        if a == SCARD_ATTR_DEFAULT_CLK:
            return _dword(d.dwDefaultClock)
        if a == SCARD_ATTR_MAX_CLK:
            return _dword(d.dwMaximumClock)
        if a == SCARD_ATTR_DEFAULT_DATA_RATE:
            return _dword(d.dwDataRate)
        if a == SCARD_ATTR_MAX_DATA_RATE:
            return _dword(d.dwMaxDataRate)
        if a == SCARD_ATTR_MAX_IFSD:
            return _dword(d.dwMaxIFSD)
        if a == SCARD_ATTR_MAXINPUT:
            return _dword(r.max_message_length - 10)
        if a == SCARD_ATTR_ICC_PRESENCE:
            return bytes((2 if s.present else 0,))
        if a == SCARD_ATTR_ICC_INTERFACE_STATUS:
            return bytes((1 if s.powered else 0,))
        if a == SCARD_ATTR_DEVICE_FRIENDLY_NAME_A:
            return self.name.encode() + b"\x00"
        if a in (SCARD_ATTR_ATR_STRING, SCARD_ATTR_CURRENT_PROTOCOL_TYPE, SCARD_ATTR_CURRENT_F,
                 SCARD_ATTR_CURRENT_D, SCARD_ATTR_CURRENT_IFSC, SCARD_ATTR_CURRENT_IFSD):
            # "Attrib value requires" a card (EFI_NO_MEDIA) / a powered card (EFI_NOT_READY)
            if not s.present:
                raise EfiError("no card", EFI_NO_MEDIA)
            if not s.powered:
                raise EfiError("card not powered", EFI_NOT_READY)
            if a == SCARD_ATTR_ATR_STRING:
                return bytes(s.atr)
            if a == SCARD_ATTR_CURRENT_F:
                return _dword(s.fi)
            if a == SCARD_ATTR_CURRENT_D:
                return _dword(s.di)
            if s.protocol is None:
                raise EfiError("card not powered", EFI_NOT_READY)
            if a == SCARD_ATTR_CURRENT_PROTOCOL_TYPE:
                return _dword(protocol_bit(s.protocol))
            if s.t1 is None:
                raise EfiError("IFSC/IFSD: T=1 at TPDU level only", EFI_UNSUPPORTED)
            return _dword(s.t1.ifsc if a == SCARD_ATTR_CURRENT_IFSC else s.t1.ifsd)
        raise EfiError("attribute 0x%08X not supported" % a, EFI_UNSUPPORTED)


def _dword(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def locate_readers(transports=None, log=None, settle=True, **reader_options):
    """One EFI_SMART_CARD_READER_PROTOCOL per slot of every CCID reader, reader
    names numbered as pcsc-lite does (``Name 00 00``). ``transports`` default:
    the firmware's (uefi/fw/usb_transport.find_readers()).

    ``settle``: after the slot states are read, take the NotifySlotChange a
    reader still holds from before (QEMU's usb-ccid keeps its insertion
    message until the first interrupt poll, up to one bInterval later),
    waiting at most one interrupt interval: read later, it would look like a
    card swapped in the middle of a connection."""
    if transports is None:
        from ccidkit.uefi.fw.usb_transport import find_readers
        transports = find_readers()
    out = []
    index = 0
    for t in transports:
        try:
            r = Reader(t, log=log, **reader_options).open()
        except ReaderError as e:
            if log is not None:
                log("cannot use reader %04X:%04X: %s" % (t.vid, t.pid, e))
            continue
        if settle and t.has_interrupt:
            try:
                r.poll_events(getattr(t, "int_interval", 0) or 0)
            except ReaderError:
                pass
        base = base_name(t)
        for s in range(len(r.slots)):
            out.append(EFI_SMART_CARD_READER_PROTOCOL(r, s, slot_name(base, index, s)))
        index += 1
    return out
