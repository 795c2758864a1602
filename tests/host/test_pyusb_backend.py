"""The pyusb backend over emulated readers: enumeration, descriptors, strings,
transfers, libusb's errors (ETIMEDOUT, EPIPE, ENODEV) and hot plug."""

import errno

import pytest
import usb.core
import usb.util

from ccidkit.core import ccid as C
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.pyusb_backend import EmulatedBackend
from ccidkit.emu.reader import EmulatedReader


def reader(pid="gemalto-pctwin", serial=None, **kw):
    return EmulatedReader(pid, cards={0: MiniCard(protocols=(0,) if pid == "sysmooctsim"
                                                  else (0, 1))}, serial=serial, **kw)


def test_find_lists_every_reader_with_its_descriptors():
    rs = [reader("gemalto-pctwin", "A1"), reader("au9560", "B2"), reader("iccd-token", "C3")]
    be = EmulatedBackend(rs)
    devs = list(usb.core.find(find_all=True, backend=be))
    assert [(d.idVendor, d.idProduct) for d in devs] == [(0x08E6, 0x3437), (0x058F, 0x9540),
                                                         (0x1209, 0x0CC1)]
    assert [d.serial_number for d in devs] == ["A1", "B2", "C3"]
    assert devs[1].manufacturer == "Generic" and devs[1].product == "EMV Smartcard Reader"
    assert len({d.address for d in devs}) == 3 and all(d.bus == 1 for d in devs)
    d = devs[0]
    cfg = d.get_active_configuration()
    intf = cfg[(0, 0)]
    assert intf.bInterfaceClass == 0x0B
    # the CCID class descriptor rides along as the interface's extra descriptor
    assert bytes(intf.extra_descriptors) == rs[0].class_descriptor
    eps = [(e.bEndpointAddress, usb.util.endpoint_type(e.bmAttributes)) for e in intf]
    assert eps == [(0x01, usb.util.ENDPOINT_TYPE_BULK), (0x82, usb.util.ENDPOINT_TYPE_BULK),
                   (0x83, usb.util.ENDPOINT_TYPE_INTR)]
    assert len(list(devs[2].get_active_configuration()[(0, 0)])) == 2   # token: no interrupt
    assert usb.core.find(backend=be, idVendor=0x058F).serial_number == "B2"
    assert usb.util.get_string(d, 2) == "USB SmartCard Reader"


def test_write_read_and_control():
    r = reader()
    be = EmulatedBackend([r])
    d = usb.core.find(backend=be)
    d.set_configuration()
    n = d.write(0x01, C.CCIDMessage(C.PC_to_RDR_IccPowerOn, 0, 3, bPowerSelect=1).to_bytes())
    assert n == 10
    out = d.read(0x82, 64, 1000)
    m = C.decode_bulk_in(bytes(out))
    assert (m.bSeq, m.abData) == (3, MiniCard().atr)
    # reading into a caller's array returns the count
    import array
    d.write(0x01, C.CCIDMessage(C.PC_to_RDR_GetSlotStatus, 0, 4).to_bytes())
    buf = array.array("B", bytes(64))
    assert d.read(0x82, buf, 1000) == 10 and buf[6] == 4
    rates = d.ctrl_transfer(0xA1, 3, 0, 0, 8)
    assert bytes(rates) == bytes.fromhex("012A0000 01380000".replace(" ", ""))
    assert d.ctrl_transfer(0x21, 1, 0x0500, 0, None) == 0      # ABORT, no data stage


def test_errors_as_libusb_gives_them():
    r = reader()
    be = EmulatedBackend([r])
    d = usb.core.find(backend=be)
    with pytest.raises(usb.core.USBTimeoutError) as e:
        d.read(0x82, 64, 20)
    assert e.value.errno == errno.ETIMEDOUT and e.value.backend_error_code == -7
    with pytest.raises(usb.core.USBTimeoutError):
        d.read(0x83, 8, 20)
    with pytest.raises(usb.core.USBError) as e:
        d.ctrl_transfer(0xA1, 0x55, 0, 0, 4)
    assert e.value.errno == errno.EPIPE and e.value.backend_error_code == -9
    r.faults.stall("bulk_out")
    with pytest.raises(usb.core.USBError) as e:
        d.write(0x01, C.CCIDMessage(C.PC_to_RDR_GetSlotStatus, 0, 1).to_bytes())
    assert e.value.errno == errno.EPIPE
    r.unplug()
    with pytest.raises(usb.core.USBError) as e:
        d.read(0x82, 64, 20)
    assert e.value.errno == errno.ENODEV and e.value.backend_error_code == -4


def test_hot_plug_add_and_remove():
    a = reader(serial="A")
    be = EmulatedBackend([a])
    d = usb.core.find(backend=be)
    d.write(0x01, C.CCIDMessage(C.PC_to_RDR_GetSlotStatus, 0, 1).to_bytes())
    b = reader("sysmooctsim", serial="B")
    be.add(b)
    assert [x.serial_number for x in usb.core.find(find_all=True, backend=be)] == ["A", "B"]
    be.remove(a)
    assert [x.serial_number for x in usb.core.find(find_all=True, backend=be)] == ["B"]
    with pytest.raises(usb.core.USBError) as e:
        d.read(0x82, 64, 100)          # the answer was never read: the reader is gone
    assert e.value.errno == errno.ENODEV
    with pytest.raises(ValueError):
        be.add(b)
    # plugged again: a new address, a fresh device, the old handle stays dead
    be.add(a)
    again = usb.core.find(backend=be, custom_match=lambda x: x.serial_number == "A")
    assert again.address != d.address
    again.write(0x01, C.CCIDMessage(C.PC_to_RDR_GetSlotStatus, 0, 2).to_bytes())
    assert C.decode_bulk_in(bytes(again.read(0x82, 64, 100))).bSeq == 2
    with pytest.raises(usb.core.USBError) as e:
        d.read(0x82, 64, 100)
    assert e.value.errno == errno.ENODEV
    assert be.readers == [b, a]


def test_claim_and_release_interface():
    r = reader("cherry-st")          # its CCID interface is number 1
    be = EmulatedBackend([r])
    d = usb.core.find(backend=be)
    usb.util.claim_interface(d, 1)
    with pytest.raises(usb.core.USBError):
        usb.util.claim_interface(d, 0)
    usb.util.release_interface(d, 1)
    usb.util.dispose_resources(d)
    d.write(0x01, C.CCIDMessage(C.PC_to_RDR_GetSlotStatus, 0, 6).to_bytes())
    assert bytes(d.read(0x82, 64, 100))[6] == 6
