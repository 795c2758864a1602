"""A PC/SC-like API over the CCID driver, with pcsc-lite's semantics and numbers.

    from ccidkit.core import pcsc
    mgr = pcsc.ResourceManager(source)          # source() -> current Transports
    hctx = pcsc.SCardEstablishContext(pcsc.SCARD_SCOPE_USER, mgr)
    readers = pcsc.SCardListReaders(hctx)
    hcard, proto = pcsc.SCardConnect(hctx, readers[0], pcsc.SCARD_SHARE_SHARED,
                                     pcsc.SCARD_PROTOCOL_T0 | pcsc.SCARD_PROTOCOL_T1)
    rsp = pcsc.SCardTransmit(hcard, pcsc.SCARD_PCI_T1, apdu)
    pcsc.SCardDisconnect(hcard, pcsc.SCARD_LEAVE_CARD)

The functions raise PCSCError (``code`` the SCARD_E_* / SCARD_W_* value of
pcsc-lite, ``name`` its name) instead of returning it; what pyscard's
``smartcard.scard`` returns beside the status comes back as the value.

The ResourceManager plays pcscd's part inside the process: it enumerates
readers (reader names and numbers as pcsc-lite gives them), powers a card up
when it is inserted (for its ATR), tracks card and reader events, and keeps
the handles, share modes and transactions. It is single-threaded: waits are
the transports' timeouts (and an optional ``sleep_ms`` when no reader can
wait). Differences from pcsc-lite, on purpose: the ``\\\\?PnP?\\Notification``
entry carries a count of reader events (not the number of readers) in the
upper 16 bits of dwEventState, so a plug and an unplug between two calls are
not lost; SCardBeginTransaction and SCardTransmit answer
SCARD_E_SHARING_VIOLATION instead of blocking when another handle holds a
transaction (one thread cannot wait for another).
"""

import struct

from .errors import CcidkitError
from .driver import (
    Reader, ReaderError, slot_name, lowest_free_index, PROTOCOL_T0, PROTOCOL_T1,
)
from . import part10
from .part10 import Part10Error, SCARD_CTL_CODE  # noqa: F401  (SCARD_CTL_CODE for users)

# ---------------------------------------------------------------- constants (pcsc-lite)

SCARD_S_SUCCESS = 0x00000000

_ERRORS = (
    ("SCARD_F_INTERNAL_ERROR", 0x80100001, "An internal consistency check failed."),
    ("SCARD_E_CANCELLED", 0x80100002, "The action was cancelled by an SCardCancel request."),
    ("SCARD_E_INVALID_HANDLE", 0x80100003, "The supplied handle was invalid."),
    ("SCARD_E_INVALID_PARAMETER", 0x80100004, "One or more of the supplied parameters could not be properly interpreted."),
    ("SCARD_E_INVALID_TARGET", 0x80100005, "Registry startup information is missing or invalid."),
    ("SCARD_E_NO_MEMORY", 0x80100006, "Not enough memory available to complete this command."),
    ("SCARD_F_WAITED_TOO_LONG", 0x80100007, "An internal consistency timer has expired."),
    ("SCARD_E_INSUFFICIENT_BUFFER", 0x80100008, "The data buffer to receive returned data is too small for the returned data."),
    ("SCARD_E_UNKNOWN_READER", 0x80100009, "The specified reader name is not recognized."),
    ("SCARD_E_TIMEOUT", 0x8010000A, "The user-specified timeout value has expired."),
    ("SCARD_E_SHARING_VIOLATION", 0x8010000B, "The smart card cannot be accessed because of other connections outstanding."),
    ("SCARD_E_NO_SMARTCARD", 0x8010000C, "The operation requires a Smart Card, but no Smart Card is currently in the device."),
    ("SCARD_E_UNKNOWN_CARD", 0x8010000D, "The specified smart card name is not recognized."),
    ("SCARD_E_CANT_DISPOSE", 0x8010000E, "The system could not dispose of the media in the requested manner."),
    ("SCARD_E_PROTO_MISMATCH", 0x8010000F, "The requested protocols are incompatible with the protocol currently in use with the smart card."),
    ("SCARD_E_NOT_READY", 0x80100010, "The reader or smart card is not ready to accept commands."),
    ("SCARD_E_INVALID_VALUE", 0x80100011, "One or more of the supplied parameters values could not be properly interpreted."),
    ("SCARD_E_SYSTEM_CANCELLED", 0x80100012, "The action was cancelled by the system, presumably to log off or shut down."),
    ("SCARD_F_COMM_ERROR", 0x80100013, "An internal communications error has been detected."),
    ("SCARD_F_UNKNOWN_ERROR", 0x80100014, "An internal error has been detected, but the source is unknown."),
    ("SCARD_E_INVALID_ATR", 0x80100015, "An ATR obtained from the registry is not a valid ATR string."),
    ("SCARD_E_NOT_TRANSACTED", 0x80100016, "An attempt was made to end a non-existent transaction."),
    ("SCARD_E_READER_UNAVAILABLE", 0x80100017, "The specified reader is not currently available for use."),
    ("SCARD_P_SHUTDOWN", 0x80100018, "The operation has been aborted to allow the server application to exit."),
    ("SCARD_E_PCI_TOO_SMALL", 0x80100019, "The PCI Receive buffer was too small."),
    ("SCARD_E_READER_UNSUPPORTED", 0x8010001A, "The reader driver does not meet minimal requirements for support."),
    ("SCARD_E_DUPLICATE_READER", 0x8010001B, "The reader driver did not produce a unique reader name."),
    ("SCARD_E_CARD_UNSUPPORTED", 0x8010001C, "The smart card does not meet minimal requirements for support."),
    ("SCARD_E_NO_SERVICE", 0x8010001D, "The Smart card resource manager is not running."),
    ("SCARD_E_SERVICE_STOPPED", 0x8010001E, "The Smart card resource manager has shut down."),
    ("SCARD_E_UNEXPECTED", 0x8010001F, "An unexpected card error has occurred."),
    # pcsc-lite gives SCARD_E_UNSUPPORTED_FEATURE the value of SCARD_E_UNEXPECTED
    # (Windows: 0x80100022); we keep pcsc-lite's number.
    ("SCARD_E_UNSUPPORTED_FEATURE", 0x8010001F, "This smart card does not support the requested feature."),
    ("SCARD_E_ICC_INSTALLATION", 0x80100020, "No primary provider can be found for the smart card."),
    ("SCARD_E_ICC_CREATEORDER", 0x80100021, "The requested order of object creation is not supported."),
    ("SCARD_E_DIR_NOT_FOUND", 0x80100023, "The identified directory does not exist in the smart card."),
    ("SCARD_E_FILE_NOT_FOUND", 0x80100024, "The identified file does not exist in the smart card."),
    ("SCARD_E_NO_DIR", 0x80100025, "The supplied path does not represent a smart card directory."),
    ("SCARD_E_NO_FILE", 0x80100026, "The supplied path does not represent a smart card file."),
    ("SCARD_E_NO_ACCESS", 0x80100027, "Access is denied to this file."),
    ("SCARD_E_WRITE_TOO_MANY", 0x80100028, "The smart card does not have enough memory to store the information."),
    ("SCARD_E_BAD_SEEK", 0x80100029, "There was an error trying to set the smart card file object pointer."),
    ("SCARD_E_INVALID_CHV", 0x8010002A, "The supplied PIN is incorrect."),
    ("SCARD_E_UNKNOWN_RES_MNG", 0x8010002B, "An unrecognized error code was returned from a layered component."),
    ("SCARD_E_NO_SUCH_CERTIFICATE", 0x8010002C, "The requested certificate does not exist."),
    ("SCARD_E_CERTIFICATE_UNAVAILABLE", 0x8010002D, "The requested certificate could not be obtained."),
    ("SCARD_E_NO_READERS_AVAILABLE", 0x8010002E, "Cannot find a smart card reader."),
    ("SCARD_E_COMM_DATA_LOST", 0x8010002F, "A communications error with the smart card has been detected."),
    ("SCARD_E_NO_KEY_CONTAINER", 0x80100030, "The requested key container does not exist on the smart card."),
    ("SCARD_E_SERVER_TOO_BUSY", 0x80100031, "The Smart Card Resource Manager is too busy to complete this operation."),
    ("SCARD_W_UNSUPPORTED_CARD", 0x80100065, "The reader cannot communicate with the card, due to ATR string configuration conflicts."),
    ("SCARD_W_UNRESPONSIVE_CARD", 0x80100066, "The smart card is not responding to a reset."),
    ("SCARD_W_UNPOWERED_CARD", 0x80100067, "Power has been removed from the smart card, so that further communication is not possible."),
    ("SCARD_W_RESET_CARD", 0x80100068, "The smart card has been reset, so any shared state information is invalid."),
    ("SCARD_W_REMOVED_CARD", 0x80100069, "The smart card has been removed, so further communication is not possible."),
    ("SCARD_W_SECURITY_VIOLATION", 0x8010006A, "Access was denied because of a security violation."),
    ("SCARD_W_WRONG_CHV", 0x8010006B, "The card cannot be accessed because the wrong PIN was presented."),
    ("SCARD_W_CHV_BLOCKED", 0x8010006C, "The card cannot be accessed because the maximum number of PIN entry attempts has been reached."),
    ("SCARD_W_EOF", 0x8010006D, "The end of the smart card file has been reached."),
    ("SCARD_W_CANCELLED_BY_USER", 0x8010006E, "The user pressed \"Cancel\" on a Smart Card Selection Dialog."),
    ("SCARD_W_CARD_NOT_AUTHENTICATED", 0x8010006F, "No PIN was presented to the smart card."),
)

SCARD_F_INTERNAL_ERROR = 0x80100001
SCARD_E_CANCELLED = 0x80100002
SCARD_E_INVALID_HANDLE = 0x80100003
SCARD_E_INVALID_PARAMETER = 0x80100004
SCARD_E_INVALID_TARGET = 0x80100005
SCARD_E_NO_MEMORY = 0x80100006
SCARD_F_WAITED_TOO_LONG = 0x80100007
SCARD_E_INSUFFICIENT_BUFFER = 0x80100008
SCARD_E_UNKNOWN_READER = 0x80100009
SCARD_E_TIMEOUT = 0x8010000A
SCARD_E_SHARING_VIOLATION = 0x8010000B
SCARD_E_NO_SMARTCARD = 0x8010000C
SCARD_E_UNKNOWN_CARD = 0x8010000D
SCARD_E_CANT_DISPOSE = 0x8010000E
SCARD_E_PROTO_MISMATCH = 0x8010000F
SCARD_E_NOT_READY = 0x80100010
SCARD_E_INVALID_VALUE = 0x80100011
SCARD_E_SYSTEM_CANCELLED = 0x80100012
SCARD_F_COMM_ERROR = 0x80100013
SCARD_F_UNKNOWN_ERROR = 0x80100014
SCARD_E_INVALID_ATR = 0x80100015
SCARD_E_NOT_TRANSACTED = 0x80100016
SCARD_E_READER_UNAVAILABLE = 0x80100017
SCARD_P_SHUTDOWN = 0x80100018
SCARD_E_PCI_TOO_SMALL = 0x80100019
SCARD_E_READER_UNSUPPORTED = 0x8010001A
SCARD_E_DUPLICATE_READER = 0x8010001B
SCARD_E_CARD_UNSUPPORTED = 0x8010001C
SCARD_E_NO_SERVICE = 0x8010001D
SCARD_E_SERVICE_STOPPED = 0x8010001E
SCARD_E_UNEXPECTED = 0x8010001F
SCARD_E_UNSUPPORTED_FEATURE = 0x8010001F
SCARD_E_ICC_INSTALLATION = 0x80100020
SCARD_E_ICC_CREATEORDER = 0x80100021
SCARD_E_DIR_NOT_FOUND = 0x80100023
SCARD_E_FILE_NOT_FOUND = 0x80100024
SCARD_E_NO_DIR = 0x80100025
SCARD_E_NO_FILE = 0x80100026
SCARD_E_NO_ACCESS = 0x80100027
SCARD_E_WRITE_TOO_MANY = 0x80100028
SCARD_E_BAD_SEEK = 0x80100029
SCARD_E_INVALID_CHV = 0x8010002A
SCARD_E_UNKNOWN_RES_MNG = 0x8010002B
SCARD_E_NO_SUCH_CERTIFICATE = 0x8010002C
SCARD_E_CERTIFICATE_UNAVAILABLE = 0x8010002D
SCARD_E_NO_READERS_AVAILABLE = 0x8010002E
SCARD_E_COMM_DATA_LOST = 0x8010002F
SCARD_E_NO_KEY_CONTAINER = 0x80100030
SCARD_E_SERVER_TOO_BUSY = 0x80100031
SCARD_W_UNSUPPORTED_CARD = 0x80100065
SCARD_W_UNRESPONSIVE_CARD = 0x80100066
SCARD_W_UNPOWERED_CARD = 0x80100067
SCARD_W_RESET_CARD = 0x80100068
SCARD_W_REMOVED_CARD = 0x80100069
SCARD_W_SECURITY_VIOLATION = 0x8010006A
SCARD_W_WRONG_CHV = 0x8010006B
SCARD_W_CHV_BLOCKED = 0x8010006C
SCARD_W_EOF = 0x8010006D
SCARD_W_CANCELLED_BY_USER = 0x8010006E
SCARD_W_CARD_NOT_AUTHENTICATED = 0x8010006F

SCARD_SCOPE_USER = 0x0000
SCARD_SCOPE_TERMINAL = 0x0001
SCARD_SCOPE_SYSTEM = 0x0002

SCARD_PROTOCOL_UNDEFINED = 0x0000
SCARD_PROTOCOL_UNSET = SCARD_PROTOCOL_UNDEFINED
SCARD_PROTOCOL_T0 = 0x0001
SCARD_PROTOCOL_T1 = 0x0002
SCARD_PROTOCOL_RAW = 0x0004
SCARD_PROTOCOL_T15 = 0x0008
SCARD_PROTOCOL_ANY = SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1

SCARD_SHARE_EXCLUSIVE = 0x0001
SCARD_SHARE_SHARED = 0x0002
SCARD_SHARE_DIRECT = 0x0003

SCARD_LEAVE_CARD = 0x0000
SCARD_RESET_CARD = 0x0001
SCARD_UNPOWER_CARD = 0x0002
SCARD_EJECT_CARD = 0x0003

# SCardStatus dwState
SCARD_UNKNOWN = 0x0001
SCARD_ABSENT = 0x0002
SCARD_PRESENT = 0x0004
SCARD_SWALLOWED = 0x0008
SCARD_POWERED = 0x0010
SCARD_NEGOTIABLE = 0x0020
SCARD_SPECIFIC = 0x0040

# SCardGetStatusChange dwCurrentState / dwEventState
SCARD_STATE_UNAWARE = 0x0000
SCARD_STATE_IGNORE = 0x0001
SCARD_STATE_CHANGED = 0x0002
SCARD_STATE_UNKNOWN = 0x0004
SCARD_STATE_UNAVAILABLE = 0x0008
SCARD_STATE_EMPTY = 0x0010
SCARD_STATE_PRESENT = 0x0020
SCARD_STATE_ATRMATCH = 0x0040
SCARD_STATE_EXCLUSIVE = 0x0080
SCARD_STATE_INUSE = 0x0100
SCARD_STATE_MUTE = 0x0200
SCARD_STATE_UNPOWERED = 0x0400

INFINITE = 0xFFFFFFFF
PNP_NOTIFICATION = "\\\\?PnP?\\Notification"
MAX_ATR_SIZE = 33


def SCARD_ATTR_VALUE(cls, tag):
    return (cls << 16) | tag


SCARD_CLASS_VENDOR_INFO = 1
SCARD_CLASS_COMMUNICATIONS = 2
SCARD_CLASS_PROTOCOL = 3
SCARD_CLASS_POWER_MGMT = 4
SCARD_CLASS_SECURITY = 5
SCARD_CLASS_MECHANICAL = 6
SCARD_CLASS_VENDOR_DEFINED = 7
SCARD_CLASS_IFD_PROTOCOL = 8
SCARD_CLASS_ICC_STATE = 9
SCARD_CLASS_SYSTEM = 0x7FFF

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
SCARD_ATTR_SYNC_PROTOCOL_TYPES = 0x00030126
SCARD_ATTR_POWER_MGMT_SUPPORT = 0x00040131
SCARD_ATTR_CHARACTERISTICS = 0x00060150
SCARD_ATTR_CURRENT_PROTOCOL_TYPE = 0x00080201
SCARD_ATTR_CURRENT_CLK = 0x00080202
SCARD_ATTR_CURRENT_F = 0x00080203
SCARD_ATTR_CURRENT_D = 0x00080204
SCARD_ATTR_CURRENT_N = 0x00080205
SCARD_ATTR_CURRENT_W = 0x00080206
SCARD_ATTR_CURRENT_IFSC = 0x00080207
SCARD_ATTR_CURRENT_IFSD = 0x00080208
SCARD_ATTR_CURRENT_BWT = 0x00080209
SCARD_ATTR_CURRENT_CWT = 0x0008020A
SCARD_ATTR_ICC_PRESENCE = 0x00090300
SCARD_ATTR_ICC_INTERFACE_STATUS = 0x00090301
SCARD_ATTR_ATR_STRING = 0x00090303
SCARD_ATTR_MAXINPUT = 0x0007A007
SCARD_ATTR_DEVICE_UNIT = 0x7FFF0001
SCARD_ATTR_DEVICE_IN_USE = 0x7FFF0002
SCARD_ATTR_DEVICE_FRIENDLY_NAME_A = 0x7FFF0003
SCARD_ATTR_DEVICE_SYSTEM_NAME_A = 0x7FFF0004
SCARD_ATTR_DEVICE_FRIENDLY_NAME = SCARD_ATTR_DEVICE_FRIENDLY_NAME_A
SCARD_ATTR_DEVICE_SYSTEM_NAME = SCARD_ATTR_DEVICE_SYSTEM_NAME_A

CM_IOCTL_GET_FEATURE_REQUEST = part10.CM_IOCTL_GET_FEATURE_REQUEST


class SCARD_IO_REQUEST:
    """dwProtocol and cbPciLength, as winscard's structure."""

    def __init__(self, dwProtocol, cbPciLength=8):
        self.dwProtocol = dwProtocol
        self.cbPciLength = cbPciLength

    def __repr__(self):
        return "SCARD_IO_REQUEST(dwProtocol=%d)" % self.dwProtocol


SCARD_PCI_T0 = SCARD_IO_REQUEST(SCARD_PROTOCOL_T0)
SCARD_PCI_T1 = SCARD_IO_REQUEST(SCARD_PROTOCOL_T1)
SCARD_PCI_RAW = SCARD_IO_REQUEST(SCARD_PROTOCOL_RAW)


def error_name(code):
    for n, c, _ in _ERRORS:
        if c == code:
            return n
    if code == 0:
        return "SCARD_S_SUCCESS"
    return "0x%08X" % code


def error_text(code):
    for n, c, t in _ERRORS:
        if c == code:
            return t
    return "unknown error"


class PCSCError(CcidkitError):
    """A PC/SC failure: ``code`` the SCARD_E_* / SCARD_W_* value, ``name`` its name."""

    def __init__(self, code, message=None, name=None):
        if name is None:
            name = error_name(code)
        CcidkitError.__init__(self, message or error_text(code), code, name)


_FROM_IFD = (
    ("IFD_NO_SUCH_DEVICE", SCARD_E_READER_UNAVAILABLE),
    ("IFD_ICC_NOT_PRESENT", SCARD_W_REMOVED_CARD),
    ("CANCELLED", SCARD_E_CANCELLED),
    ("IFD_PROTOCOL_NOT_SUPPORTED", SCARD_E_PROTO_MISMATCH),
    ("IFD_ERROR_PTS_FAILURE", SCARD_E_PROTO_MISMATCH),
    ("IFD_ERROR_POWER_ACTION", SCARD_W_UNRESPONSIVE_CARD),
    ("IFD_NOT_SUPPORTED", SCARD_E_UNSUPPORTED_FEATURE),
    ("IFD_ERROR_NOT_SUPPORTED", SCARD_E_UNSUPPORTED_FEATURE),
    ("CARD_UNPOWERED", SCARD_W_UNPOWERED_CARD),
    ("IFD_ERROR_INSUFFICIENT_BUFFER", SCARD_E_INSUFFICIENT_BUFFER),
)


def from_reader_error(e):
    """The PCSCError for a driver ReaderError (pcsc-lite's mapping of IFD codes)."""
    for n, c in _FROM_IFD:
        if n == e.name:
            name = "SCARD_E_UNSUPPORTED_FEATURE" if n in ("IFD_NOT_SUPPORTED",
                                                          "IFD_ERROR_NOT_SUPPORTED") else None
            return PCSCError(c, e.message, name)
    return PCSCError(SCARD_E_NOT_TRANSACTED, e.message)


# ---------------------------------------------------------------- the resource manager

class _Entry:
    """One reader known to the manager."""

    def __init__(self, reader, key, index):
        self.reader = reader
        self.key = key
        self.index = index
        self.names = [slot_name(reader.name, index, s) for s in range(len(reader.slots))]


class _SlotState:
    def __init__(self):
        self.mute = False           # power-up at insertion failed
        self.resets = 0             # resets done through handles (SCARD_W_RESET_CARD)
        self.transaction = None     # handle holding the transaction


class _Handle:
    def __init__(self, hcontext, entry, slot, share, protocol, events, resets):
        self.hcontext = hcontext
        self.entry = entry
        self.slot = slot
        self.share = share
        self.protocol = protocol
        self.events = events
        self.resets = resets

    @property
    def name(self):
        return self.entry.names[self.slot]


class _Context:
    def __init__(self, manager, scope):
        self.manager = manager
        self.scope = scope
        self.cancelled = False
        self.handles = []


def _key(t):
    # the bus path and the address: a re-enumeration (replug) is a new reader
    return "%s@%d/%d/%04X:%04X" % (t.bus_path, t.address, t.interface_number, t.vid, t.pid)


class ResourceManager:
    """Readers, cards, handles: pcscd's part, in-process.

    ``source`` is a callable returning the Transports present now (called
    again at every scan: hot plug) or a fixed list. ``reader_options`` go to
    every Reader (quirks, class_order, ...). ``sleep_ms(ms)`` is used to wait
    when no reader can (e.g. none plugged); without it such waits return at
    once as if the time had passed.
    """

    def __init__(self, source=None, log=None, now_ms=None, sleep_ms=None, poll_ms=100,
                 reader_options=None, power_on_insert=True):
        if source is None:
            source = []
        self.source = source
        self.log = log
        self.now_ms = now_ms
        self.sleep_ms = sleep_ms
        self.poll_ms = poll_ms
        self.reader_options = reader_options or {}
        self.power_on_insert = power_on_insert
        self.entries = []
        self.pnp_events = 0
        self.slot_states = {}       # (key, slot) -> _SlotState
        self._failed = {}           # key -> transports that could not be opened

    # -- readers -------------------------------------------------------------------

    def _log(self, line):
        if self.log is not None:
            self.log(line)

    def _transports(self):
        src = self.source
        if callable(src):
            return list(src())
        return list(src)

    def rescan(self):
        """Follow plugs and unplugs; returns True when the reader list changed."""
        current = self._transports()
        keys = {}
        for t in current:
            keys[_key(t)] = t
        changed = False
        for e in list(self.entries):
            if e.key not in keys or e.reader.gone:
                self._remove(e, "unplugged" if e.key not in keys else "gone")
                changed = True
        known = [e.key for e in self.entries]
        for k in sorted(keys):
            if k in known or k in self._failed:
                continue
            t = keys[k]
            try:
                r = Reader(t, log=self.log, now_ms=self.now_ms, **self.reader_options)
                r.open()
            except ReaderError as ex:
                self._log("cannot use reader %s: %s" % (k, ex))
                self._failed[k] = True
                continue
            used = set([e.index for e in self.entries])
            e = _Entry(r, k, lowest_free_index(used))
            self.entries.append(e)
            self.pnp_events += 1
            changed = True
            for s in range(len(r.slots)):
                self.slot_states[(k, s)] = _SlotState()
                if r.slots[s].present and self.power_on_insert:
                    self._power_up(e, s)
        for k in list(self._failed):
            if k not in keys:
                del self._failed[k]
        return changed

    def _remove(self, e, why):
        if not e.reader.gone:
            e.reader._gone(why)
        e.reader.close()
        self.entries.remove(e)
        self.pnp_events += 1
        for s in range(len(e.reader.slots)):
            self.slot_states.pop((e.key, s), None)

    def _state(self, e, slot):
        st = self.slot_states.get((e.key, slot))
        if st is None:
            st = _SlotState()
            self.slot_states[(e.key, slot)] = st
        return st

    def _power_up(self, e, slot):
        st = self._state(e, slot)
        try:
            e.reader.power_on(slot)
            st.mute = False
        except ReaderError as ex:
            st.mute = ex.name != "IFD_ICC_NOT_PRESENT" and ex.name != "IFD_NO_SUCH_DEVICE"
            self._log("%s: power-up failed: %s" % (e.names[slot], ex))

    def poll(self, timeout_ms=0):
        """One round of event collection: hot plug, then card events of every reader."""
        self.rescan()
        n = len(self.entries)
        each = timeout_ms // n if n else 0
        for e in list(self.entries):
            self.poll_reader(e, each)
        if any_gone(self.entries):
            self.rescan()
        if not n and timeout_ms and self.sleep_ms is not None:
            self.sleep_ms(timeout_ms)

    def poll_reader(self, e, timeout_ms=0):
        """Card events of one reader (no hot-plug scan): what a handle needs before I/O."""
        if e.reader.gone:
            return
        for s in e.reader.poll_events(timeout_ms):
            st = self._state(e, s)
            st.mute = False
            st.transaction = None
            if e.reader.slots[s].present and self.power_on_insert and not e.reader.gone:
                self._power_up(e, s)

    def find(self, name):
        for e in self.entries:
            for s in range(len(e.names)):
                if e.names[s] == name:
                    return e, s
        return None, None

    def reader_names(self):
        out = []
        for e in sorted(self.entries, key=lambda x: x.index):
            out.extend(e.names)
        return out

    def handles_on(self, e, slot):
        out = []
        for c in _CONTEXTS.values():
            if c.manager is self:
                for h in c.handles:
                    hd = _HANDLES.get(h)
                    if hd is not None and hd.entry is e and hd.slot == slot:
                        out.append(hd)
        return out

    def reader_state(self, e, slot):
        """dwEventState bits (without CHANGED) and the card event count of a slot."""
        r = e.reader
        s = r.slots[slot]
        st = self._state(e, slot)
        if r.gone:
            return SCARD_STATE_UNKNOWN | SCARD_STATE_UNAVAILABLE, s.events
        if not s.present:
            return SCARD_STATE_EMPTY, s.events
        bits = SCARD_STATE_PRESENT
        if st.mute:
            bits |= SCARD_STATE_MUTE
        elif not s.powered:
            bits |= SCARD_STATE_UNPOWERED
        hs = self.handles_on(e, slot)
        if hs:
            bits |= SCARD_STATE_INUSE
            for h in hs:
                if h.share == SCARD_SHARE_EXCLUSIVE:
                    bits |= SCARD_STATE_EXCLUSIVE
        return bits, s.events


def any_gone(entries):
    for e in entries:
        if e.reader.gone:
            return True
    return False


# ---------------------------------------------------------------- handles registry

_CONTEXTS = {}
_HANDLES = {}
_NEXT = [0x1000]
_DEFAULT = [None]


def _new_handle():
    _NEXT[0] += 1
    return _NEXT[0]


def set_default_manager(manager):
    """The manager SCardEstablishContext uses when none is given."""
    _DEFAULT[0] = manager


def _context(hcontext):
    c = _CONTEXTS.get(hcontext)
    if c is None:
        raise PCSCError(SCARD_E_INVALID_HANDLE, "no context 0x%X" % (hcontext or 0))
    return c


def _handle(hcard):
    h = _HANDLES.get(hcard)
    if h is None:
        raise PCSCError(SCARD_E_INVALID_HANDLE, "no card handle 0x%X" % (hcard or 0))
    return h


def _check_handle(h):
    """pcsc-lite's checks before using a card handle; returns the slot's
    _SlotState (None on a direct connection)."""
    e = h.entry
    mgr = _CONTEXTS[h.hcontext].manager
    # polling the reader's events neither adds nor drops entries (a rescan does)
    known = e in mgr.entries
    if known:
        mgr.poll_reader(e, 0)
    if e.reader.gone or not known:
        raise PCSCError(SCARD_E_READER_UNAVAILABLE, "%s is gone" % h.name)
    s = e.reader.slots[h.slot]
    if h.share == SCARD_SHARE_DIRECT:
        return None
    if s.events != h.events:
        raise PCSCError(SCARD_W_REMOVED_CARD)
    st = mgr._state(e, h.slot)
    if st.resets != h.resets:
        raise PCSCError(SCARD_W_RESET_CARD)
    if not s.powered:
        raise PCSCError(SCARD_W_UNPOWERED_CARD)
    return st


def _check_transaction(h, st=None):
    if st is None:
        st = _CONTEXTS[h.hcontext].manager._state(h.entry, h.slot)
    if st.transaction is not None and st.transaction is not h:
        raise PCSCError(SCARD_E_SHARING_VIOLATION,
                        "another handle holds a transaction on %s" % h.name)


# ---------------------------------------------------------------- the API

def SCardEstablishContext(dwScope=SCARD_SCOPE_USER, manager=None):
    """A new context on ``manager`` (or the default one); returns hContext."""
    if dwScope not in (SCARD_SCOPE_USER, SCARD_SCOPE_TERMINAL, SCARD_SCOPE_SYSTEM):
        raise PCSCError(SCARD_E_INVALID_VALUE, "scope %r" % (dwScope,))
    if manager is None:
        manager = _DEFAULT[0]
    if manager is None:
        raise PCSCError(SCARD_E_NO_SERVICE, "no resource manager: set_default_manager() first")
    h = _new_handle()
    _CONTEXTS[h] = _Context(manager, dwScope)
    manager.rescan()
    return h


def SCardReleaseContext(hContext):
    c = _context(hContext)
    for hc in list(c.handles):
        try:
            SCardDisconnect(hc, SCARD_LEAVE_CARD)
        except PCSCError:
            _HANDLES.pop(hc, None)
    del _CONTEXTS[hContext]


def SCardIsValidContext(hContext):
    _context(hContext)


def SCardListReaders(hContext, mszGroups=None):
    """The reader names, pcsc-lite style (``Name 00 00``, ``Name 01 00``, ...)."""
    c = _context(hContext)
    c.manager.poll(0)
    names = c.manager.reader_names()
    if not names:
        raise PCSCError(SCARD_E_NO_READERS_AVAILABLE)
    return names


def SCardListReaderGroups(hContext):
    _context(hContext)
    return ["SCard$DefaultReaders"]


def _negotiate(mgr, e, slot, preferred):
    r = e.reader
    s = r.slots[slot]
    if not s.powered:
        r.power_on(slot)
        mgr._state(e, slot).mute = False
    if s.protocol is None:
        if preferred & SCARD_PROTOCOL_RAW and not preferred & SCARD_PROTOCOL_ANY:
            raise PCSCError(SCARD_E_PROTO_MISMATCH, "RAW is not supported")
        r.set_protocol(slot, preferred & (PROTOCOL_T0 | PROTOCOL_T1))
    bit = SCARD_PROTOCOL_T0 if s.protocol == 0 else SCARD_PROTOCOL_T1
    if not preferred & bit:
        raise PCSCError(SCARD_E_PROTO_MISMATCH, "card already runs T=%d" % s.protocol)
    return bit


def SCardConnect(hContext, szReader, dwShareMode, dwPreferredProtocols):
    """Returns (hCard, dwActiveProtocol)."""
    c = _context(hContext)
    mgr = c.manager
    mgr.poll(0)
    e, slot = mgr.find(szReader)
    if e is None:
        raise PCSCError(SCARD_E_UNKNOWN_READER, szReader)
    if dwShareMode not in (SCARD_SHARE_EXCLUSIVE, SCARD_SHARE_SHARED, SCARD_SHARE_DIRECT):
        raise PCSCError(SCARD_E_INVALID_VALUE, "share mode %r" % (dwShareMode,))
    others = mgr.handles_on(e, slot)
    for o in others:
        if o.share == SCARD_SHARE_EXCLUSIVE:
            raise PCSCError(SCARD_E_SHARING_VIOLATION)
    if dwShareMode == SCARD_SHARE_EXCLUSIVE and others:
        raise PCSCError(SCARD_E_SHARING_VIOLATION)
    r = e.reader
    s = r.slots[slot]
    proto = SCARD_PROTOCOL_UNDEFINED
    if dwShareMode == SCARD_SHARE_DIRECT and (dwPreferredProtocols == 0 or not s.present):
        proto = SCARD_PROTOCOL_UNDEFINED
    else:
        if not s.present:
            raise PCSCError(SCARD_E_NO_SMARTCARD)
        if not dwPreferredProtocols & (SCARD_PROTOCOL_ANY | SCARD_PROTOCOL_RAW):
            raise PCSCError(SCARD_E_INVALID_VALUE, "no protocol asked for")
        try:
            proto = _negotiate(mgr, e, slot, dwPreferredProtocols)
        except ReaderError as ex:
            if ex.name == "IFD_ICC_NOT_PRESENT":
                raise PCSCError(SCARD_E_NO_SMARTCARD, ex.message)
            raise from_reader_error(ex)
    st = mgr._state(e, slot)
    hc = _new_handle()
    _HANDLES[hc] = _Handle(hContext, e, slot, dwShareMode, proto, s.events, st.resets)
    c.handles.append(hc)
    return hc, proto


def SCardReconnect(hCard, dwShareMode, dwPreferredProtocols, dwInitialization):
    """Returns dwActiveProtocol; clears SCARD_W_RESET_CARD on this handle."""
    h = _handle(hCard)
    mgr = _CONTEXTS[h.hcontext].manager
    e = h.entry
    if e.reader.gone or e not in mgr.entries:
        raise PCSCError(SCARD_E_READER_UNAVAILABLE)
    r = e.reader
    s = r.slots[h.slot]
    if not s.present and dwShareMode != SCARD_SHARE_DIRECT:
        raise PCSCError(SCARD_E_NO_SMARTCARD)
    for o in mgr.handles_on(e, h.slot):
        if o is not h and (o.share == SCARD_SHARE_EXCLUSIVE or
                           dwShareMode == SCARD_SHARE_EXCLUSIVE):
            raise PCSCError(SCARD_E_SHARING_VIOLATION)
    st = mgr._state(e, h.slot)
    try:
        if dwInitialization in (SCARD_RESET_CARD, SCARD_UNPOWER_CARD) and s.present:
            if dwInitialization == SCARD_UNPOWER_CARD:
                r.power_off(h.slot)
                r.power_on(h.slot)
            else:
                r.reset(h.slot, warm=True)
            st.resets += 1
        proto = SCARD_PROTOCOL_UNDEFINED
        if s.present and dwPreferredProtocols:
            proto = _negotiate(mgr, e, h.slot, dwPreferredProtocols)
    except ReaderError as ex:
        raise from_reader_error(ex)
    h.share = dwShareMode
    h.protocol = proto
    h.events = s.events
    h.resets = st.resets
    return proto


def SCardDisconnect(hCard, dwDisposition=SCARD_LEAVE_CARD):
    h = _handle(hCard)
    c = _CONTEXTS.get(h.hcontext)
    mgr = c.manager
    e = h.entry
    st = mgr._state(e, h.slot)
    if st.transaction is h:
        st.transaction = None
    del _HANDLES[hCard]
    if hCard in c.handles:
        c.handles.remove(hCard)
    if e.reader.gone or not e.reader.slots[h.slot].present:
        return
    try:
        if dwDisposition == SCARD_RESET_CARD:
            e.reader.reset(h.slot, warm=True)
            st.resets += 1
        elif dwDisposition in (SCARD_UNPOWER_CARD, SCARD_EJECT_CARD):
            e.reader.power_off(h.slot)
            st.resets += 1
        elif dwDisposition != SCARD_LEAVE_CARD:
            raise PCSCError(SCARD_E_INVALID_VALUE, "disposition %r" % (dwDisposition,))
    except ReaderError as ex:
        raise from_reader_error(ex)


def SCardBeginTransaction(hCard):
    h = _handle(hCard)
    _check_handle(h)
    st = _CONTEXTS[h.hcontext].manager._state(h.entry, h.slot)
    _check_transaction(h)
    st.transaction = h


def SCardEndTransaction(hCard, dwDisposition=SCARD_LEAVE_CARD):
    h = _handle(hCard)
    mgr = _CONTEXTS[h.hcontext].manager
    st = mgr._state(h.entry, h.slot)
    if st.transaction is not h:
        raise PCSCError(SCARD_E_NOT_TRANSACTED)
    st.transaction = None
    _check_handle(h)
    try:
        if dwDisposition == SCARD_RESET_CARD:
            h.entry.reader.reset(h.slot, warm=True)
            st.resets += 1
            h.resets = st.resets
        elif dwDisposition in (SCARD_UNPOWER_CARD, SCARD_EJECT_CARD):
            h.entry.reader.power_off(h.slot)
            st.resets += 1
    except ReaderError as ex:
        raise from_reader_error(ex)


def SCardStatus(hCard):
    """Returns (reader names, dwState, dwProtocol, ATR bytes)."""
    h = _handle(hCard)
    _check_handle(h)
    s = h.entry.reader.slots[h.slot]
    state = 0
    if s.present:
        state |= SCARD_PRESENT
        if s.powered:
            state |= SCARD_POWERED
            state |= SCARD_SPECIFIC if s.protocol is not None else SCARD_NEGOTIABLE
    else:
        state |= SCARD_ABSENT
    return [h.name], state, h.protocol, s.atr or b""


def _pci_protocol(pci):
    if pci is None:
        return None
    if isinstance(pci, int):
        return pci
    return pci.dwProtocol


def SCardTransmit(hCard, pioSendPci, pbSendBuffer):
    """Returns the response APDU (bytes)."""
    h = _handle(hCard)
    _check_transaction(h, _check_handle(h))
    data = bytes(pbSendBuffer)
    if not data:
        raise PCSCError(SCARD_E_INVALID_PARAMETER, "empty command")
    p = _pci_protocol(pioSendPci)
    if h.protocol == SCARD_PROTOCOL_UNDEFINED:
        raise PCSCError(SCARD_E_PROTO_MISMATCH, "no protocol on a direct connection")
    if p is not None and p != h.protocol and p != SCARD_PROTOCOL_ANY:
        raise PCSCError(SCARD_E_PROTO_MISMATCH)
    try:
        return h.entry.reader.transmit(h.slot, data)
    except ReaderError as ex:
        raise from_reader_error(ex)


def SCardControl(hCard, dwControlCode, pbSendBuffer=b""):
    """Returns the control answer (bytes): GET_FEATURE_REQUEST, PIN, NAD, escape."""
    h = _handle(hCard)
    _check_handle(h)
    _check_transaction(h)
    try:
        return part10.control(h.entry.reader, h.slot, dwControlCode, pbSendBuffer)
    except Part10Error as ex:
        if ex.name == "UNSUPPORTED":
            raise PCSCError(SCARD_E_UNSUPPORTED_FEATURE, ex.message,
                            "SCARD_E_UNSUPPORTED_FEATURE")
        raise PCSCError(SCARD_E_INVALID_PARAMETER, ex.message)
    except ReaderError as ex:
        raise from_reader_error(ex)


def _dword(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def SCardGetAttrib(hCard, dwAttrId):
    """Returns the attribute's bytes (strings NUL-terminated, numbers little-endian DWORDs)."""
    h = _handle(hCard)
    _check_handle(h)
    r = h.entry.reader
    t = r.transport
    d = r.descriptor
    s = r.slots[h.slot]
    a = dwAttrId
    if a == SCARD_ATTR_ATR_STRING:
        if not s.atr:
            raise PCSCError(SCARD_E_INSUFFICIENT_BUFFER, "no ATR")
        return bytes(s.atr)
    if a == SCARD_ATTR_VENDOR_NAME:
        return (t.manufacturer or "").encode() + b"\x00"
    if a == SCARD_ATTR_VENDOR_IFD_TYPE:
        return (t.product or "").encode() + b"\x00"
    if a == SCARD_ATTR_VENDOR_IFD_VERSION:
        return _dword((t.bcd_device or 0) << 16)
    if a == SCARD_ATTR_VENDOR_IFD_SERIAL_NO:
        if not t.serial:
            raise PCSCError(SCARD_E_UNSUPPORTED_FEATURE, "no serial number",
                            "SCARD_E_UNSUPPORTED_FEATURE")
        return t.serial.encode()
    if a == SCARD_ATTR_CHANNEL_ID:
        # DWORD 0x00200000 | bus << 8 | address: USB (as libccid answers)
        return _dword(0x00200000 | ((t.bus & 0xFF) << 8) | (t.address & 0xFF))
    if a == SCARD_ATTR_MAXINPUT:
        return _dword(r.max_message_length - 10)
    if a == SCARD_ATTR_ICC_PRESENCE:
        return bytes((2 if s.present else 0,))
    if a == SCARD_ATTR_ICC_INTERFACE_STATUS:
        return bytes((1 if s.powered else 0,))
    if a == SCARD_ATTR_CURRENT_PROTOCOL_TYPE:
        return _dword(h.protocol)
    if a == SCARD_ATTR_ASYNC_PROTOCOL_TYPES:
        return _dword(d.dwProtocols)
    if a == SCARD_ATTR_DEFAULT_CLK:
        return _dword(d.dwDefaultClock)
    if a == SCARD_ATTR_MAX_CLK:
        return _dword(d.dwMaximumClock)
    if a == SCARD_ATTR_CURRENT_CLK:
        return _dword(d.dwDefaultClock)
    if a == SCARD_ATTR_DEFAULT_DATA_RATE:
        return _dword(d.dwDataRate)
    if a == SCARD_ATTR_MAX_DATA_RATE:
        return _dword(d.dwMaxDataRate)
    if a == SCARD_ATTR_MAX_IFSD:
        return _dword(d.dwMaxIFSD)
    if a == SCARD_ATTR_CURRENT_F:
        return _dword(s.fi)
    if a == SCARD_ATTR_CURRENT_D:
        return _dword(s.di)
    if a == SCARD_ATTR_CURRENT_IFSC and s.t1 is not None:
        return _dword(s.t1.ifsc)
    if a == SCARD_ATTR_CURRENT_IFSD and s.t1 is not None:
        return _dword(s.t1.ifsd)
    if a == SCARD_ATTR_DEVICE_FRIENDLY_NAME_A or a == SCARD_ATTR_DEVICE_SYSTEM_NAME_A:
        return h.name.encode() + b"\x00"
    if a == SCARD_ATTR_DEVICE_IN_USE:
        return _dword(1)
    raise PCSCError(SCARD_E_UNSUPPORTED_FEATURE, "attribute 0x%08X" % a,
                    "SCARD_E_UNSUPPORTED_FEATURE")


def SCardSetAttrib(hCard, dwAttrId, pbAttr):
    _check_handle(_handle(hCard))
    raise PCSCError(SCARD_E_UNSUPPORTED_FEATURE, "attribute 0x%08X is read-only" % dwAttrId,
                    "SCARD_E_UNSUPPORTED_FEATURE")


def SCardCancel(hContext):
    """Make a waiting SCardGetStatusChange of this context return SCARD_E_CANCELLED."""
    _context(hContext).cancelled = True


def _current(rs):
    if isinstance(rs, (tuple, list)):
        name = rs[0]
        cur = rs[1] if len(rs) > 1 else 0
        return name, cur
    return rs.szReader, rs.dwCurrentState


def _evaluate(mgr, name, cur):
    """(dwEventState, ATR, changed) for one reader state."""
    if cur & SCARD_STATE_IGNORE:
        return SCARD_STATE_IGNORE, b"", False
    if name == PNP_NOTIFICATION:
        count = mgr.pnp_events & 0xFFFF
        ev = count << 16
        if (cur >> 16) & 0xFFFF != count:
            return ev | SCARD_STATE_CHANGED, b"", True
        return ev, b"", False
    e, slot = mgr.find(name)
    if e is None:
        ev = SCARD_STATE_UNKNOWN | SCARD_STATE_UNAVAILABLE
        if cur & SCARD_STATE_UNKNOWN:
            return ev, b"", False
        return ev | SCARD_STATE_CHANGED, b"", True
    bits, events = mgr.reader_state(e, slot)
    atr = e.reader.slots[slot].atr or b""
    ev = bits | ((events & 0xFFFF) << 16)
    mask = (SCARD_STATE_UNKNOWN | SCARD_STATE_UNAVAILABLE | SCARD_STATE_EMPTY |
            SCARD_STATE_PRESENT | SCARD_STATE_EXCLUSIVE | SCARD_STATE_INUSE |
            SCARD_STATE_MUTE | SCARD_STATE_UNPOWERED)
    changed = cur == SCARD_STATE_UNAWARE or (cur & mask) != (bits & mask) or \
        ((cur >> 16) & 0xFFFF) != (events & 0xFFFF)
    if changed:
        ev |= SCARD_STATE_CHANGED
    return ev, atr, changed


def SCardGetStatusChange(hContext, dwTimeout, rgReaderStates):
    """Wait until a reader state differs from the caller's dwCurrentState.

    ``rgReaderStates``: list of (szReader, dwCurrentState[, ATR]). Returns a
    list of (szReader, dwEventState, ATR) in the same order; the upper 16 bits
    of dwEventState count the card events of the reader (pcsc-lite), and for
    ``\\\\?PnP?\\Notification`` the reader events. SCARD_E_TIMEOUT when nothing
    changed within dwTimeout ms (INFINITE: until a change or SCardCancel).
    """
    c = _context(hContext)
    mgr = c.manager
    c.cancelled = False
    items = [_current(rs) for rs in rgReaderStates]
    if not items:
        raise PCSCError(SCARD_E_INVALID_VALUE, "no reader state")
    start = mgr.now_ms() if mgr.now_ms is not None else 0
    waited = 0
    first = True
    while True:
        mgr.poll(0 if first else _step(mgr, dwTimeout, waited))
        if not first:
            if mgr.now_ms is not None:
                waited = mgr.now_ms() - start
            else:
                waited += _step(mgr, dwTimeout, waited)
        first = False
        out = []
        any_changed = False
        for name, cur in items:
            ev, atr, ch = _evaluate(mgr, name, cur)
            any_changed = any_changed or ch
            out.append((name, ev, atr))
        if any_changed:
            return out
        if c.cancelled:
            c.cancelled = False
            raise PCSCError(SCARD_E_CANCELLED)
        if dwTimeout != INFINITE and waited >= dwTimeout:
            raise PCSCError(SCARD_E_TIMEOUT)


def _step(mgr, timeout, waited):
    if timeout == INFINITE:
        return mgr.poll_ms
    left = timeout - waited
    if left < 0:
        left = 0
    return left if left < mgr.poll_ms else mgr.poll_ms


def SCardGetErrorMessage(code):
    return error_text(code)
