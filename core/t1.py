"""ISO/IEC 7816-3 §11: the T=1 block protocol, reader side (sans-I/O).

Blocks
------
A block is ``NAD PCB LEN [INF] EDC`` (§11.3). NAD holds the destination
(DAD, bits 7-5) and source (SAD, bits 3-1) node addresses; bits 8 and 4 are
ignored. PCB codes the block type:

- I-block ``0 N(S) M 00000``: N(S) the send-sequence bit, M the more-data bit;
- R-block ``10 0 N(R) 00ee``: N(R) the N(S) of the expected I-block, ``ee``
  = 0 no error, 1 EDC or parity error, 2 other error;
- S-block ``11 r 000tt``: r = 1 for a response, tt = 0 RESYNCH, 1 IFS,
  2 ABORT, 3 WTX. IFS and WTX carry one INF byte, RESYNCH and ABORT none.

LEN is 0..254 (FF is invalid). The epilogue is an LRC (one byte: the XOR of
every byte of the block, §11.4.4) or a CRC (two bytes). The CRC is the
ISO/IEC 13239 16-bit frame check sequence §11.4.4 refers to: polynomial
x^16 + x^12 + x^5 + 1 processed least-significant bit first (reflected
0x8408), preset FFFF, ones' complement at the end, sent low byte first
(check value of "123456789": 0x906E, sent ``6E 90``). Some readers
(libccid's openct code among them) send the register without the final
complement, high byte first; such a peer fails our EDC check on every block.

``decode_block(data, edc)`` returns a :class:`Block` or raises
:class:`T1Error` (``T1_EDC_ERROR`` for a bad LRC/CRC, ``T1_BAD_LEN``,
``T1_BAD_PCB``, ``T1_BAD_NAD``); the state machine treats every one of them as
an invalid block (a transmission error), asking again with an R-block whose
error bits say "EDC" for ``T1_EDC_ERROR`` and "other" for the rest.

The reader engine
-----------------
:class:`T1Reader` is driven by its caller (the driver's CCID link, or a test
link)::

    r.start(apdu)
    while r.busy:
        answer = link(r.block_to_send(), r.wait_time_us())   # None = no block in time
        if answer is None:
            r.timeout()
        else:
            r.receive(answer)
    response = r.response()

``transceive(apdu, link)`` runs that loop. ``block_to_send()`` returns a
memoryview over a buffer the engine reuses: it is valid until the next call
into the engine (copy it to keep it).

Behaviour by clause (ISO/IEC 7816-3:2006 §11.6.3; the tests cite the same
numbers):

- rule 1: the first block after the ATR is an I-block with N(S) = 0 or an
  S-block (IFS negotiation, resynchronisation).
- rule 2: each side alternates N(S) on its own I-blocks; a correct I-block
  from the card acknowledges the reader's last I-block.
- rule 3: S(WTX request) is answered with S(WTX response) echoing INF; the
  waiting time for the next block only is BWT × INF (``wait_time_us()``).
  More than ``max_wtx`` consecutive S-requests end with ``T1_WTX_LIMIT``.
- rule 4: the reader offers IFSD with S(IFS request) (``negotiate_ifsd``);
  the card may change IFSC with S(IFS request) whenever it has the turn, even
  inside a chain: the reader answers S(IFS response) and cuts every later
  block (and any retransmission) at the new IFSC.
- rule 5: chaining. I-blocks with M = 1 are acknowledged with R(N(R)), N(R)
  being the N(S) of the next expected I-block; the reader splits at IFSC and
  acknowledges card chains.
- rule 6: resynchronisation. After failed recovery the reader sends
  S(RESYNCH request) (up to ``max_resynch`` times); on S(RESYNCH response)
  both N(S) restart at 0, IFSC returns to its value from the ATR and IFSD to
  32, and the exchange ends with ``T1_RESYNCHED`` (the command may or may not
  have run: the caller decides whether to send it again). When the resynch
  fails the engine raises ``T1_RESYNCH_FAILED`` (or ``T1_CARD_MUTE`` when not
  one block came back): the caller must then do a warm reset (or deactivate).
- rule 7.1: an invalid block (bad EDC/parity, bad LEN, bad PCB, wrong NAD) is
  answered with R(N(R)) carrying the error bits.
- rule 7.2: an invalid block or a time-out after the reader sent an R-block
  makes it send that R-block again.
- rule 7.3: an invalid block or a time-out after an S(... request) makes the
  reader send the S(... request) again.
- rule 7.4: every recovery is bounded: ``max_retries`` consecutive invalid
  blocks or time-outs, or ``max_retries`` consecutive retransmission requests
  (rule 7.5), then resynchronisation (rule 6).
- rule 7.5: R(N(R)) with N(R) equal to the N(S) of the reader's last I-block
  asks for it again: the reader retransmits it.
- rule 7.6: BWT elapsing without a block (``timeout()``) is handled like an
  invalid block.
- rule 8: only the reader may send S(RESYNCH request); one from the card is an
  invalid block.
- rule 9: S(ABORT request) from the card is answered with S(ABORT response),
  the chain is abandoned and the exchange ends with ``T1_ABORTED``; the
  reader itself aborts a card chain that would overflow ``max_response``
  (``T1_TOO_LONG``) and offers ``start_abort()``.
- rule 10: an I-block from the card with an unexpected N(S), an R-block that
  acknowledges a block that was not chained, an I-block where an
  acknowledgement was due, an unsolicited S(... response): each is an invalid
  block (rule 7.1).
"""

from .errors import CcidkitError
from . import iso7816

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x


class T1Error(CcidkitError):
    """A T=1 failure. ``name`` says which:

    T1_EDC_ERROR, T1_BAD_LEN, T1_BAD_PCB, T1_BAD_NAD (block decoding);
    T1_CARD_MUTE (no block at all came back), T1_RESYNCH_FAILED (recovery and
    resynchronisation failed: warm-reset the card), T1_RESYNCHED (the link
    was resynchronised, the exchange is lost), T1_ABORTED (S(ABORT) ended the
    chain), T1_TOO_LONG (response longer than allowed), T1_WTX_LIMIT (too
    many consecutive S-requests), T1_PROTOCOL_ERROR, T1_USAGE (engine called
    out of turn).
    """


# PCB fields (§11.3.2.2)
PCB_R = const(0x80)
PCB_S = const(0xC0)
I_NS = const(0x40)
I_M = const(0x20)
R_NR = const(0x10)
S_RESPONSE = const(0x20)

R_OK = const(0)
R_EDC_ERROR = const(1)
R_OTHER_ERROR = const(2)

S_RESYNCH = const(0)
S_IFS = const(1)
S_ABORT = const(2)
S_WTX = const(3)
S_NAMES = ("RESYNCH", "IFS", "ABORT", "WTX")

MAX_INF = const(254)
IFSD_DEFAULT = const(32)
IFSC_DEFAULT = const(32)

EDC_LRC = "LRC"
EDC_CRC = "CRC"

_CRC_TABLE = None


def _crc_table():
    global _CRC_TABLE
    if _CRC_TABLE is None:
        t = []
        for i in range(256):
            c = i
            for _ in range(8):
                if c & 1:
                    c = (c >> 1) ^ 0x8408
                else:
                    c >>= 1
            t.append(c)
        _CRC_TABLE = tuple(t)
    return _CRC_TABLE


def lrc(data, start=0, end=-1):
    """XOR of data[start:end] (end -1 = to the end)."""
    if end < 0:
        end = len(data)
    x = 0
    for b in data[start:end]:       # iterating a slice beats indexing, on both VMs
        x ^= b
    return x


def crc16(data, start=0, end=-1):
    """ISO/IEC 13239 CRC of data[start:end] as an integer (send low byte first)."""
    if end < 0:
        end = len(data)
    t = _crc_table()
    c = 0xFFFF
    for b in data[start:end]:
        c = (c >> 8) ^ t[(c ^ b) & 0xFF]
    return c ^ 0xFFFF


def edc_size(edc):
    if edc == EDC_LRC:
        return 1
    if edc == EDC_CRC:
        return 2
    raise T1Error("EDC must be 'LRC' or 'CRC', not %r" % (edc,), name="T1_USAGE")


def put_edc(buf, n, edc):
    """Append the EDC of buf[0:n] at buf[n]; returns the block length."""
    if edc == EDC_LRC:
        buf[n] = lrc(buf, 0, n)
        return n + 1
    c = crc16(buf, 0, n)
    buf[n] = c & 0xFF
    buf[n + 1] = c >> 8
    return n + 2


def edc_ok(data, edc):
    n = len(data)
    if edc == EDC_LRC:
        return n >= 1 and lrc(data, 0, n) == 0
    if n < 2:
        return False
    c = crc16(data, 0, n - 2)
    return data[n - 2] == (c & 0xFF) and data[n - 1] == (c >> 8)


def mirror_nad(nad):
    """The NAD of an answer to a block sent with ``nad``: SAD and DAD swapped."""
    return ((nad & 0x07) << 4) | ((nad >> 4) & 0x07)


def make_nad(dad, sad):
    if not (0 <= dad <= 7 and 0 <= sad <= 7):
        raise T1Error("DAD and SAD are 0..7", name="T1_USAGE")
    return (dad << 4) | sad


def check_block(data, edc=EDC_LRC):
    """Validate one received block; returns its LEN or raises T1Error.

    EDC first (a corrupted LEN then reads as the transmission error it is),
    then the lengths, then NAD and PCB.
    """
    n = len(data)
    e = 1 if edc == EDC_LRC else 2
    if n < 3 + e:
        raise T1Error("block of %d bytes is shorter than prologue and epilogue" % n,
                      name="T1_BAD_LEN")
    if not edc_ok(data, edc):
        raise T1Error("bad %s" % edc, name="T1_EDC_ERROR")
    ln = data[2]
    if ln == 0xFF:
        raise T1Error("LEN FF is invalid", name="T1_BAD_LEN")
    if 3 + ln + e != n:
        raise T1Error("LEN %d does not match a block of %d bytes" % (ln, n), name="T1_BAD_LEN")
    if data[0] == 0xFF:
        raise T1Error("NAD FF is invalid", name="T1_BAD_NAD")
    pcb = data[1]
    if not pcb & 0x80:
        if pcb & 0x1F:
            raise T1Error("I-block PCB %02X has reserved bits set" % pcb, name="T1_BAD_PCB")
    elif pcb & 0xC0 == PCB_R:
        if pcb & 0x2C or (pcb & 0x03) == 3:
            raise T1Error("R-block PCB %02X is invalid" % pcb, name="T1_BAD_PCB")
        if ln:
            raise T1Error("R-block with LEN %d" % ln, name="T1_BAD_LEN")
    else:
        if pcb & 0x1C:
            raise T1Error("S-block PCB %02X is invalid" % pcb, name="T1_BAD_PCB")
        t = pcb & 0x03
        want = 1 if (t == S_IFS or t == S_WTX) else 0
        if ln != want:
            raise T1Error("S(%s) with LEN %d" % (S_NAMES[t], ln), name="T1_BAD_LEN")
    return ln


class Block:
    """One decoded block: ``nad``, ``pcb``, ``inf`` (bytes)."""

    def __init__(self, nad, pcb, inf=b""):
        self.nad = nad
        self.pcb = pcb
        self.inf = bytes(inf)

    @property
    def kind(self):
        if not self.pcb & 0x80:
            return "I"
        return "R" if self.pcb & 0xC0 == PCB_R else "S"

    @property
    def ns(self):
        return (self.pcb >> 6) & 1

    @property
    def more(self):
        return bool(self.pcb & I_M)

    @property
    def nr(self):
        return (self.pcb >> 4) & 1

    @property
    def error(self):
        return self.pcb & 0x03

    @property
    def stype(self):
        return self.pcb & 0x03

    @property
    def response(self):
        return bool(self.pcb & S_RESPONSE)

    def encode(self, edc=EDC_LRC):
        n = len(self.inf)
        if n > MAX_INF:
            raise T1Error("INF of %d bytes (max 254)" % n, name="T1_TOO_LONG")
        buf = bytearray(3 + n + edc_size(edc))
        buf[0] = self.nad
        buf[1] = self.pcb
        buf[2] = n
        buf[3:3 + n] = self.inf
        put_edc(buf, 3 + n, edc)
        return bytes(buf)

    def name(self):
        """Notation of §11.6.1: I(0,1), R(1), R(0)[EDC], S(WTX request) ..."""
        k = self.kind
        if k == "I":
            return "I(%d,%d)" % (self.ns, 1 if self.more else 0)
        if k == "R":
            return "R(%d)%s" % (self.nr, ("", "[EDC]", "[OTHER]", "[RFU]")[self.error])
        return "S(%s %s)" % (S_NAMES[self.stype], "response" if self.response else "request")

    def __eq__(self, other):
        return (isinstance(other, Block) and self.nad == other.nad
                and self.pcb == other.pcb and self.inf == other.inf)

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return "<Block %s nad=%02X inf=%d>" % (self.name(), self.nad, len(self.inf))


def decode_block(data, edc=EDC_LRC):
    """Block from bytes, or T1Error (see ``check_block``)."""
    ln = check_block(data, edc)
    return Block(data[0], data[1], bytes(data[3:3 + ln]))


def i_block(ns, more, inf, nad=0):
    return Block(nad, (I_NS if ns else 0) | (I_M if more else 0), inf)


def r_block(nr, error=R_OK, nad=0):
    return Block(nad, PCB_R | (R_NR if nr else 0) | error)


def s_block(stype, response=False, inf=b"", nad=0):
    return Block(nad, PCB_S | (S_RESPONSE if response else 0) | stype, inf)


# engine phases
_IDLE = const(0)
_SENDING = const(1)     # our I-block (or a recovery/S-response block in its place) is out
_RECEIVING = const(2)   # we acknowledged a card I-block with M = 1
_S_REQUEST = const(3)   # our S(IFS/ABORT/RESYNCH request) is out
_ABORT_ACK = const(4)   # we answered S(ABORT request): the exchange ends on the next event
_DONE = const(5)
_FAILED = const(6)


class T1Reader:
    """Reader-side T=1 engine (interface device): blocks in, blocks out.

    ``ifsc`` is the card's IFSC from the ATR (TA for T=1, default 32);
    ``ifsd`` the reader's maximum, offered by ``negotiate_ifsd`` (until then
    IFSD is 32); ``edc`` "LRC" or "CRC" (from the ATR's TC for T=1);
    ``nad`` the default NAD byte (DAD << 4 | SAD); BWI/CWI/Fi/Di/clock give
    BWT and CWT (§11.4.3). ``max_retries`` bounds consecutive recovery
    attempts, ``max_resynch`` the S(RESYNCH request)s, ``max_wtx`` the
    consecutive S-requests from the card, ``max_response`` the response size.
    """

    def __init__(self, ifsc=IFSC_DEFAULT, ifsd=254, edc=EDC_LRC, nad=0, bwi=4, cwi=13,
                 fi=372, di=1, clock_hz=4000000, max_retries=3, max_resynch=3,
                 max_wtx=60, max_response=65538):
        if not 1 <= ifsc <= MAX_INF or not 1 <= ifsd <= MAX_INF:
            raise T1Error("IFSC/IFSD must be 1..254", name="T1_USAGE")
        self.edc = edc
        self._edc_len = edc_size(edc)
        self.ifsc_initial = ifsc
        self.ifsc = ifsc
        self.ifsd_wanted = ifsd
        self.ifsd = IFSD_DEFAULT
        self.nad = nad & 0x77
        self.bwi = bwi
        self.cwi = cwi
        etu = iso7816.etu_us(fi, di, clock_hz)
        self.bwt_us = int(iso7816.bwt_us(bwi, fi, di, clock_hz) + 0.999)
        self.cwt_us = int(iso7816.cwt_etu(cwi) * etu + 0.999)
        self.max_retries = max_retries
        self.max_resynch = max_resynch
        self.max_wtx = max_wtx
        self.max_response = max_response
        self._tx = bytearray(3 + MAX_INF + 2)
        self._tx_len = 0
        self._ns = 0
        self._nr = 0
        self._phase = _IDLE
        self._resp = bytearray()
        self._apdu = None
        self._cur_nad = self.nad
        self._want_nad = mirror_nad(self.nad)
        self._recovering = False
        # counters (cumulative): blocks carried, retransmissions asked/made
        self.blocks_sent = 0
        self.blocks_received = 0
        self.retransmissions = 0
        self.r_requests = 0
        self.resynchs = 0
        self.wtx_requests = 0
        self.timeouts = 0
        self._reset_exchange()

    # -- state -----------------------------------------------------------

    def _reset_exchange(self):
        self._off = 0
        self._chunk = 0
        self._more = False
        self._retries = 0
        self._naks = 0
        self._s_streak = 0
        self._wait_mult = 1
        self._stype = 0
        self._svalue = 0
        self._after_abort = None
        self._heard = False
        self._error = None

    def reset(self, ifsc=None):
        """After a warm reset (new ATR): sequence numbers 0, IFSD 32, IFSC from the ATR."""
        if ifsc is not None:
            self.ifsc_initial = ifsc
        self.ifsc = self.ifsc_initial
        self.ifsd = IFSD_DEFAULT
        self._ns = 0
        self._nr = 0
        self._phase = _IDLE
        self._reset_exchange()

    @property
    def busy(self):
        return self._phase != _IDLE and self._phase != _DONE and self._phase != _FAILED

    @property
    def done(self):
        return self._phase == _DONE

    @property
    def ns(self):
        """N(S) of the reader's next new I-block."""
        return self._ns

    @property
    def nr(self):
        """N(S) expected on the card's next I-block."""
        return self._nr

    def wait_time_us(self):
        """How long to wait for the answer to ``block_to_send()``: BWT, or
        BWT × the WTX multiplier right after an S(WTX response) (rule 3)."""
        return self.bwt_us * self._wait_mult

    def block_to_send(self):
        if not self.busy:
            raise T1Error("no block to send", name="T1_USAGE")
        return memoryview(self._tx)[:self._tx_len]

    def response(self):
        if self._phase != _DONE:
            raise T1Error("exchange not finished", name="T1_USAGE")
        return bytes(self._resp)

    # -- starting exchanges ------------------------------------------------

    def _begin(self, nad):
        if self.busy:
            raise T1Error("an exchange is in progress", name="T1_USAGE")
        self._reset_exchange()
        self._resp = bytearray()
        self._cur_nad = self.nad if nad is None else nad & 0x77
        self._want_nad = mirror_nad(self._cur_nad)
        self._apdu = None
        self._recovering = False

    def start(self, apdu, nad=None):
        """Begin sending ``apdu`` (bytes) as an I-block chain."""
        if not apdu:
            raise T1Error("empty APDU", name="T1_USAGE")
        self._begin(nad)
        self._apdu = memoryview(apdu)
        self._send_chunk()

    def start_ifsd(self, ifsd=None, nad=None):
        """Begin S(IFS request) offering ``ifsd`` (default: the constructor's)."""
        self._begin(nad)
        v = self.ifsd_wanted if ifsd is None else ifsd
        if not 1 <= v <= MAX_INF:
            raise T1Error("IFSD must be 1..254", name="T1_USAGE")
        self._send_s_request(S_IFS, v)

    def start_resynch(self, nad=None):
        """Begin S(RESYNCH request) on its own (rule 6)."""
        self._begin(nad)
        self._send_s_request(S_RESYNCH, -1)

    def start_abort(self):
        """Abort the exchange in progress with S(ABORT request) (rule 9): the
        next block sent is the request; the exchange then ends with T1_ABORTED."""
        if not self.busy:
            raise T1Error("nothing to abort", name="T1_USAGE")
        self._after_abort = ("T1_ABORTED", "aborted by the reader")
        self._retries = 0
        self._send_s_request(S_ABORT, -1)

    # -- block building ----------------------------------------------------

    def _emit(self, pcb, src, off, n):
        tx = self._tx
        tx[0] = self._cur_nad
        tx[1] = pcb
        tx[2] = n
        if n:
            tx[3:3 + n] = src[off:off + n]
        self._tx_len = put_edc(tx, 3 + n, self.edc)
        self._wait_mult = 1

    def _send_chunk(self):
        rest = len(self._apdu) - self._off
        n = self.ifsc if rest > self.ifsc else rest
        self._chunk = n
        self._more = n < rest
        self._emit((I_NS if self._ns else 0) | (I_M if self._more else 0), self._apdu, self._off, n)
        self._phase = _SENDING

    def _send_r(self, error):
        self._emit(PCB_R | (R_NR if self._nr else 0) | error, None, 0, 0)

    def _send_s_request(self, stype, value):
        self._stype = stype
        self._svalue = value
        self._phase = _S_REQUEST
        self._emit_s(stype, False, value)

    def _emit_s(self, stype, response, value):
        tx = self._tx
        tx[0] = self._cur_nad
        tx[1] = PCB_S | (S_RESPONSE if response else 0) | stype
        if value >= 0:
            tx[2] = 1
            tx[3] = value
            self._tx_len = put_edc(tx, 4, self.edc)
        else:
            tx[2] = 0
            self._tx_len = put_edc(tx, 3, self.edc)
        self._wait_mult = 1

    # -- events ---------------------------------------------------------------

    def _fail(self, name, message):
        self._phase = _FAILED
        self._error = T1Error(message, name=name)
        raise self._error

    def timeout(self):
        """No block came back within ``wait_time_us()`` (rule 7.6)."""
        if not self.busy:
            raise T1Error("no block outstanding", name="T1_USAGE")
        self.blocks_sent += 1
        self.timeouts += 1
        if self._phase == _ABORT_ACK:
            return self._finish_abort()
        self._invalid(R_OTHER_ERROR, "no block within %d us" % self.wait_time_us())

    def receive(self, data):
        """A block came back from the card (bytes-like, the whole block)."""
        if not self.busy:
            raise T1Error("no block outstanding", name="T1_USAGE")
        self.blocks_sent += 1
        self.blocks_received += 1
        self._heard = True
        if self._phase == _ABORT_ACK:
            return self._finish_abort()
        try:
            ln = check_block(data, self.edc)
        except T1Error as e:
            # rule 7.1: EDC/parity errors and other errors are told apart
            err = R_EDC_ERROR if e.name == "T1_EDC_ERROR" else R_OTHER_ERROR
            return self._invalid(err, e.message)
        if (data[0] & 0x77) != self._want_nad:
            return self._invalid(R_OTHER_ERROR, "NAD %02X is not the mirror of %02X"
                                 % (data[0], self._cur_nad))
        pcb = data[1]
        if pcb & 0xC0 == PCB_S:
            if pcb & S_RESPONSE:
                return self._on_s_response(pcb & 3, data, ln)
            return self._on_s_request(pcb & 3, data, ln)
        if self._phase == _S_REQUEST:
            return self._invalid(R_OTHER_ERROR, "expected S(%s response)" % S_NAMES[self._stype])
        if pcb & 0x80:
            return self._on_r((pcb >> 4) & 1)
        return self._on_i(pcb, data, ln)

    def _invalid(self, error, why):
        """Rules 7.1-7.4: ask again, bounded, then resynchronise (rule 6)."""
        self._retries += 1
        if self._phase == _S_REQUEST:
            if self._stype == S_RESYNCH:
                if self._retries >= self.max_resynch:
                    if self._heard:
                        self._fail("T1_RESYNCH_FAILED",
                                   "resynchronisation failed (%s): warm-reset the card" % why)
                    self._fail("T1_CARD_MUTE", "the card does not answer: warm-reset it")
            elif self._retries > self.max_retries:
                return self._resynch()
            # rule 7.3: send the S(... request) again
            self.retransmissions += 1
            self._emit_s(self._stype, False, self._svalue)
            return
        if self._retries > self.max_retries:
            return self._resynch()
        # rules 7.1/7.2: R-block with N(R) = the N(S) we expect from the card
        self.r_requests += 1
        self._send_r(error)

    def _resynch(self):
        self.resynchs += 1
        self._retries = 0
        self._naks = 0
        self._recovering = True
        self._send_s_request(S_RESYNCH, -1)

    def _progress(self):
        self._retries = 0
        self._naks = 0
        self._s_streak = 0

    def _on_r(self, nr):
        if self._phase != _SENDING:
            # rule 7.2: an R-block where an I-block was due: send our R-block again
            return self._invalid(R_OTHER_ERROR, "R-block while receiving a chain")
        if nr == self._ns:
            # rule 7.5: the card asks for our last I-block again (counted on
            # their own: a loss then a request is one incident, not two)
            self._naks += 1
            if self._naks > self.max_retries:
                return self._resynch()
            self.retransmissions += 1
            return self._send_chunk()   # cut at the current IFSC (rule 4)
        if not self._more:
            # rule 10: an acknowledgement of a block that was not chained
            return self._invalid(R_OTHER_ERROR, "R(%d) acknowledges an unchained block" % nr)
        # rule 5: chained block acknowledged
        self._off += self._chunk
        self._ns ^= 1
        self._progress()
        self._send_chunk()

    def _on_i(self, pcb, data, ln):
        ns = (pcb >> 6) & 1
        more = pcb & I_M
        if self._phase == _SENDING and self._more:
            return self._invalid(R_OTHER_ERROR, "I-block where R(%d) was due" % (self._ns ^ 1))
        if ns != self._nr:
            return self._invalid(R_OTHER_ERROR, "I-block N(S)=%d, expected %d" % (ns, self._nr))
        if ln > self.ifsd or (more and not ln):
            return self._invalid(R_OTHER_ERROR, "I-block of %d bytes (IFSD %d)" % (ln, self.ifsd))
        if self._phase == _SENDING:
            # rule 2: the card's I-block acknowledges our last one
            self._off += self._chunk
            self._ns ^= 1
            self._phase = _RECEIVING
        if len(self._resp) + ln > self.max_response:
            # rule 9: the reader abandons a chain it cannot take
            self._nr ^= 1
            self._after_abort = ("T1_TOO_LONG", "response longer than %d bytes" % self.max_response)
            self._retries = 0
            return self._send_s_request(S_ABORT, -1)
        self._resp.extend(data[3:3 + ln])
        self._nr ^= 1
        self._progress()
        if more:
            self._send_r(R_OK)   # rule 5
        else:
            self._phase = _DONE

    def _on_s_request(self, stype, data, ln):
        self._s_streak += 1
        if self._s_streak > self.max_wtx:
            self._fail("T1_WTX_LIMIT", "more than %d consecutive S-requests" % self.max_wtx)
        if self._phase == _S_REQUEST:
            return self._invalid(R_OTHER_ERROR, "S(%s request) while ours is out" % S_NAMES[stype])
        if stype == S_WTX:
            # rule 3
            m = data[3]
            self.wtx_requests += 1
            self._emit_s(S_WTX, True, m)
            self._wait_mult = m if m else 1
            return
        if stype == S_IFS:
            v = data[3]
            if v < 1 or v > MAX_INF:
                return self._invalid(R_OTHER_ERROR, "S(IFS request) with IFSC %d" % v)
            # rule 4: the new IFSC applies from the next block we build
            self.ifsc = v
            self._emit_s(S_IFS, True, v)
            return
        if stype == S_ABORT:
            # rule 9
            self._emit_s(S_ABORT, True, -1)
            self._phase = _ABORT_ACK
            self._after_abort = ("T1_ABORTED", "the card aborted the chain")
            return
        # rule 8: S(RESYNCH request) may only come from the reader
        self._invalid(R_OTHER_ERROR, "S(RESYNCH request) from the card")

    def _on_s_response(self, stype, data, ln):
        if self._phase != _S_REQUEST or stype != self._stype:
            return self._invalid(R_OTHER_ERROR, "unsolicited S(%s response)" % S_NAMES[stype])
        if stype == S_IFS:
            if data[3] != self._svalue:
                return self._invalid(R_OTHER_ERROR, "S(IFS response) %d for %d" % (data[3], self._svalue))
            self.ifsd = self._svalue
            self._phase = _DONE
            return
        if stype == S_ABORT:
            name, msg = self._after_abort
            self._fail(name, msg)
        if stype == S_RESYNCH:
            # rule 6: both ends back to their initial values
            self._ns = 0
            self._nr = 0
            self.ifsc = self.ifsc_initial
            self.ifsd = IFSD_DEFAULT
            if not self._recovering:
                self._phase = _DONE
                return
            self._fail("T1_RESYNCHED", "link resynchronised after errors; the exchange is lost")
        self._invalid(R_OTHER_ERROR, "S(WTX response) from the card")

    def _finish_abort(self):
        name, msg = self._after_abort
        self._fail(name, msg)

    # -- convenience drivers -------------------------------------------------

    def _run(self, link):
        # Bounded by the engine itself (retries, resynchs, S-request streaks,
        # max_response); this guard only protects against a broken link.
        guard = 64 + 8 * (self.max_retries + 2) * (self.max_wtx + 2) * (
            (len(self._apdu) if self._apdu is not None else 0) + self.max_response + 2)
        while self.busy:
            guard -= 1
            if guard < 0:
                self._fail("T1_PROTOCOL_ERROR", "exchange did not converge")
            ans = link(self.block_to_send(), self.wait_time_us())
            if ans is None:
                self.timeout()
            else:
                self.receive(ans)

    def transceive(self, apdu, link, nad=None):
        """Send ``apdu`` and return the card's response (bytes).

        ``link(block, timeout_us)`` delivers one block and returns the card's
        answer, or None when none came within ``timeout_us``. Raises T1Error;
        after T1_RESYNCH_FAILED or T1_CARD_MUTE warm-reset the card and call
        ``reset()``.
        """
        self.start(apdu, nad)
        self._run(link)
        return self.response()

    def negotiate_ifsd(self, link, ifsd=None, nad=None):
        """S(IFS request) right after the ATR (rule 4); returns the IFSD now in force."""
        self.start_ifsd(ifsd, nad)
        self._run(link)
        return self.ifsd

    def resynch(self, link, nad=None):
        """Resynchronise on purpose (rule 6)."""
        self.start_resynch(nad)
        self._run(link)
