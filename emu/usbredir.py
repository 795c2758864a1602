"""usbredir: an emulated CCID reader presented to QEMU's ``-device usb-redir``.

The spice usbredir protocol (protocol description 0.7) joins a "usb-host"
side, which owns a USB device, to a "usb-guest" side, QEMU, which shows it
to the guest. Everything is little-endian and packed. Every message has a
header ``u32 type, u32 length (after the header), id``: the id is a u32
(12-byte header) until both sides have sent their hello, then a u64
(16-byte header) when both announced the ``64bits_ids`` capability. A
type-specific header follows, then data for the data packets.

This module has two parts:

- the codec, sans-I/O: ``Codec(role)`` keeps the capabilities of both sides,
  ``feed(bytes) -> [Packet]`` decodes what the peer sent, ``encode(Packet)``
  builds what we send. Malformed or oversized input raises ``UsbredirError``
  (names below) and leaves the decoder failed: a byte stream cannot be
  resynchronised.
- ``UsbredirServer(reader)``: the usb-host side for one
  ``ccidkit.emu.reader.EmulatedReader``. It listens on a unix socket in a
  private (0700) directory, or on 127.0.0.1 with TCP_NODELAY; QEMU connects
  as a client::

      -chardev socket,id=redir0,path=SOCK,reconnect=1
      -device usb-redir,id=redir0,chardev=redir0,bus=xhci.0,port=1

  (``qemu_options(i)`` gives both). A thread moves the traffic between QEMU
  and the reader's ``control`` / ``bulk_out`` / ``bulk_in`` /
  ``interrupt_in``. The reader runs in virtual time: a bulk-IN request stays
  pending until the reader has an answer queued, then it is answered at
  once, cut at the requested length (more would be babble). Interrupt
  packets are pushed while the guest has interrupt receiving started; a
  NotifySlotChange raised while it is stopped stays queued in the reader.
  ``unplug()`` / ``plug()`` detach and re-attach the device
  (device_disconnect, then interface_info, ep_info and device_connect);
  ``insert_card`` / ``remove_card`` change the cards while QEMU runs.

Capabilities: QEMU's xHCI needs ``ep_info_max_packet_size``, ``64bits_ids``
and ``32bits_bulk_length``; ``connect_device_version``, ``filter`` and
``device_disconnect_ack`` are announced too. A capability is in force when
both sides announced it (it then changes the layout of the packets it
names).
"""

import collections
import os
import select
import socket
import struct
import threading
import time

from ccidkit.core import ccid as C
from ccidkit.core.errors import CcidkitError
from ccidkit.emu import reader as R
from ccidkit.emu.sockets import listen_private

# -- message types (usbredirproto.h) -------------------------------------------
HELLO = 0
DEVICE_CONNECT = 1
DEVICE_DISCONNECT = 2
RESET = 3
INTERFACE_INFO = 4
EP_INFO = 5
SET_CONFIGURATION = 6
GET_CONFIGURATION = 7
CONFIGURATION_STATUS = 8
SET_ALT_SETTING = 9
GET_ALT_SETTING = 10
ALT_SETTING_STATUS = 11
START_ISO_STREAM = 12
STOP_ISO_STREAM = 13
ISO_STREAM_STATUS = 14
START_INTERRUPT_RECEIVING = 15
STOP_INTERRUPT_RECEIVING = 16
INTERRUPT_RECEIVING_STATUS = 17
CANCEL_DATA_PACKET = 21
FILTER_REJECT = 22
FILTER_FILTER = 23
DEVICE_DISCONNECT_ACK = 24
CONTROL_PACKET = 100
BULK_PACKET = 101
ISO_PACKET = 102
INTERRUPT_PACKET = 103

# -- capabilities (bit numbers in the hello's first u32) ------------------------
CAP_BULK_STREAMS = 0
CAP_CONNECT_DEVICE_VERSION = 1
CAP_FILTER = 2
CAP_DEVICE_DISCONNECT_ACK = 3
CAP_EP_INFO_MAX_PACKET_SIZE = 4
CAP_64BITS_IDS = 5
CAP_32BITS_BULK_LENGTH = 6
CAP_BULK_RECEIVING = 7

CAP_NAMES = {
    CAP_BULK_STREAMS: "bulk_streams", CAP_CONNECT_DEVICE_VERSION: "connect_device_version",
    CAP_FILTER: "filter", CAP_DEVICE_DISCONNECT_ACK: "device_disconnect_ack",
    CAP_EP_INFO_MAX_PACKET_SIZE: "ep_info_max_packet_size", CAP_64BITS_IDS: "64bits_ids",
    CAP_32BITS_BULK_LENGTH: "32bits_bulk_length", CAP_BULK_RECEIVING: "bulk_receiving",
}
# What this side announces, and what QEMU's xHCI needs of the usb-host side.
OUR_CAPS = ((1 << CAP_CONNECT_DEVICE_VERSION) | (1 << CAP_FILTER)
            | (1 << CAP_DEVICE_DISCONNECT_ACK) | (1 << CAP_EP_INFO_MAX_PACKET_SIZE)
            | (1 << CAP_64BITS_IDS) | (1 << CAP_32BITS_BULK_LENGTH))
XHCI_CAPS = ((1 << CAP_EP_INFO_MAX_PACKET_SIZE) | (1 << CAP_64BITS_IDS)
             | (1 << CAP_32BITS_BULK_LENGTH))

# -- status codes, speeds, endpoint types ------------------------------------------
STATUS_SUCCESS = 0
STATUS_CANCELLED = 1
STATUS_INVAL = 2
STATUS_IOERROR = 3
STATUS_STALL = 4
STATUS_TIMEOUT = 5
STATUS_BABBLE = 6
STATUS_NAMES = {0: "success", 1: "cancelled", 2: "inval", 3: "ioerror", 4: "stall",
                5: "timeout", 6: "babble"}

SPEED_LOW = 0
SPEED_FULL = 1
SPEED_HIGH = 2
SPEED_SUPER = 3

TYPE_CONTROL = 0
TYPE_ISO = 1
TYPE_BULK = 2
TYPE_INTERRUPT = 3
TYPE_INVALID = 255

VERSION_LENGTH = 64
# Longest message body the decoder accepts: a bulk transfer of 1 MiB and its
# header. An emulated reader's longest message is 10 + 65544 bytes.
MAX_LENGTH = (1 << 20) + 64
MAX_CAP_WORDS = 64

HEADER32 = struct.Struct("<III")
HEADER64 = struct.Struct("<IIQ")

# Type-specific headers: [(field, struct code, capability or None)]. A field
# with a capability is present only when both sides announced it.
_LAYOUTS = {
    DEVICE_CONNECT: [("speed", "B", None), ("device_class", "B", None),
                     ("device_subclass", "B", None), ("device_protocol", "B", None),
                     ("vendor_id", "H", None), ("product_id", "H", None),
                     ("device_version_bcd", "H", CAP_CONNECT_DEVICE_VERSION)],
    DEVICE_DISCONNECT: [],
    RESET: [],
    INTERFACE_INFO: [("interface_count", "I", None), ("interface", "32s", None),
                     ("interface_class", "32s", None), ("interface_subclass", "32s", None),
                     ("interface_protocol", "32s", None)],
    EP_INFO: [("ep_type", "32s", None), ("interval", "32s", None), ("interface", "32s", None),
              ("max_packet_size", "32H", CAP_EP_INFO_MAX_PACKET_SIZE)],
    SET_CONFIGURATION: [("configuration", "B", None)],
    GET_CONFIGURATION: [],
    CONFIGURATION_STATUS: [("status", "B", None), ("configuration", "B", None)],
    SET_ALT_SETTING: [("interface", "B", None), ("alt", "B", None)],
    GET_ALT_SETTING: [("interface", "B", None)],
    ALT_SETTING_STATUS: [("status", "B", None), ("interface", "B", None), ("alt", "B", None)],
    START_ISO_STREAM: [("endpoint", "B", None), ("pkts_per_urb", "B", None),
                       ("no_urbs", "B", None)],
    STOP_ISO_STREAM: [("endpoint", "B", None)],
    ISO_STREAM_STATUS: [("status", "B", None), ("endpoint", "B", None)],
    START_INTERRUPT_RECEIVING: [("endpoint", "B", None)],
    STOP_INTERRUPT_RECEIVING: [("endpoint", "B", None)],
    INTERRUPT_RECEIVING_STATUS: [("status", "B", None), ("endpoint", "B", None)],
    CANCEL_DATA_PACKET: [],
    FILTER_REJECT: [],
    FILTER_FILTER: [],
    DEVICE_DISCONNECT_ACK: [],
    CONTROL_PACKET: [("endpoint", "B", None), ("request", "B", None),
                     ("requesttype", "B", None), ("status", "B", None), ("value", "H", None),
                     ("index", "H", None), ("length", "H", None)],
    BULK_PACKET: [("endpoint", "B", None), ("status", "B", None), ("length", "H", None),
                  ("stream_id", "I", None), ("length_high", "H", CAP_32BITS_BULK_LENGTH)],
    ISO_PACKET: [("endpoint", "B", None), ("status", "B", None), ("length", "H", None)],
    INTERRUPT_PACKET: [("endpoint", "B", None), ("status", "B", None), ("length", "H", None)],
}

TYPE_NAMES = {
    HELLO: "hello", DEVICE_CONNECT: "device_connect", DEVICE_DISCONNECT: "device_disconnect",
    RESET: "reset", INTERFACE_INFO: "interface_info", EP_INFO: "ep_info",
    SET_CONFIGURATION: "set_configuration", GET_CONFIGURATION: "get_configuration",
    CONFIGURATION_STATUS: "configuration_status", SET_ALT_SETTING: "set_alt_setting",
    GET_ALT_SETTING: "get_alt_setting", ALT_SETTING_STATUS: "alt_setting_status",
    START_ISO_STREAM: "start_iso_stream", STOP_ISO_STREAM: "stop_iso_stream",
    ISO_STREAM_STATUS: "iso_stream_status",
    START_INTERRUPT_RECEIVING: "start_interrupt_receiving",
    STOP_INTERRUPT_RECEIVING: "stop_interrupt_receiving",
    INTERRUPT_RECEIVING_STATUS: "interrupt_receiving_status",
    CANCEL_DATA_PACKET: "cancel_data_packet", FILTER_REJECT: "filter_reject",
    FILTER_FILTER: "filter_filter", DEVICE_DISCONNECT_ACK: "device_disconnect_ack",
    CONTROL_PACKET: "control_packet", BULK_PACKET: "bulk_packet", ISO_PACKET: "iso_packet",
    INTERRUPT_PACKET: "interrupt_packet",
}

# Data packets: the type header's endpoint says which side carries data
# (OUT data goes guest -> host, IN data host -> guest).
_DATA_TYPES = (CONTROL_PACKET, BULK_PACKET, ISO_PACKET, INTERRUPT_PACKET)
# Types a usb-host side sends (the rest come from the usb-guest side).
_FROM_HOST = frozenset((DEVICE_CONNECT, DEVICE_DISCONNECT, INTERFACE_INFO, EP_INFO,
                        CONFIGURATION_STATUS, ALT_SETTING_STATUS, ISO_STREAM_STATUS,
                        INTERRUPT_RECEIVING_STATUS, FILTER_REJECT))
_FROM_GUEST = frozenset((RESET, SET_CONFIGURATION, GET_CONFIGURATION, SET_ALT_SETTING,
                         GET_ALT_SETTING, START_ISO_STREAM, STOP_ISO_STREAM,
                         START_INTERRUPT_RECEIVING, STOP_INTERRUPT_RECEIVING,
                         CANCEL_DATA_PACKET, DEVICE_DISCONNECT_ACK))


class UsbredirError(CcidkitError):
    """Malformed usbredir traffic or a misuse of the codec / server.

    ``name``: USBREDIR_TOO_LONG (a length over the limit), USBREDIR_UNKNOWN_TYPE,
    USBREDIR_BAD_LENGTH (a body whose size does not fit its type),
    USBREDIR_BAD_HELLO, USBREDIR_NO_HELLO (a packet before the hello),
    USBREDIR_BAD_FIELD (a value out of range when encoding),
    USBREDIR_WRONG_SIDE (a packet this side never receives),
    USBREDIR_NOT_CONNECTED; ``code`` the message type involved (or None).
    """


def ep_index(endpoint):
    """The ep_info index of an endpoint address: IN endpoints at 16..31."""
    return ((endpoint & 0x80) >> 3) | (endpoint & 0x0F)


def _has(caps, cap):
    return bool(caps >> cap & 1)


class Packet:
    """One usbredir message: ``type``, ``id``, the type header's fields (as
    attributes / ``fields``; ep_info's ``type`` array is ``ep_type``), and ``data``. For hello: ``version`` (str) and
    ``caps`` (int, bit n = capability n). A bulk packet's ``length`` is the
    whole 32-bit length (the codec splits it into length / length_high)."""

    def __init__(self, type_, id=0, data=b"", **fields):
        self.type = type_
        self.id = id
        self.data = bytes(data)
        self.fields = fields

    def __getattr__(self, name):
        fields = self.__dict__.get("fields")
        if fields is not None and name in fields:
            return fields[name]
        raise AttributeError(name)

    @property
    def name(self):
        return TYPE_NAMES.get(self.type, "type%d" % self.type)

    def __eq__(self, other):
        return (isinstance(other, Packet) and self.type == other.type and self.id == other.id
                and self.data == other.data and self.fields == other.fields)

    def __repr__(self):
        items = ["%s=%r" % (k, self.fields[k]) for k in sorted(self.fields)]
        if self.data:
            # bulk data is CCID traffic that may carry a PIN: its length only
            items.append("data=%d bytes" % len(self.data))
        return "Packet(%s, id=%d%s)" % (self.name, self.id,
                                        "".join(", " + i for i in items))


def _layout(type_, caps):
    """(struct, [(field, struct code)]) of a type header with the capabilities in force."""
    fmt = "<"
    fields = []
    for name, code, cap in _LAYOUTS[type_]:
        if cap is not None and not _has(caps, cap):
            continue
        fmt += code
        fields.append((name, code))
    return struct.Struct(fmt), fields


class Codec:
    """One side of a usbredir connection (sans-I/O).

    ``role`` "host" (we own the device; QEMU is the peer) or "guest" (the
    peer owns it: what tests use to stand in for QEMU). ``feed`` decodes the
    peer's bytes; ``encode`` builds ours. Until the peer's hello is decoded
    only a hello may be encoded.
    """

    def __init__(self, role="host", caps=OUR_CAPS, version="ccidkit usbredir",
                 max_length=MAX_LENGTH):
        if role not in ("host", "guest"):
            raise UsbredirError("role is host or guest, not %r" % (role,), None, "USBREDIR_BAD_FIELD")
        self.role = role
        self.caps = caps
        self.version = version
        self.max_length = max_length
        self.peer_caps = None
        self.peer_version = None
        self._buf = bytearray()
        self._failed = None

    # -- state ---------------------------------------------------------------------
    @property
    def hello_received(self):
        return self.peer_caps is not None

    def in_force(self, cap):
        """True when both sides announced capability ``cap``."""
        return self.peer_caps is not None and _has(self.caps, cap) and _has(self.peer_caps, cap)

    @property
    def common_caps(self):
        return 0 if self.peer_caps is None else self.caps & self.peer_caps

    @property
    def ids64(self):
        return self.in_force(CAP_64BITS_IDS)

    @property
    def pending(self):
        """Bytes buffered towards the next message."""
        return len(self._buf)

    # -- decoding ----------------------------------------------------------------------
    def _fail(self, message, type_, name):
        self._failed = UsbredirError(message, type_, name)
        raise self._failed

    def feed(self, data):
        """The complete packets in ``data`` (and what came before)."""
        if self._failed is not None:
            raise self._failed
        self._buf += data
        out = []
        while True:
            header = HEADER64 if self.ids64 else HEADER32
            if len(self._buf) < header.size:
                return out
            type_, length, id_ = header.unpack_from(self._buf, 0)
            if type_ != HELLO and type_ not in _LAYOUTS:
                self._fail("unknown message type %d" % type_, type_, "USBREDIR_UNKNOWN_TYPE")
            if length > self.max_length:
                self._fail("%s announces %d bytes (limit %d)" % (
                    TYPE_NAMES[type_], length, self.max_length), type_, "USBREDIR_TOO_LONG")
            if self.peer_caps is None and type_ != HELLO:
                self._fail("%s before the hello" % TYPE_NAMES[type_], type_, "USBREDIR_NO_HELLO")
            if len(self._buf) < header.size + length:
                return out
            body = bytes(self._buf[header.size:header.size + length])
            del self._buf[:header.size + length]
            out.append(self._decode_body(type_, id_, body))

    def _decode_body(self, type_, id_, body):
        if type_ == HELLO:
            if self.peer_caps is not None:
                self._fail("a second hello", type_, "USBREDIR_BAD_HELLO")
            extra = len(body) - VERSION_LENGTH
            if extra < 0 or extra % 4 or extra > 4 * MAX_CAP_WORDS:
                self._fail("hello of %d bytes" % len(body), type_, "USBREDIR_BAD_HELLO")
            version = body[:VERSION_LENGTH].split(b"\0", 1)[0].decode("ascii", "replace")
            caps = 0
            for k in range(extra // 4):
                (word,) = struct.unpack_from("<I", body, VERSION_LENGTH + 4 * k)
                caps |= word << (32 * k)
            self.peer_caps = caps
            self.peer_version = version
            return Packet(HELLO, id_, version=version, caps=caps)
        expected = _FROM_HOST if self.role == "guest" else _FROM_GUEST
        if type_ not in expected and type_ not in _DATA_TYPES and type_ != FILTER_FILTER:
            self._fail("%s never comes from the usb-%s side" % (
                TYPE_NAMES[type_], "host" if self.role == "guest" else "guest"),
                type_, "USBREDIR_WRONG_SIDE")
        st, layout = _layout(type_, self.common_caps)
        if len(body) < st.size:
            self._fail("%s of %d bytes (header %d)" % (TYPE_NAMES[type_], len(body), st.size),
                       type_, "USBREDIR_BAD_LENGTH")
        values = st.unpack_from(body, 0)
        fields = {}
        pos = 0
        for name, code in layout:
            if code == "32H":
                fields[name] = tuple(values[pos:pos + 32])
                pos += 32
            else:
                fields[name] = values[pos]
                pos += 1
        data = body[st.size:]
        if type_ == FILTER_FILTER:
            if len(data) > 4096:
                self._fail("filter of %d bytes" % len(data), type_, "USBREDIR_TOO_LONG")
            return Packet(type_, id_, data)
        if type_ in _DATA_TYPES:
            if type_ == BULK_PACKET:
                high = fields.pop("length_high", 0)
                fields["length"] |= high << 16
            # data travels OUT from the guest, IN from the host
            carries = bool(fields["endpoint"] & 0x80) == (self.role == "guest")
            if carries and len(data) != fields["length"]:
                self._fail("%s: %d data bytes, header says %d" % (
                    TYPE_NAMES[type_], len(data), fields["length"]), type_,
                    "USBREDIR_BAD_LENGTH")
            if not carries and data:
                self._fail("%s: unexpected data for endpoint %02X" % (
                    TYPE_NAMES[type_], fields["endpoint"]), type_, "USBREDIR_BAD_LENGTH")
        elif data:
            self._fail("%s of %d bytes (expected %d)" % (TYPE_NAMES[type_], len(body), st.size),
                       type_, "USBREDIR_BAD_LENGTH")
        return Packet(type_, id_, data, **fields)

    # -- encoding ----------------------------------------------------------------------
    def encode(self, packet):
        """The bytes of ``packet`` for the peer."""
        type_ = packet.type
        if type_ == HELLO:
            raw = self.version.encode("ascii", "replace")[:VERSION_LENGTH - 1]
            body = raw + bytes(VERSION_LENGTH - len(raw)) + struct.pack("<I", self.caps & 0xFFFFFFFF)
            return HEADER32.pack(HELLO, len(body), packet.id & 0xFFFFFFFF) + body
        if type_ not in _LAYOUTS:
            raise UsbredirError("unknown message type %r" % (type_,), type_,
                                "USBREDIR_UNKNOWN_TYPE")
        if self.peer_caps is None:
            raise UsbredirError("%s before the peer's hello" % TYPE_NAMES[type_], type_,
                                "USBREDIR_NO_HELLO")
        st, layout = _layout(type_, self.common_caps)
        names = [name for name, _code in layout]
        fields = dict(packet.fields)
        if type_ == BULK_PACKET:
            length = fields.get("length", 0)
            limit = 0xFFFFFFFF if "length_high" in names else 0xFFFF
            if not 0 <= length <= limit:
                raise UsbredirError("bulk length %d beyond %d" % (length, limit), type_,
                                    "USBREDIR_BAD_FIELD")
            fields["length"] = length & 0xFFFF
            fields["length_high"] = length >> 16
        values = []
        for name, code in layout:
            v = fields.get(name, bytes(32) if code == "32s" else (0,) * 32 if code == "32H" else 0)
            if code == "32H":
                if len(v) != 32:
                    raise UsbredirError("%s: %s needs 32 values" % (TYPE_NAMES[type_], name),
                                        type_, "USBREDIR_BAD_FIELD")
                values.extend(v)
            else:
                values.append(v)
        try:
            head = st.pack(*values)
        except struct.error as e:
            raise UsbredirError("%s: %s" % (TYPE_NAMES[type_], e), type_, "USBREDIR_BAD_FIELD")
        body = head + packet.data
        if len(body) > self.max_length:
            raise UsbredirError("%s of %d bytes (limit %d)" % (TYPE_NAMES[type_], len(body),
                                                             self.max_length),
                                type_, "USBREDIR_TOO_LONG")
        if self.ids64:
            return HEADER64.pack(type_, len(body), packet.id & 0xFFFFFFFFFFFFFFFF) + body
        return HEADER32.pack(type_, len(body), packet.id & 0xFFFFFFFF) + body


# ---------------------------------------------------------------------------------
# What an EmulatedReader looks like on the wire

def _descriptors(blob):
    """(bDescriptorType, bytes) of each descriptor in a configuration descriptor."""
    pos = 0
    out = []
    while pos + 2 <= len(blob) and blob[pos] >= 2:
        out.append((blob[pos + 1], bytes(blob[pos:pos + blob[pos]])))
        pos += blob[pos]
    return out


def device_packets(reader):
    """interface_info, ep_info and device_connect (in that order), read off the
    reader's own device and configuration descriptors (USB 2.0 §9.6)."""
    interfaces = []
    types = bytearray([TYPE_INVALID] * 32)
    intervals = bytearray(32)
    ifaces = bytearray(32)
    mps = [0] * 32
    types[0] = types[16] = TYPE_CONTROL
    mps[0] = mps[16] = reader.device_descriptor[7]          # bMaxPacketSize0
    current = 0
    for dtype, d in _descriptors(reader.config_descriptor):
        if dtype == 4 and len(d) >= 9:                      # interface (§9.6.5)
            current = d[2]
            interfaces.append((d[2], d[5], d[6], d[7]))
        elif dtype == 5 and len(d) >= 7:                    # endpoint (§9.6.6)
            i = ep_index(d[2])
            types[i] = d[3] & 0x03
            intervals[i] = d[6]
            ifaces[i] = current
            mps[i] = struct.unpack_from("<H", d, 4)[0] & 0x7FF

    def column(k):
        return bytes(x[k] for x in interfaces) + bytes(32 - len(interfaces))
    info = Packet(INTERFACE_INFO, 0, interface_count=len(interfaces), interface=column(0),
                  interface_class=column(1), interface_subclass=column(2),
                  interface_protocol=column(3))
    ep_info = Packet(EP_INFO, 0, ep_type=bytes(types), interval=bytes(intervals),
                     interface=bytes(ifaces), max_packet_size=tuple(mps))
    dev = reader.device_descriptor
    vid, pid, bcd = struct.unpack_from("<HHH", dev, 8)
    connect = Packet(DEVICE_CONNECT, 0, speed=SPEED_FULL, device_class=dev[4],
                     device_subclass=dev[5], device_protocol=dev[6], vendor_id=vid,
                     product_id=pid, device_version_bcd=bcd)
    return [info, ep_info, connect]


# ---------------------------------------------------------------------------------
# The server

# Real seconds between looks at the reader's interrupt queue while the guest
# listens, and how long a re-attach waits for device_disconnect_ack.
INTERRUPT_POLL_S = 0.02
DISCONNECT_ACK_WAIT_S = 2.0
SELECT_S = 0.05


class UsbredirServer:
    """The usb-host side of usbredir for one EmulatedReader (see the module
    documentation). Thread-safe entry points: ``start``, ``stop``,
    ``insert_card``, ``remove_card``, ``unplug``, ``plug``, ``wait_*``.

    ``trace`` (a list) records one line per message, data shown by length
    only (no card data, no PIN in logs); ``errors`` the failures seen;
    ``counts`` per message name.
    """

    def __init__(self, reader, unix=True, attached=True, log=None,
                 version="ccidkit usbredir"):
        self.reader = reader
        self.unix = unix
        self.want_attached = attached
        self.log = log
        self.version = version
        self.trace = []
        self.errors = []
        self.counts = collections.Counter()
        self.connections = 0
        self.path = None
        self.port = None
        self._dir = None
        self._listener = None
        self._thread = None
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._commands = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        # per-connection state (server thread only, read under _cond by waiters)
        self._conn = None
        self._codec = None
        self.state = "idle"            # idle, hello, attached, detaching, detached
        self.configuration = 0
        self._pending_in = []          # [(id, endpoint, length)] bulk-IN requests
        self._intr_started = False
        self._intr_queue = collections.deque()   # bridge-made interrupt messages
        self._next_id = 1
        self._ack_deadline = None
        self._next_intr_poll = 0.0

    # -- life cycle ----------------------------------------------------------------------
    def start(self):
        listener = listen_private("ccidkit-usbredir-", "usbredir.sock", self.unix)
        self._dir, self.path, self.port = listener.directory, listener.path, listener.port
        self._listener = listener.socket
        self._thread = threading.Thread(target=self._serve, name="usbredir", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)
        if self._dir:
            os.rmdir(self._dir)
            self._dir = None
        for s in (self._wake_r, self._wake_w):
            s.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- QEMU options ----------------------------------------------------------------------
    def chardev_arg(self, chardev_id="redir0"):
        if self.unix:
            return "socket,id=%s,path=%s,reconnect=1" % (chardev_id, self.path)
        return "socket,id=%s,host=127.0.0.1,port=%d,nodelay=on,reconnect=1" % (chardev_id,
                                                                               self.port)

    @staticmethod
    def device_arg(chardev_id="redir0", device_id=None, bus="xhci.0", port=1):
        """``usb-redir`` pinned to a root port (the guest's device path stays the same)."""
        return "usb-redir,id=%s,chardev=%s,bus=%s,port=%d" % (device_id or chardev_id,
                                                             chardev_id, bus, port)

    def qemu_options(self, index=0):
        """chardev and device ``redir<i>`` on root port i+1 (the pytest plugin's ``attach``)."""
        cid = "redir%d" % index
        return {"chardevs": [self.chardev_arg(cid)],
                "devices": [self.device_arg(cid, port=index + 1)]}

    # -- waiting -----------------------------------------------------------------------------
    def _wait(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def wait_connected(self, timeout=30.0):
        """QEMU connected and hellos exchanged (bounded); False on timeout."""
        return self._wait(lambda: self._codec is not None and self._codec.hello_received,
                          timeout)

    def wait_configured(self, timeout=30.0):
        """The guest set a configuration (enumeration done); False on timeout."""
        return self._wait(lambda: self.state == "attached" and self.configuration != 0, timeout)

    def wait_state(self, state, timeout=30.0):
        return self._wait(lambda: self.state == state, timeout)

    # -- events from other threads -----------------------------------------------------------
    def _wake(self):
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _call(self, fn, *args):
        """Run ``fn`` on the server thread (or now, when it is not running)."""
        if self._thread is None or not self._thread.is_alive():
            return fn(*args)
        done = threading.Event()
        box = []

        def job():
            try:
                box.append((True, fn(*args)))
            except CcidkitError as e:
                box.append((False, e))
            done.set()
        self._commands.append(job)
        self._wake()
        if not done.wait(10):
            raise UsbredirError("the usbredir thread did not answer", None,
                                "USBREDIR_NOT_CONNECTED")
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def insert_card(self, slot, card):
        """A card enters ``slot`` (NotifySlotChange to the guest when it listens)."""
        return self._call(self._do_insert, slot, card)

    def remove_card(self, slot):
        return self._call(self._do_remove, slot)

    def unplug(self):
        """The reader leaves the bus: device_disconnect to QEMU."""
        return self._call(self._do_unplug)

    def plug(self):
        """The reader comes back: a new enumeration in the guest."""
        return self._call(self._do_plug)

    def _do_insert(self, slot, card):
        self.reader.insert_card(slot, card)
        self._next_intr_poll = 0.0

    def _do_remove(self, slot):
        self.reader.remove_card(slot)
        self._next_intr_poll = 0.0

    def _do_unplug(self):
        self.want_attached = False
        if not self.reader.gone:
            self.reader.unplug()
        self._detach()

    def _do_plug(self):
        self.want_attached = True
        if self.reader.gone:
            self.reader.plug()
        self._maybe_attach()

    # -- the thread --------------------------------------------------------------------------
    def _note(self, direction, packet):
        self.counts[direction + packet.name] += 1
        items = []
        for k in ("endpoint", "status", "length", "request", "requesttype", "value", "index",
                  "configuration", "interface", "alt", "speed", "vendor_id", "product_id"):
            if isinstance(packet.fields.get(k), int):
                items.append("%s=%s" % (k, packet.fields[k]))
        if packet.type == HELLO:
            items.append("version=%r caps=0x%X" % (packet.fields.get("version"),
                                                   packet.fields.get("caps", 0)))
        line = "%s %s id=%d %s" % (direction, packet.name, packet.id, " ".join(items))
        self.trace.append(line.rstrip())
        if len(self.trace) > 20000:
            del self.trace[:10000]
        if self.log:
            self.log(line.rstrip())

    def _send(self, packet):
        if self._conn is None:
            return False
        data = self._codec.encode(packet)
        self._note("->", packet)
        try:
            self._conn.sendall(data)
        except OSError as e:
            self.errors.append(e)
            return False
        return True

    def _set_state(self, state):
        with self._cond:
            self.state = state
            self._cond.notify_all()

    def _serve(self):
        while not self._stop.is_set():
            self._run_commands()
            try:
                r, _, _ = select.select([self._listener, self._wake_r], [], [], SELECT_S)
            except (OSError, ValueError):
                return
            self._drain_wake()
            if self._listener not in r:
                continue
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            if not self.unix:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._cond:
                self._conn = conn
                self._codec = Codec("host", version=self.version)
                self.connections += 1
                self.configuration = 0
                self._pending_in = []
                self._intr_started = False
                self._cond.notify_all()
            self._set_state("hello")
            try:
                self._session(conn)
            except UsbredirError as e:
                self.errors.append(e)
                if self.log:
                    self.log("usbredir: %s" % e)
            except OSError as e:
                self.errors.append(e)
            finally:
                with self._cond:
                    self._conn = None
                    self._cond.notify_all()
                self._set_state("idle")
                conn.close()

    def _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _run_commands(self):
        for _ in range(len(self._commands)):
            self._commands.popleft()()

    def _session(self, conn):
        self._send(Packet(HELLO, 0, version=self.version, caps=self._codec.caps))
        while not self._stop.is_set():
            self._run_commands()
            self._service()
            r, _, _ = select.select([conn, self._wake_r], [], [], SELECT_S)
            self._drain_wake()
            if conn not in r:
                continue
            data = conn.recv(65536)
            if not data:
                return
            for packet in self._codec.feed(data):
                self._note("<-", packet)
                self._handle(packet)

    # -- attach / detach ------------------------------------------------------------------
    def _maybe_attach(self):
        if self._conn is None or not self._codec.hello_received or not self.want_attached:
            return
        if self.state == "attached" or self.reader.gone:
            return
        if self.state == "detaching":
            return                        # after the ack (or its deadline)
        for p in device_packets(self.reader):
            self._send(p)
        self.configuration = 0
        self._pending_in = []
        self._intr_started = False
        self._intr_queue.clear()
        # A reader reports the cards it holds after enumeration (as QEMU's
        # usb-ccid does): present and changed for each occupied slot.
        if self.reader.has_interrupt and self.reader.quirks["notify_slot_change"]:
            present = [s.present for s in self.reader.slots]
            if any(present):
                self._intr_queue.append(C.NotifySlotChange.from_states(present, present).to_bytes())
        self._set_state("attached")

    def _detach(self):
        if self.state != "attached":
            return
        self._send(Packet(DEVICE_DISCONNECT, 0))
        self._pending_in = []
        self._intr_started = False
        if self._codec.in_force(CAP_DEVICE_DISCONNECT_ACK):
            self._ack_deadline = time.monotonic() + DISCONNECT_ACK_WAIT_S
            self._set_state("detaching")
        else:
            self._set_state("detached")

    def _service(self):
        """Work not driven by a packet: attach, ack deadline, answers, interrupts."""
        if self.state == "detaching" and time.monotonic() > self._ack_deadline:
            self._set_state("detached")
        if self.state == "attached" and self.reader.gone:
            self._detach()                  # unplugged behind our back (or by a fault)
        self._maybe_attach()
        if self.state != "attached":
            return
        self._answer_bulk_in()
        self._push_interrupts()

    def _answer_bulk_in(self):
        while self._pending_in and self.reader.pending_answers() > 0:
            id_, ep, length = self._pending_in.pop(0)
            try:
                data = self.reader.bulk_in(length)
                status = STATUS_SUCCESS
            except R.ReaderStall:
                data, status = b"", STATUS_STALL
            except R.ReaderTimeout:
                data, status = b"", STATUS_TIMEOUT
            except R.ReaderGone:
                data, status = b"", STATUS_IOERROR
            self._send(Packet(BULK_PACKET, id_, data, endpoint=ep, status=status,
                              length=len(data), stream_id=0))

    def _push_interrupts(self):
        if not self._intr_started:
            return
        while self._intr_queue:
            self._send_interrupt(self._intr_queue.popleft())
        now = time.monotonic()
        if now < self._next_intr_poll:
            return
        self._next_intr_poll = now + INTERRUPT_POLL_S
        for _ in range(64):
            try:
                msg = self.reader.interrupt_in(64, 1)
            except (R.ReaderTimeout, R.ReaderStall, R.ReaderGone):
                return
            self._send_interrupt(msg)

    def _send_interrupt(self, msg):
        self._next_id += 1
        self._send(Packet(INTERRUPT_PACKET, self._next_id, msg, endpoint=R.EP_INTERRUPT_IN,
                          status=STATUS_SUCCESS, length=len(msg)))

    # -- packets from QEMU ----------------------------------------------------------------
    def _handle(self, p):
        t = p.type
        if t == HELLO:
            missing = XHCI_CAPS & ~p.caps
            if missing:
                self.errors.append(UsbredirError(
                    "peer lacks %s" % ", ".join(CAP_NAMES[c] for c in CAP_NAMES
                                                if missing >> c & 1), HELLO, "USBREDIR_BAD_HELLO"))
            with self._cond:
                self._cond.notify_all()
            self._maybe_attach()
        elif t == DEVICE_DISCONNECT_ACK:
            if self.state == "detaching":
                self._set_state("detached")
                self._maybe_attach()
        elif self.state != "attached":
            self._not_attached(p)
        elif t == CONTROL_PACKET:
            self._control(p)
        elif t == BULK_PACKET:
            self._bulk(p)
        elif t == SET_CONFIGURATION:
            status = self._standard(0x00, 9, p.configuration, 0)
            if status == STATUS_SUCCESS:
                with self._cond:
                    self.configuration = p.configuration
                    self._cond.notify_all()
            self._send(Packet(CONFIGURATION_STATUS, p.id, status=status,
                              configuration=self.configuration))
        elif t == GET_CONFIGURATION:
            self._send(Packet(CONFIGURATION_STATUS, p.id, status=STATUS_SUCCESS,
                              configuration=self.configuration))
        elif t == SET_ALT_SETTING:
            status = self._standard(0x01, 11, p.alt, p.interface)
            if p.interface != self.reader.interface_number:
                status = STATUS_INVAL
            self._send(Packet(ALT_SETTING_STATUS, p.id, status=status, interface=p.interface,
                              alt=0 if status else p.alt))
        elif t == GET_ALT_SETTING:
            ok = p.interface == self.reader.interface_number
            self._send(Packet(ALT_SETTING_STATUS, p.id,
                              status=STATUS_SUCCESS if ok else STATUS_INVAL,
                              interface=p.interface, alt=0 if ok else 255))
        elif t == START_INTERRUPT_RECEIVING or t == STOP_INTERRUPT_RECEIVING:
            ok = self.reader.has_interrupt and p.endpoint == R.EP_INTERRUPT_IN
            if ok:
                self._intr_started = t == START_INTERRUPT_RECEIVING
                self._next_intr_poll = 0.0
            self._send(Packet(INTERRUPT_RECEIVING_STATUS, p.id,
                              status=STATUS_SUCCESS if ok else STATUS_INVAL,
                              endpoint=p.endpoint))
        elif t == START_ISO_STREAM or t == STOP_ISO_STREAM:
            self._send(Packet(ISO_STREAM_STATUS, p.id, status=STATUS_INVAL, endpoint=p.endpoint))
        elif t == CANCEL_DATA_PACKET:
            for i, (id_, ep, _length) in enumerate(self._pending_in):
                if id_ == p.id:
                    del self._pending_in[i]
                    self._send(Packet(BULK_PACKET, id_, endpoint=ep, status=STATUS_CANCELLED,
                                      length=0, stream_id=0))
                    break
        elif t == RESET:
            # a port reset: a fresh start for the reader, requests in flight end
            for id_, ep, _length in self._pending_in:
                self._send(Packet(BULK_PACKET, id_, endpoint=ep, status=STATUS_CANCELLED,
                                  length=0, stream_id=0))
            self._pending_in = []
            self.reader.plug()
        # FILTER_FILTER: QEMU's rules for what it accepts; nothing to do here

    def _not_attached(self, p):
        """A request for a device that is not there (it raced a detach)."""
        if p.type == CONTROL_PACKET:
            self._send(Packet(CONTROL_PACKET, p.id, endpoint=p.endpoint, request=p.request,
                              requesttype=p.requesttype, status=STATUS_IOERROR, value=p.value,
                              index=p.index, length=0))
        elif p.type == BULK_PACKET:
            self._send(Packet(BULK_PACKET, p.id, endpoint=p.endpoint, status=STATUS_IOERROR,
                              length=0, stream_id=0))

    def _standard(self, bmRequestType, bRequest, wValue, wIndex):
        try:
            self.reader.control(bmRequestType, bRequest, wValue, wIndex, b"")
        except R.ReaderStall:
            return STATUS_STALL
        except R.ReaderTimeout:
            return STATUS_TIMEOUT
        except R.ReaderGone:
            return STATUS_IOERROR
        return STATUS_SUCCESS

    def _control(self, p):
        data = b""
        try:
            if p.endpoint & 0x80:
                data = self.reader.control(p.requesttype, p.request, p.value, p.index, p.length)
                data = bytes(data[:p.length])
            else:
                self.reader.control(p.requesttype, p.request, p.value, p.index, p.data)
            status = STATUS_SUCCESS
        except R.ReaderStall:
            status = STATUS_STALL
        except R.ReaderTimeout:
            status = STATUS_TIMEOUT
        except R.ReaderGone:
            status = STATUS_IOERROR
        if p.endpoint & 0x80:
            length = len(data)
        else:
            length = p.length if status == STATUS_SUCCESS else 0
        self._send(Packet(CONTROL_PACKET, p.id, data, endpoint=p.endpoint, request=p.request,
                          requesttype=p.requesttype, status=status, value=p.value,
                          index=p.index, length=length))

    def _bulk(self, p):
        if p.endpoint == R.EP_BULK_IN:
            self._pending_in.append((p.id, p.endpoint, p.length))
            self._answer_bulk_in()
            return
        if p.endpoint != R.EP_BULK_OUT:
            self._send(Packet(BULK_PACKET, p.id, endpoint=p.endpoint, status=STATUS_INVAL,
                              length=0, stream_id=0))
            return
        try:
            self.reader.bulk_out(p.data)
            status, length = STATUS_SUCCESS, len(p.data)
        except R.ReaderStall:
            status, length = STATUS_STALL, 0
        except R.ReaderGone:
            status, length = STATUS_IOERROR, 0
        self._send(Packet(BULK_PACKET, p.id, endpoint=p.endpoint, status=status, length=length,
                          stream_id=0))
        self._answer_bulk_in()
