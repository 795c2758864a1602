"""The virtual USIM behind a real pcscd + vpcd: pyscard reads the whole phone
book the way GSM-era scripts do (class A0: SELECT 3F00 / 7F10 / 6F3A, GET
RESPONSE for the TS 51.011 §9.2.1 answer, READ RECORD absolute 1..N)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from ccidkit.emu.pcscd import die_with_parent

pytest.importorskip("smartcard")
cards = pytest.importorskip("ccidkit.emu.cards")
from smartcard import scard  # noqa: E402
from smartcard.System import readers  # noqa: E402

READER0 = "Virtual PCD 00 00"
READER1 = "Virtual PCD 00 01"
WAIT = 10.0


def _make_usim(**options):
    try:
        return cards.make_card("usim", **options)
    except cards.CardOSError as e:  # the module not there yet
        pytest.skip("usim card: %s" % e)


def _wait_present(name):
    deadline = time.monotonic() + WAIT
    while True:
        hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        assert hresult == scard.SCARD_S_SUCCESS
        try:
            hresult, states = scard.SCardGetStatusChange(ctx, 0,
                                                         [(name, scard.SCARD_STATE_UNAWARE)])
        finally:
            scard.SCardReleaseContext(ctx)
        if hresult == scard.SCARD_S_SUCCESS and states[0][1] & scard.SCARD_STATE_PRESENT:
            return bytes(states[0][2])
        assert time.monotonic() < deadline, "no card in %s" % name
        time.sleep(0.05)


def _connect(name):
    for r in readers():
        if str(r) == name:
            conn = r.createConnection()
            conn.connect()
            return conn
    raise AssertionError("no reader %s" % name)


def _tx(conn, apdu):
    data, sw1, sw2 = conn.transmit(list(apdu))
    return bytes(data), (sw1 << 8) | sw2


def _gsm_select(conn, fid):
    data, sw = _tx(conn, bytes((0xA0, 0xA4, 0x00, 0x00, 0x02, fid >> 8, fid & 0xFF)))
    assert data == b"" and sw >> 8 == 0x9F, "SELECT %04X: %04X" % (fid, sw)
    data, sw = _tx(conn, bytes((0xA0, 0xC0, 0x00, 0x00, sw & 0xFF)))
    assert sw == 0x9000 and len(data) >= 15
    return data


def _read_adn(conn, limit=None):
    _gsm_select(conn, 0x3F00)
    _gsm_select(conn, 0x7F10)
    info = _gsm_select(conn, 0x6F3A)
    size = (info[2] << 8) | info[3]
    assert info[13] == 0x01                      # linear fixed
    length = info[14]
    count = size // length
    if limit is not None:
        count = min(count, limit)
    records = []
    for n in range(1, count + 1):
        data, sw = _tx(conn, bytes((0xA0, 0xB2, n, 0x04, length)))
        assert sw == 0x9000, "READ RECORD %d: %04X" % (n, sw)
        records.append(data)
    return records


def test_pyscard_reads_all_250_adn_records(pcscd_vpcd):
    card = _make_usim()
    expected = [bytes(r) for r in card.adn().records]
    assert len(expected) == 250
    vicc = pcscd_vpcd.vicc(card)
    try:
        assert _wait_present(READER0) == card.atr
        conn = _connect(READER0)
        try:
            records = _read_adn(conn)
        finally:
            conn.disconnect()
            conn.release()
    finally:
        vicc.stop()
    assert len(records) == 250
    assert records == expected
    assert len(set(len(r) for r in records)) == 1
    assert any(r != b"\xFF" * len(r) for r in records)   # the default contacts are there


def test_cli_serves_the_usim_with_its_image(pcscd_vpcd, tmp_path):
    image = str(tmp_path / "usim.img")
    ccidkit = os.path.join(os.path.dirname(sys.executable), "ccidkit")
    proc = subprocess.Popen(["nsenter", "--net=" + pcscd_vpcd.netns, ccidkit, "vicc",
                             "--card", "usim", "--card-image", image, "--port", "35964"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
    try:
        atr = _wait_present(READER1)
        assert atr == _make_usim().atr
        conn = _connect(READER1)
        try:
            records = _read_adn(conn, limit=3)
        finally:
            conn.disconnect()
            conn.release()
        assert records == [bytes(r) for r in _make_usim().adn().records[:3]]
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(WAIT) == 0, proc.stderr.read()
        assert os.path.getsize(image) > 0              # the card kept its image
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(WAIT)
        proc.stderr.close()
