"""A MiniCard behind a real pcscd + vpcd, judged by pyscard, pcsc_scan and OpenSC.

One private pcscd for the module (emu/pcscd.py: its own /run and network
namespace); the card connects to vpcd's slot 0 from inside that namespace.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from ccidkit.core.hexutil import to_hex
from ccidkit.emu.card.minicard import AID, FID_EF_1K, MiniCard, ef_content
from ccidkit.emu.pcscd import die_with_parent

smartcard = pytest.importorskip("smartcard")
from smartcard.Exceptions import CardConnectionException, NoCardException  # noqa: E402
from smartcard.System import readers  # noqa: E402
from smartcard import scard  # noqa: E402

READER0 = "Virtual PCD 00 00"
READER1 = "Virtual PCD 00 01"
WAIT = 10.0          # seconds: the bound of every wait for pcscd here


class EventCard(MiniCard):
    """MiniCard that records its session events as the card contract says."""

    def __init__(self):
        super().__init__()
        self.events = []

    def event(self, name, **detail):
        self.events.append((name, detail))

    def names(self, start=0):
        return [n for n, _ in self.events[start:]]


@pytest.fixture(scope="module")
def card(pcscd_vpcd):
    c = EventCard()
    vicc = pcscd_vpcd.vicc(c)
    c.vicc = vicc
    assert vicc.wait_connected(WAIT)
    _wait_state(READER0, scard.SCARD_STATE_PRESENT)
    yield c
    vicc.stop()


def _reader(name):
    for r in readers():
        if str(r) == name:
            return r
    raise AssertionError("no reader %r in %r" % (name, readers()))


def _state(name):
    hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert hresult == scard.SCARD_S_SUCCESS
    try:
        hresult, states = scard.SCardGetStatusChange(ctx, 0,
                                                     [(name, scard.SCARD_STATE_UNAWARE)])
        assert hresult == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hresult)
        return states[0][1], bytes(states[0][2])
    finally:
        scard.SCardReleaseContext(ctx)


def _wait_state(name, flag, present=True):
    deadline = time.monotonic() + WAIT
    while True:
        state, atr = _state(name)
        if bool(state & flag) == present:
            return state, atr
        assert time.monotonic() < deadline, "reader %s state %#x" % (name, state)
        time.sleep(0.05)


def _connect(name=READER0):
    conn = _reader(name).createConnection()
    conn.connect()
    return conn


def _apdu(conn, hexstr_or_bytes):
    apdu = bytes.fromhex(hexstr_or_bytes) if isinstance(hexstr_or_bytes, str) else hexstr_or_bytes
    data, sw1, sw2 = conn.transmit(list(apdu))
    return bytes(data), (sw1 << 8) | sw2


def _wait_events(card, predicate):
    deadline = time.monotonic() + WAIT
    while not predicate(card.names()):
        assert time.monotonic() < deadline, card.names()
        time.sleep(0.02)


def test_readers_listed(card):
    names = [str(r) for r in readers()]
    assert READER0 in names and READER1 in names


def test_atr_seen_by_pcscd_status(card):
    state, atr = _state(READER0)
    assert state & scard.SCARD_STATE_PRESENT
    assert atr == card.atr


def test_select_and_read_binary_1k_in_chunks(card):
    conn = _connect()
    try:
        assert bytes(conn.getATR()) == card.atr
        data, sw = _apdu(conn, b"\x00\xA4\x04\x00" + bytes((len(AID),)) + AID + b"\x00")
        assert sw == 0x9000 and data[:2] == b"\x6F\x16" and AID in data
        data, sw = _apdu(conn, "00A4000C022F00")
        assert (data, sw) == (b"", 0x9000)
        got = b""
        while len(got) < 1024:
            n = min(200, 1024 - len(got))
            data, sw = _apdu(conn, bytes((0x00, 0xB0, len(got) >> 8, len(got) & 0xFF, n)))
            assert sw == 0x9000 and len(data) == n
            got += data
        assert got == ef_content(FID_EF_1K)
        # past the end: the card's own status word comes through unchanged
        assert _apdu(conn, "00B0040010") == (b"", 0x6B00)
    finally:
        conn.disconnect()
        conn.release()


def test_extended_echo_4k_both_ways(card):
    payload = bytes((i * 13 + 7) & 0xFF for i in range(4096))
    apdu = b"\x80\xEE\x00\x00\x00\x10\x00" + payload + b"\x00\x00"
    conn = _connect()
    try:
        data, sw = _apdu(conn, apdu)
        assert sw == 0x9000 and data == payload
        assert card.vicc.session.apdus[-1][0] == apdu
    finally:
        conn.disconnect()
        conn.release()


def _tool(pcscd, argv, timeout=60):
    env = pcscd.client_env()
    env["XDG_CACHE_HOME"] = pcscd.run_dir + "/cache"      # no stale ATR list download
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_pcsc_scan_shows_the_atr(pcscd_vpcd, card):
    done = _tool(pcscd_vpcd, ["pcsc_scan", "-n", "-c"])
    assert done.returncode == 0, done.stderr
    assert READER0 in done.stdout
    assert to_hex(card.atr) in done.stdout


def test_opensc_tool_sees_the_card(pcscd_vpcd, card):
    done = _tool(pcscd_vpcd, ["opensc-tool", "-r", "0", "-a"])
    assert done.returncode == 0, done.stderr
    assert to_hex(card.atr, ":").lower() in done.stdout.lower()
    done = _tool(pcscd_vpcd, ["opensc-tool", "-l"])
    assert READER0 in done.stdout and READER1 in done.stdout
    done = _tool(pcscd_vpcd, ["opensc-tool", "-r", "0", "-n"])
    # MiniCard is no card OpenSC has a driver for: it says so (and exits 0)
    assert done.returncode == 0
    assert "Unsupported card" in done.stdout + done.stderr


def test_session_events_in_order(card):
    # pcscd powers a new card up to read its ATR, then down when idle: wait
    # for that, so the connection below starts from an unpowered card
    _wait_events(card, lambda names: names and names[-1] == "power_off")
    start = len(card.events)
    conn = _connect()
    try:
        conn.reconnect(disposition=scard.SCARD_RESET_CARD)
        assert _apdu(conn, "00A4000C022F00") == (b"", 0x9000)
        # what SCardDisconnect will be told (pyscard keeps the last reconnect's)
        getattr(conn, "component", conn).disposition = scard.SCARD_UNPOWER_CARD
    finally:
        conn.disconnect()
        conn.release()
    _wait_events(card, lambda names: len(names) >= start + 3)
    assert card.names(start)[:3] == ["power_on", "reset_warm", "power_off"]


def test_removal_is_seen_and_the_card_comes_back(card):
    conn = _connect()
    try:
        assert _apdu(conn, "00A4000C022F00")[1] == 0x9000
        card.vicc.remove()
        _wait_state(READER0, scard.SCARD_STATE_EMPTY)
        with pytest.raises(CardConnectionException):
            _apdu(conn, "00A4000C022F00")
    finally:
        try:
            conn.disconnect()
        except CardConnectionException:
            pass
        conn.release()
    with pytest.raises((NoCardException, CardConnectionException)):
        _connect()
    card.vicc.insert()
    _, atr = _wait_state(READER0, scard.SCARD_STATE_PRESENT)
    assert atr == card.atr
    conn = _connect()
    try:
        assert _apdu(conn, "00A4000C022F00")[1] == 0x9000
    finally:
        conn.disconnect()
        conn.release()


def test_cli_serves_slot_1_from_inside_the_namespace(pcscd_vpcd, card):
    ccidkit = os.path.join(os.path.dirname(sys.executable), "ccidkit")
    proc = subprocess.Popen(["nsenter", "--net=" + pcscd_vpcd.netns, ccidkit, "vicc",
                             "--card", "mini", "--port", "35964", "--trace"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
    try:
        _, atr = _wait_state(READER1, scard.SCARD_STATE_PRESENT)
        assert atr == MiniCard().atr
        conn = _connect(READER1)
        try:
            assert _apdu(conn, "80EE0000030102FF00") == (b"\x01\x02\xFF", 0x9000)
        finally:
            conn.disconnect()
            conn.release()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(WAIT) == 0
        _wait_state(READER1, scard.SCARD_STATE_EMPTY)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(WAIT)
    err = proc.stderr.read()
    proc.stderr.close()
    assert "-> 80 EE 00 00 03 01 02 FF 00" in err and "<- 01 02 FF 90 00" in err
