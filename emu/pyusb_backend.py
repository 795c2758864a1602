"""A pyusb backend whose devices are emulated CCID readers.

    import usb.core
    from ccidkit.emu.pyusb_backend import EmulatedBackend
    be = EmulatedBackend([reader, ...])
    for dev in usb.core.find(find_all=True, backend=be): ...

pyusb's ordinary paths (ctrl_transfer, read, write, descriptors, strings)
reach the EmulatedReader objects. Errors are the ones libusb gives:
a timeout raises usb.core.USBTimeoutError (LIBUSB_ERROR_TIMEOUT, errno
ETIMEDOUT), an unplugged reader usb.core.USBError with errno ENODEV
(LIBUSB_ERROR_NO_DEVICE), a stall usb.core.USBError with errno EPIPE
(LIBUSB_ERROR_PIPE). Hot plug: ``add(reader)`` / ``remove(reader)``; the
next enumeration reflects the set. A reader removed, or unplugged, keeps
failing with ENODEV on the handles opened before.
"""

import errno
import struct

import usb.backend
import usb.core

from .reader import ReaderGone, ReaderStall, ReaderTimeout

LIBUSB_ERROR_TIMEOUT = -7
LIBUSB_ERROR_NO_DEVICE = -4
LIBUSB_ERROR_PIPE = -9

SPEED_FULL = 2      # pyusb / libusb: LIBUSB_SPEED_FULL


class _Desc:
    """A descriptor object: fields as attributes (what pyusb reads)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


class _Device:
    """The backend's device identification: one reader at one address."""

    def __init__(self, reader, bus, address):
        self.reader = reader
        self.bus = bus
        self.address = address
        self.removed = False


class _Handle:
    def __init__(self, dev):
        self.dev = dev
        self.claimed = set()


def _gone(text="No such device (it may have been disconnected)"):
    return usb.core.USBError(text, LIBUSB_ERROR_NO_DEVICE, errno.ENODEV)


def _stall(text="Pipe error"):
    return usb.core.USBError(text, LIBUSB_ERROR_PIPE, errno.EPIPE)


def _timeout(text="Operation timed out"):
    return usb.core.USBTimeoutError(text, LIBUSB_ERROR_TIMEOUT, errno.ETIMEDOUT)


def _parse_config(raw):
    """(config fields, [(interface fields, [endpoint fields], extra)]) of a
    configuration descriptor (USB 2.0 §9.6.3 - §9.6.6)."""
    cfg = struct.unpack_from("<BBHBBBBB", raw, 0)
    interfaces = []
    pos = cfg[0]
    while pos + 2 <= len(raw):
        length, dtype = raw[pos], raw[pos + 1]
        if length < 2:
            break
        if dtype == 4:
            interfaces.append([struct.unpack_from("<BBBBBBBBB", raw, pos), [], b""])
        elif dtype == 5 and interfaces:
            interfaces[-1][1].append((struct.unpack_from("<BBBBHB", raw, pos), b""))
        elif interfaces:
            # class descriptors go with the interface (pyusb: extra_descriptors)
            interfaces[-1][2] += bytes(raw[pos:pos + length])
        pos += length
    return cfg, interfaces


class EmulatedBackend(usb.backend.IBackend):
    """usb.backend.IBackend over EmulatedReader objects."""

    def __init__(self, readers=(), bus_number=1):
        usb.backend.IBackend.__init__(self)
        self.bus_number = bus_number
        self._devices = []
        self._next_address = 2
        for r in readers:
            self.add(r)

    # -- hot plug -------------------------------------------------------------
    def add(self, reader):
        """Attach a reader (a new address, as a real re-enumeration gives)."""
        for d in self._devices:
            if d.reader is reader:
                raise ValueError("reader already attached")
        if reader.gone:
            reader.plug()
        dev = _Device(reader, self.bus_number, self._next_address)
        self._next_address = self._next_address + 1 if self._next_address < 127 else 2
        self._devices.append(dev)
        return dev

    def remove(self, reader):
        """Detach a reader: it is unplugged and its handles fail with ENODEV."""
        for d in list(self._devices):
            if d.reader is reader:
                d.removed = True
                self._devices.remove(d)
        reader.unplug()

    @property
    def readers(self):
        return [d.reader for d in self._devices]

    # -- enumeration and descriptors ---------------------------------------------
    def enumerate_devices(self):
        return list(self._devices)

    def get_parent(self, dev):
        return None

    def get_device_descriptor(self, dev):
        f = struct.unpack("<BBHBBBBHHHBBBB", dev.reader.device_descriptor)
        path = dev.reader.port_path
        return _Desc(bLength=f[0], bDescriptorType=f[1], bcdUSB=f[2], bDeviceClass=f[3],
                     bDeviceSubClass=f[4], bDeviceProtocol=f[5], bMaxPacketSize0=f[6],
                     idVendor=f[7], idProduct=f[8], bcdDevice=f[9], iManufacturer=f[10],
                     iProduct=f[11], iSerialNumber=f[12], bNumConfigurations=f[13],
                     address=dev.address, bus=dev.bus, port_number=path[-1],
                     port_numbers=tuple(path), speed=SPEED_FULL)

    def _config(self, dev, config):
        if config != 0:
            raise IndexError("configuration %d" % config)
        return _parse_config(dev.reader.config_descriptor)

    def get_configuration_descriptor(self, dev, config):
        cfg, ifaces = self._config(dev, config)
        return _Desc(bLength=cfg[0], bDescriptorType=cfg[1], wTotalLength=cfg[2],
                     bNumInterfaces=cfg[3], bConfigurationValue=cfg[4],
                     iConfiguration=cfg[5], bmAttributes=cfg[6], bMaxPower=cfg[7],
                     extra_descriptors=[])

    def get_interface_descriptor(self, dev, intf, alt, config):
        cfg, ifaces = self._config(dev, config)
        if alt != 0 or intf >= len(ifaces):
            raise IndexError("interface %d alt %d" % (intf, alt))
        f, _, extra = ifaces[intf]
        return _Desc(bLength=f[0], bDescriptorType=f[1], bInterfaceNumber=f[2],
                     bAlternateSetting=f[3], bNumEndpoints=f[4], bInterfaceClass=f[5],
                     bInterfaceSubClass=f[6], bInterfaceProtocol=f[7], iInterface=f[8],
                     extra_descriptors=list(extra))

    def get_endpoint_descriptor(self, dev, ep, intf, alt, config):
        cfg, ifaces = self._config(dev, config)
        if alt != 0 or intf >= len(ifaces) or ep >= len(ifaces[intf][1]):
            raise IndexError("endpoint %d" % ep)
        f, extra = ifaces[intf][1][ep]
        return _Desc(bLength=f[0], bDescriptorType=f[1], bEndpointAddress=f[2],
                     bmAttributes=f[3], wMaxPacketSize=f[4], bInterval=f[5],
                     bRefresh=0, bSynchAddress=0, extra_descriptors=list(extra))

    # -- handles -----------------------------------------------------------------------
    def _reader(self, handle):
        dev = handle.dev
        if dev.removed or dev.reader.gone:
            raise _gone()
        return dev.reader

    def open_device(self, dev):
        if dev.removed or dev.reader.gone:
            raise _gone()
        return _Handle(dev)

    def close_device(self, dev_handle):
        dev_handle.claimed.clear()

    def set_configuration(self, dev_handle, config_value):
        self._ctrl(dev_handle, 0x00, 9, config_value, 0, 0)

    def get_configuration(self, dev_handle):
        r = self._reader(dev_handle)
        return r.configuration or 1

    def set_interface_altsetting(self, dev_handle, intf, altsetting):
        self._ctrl(dev_handle, 0x01, 11, altsetting, intf, 0)

    def claim_interface(self, dev_handle, intf):
        r = self._reader(dev_handle)
        if intf != r.interface_number:
            raise usb.core.USBError("Entity not found", -5, errno.ENOENT)
        dev_handle.claimed.add(intf)

    def release_interface(self, dev_handle, intf):
        dev_handle.claimed.discard(intf)

    def clear_halt(self, dev_handle, ep):
        self._ctrl(dev_handle, 0x02, 1, 0, ep, 0)

    def reset_device(self, dev_handle):
        r = self._reader(dev_handle)
        r.plug()

    def is_kernel_driver_active(self, dev_handle, intf):
        return False

    def detach_kernel_driver(self, dev_handle, intf):
        pass

    def attach_kernel_driver(self, dev_handle, intf):
        pass

    # -- transfers ---------------------------------------------------------------------
    def _call(self, fn, *args):
        try:
            return fn(*args)
        except ReaderTimeout as e:
            raise _timeout(str(e))
        except ReaderStall as e:
            raise _stall(str(e))
        except ReaderGone:
            raise _gone()

    def _ctrl(self, dev_handle, bmRequestType, bRequest, wValue, wIndex, data):
        r = self._reader(dev_handle)
        return self._call(r.control, bmRequestType, bRequest, wValue, wIndex, data)

    def ctrl_transfer(self, dev_handle, bmRequestType, bRequest, wValue, wIndex, data,
                      timeout):
        if bmRequestType & 0x80:
            out = self._ctrl(dev_handle, bmRequestType, bRequest, wValue, wIndex,
                             len(data) * data.itemsize)
            n = len(out)
            data[0:n] = type(data)(data.typecode, out)
            return n
        self._ctrl(dev_handle, bmRequestType, bRequest, wValue, wIndex, bytes(data))
        return len(data) * data.itemsize

    def bulk_write(self, dev_handle, ep, intf, data, timeout):
        r = self._reader(dev_handle)
        payload = bytes(data)
        self._call(r.bulk_out, payload, timeout)
        return len(payload)

    def bulk_read(self, dev_handle, ep, intf, buff, timeout):
        r = self._reader(dev_handle)
        got = self._call(r.bulk_in, len(buff) * buff.itemsize, timeout)
        n = len(got)
        memoryview(buff).cast("B")[0:n] = got      # in place, no array copy first
        return n

    def interrupt_pending(self, dev, ep):
        """False only when an interrupt-IN read on ``dev`` (this backend's device)
        would time out with nothing queued (EmulatedReader.interrupt_pending);
        True for a removed device, so the read reports ENODEV."""
        if dev.removed:
            return True
        return dev.reader.interrupt_pending()

    def intr_read(self, dev_handle, ep, intf, buff, timeout):
        r = self._reader(dev_handle)
        got = self._call(r.interrupt_in, len(buff) * buff.itemsize, timeout)
        n = len(got)
        buff[0:n] = type(buff)(buff.typecode, got)
        return n
