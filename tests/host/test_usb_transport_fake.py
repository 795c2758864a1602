"""uefi/fw/usb_transport.py on CPython: efi.py over a stand-in ``host`` module
whose USB services are emulated readers (emu/reader.py), so the driver and
the PC/SC layer take the very code path they take inside UEFI."""

import pytest

from ccidkit.core import pcsc
from ccidkit.core.driver import Reader, ReaderError, PROTOCOL_T1
from ccidkit.core.transport import (
    TransportError, TransportTimeout, TransportStall, ReaderRemoved,
)
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.reader import EmulatedReader, ReaderTimeout, ReaderStall, ReaderGone
from ccidkit.uefi.fw import efi, usb_transport
from ccidkit.uefi.fw.efi_status import EFI_NO_MEDIA, status_name

ECHO = bytes.fromhex("80EE000004DEADBEEF00")


def _interface_descriptor(cfg):
    pos = 0
    while pos + 2 <= len(cfg):
        if cfg[pos + 1] == 4:
            return cfg[pos:pos + 9]
        pos += cfg[pos]
    return b""


def _endpoints(cfg):
    out = []
    pos = 0
    while pos + 2 <= len(cfg):
        if cfg[pos + 1] == 5:
            d = cfg[pos:pos + 7]
            out.append("%d:%d:%d:%d" % (d[2], d[3], d[4] | (d[5] << 8), d[6]))
        pos += cfg[pos]
    return ",".join(out) or "-"


class UsbHost:
    """Answers host.call's USB services (uefi/runtime/ck_usb.c's formats and
    statuses) from emulated readers; handle N is ``readers[N-1]``.

    ``chunk``: the most bytes one bulk-IN transfer returns (partial reads);
    ``extra_devices``: more usb.list lines (e.g. a keyboard); ``calls`` records
    every service call; ``stalls`` counts stall() calls (no real waiting)."""

    def __init__(self, readers, chunk=None, extra_devices=()):
        self.readers = list(readers)
        self.chunk = chunk
        self.extra = list(extra_devices)
        self.calls = []
        self.started = {}
        self.stalls = 0
        self.ticks = 0
        self.patch_class = {}       # handle -> interface class to report

    def _err(self, status, message):
        return "!%016x %s %s" % (status, status_name(status), message)

    def _dev_line(self, h, r):
        cfg = bytearray(r.config_descriptor)
        ifd = bytearray(_interface_descriptor(cfg))
        if h in self.patch_class:
            pos = bytes(cfg).find(bytes(ifd))
            ifd[5] = self.patch_class[h]
            cfg[pos + 5] = self.patch_class[h]
        return "%d %s %s %s %s" % (h, r.device_descriptor.hex(), bytes(cfg).hex(),
                                   bytes(ifd).hex(), _endpoints(cfg))

    def call(self, name, payload):
        self.calls.append((name, payload))
        if name == "stall":
            self.stalls += 1
            self.ticks += int(payload)
            return "="
        if name == "time.ticks_us":
            self.ticks += 100
            return "=%d" % self.ticks
        if name == "usb.list":
            lines = [self._dev_line(i + 1, r) for i, r in enumerate(self.readers)]
            return "=" + "\n".join(lines + self.extra)
        args = payload.split(" ")
        h = int(args[0])
        if h < 1 or h > len(self.readers):
            return self._err(efi.EFI_INVALID_PARAMETER, "unknown USB handle (call usb.list)")
        r = self.readers[h - 1]
        try:
            return "=" + self._usb(name, r, h, args)
        except ReaderTimeout:
            return self._err(efi.EFI_TIMEOUT, "transfer failed, UsbStatus 0x00000040")
        except ReaderStall:
            return self._err(efi.EFI_DEVICE_ERROR, "transfer failed, UsbStatus 0x00000002")
        except ReaderGone:
            return self._err(efi.EFI_NOT_FOUND, "device gone")

    def _usb(self, name, r, h, args):
        if r.gone:
            raise ReaderGone()
        if name == "usb.control":
            bm, req, wv, wi, tmo = [int(a) for a in args[1:6]]
            if bm & 0x80:
                return bytes(r.control(bm, req, wv, wi, int(args[6]))).hex()
            data = b"" if args[6] == "-" else bytes.fromhex(args[6])
            r.control(bm, req, wv, wi, data)
            return ""
        if name == "usb.bulk_out":
            data = bytes.fromhex(args[3])
            r.bulk_out(data, int(args[2]))
            return str(len(data))
        if name == "usb.bulk_in":
            n = int(args[3])
            if self.chunk:
                n = min(n, self.chunk)
            return bytes(r.bulk_in(n, int(args[2]))).hex()
        ep = int(args[1])
        if name == "usb.intr_start":
            if (h, ep) in self.started:
                return self._raise(efi.EFI_ALREADY_STARTED)
            self.started[(h, ep)] = int(args[2])
            return ""
        if name == "usb.intr_poll":
            if (h, ep) not in self.started:
                return self._raise(efi.EFI_NOT_STARTED)
            out = []
            for _ in range(64):
                try:
                    out.append(bytes(r.interrupt_in(self.started[(h, ep)], 1)).hex())
                except ReaderTimeout:
                    break
            return " ".join(out)
        if name == "usb.intr_stop":
            self.started.pop((h, ep), None)
            return ""
        raise AssertionError("unexpected service %s" % name)

    def _raise(self, status):
        raise _Answer(status)


class _Answer(Exception):
    def __init__(self, status):
        Exception.__init__(self, status)
        self.status = status


class Host(UsbHost):
    def call(self, name, payload):
        try:
            return UsbHost.call(self, name, payload)
        except _Answer as a:
            return self._err(a.status, "refused")


@pytest.fixture
def use_host():
    """use_host(readers, **options) installs a Host for efi.py; removed afterwards."""
    made = []

    def install(readers, **kw):
        host = Host(readers, **kw)
        efi.set_host(host)
        made.append(host)
        return host

    yield install
    efi.set_host(None)


def pctwin(card=None, **kw):
    return EmulatedReader("gemalto-pctwin", cards={0: card if card is not None else MiniCard()},
                          **kw)


KEYBOARD = "9 12011001000000084660070100010000000001 0902220001010080320904000001030101000921100100012241000705810308000a 090400000103010100 129:3:8:10"


# ---------------------------------------------------------------- enumeration

def test_find_readers_names_from_string_descriptors(use_host):
    r = pctwin(serial="S123")
    use_host([r], extra_devices=[KEYBOARD])
    ts = usb_transport.find_readers()
    assert len(ts) == 1
    t = ts[0]
    assert (t.vid, t.pid, t.handle, t.interface_number) == (0x08E6, 0x3437, 1, 0)
    assert (t.manufacturer, t.product, t.serial) == ("Gemplus", "USB SmartCard Reader", "S123")
    assert t.interface_name is None
    assert (t.ep_out, t.ep_in, t.ep_int) == (0x01, 0x82, 0x83)
    assert t.config_descriptor == r.config_descriptor
    assert t.has_interrupt
    # the interrupt transfer runs from the start: no NotifySlotChange can be missed
    assert ("usb.intr_start", "1 131 8 16") in efi._host.calls
    reader = Reader(t)
    assert reader.name == "Gemplus USB SmartCard Reader (S123)"


def test_vendor_class_interface_with_a_ccid_descriptor_counts(use_host):
    host = use_host([pctwin(), pctwin()])
    host.patch_class[1] = 0xFF           # pre-1.0 style: vendor class, same 54-byte descriptor
    host.patch_class[2] = 0x03           # another class: not a reader
    ts = usb_transport.find_readers()
    assert [t.handle for t in ts] == [1]


def test_no_usb_at_all(use_host):
    use_host([])
    assert usb_transport.find_readers() == []


def test_utf16le_decoding_with_a_surrogate_pair():
    raw = "Ré".encode("utf-16-le") + "\U0001F511".encode("utf-16-le")
    assert usb_transport.utf16le(raw) == "Ré\U0001F511"
    assert usb_transport.utf16le(b"A\x00B") == "A"      # an odd byte is dropped


# ---------------------------------------------------------------- the driver unchanged

def test_driver_power_protocol_and_echo(use_host):
    use_host([pctwin()])
    t = usb_transport.find_readers()[0]
    reader = Reader(t).open()
    assert reader.slots[0].present
    atr = reader.power_on(0)
    assert atr == MiniCard().atr
    assert reader.set_protocol(0, PROTOCOL_T1) == 1
    assert reader.transmit(0, ECHO) == bytes.fromhex("DEADBEEF9000")
    big = bytes(range(200))
    rsp = reader.transmit(0, bytes.fromhex("80EE0000C8") + big + b"\x00")
    assert rsp == big + b"\x90\x00"


def test_partial_bulk_in_reads_are_looped_by_the_driver(use_host):
    host = use_host([pctwin()], chunk=7)
    reader = Reader(usb_transport.find_readers()[0]).open()
    reader.power_on(0)
    reader.set_protocol(0, PROTOCOL_T1)
    big = bytes(range(150))
    assert reader.transmit(0, bytes.fromhex("80EE000096") + big + b"\x00") == big + b"\x90\x00"
    reads = [p for n, p in host.calls if n == "usb.bulk_in"]
    assert len(reads) > 25                       # 160-byte answer in pieces of 7


def test_pcsc_layer_over_the_firmware_transport(use_host):
    use_host([pctwin(serial="X1")])
    mgr = usb_transport.usb_manager(clock=False)
    ctx = pcsc.SCardEstablishContext(pcsc.SCARD_SCOPE_USER, mgr)
    try:
        names = pcsc.SCardListReaders(ctx)
        assert names == ["Gemplus USB SmartCard Reader (X1) 00 00"]
        h, proto = pcsc.SCardConnect(ctx, names[0], pcsc.SCARD_SHARE_SHARED,
                                     pcsc.SCARD_PROTOCOL_T1)
        assert pcsc.SCardTransmit(h, None, ECHO) == bytes.fromhex("DEADBEEF9000")
        # a second scan keeps the transport (strings are not read again)
        before = len(efi._host.calls)
        pcsc.SCardListReaders(ctx)
        assert not [c for c in efi._host.calls[before:] if c[0] == "usb.control"]
        pcsc.SCardDisconnect(h, pcsc.SCARD_LEAVE_CARD)
    finally:
        pcsc.SCardReleaseContext(ctx)


# ---------------------------------------------------------------- events

def test_slot_changes_queued_between_calls_are_all_seen(use_host):
    r = pctwin()
    use_host([r])
    reader = Reader(usb_transport.find_readers()[0]).open()
    assert reader.slots[0].present
    r.remove_card(0)
    assert reader.poll_events(0) == [0]
    assert not reader.slots[0].present
    r.insert_card(0, MiniCard())
    r.remove_card(0)
    r.insert_card(0, MiniCard())
    assert reader.poll_events(0) == [0]
    assert reader.slots[0].present
    assert reader.slots[0].events >= 3


def test_interrupt_wait_is_bounded_by_polling_steps(use_host):
    host = use_host([pctwin()])
    t = usb_transport.find_readers()[0]
    assert t.interrupt_in(8, 95) is None
    assert host.stalls == 9                       # 95 ms in steps of 10 ms
    assert t.interrupt_in(8, 0) is None
    assert host.stalls == 9


def test_interrupt_restarts_when_the_firmware_lost_it(use_host):
    r = pctwin()
    host = use_host([r])
    t = usb_transport.find_readers()[0]
    host.started.clear()                          # as after an endpoint reset
    r.remove_card(0)
    assert t.interrupt_in(8, 10) is None          # EFI_NOT_STARTED: restarted
    assert t.interrupt_in(8, 10) == bytes.fromhex("5002")


# ---------------------------------------------------------------- errors

def test_status_translation_table():
    cases = [
        (efi.EFI_TIMEOUT, "x", TransportTimeout),
        (efi.EFI_NOT_FOUND, "device gone", ReaderRemoved),
        (EFI_NO_MEDIA, "x", ReaderRemoved),
        (efi.EFI_INVALID_PARAMETER, "unknown USB handle (call usb.list)", ReaderRemoved),
        (efi.EFI_DEVICE_ERROR, "transfer failed, UsbStatus 0x00000002", TransportStall),
        (efi.EFI_DEVICE_ERROR, "transfer failed, UsbStatus 0x00000040", TransportTimeout),
        (efi.EFI_DEVICE_ERROR, "transfer failed, UsbStatus 0x00000004", TransportError),
        (efi.EFI_INVALID_PARAMETER, "bad", TransportError),
    ]
    for status, msg, cls in cases:
        err = usb_transport.translate(efi.EfiError(msg, status))
        assert type(err) is cls, (status, msg)
        assert err.code == status


def test_timeout_stall_and_removal(use_host):
    r = pctwin()
    use_host([r])
    t = usb_transport.find_readers()[0]
    with pytest.raises(TransportTimeout):
        t.bulk_in(64, 5)
    r.faults.stall("bulk_in")
    with pytest.raises(TransportStall):
        t.bulk_in(64, 5)
    r.unplug()
    with pytest.raises(ReaderRemoved):
        t.bulk_out(b"\x65" + bytes(9), 100)
    r.plug()
    with pytest.raises(ReaderRemoved):          # once gone, always gone
        t.bulk_in(64, 5)


def test_driver_sees_the_reader_leave(use_host):
    r = pctwin()
    use_host([r])
    reader = Reader(usb_transport.find_readers()[0]).open()
    reader.power_on(0)
    reader.set_protocol(0, PROTOCOL_T1)
    r.unplug()
    with pytest.raises(ReaderError) as e:
        reader.transmit(0, ECHO)
    assert e.value.name == "IFD_NO_SUCH_DEVICE"
    assert reader.gone


def test_close_stops_the_interrupt_transfer(use_host):
    host = use_host([pctwin()])
    t = usb_transport.find_readers()[0]
    t.close()
    assert host.calls[-1] == ("usb.intr_stop", "1 131")
    with pytest.raises(ReaderRemoved):
        t.bulk_in(64, 5)


class DetachedHost(Host):
    """The moment after a pull: the UsbIo handle is still listed, but every
    transfer to the device fails (the bus driver has not removed it yet)."""

    def __init__(self, readers, detached=(), **kw):
        Host.__init__(self, readers, **kw)
        self.detached = set(detached)

    def call(self, name, payload):
        if name.startswith("usb.") and name != "usb.list" and int(payload.split(" ")[0]) in self.detached:
            self.calls.append((name, payload))
            return self._err(efi.EFI_DEVICE_ERROR, "transfer failed, UsbStatus 0x00000004")
        return Host.call(self, name, payload)


def test_a_transfer_broken_by_a_pull_names_the_reader_removed():
    r = pctwin()
    host = DetachedHost([r])
    efi.set_host(host)
    try:
        t = usb_transport.find_readers()[0]
        reader = Reader(t).open()
        reader.power_on(0)
        reader.set_protocol(0, PROTOCOL_T1)
        host.detached.add(1)
        with pytest.raises(ReaderError) as e:
            reader.transmit(0, ECHO)
        # the failed bulk transfer was followed by GET_STATUS (USB 2.0 §9.4.5), which failed too
        names = [n for n, _ in host.calls[-2:]]
        assert names == ["usb.bulk_out", "usb.control"]
        assert host.calls[-1][1].split(" ")[1:4] == ["128", "0", "0"]
    finally:
        efi.set_host(None)
    assert e.value.name == "IFD_NO_SUCH_DEVICE"
    assert reader.gone


def test_a_slow_reader_that_answers_get_status_stays_a_timeout(use_host):
    r = pctwin()
    host = use_host([r])
    t = usb_transport.find_readers()[0]
    with pytest.raises(TransportTimeout):
        t.bulk_in(64, 5)
    assert host.calls[-1][0] == "usb.control"         # the probe ran and the reader answered
    with pytest.raises(TransportTimeout):             # and the transport is not marked gone
        t.bulk_in(64, 5)
