"""Card-side T=0 (ISO/IEC 7816-3 §10 and §12): procedure bytes in front of any card.

``T0Card(card)`` turns a card with ``process_apdu(apdu) -> data + SW`` into
the card end of T=0, at character level (``feed`` the reader's bytes, take
``data_to_send()``) or at TPDU level (``process_tpdu(tpdu) -> response`` as
QEMU-like and TPDU-level readers present it).

The card decides the direction of a TPDU from its INS, as real cards do:
``outgoing_ins`` lists the instructions whose P3 counts command data bytes
(the card ACKs, then receives them); every other INS is processed at once
with P3 as Le. P3 = 00 with an outgoing INS is a case-1 command.

What the card answers:
* case-2 TPDU (header only): the card's data if it is exactly P3 bytes (ACK,
  data, SW1 SW2); fewer bytes → 6C with the exact length (§12.2.2); more →
  P3 bytes then 61xx.
* case-3 TPDU: the APDU is processed as case 4 with Le = 00 (the card cannot
  know Le, §12.2.4); response data waits behind 61xx for GET RESPONSE.
* GET RESPONSE (INS C0, P1P2 0000) is served from that response; a wrong Le
  gets 6Cxx and the data stays.
* ENVELOPE (INS C2): segments are gathered while CLA b5 (chaining) is set; the
  segment without it ends the command APDU, which is then processed whole.
Options: ``byte_by_byte`` (True: every data byte behind its own ~INS; an int
N: the first N bytes so, then ACK), ``null_bytes`` (NULL 60 sent before every
procedure answer: a busy card).
"""

from ...core.apdu import MAX_NC

NULL = 0x60
INS_GET_RESPONSE = 0xC0
INS_ENVELOPE = 0xC2
CLA_CHAINING = 0x10

# Interindustry instructions whose command TPDU carries data (ISO/IEC 7816-4),
# plus the MiniCard's ECHO (EE). Everything else reads P3 as Le.
DEFAULT_OUTGOING_INS = (
    0x0E, 0x10, 0x20, 0x21, 0x22, 0x24, 0x2A, 0x2C, 0x46, 0x82, 0x86, 0x87, 0x88,
    0xA0, 0xA4, 0xC2, 0xD0, 0xD2, 0xD6, 0xD7, 0xDA, 0xDB, 0xDC, 0xDD, 0xE0, 0xE2, 0xEE,
)

# A whole extended APDU: header, 00 Lc Lc, 65535 data bytes, Le Le.
MAX_ENVELOPE = 4 + 3 + MAX_NC + 2

_HEADER = 0
_DATA = 1


def _sw(sw1, sw2):
    return bytes((sw1, sw2))


class T0Card:
    """The card end of T=0 in front of ``card`` (see the module documentation)."""

    def __init__(self, card, byte_by_byte=False, null_bytes=0, outgoing_ins=None, envelope=True):
        self.card = card
        self.byte_by_byte = byte_by_byte
        self.null_bytes = null_bytes
        if outgoing_ins is None:
            outgoing_ins = getattr(card, "T0_OUTGOING_INS", DEFAULT_OUTGOING_INS)
        self.outgoing_ins = tuple(outgoing_ins)
        self.envelope = envelope
        self.reset()

    def reset(self):
        """Forget every exchange in progress (power-off, warm reset)."""
        self._state = _HEADER
        self._header = bytearray()
        self._data = bytearray()
        self._out = bytearray()
        self._need = 0
        self._acked = False
        self.pending = None  # (data, sw1, sw2) waiting for GET RESPONSE
        self.envelope_buffer = None
        self.tpdus = 0

    # --- character level ------------------------------------------------------------------

    def data_to_send(self):
        """Bytes the card sends to the reader now."""
        out = bytes(self._out)
        self._out = bytearray()
        return out

    def feed(self, data):
        """Bytes from the reader: a header, then data after a procedure byte."""
        for b in bytes(data):
            if self._state == _HEADER:
                self._header.append(b)
                if len(self._header) == 5:
                    self._on_header()
            else:
                self._data.append(b)
                if len(self._data) >= self._need:
                    self._finish(bytes(self._header), bytes(self._data))
                elif not self._acked:
                    # the last byte came behind ~INS: ask for the next one(s)
                    ins = self._header[1]
                    if self._one_at_a_time(len(self._data)):
                        self._out.append(ins ^ 0xFF)
                    else:
                        self._out.append(ins)
                        self._acked = True

    def _one_at_a_time(self, done):
        """Whether data byte number ``done`` goes behind ~INS rather than ACK."""
        bbb = self.byte_by_byte
        if bbb is True:
            return True
        if bbb is False or bbb is None:
            return False
        return done < bbb

    def _procedure_nulls(self):
        for _ in range(self.null_bytes):
            self._out.append(NULL)

    def _on_header(self):
        header = bytes(self._header)
        early = self._check_header(header)
        if early is not None:
            self._procedure_nulls()
            self._out.extend(early)
            self._header = bytearray()
            return
        p3 = header[4]
        if p3 and self._is_outgoing(header[1]):
            self._state = _DATA
            self._need = p3
            self._data = bytearray()
            self._procedure_nulls()
            ins = header[1]
            if self._one_at_a_time(0):
                self._out.append(ins ^ 0xFF)
                self._acked = False
            else:
                self._out.append(ins)
                self._acked = True
            return
        self._finish(header, b"")

    def _finish(self, header, data):
        rdata, sw1, sw2 = self._complete(header, data)
        self._procedure_nulls()
        ins = header[1]
        if rdata:
            i = 0
            n = len(rdata)
            while i < n and self._one_at_a_time(i):
                self._out.append(ins ^ 0xFF)
                self._out.append(rdata[i])
                i += 1
            if i < n:
                self._out.append(ins)
                self._out.extend(rdata[i:])
        self._out.append(sw1)
        self._out.append(sw2)
        self._state = _HEADER
        self._header = bytearray()
        self._data = bytearray()
        self._need = 0

    # --- TPDU level -----------------------------------------------------------------------

    def process_tpdu(self, tpdu):
        """One command TPDU in, the response TPDU (data + SW1 SW2) out.

        None when the card would stay mute: a header shorter than 5 bytes, or
        an outgoing INS whose data did not come (the card waits for it).
        """
        tpdu = bytes(tpdu)
        if len(tpdu) < 5:
            return None
        header = tpdu[:5]
        early = self._check_header(header)
        if early is not None:
            return early
        data = tpdu[5:]
        p3 = header[4]
        if p3 and self._is_outgoing(header[1]):
            if len(data) < p3:
                return None
            if len(data) > p3:
                return _sw(0x67, 0x00)
        elif data:
            return _sw(0x67, 0x00)
        rdata, sw1, sw2 = self._complete(header, data)
        return rdata + _sw(sw1, sw2)

    # --- the card's decisions -------------------------------------------------------------

    def _is_outgoing(self, ins):
        return ins in self.outgoing_ins

    def _check_header(self, header):
        # ISO/IEC 7816-3 §10.3.2: CLA FF is PPS, INS 6X / 9X are invalid
        self.tpdus += 1
        if header[0] == 0xFF:
            return _sw(0x6E, 0x00)
        hi = header[1] & 0xF0
        if hi == 0x60 or hi == 0x90:
            return _sw(0x6D, 0x00)
        return None

    def _process(self, apdu):
        resp = bytes(self.card.process_apdu(apdu))
        if len(resp) < 2:
            return b"", 0x6F, 0x00
        n = len(resp)
        return resp[:n - 2], resp[n - 2], resp[n - 1]

    def _complete(self, header, data):
        """(data for the reader, SW1, SW2) for a whole TPDU."""
        ins = header[1]
        p3 = header[4]
        if ins == INS_ENVELOPE and self.envelope:
            self.pending = None
            return self._envelope(header, data)
        self.envelope_buffer = None
        if data:
            # §12.2.4: a case-3 TPDU; the card processes the APDU as case 4
            # (Le = 00) and announces any response data with 61xx.
            self.pending = None
            apdu = header + data + b"\x00"
            rdata, sw1, sw2 = self._process(apdu)
            return self._announce(rdata, sw1, sw2)
        if ins == INS_GET_RESPONSE and header[2] == 0 and header[3] == 0 and self.pending is not None:
            return self._serve_pending(p3 or 256)
        self.pending = None
        if p3 == 0 and self._is_outgoing(ins):
            apdu = header[:4]  # case 1
            ne = 0
        else:
            apdu = header  # case 2S: P3 is Le
            ne = p3 or 256
        rdata, sw1, sw2 = self._process(apdu)
        nr = len(rdata)
        if nr == 0:
            return b"", sw1, sw2
        if ne == 0:
            # response data to a case-1 command: announce it
            return self._announce(rdata, sw1, sw2)
        if nr == ne:
            return rdata, sw1, sw2
        if nr > ne:
            self.pending = (rdata[ne:], sw1, sw2)
            rest = nr - ne
            return rdata[:ne], 0x61, (rest if rest < 256 else 0)
        # §12.2.2: Le not accepted, SW2 gives the exact length. The data of a
        # GET RESPONSE is kept for the re-issued one (it is not produced twice).
        if ins == INS_GET_RESPONSE:
            self.pending = (rdata, sw1, sw2)
        return b"", 0x6C, nr

    def _announce(self, rdata, sw1, sw2):
        if not rdata:
            return b"", sw1, sw2
        self.pending = (rdata, sw1, sw2)
        n = len(rdata)
        return b"", 0x61, (n if n < 256 else 0)

    def _serve_pending(self, le):
        data, sw1, sw2 = self.pending
        n = len(data)
        if le > n:
            return b"", 0x6C, n & 0xFF
        if le == n:
            self.pending = None
            return data, sw1, sw2
        rest = n - le
        self.pending = (data[le:], sw1, sw2)
        return data[:le], 0x61, (rest if rest < 256 else 0)

    def _envelope(self, header, data):
        buf = self.envelope_buffer if self.envelope_buffer is not None else b""
        buf = buf + data
        if len(buf) > MAX_ENVELOPE:
            self.envelope_buffer = None
            return b"", 0x67, 0x00
        if header[0] & CLA_CHAINING:
            self.envelope_buffer = buf
            return b"", 0x90, 0x00
        self.envelope_buffer = None
        if not buf:
            return b"", 0x67, 0x00
        rdata, sw1, sw2 = self._process(buf)
        return self._announce(rdata, sw1, sw2)
