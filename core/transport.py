"""The transport interface: what the CCID driver needs from a USB stack.

One Transport is one CCID interface of one USB device. The driver only ever
moves bytes through these five calls, and their timeouts are the only waits
it makes (no clock in the protocol code):

    bulk_out(data, timeout_ms)                 -> None
    bulk_in(max_len, timeout_ms)               -> bytes (maybe fewer: the driver loops)
    interrupt_in(max_len, timeout_ms)          -> bytes, or None when nothing came
    control(bmRequestType, bRequest, wValue, wIndex, data_or_length, timeout_ms) -> bytes
    close()

Implementations: ``core/host/pyusb_transport.py`` (pyusb: real readers through
libusb, emulated readers through the emulated backend), the UEFI EFI_USB_IO
bridge, and the fakes of the tests. Failures raise TransportError subclasses:
TransportTimeout (nothing within the timeout), TransportStall (the endpoint
answered STALL), ReaderRemoved (the device is gone: every later call fails).
"""

from .errors import CcidkitError


class TransportError(CcidkitError):
    """A USB transfer failed. ``name``: TRANSPORT_ERROR, TIMEOUT, STALL, NO_DEVICE."""

    def __init__(self, message, code=None, name="TRANSPORT_ERROR"):
        CcidkitError.__init__(self, message, code, name)


class TransportTimeout(TransportError):
    def __init__(self, message="USB transfer timed out", code=None, name="TIMEOUT"):
        TransportError.__init__(self, message, code, name)


class TransportStall(TransportError):
    def __init__(self, message="endpoint stalled", code=None, name="STALL"):
        TransportError.__init__(self, message, code, name)


class ReaderRemoved(TransportError):
    def __init__(self, message="the reader is gone", code=None, name="NO_DEVICE"):
        TransportError.__init__(self, message, code, name)


class Transport:
    """Base class: identity attributes plus the five transfer calls.

    vid, pid               idVendor, idProduct
    manufacturer, product  iManufacturer / iProduct strings (or None)
    serial                 iSerialNumber string (or None)
    interface_name         iInterface string (or None); pcsc-lite shows it in [ ]
    interface_number       bInterfaceNumber of the CCID interface
    bus_path               a string unique on the host for this device (e.g. "1-4.2")
    bus, address           USB bus number and device address (0 when unknown)
    bcd_device             bcdDevice of the device descriptor (0 when unknown)
    config_descriptor      bytes of the whole configuration descriptor
    max_packet_size        wMaxPacketSize of bulk-IN (informative)
    """

    vid = 0
    pid = 0
    manufacturer = None
    product = None
    serial = None
    interface_name = None
    interface_number = 0
    bus_path = ""
    bus = 0
    address = 0
    bcd_device = 0
    config_descriptor = b""
    max_packet_size = 64

    def bulk_out(self, data, timeout_ms):
        raise TransportError("bulk_out not implemented", name="NOT_SUPPORTED")

    def bulk_in(self, max_len, timeout_ms):
        raise TransportError("bulk_in not implemented", name="NOT_SUPPORTED")

    def interrupt_in(self, max_len, timeout_ms):
        """None when there is no interrupt endpoint or nothing came in time."""
        return None

    # Optional: ``interrupt_pending()`` -> False only when an interrupt-IN read
    # now would surely find nothing (then the driver's event poll that does not
    # wait skips the read); True when it cannot tell. Transports that cannot
    # know do not define it (the driver looks it up once, at open).

    def control(self, bmRequestType, bRequest, wValue, wIndex, data_or_length, timeout_ms):
        raise TransportStall("control request 0x%02X not supported" % bRequest)

    def close(self):
        pass

    @property
    def has_interrupt(self):
        """True when the interface has an interrupt-IN endpoint (NotifySlotChange)."""
        return True

    def __repr__(self):
        return "<%s %04X:%04X %s>" % (type(self).__name__, self.vid, self.pid, self.bus_path)
