"""The PC/SC API over readers that answer anything: every failure is a PCSCError."""

import os
import sys

from hypothesis import given, settings, strategies as st

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "portable"))

from test_driver_fake import ChaosReader  # noqa: E402
from test_driver import SELECT_AID  # noqa: E402

from ccidkit.core import pcsc  # noqa: E402
from ccidkit.core.pcsc import PCSCError  # noqa: E402


@settings(max_examples=150)
@given(st.data(), st.sampled_from(["TPDU", "short", "extended"]))
def test_pcsc_calls_on_arbitrary_answers(data, level):
    f = ChaosReader(data.draw, level)
    mgr = pcsc.ResourceManager([f], reader_options={"max_time_extensions": 5})
    ctx = pcsc.SCardEstablishContext(pcsc.SCARD_SCOPE_USER, mgr)
    try:
        names = pcsc.SCardListReaders(ctx)
    except PCSCError:
        return
    hcard = None
    for share in (pcsc.SCARD_SHARE_SHARED, pcsc.SCARD_SHARE_DIRECT):
        try:
            hcard, proto = pcsc.SCardConnect(ctx, names[0], share, pcsc.SCARD_PROTOCOL_ANY)
            break
        except PCSCError:
            continue
    calls = [lambda: pcsc.SCardGetStatusChange(ctx, 0, [(n, 0) for n in names])]
    if hcard is not None:
        calls += [
            lambda: pcsc.SCardTransmit(hcard, None, SELECT_AID),
            lambda: pcsc.SCardStatus(hcard),
            lambda: pcsc.SCardControl(hcard, pcsc.CM_IOCTL_GET_FEATURE_REQUEST),
            lambda: pcsc.SCardControl(hcard, pcsc.SCARD_CTL_CODE(3600), b"\x3e\x00\x01\x12"),
            lambda: pcsc.SCardGetAttrib(hcard, pcsc.SCARD_ATTR_ATR_STRING),
            lambda: pcsc.SCardReconnect(hcard, pcsc.SCARD_SHARE_SHARED,
                                        pcsc.SCARD_PROTOCOL_ANY, pcsc.SCARD_RESET_CARD),
            lambda: pcsc.SCardDisconnect(hcard, pcsc.SCARD_UNPOWER_CARD),
        ]
    for call in calls:
        try:
            call()
        except PCSCError as e:
            assert e.name.startswith("SCARD_") and e.code >= 0x80100001
    pcsc.SCardReleaseContext(ctx)
