"""Every listening socket of the kit binds to loopback or to a unix socket only its
owner can reach: vicc listen mode, the VSCard server, the usbredir server."""

import os
import socket
import stat

import pytest

from ccidkit.emu import vicc, vscard, usbredir
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.reader import EmulatedReader


def _listener(obj):
    for name in ("_listener", "_server", "_sock", "listener", "sock"):
        s = getattr(obj, name, None)
        if isinstance(s, socket.socket):
            return s
    raise AssertionError("no listening socket found on %r" % (obj,))


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _check_unix(obj, path):
    s = _listener(obj)
    assert s.family == socket.AF_UNIX
    assert s.getsockname() == path
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode & 0o077 == 0, oct(mode)                # owner only
    parent = stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)
    assert parent & 0o077 == 0, oct(parent)
    assert os.stat(path).st_uid == os.getuid()


def _check_loopback(obj):
    s = _listener(obj)
    assert s.family == socket.AF_INET
    assert s.getsockname()[0] == "127.0.0.1"


def test_vicc_listen_mode_binds_loopback():
    v = vicc.Vicc(MiniCard(), listen=_free_port())
    v.start()
    try:
        _check_loopback(v)
    finally:
        v.stop()


@pytest.mark.parametrize("unix", [True, False])
def test_vscard_server(unix):
    srv = vscard.VSCardServer(MiniCard(), unix=unix)
    srv.start()
    try:
        if unix:
            _check_unix(srv, srv.path)
        else:
            _check_loopback(srv)
    finally:
        srv.stop()


@pytest.mark.parametrize("unix", [True, False])
def test_usbredir_server(unix):
    srv = usbredir.UsbredirServer(EmulatedReader("gemalto-pctwin", cards={0: MiniCard()}),
                                  unix=unix)
    srv.start()
    try:
        if unix:
            _check_unix(srv, srv.path)
        else:
            _check_loopback(srv)
    finally:
        srv.stop()
