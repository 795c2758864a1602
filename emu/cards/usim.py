"""The virtual USIM: one file tree, two faces.

* The GSM SIM of TS 51.011 (class A0): SELECT answered 9Fxx, the §9.2.1
  response read with GET RESPONSE A0 C0, READ RECORD A0 B2, CHV1.
* The UICC / USIM of TS 102 221 and TS 31.102 (class 00): 61xx, FCP
  templates, EF DIR with the USIM application, ADF USIM selected by AID,
  DF Phonebook with EF PBR pointing at EF ADN.

File tree::

  3F00 MF
    2F00 EF DIR         linear fixed, the USIM application record (SFI 1E)
    2FE2 EF ICCID       10 bytes, BCD with swapped nibbles (SFI 02)
    7F10 DF Telecom
      6F3A EF ADN       N records (default 250) of X+14 bytes (default 30)
      5F3A DF Phonebook
        4F30 EF PBR     A8 { C0 03 4F3A 01 }: the ADN below, SFI 1
        4F3A EF ADN     the same records as 7F10/6F3A
    7F20 DF GSM
      6F07 EF IMSI
    7FF0 ADF USIM       AID A0 00 00 00 87 10 02 ...
      6F07 EF IMSI      the same content as 7F20/6F07 (SFI 07)

PIN1 (01, CHV1) guards reading and updating the phone book and the IMSI; it
is disabled by default so the phone book reads as on most phones' SIMs.
PIN2 (81, CHV2) is local to the ADF. ADN record (TS 51.011 §10.5.1, TS
31.102 §4.4.2.3): X bytes alpha identifier (GSM 7-bit default alphabet
unpacked, or the 80/81/82 UCS2 forms of TS 102 221 Annex A), padded FF;
length of the BCD number (TON/NPI byte + digits); TON/NPI; 10 bytes BCD
with swapped nibbles padded F; capability/configuration id; extension id.
"""

from ..cardos import (NEV, DF, PIN, RecordEF, TransparentEF, CardOS, CardOSError,
                      build_card_atr, historical_bytes, tlv)

USIM_AID = bytes.fromhex("A0000000871002FFFFFFFF8906190000")
FID_TELECOM = 0x7F10
FID_ADN = 0x6F3A
FID_PHONEBOOK = 0x5F3A
FID_PBR = 0x4F30
FID_PB_ADN = 0x4F3A
FID_GSM = 0x7F20
FID_IMSI = 0x6F07
FID_DIR = 0x2F00
FID_ICCID = 0x2FE2
FID_ADF_USIM = 0x7FF0

PIN1 = 0x01
PIN2 = 0x81

DEFAULT_RECORDS = 250
DEFAULT_RECORD_LENGTH = 30
DEFAULT_ICCID = "8988211000000123456"
DEFAULT_IMSI = "001010123456789"
DEFAULT_PIN1 = "0000"
DEFAULT_PUK1 = "12345678"
DEFAULT_PIN2 = "1111"
DEFAULT_PUK2 = "87654321"
# Historical bytes: what the card OS does, 4 logical channels, no extended lengths.
DEFAULT_HISTORICAL = historical_bytes(max_channels=4)

# (record number, name, number): gaps on purpose, names in both alphabets.
DEFAULT_CONTACTS = (
    (1, "Alice Martin", "+33612345678"),
    (2, "Bob", "0612345678"),
    (3, "\u00c9mile Zola", "+33140000000"),
    (5, "Voicemail", "*86#"),
    (10, "Zo\u00eb", "+4915112345678"),
)

# --- the GSM 7-bit default alphabet (TS 23.038 §6.2.1), one character a byte ----------------

GSM7_BASIC = (
    "@\u00a3$\u00a5\u00e8\u00e9\u00f9\u00ec\u00f2\u00c7\n\u00d8\u00f8\r\u00c5\u00e5"
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\x1b\u00c6\u00e6\u00df\u00c9"
    " !\"#\u00a4%&'()*+,-./0123456789:;<=>?"
    "\u00a1ABCDEFGHIJKLMNOPQRSTUVWXYZ\u00c4\u00d6\u00d1\u00dc\u00a7"
    "\u00bfabcdefghijklmnopqrstuvwxyz\u00e4\u00f6\u00f1\u00fc\u00e0"
)
assert len(GSM7_BASIC) == 128
# the extension table, reached through 1B (TS 23.038 §6.2.1.1)
GSM7_EXT = {0x0A: "\x0c", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~",
            0x3E: "]", 0x40: "|", 0x65: "\u20ac"}
_GSM7_INDEX = dict((c, i) for i, c in enumerate(GSM7_BASIC) if i != 0x1B)
_GSM7_EXT_INDEX = dict((c, i) for i, c in GSM7_EXT.items())


class UsimError(CardOSError):
    """A phone-book entry that cannot be encoded (name BAD_ENTRY)."""


def gsm7_encode(text):
    """Unpacked GSM 7-bit bytes for ``text``; None when a character has no code."""
    out = bytearray()
    for ch in text:
        if ch in _GSM7_INDEX:
            out.append(_GSM7_INDEX[ch])
        elif ch in _GSM7_EXT_INDEX:
            out.append(0x1B)
            out.append(_GSM7_EXT_INDEX[ch])
        else:
            return None
    return bytes(out)


def gsm7_decode(data):
    out = []
    esc = False
    for b in data:
        b &= 0x7F
        if esc:
            out.append(GSM7_EXT.get(b, " "))
            esc = False
        elif b == 0x1B:
            esc = True
        else:
            out.append(GSM7_BASIC[b])
    return "".join(out)


def encode_alpha(name, length):
    """The alpha identifier field: GSM 7-bit if it can, else UCS2 (80 form), padded FF."""
    raw = gsm7_encode(name)
    if raw is None:
        raw = b"\x80" + name.encode("utf-16-be")
        if len(raw) > length:
            raise UsimError("name %r needs %d bytes in UCS2, the field has %d"
                            % (name, len(raw), length), name="BAD_ENTRY")
    if len(raw) > length:
        raise UsimError("name %r needs %d bytes, the field has %d" % (name, len(raw), length),
                        name="BAD_ENTRY")
    return raw + b"\xff" * (length - len(raw))


def decode_alpha(field):
    """The text of an alpha identifier (TS 102 221 Annex A for the UCS2 forms)."""
    field = bytes(field)
    if not field:
        return ""
    first = field[0]
    if first == 0x80:
        body = field[1:]
        chars = []
        for i in range(0, len(body) - 1, 2):
            code = (body[i] << 8) | body[i + 1]
            if code == 0xFFFF:
                break
            chars.append(chr(code))
        return "".join(chars)
    if first == 0x81 or first == 0x82:
        if first == 0x81:
            if len(field) < 3:
                return ""
            n = field[1]
            base = field[2] << 7
            start = 3
        else:
            if len(field) < 4:
                return ""
            n = field[1]
            base = (field[2] << 8) | field[3]
            start = 4
        chars = []
        for b in field[start:start + n]:
            if b & 0x80:
                chars.append(chr(base + (b & 0x7F)))
            else:
                chars.append(GSM7_BASIC[b])
        return "".join(chars)
    end = len(field)
    while end and field[end - 1] == 0xFF:
        end -= 1
    return gsm7_decode(field[:end])


# --- numbers: BCD with swapped nibbles (TS 51.011 §10.5.1, TS 24.008 Table 10.5.118) -----------

_BCD = {"0": 0, "1": 1, "2": 2, "3": 3, "4": 4, "5": 5, "6": 6, "7": 7, "8": 8, "9": 9,
        "*": 0xA, "#": 0xB, "p": 0xC, "?": 0xD}
_BCD_TEXT = "0123456789*#p?e"


def encode_bcd(digits):
    out = bytearray()
    for i in range(0, len(digits), 2):
        lo = _BCD[digits[i]]
        hi = _BCD[digits[i + 1]] if i + 1 < len(digits) else 0xF
        out.append((hi << 4) | lo)
    return bytes(out)


def decode_bcd(data):
    out = []
    for b in data:
        for nib in (b & 0x0F, b >> 4):
            if nib == 0xF:
                return "".join(out)
            out.append(_BCD_TEXT[nib])
    return "".join(out)


def encode_adn(name, number, record_length=DEFAULT_RECORD_LENGTH):
    """One ADN record for ``name`` and ``number`` ("+" makes TON international)."""
    x = record_length - 14
    if x < 0:
        raise UsimError("an ADN record has at least 14 bytes", name="BAD_ENTRY")
    international = number.startswith("+")
    digits = number[1:] if international else number
    for d in digits:
        if d not in _BCD:
            raise UsimError("%r is not a dialling digit" % d, name="BAD_ENTRY")
    if not digits or len(digits) > 20:
        raise UsimError("1..20 digits without an EXT1 record, not %d" % len(digits),
                        name="BAD_ENTRY")
    bcd = encode_bcd(digits)
    rec = encode_alpha(name, x) if x else b""
    rec += bytes((1 + len(bcd), 0x91 if international else 0x81))
    rec += bcd + b"\xff" * (10 - len(bcd))
    rec += b"\xff\xff"   # capability/configuration id, extension id: none
    return rec


def decode_adn(record):
    """(name, number) of an ADN record, or None for an empty one. Never raises."""
    record = bytes(record)
    if len(record) < 14 or all(b == 0xFF for b in record):
        return None
    x = len(record) - 14
    name = decode_alpha(record[:x])
    n = record[x]
    ton = record[x + 1]
    number = ""
    if 2 <= n <= 11:
        number = decode_bcd(record[x + 2:x + 1 + n])
        if (ton & 0x70) == 0x10 and number:
            number = "+" + number
    if not name and not number:
        return None
    return name, number


def encode_iccid(iccid):
    digits = iccid
    if len(digits) > 20 or any(d not in "0123456789" for d in digits):
        raise UsimError("an ICCID has up to 20 decimal digits", name="BAD_ENTRY")
    return encode_bcd(digits) + b"\xff" * (10 - (len(digits) + 1) // 2)


def encode_imsi(imsi):
    # TS 31.102 §4.2.2: length byte, then parity nibble (odd digit count: 9) and the digits
    if not 6 <= len(imsi) <= 15 or any(d not in "0123456789" for d in imsi):
        raise UsimError("an IMSI has 6..15 decimal digits", name="BAD_ENTRY")
    # first nibble: identity type 001 (IMSI) with b4 = 1 for an odd number of digits
    bcd = encode_bcd(("9" if len(imsi) % 2 else "1") + imsi)
    out = bytes((len(bcd),)) + bcd
    return out + b"\xff" * (9 - len(out))


def _dir_record(aid, label, length):
    rec = tlv(0x61, tlv(0x4F, aid) + tlv(0x50, label.encode("ascii")))
    return rec + b"\xff" * (length - len(rec))


def build_usim_tree(records=DEFAULT_RECORDS, record_length=DEFAULT_RECORD_LENGTH,
                    contacts=DEFAULT_CONTACTS, iccid=DEFAULT_ICCID, imsi=DEFAULT_IMSI):
    """The MF of a USIM with its phone book (see the module documentation)."""
    if not 1 <= records <= 254:
        raise UsimError("1..254 ADN records, not %r" % (records,), name="BAD_ENTRY")
    if not 14 <= record_length <= 255:
        raise UsimError("ADN records of 14..255 bytes", name="BAD_ENTRY")
    mf = DF(0x3F00, name="MF", pins=(PIN1,))
    # TS 102 221 §13: SFI 1E for EF DIR, 02 for EF ICCID; TS 31.102 §4.2: 07 for EF IMSI
    mf.add(RecordEF(FID_DIR, 32, 2, [_dir_record(USIM_AID, "USIM", 32)], name="EF DIR",
                    sfi=0x1E, update=NEV))
    mf.add(TransparentEF(FID_ICCID, data=encode_iccid(iccid), name="EF ICCID", sfi=0x02,
                         update=NEV))
    telecom = mf.add(DF(FID_TELECOM, name="DF TELECOM", pins=(PIN1,)))
    adn_records = [b""] * records
    for entry in contacts:
        if len(entry) == 3:
            idx, name, number = entry
        else:
            name, number = entry
            idx = next((i + 1 for i in range(records) if not adn_records[i]), None)
            if idx is None:
                raise UsimError("more contacts than %d records" % records, name="BAD_ENTRY")
        if not 1 <= idx <= records:
            continue   # beyond this card's phone book
        adn_records[idx - 1] = encode_adn(name, number, record_length)
    adn = telecom.add(RecordEF(FID_ADN, record_length, records, adn_records, name="EF ADN",
                               read=PIN1, update=PIN1))
    pb = telecom.add(DF(FID_PHONEBOOK, name="DF PHONEBOOK", pins=(PIN1,)))
    # TS 31.102 §4.4.2.1: EF PBR, one record per set of phone-book files; C0 = type 1 ADN
    pbr = tlv(0xA8, tlv(0xC0, bytes((FID_PB_ADN >> 8, FID_PB_ADN & 0xFF, 0x01))))
    pb.add(RecordEF(FID_PBR, 32, 1, [pbr], name="EF PBR", update=NEV))
    pb.add(adn.linked(FID_PB_ADN, name="EF ADN", sfi=1, read=PIN1, update=PIN1))
    gsm = mf.add(DF(FID_GSM, name="DF GSM", pins=(PIN1,)))
    ef_imsi = gsm.add(TransparentEF(FID_IMSI, data=encode_imsi(imsi), name="EF IMSI",
                                    read=PIN1, update=NEV))
    adf = mf.add(DF(FID_ADF_USIM, name="ADF USIM", aid=USIM_AID, pins=(PIN1, PIN2)))
    adf.add(ef_imsi.linked(FID_IMSI, name="EF IMSI", sfi=0x07, read=PIN1, update=NEV))
    return mf


class UsimCard(CardOS):
    """The virtual USIM (see the module documentation).

    Options: ``records`` (ADN records, default 250), ``record_length``
    (default 30), ``contacts`` ((record, name, number) or (name, number)
    entries), ``iccid``, ``imsi``, ``pin1`` / ``puk1`` / ``pin2`` / ``puk2``,
    ``pin1_enabled`` (False), ``protocols`` ((0,) default; (0, 1) adds T=1),
    ``ta1``, ``image`` / ``image_key`` for persistence.
    """

    def __init__(self, image=None, image_key="usim", records=DEFAULT_RECORDS,
                 record_length=DEFAULT_RECORD_LENGTH, contacts=DEFAULT_CONTACTS,
                 iccid=DEFAULT_ICCID, imsi=DEFAULT_IMSI, pin1=DEFAULT_PIN1, puk1=DEFAULT_PUK1,
                 pin2=DEFAULT_PIN2, puk2=DEFAULT_PUK2, pin1_enabled=False, pin_retries=3,
                 puk_retries=10, protocols=(0,), ta1=0x96, ifsc=254, max_channels=4,
                 historical=None):
        mf = build_usim_tree(records, record_length, contacts, iccid, imsi)
        pins = [
            PIN(PIN1, pin1, retries=pin_retries, puk=puk1, puk_retries=puk_retries,
                enabled=pin1_enabled),
            PIN(PIN2, pin2, retries=pin_retries, puk=puk2, puk_retries=puk_retries),
        ]
        if historical is None:
            historical = historical_bytes(max_channels=max_channels)
        # TS 102 221 §6.3.1: class indicator in the first TA after T=15 (A, B, C supported)
        atr = build_card_atr(protocols=protocols, ta1=ta1, ifsc=ifsc, classes="ABC",
                             historical=historical)
        CardOS.__init__(self, mf, atr, pins=pins, image=image, image_key=image_key,
                        max_channels=max_channels, extended=False, gsm=True)
        self.iccid = iccid

    # conveniences for tests and tools
    def adn(self):
        return self.find((0x3F00, FID_TELECOM, FID_ADN))

    def contacts(self):
        """[(record number, name, number)] of the non-empty ADN records."""
        out = []
        for i, rec in enumerate(self.adn().records):
            entry = decode_adn(rec)
            if entry is not None:
                out.append((i + 1, entry[0], entry[1]))
        return out


CARD_CLASS = UsimCard


def make(image=None, **options):
    return UsimCard(image=image, **options)
