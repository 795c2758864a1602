"""The workloads of `ccidkit bench footprint`, for CPython and MicroPython alike.

Both run the real CCID driver (core/driver.py) over a Transport:

- ``t1_echo``: power on, T=1, one ECHO APDU (``80 EE 00 00``, extended
  Lc and Le) of ``size`` bytes (4 KiB by default) answered with the same
  bytes: chained I-blocks both ways at TPDU level;
- ``phonebook``: power on, T=0, then the GSM phone-book read of
  ``ccidkit phonebook`` (TS 51.011: SELECT 3F00 / 7F10 / 6F3A in class A0,
  each 9Fxx answer read with GET RESPONSE, then READ RECORD 1..N and the
  alpha identifier and BCD number of every record decoded into a list).

On CPython they run against an emulated reader and card through a
``RecordingTransport`` (footprint.py) that writes every transfer to a text
file; on MicroPython the same workload runs against ``ReplayTransport``,
which answers from that file one line at a time (and checks that every
bulk-OUT message is byte for byte the recorded one), so the MicroPython heap
holds the driver's side only, not a card's.

Recording lines: ``H vid pid interface manufacturer product config`` (hex
fields, ``-`` for none), then one per transfer: ``O hex`` (bulk-OUT),
``I hex`` (bulk-IN), ``N hex`` / ``N -`` (interrupt-IN), ``C hex``
(control); ``!T`` / ``!S`` / ``!R`` in place of data: timeout, stall,
reader removed.
"""

import binascii

from ccidkit.core.errors import CcidkitError
from ccidkit.core.transport import Transport, TransportTimeout, TransportStall, ReaderRemoved
from ccidkit.core.driver import Reader, PROTOCOL_T0, PROTOCOL_T1

CLA_GSM = 0xA0
MAX_LINE = 20000            # longest recorded line accepted (a 64 KiB message would not fit)
MAX_RECORDS = 254


class ReplayError(CcidkitError):
    """The replayed run left the recording: ``name`` MISMATCH (the driver
    sent other bytes than the recorded run), END (more transfers than were
    recorded), BAD_RECORDING (a line that does not parse), WRONG_ANSWER (the
    card's answer is not what the workload expects)."""


def _hex(data):
    return binascii.hexlify(bytes(data)).decode() if data else ""


def _unhex(text):
    return binascii.unhexlify(text) if text else b""


def _text(field):
    return None if field == "-" else _unhex(field).decode()


def _field(text):
    return "-" if text is None else _hex(text.encode())


def header_line(t):
    return "H %04X %04X %d %s %s %s\n" % (t.vid, t.pid, t.interface_number,
                                          _field(t.manufacturer), _field(t.product),
                                          _hex(t.config_descriptor))


class ReplayTransport(Transport):
    """Answers from a recording (see the module documentation).

    ``sample()`` is called at the start of every transfer (the heap probe)."""

    def __init__(self, f, sample=None):
        self.f = f
        self.sample = sample
        self.transfers = 0
        line = self._line()
        parts = line.split(" ")
        if len(parts) != 7 or parts[0] != "H":
            raise ReplayError("the recording does not start with its H line", name="BAD_RECORDING")
        self.vid = int(parts[1], 16)
        self.pid = int(parts[2], 16)
        self.interface_number = int(parts[3])
        self.manufacturer = _text(parts[4])
        self.product = _text(parts[5])
        self.config_descriptor = _unhex(parts[6])
        self.bus_path = "replay"

    def _line(self):
        line = self.f.readline(MAX_LINE)
        if not line:
            raise ReplayError("more transfers than the recording holds", name="END")
        return line.rstrip("\n")

    def _next(self, op):
        if self.sample is not None:
            self.sample()
        self.transfers += 1
        line = self._line()
        if len(line) < 2 or line[0] != op or line[1] != " ":
            raise ReplayError("transfer %d: %s expected, the recording has %r"
                              % (self.transfers, op, line[:16]), name="MISMATCH")
        rest = line[2:]
        if rest == "!T":
            raise TransportTimeout()
        if rest == "!S":
            raise TransportStall()
        if rest == "!R":
            raise ReaderRemoved()
        return rest

    def bulk_out(self, data, timeout_ms):
        rest = self._next("O")
        if rest != _hex(data):
            raise ReplayError("transfer %d: the driver sent other bytes than recorded"
                              % self.transfers, name="MISMATCH")

    def bulk_in(self, max_len, timeout_ms):
        return _unhex(self._next("I"))

    def interrupt_in(self, max_len, timeout_ms):
        rest = self._next("N")
        return None if rest == "-" else _unhex(rest)

    def control(self, bmRequestType, bRequest, wValue, wIndex, data_or_length, timeout_ms):
        return _unhex(self._next("C"))


def _noop(label):
    pass


def echo_apdu(size):
    """ECHO with extended Lc and Le (ISO/IEC 7816-4 §5.1): the card answers the data."""
    head = b"\x80\xEE\x00\x00\x00" + bytes((size >> 8, size & 0xFF))
    return head + bytes((i * 31 + 7) & 0xFF for i in range(size)) + bytes((size >> 8, size & 0xFF))


def t1_echo(transport, mark=_noop, size=4096):
    """Returns the response length; ReplayError WRONG_ANSWER on a bad answer."""
    reader = Reader(transport).open()
    reader.power_on(0)
    if reader.set_protocol(0, PROTOCOL_T1) != 1:       # returns the protocol number
        raise ReplayError("the card did not take T=1", name="WRONG_ANSWER")
    mark("connected")
    rsp = reader.transmit(0, echo_apdu(size))
    if len(rsp) != size + 2 or rsp[size] != 0x90 or rsp[size + 1] != 0:
        raise ReplayError("ECHO answered %d bytes" % len(rsp), name="WRONG_ANSWER")
    for i in range(size):
        if rsp[i] != (i * 31 + 7) & 0xFF:
            raise ReplayError("ECHO answered other data at %d" % i, name="WRONG_ANSWER")
    mark("done")
    reader.power_off(0)
    return len(rsp)


def _check(resp, sw1, what):
    if len(resp) < 2 or resp[-2] != sw1 or (sw1 == 0x90 and resp[-1] != 0):
        raise ReplayError("%s: status %s" % (what, _hex(resp[-2:])), name="WRONG_ANSWER")
    return resp[-1]


def _select(reader, fid):
    # TS 51.011 §9.2.1 SELECT, the response fetched with GET RESPONSE (§9.2.18)
    sw2 = _check(reader.transmit(0, bytes((CLA_GSM, 0xA4, 0, 0, 2, fid >> 8, fid & 0xFF))),
                 0x9F, "SELECT %04X" % fid)
    resp = reader.transmit(0, bytes((CLA_GSM, 0xC0, 0, 0, sw2)))
    _check(resp, 0x90, "GET RESPONSE")
    return resp


def decode_adn(record):
    """(name, number) of an ADN record (TS 51.011 §10.5.1), None when empty."""
    n = len(record)
    if n < 14:
        return None
    x = n - 14
    chars = []
    for b in record[:x]:
        if b == 0xFF:
            break
        chars.append(chr(b) if 0x20 <= b < 0x7F else "?")
    name = "".join(chars)
    length = record[x]
    digits = []
    if 2 <= length <= 11:
        for b in record[x + 2:x + 1 + length]:
            for d in (b & 0x0F, b >> 4):
                if d == 0x0F:
                    break
                digits.append("0123456789*#abc"[d])
    number = "".join(digits)
    if not name and not number:
        return None
    return name, number


def phonebook(transport, mark=_noop, max_records=None):
    """Returns (records read, entries decoded)."""
    reader = Reader(transport).open()
    reader.power_on(0)
    reader.set_protocol(0, PROTOCOL_T0 | PROTOCOL_T1)
    mark("connected")
    _select(reader, 0x3F00)
    _select(reader, 0x7F10)
    info = _select(reader, 0x6F3A)
    if len(info) < 17:
        raise ReplayError("EF ADN response of %d bytes" % len(info), name="WRONG_ANSWER")
    size = (info[2] << 8) | info[3]
    record_length = info[14]
    if record_length == 0:
        raise ReplayError("EF ADN has no records", name="WRONG_ANSWER")
    count = min(size // record_length, MAX_RECORDS)
    if max_records is not None:
        count = min(count, max_records)
    entries = []
    for rec in range(1, count + 1):
        # §9.2.5 READ RECORD, absolute mode
        resp = reader.transmit(0, bytes((CLA_GSM, 0xB2, rec, 0x04, record_length)))
        _check(resp, 0x90, "READ RECORD %d" % rec)
        entry = decode_adn(resp[:-2])
        if entry is not None:
            entries.append((rec, entry[0], entry[1]))
    mark("done")
    reader.power_off(0)
    return count, len(entries)
