"""--reader / --card / --events: parsing, the QEMU options each reader gives,
the timeline played on the bridges, the pyscard card, the `ccidkit uefi run`
wiring. No QEMU here (tests/vm/test_usbredir.py boots one)."""

import socket
import time

import pytest
from hypothesis import given, strategies as st
from smartcard.Exceptions import CardConnectionException, NoCardException

from ccidkit.core.errors import CcidkitError
from ccidkit.emu import vm_readers as V
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.vm_readers import (
    Event, PcscCard, ReaderSpec, VmReaders, VmReadersError, parse_card_spec, parse_events,
    parse_reader_spec,
)


def err(fn, *args):
    with pytest.raises(VmReadersError) as e:
        fn(*args)
    assert isinstance(e.value, CcidkitError)
    return e.value.name


# -- parsing ---------------------------------------------------------------------------

def test_reader_specs():
    assert parse_reader_spec("qemu-ccid") == ReaderSpec("qemu-ccid")
    assert parse_reader_spec("emulated:sysmooctsim") == ReaderSpec("emulated", "sysmooctsim")
    assert parse_reader_spec("host:08e6:3437") == ReaderSpec("host", vid=0x08E6, pid=0x3437)
    assert parse_reader_spec("host:1D50:6141") == ReaderSpec("host", vid=0x1D50, pid=0x6141)
    assert err(parse_reader_spec, "emulated:nope") == "UNKNOWN_PROFILE"
    assert err(parse_reader_spec, "emulated:sysmosimbank-96") == "UNKNOWN_PROFILE"
    assert err(parse_reader_spec, "host:08e6") == "BAD_READER_SPEC"
    assert err(parse_reader_spec, "host:12345:1") == "BAD_READER_SPEC"
    assert err(parse_reader_spec, "usb-ccid") == "BAD_READER_SPEC"


def test_card_specs():
    assert parse_card_spec("usim") == (None, "usim")
    assert parse_card_spec("2:auth") == (2, "auth")
    assert parse_card_spec("pcsc:Virtual PCD 00 00") == (None, "pcsc:Virtual PCD 00 00")
    assert parse_card_spec("1:pcsc:0") == (1, "pcsc:0")
    assert err(parse_card_spec, "x:mini") == "BAD_CARD_SPEC"
    assert err(parse_card_spec, "3:") == "BAD_CARD_SPEC"
    assert err(parse_card_spec, "pcsc:") == "BAD_CARD_SPEC"


def test_events_of_the_usage_example():
    assert parse_events("2s remove 0; 4s insert 0:auth; 6s unplug") == [
        Event(2.0, "remove", 0, 0), Event(4.0, "insert", 0, 0, "auth"), Event(6.0, "unplug")]
    evs = parse_events("500ms plug @2\n1.5 insert mini @1  # comment\n0 remove 3 @1")
    assert evs == [Event(0.0, "remove", 1, 3), Event(0.5, "plug", 2),
                   Event(1.5, "insert", 1, 0, "mini")]
    assert evs[2].describe() == "1.5s insert 0:mini @1"
    for bad in ("2x remove", "remove 0", "2s eject", "2s insert 0:nosuchcard", "2s remove a",
                "2s unplug 1", "2s insert 0:mini @x", "99999s plug"):
        assert err(parse_events, bad) in ("BAD_EVENT", "UNKNOWN_CARD", "BAD_CARD_SPEC")


@given(st.text(max_size=60))
def test_event_parser_gives_events_or_its_error(text):
    try:
        evs = parse_events(text)
    except VmReadersError:
        return
    assert all(isinstance(e, Event) and 0 <= e.t <= V.MAX_EVENT_TIME_S for e in evs)
    assert [e.t for e in evs] == sorted(e.t for e in evs)


# -- QEMU options ------------------------------------------------------------------------

def test_options_pin_one_port_per_reader():
    rig = VmReaders(["qemu-ccid", "emulated:gemalto-pctwin", "host:08e6:3437"])
    assert err(rig.qemu_options) == "NOT_STARTED"
    rig.start()
    try:
        opts = rig.qemu_options()
        ccid, redir = rig.bridges[0].server, rig.bridges[1].server
        assert ccid.path.endswith("/vscard.sock") and redir.path.endswith("/usbredir.sock")
        assert opts["chardevs"] == ["socket,id=ccid0,path=%s,reconnect=1" % ccid.path,
                                    "socket,id=redir1,path=%s,reconnect=1" % redir.path]
        assert opts["devices"] == [
            "usb-ccid,id=ccid0,bus=xhci.0", "ccid-card-passthru,id=card0,chardev=ccid0",
            "usb-redir,id=redir1,chardev=redir1,bus=xhci.0,port=2",
            "usb-host,id=host2,bus=xhci.0,port=3,vendorid=0x08e6,productid=0x3437"]
    finally:
        rig.stop()


def test_options_land_on_the_qemu_command_line():
    from ccidkit.emu.qemu import build_command_line
    rig = VmReaders(["host:1d50:6141"])
    opts = rig.qemu_options()
    argv = build_command_line("/esp", "/vars", "/code", extra_devices=opts["devices"],
                              chardevs=opts["chardevs"])
    i = argv.index("usb-host,id=host0,bus=xhci.0,port=1,vendorid=0x1d50,productid=0x6141")
    assert argv[i - 1] == "-device" and argv.index("qemu-xhci,id=xhci") < i


def test_too_many_readers_and_unknown_cards_fail_before_anything_starts():
    assert err(VmReaders, ["qemu-ccid"] * 5) == "TOO_MANY_READERS"
    assert err(VmReaders, ["qemu-ccid"], ["nosuch"]) == "UNKNOWN_CARD"
    assert err(VmReaders, ["qemu-ccid"], (), "1s unplug @1") == "BAD_EVENT"


def test_cards_go_to_every_slot_later_options_win():
    rig = VmReaders(["emulated:sysmooctsim", "qemu-ccid"], ["none", "2:usim", "5:mini"])
    reader = rig.bridges[0].reader
    present = [s.card is not None for s in reader.slots]
    assert present == [False, False, True, False, False, True, False, False]
    assert type(reader.slots[2].card).__name__ != type(reader.slots[5].card).__name__
    assert rig.bridges[1].server.card is None and not rig.bridges[1].server.inserted
    rig = VmReaders(["emulated:gemalto-pctwin"])
    assert isinstance(rig.bridges[0].reader.slots[0].card, MiniCard)


# -- the timeline ----------------------------------------------------------------------------

def test_timeline_drives_an_emulated_reader():
    rig = VmReaders(["emulated:gemalto-pctwin"], [],
                    "0 remove 0; 20ms insert 0:usim; 40ms unplug; 60ms plug; 80ms remove 1; "
                    "100ms remove 0")
    with rig:
        rig.run_events(start=time.monotonic())
        assert rig.wait_events(10)
    reader = rig.bridges[0].reader
    assert reader.slots[0].card is None and not reader.gone
    assert rig.event_log[:4] == ["0s remove 0 @0: done", "0.02s insert 0:usim @0: done",
                                 "0.04s unplug @0: done", "0.06s plug @0: done"]
    assert rig.event_log[4].startswith("0.08s remove 1 @0: failed:")
    assert [e.name for e in rig.event_errors] == ["EVENT_FAILED"]
    assert rig.event_log[5] == "0.1s remove 0 @0: done"
    # unplug emptied the reader's interrupt queue; the last removal is in it
    assert reader.interrupt_in(8, 1) == bytes.fromhex("5002")


def test_timeline_counts_from_qemus_first_connection():
    rig = VmReaders(["emulated:gemalto-pctwin"], [], "0 remove 0")
    with rig:
        rig.run_events()
        assert not rig.wait_events(0.3) and rig.event_log == []   # no QEMU yet
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(rig.bridges[0].server.path)
        assert rig.wait_events(10)
        s.close()
    assert rig.event_log == ["0s remove 0 @0: done"]


class FakeQmp:
    def __init__(self, chardevs=()):
        self.calls = []
        self.chardevs = list(chardevs)

    def __call__(self, name, **arguments):
        self.calls.append((name, arguments))
        if name == "query-chardev":
            return [{"label": c, "filename": "x"} for c in self.chardevs]
        return {}


def test_qemu_ccid_and_host_plug_through_qmp():
    qmp = FakeQmp()
    rig = VmReaders(["qemu-ccid", "host:08e6:3437"])
    with rig:
        rig.qemu_options()
        for e in parse_events("0 unplug; 0 plug; 0 unplug @1; 0 plug @1"):
            rig.apply(e, qmp)
        path = rig.bridges[0].server.path
        with pytest.raises(VmReadersError) as e:
            rig.apply(Event(0, "unplug"))                      # no QMP: cannot
        assert e.value.name == "EVENT_FAILED"
        with pytest.raises(VmReadersError):
            rig.apply(Event(0, "insert", 1, 0, "mini"), qmp)   # a real reader's card
        with pytest.raises(VmReadersError):
            rig.apply(Event(0, "remove", 0, 1), qmp)           # qemu-ccid has slot 0 only
    assert qmp.calls == [
        ("device_del", {"id": "ccid0"}),
        ("query-chardev", {}),
        ("chardev-add", {"id": "ccid0", "backend": {"type": "socket", "data": {
            "addr": {"type": "unix", "data": {"path": path}}, "server": False,
            "reconnect": 1}}}),
        ("device_add", {"driver": "usb-ccid", "id": "ccid0", "bus": "xhci.0"}),
        ("device_add", {"driver": "ccid-card-passthru", "id": "card0", "chardev": "ccid0",
                        "bus": "ccid0.0"}),
        ("device_del", {"id": "host1"}),
        ("device_add", {"driver": "usb-host", "id": "host1", "bus": "xhci.0", "port": "2",
                        "vendorid": 0x08E6, "productid": 0x3437}),
    ]


def test_qemu_ccid_plug_keeps_a_chardev_still_there():
    qmp = FakeQmp(["ccid0", "con0"])
    with VmReaders(["qemu-ccid"]) as rig:
        rig.qemu_options()
        rig.apply(Event(0, "plug"), qmp)
    assert [c[0] for c in qmp.calls] == ["query-chardev", "device_add", "device_add"]


def test_qemu_ccid_insert_and_remove_go_through_vscard():
    rig = VmReaders(["qemu-ccid"], ["none"])
    with rig:
        srv = rig.bridges[0].server
        rig.apply(Event(0, "insert", 0, 0, "mini"))
        assert srv.inserted and isinstance(srv.card, MiniCard)
        rig.apply(Event(0, "remove"))
        assert not srv.inserted


# -- a host card through pyscard ---------------------------------------------------------------

class FakeConnection:
    def __init__(self, card, present=True):
        self.card = card
        self.present = present
        self.sent = []
        self.connected = False
        self.connects = 0

    def connect(self, disposition=None):
        if not self.present:
            raise NoCardException("no card", 0)
        assert disposition == 0             # SCARD_LEAVE_CARD: never reset the host's sessions
        self.connected = True
        self.connects += 1

    def disconnect(self):
        self.connected = False

    def getATR(self):
        return list(self.card.atr)

    def transmit(self, apdu):
        self.sent.append(bytes(apdu))
        r = self.card.process_apdu(bytes(apdu))
        return list(r[:-2]), r[-2], r[-1]


class FakeReader:
    def __init__(self, name, conn):
        self.name = name
        self.conn = conn

    def createConnection(self):
        return self.conn

    def __str__(self):
        return self.name


def test_pcsc_card_forwards_apdus_to_the_host_reader():
    conn = FakeConnection(MiniCard())
    readers = [FakeReader("Virtual PCD 00 00", FakeConnection(MiniCard(), False)),
               FakeReader("Virtual PCD 00 01", conn)]
    card = PcscCard("00 01", readers=lambda: readers)
    assert card.reader_name == "Virtual PCD 00 01" and card.atr == MiniCard().atr
    assert card.process_apdu(bytes.fromhex("80EE00000301020300")) == bytes.fromhex("0102039000")
    assert conn.sent == [bytes.fromhex("80EE00000301020300")]
    card.power_on()                                     # still connected: nothing to do
    assert conn.connects == 1
    card.power_off()
    assert not conn.connected
    card.power_on()
    assert conn.connected and conn.connects == 2
    assert PcscCard("1", readers=lambda: readers).reader_name == "Virtual PCD 00 01"
    with pytest.raises(VmReadersError) as e:
        PcscCard("0", readers=lambda: readers)                 # empty reader
    assert e.value.name == "NO_PCSC"
    with pytest.raises(VmReadersError) as e:
        PcscCard("Other", readers=lambda: readers)
    assert e.value.name == "NO_PCSC" and "Virtual PCD 00 00" in e.value.message


# -- `ccidkit uefi run` ---------------------------------------------------------------------------

def test_uefi_run_starts_the_readers_around_the_vm(monkeypatch, capsys):
    from ccidkit.emu import qemu
    from ccidkit.scripts.main import build_parser
    seen = {}

    class Done:
        exit_message = "status=0"

    def fake_run(image, app=None, args=(), timeout=0, extra_devices=(), chardevs=(), **kw):
        seen["devices"] = list(extra_devices)
        seen["chardevs"] = list(chardevs)
        # QEMU connects to the usbredir socket; the timeline starts then
        path = chardevs[0].split("path=")[1].split(",")[0]
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        assert made[0].wait_events(10)
        s.close()
        return 0, Done()
    monkeypatch.setattr(qemu, "run", fake_run)
    made = []

    class Rig(VmReaders):
        def __init__(self, *a, **kw):
            VmReaders.__init__(self, *a, **kw)
            made.append(self)
    monkeypatch.setattr(V, "VmReaders", Rig)
    args = build_parser().parse_args(
        ["uefi", "run", "--image", "/nowhere", "--app", "usb-probe", "--device", "usb-kbd",
         "--reader", "emulated:sysmooctsim", "--reader", "host:08e6:3437", "--card", "usim",
         "--events", "0 remove 1"])
    assert args.func.__name__ == "run_vm"
    assert args.func(args) == 0
    assert seen["devices"][0] == "usb-kbd"
    assert seen["devices"][1].startswith("usb-redir,id=redir0,chardev=redir0,bus=xhci.0,port=1")
    assert seen["devices"][2].startswith("usb-host,id=host1,")
    assert seen["chardevs"][0].startswith("socket,id=redir0,path=/")
    assert seen["chardevs"][0].endswith("/usbredir.sock,reconnect=1")
    assert "event 0s remove 1 @0: done" in capsys.readouterr().err
    args = build_parser().parse_args(["uefi", "run", "--image", "/x", "--reader", "usb"])
    assert args.func(args) == 2
    assert "qemu-ccid, emulated:PROFILE or host:VID:PID" in capsys.readouterr().err
    args = build_parser().parse_args(["uefi", "run", "--image", "/x", "--card", "mini"])
    assert args.func(args) == 2


# -- pcsc:NAME against a real pcscd + vpcd (a virtual card stands in for the physical one) --

from ccidkit.emu.pcscd import pcscd_vpcd  # noqa: E402,F401  (the module fixture)


def test_pcsc_card_through_pcscd_and_vpcd(pcscd_vpcd):
    vicc = pcscd_vpcd.vicc(MiniCard())
    try:
        card = None
        deadline = time.monotonic() + 10              # pcscd looks for the ATR every 400 ms
        while card is None:
            try:
                card = V.make_card("pcsc:Virtual PCD 00 00")
            except VmReadersError as e:
                assert e.name == "NO_PCSC"
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert card.reader_name.startswith("Virtual PCD 00 00")
        assert card.atr == MiniCard().atr
        assert card.process_apdu(bytes.fromhex("80EE000002CAFE00")) == bytes.fromhex("CAFE9000")
        # a host application lets go with pyscard's default (power the card down):
        # our handle is reset; it reconnects and the command goes through
        from smartcard.System import readers
        other = [r for r in readers() if str(r).startswith("Virtual PCD 00 00")][0]
        conn = other.createConnection()
        conn.connect()
        conn.disconnect()
        assert card.process_apdu(bytes.fromhex("80EE000002BEEF00")) == bytes.fromhex("BEEF9000")
        assert card.resets == 1
        card.power_off()
        # and ours lets go leaving the card powered: a host session stays usable
        conn = other.createConnection()
        for _ in range(50):
            # pcscd answers SCARD_W_UNPOWERED_CARD until its reader thread has seen
            # the powered-down card (under a second here): try again, bounded
            try:
                conn.connect()
                break
            except CardConnectionException:
                time.sleep(0.1)
        card.power_on()
        card.power_off()
        data, sw1, sw2 = conn.transmit(list(bytes.fromhex("80EE000001AA00")))
        assert (bytes(data), sw1, sw2) == (b"\xAA", 0x90, 0x00)
        conn.disconnect()
    finally:
        vicc.stop()
