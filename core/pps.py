"""Protocol and parameters selection, PPS (ISO/IEC 7816-3 §9).

Sans-I/O: ``SpeedPolicy.candidates`` decides which (Fi, Di) pairs to try for
a card on a reader (fastest first, ending with the default 372/1 so a driver
can fall back when a PPS fails), ``pps_request_for`` / ``build_pps_request``
encode the request, ``parse_pps_response`` checks the card's answer.
"""

from .errors import CcidkitError
from . import iso7816

PPSS = 0xFF

# PPS0 presence bits (§9.2): b5 PPS1, b6 PPS2, b7 PPS3; b8 reserved (0).
PPS0_PPS1 = 0x10
PPS0_PPS2 = 0x20
PPS0_PPS3 = 0x40
PPS0_RESERVED = 0x80

# Data rates a reader lists are rounded; a computed rate matches a listed one
# within 2 bit/s or 0.1 %.
RATE_TOLERANCE_BPS = 2
RATE_TOLERANCE_PER_MILLE = 1

DEFAULT_PARAMS = (iso7816.FD, iso7816.DD)


class PPSError(CcidkitError):
    """A PPS that cannot be built, or a PPS response §9.3 does not allow.

    ``name`` says which check failed: PPS_BAD_REQUEST, PPS_NO_RESPONSE,
    PPS_BAD_PPSS, PPS_TRUNCATED, PPS_EXTRA_BYTES, PPS_BAD_PCK, PPS_BAD_PPS0,
    PPS_PROTOCOL_MISMATCH, PPS_UNREQUESTED, PPS1_MISMATCH, PPS2_MISMATCH,
    PPS3_MISMATCH, PPS_PROTOCOL_NOT_OFFERED.
    """


class ReaderCaps:
    """What a reader can do, as its CCID class descriptor tells.

    clock_hz            the clock it applies to the card (dwDefaultClock)
    max_data_rate_bps   dwMaxDataRate; None for no limit
    data_rates          the supported rates (bNumDataRatesSupported /
                        GET_DATA_RATES); None means any rate up to the maximum
    auto_pps            the reader makes the PPS itself (dwFeatures 0x80/0x40):
                        the driver only sets the parameters, it sends no PPS
    max_clock_hz        dwMaximumClock, kept for information; rates are
                        computed at clock_hz
    """

    def __init__(self, clock_hz, max_data_rate_bps, data_rates=None, auto_pps=False,
                 max_clock_hz=None):
        self.clock_hz = clock_hz
        self.max_data_rate_bps = max_data_rate_bps
        self.data_rates = None if data_rates is None else list(data_rates)
        self.auto_pps = auto_pps
        self.max_clock_hz = max_clock_hz

    def supports_rate(self, bps):
        """True when the reader can run ``bps`` (within the rounding tolerance)."""
        if self.max_data_rate_bps is not None and bps > self.max_data_rate_bps + \
                _tolerance(self.max_data_rate_bps):
            return False
        if self.data_rates is None:
            return True
        for r in self.data_rates:
            d = bps - r
            if d < 0:
                d = -d
            if d <= _tolerance(r):
                return True
        return False

    def __repr__(self):
        return "ReaderCaps(%d Hz, max %s bit/s, rates %s, auto_pps %s)" % (
            self.clock_hz, self.max_data_rate_bps, self.data_rates, self.auto_pps)


def _tolerance(rate):
    t = rate * RATE_TOLERANCE_PER_MILLE // 1000
    return t if t > RATE_TOLERANCE_BPS else RATE_TOLERANCE_BPS


class SpeedPolicy:
    """Decides the (Fi, Di) to request.

    max_baud    a cap in bit/s (a reader quirk: e.g. one that fails above
                ~200 kbit/s); None for none
    negotiate   False: always keep the default 372/1 (still lets a PPS choose
                the protocol)
    """

    def __init__(self, max_baud=None, negotiate=True):
        self.max_baud = max_baud
        self.negotiate = negotiate

    def candidates(self, atr, caps):
        """(Fi, Di) pairs to try, fastest first, ending with the default (372, 1).

        In specific mode (TA2) there is nothing to negotiate: the one pair is
        the card's TA1 values (or the default when TA2 says implicit values).
        """
        sm = atr.specific_mode
        if sm is not None:
            if sm["implicit"] or atr.fi is None or atr.di is None:
                return [DEFAULT_PARAMS]
            return [(atr.fi, atr.di)]
        out = []
        fi = atr.fi
        di = atr.di
        default_rate = iso7816.baud_rate(iso7816.FD, iso7816.DD, caps.clock_hz)
        if self.negotiate and fi is not None and di is not None and atr.fmax_mhz is not None \
                and caps.clock_hz <= atr.fmax_mhz * 1000000:
            # §9.2: PPS1 proposes F and D up to the card's Fi and Di. We keep
            # the card's Fi and lower D through the powers of two.
            for d in _di_choices(di):
                if (fi, d) == DEFAULT_PARAMS:
                    continue
                rate = iso7816.baud_rate(fi, d, caps.clock_hz)
                if rate <= default_rate:
                    break  # no faster than 372/1: not worth a PPS
                if self.max_baud is not None and rate > self.max_baud:
                    continue
                if not caps.supports_rate(rate):
                    continue
                out.append((fi, d))
        out.append(DEFAULT_PARAMS)
        return out

    def __repr__(self):
        return "SpeedPolicy(max_baud=%s, negotiate=%s)" % (self.max_baud, self.negotiate)


def _di_choices(di):
    """The card's Di, then the powers of two below it, largest first."""
    out = [di]
    d = 64
    while d >= 1:
        if d < di:
            out.append(d)
        d //= 2
    return out


def _fi_code(fi):
    if fi == iso7816.FD:
        return 1  # Fd = 372 with f(max) 5 MHz, the code TA1 = 11 uses
    c = iso7816.fi_index(fi)
    if c < 0:
        raise PPSError("Fi = %r is not in ISO/IEC 7816-3 Table 7" % (fi,), name="PPS_BAD_REQUEST")
    return c


def _di_code(di):
    c = iso7816.di_index(di)
    if c < 0:
        raise PPSError("Di = %r is not in ISO/IEC 7816-3 Table 8" % (di,), name="PPS_BAD_REQUEST")
    return c


def _pck(data):
    x = 0
    for b in data:
        x ^= b
    return x


def _encode(protocol, pps1, pps2):
    if not isinstance(protocol, int) or protocol < 0 or protocol > 14:
        raise PPSError("protocol T=%r cannot be selected" % (protocol,), name="PPS_BAD_REQUEST")
    if pps2 is not None and (not isinstance(pps2, int) or pps2 < 0 or pps2 > 255):
        raise PPSError("PPS2 (N) = %r is not a byte" % (pps2,), name="PPS_BAD_REQUEST")
    pps0 = protocol
    out = bytearray((PPSS, 0))
    if pps1 is not None:
        pps0 |= PPS0_PPS1
        out.append(pps1)
    if pps2 is not None:
        pps0 |= PPS0_PPS2
        out.append(pps2)
    out[1] = pps0
    out.append(_pck(out))
    return bytes(out)


def build_pps_request(protocol, fi=None, di=None, n=None):
    """PPSS FF, PPS0 (T and presence bits), PPS1 = Fi/Di codes, PPS2 = N, PCK (§9.2).

    fi and di both None: no PPS1 (the card keeps Fd/Dd); n None: no PPS2.
    """
    if fi is None and di is None:
        pps1 = None
    elif fi is None or di is None:
        raise PPSError("Fi and Di go together in PPS1", name="PPS_BAD_REQUEST")
    else:
        pps1 = (_fi_code(fi) << 4) | _di_code(di)
    return _encode(protocol, pps1, n)


def pps_request_for(atr, caps, policy=None, protocol=None):
    """The PPS request to send after ``atr``, or None when no PPS is needed.

    None in specific mode (TA2: §9.1, no PPS), when the reader makes the PPS
    itself (caps.auto_pps), and when the default Fd/Dd is chosen together with
    the first protocol the card offers: a card in negotiable mode that sees no
    PPS request uses exactly those (ISO/IEC 7816-3 §6.3.1). ``protocol``
    defaults to the first offered.
    """
    if atr.specific_mode is not None or caps.auto_pps:
        return None
    if policy is None:
        policy = SpeedPolicy()
    protos = atr.protocols
    if protocol is None:
        protocol = protos[0]
    elif protocol not in protos:
        raise PPSError("T=%r is not offered by the card (%s)"
                       % (protocol, ", ".join(["T=%d" % t for t in protos])),
                       name="PPS_PROTOCOL_NOT_OFFERED")
    fi, di = policy.candidates(atr, caps)[0]
    if (fi, di) == DEFAULT_PARAMS:
        if protocol == protos[0]:
            return None
        return _encode(protocol, None, None)
    # Keep the card's own TA1 code for its Fi (372 has two codes).
    fcode = atr.fi_code if fi == atr.fi else _fi_code(fi)
    return _encode(protocol, (fcode << 4) | _di_code(di), None)


class PPSResult:
    """What a PPS exchange settled: protocol, Fi, Di, and N (None: TC1 of the ATR holds)."""

    def __init__(self, protocol, fi, di, n=None, accepted=True):
        self.protocol = protocol
        self.fi = fi
        self.di = di
        self.n = n
        # False when the card answered without PPS1: Fd/Dd instead of the proposal.
        self.accepted = accepted

    def __eq__(self, other):
        return isinstance(other, PPSResult) and (self.protocol, self.fi, self.di, self.n) == \
            (other.protocol, other.fi, other.di, other.n)

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return "PPSResult(T=%d, Fi=%d, Di=%d, N=%s%s)" % (
            self.protocol, self.fi, self.di, self.n, "" if self.accepted else ", PPS1 refused")


def _split(data, is_response):
    """[pps0, pps1, pps2, pps3] of a PPS message (None when absent); PPSError when malformed."""
    what = "response" if is_response else "request"

    def fail(message, name):
        raise PPSError("PPS %s %s" % (what, message), name=name if is_response else "PPS_BAD_REQUEST")

    data = bytes(data)
    if not data:
        fail("is empty", "PPS_NO_RESPONSE")
    if data[0] != PPSS:
        fail("starts with %02X, not PPSS FF" % data[0], "PPS_BAD_PPSS")
    if len(data) < 3:
        fail("truncated: %d bytes" % len(data), "PPS_TRUNCATED")
    pps0 = data[1]
    need = 3
    for bit in (PPS0_PPS1, PPS0_PPS2, PPS0_PPS3):
        if pps0 & bit:
            need += 1
    if len(data) < need:
        fail("truncated: PPS0 %02X announces %d bytes, got %d" % (pps0, need, len(data)),
             "PPS_TRUNCATED")
    if len(data) > need:
        fail("has %d bytes after PCK" % (len(data) - need), "PPS_EXTRA_BYTES")
    if _pck(data) != 0:
        fail("PCK %02X is wrong (expected %02X)" % (data[-1], _pck(data[:-1])), "PPS_BAD_PCK")
    if pps0 & PPS0_RESERVED:
        fail("PPS0 %02X has the reserved bit 8 set" % pps0, "PPS_BAD_PPS0")
    fields = [pps0, None, None, None]
    pos = 2
    j = 1
    for bit in (PPS0_PPS1, PPS0_PPS2, PPS0_PPS3):
        if pps0 & bit:
            fields[j] = data[pos]
            pos += 1
        j += 1
    return fields


def parse_pps_response(request, response):
    """Checks the card's PPS response against the request (§9.3); a PPSResult or PPSError.

    PPS0 must echo the protocol; PPS1 either echoed (proposal accepted) or
    absent (Fd/Dd); PPS2 echoed or absent; PPS3 echoed; nothing the request
    did not carry.
    """
    req = _split(request, False)
    protocol = req[0] & 0x0F
    if protocol == 15:
        raise PPSError("PPS request selects T=15, which is no protocol", name="PPS_BAD_REQUEST")
    if req[1] is not None and (iso7816.FI_TABLE[req[1] >> 4] is None
                               or iso7816.DI_TABLE[req[1] & 0x0F] is None):
        raise PPSError("PPS request PPS1 %02X holds a reserved Fi or Di code" % req[1],
                       name="PPS_BAD_REQUEST")
    rsp = _split(response, True)
    if rsp[0] & 0x0F != protocol:
        raise PPSError("PPS response selects T=%d, the request T=%d" % (rsp[0] & 0x0F, protocol),
                       name="PPS_PROTOCOL_MISMATCH")
    names = (None, "PPS1", "PPS2", "PPS3")
    for j in (1, 2, 3):
        if rsp[j] is None:
            continue
        if req[j] is None:
            raise PPSError("PPS response carries %s %02X, which the request did not"
                           % (names[j], rsp[j]), name="PPS_UNREQUESTED")
        if rsp[j] != req[j]:
            raise PPSError("PPS response %s %02X does not echo the request's %02X"
                           % (names[j], rsp[j], req[j]), name=names[j] + "_MISMATCH")
    if rsp[1] is None:
        fi, di = DEFAULT_PARAMS
        accepted = req[1] is None
    else:
        fi = iso7816.FI_TABLE[rsp[1] >> 4]
        di = iso7816.DI_TABLE[rsp[1] & 0x0F]
        accepted = True
    return PPSResult(protocol, fi, di, rsp[2], accepted)
