"""``smartcard.System`` of the shim: the readers of the active resource manager.

    from smartcard.System import readers
    r = readers()                    # [Reader], named as pcsc-lite names them
    c = r[0].createConnection()
"""

from .CardConnection import PCSCCardConnection
from .Exceptions import (
    CardServiceNotFoundException, CardServiceStoppedException, ListReadersException,
)
from . import scard as _s


class Reader:
    """A PC/SC reader (pyscard's PCSCReader): equal by name, ``str()`` its name."""

    def __init__(self, readername):
        self.name = readername

    def createConnection(self):
        return PCSCCardConnection(self.name)

    def addtoreadergroup(self, groupname):
        """Reader groups are not kept: every reader is in SCard$DefaultReaders."""

    def removefromreadergroup(self, groupname):
        """Reader groups are not kept."""

    def __eq__(self, other):
        return isinstance(other, type(self)) and self.name == other.name

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return "'%s'" % self.name

    def __str__(self):
        return self.name


PCSCReader = Reader


def _names():
    hr, hcontext = _s.SCardEstablishContext(_s.SCARD_SCOPE_USER)
    if hr == _s.SCARD_E_NO_SERVICE:
        raise CardServiceNotFoundException(hresult=hr)
    if hr != _s.SCARD_S_SUCCESS:
        raise ListReadersException(hr)
    try:
        hr, names = _s.SCardListReaders(hcontext, [])
    finally:
        _s.SCardReleaseContext(hcontext)
    if hr == _s.SCARD_E_NO_READERS_AVAILABLE:
        return []
    if hr == _s.SCARD_E_SERVICE_STOPPED:
        raise CardServiceStoppedException(hresult=hr)
    if hr == _s.SCARD_E_NO_SERVICE:
        raise CardServiceNotFoundException(hresult=hr)
    if hr != _s.SCARD_S_SUCCESS:
        raise ListReadersException(hr)
    return names


def readers(groups=None):
    """The readers present now (an empty list when there is none)."""
    return [Reader(n) for n in _names()]


def readergroups():
    return ["SCard$DefaultReaders"]


def listReaders():
    """The reader names (pyscard's deprecated form of readers())."""
    return [str(r) for r in readers()]
