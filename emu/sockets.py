"""Listening sockets of the kit's bridges: loopback or owner-only unix sockets.

Every server the kit runs (the VSCard server for QEMU's usb-ccid, the usbredir
server for emulated readers) listens through ``listen_private``, so the rule
lives in one place: a unix socket with mode 0600 in a fresh 0700 directory, or
TCP on 127.0.0.1 only (tests/host/test_socket_binding.py checks both).
"""

import os
import socket
import tempfile


class PrivateListener:
    """A listening socket and where it is: ``path`` (unix) or ``port`` (TCP)."""

    def __init__(self, sock, directory=None, path=None, port=None):
        self.socket = sock
        self.directory = directory
        self.path = path
        self.port = port


def listen_private(prefix, name, unix=True, backlog=1):
    """Listen on ``<new 0700 dir>/<name>`` (mode 0600) or on 127.0.0.1:<free port>."""
    if unix:
        directory = tempfile.mkdtemp(prefix=prefix)
        os.chmod(directory, 0o700)
        path = os.path.join(directory, name)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        os.chmod(path, 0o600)
        s.listen(backlog)
        return PrivateListener(s, directory=directory, path=path)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(backlog)
    return PrivateListener(s, port=s.getsockname()[1])
