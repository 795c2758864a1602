"""MiniCard: the minimal virtual card every engine and reader is tested against.

Card interface (docs/architecture.md): ``.atr``, ``.process_apdu(apdu) ->
data + SW1 SW2``, ``power_on()`` / ``power_off()`` / ``reset(warm=True)``.

File system (flat, all under the MF):
  3F00  MF
  2F00  EF, 1 KiB,  byte i = i & 0xFF
  2F01  EF, 4 KiB,  byte i = (i * 7 + (i >> 8)) & 0xFF
  application AID F0 63 63 69 64 6B 69 74 01 (a DF selected by name)

Commands (ISO/IEC 7816-4 unless said otherwise):
  SELECT        00 A4, P1=00 by FID, P1=04 by DF name (AID); P2 00/04/08 answer
                an FCP template, P2=0C no data.
  READ BINARY   00 B0, offset in P1P2 (b8 of P1 = 0); short or extended Le.
  GET RESPONSE  00 C0 00 00 Le: the rest of a response that exceeded Ne.
  ECHO          80 EE 00 00 Lc data Le -> data 90 00 (short or extended, up
                to 65535 bytes; command chaining with CLA 90 accepted).
Anything else gets the status word a real card gives; process_apdu never
raises. ``count(ins)`` tells how many times an INS was received.
"""

from ...core.apdu import APDUError, CommandAPDU

INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_GET_RESPONSE = 0xC0
INS_ECHO = 0xEE

FID_MF = 0x3F00
FID_EF_1K = 0x2F00
FID_EF_4K = 0x2F01
AID = b"\xF0ccidkit\x01"

# Default ATR parameters: TA1 = 96 (Fi 512, Di 32), T=1 IFSC 32, BWI 4 / CWI 5.
DEFAULT_TA1 = 0x96
DEFAULT_IFSC = 32
DEFAULT_BWI = 4
DEFAULT_CWI = 5
# Historical bytes (ISO/IEC 7816-4 §8.1.1): category indicator 80, then a
# compact-TLV "card issuer's data" object (tag 5, length 7).
DEFAULT_HISTORICAL = b"\x80\x57ccidkit"

MAX_ECHO = 65535
# Our own limit on data gathered over a command chain.
MAX_CHAIN = 65535


_CONTENT = {}


def ef_content(fid):
    """The known content of the MiniCard's EFs (None for other FIDs)."""
    if fid in _CONTENT:
        return _CONTENT[fid]
    if fid == FID_EF_1K:
        data = bytes([i & 0xFF for i in range(1024)])
    elif fid == FID_EF_4K:
        data = bytes([(i * 7 + (i >> 8)) & 0xFF for i in range(4096)])
    else:
        return None
    _CONTENT[fid] = data
    return data


def build_atr(protocols=(0, 1), ta1=DEFAULT_TA1, ifsc=DEFAULT_IFSC, bwi=DEFAULT_BWI,
              cwi=DEFAULT_CWI, historical=DEFAULT_HISTORICAL):
    """A direct-convention ATR (ISO/IEC 7816-3 §8.2) offering ``protocols``.

    TA1 is omitted when ``ta1`` is None. T=1 brings TA(i) = IFSC and TB(i) =
    BWI/CWI in its first T=1 interface-byte group (§11.4). TCK is present
    whenever a protocol other than T=0 is indicated (§8.2.5).
    """
    protocols = tuple(protocols)
    if not protocols:
        raise ValueError("at least one protocol")
    for p in protocols:
        if p not in (0, 1):
            raise ValueError("protocols are T=0 and T=1")
    if len(historical) > 15:
        raise ValueError("at most 15 historical bytes")
    y1 = 0
    body = bytearray()
    if ta1 is not None:
        y1 |= 0x1
        body.append(ta1)
    # TD1 is needed unless the only protocol is T=0 (its absence means T=0).
    if protocols != (0,):
        y1 |= 0x8
        first = protocols[0]
        if len(protocols) > 1 or first == 1:
            # TD1 announces TD2 whose group carries the T=1 parameters
            body.append(0x80 | first)
            body.append(0x30 | 1)  # TD2: TA3, TB3 follow; T=1
            body.append(ifsc)
            body.append(((bwi & 0x0F) << 4) | (cwi & 0x0F))
    atr = bytearray((0x3B, (y1 << 4) | len(historical)))
    atr.extend(body)
    atr.extend(historical)
    if protocols != (0,):
        tck = 0
        for b in atr[1:]:
            tck ^= b
        atr.append(tck)
    return bytes(atr)


def _sw(sw):
    return bytes((sw >> 8, sw & 0xFF))


def _tlv(tag, value):
    return bytes((tag, len(value))) + value


class MiniCard:
    """The minimal virtual card (see the module documentation)."""

    def __init__(self, atr=None, protocols=(0, 1), ta1=DEFAULT_TA1, ifsc=DEFAULT_IFSC,
                 bwi=DEFAULT_BWI, cwi=DEFAULT_CWI, historical=DEFAULT_HISTORICAL):
        if atr is None:
            atr = build_atr(protocols, ta1, ifsc, bwi, cwi, historical)
        self.atr = bytes(atr)
        self.protocols = tuple(protocols)
        self.files = {FID_EF_1K: ef_content(FID_EF_1K), FID_EF_4K: ef_content(FID_EF_4K)}
        self.counts = {}
        self.commands = 0
        self.powered = False
        self.power_ups = 0
        self._session()

    # --- session events -------------------------------------------------------------------

    def _session(self):
        self.current_df = FID_MF  # FID_MF or "app"
        self.current_ef = None
        self.leftover = b""
        self.chain_buffer = None

    def power_on(self):
        self.powered = True
        self.power_ups += 1
        self._session()
        return self.atr

    def power_off(self):
        self.powered = False
        self._session()

    def reset(self, warm=True):
        self._session()
        self.powered = True
        return self.atr

    def count(self, ins):
        """How many command APDUs with this INS the card has received."""
        return self.counts.get(ins, 0)

    # --- APDU processing ------------------------------------------------------------------

    def process_apdu(self, apdu):
        """A whole command APDU in, response data + SW1 SW2 out. Never raises."""
        apdu = bytes(apdu)
        self.commands += 1
        if len(apdu) >= 2:
            ins = apdu[1]
            self.counts[ins] = self.counts.get(ins, 0) + 1
        try:
            cmd = CommandAPDU.parse(apdu)
        except APDUError:
            # a malformed length field: what cards answer is "wrong length"
            self.leftover = b""
            self.chain_buffer = None
            return _sw(0x6700)
        ins = cmd.ins
        if ins != INS_GET_RESPONSE:
            self.leftover = b""
        if ins != INS_ECHO:
            # another command abandons an unfinished ECHO chain
            self.chain_buffer = None
        return self._dispatch(cmd)

    def _dispatch(self, cmd):
        cla = cmd.cla
        ins = cmd.ins
        if cla == 0xFF:
            return _sw(0x6E00)  # FF is the PPS character, never a class
        if (ins & 0xF0) == 0x60 or (ins & 0xF0) == 0x90:
            return _sw(0x6D00)  # invalid INS (ISO/IEC 7816-3 §10.3.2)
        interindustry = (cla & 0xE0) == 0x00  # 0X and 1X (chained)
        proprietary = (cla & 0xE0) == 0x80  # 8X and 9X (chained)
        if not interindustry and not proprietary:
            return _sw(0x6E00)
        if cla & 0x03:
            return _sw(0x6881)
        if cla & 0x0C:
            return _sw(0x6882)
        if ins == INS_GET_RESPONSE:
            if cla & 0x10:
                return _sw(0x6884)
            return self._get_response(cmd)
        if ins == INS_ECHO:
            if not proprietary:
                return _sw(0x6E00)
            return self._echo(cmd)
        if ins == INS_SELECT or ins == INS_READ_BINARY:
            if not interindustry:
                return _sw(0x6E00)
            if cla & 0x10:
                return _sw(0x6884)
            if ins == INS_SELECT:
                return self._select(cmd)
            return self._read_binary(cmd)
        return _sw(0x6D00)

    def _answer(self, data, ne, sw=0x9000):
        """Up to Ne bytes of ``data``; the rest waits for GET RESPONSE behind 61xx."""
        if not ne:
            self.leftover = b""
            return _sw(sw)
        if len(data) > ne:
            self.leftover = data[ne:]
            rest = len(self.leftover)
            return data[:ne] + bytes((0x61, rest if rest < 256 else 0))
        self.leftover = b""
        return data + _sw(sw)

    def _get_response(self, cmd):
        # ISO/IEC 7816-4 §7.6.1
        if cmd.p1 or cmd.p2:
            self.leftover = b""
            return _sw(0x6A86)
        if cmd.data:
            self.leftover = b""
            return _sw(0x6700)
        if not self.leftover:
            return _sw(0x6985)
        ne = cmd.ne or 256
        return self._answer(self.leftover, ne)

    def _echo(self, cmd):
        if cmd.p1 or cmd.p2:
            self.chain_buffer = None
            return _sw(0x6A86)
        if cmd.cla & 0x10:
            # not the last command of a chain: keep the data, answer 9000
            # (an Le here is ignored: T=0 adds Le 00 to every case-3 TPDU)
            buf = self.chain_buffer if self.chain_buffer is not None else b""
            if len(buf) + len(cmd.data) > MAX_CHAIN:
                self.chain_buffer = None
                return _sw(0x6700)
            self.chain_buffer = buf + cmd.data
            return _sw(0x9000)
        data = cmd.data
        if self.chain_buffer is not None:
            data = self.chain_buffer + data
            self.chain_buffer = None
        if not data:
            return _sw(0x6700)
        if len(data) > MAX_ECHO:
            return _sw(0x6700)
        return self._answer(data, cmd.ne)

    def _fcp(self, fid):
        # ISO/IEC 7816-4 §5.3.3: FCP template 62 with 82 descriptor, 83 FID, 80 size.
        if fid == FID_MF:
            body = _tlv(0x82, b"\x38") + _tlv(0x83, b"\x3F\x00")
        else:
            size = len(self.files[fid])
            body = (_tlv(0x80, bytes((size >> 8, size & 0xFF))) + _tlv(0x82, b"\x01")
                    + _tlv(0x83, bytes((fid >> 8, fid & 0xFF))))
        return _tlv(0x62, body)

    def _select(self, cmd):
        p1 = cmd.p1
        p2 = cmd.p2
        # P2: b2b1 occurrence (only "first or only" = 00), b4b3 00/04/08 FCI/FCP/FMD, 0C none
        if p2 & 0xF3:
            return _sw(0x6A86)
        answer = (p2 & 0x0C) != 0x0C
        if p1 == 0x00:
            if not cmd.data:
                fid = FID_MF  # §11.1.1: P1P2 0000 with no data selects the MF
            elif len(cmd.data) != 2:
                return _sw(0x6A87)
            else:
                fid = (cmd.data[0] << 8) | cmd.data[1]
            if fid == FID_MF:
                self.current_df = FID_MF
                self.current_ef = None
            elif fid in self.files:
                self.current_ef = fid
            else:
                return _sw(0x6A82)
            if not answer:
                return _sw(0x9000)
            return self._answer(self._fcp(fid), cmd.ne)
        if p1 == 0x04:
            if not cmd.data:
                return _sw(0x6700)
            if cmd.data != AID:
                return _sw(0x6A82)
            self.current_df = "app"
            self.current_ef = None
            if not answer:
                return _sw(0x9000)
            fci = _tlv(0x6F, _tlv(0x84, AID) + _tlv(0xA5, _tlv(0x50, b"ccidkit")))
            return self._answer(fci, cmd.ne)
        return _sw(0x6A86)

    def _read_binary(self, cmd):
        if cmd.p1 & 0x80:
            return _sw(0x6A81)  # short EF identifier in P1: not supported here
        if cmd.data:
            return _sw(0x6700)
        if cmd.ne is None:
            return _sw(0x6700)
        if self.current_ef is None:
            return _sw(0x6986)
        content = self.files[self.current_ef]
        offset = (cmd.p1 << 8) | cmd.p2
        if offset >= len(content):
            return _sw(0x6B00)
        ne = cmd.ne
        chunk = content[offset:offset + ne]
        # Le 00 / 0000 asks for "all available up to 256 / 65536": fewer is no warning.
        wildcard = ne == 65536 or (ne == 256 and not cmd.extended)
        if len(chunk) < ne and not wildcard:
            return chunk + _sw(0x6282)
        return chunk + _sw(0x9000)
