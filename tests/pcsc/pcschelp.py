"""Helpers shared by the pcscd tests: bounded waits on reader state, pyscard
connections, and the GSM-era phone book reader (TS 51.011, class A0)."""

import time

from smartcard import scard
from smartcard.Exceptions import SmartcardException
from smartcard.System import readers

WAIT = 15.0          # seconds: the bound of every wait on pcscd here


def reader_state(name):
    """(dwEventState, ATR) of reader ``name``; (0, b"") while it is not listed."""
    hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert hresult == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hresult)
    try:
        hresult, states = scard.SCardGetStatusChange(ctx, 0, [(name, scard.SCARD_STATE_UNAWARE)])
        if hresult != scard.SCARD_S_SUCCESS:
            return 0, b""
        return states[0][1], bytes(states[0][2])
    finally:
        scard.SCardReleaseContext(ctx)


def wait_state(name, flag, timeout=WAIT):
    """Block until ``flag`` is set in the reader's state; returns (state, ATR)."""
    deadline = time.monotonic() + timeout
    while True:
        state, atr = reader_state(name)
        if state & flag:
            return state, atr
        assert time.monotonic() < deadline, "reader %s state %#x" % (name, state)
        time.sleep(0.05)


def connect(name, timeout=WAIT):
    """A connected pyscard connection to reader ``name`` (bounded retries)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            for r in readers():
                if str(r) == name:
                    conn = r.createConnection()
                    conn.connect()
                    return conn
        except SmartcardException:
            pass
        assert time.monotonic() < deadline, "no card in %s (readers %r)" % (name, readers())
        time.sleep(0.05)


def close(conn):
    conn.disconnect()
    conn.release()


def tx(conn, apdu):
    """(data, SW1SW2) for one APDU (bytes or hex text)."""
    if isinstance(apdu, str):
        apdu = bytes.fromhex(apdu)
    data, sw1, sw2 = conn.transmit(list(apdu))
    return bytes(data), (sw1 << 8) | sw2


def gsm_select(conn, fid):
    """SELECT in class A0 and the TS 51.011 §9.2.1 answer through GET RESPONSE."""
    data, sw = tx(conn, bytes((0xA0, 0xA4, 0x00, 0x00, 0x02, fid >> 8, fid & 0xFF)))
    assert data == b"" and sw >> 8 == 0x9F, "SELECT %04X: %04X" % (fid, sw)
    data, sw = tx(conn, bytes((0xA0, 0xC0, 0x00, 0x00, sw & 0xFF)))
    assert sw == 0x9000 and len(data) >= 15
    return data


def read_adn(conn, limit=None):
    """Every record of 3F00/7F10/6F3A (EF ADN) as usim_read.py-style scripts read it."""
    gsm_select(conn, 0x3F00)
    gsm_select(conn, 0x7F10)
    info = gsm_select(conn, 0x6F3A)
    size = (info[2] << 8) | info[3]
    assert info[13] == 0x01                      # linear fixed
    length = info[14]
    count = size // length
    if limit is not None:
        count = min(count, limit)
    records = []
    for n in range(1, count + 1):
        # §9.2.5: READ RECORD, P2 04 absolute mode, P3 the record length
        data, sw = tx(conn, bytes((0xA0, 0xB2, n, 0x04, length)))
        assert sw == 0x9000, "READ RECORD %d: %04X" % (n, sw)
        records.append(data)
    return records
