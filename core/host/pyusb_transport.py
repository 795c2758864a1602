"""The Transport over pyusb: real readers through libusb, emulated ones through
ccidkit.emu.pyusb_backend.EmulatedBackend. CPython only.

    from ccidkit.core.host.pyusb_transport import find_readers
    for t in find_readers():               # or find_readers(backend=EmulatedBackend([...]))
        print(t.vid, t.pid, t.product)

Every interface of class 0Bh counts, and the vendor-class (FFh) interfaces
that carry a 54-byte CCID descriptor (pre-1.0 readers libccid still
drives). The device is opened, configured and claimed on the first transfer.
libusb errors become TransportError subclasses: a timeout TransportTimeout,
ENODEV (LIBUSB_ERROR_NO_DEVICE) ReaderRemoved, EPIPE (stall) TransportStall.
"""

import array
import errno

import usb.core
import usb.util

from ..transport import (
    Transport, TransportError, TransportTimeout, TransportStall, ReaderRemoved,
)
from ..ccid_descriptor import find_ccid_interfaces
from ..ccid import CCIDError

LIBUSB_ERROR_TIMEOUT = -7
LIBUSB_ERROR_NO_DEVICE = -4
LIBUSB_ERROR_PIPE = -9


def _ms(timeout_ms):
    # libusb reads a timeout of 0 as "wait for ever": the driver means "at once"
    t = int(timeout_ms)
    return t if t > 0 else 1


def _translate(e):
    if isinstance(e, usb.core.USBTimeoutError):
        return TransportTimeout(str(e))
    code = getattr(e, "backend_error_code", None)
    err = getattr(e, "errno", None)
    if err == errno.ENODEV or code == LIBUSB_ERROR_NO_DEVICE:
        return ReaderRemoved(str(e))
    if err == errno.EPIPE or code == LIBUSB_ERROR_PIPE:
        return TransportStall(str(e))
    if err == errno.ETIMEDOUT or code == LIBUSB_ERROR_TIMEOUT:
        return TransportTimeout(str(e))
    return TransportError(str(e), err)


def _string(dev, index):
    if not index:
        return None
    try:
        return usb.util.get_string(dev, index)
    except (usb.core.USBError, ValueError, NotImplementedError):
        return None


def read_config_descriptor(dev, index=0):
    """The raw configuration descriptor (GET_DESCRIPTOR, USB 2.0 §9.4.3)."""
    head = dev.ctrl_transfer(0x80, 6, 0x0200 | index, 0, 9)
    total = head[2] | (head[3] << 8)
    return bytes(dev.ctrl_transfer(0x80, 6, 0x0200 | index, 0, total))


def interface_string_index(config, number):
    """iInterface of interface ``number`` (alternate setting 0) in a configuration, or 0."""
    pos = 0
    n = len(config)
    while pos + 2 <= n:
        length = config[pos]
        if length < 2:
            break
        if config[pos + 1] == 4 and length >= 9 and pos + 9 <= n and \
                config[pos + 2] == number and config[pos + 3] == 0:
            return config[pos + 8]
        pos += length
    return 0


class PyusbTransport(Transport):
    """One CCID interface of one pyusb device."""

    def __init__(self, dev, config_descriptor, interface_number, endpoints):
        self.dev = dev
        self.vid = dev.idVendor
        self.pid = dev.idProduct
        self.bcd_device = getattr(dev, "bcdDevice", 0) or 0
        self.bus = dev.bus or 0
        self.address = dev.address or 0
        ports = None
        try:
            ports = dev.port_numbers
        except (usb.core.USBError, AttributeError, NotImplementedError):
            ports = None
        if ports:
            self.bus_path = "%d-%s" % (self.bus, ".".join([str(p) for p in ports]))
        else:
            self.bus_path = "%d-%d" % (self.bus, self.address)
        self.config_descriptor = config_descriptor
        self.interface_number = interface_number
        self.ep_out = None
        self.ep_in = None
        self.ep_int = None
        for addr, attr, mps, _interval in endpoints:
            kind = attr & 3
            if kind == 2 and not addr & 0x80:
                self.ep_out = addr
            elif kind == 2 and addr & 0x80:
                self.ep_in = addr
                self.max_packet_size = mps
            elif kind == 3 and addr & 0x80:
                self.ep_int = addr
        self.manufacturer = _string(dev, dev.iManufacturer)
        self.product = _string(dev, dev.iProduct)
        self.serial = _string(dev, dev.iSerialNumber)
        self.interface_name = _string(dev, interface_string_index(config_descriptor,
                                                                  interface_number))
        self._claimed = False
        self._closed = False
        self._in_buf = None         # bulk-IN buffer reused while reads ask the same size
        # a backend that can tell whether interrupt-IN holds a message without a
        # read (the emulated one): pyusb keeps the backend and its device object
        # in the Device's resource manager
        ctx = getattr(dev, "_ctx", None)
        self._pending_fn = getattr(getattr(ctx, "backend", None), "interrupt_pending", None)
        self._pending_dev = getattr(ctx, "dev", None)

    @property
    def has_interrupt(self):
        return self.ep_int is not None

    def _open(self):
        if self._closed:
            raise ReaderRemoved("transport closed")
        if self._claimed:
            return
        try:
            try:
                if self.dev.is_kernel_driver_active(self.interface_number):
                    self.dev.detach_kernel_driver(self.interface_number)
            except (NotImplementedError, usb.core.USBError):
                pass
            try:
                cfg = self.dev.get_active_configuration()
            except usb.core.USBError:
                cfg = None
            if cfg is None:
                self.dev.set_configuration()
            usb.util.claim_interface(self.dev, self.interface_number)
        except usb.core.USBError as e:
            raise _translate(e)
        self._claimed = True

    def bulk_out(self, data, timeout_ms):
        self._open()
        data = bytes(data)
        pos = 0
        for _ in range(len(data) // 64 + 2):
            try:
                n = self.dev.write(self.ep_out, data[pos:], _ms(timeout_ms))
            except usb.core.USBError as e:
                raise _translate(e)
            pos += n
            if pos >= len(data) or n <= 0:
                break
        if pos < len(data):
            raise TransportError("bulk-OUT wrote %d of %d bytes" % (pos, len(data)))

    def bulk_in(self, max_len, timeout_ms):
        self._open()
        buf = self._in_buf
        if buf is None or len(buf) != max_len:
            # pyusb reads into an array of the asked size; one kept and reused
            # spares a fresh 64 KiB array per read (the driver asks 65554 bytes)
            buf = array.array("B", bytes(max_len))
            self._in_buf = buf
        try:
            n = self.dev.read(self.ep_in, buf, _ms(timeout_ms))
        except usb.core.USBError as e:
            raise _translate(e)
        return bytes(memoryview(buf)[:n])

    def interrupt_pending(self):
        """False only when the backend knows an interrupt-IN read would find
        nothing now (the emulated backend can tell; libusb cannot without a
        read, so real readers always answer True: "read to find out")."""
        fn = self._pending_fn
        if fn is None or self.ep_int is None or not self._claimed or self._closed:
            return True
        return fn(self._pending_dev, self.ep_int)

    def interrupt_in(self, max_len, timeout_ms):
        if self.ep_int is None:
            return None
        self._open()
        try:
            return bytes(self.dev.read(self.ep_int, max_len, _ms(timeout_ms)))
        except usb.core.USBError as e:
            err = _translate(e)
            if isinstance(err, TransportTimeout):
                return None
            raise err

    def control(self, bmRequestType, bRequest, wValue, wIndex, data_or_length, timeout_ms):
        self._open()
        try:
            ans = self.dev.ctrl_transfer(bmRequestType, bRequest, wValue, wIndex,
                                         data_or_length, _ms(timeout_ms))
        except usb.core.USBError as e:
            raise _translate(e)
        if isinstance(ans, int):
            return b""
        return bytes(ans)

    def close(self):
        if self._claimed and not self._closed:
            try:
                usb.util.release_interface(self.dev, self.interface_number)
            except usb.core.USBError:
                pass
            try:
                usb.util.dispose_resources(self.dev)
            except usb.core.USBError:
                pass
        self._closed = True


def find_readers(backend=None):
    """PyusbTransports for every CCID interface pyusb sees (real, or through ``backend``)."""
    out = []
    try:
        devs = list(usb.core.find(find_all=True, backend=backend))
    except usb.core.NoBackendError:
        return out
    for dev in devs:
        try:
            raw = read_config_descriptor(dev)
        except usb.core.USBError:
            continue
        try:
            found = find_ccid_interfaces(raw)
        except CCIDError:
            continue
        seen = []
        for desc in found:
            if desc.bInterfaceNumber in seen:
                continue
            seen.append(desc.bInterfaceNumber)
            out.append(PyusbTransport(dev, raw, desc.bInterfaceNumber, desc.endpoints))
    return out


def usb_manager(backend=None, log=None, reader_options=None, poll_ms=100):
    """A pcsc ResourceManager over the readers pyusb finds, with the host's clock
    for timeouts (the portable core takes no clock of its own)."""
    import time
    from ..pcsc import ResourceManager

    def now_ms():
        return int(time.monotonic() * 1000)

    def sleep_ms(ms):
        time.sleep(ms / 1000.0)

    return ResourceManager(lambda: find_readers(backend), log=log, now_ms=now_ms,
                           sleep_ms=sleep_ms, poll_ms=poll_ms, reader_options=reader_options)
