"""The ATR a card answers with, built from the capabilities it declares.

ISO/IEC 7816-3 §8.2: TS 3B (direct convention), T0, the interface bytes,
historical bytes, TCK. Each protocol the card offers is indicated in a TDi;
the group after a TDi announcing T=1 carries IFSC (TA) and BWI/CWI (TB)
(§11.4); a T=15 indicator carries the class indicator and clock stop (§8.3).
"""

from .errors import CardOSError

CLOCK_STOP = {"none": 0x00, "low": 0x40, "high": 0x80, "any": 0xC0}
CLASS_BITS = {"A": 0x01, "B": 0x02, "C": 0x04}


def build_card_atr(protocols=(0,), ta1=0x96, ifsc=254, bwi=4, cwi=5, classes=None,
                   clock_stop="any", historical=b""):
    """The ATR bytes for ``protocols`` (ordered, from (0,), (1,), (0, 1), (1, 0)).

    ``ta1`` None leaves TA1 out (Fi 372, Di 1). ``classes`` ("ABC", "BC", ...)
    adds a T=15 group with the class indicator and ``clock_stop``.
    """
    protocols = tuple(protocols)
    if not protocols or len(set(protocols)) != len(protocols) \
            or any(p not in (0, 1) for p in protocols):
        raise CardOSError("protocols must be T=0 and/or T=1, each once: %r" % (protocols,),
                          name="BAD_ATR")
    historical = bytes(historical)
    if len(historical) > 15:
        raise CardOSError("at most 15 historical bytes", name="BAD_ATR")
    if not 1 <= ifsc <= 254 or not 0 <= bwi <= 9 or not 0 <= cwi <= 15:
        raise CardOSError("IFSC 1..254, BWI 0..9, CWI 0..15", name="BAD_ATR")
    # TD1 names the first (default) protocol; group 2 holds only global bytes, so the
    # T=1 parameters follow a later TDi naming T=1 again (§8.2.3, §11.4).
    rest = sorted(set(protocols[1:]) | ({1} if 1 in protocols else set()))
    indicators = [protocols[0]] + rest
    t15 = None
    if classes:
        u = 0
        for c in classes:
            if c not in CLASS_BITS:
                raise CardOSError("class %r is not A, B or C" % (c,), name="BAD_ATR")
            u |= CLASS_BITS[c]
        if clock_stop not in CLOCK_STOP:
            raise CardOSError("clock_stop is one of %s" % ", ".join(sorted(CLOCK_STOP)), name="BAD_ATR")
        t15 = CLOCK_STOP[clock_stop] | u
        indicators.append(15)
    if indicators == [0]:
        indicators = []          # §8.2.3: without TD1 the card offers T=0 only

    def params(proto):
        if proto == 1:
            return [ifsc, ((bwi & 0x0F) << 4) | (cwi & 0x0F)], 0x30   # TA, TB
        if proto == 15:
            return [t15], 0x10                                       # TA
        return [], 0x00

    groups = []                  # (presence bits for TA..TC, bytes) of group i
    groups.append(([ta1] if ta1 is not None else [], 0x10 if ta1 is not None else 0x00))
    for k, proto in enumerate(indicators):
        groups.append(([], 0x00) if k == 0 else params(proto))
    out = bytearray((0x3B,))
    body = bytearray()
    y = []
    for i, (vals, bits) in enumerate(groups):
        has_td = i < len(indicators)
        y.append(bits | (0x80 if has_td else 0x00))
        body.extend(vals)
        if has_td:
            nxt_bits = groups[i + 1][1] | (0x80 if i + 1 < len(indicators) else 0x00)
            body.append(nxt_bits | indicators[i])
    out.append(y[0] | len(historical))
    out.extend(body)
    out.extend(historical)
    if indicators:
        tck = 0
        for b in out[1:]:
            tck ^= b
        out.append(tck)
    return bytes(out)


def historical_bytes(max_channels=4, extended=False, chaining=False, partial_aid=True,
                     ef_dir=True):
    """Historical bytes (ISO/IEC 7816-4 §8.1.1) stating what the card OS does.

    Category indicator 80, then COMPACT-TLV: card service data (tag 3: DF
    selection by full and partial name, EF.DIR with BER-TLV objects read by
    READ RECORD, an MF) and card capabilities (tag 7: selection methods,
    data coding 21, and the third software function table: chaining,
    extended Lc/Le, logical channels assigned by card and reader, their
    number).
    """
    if not 1 <= max_channels <= 20:
        raise CardOSError("1..20 logical channels", name="BAD_ATR")
    # §8.1.1.2.3 Table 85: b8 full DF name, b7 partial DF name, b6 BER-TLV in EF.DIR,
    # b5-b4 00 EF.DIR read by READ RECORD, b1 0 card with MF
    service = 0x80 | (0x40 if partial_aid else 0) | (0x20 if ef_dir else 0)
    # Table 86: DF by full name, partial name, path, FID; short EF id; record number (no
    # implicit selection: no application is selected at reset)
    selection = 0xF6 if partial_aid else 0xB6
    third = (0x80 if chaining else 0) | (0x40 if extended else 0)
    if max_channels > 1:
        # b5-b4: channel numbers assigned by the card (P2 00) and by the interface device;
        # b3-b1: 111 means eight or more, else the number of channels minus one
        n = max_channels - 1 if max_channels <= 8 else 7
        third |= 0x18 | (n if n < 7 else 7)
    return bytes((0x80, 0x31, service, 0x73, selection & 0xFF, 0x21, third))
