"""Card-side T=1 (ISO/IEC 7816-3 §11): the card end of the block protocol.

``T1Card(card)`` takes the reader's blocks one at a time
(``receive_block(data) -> bytes or None``; None means the card stays
silent), reassembles chained commands, hands each whole command APDU to
``card.process_apdu`` exactly once, and chains the response at the IFSD the
reader announced. It answers R-blocks (retransmitting its last I-block or
acknowledging, rule 7.5 / rule 5), S(IFS), S(RESYNCH) and S(ABORT) requests,
and, when scripted (``queue_wtx``, ``queue_ifs``, ``queue_abort``), sends its
own S(WTX request), S(IFS request) and S(ABORT request) at its next turn.

``card`` is one card object, or a dict NAD byte → card object for several
logical cards behind one interface (NAD bits 8 and 4 ignored); a block for a
NAD missing from the dict is not answered.
"""

from ...core.t1 import (
    T1Error, check_block, put_edc, mirror_nad, edc_size,
    PCB_R, PCB_S, I_NS, I_M, R_NR, S_RESPONSE,
    R_OK, R_EDC_ERROR, R_OTHER_ERROR,
    S_RESYNCH, S_IFS, S_ABORT, S_WTX, MAX_INF, IFSD_DEFAULT,
)


class T1Card:
    def __init__(self, card, ifsc=32, edc="LRC"):
        if not 1 <= ifsc <= MAX_INF:
            raise T1Error("IFSC must be 1..254", name="T1_USAGE")
        edc_size(edc)
        self.edc = edc
        if isinstance(card, dict):
            self.routes = {}
            for k in card:
                self.routes[k & 0x77] = card[k]
            self.card = None
        else:
            self.routes = None
            self.card = card
        self.ifsc_initial = ifsc
        # counters
        self.blocks_in = 0
        self.blocks_out = 0
        self.invalid_in = 0
        self.silent = 0
        self.apdus = 0
        self.apdus_by_nad = {}
        self.resynchs = 0
        self.aborts = 0
        self.wtx_sent = 0
        self.ifs_sent = 0
        self.retransmitted = 0
        self._queue = []
        self.power_on()

    def power_on(self):
        """State after an ATR: N(S) 0 both ways, IFSC from the ATR, IFSD 32."""
        self.ifsc = self.ifsc_initial
        self.ifsd = IFSD_DEFAULT
        self._reset_link()

    def _reset_link(self):
        self._expect = 0          # N(S) of the reader's next I-block
        self._ns = 0              # N(S) of our next new I-block
        self._rx = bytearray()
        self._tx = None
        self._tx_off = 0
        self._tx_n = 0
        self._tx_more = False
        self._last_i = None       # our last I-block, until the reader acknowledges it
        self._last_i_ns = 0
        self._pending = None      # our S(... request) awaiting its response
        self._pending_type = 0
        self._pending_value = -1
        self._cont = None         # block to send once the S-exchange completes
        self._nad_in = 0
        self._nad_out = 0

    # -- scripting ---------------------------------------------------------

    def queue_wtx(self, multiplier=2, count=1):
        """Send ``count`` S(WTX request)s at the card's next turn (rule 3)."""
        for _ in range(count):
            self._queue.append((S_WTX, multiplier & 0xFF))

    def queue_ifs(self, ifsc):
        """Offer a new IFSC with S(IFS request) at the next turn (rule 4)."""
        self._queue.append((S_IFS, ifsc))

    def queue_abort(self):
        """Abort at the next turn: the reader's chain in progress or our own (rule 9)."""
        self._queue.append((S_ABORT, -1))

    # -- blocks ------------------------------------------------------------

    def _block(self, pcb, inf=None, off=0, n=0):
        buf = bytearray(3 + n + (1 if self.edc == "LRC" else 2))
        buf[0] = self._nad_out
        buf[1] = pcb
        buf[2] = n
        if n:
            buf[3:3 + n] = inf[off:off + n]
        put_edc(buf, 3 + n, self.edc)
        return bytes(buf)

    def _s(self, stype, response, value):
        if value >= 0:
            return self._block(PCB_S | (S_RESPONSE if response else 0) | stype, bytes((value,)), 0, 1)
        return self._block(PCB_S | (S_RESPONSE if response else 0) | stype)

    def _r(self, error=R_OK):
        return self._block(PCB_R | (R_NR if self._expect else 0) | error)

    def _out(self, block):
        self.blocks_out += 1
        return block

    def _again(self, block):
        """A block sent before, addressed to the NAD of the block being answered."""
        if block[0] != self._nad_out:
            buf = bytearray(block)
            buf[0] = self._nad_out
            put_edc(buf, len(buf) - (1 if self.edc == "LRC" else 2), self.edc)
            block = bytes(buf)
        return self._out(block)

    def _next_chunk(self):
        """Build our next new I-block of the response chain."""
        rest = len(self._tx) - self._tx_off
        n = self.ifsd if rest > self.ifsd else rest
        self._tx_n = n
        self._tx_more = n < rest
        blk = self._block((I_NS if self._ns else 0) | (I_M if self._tx_more else 0), self._tx, self._tx_off, n)
        self._last_i = blk
        self._last_i_ns = self._ns
        self._ns ^= 1
        return blk

    def _turn(self, block):
        """Send ``block``, or first a queued S(... request) with ``block`` to follow."""
        while self._queue:
            stype, value = self._queue.pop(0)
            if stype == S_ABORT:
                continue          # handled where a chain can be abandoned
            self._pending_type = stype
            self._pending_value = value
            self._pending = self._s(stype, False, value)
            self._cont = block
            if stype == S_WTX:
                self.wtx_sent += 1
            else:
                self.ifs_sent += 1
            return self._out(self._pending)
        return self._out(block)

    def _take_abort(self):
        for i in range(len(self._queue)):
            if self._queue[i][0] == S_ABORT:
                self._queue.pop(i)
                return True
        return False

    def _invalid(self, error):
        self.invalid_in += 1
        if self._pending is not None:
            return self._again(self._pending)   # rule 7.3
        return self._out(self._r(error))        # rule 7.1

    def receive_block(self, data):
        """One block from the reader; returns the card's answer or None."""
        self.blocks_in += 1
        try:
            ln = check_block(data, self.edc)
        except T1Error as e:
            return self._invalid(R_EDC_ERROR if e.name == "T1_EDC_ERROR" else R_OTHER_ERROR)
        nad = data[0] & 0x77
        if self.routes is not None and nad not in self.routes:
            self.silent += 1
            return None
        self._nad_in = nad
        self._nad_out = mirror_nad(nad)
        pcb = data[1]
        if pcb & 0xC0 == PCB_S:
            if pcb & S_RESPONSE:
                return self._on_s_response(pcb & 3, data, ln)
            return self._on_s_request(pcb & 3, data, ln)
        if self._pending is not None:
            return self._invalid(R_OTHER_ERROR)
        if pcb & 0x80:
            return self._on_r((pcb >> 4) & 1)
        return self._on_i(pcb, data, ln)

    def _on_r(self, nr):
        if self._last_i is not None:
            if nr == self._last_i_ns:
                # rule 7.5: the reader did not get our last I-block
                self.retransmitted += 1
                return self._again(self._last_i)
            if self._tx_more:
                # rule 5: chained block acknowledged
                self._tx_off += self._tx_n
                if self._take_abort():
                    return self._abort_own_chain()
                return self._turn(self._next_chunk())
        # we are receiving: ask for the I-block we expect (rule 7.2)
        return self._out(self._r(R_OK))

    def _abort_own_chain(self):
        self.aborts += 1
        self._tx = None
        self._tx_more = False
        self._last_i = None
        self._pending_type = S_ABORT
        self._pending_value = -1
        self._pending = self._s(S_ABORT, False, -1)
        self._cont = None
        return self._out(self._pending)

    def _on_i(self, pcb, data, ln):
        ns = (pcb >> 6) & 1
        more = pcb & I_M
        if ns != self._expect:
            return self._invalid(R_OTHER_ERROR)     # bad N(S) (rule 10)
        if self._tx_more and self._last_i is not None:
            return self._invalid(R_OTHER_ERROR)     # an I-block where R was due
        if ln > self.ifsc or (more and not ln):
            return self._invalid(R_OTHER_ERROR)
        if self._take_abort():
            # rule 9: refuse the block and abandon the reader's chain
            self._rx = bytearray()
            return self._abort_own_chain()
        # rule 2: this acknowledges our last I-block
        self._last_i = None
        self._tx = None
        self._tx_more = False
        self._rx.extend(data[3:3 + ln])
        self._expect ^= 1
        if more:
            return self._turn(self._r(R_OK))        # rule 5
        apdu = bytes(self._rx)
        self._rx = bytearray()
        if self.routes is not None:
            target = self.routes[self._nad_in]
        else:
            target = self.card
        resp = target.process_apdu(apdu)
        self.apdus += 1
        self.apdus_by_nad[self._nad_in] = self.apdus_by_nad.get(self._nad_in, 0) + 1
        self._tx = memoryview(bytes(resp))
        self._tx_off = 0
        return self._turn(self._next_chunk())

    def _on_s_request(self, stype, data, ln):
        if stype == S_RESYNCH:
            # rule 6: back to the initial state
            self.resynchs += 1
            self._queue = []
            self.ifsc = self.ifsc_initial
            self.ifsd = IFSD_DEFAULT
            nad_in = self._nad_in
            self._reset_link()
            self._nad_in = nad_in
            self._nad_out = mirror_nad(nad_in)
            return self._out(self._s(S_RESYNCH, True, -1))
        if self._pending is not None:
            return self._invalid(R_OTHER_ERROR)
        if stype == S_IFS:
            v = data[3]
            if v < 1 or v > MAX_INF:
                return self._invalid(R_OTHER_ERROR)
            self.ifsd = v
            return self._out(self._s(S_IFS, True, v))
        if stype == S_ABORT:
            self.aborts += 1
            self._rx = bytearray()
            self._tx = None
            self._tx_more = False
            self._last_i = None
            return self._out(self._s(S_ABORT, True, -1))
        return self._invalid(R_OTHER_ERROR)          # only the card asks for WTX

    def _on_s_response(self, stype, data, ln):
        if self._pending is None or stype != self._pending_type:
            return self._invalid(R_OTHER_ERROR)
        if ln and data[3] != self._pending_value:
            return self._invalid(R_OTHER_ERROR)
        self._pending = None
        if stype == S_IFS:
            self.ifsc = self._pending_value
        cont = self._cont
        self._cont = None
        if stype == S_ABORT or cont is None:
            # rule 9: give the turn back to the reader
            return self._out(self._r(R_OK))
        if cont[0] != self._nad_out:
            buf = bytearray(cont)
            buf[0] = self._nad_out
            put_edc(buf, len(buf) - (1 if self.edc == "LRC" else 2), self.edc)
            cont = bytes(buf)
            if self._last_i is not None and cont[1] & 0x80 == 0:
                self._last_i = cont
        return self._turn(cont)
