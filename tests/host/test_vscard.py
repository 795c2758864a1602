"""The VSCard codec and server (QEMU's ccid-card-passthru protocol), without QEMU."""

import os
import socket
import stat
import struct
import time

import pytest
from hypothesis import given, strategies as st

from ccidkit.core.errors import CcidkitError
from ccidkit.emu import vscard
from ccidkit.emu.vscard import (
    Decoder, Message, StubCard, VSCardError, VSCardServer, decode_error, decode_init,
    decode_message, encode, encode_error, encode_init,
)


def h(text):
    return bytes.fromhex(text.replace(" ", ""))


# -- codec ---------------------------------------------------------------

def test_encode_exact_bytes():
    assert encode(vscard.VSC_APDU, 0, h("00 A4 04 00")) == h(
        "00000007 00000000 00000004 00A40400")
    assert encode_init() == h("00000001 FFFFFFFF 0000000C 56534344 00000002 00000000")
    assert encode_error(0, 0) == h("00000002 00000000 00000004 00000000")
    assert encode_error(3, 7) == h("00000002 00000007 00000004 00000003")
    assert encode(vscard.VSC_CardRemove, 0) == h("00000006 00000000 00000000")


def test_encode_rejects_unknown_type_and_oversize():
    with pytest.raises(VSCardError) as e:
        encode(10, 0, b"")
    assert e.value.name == "VSC_UNKNOWN_TYPE"
    with pytest.raises(VSCardError) as e:
        encode(vscard.VSC_APDU, 0, bytes(vscard.MAX_PAYLOAD + 1))
    assert e.value.name == "VSC_TOO_LONG"


def test_decode_init_and_error():
    assert decode_init(h("56534344 00000002 00000000")) == (2, 0)
    assert decode_init(h("56534344 00000002 00000005 00000001")) == (2, 5 | (1 << 32))
    for bad in (b"", b"VSCD", h("56534345 00000002 00000000"), h("56534344 00000002 0000")):
        with pytest.raises(VSCardError) as e:
            decode_init(bad)
        assert e.value.name == "VSC_BAD_INIT"
    assert decode_error(h("00000003")) == 3
    with pytest.raises(VSCardError):
        decode_error(h("000003"))


def test_decoder_reassembles_split_stream():
    stream = (encode_init() + encode(vscard.VSC_ATR, 0, h("3B 02 14 50"))
              + encode(vscard.VSC_APDU, 0, h("80 EE 00 00 02 AB CD")))
    dec = Decoder()
    got = []
    for i in range(len(stream)):          # one byte at a time
        got.extend(dec.feed(stream[i:i + 1]))
    assert [m.name for m in got] == ["Init", "ATR", "APDU"]
    assert got[1] == Message(vscard.VSC_ATR, 0, h("3B 02 14 50"))
    assert got[2].payload == h("80 EE 00 00 02 AB CD")
    assert got[0].reader_id == 0xFFFFFFFF
    assert dec.pending == 0


def test_decoder_refuses_oversized_length_before_buffering():
    dec = Decoder(max_payload=300)
    with pytest.raises(VSCardError) as e:
        dec.feed(struct.pack(">III", vscard.VSC_APDU, 0, 301))
    assert e.value.name == "VSC_TOO_LONG" and e.value.code == vscard.VSC_APDU
    assert isinstance(e.value, CcidkitError)
    with pytest.raises(VSCardError):      # stays failed: the stream cannot resync
        dec.feed(encode_error(0))
    # The default cap is the largest extended APDU, not the 4 GiB a header can announce.
    with pytest.raises(VSCardError):
        Decoder().feed(h("00000007 00000000 FFFFFFFF"))


def test_decoder_refuses_unknown_type():
    for t in (0, 10, 0xFFFFFFFF):
        with pytest.raises(VSCardError) as e:
            Decoder().feed(struct.pack(">III", t, 0, 0))
        assert e.value.name == "VSC_UNKNOWN_TYPE"


def test_decode_message_exactly_one():
    assert decode_message(encode_error(1, 0)) == Message(vscard.VSC_Error, 0, h("00000001"))
    for bad in (b"", encode_error(0)[:-1], encode_error(0) + encode_error(0), h("00")):
        with pytest.raises(VSCardError) as e:
            decode_message(bad)
        assert e.value.name == "VSC_TRUNCATED"


@given(st.binary(max_size=80))
def test_decoder_on_arbitrary_bytes(data):
    dec = Decoder(max_payload=64)
    try:
        msgs = dec.feed(data)
    except VSCardError:
        return
    total = sum(vscard.HEADER_SIZE + len(m.payload) for m in msgs)
    assert total + dec.pending == len(data)
    assert b"".join(m.encode() for m in msgs) == data[:total]


@given(st.lists(st.tuples(st.sampled_from(sorted(vscard.MESSAGE_NAMES)),
                          st.integers(0, 0xFFFFFFFF), st.binary(max_size=40)), max_size=6),
       st.integers(1, 13))
def test_roundtrip_any_chunking(msgs, chunk):
    stream = b"".join(encode(t, r, p) for t, r, p in msgs)
    dec = Decoder()
    got = []
    for i in range(0, len(stream), chunk):
        got.extend(dec.feed(stream[i:i + chunk]))
    assert [(m.type, m.reader_id, m.payload) for m in got] == msgs


@given(st.binary(max_size=40))
def test_decode_init_on_arbitrary_bytes(data):
    try:
        version, caps = decode_init(data)
    except VSCardError:
        return
    assert data[:4] == b"VSCD" and version == struct.unpack(">I", data[4:8])[0]
    assert caps >= 0


# -- the stub card ---------------------------------------------------------

def test_stub_card_answers():
    card = StubCard()
    assert card.atr == h("3B 08 63 63 69 64 6B 69 74 30")
    assert card.process_apdu(h("80 EE 00 00 04 DE AD BE EF 00")) == h("DE AD BE EF 90 00")
    assert card.process_apdu(h("80 EE 00 00 02 01 02")) == h("01 02 90 00")
    assert card.process_apdu(h("80 EE 00 00 00 00 02 AA BB 00 00")) == h("AA BB 90 00")
    assert card.process_apdu(h("80 EE 00 00 05 01 02")) == h("67 00")
    assert card.process_apdu(h("00 A4 04 00 08") + StubCard.STUB_AID) == h("90 00")
    assert card.process_apdu(h("00 A4 04 00 02 A0 00")) == h("6A 82")
    assert card.process_apdu(h("00 B0 00 00 00")) == h("6D 00")
    assert card.process_apdu(h("A0 B0 00 00 00")) == h("6E 00")
    assert card.process_apdu(h("00 A4")) == h("67 00")


# -- the server over a real socket, QEMU's side played by the test ----------

class Peer:
    """Plays QEMU's ccid-card-passthru end of the socket."""

    def __init__(self, server):
        if server.unix:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(server.path)
        else:
            self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        self.sock.settimeout(5)
        self.dec = Decoder()
        self.queue = []

    def recv(self):
        deadline = time.monotonic() + 5
        while not self.queue:
            assert time.monotonic() < deadline, "no message from the server"
            data = self.sock.recv(4096)
            assert data, "server closed the connection"
            self.queue.extend(self.dec.feed(data))
        return self.queue.pop(0)

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        self.sock.close()


def greet(peer):
    """QEMU's answers to the server's greeting; returns the ATR message."""
    init = peer.recv()
    assert init.name == "Init" and decode_init(init.payload) == (2, 0)
    add = peer.recv()
    assert add.name == "ReaderAdd" and add.payload == b"ccidkit VSCard"
    peer.send(encode_init(2, 0))
    peer.send(encode_error(vscard.VSC_SUCCESS, 0))   # the ReaderAdd ack, reader 0
    atr = peer.recv()
    assert atr.name == "ATR"
    return atr


@pytest.mark.parametrize("unix", [True, False])
def test_server_serves_atr_and_apdus(unix):
    card = StubCard()
    with VSCardServer(card, unix=unix) as srv:
        if unix:
            mode = os.stat(os.path.dirname(srv.path)).st_mode
            assert stat.S_IMODE(mode) == 0o700
            assert srv.chardev_arg("c0") == "socket,id=c0,path=%s,reconnect=1" % srv.path
        else:
            assert srv.chardev_arg("c0") == (
                "socket,id=c0,host=127.0.0.1,port=%d,nodelay=on,reconnect=1" % srv.port)
        peer = Peer(srv)
        assert srv.wait_connected(5)
        atr = greet(peer)
        assert atr.payload == card.atr and atr.reader_id == 0
        peer.send(encode(vscard.VSC_APDU, 0, h("80 EE 00 00 03 01 02 03 00")))
        rsp = peer.recv()
        assert (rsp.name, rsp.reader_id, rsp.payload) == ("APDU", 0, h("01 02 03 90 00"))
        peer.send(encode(vscard.VSC_Flush, 0))
        assert peer.recv().name == "FlushComplete"
        srv.remove_card()
        assert peer.recv().name == "CardRemove"
        srv.insert_card(h("3B 02 14 50"))
        ins = peer.recv()
        assert (ins.name, ins.payload) == ("ATR", h("3B 02 14 50"))
        peer.close()
        assert srv.apdus == [(h("80 EE 00 00 03 01 02 03 00"), h("01 02 03 90 00"))]
        assert srv.peer_version == 2
        assert srv.trace[0].startswith("-> Init")
    if unix:
        assert not os.path.exists(srv.path)


def test_server_accepts_a_reconnect_and_greets_again():
    with VSCardServer(StubCard()) as srv:
        first = Peer(srv)
        greet(first)
        first.close()
        deadline = time.monotonic() + 5
        while srv.connections < 2 and time.monotonic() < deadline:
            try:
                second = Peer(srv)
            except OSError:
                time.sleep(0.05)
                continue
            greet(second)
            second.close()
            break
        assert srv.connections == 2


def test_server_drops_a_malformed_stream_and_records_why():
    with VSCardServer(StubCard()) as srv:
        peer = Peer(srv)
        greet(peer)
        peer.send(h("00000007 00000000 7FFFFFFF"))   # APDU announcing 2 GiB
        deadline = time.monotonic() + 5
        while not srv.errors and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [e.name for e in srv.errors] == ["VSC_TOO_LONG"]
        assert peer.sock.recv(100) == b""              # the server hung up
        peer.close()


def test_server_answers_6F00_when_the_card_fails():
    class Broken(StubCard):
        def process_apdu(self, apdu):
            raise VSCardError("card fault", None, "TEST")

    with VSCardServer(Broken()) as srv:
        peer = Peer(srv)
        greet(peer)
        peer.send(encode(vscard.VSC_APDU, 0, h("00 B0 00 00 00")))
        assert peer.recv().payload == h("6F 00")
        peer.close()


def test_server_refuses_an_atr_qemu_would_not_take():
    srv = VSCardServer(StubCard())
    with pytest.raises(VSCardError) as e:
        srv._check_atr(h("00 11"))
    assert e.value.name == "VSC_BAD_ATR"
    with pytest.raises(VSCardError):
        srv._check_atr(b"\x3b" + bytes(40))


def test_server_starts_the_card_session_at_insertion():
    class Counting(StubCard):
        ups = downs = 0

        def power_on(self):
            self.ups += 1
            return self.atr

        def power_off(self):
            self.downs += 1

    card = Counting()
    with VSCardServer(card) as srv:
        peer = Peer(srv)
        greet(peer)
        assert (card.ups, card.downs) == (1, 0)
        srv.remove_card()
        assert peer.recv().name == "CardRemove"
        srv.insert_card()
        assert peer.recv().payload == card.atr
        assert (card.ups, card.downs) == (2, 1)
        peer.close()


def test_server_serves_minicard():
    minicard = pytest.importorskip("ccidkit.emu.card.minicard")
    card = minicard.MiniCard()
    with VSCardServer(card) as srv:
        peer = Peer(srv)
        assert greet(peer).payload == card.atr
        peer.send(encode(vscard.VSC_APDU, 0, h("80 EE 00 00 02 CA FE 00")))
        assert peer.recv().payload == h("CA FE 90 00")
        peer.close()


def test_server_leaves_chosen_apdus_unanswered():
    with VSCardServer(StubCard()) as srv:
        peer = Peer(srv)
        greet(peer)
        srv.leave_unanswered(lambda apdu: apdu[1] == 0xEE, count=1)
        peer.send(encode(vscard.VSC_APDU, 0, h("80 EE 00 00 01 AA 00")))     # swallowed
        peer.send(encode(vscard.VSC_APDU, 0, h("80 EE 00 00 01 BB 00")))     # answered
        rsp = peer.recv()
        assert rsp.payload == h("BB 90 00")              # the first one never got an answer
        peer.send(encode(vscard.VSC_APDU, 0, h("80 EE 00 00 01 CC 00")))     # count used up
        assert peer.recv().payload == h("CC 90 00")
        peer.close()
    assert srv.unanswered == [h("80 EE 00 00 01 AA 00")]
    assert [a for a, _ in srv.apdus] == [h("80 EE 00 00 01 BB 00"), h("80 EE 00 00 01 CC 00")]
