"""Answer-to-Reset: parsing, checking and explaining (ISO/IEC 7816-3 §8).

``parse_atr(data)`` accepts the ATR as readers report it (TS = 3B for the
direct convention, 3F for an inverse-convention ATR already decoded) and as
raw line bytes of an inverse-convention card (TS = 03: every byte still
bit-reversed and complemented). It returns an ``ATR`` that always carries
what it could read; problems that still leave an ATR (truncation, extra
bytes, missing or wrong TCK, over-long ATR, reserved values) go into
``ATR.warnings``. Only input with no ATR at all (empty, bad TS) raises
``ATRError``.

The historical bytes are decoded per ISO/IEC 7816-4 §8.1.1 (category
indicator, COMPACT-TLV objects, status indicator).
"""

from .errors import CcidkitError
from .hexutil import HexError, from_hex, to_hex
from . import iso7816


class ATRError(CcidkitError):
    """No ATR could be read at all (empty input, TS neither 3B nor 3F/03)."""


# §8.1: TS values. 0x03 is what an inverse-convention TS (3F) looks like when
# the line is sampled with the direct convention.
TS_DIRECT = 0x3B
TS_INVERSE = 0x3F
TS_INVERSE_RAW = 0x03

# §8.2.1: at most 32 characters follow TS.
MAX_ATR_LENGTH = 33

# §10.2: T=0 waiting time integer WI when TC2 is absent.
WI_DEFAULT = 10
# §11.4: T=1 defaults when the card gives no T=1 specific bytes.
IFSC_DEFAULT = 32
BWI_DEFAULT = 4
CWI_DEFAULT = 13

# §8.3: TC1 = FF asks for the minimal guard time: 12 etu (T=0), 11 etu (T=1).
N_MINIMAL = 255

# §8.3, TAi after T=15: clock stop indicator X (bits 8-7).
CLOCK_STOP = ("not supported", "state L", "state H", "no preference")
# §8.3, TAi after T=15: class indicator U (bits 6-1); A 5 V, B 3 V, C 1.8 V.
CLASS_NAMES = (("A", "5 V"), ("B", "3 V"), ("C", "1.8 V"))

_NAMES = ("TA", "TB", "TC", "TD")


def inverse_convention(data):
    """Converts bytes between the inverse and the direct convention.

    §8.1: with the inverse convention the line carries each byte most
    significant bit first with low level meaning 1; read as direct, a byte
    comes out bit-reversed and complemented. The transform is its own inverse.
    """
    out = bytearray(len(data))
    for j in range(len(data)):
        b = data[j]
        r = 0
        for i in range(8):
            if b & (1 << i):
                r |= 0x80 >> i
        out[j] = r ^ 0xFF
    return bytes(out)


def _xor(data):
    x = 0
    for b in data:
        x ^= b
    return x


def _bits(byte, table):
    """Names from ``table`` (list of (mask, name)) whose mask bit is set."""
    out = []
    for mask, name in table:
        if byte & mask:
            out.append(name)
    return out


# ---------------------------------------------------------------------------
# Historical bytes (ISO/IEC 7816-4 §8.1.1)

# COMPACT-TLV tags of the historical bytes (7816-4 §8.1.1.2).
COMPACT_TAGS = {
    0x1: "country code and national data",
    0x2: "issuer identification number",
    0x3: "card service data",
    0x4: "initial access data",
    0x5: "card issuer's data",
    0x6: "pre-issuing data",
    0x7: "card capabilities",
    0x8: "status indicator",
    0xF: "application identifier",
}

# 7816-4 card service data byte.
_SERVICE_SELECTION = ((0x80, "application selection by full DF name"),
                      (0x40, "application selection by partial DF name"),
                      (0x20, "BER-TLV data objects in EF.DIR"),
                      (0x10, "BER-TLV data objects in EF.ATR"))
_SERVICE_ACCESS = {4: "EF.DIR and EF.ATR access by READ BINARY",
                   0: "EF.DIR and EF.ATR access by READ RECORD(S)",
                   2: "EF.DIR and EF.ATR access by GET DATA"}

# 7816-4 card capabilities, first software function table: selection methods.
_SELECTION_METHODS = ((0x80, "DF selection by full DF name"),
                      (0x40, "DF selection by partial DF name"),
                      (0x20, "DF selection by path"),
                      (0x10, "DF selection by file identifier"),
                      (0x08, "implicit DF selection"),
                      (0x04, "short EF identifier"),
                      (0x02, "record number"),
                      (0x01, "record identifier"))
# Data coding byte, bits 7-6: behaviour of write functions.
_WRITE_BEHAVIOUR = ("one-time write", "proprietary", "write OR", "write AND")
_CHANNEL_ASSIGNMENT = ("no logical channel", "by the interface device",
                       "by the card", "by the interface device and the card")


def lcs_meaning(lcs):
    """Life cycle status byte (ISO/IEC 7816-4 §7.4.10, Table 13)."""
    if lcs == 0:
        return "no information given"
    if lcs == 1:
        return "creation state"
    if lcs == 3:
        return "initialisation state"
    if lcs & 0xF0:
        return "proprietary"
    if lcs & 0xFD == 0x05:
        return "operational state (activated)"
    if lcs & 0xFD == 0x04:
        return "operational state (deactivated)"
    if lcs & 0xFC == 0x0C:
        return "termination state"
    return "RFU"


def _status(value):
    """Status indicator: LCS, SW1 SW2, or LCS SW1 SW2 (7816-4 §8.1.1.3)."""
    st = {"lcs": None, "lcs_meaning": None, "sw": None}
    if len(value) in (1, 3):
        st["lcs"] = "%02X" % value[0]
        st["lcs_meaning"] = lcs_meaning(value[0])
    if len(value) in (2, 3):
        st["sw"] = to_hex(value[-2:], "")
    return st


def _describe_object(tag, value):
    """One COMPACT-TLV object as a dict (hex value, name, meaning lines, fields)."""
    obj = {"tag": "%X" % tag, "name": COMPACT_TAGS.get(tag, "RFU or proprietary"),
           "value": to_hex(value, ""), "meaning": []}
    lines = obj["meaning"]
    if tag == 0x3 and len(value) >= 1:
        b = value[0]
        lines.extend(_bits(b, _SERVICE_SELECTION))
        access = (b >> 1) & 7
        lines.append(_SERVICE_ACCESS.get(access, "EF.DIR and EF.ATR access: RFU (%d)" % access))
        lines.append("card without MF" if b & 1 else "card with MF")
    elif tag == 0x7:
        if len(value) >= 1:
            methods = _bits(value[0], _SELECTION_METHODS)
            obj["selection_methods"] = methods
            lines.append("selection methods: " + (", ".join(methods) if methods else "none"))
        if len(value) >= 2:
            b = value[1]
            coding = {
                "tlv_efs": bool(b & 0x80),
                "write_behaviour": _WRITE_BEHAVIOUR[(b >> 5) & 3],
                "ff_tag_valid": bool(b & 0x10),
                "data_unit_quartets": 1 << (b & 0x0F),
            }
            obj["data_coding"] = coding
            lines.append("data coding: %sEFs of TLV structure, write functions %s, "
                         "first tag byte FF %s, data unit %d quartets"
                         % ("" if coding["tlv_efs"] else "no ", coding["write_behaviour"],
                            "valid" if coding["ff_tag_valid"] else "invalid (padding)",
                            coding["data_unit_quartets"]))
        if len(value) >= 3:
            b = value[2]
            obj["command_chaining"] = bool(b & 0x80)
            obj["extended_lc_le"] = bool(b & 0x40)
            obj["extended_length_info"] = bool(b & 0x20)
            obj["logical_channel_assignment"] = _CHANNEL_ASSIGNMENT[(b >> 3) & 3]
            obj["max_logical_channels"] = (b & 7) + 1
            lines.append("command chaining: %s" % ("yes" if b & 0x80 else "no"))
            lines.append("extended Lc and Le: %s" % ("yes" if b & 0x40 else "no"))
            if b & 0x20:
                lines.append("extended length information in EF.ATR/INFO")
            lines.append("logical channel numbers assigned %s, at most %d"
                         % (obj["logical_channel_assignment"], obj["max_logical_channels"]))
            if obj["logical_channel_assignment"] == _CHANNEL_ASSIGNMENT[0]:
                lines[-1] = "no logical channel"
    elif tag == 0x8:
        st = _status(value)
        obj["status"] = st
        if st["lcs"] is not None:
            lines.append("LCS %s: %s" % (st["lcs"], st["lcs_meaning"]))
        if st["sw"] is not None:
            lines.append("SW1SW2 %s" % st["sw"])
        if st["lcs"] is None and st["sw"] is None:
            lines.append("unexpected length %d" % len(value))
    elif tag == 0xF:
        lines.append("AID " + to_hex(value))
    elif tag == 0x1 and len(value) >= 2:
        lines.append("country code %X%02X (ISO 3166-1 digits), national data %s"
                     % (value[0], value[1], to_hex(value[2:]) or "none"))
    return obj


def _compact_tlv(data, out):
    """Decodes COMPACT-TLV objects into out["objects"]; problems into out["errors"]."""
    pos = 0
    n = len(data)
    while pos < n:
        b = data[pos]
        tag = b >> 4
        ln = b & 0x0F
        if pos + 1 + ln > n:
            out["errors"].append("COMPACT-TLV object %02X needs %d bytes, %d left"
                                 % (b, ln, n - pos - 1))
            break
        obj = _describe_object(tag, data[pos + 1:pos + 1 + ln])
        out["objects"].append(obj)
        if tag == 0x8 and "status" in obj:
            out["status"] = obj["status"]
        pos += 1 + ln


def decode_historical(hist):
    """Historical bytes per ISO/IEC 7816-4 §8.1.1, as a dict; None when there are none.

    Keys: category (hex), format, objects (COMPACT-TLV objects), status
    (status indicator or None), dir_reference (category 10), errors.
    """
    if not hist:
        return None
    cat = hist[0]
    out = {"category": "%02X" % cat, "format": "proprietary", "objects": [],
           "status": None, "dir_reference": None, "errors": []}
    if cat == 0x00:
        # Mandatory status indicator in the last three bytes.
        out["format"] = "COMPACT-TLV, status indicator in the last 3 bytes"
        if len(hist) < 4:
            out["errors"].append("category 00 needs at least 3 status bytes")
            _compact_tlv(hist[1:], out)
        else:
            _compact_tlv(hist[1:-3], out)
            out["status"] = _status(hist[-3:])
    elif cat == 0x80:
        out["format"] = "COMPACT-TLV"
        _compact_tlv(hist[1:], out)
    elif cat == 0x10:
        out["format"] = "DIR data reference"
        if len(hist) >= 2:
            out["dir_reference"] = "%02X" % hist[1]
            if len(hist) > 2:
                out["errors"].append("%d bytes after the DIR data reference" % (len(hist) - 2))
        else:
            out["errors"].append("DIR data reference missing")
    elif 0x81 <= cat <= 0x8F:
        out["format"] = "RFU"
    return out


# ---------------------------------------------------------------------------
# The ATR


class ATR:
    """A parsed ATR. Read the attributes; see ``as_dict`` for their JSON form.

    raw, data          the bytes given / decoded to the direct convention
    ts, convention     0x3B "direct" or 0x3F "inverse"; line_inverse: TS came as 03
    t0, k              format byte and the number of historical bytes it announces
    interface          list of [TAi, TBi, TCi, TDi] (None when absent), index i-1
    protocols          offered protocols in order (T=15 excluded; [0] without TD1)
    fi, di, fmax_mhz   from TA1 (372, 1, 5 without TA1; None for reserved codes)
    fi_code, di_code   the TA1 nibbles (1, 1 without TA1)
    n                  extra guard time integer from TC1 (0 without TC1)
    specific_mode      None, or dict protocol / can_change / implicit (TA2)
    wi                 T=0 waiting time integer (TC2, default 10), None without T=0
    ifsc, bwi, cwi, edc  T=1 parameters (None without T=1); edc "LRC"/"CRC"
    clock_stop, classes, spu   T=15 global bytes (None when absent)
    historical, historical_decoded
    tck, tck_due, tck_ok   tck_ok None when no TCK is due
    extra              bytes after the ATR
    warnings           list of str
    """

    def __init__(self, raw):
        self.raw = bytes(raw)
        self.data = self.raw
        self.line_inverse = False
        self.ts = 0
        self.convention = "direct"
        self.t0 = None
        self.k = 0
        self.interface = []
        self.td_protocols = []
        self.protocols = [0]
        self.fi_code = 1
        self.di_code = 1
        self.fi = iso7816.FD
        self.di = iso7816.DD
        self.fmax_mhz = iso7816.FMAX_DEFAULT_MHZ
        self.n = 0
        self.specific_mode = None
        self.wi = None
        self.ifsc = None
        self.bwi = None
        self.cwi = None
        self.edc = None
        self.clock_stop = None
        self.classes = None
        self.spu = None
        self.historical = b""
        self.historical_decoded = None
        self.tck = None
        self.tck_due = False
        self.tck_ok = None
        self.length = 0
        self.extra = b""
        self.warnings = []

    # -- access to interface bytes by their ISO names -------------------------
    def _byte(self, i, which):
        if i < 1 or i > len(self.interface):
            return None
        return self.interface[i - 1][which]

    def ta(self, i):
        return self._byte(i, 0)

    def tb(self, i):
        return self._byte(i, 1)

    def tc(self, i):
        return self._byte(i, 2)

    def td(self, i):
        return self._byte(i, 3)

    def group_protocol(self, i):
        """T of TD(i-1): the protocol interface bytes of group i belong to (None for i=1)."""
        if i < 2 or i - 2 >= len(self.td_protocols):
            return None
        return self.td_protocols[i - 2]

    @property
    def bytes(self):
        """The ATR itself (decoded, without extra bytes)."""
        return self.data[:self.length]

    def baud_rate(self, clock_hz=iso7816.DEFAULT_CLOCK_HZ):
        """Bits per second with TA1's Fi/Di at ``clock_hz``; None for reserved codes."""
        if self.fi is None or self.di is None:
            return None
        return iso7816.baud_rate(self.fi, self.di, clock_hz)

    def guard_time_etu(self, protocol=0):
        """Character guard time in etu after this ATR (§8.3, TC1)."""
        if self.n == N_MINIMAL:
            return 11 if protocol == 1 else 12
        return 12 + self.n

    def __repr__(self):
        return "<ATR %s>" % to_hex(self.bytes)

    # -- output ---------------------------------------------------------------
    def as_dict(self, clock_hz=iso7816.DEFAULT_CLOCK_HZ):
        """Machine-readable form (the `ccidkit atr --json` fields)."""
        groups = []
        for i in range(1, len(self.interface) + 1):
            g = {"i": i, "protocol": self.group_protocol(i)}
            for w in range(4):
                v = self.interface[i - 1][w]
                g[_NAMES[w].lower()] = None if v is None else "%02X" % v
            groups.append(g)
        return {
            "atr": to_hex(self.bytes, ""),
            "raw": to_hex(self.raw, ""),
            "ts": "%02X" % self.ts,
            "convention": self.convention,
            "line_inverse": self.line_inverse,
            "t0": None if self.t0 is None else "%02X" % self.t0,
            "interface_bytes": groups,
            "protocols": list(self.protocols),
            "fi": self.fi,
            "di": self.di,
            "fmax_mhz": self.fmax_mhz,
            "clock_hz": clock_hz,
            "baud_rate": self.baud_rate(clock_hz),
            "n": self.n,
            "specific_mode": None if self.specific_mode is None else dict(self.specific_mode),
            "wi": self.wi,
            "ifsc": self.ifsc,
            "bwi": self.bwi,
            "cwi": self.cwi,
            "edc": self.edc,
            "clock_stop": self.clock_stop,
            "class": None if self.classes is None else list(self.classes),
            "spu": None if self.spu is None else "%02X" % self.spu,
            "historical": to_hex(self.historical, ""),
            "historical_decoded": self.historical_decoded,
            "tck": None if self.tck is None else "%02X" % self.tck,
            "tck_ok": self.tck_ok,
            "extra": to_hex(self.extra, ""),
            "warnings": list(self.warnings),
        }

    def explain(self, clock_hz=iso7816.DEFAULT_CLOCK_HZ):
        """A human explanation, one line a string, each byte and what it means."""
        out = ["ATR: " + to_hex(self.bytes)]
        if self.line_inverse:
            out.append("  (read from the line as " + to_hex(self.raw[:self.length])
                       + ", inverse convention decoded)")
        out.append("TS = %02X  %s convention" % (self.ts, self.convention))
        if self.t0 is None:
            self._explain_tail(out, clock_hz)
            return out
        y = self.t0 >> 4
        present = []
        for w in range(4):
            if y & (1 << w):
                present.append(_NAMES[w] + "1")
        out.append("T0 = %02X  Y1 = %X: %s; K = %d historical bytes"
                   % (self.t0, y, " ".join(present) if present else "no interface bytes", self.k))
        for i in range(1, len(self.interface) + 1):
            for w in range(4):
                v = self.interface[i - 1][w]
                if v is not None:
                    out.append("%s%d = %02X  %s" % (_NAMES[w], i, v, self._meaning(i, w, v, clock_hz)))
        if self.historical:
            out.append("Historical bytes (%d): %s" % (len(self.historical), to_hex(self.historical)))
            self._explain_historical(out)
        if self.tck is not None:
            out.append("TCK = %02X  %s" % (self.tck, "correct checksum" if self.tck_ok
                                           else "WRONG checksum"))
        self._explain_tail(out, clock_hz)
        return out

    def _meaning(self, i, w, v, clock_hz):
        name = _NAMES[w]
        if w == 3:
            y = v >> 4
            nxt = []
            for b in range(4):
                if y & (1 << b):
                    nxt.append("%s%d" % (_NAMES[b], i + 1))
            t = v & 0x0F
            what = "global interface bytes follow" if t == 15 else "protocol T=%d" % t
            return "Y%d = %X: %s; %s" % (i + 1, y, " ".join(nxt) if nxt else "no more interface bytes",
                                        what)
        if i == 1:
            if w == 0:
                fi = iso7816.FI_TABLE[v >> 4]
                di = iso7816.DI_TABLE[v & 15]
                if fi is None or di is None:
                    return "Fi code %X, Di code %X: reserved value" % (v >> 4, v & 15)
                fmax = iso7816.FMAX_MHZ_TABLE[v >> 4]
                text = "Fi = %d, Di = %d, f(max) = %s MHz; %d cycles/etu" % (fi, di, fmax, fi // di) \
                    if fi % di == 0 else "Fi = %d, Di = %d, f(max) = %s MHz" % (fi, di, fmax)
                text += "; %d bit/s at %s MHz" % (iso7816.baud_rate(fi, di, clock_hz),
                                                 _mhz(clock_hz))
                fmax_hz = int(fmax * 1000000)
                if fmax_hz != clock_hz:
                    text += ", %d bit/s at f(max) %s MHz" % (iso7816.baud_rate(fi, di, fmax_hz), fmax)
                return text
            if w == 1:
                if v == 0:
                    return "VPP not connected (TB1 is deprecated)"
                return "programming voltage PI1 %d, current II %d (TB1 is deprecated)" % (
                    v & 0x1F, (v >> 5) & 3)
            if v == N_MINIMAL:
                return "N = 255: minimal guard time (12 etu for T=0, 11 etu for T=1)"
            return "extra guard time N = %d etu (guard time %d etu)" % (v, 12 + v)
        if i == 2:
            if w == 0:
                return "specific mode: protocol T=%d, %s, %s" % (
                    v & 0x0F, "unable to change" if v & 0x80 else "capable to change (warm reset)",
                    "implicit parameters" if v & 0x10 else "parameters from the interface bytes")
            if w == 1:
                return "programming voltage PI2 %d (TB2 is deprecated)" % v
            if v == 0:
                return "WI = 0 is reserved (WI %d assumed)" % WI_DEFAULT
            return "T=0 waiting time integer WI = %d (WT = %d x 960 x Fi/f)" % (v, v)
        t = self.group_protocol(i)
        if t == 1:
            first = self._first_for(1, w) == i
            if not first:
                return "T=1 byte (only the first %s for T=1 is used)" % name
            if w == 0:
                return "IFSC = %d (T=1)" % v
            if w == 1:
                return "BWI = %d, CWI = %d (T=1)" % (v >> 4, v & 15)
            return "EDC: %s (T=1)" % ("CRC" if v & 1 else "LRC")
        if t == 15:
            first = self._first_for(15, w) == i
            if not first:
                return "global byte (only the first %s after T=15 is used)" % name
            if w == 0:
                cls = []
                for b in range(3):
                    if v & (1 << b):
                        cls.append("%s (%s)" % CLASS_NAMES[b])
                if v & 0x38:
                    cls.append("RFU class bits %02X" % (v & 0x38))
                return "clock stop %s; classes %s" % (CLOCK_STOP[v >> 6],
                                                      ", ".join(cls) if cls else "none")
            if w == 1:
                if v == 0:
                    return "SPU: contact C6 not used"
                if v & 0x80:
                    return "SPU: proprietary use of contact C6 (%02X)" % (v & 0x7F)
                return "SPU: standard use of contact C6 (%02X)" % v
            return "global byte (RFU)"
        return "specific to T=%d" % t

    def _first_for(self, protocol, which):
        """Index i (> 2) of the first interface byte ``which`` for ``protocol``, or 0."""
        for i in range(3, len(self.interface) + 1):
            if self.group_protocol(i) == protocol and self.interface[i - 1][which] is not None:
                return i
        return 0

    def _explain_historical(self, out):
        d = self.historical_decoded
        if d is None:
            return
        out.append("  Category indicator %s: %s" % (d["category"], d["format"]))
        if d["format"] == "proprietary":
            text = _printable(self.historical)
            if text is not None:
                out.append('  as text: "%s"' % text)
        for obj in d["objects"]:
            out.append("  %s%s: %s" % (obj["tag"], "%X" % (len(obj["value"]) // 2), obj["name"])
                       + ("" if not obj["value"] else " = " + obj["value"]))
            for line in obj["meaning"]:
                out.append("    - " + line)
        if d["dir_reference"] is not None:
            out.append("  DIR data reference %s" % d["dir_reference"])
        st = d["status"]
        if st is not None and d["category"] == "00":
            out.append("  Status indicator: LCS %s (%s), SW1SW2 %s"
                       % (st["lcs"], st["lcs_meaning"], st["sw"]))
        for e in d["errors"]:
            out.append("  ! " + e)

    def _explain_tail(self, out, clock_hz):
        out.append("Protocols offered: " + ", ".join(["T=%d" % t for t in self.protocols]))
        if self.specific_mode is not None:
            out.append("Specific mode: T=%d, no PPS" % self.specific_mode["protocol"])
        if self.fi is not None and self.di is not None:
            out.append("Fi = %d, Di = %d, f(max) = %s MHz: %d bit/s at %s MHz%s"
                       % (self.fi, self.di, self.fmax_mhz, self.baud_rate(clock_hz),
                          _mhz(clock_hz), "" if self.ta(1) is not None else " (defaults, no TA1)"))
        out.append("Guard time: %s" % ("minimal (12 etu for T=0, 11 etu for T=1)"
                                       if self.n == N_MINIMAL else "%d etu" % (12 + self.n)))
        if self.wi is not None:
            out.append("T=0: WI = %d" % self.wi)
        if self.ifsc is not None:
            out.append("T=1: IFSC = %d, BWI = %d, CWI = %d, EDC = %s"
                       % (self.ifsc, self.bwi, self.cwi, self.edc))
        if self.clock_stop is not None:
            out.append("Clock stop: %s; classes: %s" % (self.clock_stop,
                                                       ", ".join(self.classes) or "none"))
        for w in self.warnings:
            out.append("Warning: " + w)


def _printable(data):
    """The bytes as ASCII text when every one is printable, else None."""
    for b in data:
        if b < 0x20 or b > 0x7E:
            return None
    return bytes(data).decode()


def _mhz(clock_hz):
    """4000000 -> "4", 3571200 -> "3.5712" (no float formatting differences)."""
    clock_hz = int(clock_hz)
    whole = clock_hz // 1000000
    frac = clock_hz % 1000000
    if not frac:
        return "%d" % whole
    return ("%d.%06d" % (whole, frac)).rstrip("0")


def parse_atr(data):
    """Parses an ATR (bytes, or hex text) into an ``ATR``.

    Raises ATRError only when there is no ATR at all: empty input, text that
    is not hex, or a TS other than 3B, 3F or 03 (raw inverse convention).
    """
    if isinstance(data, str):
        try:
            data = from_hex(data)
        except HexError as e:
            raise ATRError("ATR is not hex: %s" % e, name="ATR_NOT_HEX")
    data = bytes(data)
    if not data:
        raise ATRError("empty ATR", name="ATR_EMPTY")
    atr = ATR(data)
    ts = data[0]
    if ts == TS_INVERSE_RAW:
        # §8.1: inverse convention sampled as direct; decode every byte first.
        data = inverse_convention(data)
        atr.line_inverse = True
        ts = data[0]
    if ts == TS_DIRECT:
        atr.convention = "direct"
    elif ts == TS_INVERSE:
        atr.convention = "inverse"
    else:
        raise ATRError("TS = %02X is neither 3B (direct) nor 3F (inverse convention)" % ts,
                       name="ATR_BAD_TS")
    atr.data = data
    atr.ts = ts
    _parse_structure(atr, data)
    _interpret(atr)
    return atr


def _parse_structure(atr, data):
    """T0, interface bytes, historical bytes, TCK (§8.2); fills atr, warns on problems."""
    n = len(data)
    w = atr.warnings
    if n < 2:
        atr.length = n
        w.append("truncated: T0 missing")
        return
    atr.t0 = data[1]
    atr.k = data[1] & 0x0F
    y = data[1] >> 4
    pos = 2
    truncated = False
    i = 1
    # Each group after the first is announced by a TD byte already consumed,
    # so the loop ends within len(data) rounds.
    while True:
        group = [None, None, None, None]
        for b in range(4):
            if y & (1 << b):
                if pos >= n:
                    w.append("truncated: %s%d missing" % (_NAMES[b], i))
                    truncated = True
                    break
                group[b] = data[pos]
                pos += 1
        atr.interface.append(group)
        if truncated or group[3] is None:
            break
        y = group[3] >> 4
        atr.td_protocols.append(group[3] & 0x0F)
        i += 1
    # §8.2.3: TD1 absent means only T=0; T=15 (global bytes) is no protocol.
    protos = []
    for t in atr.td_protocols:
        if t != 15 and t not in protos:
            protos.append(t)
    if atr.td_protocols and atr.td_protocols[0] == 15:
        w.append("TD1 indicates T=15, which is invalid in TD1")
    atr.protocols = protos or [0]
    # §8.2.5: TCK is absent when only T=0 is indicated, present otherwise.
    for t in atr.td_protocols:
        if t != 0:
            atr.tck_due = True
    if truncated:
        atr.length = n
        if atr.tck_due:
            atr.tck_ok = False
        return
    end = pos + atr.k
    if end > n:
        atr.historical = data[pos:n]
        w.append("truncated: %d historical bytes announced, %d present" % (atr.k, n - pos))
        pos = n
    else:
        atr.historical = data[pos:end]
        pos = end
    if atr.tck_due:
        if pos < n:
            atr.tck = data[pos]
            pos += 1
            # §8.2.5: the exclusive-or of T0 to TCK inclusive is null.
            atr.tck_ok = _xor(data[1:pos]) == 0
            if not atr.tck_ok:
                w.append("wrong TCK %02X (expected %02X)" % (atr.tck, _xor(data[1:pos - 1])))
        else:
            atr.tck_ok = False
            w.append("missing TCK")
    atr.length = pos
    if pos < n:
        atr.extra = data[pos:]
        note = ""
        if not atr.tck_due and _xor(data[1:]) == 0 and n - pos == 1:
            note = " (looks like a TCK, which is not due when only T=0 is indicated)"
        w.append("%d extra byte%s after the ATR%s" % (n - pos, "" if n - pos == 1 else "s", note))
    if pos > MAX_ATR_LENGTH:
        w.append("ATR is %d bytes, over the %d ISO/IEC 7816-3 allows" % (pos, MAX_ATR_LENGTH))


def _interpret(atr):
    """The meaning of the interface bytes (§8.3) and of the historical bytes."""
    w = atr.warnings
    ta1 = atr.ta(1)
    if ta1 is not None:
        atr.fi_code = ta1 >> 4
        atr.di_code = ta1 & 0x0F
        atr.fi = iso7816.FI_TABLE[atr.fi_code]
        atr.fmax_mhz = iso7816.FMAX_MHZ_TABLE[atr.fi_code]
        atr.di = iso7816.DI_TABLE[atr.di_code]
        if atr.fi is None:
            w.append("TA1 = %02X: Fi code %X is reserved" % (ta1, atr.fi_code))
        if atr.di is None:
            w.append("TA1 = %02X: Di code %X is reserved" % (ta1, atr.di_code))
    tc1 = atr.tc(1)
    if tc1 is not None:
        atr.n = tc1
    ta2 = atr.ta(2)
    if ta2 is not None:
        # §8.3 TA2: specific mode byte.
        atr.specific_mode = {"protocol": ta2 & 0x0F, "can_change": not (ta2 & 0x80),
                             "implicit": bool(ta2 & 0x10)}
        if (ta2 & 0x0F) not in atr.protocols:
            w.append("TA2 names T=%d, which the TD bytes do not offer" % (ta2 & 0x0F))
    # §10.2: TC2 is specific to T=0.
    tc2 = atr.tc(2)
    if tc2 is not None:
        if tc2 == 0:
            w.append("TC2 = 00 is reserved; WI %d assumed" % WI_DEFAULT)
            atr.wi = WI_DEFAULT
        else:
            atr.wi = tc2
    elif 0 in atr.protocols:
        atr.wi = WI_DEFAULT
    # §11.4: the first TA/TB/TC for T=1 (i > 2) give IFSC, BWI/CWI and EDC.
    if 1 in atr.protocols:
        atr.ifsc = IFSC_DEFAULT
        atr.bwi = BWI_DEFAULT
        atr.cwi = CWI_DEFAULT
        atr.edc = "LRC"
        i = atr._first_for(1, 0)
        if i:
            atr.ifsc = atr.ta(i)
            if atr.ifsc == 0 or atr.ifsc == 0xFF:
                w.append("IFSC = %d is reserved (1 to 254)" % atr.ifsc)
        i = atr._first_for(1, 1)
        if i:
            atr.bwi = atr.tb(i) >> 4
            atr.cwi = atr.tb(i) & 0x0F
            if atr.bwi > 9:
                w.append("BWI = %d is reserved (0 to 9)" % atr.bwi)
        i = atr._first_for(1, 2)
        if i:
            atr.edc = "CRC" if atr.tc(i) & 1 else "LRC"
    # §8.3: the first TA and TB after T=15 are global.
    i = atr._first_for(15, 0)
    if i:
        v = atr.ta(i)
        atr.clock_stop = CLOCK_STOP[v >> 6]
        atr.classes = []
        for b in range(3):
            if v & (1 << b):
                atr.classes.append(CLASS_NAMES[b][0])
    i = atr._first_for(15, 1)
    if i:
        atr.spu = atr.tb(i)
    atr.historical_decoded = decode_historical(atr.historical)
