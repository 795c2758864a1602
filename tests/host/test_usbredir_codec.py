"""usbredir: the codec (exact bytes, both header sizes, malformed input) and the
usb-host server driven by a stand-in for QEMU's usb-redir (the codec's guest role)."""

import os
import socket
import stat
import struct
import time

import pytest
from hypothesis import given, strategies as st

from ccidkit.core import ccid as C
from ccidkit.core.ccid_descriptor import find_ccid_interfaces
from ccidkit.core.errors import CcidkitError
from ccidkit.emu import profiles as P
from ccidkit.emu import usbredir as U
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.reader import EmulatedReader
from ccidkit.emu.usbredir import Codec, Packet, UsbredirError, UsbredirServer


def h(text):
    return bytes.fromhex(text.replace(" ", ""))


def pair(host_caps=U.OUR_CAPS, guest_caps=U.OUR_CAPS):
    """A host codec and a guest codec that exchanged hellos."""
    host = Codec("host", caps=host_caps)
    guest = Codec("guest", caps=guest_caps)
    hh = host.encode(Packet(U.HELLO))
    gh = guest.encode(Packet(U.HELLO))
    assert guest.feed(hh)[0].caps == host_caps
    assert host.feed(gh)[0].caps == guest_caps
    return host, guest


# -- codec: exact bytes ----------------------------------------------------------------

def test_hello_bytes_and_caps():
    c = Codec("host", version="ccidkit usbredir")
    raw = c.encode(Packet(U.HELLO))
    assert raw[:12] == h("00000000 44000000 00000000")          # type 0, 68 bytes, id 0 (u32)
    assert raw[12:28] == b"ccidkit usbredir"
    assert raw[28:76] == bytes(48)
    assert raw[76:] == struct.pack("<I", 0x7E)                  # caps 1..6
    assert len(raw) == 80
    assert U.OUR_CAPS & U.XHCI_CAPS == U.XHCI_CAPS


def test_header_is_12_bytes_until_both_hellos_then_16():
    host = Codec("host")
    with pytest.raises(UsbredirError) as e:
        host.encode(Packet(U.DEVICE_DISCONNECT))
    assert e.value.name == "USBREDIR_NO_HELLO"
    host, guest = pair()
    assert host.ids64 and guest.ids64
    raw = host.encode(Packet(U.DEVICE_DISCONNECT, 0x0102030405))
    assert raw == h("02000000 00000000 0504030201000000")
    # without 64bits_ids on one side the header stays 12 bytes
    host, guest = pair(guest_caps=U.OUR_CAPS & ~(1 << U.CAP_64BITS_IDS))
    assert not host.ids64
    assert host.encode(Packet(U.DEVICE_DISCONNECT, 7)) == h("02000000 00000000 07000000")


def test_device_connect_with_and_without_device_version():
    host, guest = pair()
    p = Packet(U.DEVICE_CONNECT, 0, speed=1, device_class=0, device_subclass=0,
               device_protocol=0, vendor_id=0x08E6, product_id=0x3437, device_version_bcd=0x0100)
    raw = host.encode(p)
    assert raw[16:] == h("01 00 00 00 E608 3734 0001")
    assert guest.feed(raw) == [p]
    host, guest = pair(guest_caps=U.XHCI_CAPS)
    raw = host.encode(p)
    assert raw[16:] == h("01 00 00 00 E608 3734")
    got = guest.feed(raw)[0]
    assert "device_version_bcd" not in got.fields and got.product_id == 0x3437


def test_bulk_packet_32bit_length_split_and_joined():
    host, guest = pair()
    data = bytes(range(256)) * 300                              # 76800 bytes > 65535
    raw = host.encode(Packet(U.BULK_PACKET, 9, data, endpoint=0x82, status=0,
                             length=len(data), stream_id=0))
    # endpoint, status, length low, stream id, length high
    assert raw[16:26] == struct.pack("<BBHIH", 0x82, 0, 76800 & 0xFFFF, 0, 1)
    got = guest.feed(raw)
    assert got[0].length == 76800 and got[0].data == data and got[0].id == 9
    host, guest = pair(guest_caps=U.OUR_CAPS & ~(1 << U.CAP_32BITS_BULK_LENGTH))
    with pytest.raises(UsbredirError) as e:
        host.encode(Packet(U.BULK_PACKET, 1, data, endpoint=0x82, length=len(data)))
    assert e.value.name == "USBREDIR_BAD_FIELD"


def test_guest_requests_decode_on_host_side():
    host, guest = pair()
    out = guest.encode(Packet(U.BULK_PACKET, 5, h("6F 00000000 00 00 00 00 00"),
                              endpoint=0x01, length=10, stream_id=0))
    inreq = guest.encode(Packet(U.BULK_PACKET, 6, endpoint=0x82, length=1024, stream_id=0))
    ctrl = guest.encode(Packet(U.CONTROL_PACKET, 7, endpoint=0x80, request=6,
                               requesttype=0x80, value=0x0100, index=0, length=18))
    got = host.feed(out + inreq + ctrl[:5])
    assert [p.id for p in got] == [5, 6]
    assert got[0].data == h("6F 00000000 00 00 00 00 00") and got[1].length == 1024
    assert got[1].data == b""
    (c,) = host.feed(ctrl[5:])
    assert (c.request, c.requesttype, c.value, c.length) == (6, 0x80, 0x0100, 18)
    assert host.pending == 0


def test_ep_info_layout():
    host, guest = pair()
    reader = EmulatedReader("gemalto-pctwin")
    info, ep_info, connect = U.device_packets(reader)
    raw = host.encode(ep_info)
    assert len(raw) == 16 + 96 + 64
    got = guest.feed(host.encode(info) + raw + host.encode(connect))
    assert got[0].interface_class[0] == 0x0B and got[0].interface_count == 1
    e = got[1]
    assert e.ep_type[U.ep_index(0x01)] == U.TYPE_BULK and e.ep_type[U.ep_index(0x82)] == U.TYPE_BULK
    assert e.ep_type[U.ep_index(0x83)] == U.TYPE_INTERRUPT and e.interval[U.ep_index(0x83)] == 16
    assert e.max_packet_size[U.ep_index(0x82)] == 64 and e.max_packet_size[0] == 64
    assert e.ep_type[U.ep_index(0x81)] == U.TYPE_INVALID
    assert e.ep_type[0] == e.ep_type[16] == U.TYPE_CONTROL
    assert e.ep_type.count(U.TYPE_INVALID) == 32 - 5
    assert (got[2].vendor_id, got[2].product_id) == (0x08E6, 0x3437)
    assert got[2].device_version_bcd == 0x0100
    # a reader whose CCID interface is number 1: interface 0 is listed before it
    info, ep_info, connect = U.device_packets(EmulatedReader("cherry-st"))
    assert info.interface_count == 2
    assert info.interface[:3] == b"\x00\x01\x00" and info.interface_class[:2] == b"\xFF\x0B"
    assert ep_info.interface[U.ep_index(0x82)] == 1
    info, ep_info, connect = U.device_packets(EmulatedReader("iccd-token"))
    assert ep_info.ep_type[U.ep_index(0x83)] == U.TYPE_INVALID
    assert (connect.vendor_id, connect.product_id) == (0x1209, 0x0CC1)


# -- codec: malformed input ----------------------------------------------------------------

def test_decoder_errors_are_named_and_sticky():
    g = Codec("guest")
    with pytest.raises(UsbredirError) as e:
        g.feed(h("01000000 08000000 00000000") + bytes(8))
    assert e.value.name == "USBREDIR_NO_HELLO"
    with pytest.raises(UsbredirError):
        g.feed(b"")                                             # stays failed
    for raw, name in [
            (h("63000000 00000000 00000000"), "USBREDIR_UNKNOWN_TYPE"),
            (h("00000000 FFFFFFFF 00000000"), "USBREDIR_TOO_LONG"),
            (h("00000000 03000000 00000000 414243"), "USBREDIR_BAD_HELLO")]:
        with pytest.raises(UsbredirError) as e:
            Codec("guest").feed(raw)
        assert e.value.name == name
        assert isinstance(e.value, CcidkitError)
    host, guest = pair()
    with pytest.raises(UsbredirError) as e:
        # bulk OUT announcing 10 bytes with 3
        host.feed(struct.pack("<IIQ", U.BULK_PACKET, 13, 1) + struct.pack("<BBHIH", 1, 0, 10, 0, 0)
                  + b"abc")
    assert e.value.name == "USBREDIR_BAD_LENGTH"
    host, guest = pair()
    with pytest.raises(UsbredirError) as e:
        host.feed(guest.encode(Packet(U.DEVICE_CONNECT, 0)))     # a host-only packet
    assert e.value.name == "USBREDIR_WRONG_SIDE"


@given(st.binary(max_size=400))
def test_decoder_on_arbitrary_bytes_gives_packets_or_usbredir_error(data):
    for role in ("host", "guest"):
        c = Codec(role)
        try:
            c.feed(data)
        except UsbredirError:
            pass


@given(st.binary(max_size=300), st.integers(0, 300))
def test_decoder_after_hello_on_arbitrary_bytes(data, cut):
    host, guest = pair()
    try:
        for chunk in (data[:cut], data[cut:]):
            host.feed(chunk)
    except UsbredirError:
        pass


@given(st.binary(max_size=2000), st.integers(0, 0xFFFFFFFF), st.sampled_from([0x01, 0x82]))
def test_bulk_roundtrip(data, id_, ep):
    host, guest = pair()
    if ep & 0x80:
        p = Packet(U.BULK_PACKET, id_, data, endpoint=ep, status=0, length=len(data),
                   stream_id=0)
        assert guest.feed(host.encode(p)) == [p]
    else:
        p = Packet(U.BULK_PACKET, id_, data, endpoint=ep, status=0, length=len(data),
                   stream_id=0)
        assert host.feed(guest.encode(p)) == [p]


# -- the server, with a stand-in for QEMU ------------------------------------------------------

class FakeQemu:
    """The usb-guest side of usbredir over the server's socket."""

    def __init__(self, server, caps=U.OUR_CAPS):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(server.path)
        self.sock.settimeout(5)
        self.codec = Codec("guest", caps=caps, version="qemu stand-in")
        self.packets = []
        self.next_id = 100
        self.sock.sendall(self.codec.encode(Packet(U.HELLO)))

    def send(self, type_, data=b"", **fields):
        self.next_id += 1
        self.sock.sendall(self.codec.encode(Packet(type_, self.next_id, data, **fields)))
        return self.next_id

    def next(self, type_=None, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            for i, p in enumerate(self.packets):
                if type_ is None or p.type == type_:
                    return self.packets.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s within %.0f s" % (U.TYPE_NAMES.get(type_), timeout))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise AssertionError("server closed the connection")
            self.packets += self.codec.feed(data)

    def nothing(self, type_, wait=0.3):
        try:
            p = self.next(type_, wait)
        except AssertionError:
            return True
        raise AssertionError("unexpected %r" % p)

    def control_in(self, requesttype, request, value, index, length):
        i = self.send(U.CONTROL_PACKET, endpoint=0x80, request=request, requesttype=requesttype,
                      value=value, index=index, length=length)
        p = self.next(U.CONTROL_PACKET)
        assert p.id == i
        return p

    def xfr(self, msg_bytes, length=1024):
        o = self.send(U.BULK_PACKET, msg_bytes, endpoint=0x01, length=len(msg_bytes),
                      stream_id=0)
        p = self.next(U.BULK_PACKET)
        assert (p.id, p.status, p.length) == (o, 0, len(msg_bytes))
        i = self.send(U.BULK_PACKET, endpoint=0x82, length=length, stream_id=0)
        p = self.next(U.BULK_PACKET)
        assert p.id == i
        return p

    def close(self):
        self.sock.close()


@pytest.fixture
def served():
    made = []

    def make(profile="gemalto-pctwin", cards=None, **kw):
        reader = EmulatedReader(profile, cards=cards if cards is not None else {0: MiniCard()})
        srv = UsbredirServer(reader, **kw).start()
        made.append(srv)
        return srv
    yield make
    for srv in made:
        srv.stop()


def attach(srv):
    q = FakeQemu(srv)
    hello = q.next(U.HELLO)
    assert hello.caps == U.OUR_CAPS and hello.version == "ccidkit usbredir"
    info = q.next(U.INTERFACE_INFO)
    q.next(U.EP_INFO)
    connect = q.next(U.DEVICE_CONNECT)
    assert srv.wait_state("attached", 5)
    return q, info, connect


def test_server_socket_is_private_and_options_pin_the_port(served):
    srv = served()
    mode = os.stat(os.path.dirname(srv.path)).st_mode
    assert stat.S_IMODE(mode) == 0o700
    opts = srv.qemu_options(2)
    assert opts == {"chardevs": ["socket,id=redir2,path=%s,reconnect=1" % srv.path],
                    "devices": ["usb-redir,id=redir2,chardev=redir2,bus=xhci.0,port=3"]}


def test_enumeration_descriptors_and_configuration(served):
    srv = served()
    q, info, connect = attach(srv)
    assert (connect.vendor_id, connect.product_id, connect.speed) == (0x08E6, 0x3437, 1)
    dev = q.control_in(0x80, 6, 0x0100, 0, 18)
    assert dev.status == 0 and dev.data == srv.reader.device_descriptor
    cfg = q.control_in(0x80, 6, 0x0200, 0, 9)
    total = struct.unpack_from("<H", cfg.data, 2)[0]
    cfg = q.control_in(0x80, 6, 0x0200, 0, total)
    (desc,) = find_ccid_interfaces(cfg.data)
    expected = P.profile("gemalto-pctwin")["ccid"]
    assert desc.dwFeatures == expected["dwFeatures"] == 0x00010230
    assert desc.dwMaxCCIDMessageLength == 271 and desc.bMaxSlotIndex == 0
    bad = q.control_in(0x80, 6, 0x0700, 0, 10)                 # no such descriptor
    assert (bad.status, bad.length, bad.data) == (U.STATUS_STALL, 0, b"")
    i = q.send(U.SET_CONFIGURATION, configuration=1)
    st_ = q.next(U.CONFIGURATION_STATUS)
    assert (st_.id, st_.status, st_.configuration) == (i, 0, 1)
    assert srv.wait_configured(5)
    q.send(U.SET_ALT_SETTING, interface=0, alt=0)
    a = q.next(U.ALT_SETTING_STATUS)
    assert (a.status, a.interface, a.alt) == (0, 0, 0)
    q.send(U.GET_ALT_SETTING, interface=3)
    assert q.next(U.ALT_SETTING_STATUS).status == U.STATUS_INVAL
    # class request GET_DATA_RATES: the profile's list
    rates = q.control_in(0xA1, C.REQUEST_GET_DATA_RATES, 0, 0, 256)
    assert rates.data[:4] == struct.pack("<I", 10753)
    q.close()


def _power_on(q, seq=0):
    msg = C.CCIDMessage(C.PC_to_RDR_IccPowerOn, bSlot=0, bSeq=seq, bPowerSelect=1)
    return q.xfr(msg.to_bytes())


def test_bulk_exchange_and_in_request_waits_for_an_answer(served):
    srv = served()
    q, _, _ = attach(srv)
    # an IN request with nothing queued stays pending
    i = q.send(U.BULK_PACKET, endpoint=0x82, length=64, stream_id=0)
    assert q.nothing(U.BULK_PACKET)
    msg = C.CCIDMessage(C.PC_to_RDR_GetSlotStatus, bSlot=0, bSeq=3).to_bytes()
    o = q.send(U.BULK_PACKET, msg, endpoint=0x01, length=len(msg), stream_id=0)
    got = [q.next(U.BULK_PACKET), q.next(U.BULK_PACKET)]
    assert [p.id for p in got] == [o, i]
    assert got[1].data == h("81 00000000 00 03 01 00 00")      # present, inactive
    answer = _power_on(q, 4)
    atr = MiniCard().atr
    assert answer.data[0] == 0x80 and answer.data[10:] == atr and answer.data[6] == 4


def test_in_answer_is_cut_at_the_requested_length(served):
    srv = served()
    q, _, _ = attach(srv)
    msg = C.CCIDMessage(C.PC_to_RDR_IccPowerOn, bSlot=0, bSeq=1, bPowerSelect=1).to_bytes()
    q.send(U.BULK_PACKET, msg, endpoint=0x01, length=len(msg), stream_id=0)
    q.next(U.BULK_PACKET)
    parts = []
    for _ in range(10):
        q.send(U.BULK_PACKET, endpoint=0x82, length=8, stream_id=0)
        p = q.next(U.BULK_PACKET)
        assert p.length == len(p.data) <= 8
        parts.append(p.data)
        if len(b"".join(parts)) >= 10 + len(MiniCard().atr):
            break
    whole = b"".join(parts)
    assert len(parts) > 2
    assert [len(x) for x in parts[:-1]] == [8] * (len(parts) - 1)
    assert whole[10:] == MiniCard().atr


def test_cancel_data_packet_answers_cancelled(served):
    srv = served()
    q, _, _ = attach(srv)
    i = q.send(U.BULK_PACKET, endpoint=0x82, length=64, stream_id=0)
    q.sock.sendall(q.codec.encode(Packet(U.CANCEL_DATA_PACKET, i)))
    p = q.next(U.BULK_PACKET)
    assert (p.id, p.status, p.length) == (i, U.STATUS_CANCELLED, 0)
    # the reader's next answer goes to the next request, not the cancelled one
    answer = _power_on(q, 0)
    assert answer.data[6] == 0 and answer.status == 0


def test_interrupts_flow_only_while_started(served):
    srv = served()
    q, _, _ = attach(srv)
    srv.remove_card(0)                                          # while stopped: kept
    assert q.nothing(U.INTERRUPT_PACKET)
    i = q.send(U.START_INTERRUPT_RECEIVING, endpoint=0x83)
    s = q.next(U.INTERRUPT_RECEIVING_STATUS)
    assert (s.id, s.status, s.endpoint) == (i, 0, 0x83)
    # the attach-time report (card present) then the removal, merged by the reader
    first = q.next(U.INTERRUPT_PACKET)
    assert (first.endpoint, first.data) == (0x83, h("50 03"))
    second = q.next(U.INTERRUPT_PACKET)
    assert second.data == h("50 02")
    srv.insert_card(0, MiniCard())
    assert q.next(U.INTERRUPT_PACKET).data == h("50 03")
    q.send(U.STOP_INTERRUPT_RECEIVING, endpoint=0x83)
    assert q.next(U.INTERRUPT_RECEIVING_STATUS).status == 0
    srv.remove_card(0)
    assert q.nothing(U.INTERRUPT_PACKET)
    q.send(U.START_INTERRUPT_RECEIVING, endpoint=0x83)
    q.next(U.INTERRUPT_RECEIVING_STATUS)
    assert q.next(U.INTERRUPT_PACKET).data == h("50 02")
    q.send(U.START_INTERRUPT_RECEIVING, endpoint=0x82)          # not an interrupt endpoint
    assert q.next(U.INTERRUPT_RECEIVING_STATUS).status == U.STATUS_INVAL


def test_eight_slots_notify_in_three_bytes(served):
    srv = served("sysmooctsim", cards={0: MiniCard(), 5: MiniCard()})
    q, info, connect = attach(srv)
    assert (connect.vendor_id, connect.product_id) == (0x1D50, 0x6141)
    q.send(U.START_INTERRUPT_RECEIVING, endpoint=0x83)
    q.next(U.INTERRUPT_RECEIVING_STATUS)
    # slots 0 and 5 present and changed: 03, 0C (slot 5 = bits 2-3 of byte 1), 00
    assert q.next(U.INTERRUPT_PACKET).data == h("50 03 0C")


def test_unplug_waits_for_ack_then_plug_reattaches(served):
    srv = served()
    q, _, _ = attach(srv)
    srv.unplug()
    q.next(U.DEVICE_DISCONNECT)
    assert srv.state == "detaching"
    # a request racing the detach fails with ioerror
    i = q.send(U.BULK_PACKET, endpoint=0x82, length=64, stream_id=0)
    p = q.next(U.BULK_PACKET)
    assert (p.id, p.status) == (i, U.STATUS_IOERROR)
    srv.plug()                                                   # deferred until the ack
    assert q.nothing(U.DEVICE_CONNECT)
    q.sock.sendall(q.codec.encode(Packet(U.DEVICE_DISCONNECT_ACK, 0)))
    q.next(U.INTERFACE_INFO)
    q.next(U.EP_INFO)
    q.next(U.DEVICE_CONNECT)
    assert srv.wait_state("attached", 5)
    assert not srv.reader.gone


def test_reconnect_after_qemu_goes_away(served):
    srv = served(unix=False)
    assert srv.chardev_arg("x").endswith("nodelay=on,reconnect=1")
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.close()
    assert srv._wait(lambda: srv.connections == 1 and srv.state == "idle", 5)
    # a second client gets the whole greeting again
    q = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    guest = Codec("guest")
    q.sendall(guest.encode(Packet(U.HELLO)))
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 4 and time.monotonic() < deadline:
        got += guest.feed(q.recv(65536))
    assert [p.type for p in got] == [U.HELLO, U.INTERFACE_INFO, U.EP_INFO, U.DEVICE_CONNECT]
    q.close()


def test_malformed_stream_drops_the_connection_and_records_the_error(served):
    srv = served()
    q, _, _ = attach(srv)
    q.sock.sendall(struct.pack("<IIQ", 77, 0, 1))
    assert srv._wait(lambda: srv.state == "idle", 5)
    assert isinstance(srv.errors[-1], UsbredirError)
    assert srv.errors[-1].name == "USBREDIR_UNKNOWN_TYPE"


def test_trace_never_shows_data(served):
    srv = served()
    q, _, _ = attach(srv)
    apdu = C.CCIDMessage(C.PC_to_RDR_XfrBlock, bSlot=0, bSeq=9,
                         abData=h("00 20 00 81 08 31 32 33 34 FF FF FF FF")).to_bytes()
    q.send(U.BULK_PACKET, apdu, endpoint=0x01, length=len(apdu), stream_id=0)
    q.next(U.BULK_PACKET)
    text = "\n".join(srv.trace)
    assert "31 32 33 34" not in text and "31323334" not in text
    assert "<- bulk_packet" in text and "endpoint=1" in text


_guest_packets = st.one_of(
    st.builds(lambda rt, rq, v, i, n: (U.CONTROL_PACKET, b"", dict(
        endpoint=0x80, request=rq, requesttype=rt | 0x80, value=v, index=i, length=n)),
        st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF), st.integers(0, 300)),
    st.builds(lambda rt, rq, v, i, d: (U.CONTROL_PACKET, d, dict(
        endpoint=0, request=rq, requesttype=rt & 0x7F, value=v, index=i, length=len(d))),
        st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF), st.binary(max_size=16)),
    st.builds(lambda d: (U.BULK_PACKET, d, dict(endpoint=0x01, length=len(d), stream_id=0)),
              st.binary(max_size=80)),
    st.builds(lambda ep, c: (U.SET_CONFIGURATION, b"", dict(configuration=c)),
              st.just(0), st.integers(0, 3)),
    st.builds(lambda i, a: (U.SET_ALT_SETTING, b"", dict(interface=i, alt=a)),
              st.integers(0, 3), st.integers(0, 3)),
    st.builds(lambda ep: (U.START_INTERRUPT_RECEIVING, b"", dict(endpoint=ep)),
              st.sampled_from([0x83, 0x82, 0x81])),
    st.just((U.GET_CONFIGURATION, b"", {})),
)


@given(st.lists(_guest_packets, max_size=12))
def test_server_answers_every_request_whatever_the_guest_sends(packets):
    # every control message and data packet gets exactly one answer with its id,
    # and the server stays up (never an exception out of its thread)
    reader = EmulatedReader("gemalto-pctwin", cards={0: MiniCard()})
    srv = UsbredirServer(reader).start()
    try:
        q, _, _ = attach(srv)
        for type_, data, fields in packets:
            i = q.send(type_, data, **fields)
            answer_type = {U.CONTROL_PACKET: U.CONTROL_PACKET, U.BULK_PACKET: U.BULK_PACKET,
                           U.SET_CONFIGURATION: U.CONFIGURATION_STATUS,
                           U.GET_CONFIGURATION: U.CONFIGURATION_STATUS,
                           U.SET_ALT_SETTING: U.ALT_SETTING_STATUS,
                           U.START_INTERRUPT_RECEIVING: U.INTERRUPT_RECEIVING_STATUS}[type_]
            p = q.next(answer_type)
            assert p.id == i
            if type_ == U.CONTROL_PACKET and fields["endpoint"] & 0x80:
                assert len(p.data) == p.length <= fields["length"]
        assert srv._thread.is_alive() and srv.errors == []
        q.close()
    finally:
        srv.stop()
