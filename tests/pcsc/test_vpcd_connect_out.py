"""vpcd's other mode: reader.conf ``DEVICENAME 127.0.0.1:PORT`` makes vpcd
connect out to cards listening on loopback (slot n at PORT+n); nothing of
vpcd listens, so this pcscd keeps the host's network.

vpcd 3.3 ends pcscd (fortify abort, "bit out of range 0 - FD_SETSIZE on
fd_set") as soon as a card it was connected to stops listening, or when no
card listens when pcscd starts: here both cards listen before pcscd starts
and pcscd is stopped before them. Removal is tested in the other mode
(test_vpcd_minicard.py).
"""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.pcscd import die_with_parent, private_pcscd, unavailable_reason, vpcd_reader
from ccidkit.emu.vicc import Vicc

pytest.importorskip("smartcard")
from smartcard.Exceptions import SmartcardException  # noqa: E402
from smartcard.System import readers  # noqa: E402

WAIT = 10.0


class EventCard(MiniCard):
    def __init__(self):
        super().__init__()
        self.events = []

    def event(self, name, **detail):
        self.events.append(name)


def _two_free_ports():
    """A free loopback port whose successor is free too (bounded tries)."""
    for _ in range(50):
        a = socket.socket()
        b = socket.socket()
        try:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port >= 65535:
                continue
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
        finally:
            a.close()
            b.close()
    raise AssertionError("no two consecutive free loopback ports")


def _wait_port(port):
    deadline = time.monotonic() + WAIT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "nothing listens on %d" % port
            time.sleep(0.05)


def _connect(name):
    deadline = time.monotonic() + WAIT
    while True:
        try:
            for r in readers():
                if str(r) == name:
                    conn = r.createConnection()
                    conn.connect()
                    return conn
        except SmartcardException:
            pass
        assert time.monotonic() < deadline, "no card in %s" % name
        time.sleep(0.05)


def test_vpcd_connects_out_to_a_card_and_to_the_cli(tmp_path):
    reason = unavailable_reason()
    if reason:
        pytest.skip("private pcscd: " + reason)
    port = _two_free_ports()
    card = EventCard()
    ccidkit = os.path.join(os.path.dirname(sys.executable), "ccidkit")
    with Vicc(card, listen=port) as vicc:
        cli = subprocess.Popen([ccidkit, "vicc", "--card", "mini", "--listen", str(port + 1)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
        try:
            _wait_port(port + 1)
            daemon = private_pcscd([vpcd_reader(port, connect_to="127.0.0.1")],
                                   private_network=False)
            with daemon as pcscd:
                pcscd.activate()
                log = pcscd.read_log()
                assert "Connected to virtual ICC on 127.0.0.1 port %d" % port in log
                assert "Connected to virtual ICC on 127.0.0.1 port %d" % (port + 1) in log
                conn = _connect("Virtual PCD 00 00")
                try:
                    assert bytes(conn.getATR()) == card.atr
                    payload = bytes(range(256)) * 8
                    data, sw1, sw2 = conn.transmit(list(b"\x80\xEE\x00\x00\x00\x08\x00"
                                                        + payload + b"\x00\x00"))
                    assert (bytes(data), sw1, sw2) == (payload, 0x90, 0x00)
                finally:
                    conn.disconnect()
                    conn.release()
                conn = _connect("Virtual PCD 00 01")
                try:
                    data, sw1, sw2 = conn.transmit(list(bytes.fromhex("80EE0000024F4B00")))
                    assert (bytes(data), sw1, sw2) == (b"OK", 0x90, 0x00)
                finally:
                    conn.disconnect()
                    conn.release()
                assert pcscd.running
            assert vicc.connections == 1
            assert "power_on" in card.events
        finally:
            # pcscd is gone by now: the cards may stop listening
            if cli.poll() is None:
                os.kill(cli.pid, signal.SIGTERM)
            assert cli.wait(WAIT) == 0
            cli.stderr.close()
