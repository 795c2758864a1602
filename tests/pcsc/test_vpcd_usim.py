"""The virtual USIM behind a real pcscd + vpcd: pyscard reads the whole phone
book the way GSM-era scripts do (class A0: SELECT 3F00 / 7F10 / 6F3A, GET
RESPONSE for the TS 51.011 §9.2.1 answer, READ RECORD absolute 1..N)."""

import os
import signal
import subprocess
import sys

import pytest

from ccidkit.emu.pcscd import die_with_parent

pytest.importorskip("smartcard")
cards = pytest.importorskip("ccidkit.emu.cards")
from smartcard import scard  # noqa: E402

from pcschelp import connect, read_adn, wait_state  # noqa: E402

READER0 = "Virtual PCD 00 00"
READER1 = "Virtual PCD 00 01"
WAIT = 10.0


def _make_usim(**options):
    try:
        return cards.make_card("usim", **options)
    except cards.CardOSError as e:  # the module not there yet
        pytest.skip("usim card: %s" % e)


def _wait_present(name):
    return wait_state(name, scard.SCARD_STATE_PRESENT)[1]


def _connect(name):
    return connect(name)


def _read_adn(conn, limit=None):
    return read_adn(conn, limit)


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
