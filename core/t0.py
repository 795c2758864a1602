"""Reader-side T=0 (ISO/IEC 7816-3 §10 and §12), sans-I/O.

Two layers:

* ``ProcedureEngine``: one TPDU at character level (what a character-level
  reader, or a reader's firmware, does). It emits the header and data bytes
  and consumes the card's bytes: NULL (60), ACK (INS), ~INS, SW1 SW2.
* ``T0Reader``: the §12.2 mapping of command APDUs (cases 1 to 4, short and
  extended) onto TPDUs, over a TPDU link (``transceive``) or over a character
  link through the engine (``transceive_chars``).

Links are the caller's (docs/architecture.md, exchange-helper convention):
``link(tpdu, timeout_us) -> bytes | None`` exchanges one TPDU and returns the
response TPDU (data + SW1 SW2); ``char_link(data, timeout_us) -> bytes |
None`` sends ``data`` (maybe empty) and returns the next bytes the card sent
(at least one), None when nothing came within the timeout.
"""

from .apdu import APDUError, CommandAPDU, DEFAULT_MAX_ROUNDS, get_response_cla
from .errors import CcidkitError
from .iso7816 import wt_us

NULL = 0x60
INS_GET_RESPONSE = 0xC0
INS_ENVELOPE = 0xC2
CLA_CHAINING = 0x10

# Default waiting time: WI = 10, Fi = 372 at 4 MHz (§10.2): 892 800 µs.
DEFAULT_WT_US = int(wt_us(10, 372, 4000000))
# NULL bytes accepted in one TPDU before the reader gives up on the card.
DEFAULT_MAX_NULL = 1000
# ENVELOPE segment size (short Lc).
ENVELOPE_SEGMENT = 255


class T0Error(CcidkitError):
    """A T=0 exchange failed.

    ``name`` is one of: TIMEOUT (no byte from the card within the waiting
    time), INVALID_PROCEDURE_BYTE, TOO_MANY_NULL, PROTOCOL (a procedure byte
    that makes no sense at that point, e.g. ACK with no data left),
    UNEXPECTED_BYTES (bytes after SW2), INVALID_INS (INS 6X/9X cannot be sent
    with T=0), BAD_TPDU, BAD_APDU, BAD_RESPONSE, TOO_MANY_ROUNDS. ``code`` is
    the offending byte where there is one.
    """


def _is_sw1(b):
    # §10.3.3: SW1 is 6X (X != 0) or 9X
    hi = b & 0xF0
    return (hi == 0x60 and b != NULL) or hi == 0x90


def check_header(header):
    """Raise T0Error for a header T=0 cannot carry (§10.3.2)."""
    if len(header) < 5:
        raise T0Error("a T=0 TPDU starts with 5 header bytes, not %d" % len(header), name="BAD_TPDU")
    if header[0] == 0xFF:
        raise T0Error("CLA FF is reserved for PPS", code=0xFF, name="BAD_TPDU")
    hi = header[1] & 0xF0
    if hi == 0x60 or hi == 0x90:
        raise T0Error("INS %02X is invalid with T=0 (it would read as SW1)" % header[1],
                      code=header[1], name="INVALID_INS")


_SEND_HEADER = 0
_PROCEDURE = 1
_RECEIVE = 2  # after ACK, incoming: the remaining bytes
_RECEIVE_ONE = 3  # after ~INS, incoming: one byte
_SW2 = 4
_DONE = 5


class ProcedureEngine:
    """The procedure-byte engine for one TPDU (ISO/IEC 7816-3 §10.3).

    ``tpdu`` is the 5-byte header CLA INS P1 P2 P3, followed by P3 data bytes
    when data goes to the card (outgoing, case 3). A header alone means data
    comes from the card (incoming): ``ne`` bytes at most, P3 by default (00
    meaning 256); for a case-1 TPDU the card answers SW1 SW2 without ACK.

    Drive it with ``data_to_send()`` (bytes for the card, the header first)
    and ``feed(bytes_from_card)``; ``done`` then ``result`` (data + SW1 SW2).
    Invalid input raises T0Error; after an error the engine is finished.
    """

    def __init__(self, tpdu, ne=None, max_null=DEFAULT_MAX_NULL):
        tpdu = bytes(tpdu)
        check_header(tpdu)
        header = tpdu[:5]
        data = tpdu[5:]
        p3 = header[4]
        self.header = header
        self.ins = header[1]
        self.max_null = max_null
        self.null_count = 0
        self.outgoing = len(data) > 0
        if self.outgoing:
            if len(data) != p3:
                raise T0Error("P3=%d but %d data bytes" % (p3, len(data)), name="BAD_TPDU")
            self._data = data
            self._sent = 0
            self._expected = 0
        else:
            self._data = b""
            self._sent = 0
            self._expected = ne if ne is not None else (p3 or 256)
        self._received = bytearray()
        self._out = bytearray(header)
        self._state = _SEND_HEADER
        self._sw1 = 0
        self.result = None

    @property
    def done(self):
        return self._state == _DONE

    @property
    def received(self):
        return bytes(self._received)

    def wanted(self):
        """How many bytes the engine waits for from the card (0: none or done)."""
        if self._state == _DONE:
            return 0
        if self._state == _RECEIVE:
            return self._expected - len(self._received)
        return 1

    def data_to_send(self):
        """Bytes to send to the card now (the header, then data after ACK / ~INS)."""
        out = bytes(self._out)
        self._out = bytearray()
        if self._state == _SEND_HEADER:
            self._state = _PROCEDURE
        return out

    def _fail(self, message, code, name):
        self._state = _DONE
        self.result = None
        raise T0Error(message, code=code, name=name)

    def feed(self, data):
        """Consume bytes from the card."""
        for b in bytes(data):
            self._feed_byte(b)

    def _feed_byte(self, b):
        state = self._state
        if state == _DONE:
            self._fail("byte %02X after SW2" % b, b, "UNEXPECTED_BYTES")
        if state == _SEND_HEADER:
            self._fail("byte %02X before the header was sent" % b, b, "PROTOCOL")
        if state == _RECEIVE:
            self._received.append(b)
            if len(self._received) >= self._expected:
                self._state = _PROCEDURE
            return
        if state == _RECEIVE_ONE:
            self._received.append(b)
            self._state = _PROCEDURE
            return
        if state == _SW2:
            self._received.append(self._sw1)
            self._received.append(b)
            self.result = bytes(self._received)
            self._state = _DONE
            return
        # _PROCEDURE: §10.3.3 procedure bytes
        ins = self.ins
        if b == NULL:
            # the card asks for more time; each NULL restarts the waiting time
            self.null_count += 1
            if self.null_count > self.max_null:
                self._fail("more than %d NULL bytes" % self.max_null, b, "TOO_MANY_NULL")
            return
        if b == ins:
            # ACK: all remaining data bytes
            if self.outgoing:
                left = len(self._data) - self._sent
                if left <= 0:
                    self._fail("ACK %02X with no data left to send" % b, b, "PROTOCOL")
                self._out.extend(self._data[self._sent:])
                self._sent = len(self._data)
            else:
                if len(self._received) >= self._expected:
                    self._fail("ACK %02X with no data left to receive" % b, b, "PROTOCOL")
                self._state = _RECEIVE
            return
        if b == ins ^ 0xFF:
            # ~INS: the next data byte only
            if self.outgoing:
                if self._sent >= len(self._data):
                    self._fail("~INS %02X with no data left to send" % b, b, "PROTOCOL")
                self._out.append(self._data[self._sent])
                self._sent += 1
            else:
                if len(self._received) >= self._expected:
                    self._fail("~INS %02X with no data left to receive" % b, b, "PROTOCOL")
                self._state = _RECEIVE_ONE
            return
        if _is_sw1(b):
            self._sw1 = b
            self._state = _SW2
            return
        self._fail("invalid procedure byte %02X (INS %02X)" % (b, ins), b, "INVALID_PROCEDURE_BYTE")


def _sw_of(resp):
    return resp[len(resp) - 2], resp[len(resp) - 1]


def run_steps(gen, link, timeout_us):
    """Drive a ``steps()`` generator over ``link(tpdu, timeout_us) -> bytes or None``."""
    try:
        out = next(gen)
        while True:
            out = gen.send(link(out, timeout_us))
    except StopIteration as e:
        return e.value


class T0Reader:
    """The §12.2 APDU → TPDU mapping for T=0.

    ``auto_get_response`` False (the default) keeps pcsc-lite's behaviour:
    61xx and 6Cxx go back to the caller unchanged. True follows them: 6Cxx
    re-issues the last header-only TPDU with P3 = SW2, 61xx sends GET
    RESPONSE, and the data is concatenated (at most Ne bytes). Extended APDUs
    always go through ENVELOPE (INS C2, CLA b5 set on all segments but the
    last) and their response is always gathered with GET RESPONSE.
    """

    def __init__(self, auto_get_response=False, wt_us=DEFAULT_WT_US,
                 max_rounds=DEFAULT_MAX_ROUNDS, max_null=DEFAULT_MAX_NULL, envelope_cla=0x00):
        self.auto_get_response = auto_get_response
        self.wt_us = wt_us
        self.max_rounds = max_rounds
        self.max_null = max_null
        self.envelope_cla = envelope_cla
        self.tpdus = 0  # TPDUs exchanged by the last transceive

    # --- the §12.2 mapping ----------------------------------------------------------------

    def steps(self, apdu):
        """The §12.2 mapping as a generator, for callers that move the bytes themselves.

        It yields each TPDU to send and is sent the card's answer (data + SW1 SW2,
        or None when none came within ``wt_us``); its return value (StopIteration
        .value) is the response APDU. ``run_steps`` drives it over a link.
        """
        cmd = self._command(apdu)
        self.tpdus = 0
        check_header(cmd.header() + b"\x00")
        if cmd.extended:
            return (yield from self._extended(cmd))
        header = cmd.header()
        case = cmd.case
        if case == 1:
            tpdu = header + b"\x00"  # §12.2.2 case 1: P3 = 00
        elif case == 2:
            tpdu = header + bytes((cmd.ne & 0xFF,))  # case 2S: P3 = Le (256 -> 00)
        else:
            # case 3S, and 4S sent as a case-3 TPDU (§12.2.4): Le is not transmitted
            tpdu = header + bytes((len(cmd.data),)) + cmd.data
        resp = yield from self._exchange(tpdu)
        if not self.auto_get_response:
            return resp
        return (yield from self._follow(cmd.cla, tpdu, resp, cmd.ne))

    def transceive(self, apdu, link):
        """Send one command APDU over a TPDU link; returns response data + SW1 SW2."""
        return run_steps(self.steps(apdu), link, self.wt_us)

    def transceive_chars(self, apdu, char_link):
        """The same mapping over a character link, each TPDU through a ProcedureEngine."""

        def tpdu_link(tpdu, timeout_us):
            return self.exchange_tpdu_chars(tpdu, char_link)

        return self.transceive(apdu, tpdu_link)

    def exchange_tpdu_chars(self, tpdu, char_link):
        """One TPDU over a character link; returns data + SW1 SW2 (T0Error otherwise)."""
        engine = ProcedureEngine(tpdu, max_null=self.max_null)
        # every link call brings at least one byte: bound by the bytes one TPDU can take
        limit = 2 * (len(tpdu) + 256) + self.max_null + 8
        steps = 0
        while not engine.done:
            steps += 1
            if steps > limit:
                raise T0Error("no end to the TPDU after %d exchanges" % limit, name="TOO_MANY_ROUNDS")
            got = char_link(engine.data_to_send(), self.wt_us)
            if got is None or len(got) == 0:
                raise T0Error("no answer from the card within %d us (waiting for %d bytes)"
                              % (self.wt_us, engine.wanted()), name="TIMEOUT")
            engine.feed(got)
        return engine.result

    # --- internals ------------------------------------------------------------------------

    def _command(self, apdu):
        if isinstance(apdu, CommandAPDU):
            return apdu
        try:
            return CommandAPDU.parse(apdu)
        except APDUError as e:
            raise T0Error("malformed command APDU: %s" % e, name="BAD_APDU")

    def _exchange(self, tpdu):
        self.tpdus += 1
        resp = yield tpdu
        if resp is None:
            raise T0Error("no answer to TPDU %02X %02X within %d us" % (tpdu[0], tpdu[1], self.wt_us),
                          name="TIMEOUT")
        resp = bytes(resp)
        if len(resp) < 2:
            raise T0Error("response TPDU of %d bytes has no SW1 SW2" % len(resp), name="BAD_RESPONSE")
        if not _is_sw1(resp[len(resp) - 2]):
            raise T0Error("response TPDU ends with %02X %02X, not a status word"
                          % _sw_of(resp), code=resp[len(resp) - 2], name="BAD_RESPONSE")
        return resp

    def _follow(self, cla, tpdu, resp, ne):
        """Follow 61xx / 6Cxx (§12.2.2 - §12.2.4); at most ``ne`` data bytes (None: no limit)."""
        gr_cla = get_response_cla(cla)
        collected = bytearray()
        rounds = 0
        while True:
            sw1, sw2 = _sw_of(resp)
            data = resp[:len(resp) - 2]
            if sw1 == 0x6C and len(tpdu) == 5:
                # Le not accepted, SW2 = the exact length: same header with P3 = SW2
                tpdu = tpdu[:4] + bytes((sw2,))
            elif sw1 == 0x61:
                collected.extend(data)
                if ne is not None and len(collected) >= ne:
                    # Ne bytes gathered: the rest stays announced by this 61xx
                    return bytes(collected[:ne]) + bytes((sw1, sw2))
                n = sw2 or 256
                if ne is not None and n > ne - len(collected):
                    n = ne - len(collected)
                tpdu = bytes((gr_cla, INS_GET_RESPONSE, 0, 0, n & 0xFF))
            else:
                collected.extend(data)
                if ne is not None and len(collected) > ne:
                    # §12.2.2: more than Le came back, keep the first Ne bytes
                    collected = collected[:ne]
                return bytes(collected) + bytes((sw1, sw2))
            rounds += 1
            if rounds > self.max_rounds:
                raise T0Error("still 61xx/6Cxx after %d exchanges" % self.max_rounds,
                              name="TOO_MANY_ROUNDS")
            resp = yield from self._exchange(tpdu)

    def _extended(self, cmd):
        """Cases 2E, 3E, 4E: the whole APDU in ENVELOPE segments, the response by GET RESPONSE."""
        raw = cmd.to_bytes()
        pos = 0
        n = len(raw)
        resp = None
        tpdu = None
        while pos < n:
            seg = raw[pos:pos + ENVELOPE_SEGMENT]
            pos += len(seg)
            last = pos >= n
            cla = self.envelope_cla if last else (self.envelope_cla | CLA_CHAINING)
            tpdu = bytes((cla, INS_ENVELOPE, 0, 0, len(seg))) + seg
            resp = yield from self._exchange(tpdu)
            if not last and _sw_of(resp) != (0x90, 0x00):
                return resp  # the card refused a segment (e.g. 6D00: no ENVELOPE)
        return (yield from self._follow(self.envelope_cla, tpdu, resp, cmd.ne))
