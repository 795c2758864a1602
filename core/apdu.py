"""Command and response APDUs (ISO/IEC 7816-4 §5), status words, GET RESPONSE and chaining.

Sans-I/O: builders and parsers only. The helpers that follow 61xx / 6Cxx take
a caller-supplied ``transmit(command_bytes) -> response_bytes`` function.

Lengths use the field's own names: Nc is the number of command data bytes
(encoded in Lc), Ne the maximum number of response data bytes expected
(encoded in Le; short Le 00 means 256, extended Le 0000 means 65536).
"""

from .errors import CcidkitError


class APDUError(CcidkitError):
    """A malformed APDU, or a value that cannot be encoded as one.

    ``name`` is one of: APDU_TOO_SHORT, BAD_LENGTH (the body does not match
    the Lc/Le encodings of §5.1), BAD_FIELD (a header byte out of range),
    DATA_TOO_LONG, BAD_NE, NOT_SHORT (short form forced on an APDU that needs
    the extended form), RESPONSE_TOO_SHORT, NO_RESPONSE, TOO_MANY_ROUNDS,
    BAD_CHAIN.
    """


INS_GET_RESPONSE = 0xC0
INS_ENVELOPE = 0xC2
CLA_CHAINING = 0x10  # ISO/IEC 7816-4 §5.1.1.1: CLA b5 set = "not the last command of a chain"

MAX_NC = 65535
MAX_NE_SHORT = 256
MAX_NE_EXTENDED = 65536

# Enough GET RESPONSE rounds for 64 KiB in 256-byte pieces, plus a few 6Cxx.
DEFAULT_MAX_ROUNDS = 272


def _as_bytes(data):
    if isinstance(data, bytes):
        return data
    return bytes(data)


def _check_byte(name, value):
    if not isinstance(value, int) or value < 0 or value > 255:
        raise APDUError("%s must be a byte 0..255, not %r" % (name, value), name="BAD_FIELD")


class CommandAPDU:
    """A command APDU: CLA INS P1 P2 [Lc data] [Le].

    ``ne`` is the expected response length (1..65536) or None when no
    response data is expected. ``extended`` None lets the encoder choose the
    short form when it can (Nc <= 255 and Ne <= 256); True forces the
    extended form, False forces the short form (APDUError NOT_SHORT if it
    cannot hold the lengths). ``case`` is 1..4 and ``case_name`` one of
    "1", "2S", "3S", "4S", "2E", "3E", "4E" (ISO/IEC 7816-3 §12.1.2).
    """

    def __init__(self, cla, ins, p1, p2, data=b"", ne=None, extended=None):
        _check_byte("CLA", cla)
        _check_byte("INS", ins)
        _check_byte("P1", p1)
        _check_byte("P2", p2)
        data = _as_bytes(data) if data else b""
        if len(data) > MAX_NC:
            raise APDUError("command data of %d bytes: at most %d fit in Lc" % (len(data), MAX_NC),
                            name="DATA_TOO_LONG")
        if ne is not None:
            if not isinstance(ne, int) or ne < 1 or ne > MAX_NE_EXTENDED:
                raise APDUError("Ne must be None or 1..65536, not %r" % (ne,), name="BAD_NE")
        self.cla = cla
        self.ins = ins
        self.p1 = p1
        self.p2 = p2
        self.data = data
        self.ne = ne
        if data:
            self.case = 4 if ne is not None else 3
        else:
            self.case = 2 if ne is not None else 1
        needs_extended = len(data) > 255 or (ne is not None and ne > MAX_NE_SHORT)
        if self.case == 1:
            self.extended = False
        elif extended is None:
            self.extended = needs_extended
        elif extended:
            self.extended = True
        else:
            if needs_extended:
                raise APDUError("Nc=%d, Ne=%r need the extended form" % (len(data), ne),
                                name="NOT_SHORT")
            self.extended = False

    @property
    def nc(self):
        return len(self.data)

    @property
    def case_name(self):
        if self.case == 1:
            return "1"
        return "%d%s" % (self.case, "E" if self.extended else "S")

    def header(self):
        return bytes((self.cla, self.ins, self.p1, self.p2))

    def to_bytes(self):
        # ISO/IEC 7816-4 §5.1 (Table 1) and ISO/IEC 7816-3 §12.1.3.
        out = bytearray(self.header())
        nc = len(self.data)
        if self.extended:
            out.append(0)
            if nc:
                out.append(nc >> 8)
                out.append(nc & 0xFF)
                out.extend(self.data)
            if self.ne is not None:
                le = self.ne & 0xFFFF  # 65536 -> 0000
                out.append(le >> 8)
                out.append(le & 0xFF)
        else:
            if nc:
                out.append(nc)
                out.extend(self.data)
            if self.ne is not None:
                out.append(self.ne & 0xFF)  # 256 -> 00
        return bytes(out)

    @classmethod
    def parse(cls, raw):
        """Decode a command APDU (ISO/IEC 7816-3 §12.1.3); APDUError when malformed."""
        raw = _as_bytes(raw)
        n = len(raw)
        if n < 4:
            raise APDUError("%d bytes: a command APDU has at least CLA INS P1 P2" % n,
                            name="APDU_TOO_SHORT")
        cla = raw[0]
        ins = raw[1]
        p1 = raw[2]
        p2 = raw[3]
        if n == 4:
            return cls(cla, ins, p1, p2)
        b1 = raw[4]
        if n == 5:
            # case 2S: Le on one byte, 00 means 256
            return cls(cla, ins, p1, p2, ne=(b1 or 256), extended=False)
        if b1 != 0:
            # short Lc: case 3S (5 + Lc bytes) or 4S (6 + Lc bytes)
            if n == 5 + b1:
                return cls(cla, ins, p1, p2, raw[5:], extended=False)
            if n == 6 + b1:
                return cls(cla, ins, p1, p2, raw[5:5 + b1], ne=(raw[n - 1] or 256), extended=False)
            raise APDUError("short Lc=%d but %d body bytes (case 3S needs %d, 4S %d)"
                            % (b1, n - 4, b1 + 1, b1 + 2), name="BAD_LENGTH")
        # b1 == 00: the extended form (a short Lc of 00 is not allowed, §5.1)
        if n < 7:
            raise APDUError("%d body bytes starting with 00: neither short nor extended" % (n - 4),
                            name="BAD_LENGTH")
        b23 = (raw[5] << 8) | raw[6]
        if n == 7:
            # case 2E: Le on two bytes after 00, 0000 means 65536
            return cls(cla, ins, p1, p2, ne=(b23 or 65536), extended=True)
        if b23 == 0:
            raise APDUError("extended Lc of 0000 followed by %d bytes" % (n - 7), name="BAD_LENGTH")
        if n == 7 + b23:
            return cls(cla, ins, p1, p2, raw[7:], extended=True)
        if n == 9 + b23:
            le = (raw[n - 2] << 8) | raw[n - 1]
            return cls(cla, ins, p1, p2, raw[7:7 + b23], ne=(le or 65536), extended=True)
        raise APDUError("extended Lc=%d but %d body bytes (case 3E needs %d, 4E %d)"
                        % (b23, n - 4, b23 + 3, b23 + 5), name="BAD_LENGTH")

    def __eq__(self, other):
        if not isinstance(other, CommandAPDU):
            return False
        return (self.cla == other.cla and self.ins == other.ins and self.p1 == other.p1
                and self.p2 == other.p2 and self.data == other.data and self.ne == other.ne
                and self.extended == other.extended)

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return "CommandAPDU(case %s, %02X %02X %02X %02X, Nc=%d, Ne=%r)" % (
            self.case_name, self.cla, self.ins, self.p1, self.p2, len(self.data), self.ne)


class ResponseAPDU:
    """A response APDU: data (may be empty) and the trailer SW1 SW2."""

    def __init__(self, data, sw1, sw2):
        _check_byte("SW1", sw1)
        _check_byte("SW2", sw2)
        self.data = _as_bytes(data) if data else b""
        self.sw1 = sw1
        self.sw2 = sw2

    @property
    def sw(self):
        return (self.sw1 << 8) | self.sw2

    @property
    def ok(self):
        return self.sw1 == 0x90 and self.sw2 == 0x00

    def to_bytes(self):
        return self.data + bytes((self.sw1, self.sw2))

    def explain(self):
        return explain_sw(self.sw1, self.sw2)

    @classmethod
    def parse(cls, raw):
        """Split data and SW1 SW2; APDUError RESPONSE_TOO_SHORT under 2 bytes."""
        if raw is None:
            raise APDUError("no response", name="NO_RESPONSE")
        raw = _as_bytes(raw)
        n = len(raw)
        if n < 2:
            raise APDUError("%d bytes: a response APDU ends with SW1 SW2" % n,
                            name="RESPONSE_TOO_SHORT")
        return cls(raw[:n - 2], raw[n - 2], raw[n - 1])

    def __eq__(self, other):
        if not isinstance(other, ResponseAPDU):
            return False
        return self.data == other.data and self.sw1 == other.sw1 and self.sw2 == other.sw2

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return "ResponseAPDU(%d data bytes, SW %02X %02X)" % (len(self.data), self.sw1, self.sw2)


# --- status words --------------------------------------------------------------------------

# ISO/IEC 7816-4 §5.6, Tables 5 and 6: exact SW1 SW2 values.
_SW_EXACT = (
    (0x9000, "normal processing, no further qualification"),
    (0x6200, "warning, non-volatile memory unchanged, no information given"),
    (0x6281, "warning, part of returned data may be corrupted"),
    (0x6282, "warning, end of file or record reached before reading Ne bytes"),
    (0x6283, "warning, selected file deactivated"),
    (0x6284, "warning, file control information not formatted according to ISO/IEC 7816-4"),
    (0x6285, "warning, selected file in termination state"),
    (0x6286, "warning, no input data available from a sensor on the card"),
    (0x6300, "warning, non-volatile memory changed, no information given"),
    (0x6381, "warning, file filled up by the last write"),
    (0x6400, "execution error, non-volatile memory unchanged"),
    (0x6401, "execution error, immediate response required by the card"),
    (0x6500, "execution error, non-volatile memory changed"),
    (0x6581, "execution error, memory failure"),
    (0x6700, "wrong length (Lc or Le)"),
    (0x6800, "functions in CLA not supported"),
    (0x6881, "logical channel not supported"),
    (0x6882, "secure messaging not supported"),
    (0x6883, "last command of the chain expected"),
    (0x6884, "command chaining not supported"),
    (0x6900, "command not allowed, no information given"),
    (0x6981, "command incompatible with file structure"),
    (0x6982, "security status not satisfied"),
    (0x6983, "authentication method blocked"),
    (0x6984, "reference data not usable"),
    (0x6985, "conditions of use not satisfied"),
    (0x6986, "command not allowed (no current EF)"),
    (0x6987, "expected secure messaging data objects missing"),
    (0x6988, "incorrect secure messaging data objects"),
    (0x6A00, "wrong parameters P1-P2, no information given"),
    (0x6A80, "incorrect parameters in the command data field"),
    (0x6A81, "function not supported"),
    (0x6A82, "file or application not found"),
    (0x6A83, "record not found"),
    (0x6A84, "not enough memory space in the file"),
    (0x6A85, "Nc inconsistent with TLV structure"),
    (0x6A86, "incorrect parameters P1-P2"),
    (0x6A87, "Nc inconsistent with parameters P1-P2"),
    (0x6A88, "referenced data or reference data not found"),
    (0x6A89, "file already exists"),
    (0x6A8A, "DF name already exists"),
    (0x6B00, "wrong parameters P1-P2 (offset outside the EF)"),
    (0x6D00, "instruction code not supported or invalid"),
    (0x6E00, "class not supported"),
    (0x6F00, "no precise diagnosis"),
    # GSM 11.11 / ETSI TS 51.011 (SIM) status words still met on cards.
    (0x9240, "memory problem (GSM)"),
    (0x9300, "SIM application toolkit busy (GSM)"),
    (0x9400, "no EF selected (GSM)"),
    (0x9402, "out of range, invalid address (GSM)"),
    (0x9404, "file ID or pattern not found (GSM)"),
    (0x9408, "file inconsistent with the command (GSM)"),
    (0x9802, "no CHV initialised (GSM)"),
    (0x9804, "access condition not fulfilled (GSM)"),
    (0x9808, "in contradiction with CHV status (GSM)"),
    (0x9810, "in contradiction with invalidation status (GSM)"),
    (0x9840, "unsuccessful CHV verification, no attempt left (GSM)"),
    (0x9850, "increase cannot be performed, maximum value reached (GSM)"),
)


def _sw_exact(sw):
    for value, text in _SW_EXACT:
        if value == sw:
            return text
    return None


def _available(sw2, name):
    n = sw2 or 256
    return "%d %s" % (n, name)


def _explain_text(sw1, sw2):
    text = _sw_exact((sw1 << 8) | sw2)
    if text is not None:
        return text
    if sw1 == 0x61:
        # §5.6: SW2 = number of bytes still available (00: 256 or more)
        if sw2 == 0:
            return "normal processing, 256 or more bytes still available (GET RESPONSE with Le=00)"
        return "normal processing, %d bytes still available (GET RESPONSE with Le=%02X)" % (sw2, sw2)
    if sw1 == 0x62 and 0x02 <= sw2 <= 0x80:
        return "warning, non-volatile memory unchanged, triggering by the card (%02X)" % sw2
    if sw1 == 0x63 and (sw2 & 0xF0) == 0xC0:
        # §5.6: 63CX, X is a counter (for VERIFY: the remaining tries)
        x = sw2 & 0x0F
        if x == 1:
            return "verification failed, 1 try left"
        return "verification failed, %d tries left" % x
    if sw1 == 0x63:
        return "warning, non-volatile memory changed (%02X)" % sw2
    if sw1 == 0x64 and 0x02 <= sw2 <= 0x80:
        return "execution error, non-volatile memory unchanged, triggering by the card (%02X)" % sw2
    if sw1 == 0x64:
        return "execution error, non-volatile memory unchanged (%02X)" % sw2
    if sw1 == 0x65:
        return "execution error, non-volatile memory changed (%02X)" % sw2
    if sw1 == 0x66:
        return "security-related issue (%02X)" % sw2
    if sw1 == 0x67:
        return "wrong length (%02X)" % sw2
    if sw1 == 0x68:
        return "functions in CLA not supported (%02X)" % sw2
    if sw1 == 0x69:
        return "command not allowed (%02X)" % sw2
    if sw1 == 0x6A:
        return "wrong parameters P1-P2 (%02X)" % sw2
    if sw1 == 0x6C:
        # §5.6: wrong Le field, SW2 encodes the exact number of available bytes
        return "wrong Le field, %s available (re-issue with Le=%02X)" % (_available(sw2, "bytes"), sw2)
    if sw1 == 0x6B or sw1 == 0x6D or sw1 == 0x6E or sw1 == 0x6F:
        return "error (SW2 %02X is not defined for SW1 %02X)" % (sw2, sw1)
    if sw1 == 0x90:
        return "proprietary status (90 %02X)" % sw2
    if sw1 == 0x91:
        # ETSI TS 102 221 §10.2.1.1: normal ending, a proactive command is pending
        return "normal processing, proactive command of %s pending (FETCH)" % _available(sw2, "bytes")
    if sw1 == 0x92 and sw2 < 0x10:
        return "command successful after %d internal retries (GSM)" % sw2
    if sw1 == 0x9E:
        return "SIM data download error, %s of response available (GSM)" % _available(sw2, "bytes")
    if sw1 == 0x9F:
        # GSM 11.11: the GET RESPONSE length for SIM cards
        return "normal processing, %s of response available (GSM GET RESPONSE)" % _available(sw2, "bytes")
    if (sw1 & 0xF0) == 0x90:
        return "proprietary status"
    if (sw1 & 0xF0) == 0x60:
        return "unknown status"
    return "not a status word (SW1 must be 6X or 9X)"


def explain_sw(sw1, sw2):
    """One line about a status word, e.g. "63 C2: verification failed, 2 tries left"."""
    return "%02X %02X: %s" % (sw1 & 0xFF, sw2 & 0xFF, _explain_text(sw1 & 0xFF, sw2 & 0xFF))


# --- GET RESPONSE, 6Cxx and command chaining ----------------------------------------------

def _as_command(cmd):
    if isinstance(cmd, CommandAPDU):
        return cmd
    return CommandAPDU.parse(cmd)


def get_response_cla(cla):
    """The CLA for a GET RESPONSE following a command of class ``cla``.

    An interindustry class (b8 = 0) is kept (same logical channel) without
    its chaining bit; after a proprietary class the interindustry 00 is used.
    """
    if cla & 0x80:
        return 0x00
    return cla & ~CLA_CHAINING & 0xFF


def get_response_apdu(cla, sw2):
    """GET RESPONSE (ISO/IEC 7816-4 §7.6.1) asking for the SW2 bytes a 61xx announced.

    Le = SW2 (00 = 256). The chaining bit of CLA is cleared: GET RESPONSE is
    never part of a command chain.
    """
    return CommandAPDU(cla & ~CLA_CHAINING & 0xFF, INS_GET_RESPONSE, 0, 0, ne=(sw2 & 0xFF) or 256)


def reissue_with_le(cmd, sw2):
    """The same command with Le = SW2 of a 6Cxx answer (ISO/IEC 7816-3 §12.2.2)."""
    cmd = _as_command(cmd)
    extended = cmd.extended if cmd.case != 1 else None
    return CommandAPDU(cmd.cla, cmd.ins, cmd.p1, cmd.p2, cmd.data, ne=(sw2 & 0xFF) or 256,
                       extended=extended)


def transmit_with_auto_response(cmd_bytes, transmit, max_rounds=DEFAULT_MAX_ROUNDS):
    """Send a command and follow 61xx (GET RESPONSE) and 6Cxx (re-issue with Le=SW2).

    ``transmit(command_bytes) -> response_bytes`` exchanges one APDU. The data
    of every 61xx answer is kept and concatenated; the result is all data plus
    the final SW1 SW2. At most ``max_rounds`` exchanges (APDUError
    TOO_MANY_ROUNDS beyond that).
    """
    current = _as_bytes(cmd_bytes)
    collected = bytearray()
    rounds = 0
    while True:
        if rounds >= max_rounds:
            raise APDUError("still 61xx/6Cxx after %d exchanges" % rounds, name="TOO_MANY_ROUNDS")
        rounds += 1
        resp = ResponseAPDU.parse(transmit(current))
        if resp.sw1 == 0x6C:
            current = reissue_with_le(current, resp.sw2).to_bytes()
            continue
        collected.extend(resp.data)
        if resp.sw1 == 0x61:
            current = get_response_apdu(get_response_cla(current[0]), resp.sw2).to_bytes()
            continue
        collected.append(resp.sw1)
        collected.append(resp.sw2)
        return bytes(collected)


def chain(cmd, max_lc=255):
    """Split a command into a chain of short APDUs (ISO/IEC 7816-4 §5.1.1.1).

    Each piece carries at most ``max_lc`` data bytes; all but the last have
    the chaining bit (CLA | 0x10) and no Le; the last carries Le. As every
    piece is short, an Ne above 256 becomes Le=00 (256): the card announces
    the rest with 61xx. Returns a list of CommandAPDU.
    """
    cmd = _as_command(cmd)
    if max_lc < 1 or max_lc > 255:
        raise APDUError("max_lc must be 1..255, not %r" % (max_lc,), name="BAD_CHAIN")
    if cmd.cla & CLA_CHAINING:
        raise APDUError("CLA %02X already has the chaining bit" % cmd.cla, name="BAD_CHAIN")
    if cmd.cla == 0xFF:
        raise APDUError("CLA FF is invalid", name="BAD_CHAIN")
    ne = cmd.ne
    if ne is not None and ne > MAX_NE_SHORT:
        ne = MAX_NE_SHORT
    data = cmd.data
    pieces = []
    pos = 0
    n = len(data)
    while n - pos > max_lc:
        pieces.append(CommandAPDU(cmd.cla | CLA_CHAINING, cmd.ins, cmd.p1, cmd.p2,
                                  data[pos:pos + max_lc], extended=False))
        pos += max_lc
    pieces.append(CommandAPDU(cmd.cla, cmd.ins, cmd.p1, cmd.p2, data[pos:], ne=ne, extended=False))
    return pieces
