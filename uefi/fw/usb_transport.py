"""The driver's Transport over EFI_USB_IO_PROTOCOL (through efi.py), inside UEFI.

    from ccidkit.uefi.fw.usb_transport import find_readers, usb_manager
    for t in find_readers():                 # one EfiUsbTransport per CCID interface
        reader = Reader(t).open()            # core/driver.py, unchanged

OVMF gives every interface of a device its own UsbIo handle, so one handle is
one CCID interface: interfaces of class 0Bh and the vendor-class (FFh) ones
that carry a 54-byte CCID descriptor (``find_ccid_interfaces`` decides, as on
the host). Names come from the device's string descriptors (USB 2.0 §9.6.7,
UTF-16LE, language from string 0).

The interrupt endpoint runs as the runtime's asynchronous interrupt transfer
from the moment the transport is made: the firmware queues every
NotifySlotChange (64 packets per endpoint) until ``interrupt_in`` takes it,
so none is lost between two driver calls. ``interrupt_in`` waits by polling
that queue every ``POLL_STEP_MS`` (a bounded number of steps, no clock).

EFI_STATUS -> transport errors:
    EFI_TIMEOUT                              TransportTimeout
    EFI_NOT_FOUND, EFI_NO_MEDIA              ReaderRemoved (the UsbIo handle is gone)
    EFI_DEVICE_ERROR with UsbStatus STALL    TransportStall
    anything else                            TransportError (code = the EFI_STATUS)
A bulk transfer that fails otherwise (timeout, device error) is followed by a
GET_STATUS on the default pipe: when that fails too, the reader was pulled out
during the transfer and the error is ReaderRemoved.
A reader once removed stays removed: every later call raises ReaderRemoved.
"""

from ccidkit.core.transport import (
    Transport, TransportError, TransportTimeout, TransportStall, ReaderRemoved,
)
from ccidkit.core.ccid_descriptor import find_ccid_interfaces
from ccidkit.core.ccid import CCIDError
from ccidkit.uefi.fw import efi
from ccidkit.uefi.fw.efi_status import EFI_NO_MEDIA

# EFI_USB_IO_PROTOCOL transfer status bits (UEFI 2.10 §17.2.4, EFI_USB_ERR_*)
EFI_USB_ERR_STALL = 0x02
EFI_USB_ERR_TIMEOUT = 0x40

POLL_STEP_MS = 10            # interrupt-IN: one look at the queue per step
MAX_BULK_TIMEOUT_MS = 600000     # the runtime's limit for one transfer
# One bulk-IN transfer asks for at most this much (a multiple of every bulk
# wMaxPacketSize): OVMF's xHCI answers nothing to a request over 64 KiB (one
# TRB), and the driver reassembles longer messages from several transfers.
MAX_BULK_IN = 4096
MAX_OUT_PIECES = 64              # bulk-OUT: partial writes accepted for one message
MAX_STRING = 255                 # a string descriptor is at most 255 bytes
PROBE_TIMEOUT_MS = 500           # GET_STATUS after a failed bulk transfer

CLASS_CCID = 0x0B
CLASS_VENDOR = 0xFF


def _usb_status(message):
    # ck_usb.c reports "transfer failed, UsbStatus 0xXXXXXXXX"
    key = "UsbStatus 0x"
    i = message.find(key)
    if i < 0:
        return 0
    try:
        return int(message[i + len(key):i + len(key) + 8], 16)
    except ValueError:
        return 0


def translate(e):
    """The TransportError for an EfiError of a USB service."""
    st = e.status
    if st == efi.EFI_TIMEOUT:
        return TransportTimeout("%s" % e, st)
    if st == efi.EFI_NOT_FOUND or st == EFI_NO_MEDIA:
        return ReaderRemoved("%s" % e, st)
    if st == efi.EFI_INVALID_PARAMETER and e.message.find("unknown USB handle") >= 0:
        # the handle table was rebuilt without this device (usb.list after an unplug)
        return ReaderRemoved("%s" % e, st)
    if st == efi.EFI_DEVICE_ERROR:
        us = _usb_status(e.message)
        if us & EFI_USB_ERR_STALL:
            return TransportStall("%s" % e, st)
        if us & EFI_USB_ERR_TIMEOUT:
            return TransportTimeout("%s" % e, st)
    return TransportError("%s" % e, st)


def _ms(timeout_ms, high=MAX_BULK_TIMEOUT_MS):
    t = int(timeout_ms)
    if t < 1:
        return 1
    return t if t < high else high


def utf16le(data):
    """Text of UTF-16LE bytes (surrogate pairs joined; MicroPython decodes UTF-8 only)."""
    out = []
    i = 0
    n = len(data) - 1
    while i < n:
        c = data[i] | (data[i + 1] << 8)
        i += 2
        if 0xD800 <= c < 0xDC00 and i < n:
            d = data[i] | (data[i + 1] << 8)
            if 0xDC00 <= d < 0xE000:
                c = 0x10000 + ((c - 0xD800) << 10) + (d - 0xDC00)
                i += 2
        out.append(chr(c))
    return "".join(out)


class EfiUsbTransport(Transport):
    """One CCID interface behind one EFI_USB_IO_PROTOCOL handle."""

    def __init__(self, dev, desc, start_interrupt=True):
        self.dev = dev
        self.handle = dev.handle
        self.vid = dev.vid
        self.pid = dev.pid
        d = dev.device_descriptor
        self.bcd_device = (d[12] | (d[13] << 8)) if len(d) >= 14 else 0
        self.config_descriptor = dev.config_descriptor
        self.interface_number = dev.interface_number
        self.bus_path = "efi-%d/%d" % (dev.handle, dev.interface_number)
        self.address = dev.handle
        self.ep_in = None
        self.ep_out = None
        self.ep_int = None
        self.int_mps = 8
        self.int_interval = 10
        for addr, attr, mps, interval in desc.endpoints:
            kind = attr & 3           # USB 2.0 §9.6.6 bmAttributes: 2 bulk, 3 interrupt
            if kind == 2 and addr & 0x80:
                self.ep_in = addr
                self.max_packet_size = mps
            elif kind == 2:
                self.ep_out = addr
            elif kind == 3 and addr & 0x80:
                self.ep_int = addr
                self.int_mps = mps if 0 < mps <= 64 else 64
                self.int_interval = interval if 0 < interval <= 255 else 10
        self._packets = []
        self._int_started = False
        self._gone = False
        self._closed = False
        self._langid = None
        self.string_error = None      # why the last string descriptor could not be read
        self.trace = None             # trace(direction, data): bulk traffic, for debugging
        self.trailing_dropped = 0     # bytes dropped after a message in its transfer
        self._rx_left = 0             # bytes of the current message still to come
        self.manufacturer = self._string(d[14] if len(d) >= 15 else 0)
        self.product = self._string(d[15] if len(d) >= 16 else 0)
        self.serial = self._string(d[16] if len(d) >= 17 else 0)
        self.interface_name = self._string(self._interface_string_index())
        if start_interrupt and self.ep_int is not None:
            self._start_interrupt()

    # ---------------------------------------------------------------- identity

    def _interface_string_index(self):
        cfg = self.config_descriptor
        pos = 0
        n = len(cfg)
        for _ in range(n):
            if pos + 2 > n or cfg[pos] < 2:
                break
            length = cfg[pos]
            if cfg[pos + 1] == 4 and length >= 9 and pos + 9 <= n and \
                    cfg[pos + 2] == self.interface_number and cfg[pos + 3] == 0:
                return cfg[pos + 8]
            pos += length
        return 0

    def _string(self, index):
        """String descriptor ``index`` as text, None when absent or unreadable."""
        if not index:
            return None
        try:
            if self._langid is None:
                # USB 2.0 §9.6.7: string 0 lists the LANGIDs; the first one is used
                raw = efi.usb_control(self.handle, 0x80, 6, 0x0300, 0, 4, 1000)
                self._langid = (raw[2] | (raw[3] << 8)) if len(raw) >= 4 else 0x0409
            # bLength first, then exactly that much: a control read answered
            # with less than wLength is an error on some firmware
            wv = 0x0300 | (index & 0xFF)
            head = efi.usb_control(self.handle, 0x80, 6, wv, self._langid, 2, 1000)
            if len(head) < 2 or head[0] < 2:
                return None
            raw = efi.usb_control(self.handle, 0x80, 6, wv, self._langid, head[0], 1000)
        except efi.EfiError as e:
            self.string_error = e
            return None
        if len(raw) < 2 or raw[1] != 3:
            return None
        n = raw[0] if raw[0] <= len(raw) else len(raw)
        text = utf16le(raw[2:n])
        return text or None

    @property
    def has_interrupt(self):
        return self.ep_int is not None

    # ---------------------------------------------------------------- transfers

    def _check(self):
        if self._closed:
            raise ReaderRemoved("transport closed")
        if self._gone:
            raise ReaderRemoved("the reader is gone")

    def _fail(self, e):
        err = translate(e)
        if isinstance(err, ReaderRemoved):
            self._gone = True
        return err

    def _fail_transfer(self, e):
        """The error for a failed bulk transfer. A reader pulled out while a
        transfer runs makes that transfer fail (EFI_DEVICE_ERROR or EFI_TIMEOUT)
        before the USB bus driver takes its UsbIo handle away; a GET_STATUS on
        the default pipe (USB 2.0 §9.4.5, which every device answers) tells
        that apart from a slow or confused reader, so the driver names the
        reader removed at once, as on the host."""
        err = self._fail(e)
        if isinstance(err, (ReaderRemoved, TransportStall)):
            return err
        try:
            efi.usb_control(self.handle, 0x80, 0, 0, 0, 2, PROBE_TIMEOUT_MS)
        except efi.EfiError as pe:
            self._gone = True
            return ReaderRemoved("%s; then GET_STATUS: %s" % (e, pe), pe.status)
        return err

    def _start_interrupt(self):
        try:
            efi.usb_interrupt_start(self.handle, self.ep_int, self.int_mps, self.int_interval)
            self._int_started = True
        except efi.EfiError as e:
            if e.status == efi.EFI_ALREADY_STARTED:
                self._int_started = True
                return
            raise self._fail(e)

    def bulk_out(self, data, timeout_ms):
        self._check()
        data = bytes(data)
        pos = 0
        for _ in range(MAX_OUT_PIECES):
            if self.trace is not None:
                self.trace("->", data[pos:])
            try:
                n = efi.usb_bulk_out(self.handle, self.ep_out & 0x7F, data[pos:], _ms(timeout_ms))
            except efi.EfiError as e:
                raise self._fail_transfer(e)
            pos += n
            if pos >= len(data) or n <= 0:
                break
        if pos < len(data):
            raise TransportError("bulk-OUT wrote %d of %d bytes" % (pos, len(data)))

    def bulk_in(self, max_len, timeout_ms):
        """Up to ``max_len`` bytes (one transfer; the driver loops over partial reads)."""
        self._check()
        n = int(max_len)
        n = 1 if n < 1 else (n if n < MAX_BULK_IN else MAX_BULK_IN)
        try:
            data = efi.usb_bulk_in(self.handle, self.ep_in, n, _ms(timeout_ms))
        except efi.EfiError as e:
            self._rx_left = 0
            if self.trace is not None:
                self.trace("<-", e.name)
            raise self._fail_transfer(e)
        if self.trace is not None:
            self.trace("<-", data)
        return self._frame(data)

    def _frame(self, data):
        """One bulk-IN transfer carries one CCID message (a short packet ends it,
        CCID §5.2 / USB 2.0 §5.8.3): bytes past the message's dwLength in the same
        transfer are dropped and counted in ``trailing_dropped``. QEMU's usb-ccid
        sends RDR_to_PC_Parameters with dwLength 0 and the 7 bytes of
        abProtocolDataStructure behind it; read as a stream, they would start the
        next message."""
        n = len(data)
        if self._rx_left > 0:
            if n <= self._rx_left:
                self._rx_left -= n
                return data
            keep = self._rx_left
        elif n >= 10:
            keep = 10 + (data[1] | (data[2] << 8) | (data[3] << 16) | (data[4] << 24))
            if n <= keep:
                self._rx_left = keep - n
                return data
        else:
            return data
        self._rx_left = 0
        self.trailing_dropped += n - keep
        return data[:keep]

    def _poll_queue(self):
        try:
            got = efi.usb_interrupt_poll(self.handle, self.ep_int)
        except efi.EfiError as e:
            if e.status == efi.EFI_NOT_STARTED:
                self._int_started = False
                return
            raise self._fail(e)
        for p in got:
            self._packets.append(p)

    def interrupt_in(self, max_len, timeout_ms):
        """The oldest queued interrupt-IN packet, waiting up to ``timeout_ms``; None
        when nothing came (or there is no interrupt endpoint)."""
        if self.ep_int is None:
            return None
        self._check()
        if not self._int_started:
            self._start_interrupt()
        steps = int(timeout_ms) // POLL_STEP_MS if timeout_ms and timeout_ms > 0 else 0
        for i in range(steps + 1):
            if not self._packets:
                self._poll_queue()
            if self._packets:
                p = self._packets.pop(0)
                return p[:max_len] if max_len and len(p) > max_len else p
            if i < steps:
                try:
                    efi.stall(POLL_STEP_MS * 1000)
                except efi.EfiError as e:
                    raise TransportError("stall failed: %s" % e, e.status)
        return None

    def control(self, bmRequestType, bRequest, wValue, wIndex, data_or_length, timeout_ms):
        self._check()
        if bmRequestType & 0x80:
            arg = data_or_length if isinstance(data_or_length, int) else len(data_or_length)
        else:
            arg = b"" if isinstance(data_or_length, int) else bytes(data_or_length)
        try:
            return efi.usb_control(self.handle, bmRequestType, bRequest, wValue, wIndex, arg,
                                   _ms(timeout_ms, 60000))
        except efi.EfiError as e:
            raise self._fail(e)

    def close(self):
        if self._int_started and not self._gone:
            try:
                efi.usb_interrupt_stop(self.handle, self.ep_int)
            except efi.EfiError:
                pass
        self._int_started = False
        self._closed = True


def _ccid_desc(dev):
    """The CCID descriptor of a UsbIo handle's interface, or None."""
    if dev.interface_class not in (CLASS_CCID, CLASS_VENDOR):
        return None
    try:
        found = find_ccid_interfaces(dev.config_descriptor)
    except CCIDError:
        return None
    for desc in found:
        if desc.bInterfaceNumber == dev.interface_number:
            return desc
    return None


def find_readers(start_interrupt=True):
    """EfiUsbTransports for every CCID interface the firmware has a UsbIo handle for."""
    out = []
    try:
        devs = efi.usb_devices()
    except efi.EfiError:
        return out
    for dev in devs:
        desc = _ccid_desc(dev)
        if desc is not None:
            out.append(EfiUsbTransport(dev, desc, start_interrupt))
    return out


def now_ms():
    return efi.ticks_us() // 1000


def sleep_ms(ms):
    # efi.stall takes at most 10 s at a time
    left = int(ms)
    for _ in range(left // 10000 + 1):
        if left <= 0:
            break
        step = left if left < 10000 else 10000
        efi.stall(step * 1000)
        left -= step


def usb_manager(log=None, reader_options=None, poll_ms=100, clock=True):
    """A core.pcsc ResourceManager over the readers the firmware sees (hot plug:
    a fresh ``usb.list`` at every scan). ``clock=False`` leaves the firmware's
    timer out (waits then count in transport timeouts only)."""
    from ccidkit.core.pcsc import ResourceManager
    known = {}

    def source():
        # one usb.list per scan; a handle already known keeps its transport
        # (and its interrupt queue), so strings are read once per reader
        try:
            devs = efi.usb_devices()
        except efi.EfiError:
            devs = []
        out = []
        keys = []
        for dev in devs:
            k = "%d/%d/%04X:%04X" % (dev.handle, dev.interface_number, dev.vid, dev.pid)
            old = known.get(k)
            if old is not None and not old._gone:
                keys.append(k)
                out.append(old)
                continue
            desc = _ccid_desc(dev)
            if desc is None:
                continue
            t = EfiUsbTransport(dev, desc)
            keys.append(k)
            known[k] = t
            out.append(t)
        for k in list(known):
            if k not in keys:
                del known[k]
        return out

    return ResourceManager(source, log=log, now_ms=now_ms if clock else None,
                           sleep_ms=sleep_ms if clock else None, poll_ms=poll_ms,
                           reader_options=reader_options)
