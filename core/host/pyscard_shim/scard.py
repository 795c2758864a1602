"""``smartcard.scard`` of the shim: pyscard's flat PC/SC functions and constants.

Every function returns the status first, as pyscard does (``hresult,
hcontext = SCardEstablishContext(SCARD_SCOPE_USER)``), over ccidkit's PC/SC
layer (ccidkit.core.pcsc) and the resource manager of the active shim.
Byte strings come back as lists of ints. Constants keep pcsc-lite's values;
``INFINITE`` is pyscard's 0x7FFFFFFF (0xFFFFFFFF is accepted as well).
"""

import time

from ccidkit.core import pcsc as _pcsc
from ccidkit.core.host import shim_loader as _loader

for _n in dir(_pcsc):
    if _n.startswith("SCARD_") and _n not in ("SCARD_IO_REQUEST", "SCARD_ATTR_VALUE",
                                              "SCARD_CTL_CODE"):
        globals()[_n] = getattr(_pcsc, _n)
del _n

SCARD_CTL_CODE = _pcsc.SCARD_CTL_CODE
SCARD_ATTR_VALUE = _pcsc.SCARD_ATTR_VALUE
MAX_ATR_SIZE = _pcsc.MAX_ATR_SIZE
CM_IOCTL_GET_FEATURE_REQUEST = _pcsc.CM_IOCTL_GET_FEATURE_REQUEST
INFINITE = 0x7FFFFFFF
SCARD_PROTOCOL_Tx = SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1          # noqa: F821
SCARD_PROTOCOL_DEFAULT = SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1     # noqa: F821
SCARD_PROTOCOL_OPTIMAL = 0
# pyscard's PCI "structures" are the protocol numbers
SCARD_PCI_T0 = 1
SCARD_PCI_T1 = 2
SCARD_PCI_RAW = 4
POLL_MS = 50           # step of a SCardGetStatusChange wait
_CANCELLED = set()
PNP_NOTIFICATION = _pcsc.PNP_NOTIFICATION


def SCardGetErrorMessage(hresult):
    if hresult == 0:
        return "Command successful."
    code = hresult & 0xFFFFFFFF
    text = _pcsc.error_text(code)
    if text == "unknown error":
        return "Unknown error: 0x%08X" % code
    return text


def _call(fn, *args):
    """(0, value) or (hresult, None), the PC/SC call made under the shim's lock."""
    with _loader.LOCK:
        try:
            return 0, fn(*args)
        except _pcsc.PCSCError as e:
            return e.code, None


def _timeout(ms):
    if ms in (INFINITE, _pcsc.INFINITE) or ms < 0:
        return _pcsc.INFINITE
    return ms


def SCardEstablishContext(dwScope=0):
    try:
        mgr = _loader.manager()
    except _loader.ShimError:
        return SCARD_E_NO_SERVICE, 0                             # noqa: F821
    hr, h = _call(_pcsc.SCardEstablishContext, dwScope, mgr)
    return hr, h or 0


def SCardReleaseContext(hcontext):
    return _call(_pcsc.SCardReleaseContext, hcontext)[0]


def SCardIsValidContext(hcontext):
    return _call(_pcsc.SCardIsValidContext, hcontext)[0]


def SCardListReaders(hcontext, readergroups=None):
    hr, names = _call(_pcsc.SCardListReaders, hcontext, readergroups)
    return hr, list(names or [])


def SCardListReaderGroups(hcontext):
    hr, groups = _call(_pcsc.SCardListReaderGroups, hcontext)
    return hr, list(groups or [])


def SCardConnect(hcontext, reader, dwShareMode, dwPreferredProtocols):
    hr, ans = _call(_pcsc.SCardConnect, hcontext, str(reader), dwShareMode,
                    dwPreferredProtocols)
    if hr:
        return hr, 0, 0
    return hr, ans[0], ans[1]


def SCardReconnect(hcard, dwShareMode, dwPreferredProtocols, dwInitialization):
    hr, proto = _call(_pcsc.SCardReconnect, hcard, dwShareMode, dwPreferredProtocols,
                      dwInitialization)
    return hr, proto or 0


def SCardDisconnect(hcard, dwDisposition):
    return _call(_pcsc.SCardDisconnect, hcard, dwDisposition)[0]


def SCardBeginTransaction(hcard):
    return _call(_pcsc.SCardBeginTransaction, hcard)[0]


def SCardEndTransaction(hcard, dwDisposition):
    return _call(_pcsc.SCardEndTransaction, hcard, dwDisposition)[0]


def SCardStatus(hcard):
    """(hresult, reader name, dwState, dwProtocol, ATR as a list)."""
    hr, ans = _call(_pcsc.SCardStatus, hcard)
    if hr:
        return hr, "", 0, 0, []
    names, state, proto, atr = ans
    return hr, names[0] if names else "", state, proto, list(atr)


def SCardTransmit(hcard, pioSendPci, apdu):
    hr, rsp = _call(_pcsc.SCardTransmit, hcard, pioSendPci, bytes(bytearray(apdu)))
    return hr, list(rsp or b"")


def SCardControl(hcard, dwControlCode, inbuffer):
    hr, rsp = _call(_pcsc.SCardControl, hcard, dwControlCode, bytes(bytearray(inbuffer)))
    return hr, list(rsp or b"")


def SCardGetAttrib(hcard, dwAttrId):
    hr, value = _call(_pcsc.SCardGetAttrib, hcard, dwAttrId)
    return hr, list(value or b"")


def SCardSetAttrib(hcard, dwAttrId, attr):
    return _call(_pcsc.SCardSetAttrib, hcard, dwAttrId, bytes(bytearray(attr)))[0]


def SCardCancel(hcontext):
    """Make a wait of this context in SCardGetStatusChange end with SCARD_E_CANCELLED."""
    hr = _call(_pcsc.SCardIsValidContext, hcontext)[0]
    if not hr:
        _CANCELLED.add(hcontext)
    return hr


def SCardGetStatusChange(hcontext, dwTimeout, readerstates):
    """(hresult, [(reader, dwEventState, ATR list)]); readerstates as pyscard takes them.

    The wait is in the host's time, in steps of POLL_MS; the lock is held only
    while the readers are looked at, so other threads keep transmitting."""
    states = []
    for rs in readerstates:
        states.append((rs[0], rs[1] if len(rs) > 1 else 0))
    timeout = _timeout(dwTimeout)
    deadline = None if timeout == _pcsc.INFINITE else time.monotonic() + timeout / 1000.0
    _CANCELLED.discard(hcontext)
    while True:
        hr, out = _call(_pcsc.SCardGetStatusChange, hcontext, 0, states)
        if hr != SCARD_E_TIMEOUT:                                  # noqa: F821
            break
        if hcontext in _CANCELLED:
            _CANCELLED.discard(hcontext)
            hr = SCARD_E_CANCELLED                                 # noqa: F821
            break
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            break
        step = POLL_MS / 1000.0
        if deadline is not None and deadline - now < step:
            step = deadline - now
        time.sleep(step)
    if hr:
        return hr, [(rs[0], rs[1] if len(rs) > 1 else 0, list(rs[2]) if len(rs) > 2 else [])
                    for rs in readerstates]
    return hr, [(name, ev, list(atr)) for name, ev, atr in out]
