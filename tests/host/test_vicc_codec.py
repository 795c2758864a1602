"""vpcd card-side protocol: codec, session and the threaded runner against a
fake vpcd on loopback (no pcscd here; tests/pcsc/ runs the real one)."""

import socket
import struct
import time

import pytest
from hypothesis import given, strategies as st

from ccidkit.core.errors import CcidkitError
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.vicc import (MAX_FRAME, Decoder, Frame, Vicc, ViccError, ViccSession,
                              decode_frame, deliver_event, encode_control, encode_frame,
                              parse_payload)

SELECT_APP = bytes.fromhex("00A4040009F0636369646B697401")
SELECT_APP_RESPONSE = bytes.fromhex("6F 16 84 09 F0636369646B697401 A5 09 50 07") + b"ccidkit"


class EventCard(MiniCard):
    """MiniCard that records session events the way the card contract says."""

    def __init__(self):
        super().__init__()
        self.events = []
        self.calls = []

    def power_on(self):
        self.calls.append("power_on()")
        return super().power_on()

    def power_off(self):
        self.calls.append("power_off()")
        return super().power_off()

    def reset(self, warm=True):
        self.calls.append("reset(warm=%s)" % warm)
        return super().reset(warm)

    def event(self, name, **detail):
        self.events.append((name, detail))


# -- codec ----------------------------------------------------------------------------------

def test_encode_frame_exact_bytes():
    assert encode_frame(b"\x90\x00") == b"\x00\x02\x90\x00"
    assert encode_frame(bytes(300)) == b"\x01\x2C" + bytes(300)
    assert encode_frame(bytes(MAX_FRAME))[:2] == b"\xFF\xFF"
    assert encode_control(4) == b"\x00\x01\x04"
    assert encode_control(0) == b"\x00\x01\x00"


def test_encode_frame_refuses_empty_and_oversized():
    with pytest.raises(ViccError) as e:
        encode_frame(b"")
    assert e.value.name == "VICC_EMPTY"
    with pytest.raises(ViccError) as e:
        encode_frame(bytes(MAX_FRAME + 1))
    assert e.value.name == "VICC_TOO_LONG" and e.value.code == MAX_FRAME + 1
    with pytest.raises(ViccError) as e:
        encode_control(3)
    assert e.value.name == "VICC_BAD_CONTROL" and e.value.code == 3


def test_controls_and_apdus_decode():
    assert parse_payload(b"\x00") == Frame("power_off")
    assert parse_payload(b"\x01") == Frame("power_on")
    assert parse_payload(b"\x02") == Frame("reset")
    assert parse_payload(b"\x04") == Frame("get_atr")
    assert parse_payload(b"\x00\xB0") == Frame("apdu", b"\x00\xB0")
    for bad in (3, 5, 0x80, 0xFF):
        with pytest.raises(ViccError) as e:
            parse_payload(bytes((bad,)))
        assert e.value.name == "VICC_BAD_CONTROL" and e.value.code == bad


def test_decoder_reassembles_byte_by_byte():
    stream = encode_control(1) + encode_frame(SELECT_APP) + encode_control(4)
    dec = Decoder()
    frames = []
    for i in range(len(stream)):
        frames += dec.feed(stream[i:i + 1])
    assert frames == [Frame("power_on"), Frame("apdu", SELECT_APP), Frame("get_atr")]
    assert dec.pending == 0


def test_decoder_caps_announced_length_before_buffering():
    dec = Decoder(max_payload=261)
    assert dec.feed(b"\x01\x05") == []          # 261: allowed, waiting for payload
    dec = Decoder(max_payload=261)
    with pytest.raises(ViccError) as e:
        dec.feed(b"\x01\x06")                   # 262 announced: refused at once
    assert e.value.name == "VICC_TOO_LONG" and e.value.code == 262
    with pytest.raises(ViccError):
        dec.feed(b"\x00\x01\x04")               # stays failed


def test_decoder_zero_length_frame_is_an_error():
    with pytest.raises(ViccError) as e:
        Decoder().feed(b"\x00\x00")
    assert e.value.name == "VICC_EMPTY"


def test_decode_frame_exactly_one():
    assert decode_frame(b"\x00\x01\x02") == Frame("reset")
    for bad in (b"", b"\x00", b"\x00\x02\x00", b"\x00\x01\x04\x00"):
        with pytest.raises(ViccError) as e:
            decode_frame(bad)
        assert e.value.name == "VICC_TRUNCATED"


def test_vicc_error_is_a_ccidkit_error():
    assert issubclass(ViccError, CcidkitError)
    assert str(ViccError("x", 3, "VICC_BAD_CONTROL")) == "VICC_BAD_CONTROL: x"


@given(st.binary(max_size=400), st.integers(min_value=0, max_value=MAX_FRAME))
def test_decoder_total_on_arbitrary_bytes(data, cap):
    dec = Decoder(max_payload=cap)
    try:
        frames = dec.feed(data)
    except ViccError:
        return
    for f in frames:
        assert f.kind in ("power_off", "power_on", "reset", "get_atr", "apdu")
        assert len(f.data) <= cap


@given(st.lists(st.one_of(st.sampled_from([0, 1, 2, 4]),
                          st.binary(min_size=2, max_size=300)), max_size=8),
       st.integers(min_value=1, max_value=64))
def test_decoder_round_trip_any_split(items, step):
    stream = b""
    expected = []
    for item in items:
        if isinstance(item, int):
            stream += encode_control(item)
            expected.append(parse_payload(bytes((item,))))
        else:
            stream += encode_frame(item)
            expected.append(Frame("apdu", item))
    dec = Decoder()
    got = []
    for i in range(0, len(stream), step):
        got += dec.feed(stream[i:i + step])
    assert got == expected and dec.pending == 0


# -- session --------------------------------------------------------------------------------

def test_session_answers_atr_apdu_and_delivers_events_in_order():
    card = EventCard()
    s = ViccSession(card)
    assert s.receive(encode_control(4)) == encode_frame(card.atr)
    assert s.receive(encode_control(1)) == b""
    assert (s.receive(encode_frame(SELECT_APP + b"\x00"))
            == encode_frame(SELECT_APP_RESPONSE + b"\x90\x00"))
    assert s.receive(encode_control(2) + encode_control(4)) == encode_frame(card.atr)
    assert s.receive(encode_control(0)) == b""
    assert [n for n, _ in card.events] == ["power_on", "reset_warm", "power_off"]
    assert card.calls == ["power_on()", "reset(warm=True)", "power_off()"]
    assert s.atr_polls == 2
    assert s.apdus == [(SELECT_APP + b"\x00", SELECT_APP_RESPONSE + b"\x90\x00")]
    assert s.trace == ["** power_on", "-> 00 A4 04 00 09 F0 63 63 69 64 6B 69 74 01 00",
                       "<- 6F 16 84 09 F0 63 63 69 64 6B 69 74 01 A5 09 50 07 63 63 69 64 6B 69 74 90 00",
                       "** reset_warm", "** power_off"]


def test_session_card_failure_answers_6f00():
    class Broken:
        atr = b"\x3B\x00"

        def process_apdu(self, apdu):
            raise CcidkitError("card-side failure", name="BROKEN")

    class Silent(Broken):
        def process_apdu(self, apdu):
            return b""

    s = ViccSession(Broken())
    assert s.receive(encode_frame(b"\x00\xB0\x00\x00\x10")) == b"\x00\x02\x6F\x00"
    assert s.errors and s.errors[0].name == "BROKEN"
    s = ViccSession(Silent())
    assert s.receive(encode_frame(b"\x00\xB0\x00\x00\x10")) == b"\x00\x02\x6F\x00"
    assert s.errors[0].name == "VICC_EMPTY"


def test_deliver_event_on_cards_without_event_method():
    card = MiniCard()
    deliver_event(card, "power_on")
    assert card.powered and card.power_ups == 1
    deliver_event(card, "power_off")
    assert not card.powered
    deliver_event(card, "reset_cold")
    assert card.powered


# -- the runner against a fake vpcd ------------------------------------------------------

def _recv_frame(sock, timeout=5.0):
    sock.settimeout(timeout)
    head = b""
    while len(head) < 2:
        chunk = sock.recv(2 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = struct.unpack(">H", head)
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return body


def _exchange(sock, payload):
    """The reply frame, or None when the card side closed the connection."""
    try:
        sock.sendall(encode_frame(payload))
        return _recv_frame(sock)
    except (ConnectionResetError, BrokenPipeError):
        return None


def _fake_vpcd_listener():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)
    return srv


def test_runner_connects_and_reconnects_like_a_card_to_a_restarted_pcscd():
    card = EventCard()
    srv = _fake_vpcd_listener()
    port = srv.getsockname()[1]
    with Vicc(card, port=port, reconnect_interval=0.05) as vicc:
        conn, _ = srv.accept()
        assert _exchange(conn, b"\x04") == card.atr
        conn.sendall(encode_control(1))
        big = bytes([0x80, 0xEE, 0, 0, 0, 0x10, 0]) + bytes(range(256)) * 16 + b"\x00\x00"
        assert _exchange(conn, big) == bytes(range(256)) * 16 + b"\x90\x00"
        conn.close()                               # "pcscd restarted"
        conn2, _ = srv.accept()                    # the card comes back by itself
        assert _exchange(conn2, b"\x04") == card.atr
        assert _exchange(conn2, SELECT_APP)[-2:] == b"\x90\x00"
        assert vicc.connections == 2
        assert [n for n, _ in card.events] == ["power_on"]
        conn2.close()
    srv.close()


def test_runner_remove_closes_and_insert_returns():
    card = EventCard()
    srv = _fake_vpcd_listener()
    port = srv.getsockname()[1]
    with Vicc(card, port=port, reconnect_interval=0.05) as vicc:
        conn, _ = srv.accept()
        assert vicc.wait_connected(5)
        vicc.remove()
        conn.settimeout(5)
        assert conn.recv(10) == b""               # removal: the socket closes
        conn.close()
        srv.settimeout(0.5)
        with pytest.raises(socket.timeout):
            srv.accept()                           # and stays away
        vicc.insert()
        srv.settimeout(10)
        conn, _ = srv.accept()
        assert _exchange(conn, b"\x04") == card.atr
        conn.close()
    srv.close()


def test_runner_listen_mode_serves_a_connecting_vpcd():
    card = EventCard()
    with Vicc(card, listen=0) as vicc:
        assert vicc.port
        conn = socket.create_connection(("127.0.0.1", vicc.port), timeout=5)
        assert _exchange(conn, b"\x04") == card.atr
        conn.sendall(encode_control(1) + encode_control(2))
        assert _exchange(conn, b"\x00\xA4\x00\x0C\x02\x2F\x00") == b"\x90\x00"
        assert [n for n, _ in card.events] == ["power_on", "reset_warm"]
        vicc.remove()
        assert conn.recv(10) == b""
        conn.close()
        # removed: a connecting vpcd is closed at once, never left waiting
        conn = socket.create_connection(("127.0.0.1", vicc.port), timeout=5)
        try:
            conn.sendall(b"\x00\x01\x04")
            assert conn.recv(10) == b""
        except ConnectionResetError:
            pass                                   # closed before our bytes arrived
        conn.close()
        vicc.insert()
        deadline = time.monotonic() + 5
        while True:
            conn = socket.create_connection(("127.0.0.1", vicc.port), timeout=5)
            reply = _exchange(conn, b"\x04")
            conn.close()
            if reply is not None or time.monotonic() > deadline:
                break
        assert reply == card.atr


def test_runner_malformed_stream_drops_the_connection():
    card = EventCard()
    with Vicc(card, listen=0, max_payload=300) as vicc:
        conn = socket.create_connection(("127.0.0.1", vicc.port), timeout=5)
        conn.sendall(b"\x01\x2D" + bytes(301))     # 301 > cap
        try:
            assert conn.recv(10) == b""
        except ConnectionResetError:
            pass                                   # closed with our bytes unread
        conn.close()
        deadline = time.monotonic() + 5
        while not vicc.errors and time.monotonic() < deadline:
            time.sleep(0.01)
        assert vicc.errors[0].name == "VICC_TOO_LONG"


def test_runner_retries_when_the_socket_factory_fails():
    card = EventCard()
    srv = _fake_vpcd_listener()
    port = srv.getsockname()[1]
    calls = []

    def factory():
        calls.append(1)
        if len(calls) <= 2:
            raise CcidkitError("namespace gone", name="PCSCD_NETNS")
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    with Vicc(card, port=port, socket_factory=factory, reconnect_interval=0.01):
        conn, _ = srv.accept()
        assert _exchange(conn, b"\x04") == card.atr
        conn.close()
    srv.close()
    assert len(calls) >= 3


def test_session_keeps_a_bounded_trace():
    from ccidkit.emu.vicc import MAX_TRACE
    s = ViccSession(MiniCard())
    apdu = encode_frame(b"\x80\xEE\x00\x00\x01\x5A\x00")
    for _ in range(MAX_TRACE + 10):
        assert s.receive(apdu) == b"\x00\x03\x5A\x90\x00"
    assert MAX_TRACE // 2 <= len(s.apdus) <= MAX_TRACE
    assert len(s.trace) <= MAX_TRACE
    assert s.trace[-1] == "<- 5A 90 00" and s.apdus[-1][1] == b"\x5A\x90\x00"


# -- the command line -------------------------------------------------------------------

def test_cli_usage_and_card_errors(capsys):
    from ccidkit.scripts.main import main
    assert main(["vicc", "--port", "70000", "--exit-after", "1"]) == 2
    assert main(["vicc", "--exit-after", "0"]) == 2
    assert main(["vicc", "--card", "no-such-card", "--exit-after", "1"]) == 1
    err = capsys.readouterr().err
    assert "ports are 0..65535" in err and "cannot make card 'no-such-card'" in err


def test_cli_listen_serves_traces_and_stops_on_sigterm():
    import os
    import re
    import signal
    import subprocess
    import sys
    ccidkit = os.path.join(os.path.dirname(sys.executable), "ccidkit")
    proc = subprocess.Popen([ccidkit, "vicc", "--card", "mini", "--listen", "0", "--trace"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
        m = re.match(r"vicc: mini listening on 127\.0\.0\.1:(\d+)$", first.strip())
        assert m, first
        conn = socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=10)
        assert _exchange(conn, b"\x04") == MiniCard().atr
        conn.sendall(encode_control(1))
        assert _exchange(conn, b"\x80\xEE\x00\x00\x02\xCA\xFE\x00") == b"\xCA\xFE\x90\x00"
        conn.close()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
        rest = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
    assert rest.splitlines()[:3] == ["** power_on", "-> 80 EE 00 00 02 CA FE 00",
                                     "<- CA FE 90 00"]
