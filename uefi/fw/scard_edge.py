"""EFI_SMART_CARD_EDGE_PROTOCOL (UEFI 2.10 §35.6.2) as a Python API, for PIV
cards (NIST SP 800-73-4), over EFI_SMART_CARD_READER_PROTOCOL instances
(uefi/fw/scard_reader.py) as a firmware Edge driver sits on Reader protocols.

    from ccidkit.uefi.fw import scard_edge as E
    edge = E.EFI_SMART_CARD_EDGE_PROTOCOL()           # every reader slot the firmware has
    status, handle = edge.Connect()
    status, ok, left = edge.VerifyPin(handle, 6, b"123456")
    size = 0
    status, size = edge.GetCredential(handle, 0, None)          # size query
    creds = bytearray(size)
    status, size = edge.GetCredential(handle, size, creds)
    sig = bytearray(256)
    status = edge.SignData(handle, 1, E.SC_EDGE_RSA_SIGNATURE, E.EFI_HASH_ALGORITHM_SHA256_GUID,
                           E.EFI_PADDING_RSASSA_PKCS1V1P5_GUID, digest, sig)

Calling convention: scard_reader.py's (the specification's names and
parameter order without ``This``; EFI_STATUS first, then OUT values; caller
``bytearray`` buffers with lengths, ``None`` for NULL, nothing written on
failure and never past a length). GUIDs are registry-format strings.
Fixed-size OUT arrays (Csn, ScardAid, SignatureData, DHAgreement) are
bytearrays at least as long as the value: shorter ones are
EFI_INVALID_PARAMETER (C cannot tell, Python can).

The card side, SP 800-73-4:
  CSN        the GUID of the CHUID (5FC102, tag 34): 16 bytes, SCARD_CSN_SIZE
  AID        A0 00 00 03 08 00 00 10 00 01 00, zero-padded to SCARD_AID_MAXSIZE
  KeyId 1..4 the keys 9A, 9C, 9D, 82 whose certificate the card holds; key type
             from the certificate's key and the slot's role (9A signs, 9C signs
             ECDSA, 9D decrypts, 82 agrees ECDH); key size from the certificate
  VerifyPin  VERIFY 00 20 00 80 with the PIN padded with FF to 8 bytes; the
             secure-PIN form goes through FEATURE_VERIFY_PIN_DIRECT (SCardControl)
  SignData   RSA: the host pads (PKCS #1 v1.5 or PSS) and the card runs the raw
             private-key operation (GENERAL AUTHENTICATE, alg 07/06); ECDSA: the card
             signs the hash, the signature is r || s (two key-size integers)
  DecryptData  RSA raw operation on key 9D, padding removed here (none, PKCS #1
             v1.5, OAEP with MGF1 of the same hash and an empty label)
  BuildDHAgreement  GENERAL AUTHENTICATE with 85 04||Qx||Qy on key 82: the shared X
  GetData    PIV data objects by the DATA_ID_* GUIDs below (ours: the
             specification leaves them to driver and application); the answer
             is the object as GET DATA returns it
A card that was verified keeps that state for the connection only: the last
Disconnect of a card resets its PIN status (VERIFY with P1 FF) before the
reader connection is released.
"""

from ccidkit.uefi.fw import efi
from ccidkit.uefi.fw import scard_reader as R
from ccidkit.uefi.fw.efi_status import (
    EFI_SUCCESS, EFI_INVALID_PARAMETER, EFI_UNSUPPORTED, EFI_BUFFER_TOO_SMALL, EFI_NOT_FOUND,
    EFI_DEVICE_ERROR, EFI_ACCESS_DENIED, EFI_NO_MEDIA, EFI_NOT_READY, EfiError, status_name,
)

# UEFI 2.10 §35.6.2
EFI_SMART_CARD_EDGE_PROTOCOL_GUID = "d317f29b-a325-4712-9bf1-c61954dc198c"
SCARD_AID_MAXSIZE = 0x0010
SCARD_CSN_SIZE = 0x0010
SMART_CARD_EDGE_PROTOCOL_VERSION_1 = 0x00000100

SC_EDGE_TAG_HEADER = 0x0000
SC_EDGE_TAG_CERT = 0x0001
SC_EDGE_TAG_KEY_ID = 0x0002
SC_EDGE_TAG_KEY_TYPE = 0x0003
SC_EDGE_TAG_KEY_SIZE = 0x0004
SC_EDGE_L_SIZE_HEADER = 1
SC_EDGE_L_SIZE_CERT = 2
SC_EDGE_L_SIZE_KEY_ID = 1
SC_EDGE_L_SIZE_KEY_TYPE = 1
SC_EDGE_L_SIZE_KEY_SIZE = 2
SC_EDGE_L_VALUE_HEADER = 1
SC_EDGE_L_VALUE_KEY_ID = 1
SC_EDGE_L_VALUE_KEY_TYPE = 1
SC_EDGE_L_VALUE_KEY_SIZE = 2

SC_EDGE_RSA_EXCHANGE = 0x01
SC_EDGE_RSA_SIGNATURE = 0x02
SC_EDGE_ECDSA_256 = 0x03
SC_EDGE_ECDSA_384 = 0x04
SC_EDGE_ECDSA_521 = 0x05
SC_EDGE_ECDH_256 = 0x06
SC_EDGE_ECDH_384 = 0x07
SC_EDGE_ECDH_521 = 0x08

EFI_PADDING_RSASSA_PKCS1V1P5_GUID = "9317ec24-7cb0-4d0e-8b32-2ed9209cd8af"
EFI_PADDING_RSASSA_PSS_GUID = "7b2349e0-522d-4f8e-b927-69d97c9e795f"
EFI_PADDING_NONE_GUID = "3629ddb1-228c-452e-b616-09ed316a9700"
EFI_PADDING_RSAES_PKCS1V1P5_GUID = "e1c1d0a9-40b1-4632-bdcc-d9d6e5295631"
EFI_PADDING_RSAES_OAEP_GUID = "c1e63ac4-d0cf-4ce6-835b-eed0e6a8a45b"

# UEFI 2.10 §37.2 (EFI_HASH_PROTOCOL) algorithm GUIDs
EFI_HASH_ALGORITHM_SHA1_GUID = "2ae9d80f-3fb2-4095-b7b1-e93157b946b6"
EFI_HASH_ALGORITHM_SHA224_GUID = "8df01a06-9bd5-4bf7-b021-db4fd9ccf45b"
EFI_HASH_ALGORITHM_SHA256_GUID = "51aa59de-fdf2-4ea3-bc63-875fb7842ee9"
EFI_HASH_ALGORITHM_SHA384_GUID = "efa96432-de33-4dd2-aee6-328c33df777a"
EFI_HASH_ALGORITHM_SHA512_GUID = "caa4381e-750c-4770-b870-7a23b4e42130"

# GetData identifiers of this driver (PIV data objects, SP 800-73-4 Part 1 Table 3)
DATA_ID_CHUID = "41094a13-ab92-4c0e-80fc-8bdb3438783d"
DATA_ID_CCC = "35891973-e15d-46f3-8e58-189493de72f2"
DATA_ID_DISCOVERY = "b404def8-a2de-4a44-9f9d-916153c6da99"
DATA_ID_KEY_HISTORY = "808f5f70-f408-4bb0-b3c3-476632866bd2"
DATA_ID_PRINTED_INFORMATION = "1cad37ae-6a52-43ac-a976-701f2f3e3a17"

DATA_OBJECTS = (
    (DATA_ID_CHUID, 0x5FC102), (DATA_ID_CCC, 0x5FC107), (DATA_ID_DISCOVERY, 0x7E),
    (DATA_ID_KEY_HISTORY, 0x5FC10C), (DATA_ID_PRINTED_INFORMATION, 0x5FC109),
)

# name, digest size, DigestInfo prefix (RFC 8017 §9.2 note 1)
HASHES = (
    (EFI_HASH_ALGORITHM_SHA1_GUID, "sha1", 20,
     bytes.fromhex("3021300906052b0e03021a05000414")),
    (EFI_HASH_ALGORITHM_SHA224_GUID, "sha224", 28,
     bytes.fromhex("302d300d06096086480165030402040500041c")),
    (EFI_HASH_ALGORITHM_SHA256_GUID, "sha256", 32,
     bytes.fromhex("3031300d060960864801650304020105000420")),
    (EFI_HASH_ALGORITHM_SHA384_GUID, "sha384", 48,
     bytes.fromhex("3041300d060960864801650304020205000430")),
    (EFI_HASH_ALGORITHM_SHA512_GUID, "sha512", 64,
     bytes.fromhex("3051300d060960864801650304020305000440")),
)

PIV_AID = bytes.fromhex("A000000308000010000100")
PIV_SELECT_AID = bytes.fromhex("A00000030800001000")   # right-truncated (Part 1 §2.2)
SW_OK = 0x9000

# KeyId, key reference, certificate object, role (SP 800-73-4 Part 1 Table 4b)
KEYS = (
    (1, 0x9A, 0x5FC105, "sign"),
    (2, 0x9C, 0x5FC10A, "sign"),
    (3, 0x9D, 0x5FC10B, "decrypt"),
    (4, 0x82, 0x5FC10D, "agree"),
)

# DER object identifiers (content bytes)
OID_RSA = bytes.fromhex("2a864886f70d010101")
OID_EC = bytes.fromhex("2a8648ce3d0201")
CURVES = ((bytes.fromhex("2a8648ce3d030107"), 256), (bytes.fromhex("2b81040022"), 384),
          (bytes.fromhex("2b81040023"), 521))

MAX_RESPONSE_PIECES = 64          # GET RESPONSE rounds for one answer
RAPDU_SIZE = 4096 + 2


class EdgeError(EfiError):
    """A failure inside the Edge driver; ``status`` is the EFI_STATUS it returns."""

    def __init__(self, message, status=EFI_DEVICE_ERROR):
        EfiError.__init__(self, message, status, status_name(status))


# ---------------------------------------------------------------- BER / DER helpers

def tlv_items(data, limit=64):
    """[(tag, value)] of a BER-TLV string (ISO/IEC 7816-4 §5.2); EdgeError when malformed."""
    out = []
    pos = 0
    n = len(data)
    for _ in range(limit):
        if pos >= n:
            return out
        tag = data[pos]
        pos += 1
        if tag & 0x1F == 0x1F:
            for _ in range(3):
                if pos >= n:
                    raise EdgeError("TLV tag cut", EFI_DEVICE_ERROR)
                tag = (tag << 8) | data[pos]
                pos += 1
                if not tag & 0x80:
                    break
        if pos >= n:
            raise EdgeError("TLV length missing", EFI_DEVICE_ERROR)
        ln = data[pos]
        pos += 1
        if ln & 0x80:
            k = ln & 0x7F
            if k == 0 or k > 3 or pos + k > n:
                raise EdgeError("TLV length form", EFI_DEVICE_ERROR)
            ln = 0
            for i in range(k):
                ln = (ln << 8) | data[pos + i]
            pos += k
        if pos + ln > n:
            raise EdgeError("TLV value cut", EFI_DEVICE_ERROR)
        out.append((tag, bytes(data[pos:pos + ln])))
        pos += ln
    raise EdgeError("too many TLV items", EFI_DEVICE_ERROR)


def tlv_find(data, tag):
    for t, v in tlv_items(data):
        if t == tag:
            return v
    return None


def tlv(tag, value):
    """One BER-TLV item (tags up to 3 bytes, definite lengths)."""
    if tag > 0xFFFF:
        head = bytes((tag >> 16, (tag >> 8) & 0xFF, tag & 0xFF))
    elif tag > 0xFF:
        head = bytes((tag >> 8, tag & 0xFF))
    else:
        head = bytes((tag,))
    n = len(value)
    if n < 0x80:
        ln = bytes((n,))
    elif n < 0x100:
        ln = bytes((0x81, n))
    else:
        ln = bytes((0x82, n >> 8, n & 0xFF))
    return head + ln + bytes(value)


def _bits(value):
    """Bit length of a big-endian unsigned integer's bytes."""
    i = 0
    while i < len(value) and value[i] == 0:
        i += 1
    if i == len(value):
        return 0
    top = value[i]
    b = 0
    while top:
        b += 1
        top >>= 1
    return (len(value) - i - 1) * 8 + b


def certificate_key(cert):
    """("rsa", modulus bits) or ("ec", curve bits) from an X.509 certificate (RFC 5280 §4.1)."""
    items = tlv_items(cert)
    if not items or items[0][0] != 0x30:
        raise EdgeError("certificate is not a SEQUENCE", EFI_DEVICE_ERROR)
    tbs = tlv_items(items[0][1])
    if not tbs or tbs[0][0] != 0x30:
        raise EdgeError("no tbsCertificate", EFI_DEVICE_ERROR)
    fields = tlv_items(tbs[0][1])
    i = 1 if fields and fields[0][0] == 0xA0 else 0
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
    if len(fields) < i + 6:
        raise EdgeError("tbsCertificate too short", EFI_DEVICE_ERROR)
    spki = tlv_items(fields[i + 5][1])
    if len(spki) != 2 or spki[0][0] != 0x30 or spki[1][0] != 0x03:
        raise EdgeError("subjectPublicKeyInfo", EFI_DEVICE_ERROR)
    alg = tlv_items(spki[0][1])
    if not alg or alg[0][0] != 0x06:
        raise EdgeError("algorithm identifier", EFI_DEVICE_ERROR)
    if alg[0][1] == OID_RSA:
        key = tlv_items(spki[1][1][1:])
        if not key or key[0][0] != 0x30:
            raise EdgeError("RSAPublicKey", EFI_DEVICE_ERROR)
        ints = tlv_items(key[0][1])
        if not ints or ints[0][0] != 0x02:
            raise EdgeError("RSA modulus", EFI_DEVICE_ERROR)
        return "rsa", _bits(ints[0][1])
    if alg[0][1] == OID_EC and len(alg) > 1:
        for oid, size in CURVES:
            if alg[1][1] == oid:
                return "ec", size
    raise EdgeError("key algorithm not supported", EFI_UNSUPPORTED)


def ecdsa_der_to_raw(der, size):
    """r || s, each ``size`` bytes, from a DER ECDSA-Sig-Value (SEC 1 §C.8)."""
    seq = tlv_items(der)
    if len(seq) != 1 or seq[0][0] != 0x30:
        raise EdgeError("ECDSA signature is not a SEQUENCE", EFI_DEVICE_ERROR)
    ints = tlv_items(seq[0][1])
    if len(ints) != 2 or ints[0][0] != 0x02 or ints[1][0] != 0x02:
        raise EdgeError("ECDSA signature integers", EFI_DEVICE_ERROR)
    out = b""
    for _, v in ints:
        i = 0
        while i < len(v) - 1 and v[i] == 0:
            i += 1
        v = v[i:]
        if len(v) > size:
            raise EdgeError("ECDSA integer too long", EFI_DEVICE_ERROR)
        out += bytes(size - len(v)) + v
    return out


# ---------------------------------------------------------------- RSA paddings

def _digest(fn, data):
    return fn(data).digest()


def _mgf1(fn, seed, length):
    # RFC 8017 §B.2.1
    out = b""
    for counter in range(length // 8 + 2):
        if len(out) >= length:
            break
        out += _digest(fn, seed + bytes(((counter >> 24) & 0xFF, (counter >> 16) & 0xFF,
                                         (counter >> 8) & 0xFF, counter & 0xFF)))
    return out[:length]


def _xor(a, b):
    return bytes([a[i] ^ b[i] for i in range(len(a))])


def emsa_pkcs1_v15(prefix, digest, k):
    # RFC 8017 §9.2
    t = prefix + digest
    if k < len(t) + 11:
        raise EdgeError("key too short for this hash", EFI_INVALID_PARAMETER)
    return b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t


def emsa_pss(fn, hlen, digest, mod_bits, salt):
    # RFC 8017 §9.1.1, salt length = hash length
    em_bits = mod_bits - 1
    em_len = (em_bits + 7) // 8
    if em_len < hlen + len(salt) + 2:
        raise EdgeError("key too short for PSS with this hash", EFI_INVALID_PARAMETER)
    h = _digest(fn, bytes(8) + digest + salt)
    db = bytes(em_len - len(salt) - hlen - 2) + b"\x01" + salt
    masked = bytearray(_xor(db, _mgf1(fn, h, len(db))))
    masked[0] &= 0xFF >> (8 * em_len - em_bits)
    em = bytes(masked) + h + b"\xbc"
    k = (mod_bits + 7) // 8
    return bytes(k - len(em)) + em


def eme_pkcs1_v15_decode(em):
    # RFC 8017 §7.2.2
    if len(em) < 11 or em[0] != 0 or em[1] != 2:
        raise EdgeError("not a PKCS #1 v1.5 block", EFI_DEVICE_ERROR)
    i = em.find(b"\x00", 2) if isinstance(em, bytes) else bytes(em).find(b"\x00", 2)
    if i < 10:
        raise EdgeError("PKCS #1 v1.5 padding", EFI_DEVICE_ERROR)
    return bytes(em[i + 1:])


def eme_oaep_decode(fn, hlen, em):
    # RFC 8017 §7.1.2, empty label
    k = len(em)
    if k < 2 * hlen + 2 or em[0] != 0:
        raise EdgeError("not an OAEP block", EFI_DEVICE_ERROR)
    lhash = _digest(fn, b"")
    masked_seed = em[1:1 + hlen]
    masked_db = em[1 + hlen:]
    seed = _xor(masked_seed, _mgf1(fn, masked_db, hlen))
    db = _xor(masked_db, _mgf1(fn, seed, k - hlen - 1))
    if db[:hlen] != lhash:
        raise EdgeError("OAEP label hash", EFI_DEVICE_ERROR)
    i = hlen
    while i < len(db) and db[i] == 0:
        i += 1
    if i >= len(db) or db[i] != 1:
        raise EdgeError("OAEP separator", EFI_DEVICE_ERROR)
    return db[i + 1:]


# ---------------------------------------------------------------- sessions

class _Card:
    """One connected PIV card: its reader protocol instance and what was read."""

    def __init__(self, sc):
        self.sc = sc
        self.csn = bytes(SCARD_CSN_SIZE)
        self.aid = PIV_AID
        self.pin_max = None
        self.credentials = None     # [(KeyId, ref, type, bits, cert, alg)] once read
        self.handles = []


def _guid(g):
    return g.lower() if isinstance(g, str) else None


def _hash_entry(guid):
    g = _guid(guid)
    for entry in HASHES:
        if entry[0] == g:
            return entry
    return None


def _out_ok(buf, n):
    return isinstance(buf, (bytearray, memoryview)) and len(buf) >= n


class EFI_SMART_CARD_EDGE_PROTOCOL:
    """The Edge protocol over Reader protocol instances (default: every slot the
    firmware has, through scard_reader.locate_readers()). ``random_bytes(n)``
    gives the PSS salt (default: efi.random_bytes, EFI_RNG_PROTOCOL).
    ``hash_functions``: {"sha256": constructor, ...} (hashlib's) for PSS and
    OAEP, which hash inside the padding; without one of them those paddings
    answer EFI_UNSUPPORTED (PKCS #1 v1.5, ECDSA and ECDH hash nothing here)."""

    def __init__(self, readers=None, random_bytes=None, hash_functions=None, log=None):
        if readers is None:
            readers = R.locate_readers()
        self.readers = list(readers)
        self.random_bytes = random_bytes if random_bytes is not None else efi.random_bytes
        self.hash_functions = hash_functions or {}
        self.log = log
        self.cards = {}              # reader index -> _Card
        self.handles = {}            # SCardHandle -> _Card
        self._next = 0x5C00
        self._rapdu = bytearray(RAPDU_SIZE)

    def _note(self, line):
        if self.log is not None:
            self.log(line)

    # ------------------------------------------------------------------ APDUs

    def _transmit(self, card, apdu):
        st, n = card.sc.SCardTransmit(apdu, len(apdu), self._rapdu, len(self._rapdu))
        if st in (EFI_NO_MEDIA, EFI_NOT_READY):
            raise EdgeError("the card left", EFI_NO_MEDIA)
        if st == EFI_ACCESS_DENIED:
            raise EdgeError("reader connection lost", EFI_NO_MEDIA)
        if st != EFI_SUCCESS:
            raise EdgeError("SCardTransmit: %s" % st, EFI_DEVICE_ERROR)
        if n < 2:
            raise EdgeError("answer without status word", EFI_DEVICE_ERROR)
        return bytes(self._rapdu[:n - 2]), (self._rapdu[n - 2] << 8) | self._rapdu[n - 1]

    def _command(self, card, cla, ins, p1, p2, data=b"", le=True):
        """One command (chained when the data needs it: ISO/IEC 7816-4 §5.1.1.1),
        its answer collected with GET RESPONSE (§7.6.1). -> (data, SW1SW2)."""
        data = bytes(data)
        pos = 0
        n = len(data)
        for _ in range(n // 255 + 1):
            chunk = data[pos:pos + 255]
            pos += len(chunk)
            last = pos >= n
            c = cla if last else cla | 0x10
            apdu = bytes((c, ins, p1, p2))
            if chunk:
                apdu += bytes((len(chunk),)) + chunk
            if last and le:
                apdu += b"\x00"
            rsp, sw = self._transmit(card, apdu)
            if not last and sw != SW_OK:
                return rsp, sw
        out = rsp
        for _ in range(MAX_RESPONSE_PIECES):
            if sw >> 8 == 0x61:
                more, sw = self._transmit(card, bytes((0x00, 0xC0, 0x00, 0x00, sw & 0xFF)))
                out += more
            elif sw >> 8 == 0x6C:
                out, sw = self._transmit(card, apdu[:-1] + bytes((sw & 0xFF,)))
            else:
                break
        return out, sw

    def _get_data(self, card, tag):
        t = bytes(((tag >> 16) & 0xFF, (tag >> 8) & 0xFF, tag & 0xFF)) if tag > 0xFFFF \
            else (bytes((tag >> 8, tag & 0xFF)) if tag > 0xFF else bytes((tag,)))
        return self._command(card, 0x00, 0xCB, 0x3F, 0xFF, tlv(0x5C, t))

    # ------------------------------------------------------------------ cards

    def _open(self, index):
        """The _Card of reader ``index`` (connecting and selecting PIV), or None."""
        card = self.cards.get(index)
        if card is not None:
            if self._alive(card):
                return card
            self._drop(index)
        sc = self.readers[index]
        # T=1 when the card and reader have it (as pcsc-lite prefers), else T=0
        st, proto = sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET, R.SCARD_PROTOCOL_T1)
        if st == EFI_UNSUPPORTED:
            st, proto = sc.SCardConnect(R.SCARD_AM_CARD, R.SCARD_CA_NORESET,
                                        R.SCARD_PROTOCOL_T0 | R.SCARD_PROTOCOL_T1)
        if st != EFI_SUCCESS:
            self._note("%s: SCardConnect: %s" % (sc.name, status_name(st)))
            return None
        card = _Card(sc)
        try:
            rsp, sw = self._command(card, 0x00, 0xA4, 0x04, 0x00, PIV_SELECT_AID)
            if sw != SW_OK:
                self._note("%s: not a PIV card (SELECT %04X)" % (sc.name, sw))
                sc.SCardDisconnect(R.SCARD_CA_NORESET)
                return None
            apt = tlv_find(rsp, 0x61)
            pix = tlv_find(apt, 0x4F) if apt is not None else None
            if pix:
                card.aid = PIV_AID[:5] + pix if len(pix) <= 11 else PIV_AID
            chuid, sw = self._get_data(card, 0x5FC102)
            if sw == SW_OK:
                body = tlv_find(chuid, 0x53)
                guid = tlv_find(body, 0x34) if body is not None else None
                if guid is not None and len(guid) == SCARD_CSN_SIZE:
                    card.csn = guid
            self._remaining(card)
        except EdgeError as e:
            self._note("%s: %s" % (sc.name, e))
            sc.SCardDisconnect(R.SCARD_CA_NORESET)
            return None
        self.cards[index] = card
        return card

    def _alive(self, card):
        sc = card.sc
        if not sc.connected or sc.reader.gone:
            return False
        sc._refresh()
        s = sc._slot()
        return s.present and s.powered and s.events == sc.events

    def _drop(self, index):
        card = self.cards.pop(index, None)
        if card is None:
            return
        for h in card.handles:
            self.handles.pop(h, None)
        card.sc.SCardDisconnect(R.SCARD_CA_NORESET)

    def _release(self, index):
        """Leave a card nobody holds: PIN status reset (P1 FF), reader connection released."""
        card = self.cards.get(index)
        if card is None or card.handles:
            return
        if self._alive(card):
            try:
                self._command(card, 0x00, 0x20, 0xFF, 0x80, le=False)
            except EdgeError:
                pass
        del self.cards[index]
        card.sc.SCardDisconnect(R.SCARD_CA_NORESET)

    def _handle(self, SCardHandle):
        card = self.handles.get(SCardHandle) if isinstance(SCardHandle, int) else None
        if card is None:
            raise EdgeError("no connection %r" % (SCardHandle,), EFI_INVALID_PARAMETER)
        if not self._alive(card):
            # "Smart Card or Reader of SCardHandle connection has been removed"
            raise EdgeError("card or reader removed", EFI_NO_MEDIA)
        return card

    def _remaining(self, card):
        """Tries left from VERIFY without data (SP 800-73-4 Part 2 §3.2.1)."""
        rsp, sw = self._command(card, 0x00, 0x20, 0x00, 0x80, le=False)
        if sw & 0xFFF0 == 0x63C0:
            n = sw & 0x0F
        elif sw == 0x6983:
            n = 0
        elif sw == SW_OK:
            # verified: the counter is at its maximum, the largest count seen
            return card.pin_max if card.pin_max is not None else 0
        else:
            raise EdgeError("VERIFY status query: %04X" % sw, EFI_DEVICE_ERROR)
        if card.pin_max is None or n > card.pin_max:
            card.pin_max = n
        return n

    # ------------------------------------------------------------------ GetContext

    def GetContext(self, AidTableSize=None, AidTable=None, CsnTableSize=None, CsnTable=None):
        """-> (Status, NumberAidSupported, AidTableSize, NumberSCPresent, CsnTableSize,
        VersionScEdgeProtocol)"""
        csns = []
        for i in range(len(self.readers)):
            held = i in self.cards
            card = self._open(i)
            if card is None:
                continue
            csns.append(card.csn)
            if not held and not card.handles:
                self._release(i)
        aids = [PIV_AID + bytes(SCARD_AID_MAXSIZE - len(PIV_AID))]
        aid_out = AidTableSize
        csn_out = CsnTableSize
        # a table too small gets its first AidTableSize / CsnTableSize items, no error
        if AidTableSize is not None:
            k = min(AidTableSize, len(aids))
            if AidTable is not None:
                if not _out_ok(AidTable, k * SCARD_AID_MAXSIZE):
                    return EFI_INVALID_PARAMETER, 1, AidTableSize, 0, CsnTableSize, 0
                for j in range(k):
                    AidTable[j * 16:(j + 1) * 16] = aids[j]
            aid_out = k
        if CsnTableSize is not None:
            k = min(CsnTableSize, len(csns))
            if CsnTable is not None:
                if not _out_ok(CsnTable, k * SCARD_CSN_SIZE):
                    return EFI_INVALID_PARAMETER, 1, aid_out, len(csns), CsnTableSize, 0
                for j in range(k):
                    CsnTable[j * 16:(j + 1) * 16] = csns[j]
            csn_out = k
        return EFI_SUCCESS, len(aids), aid_out, len(csns), csn_out, \
            SMART_CARD_EDGE_PROTOCOL_VERSION_1

    # ------------------------------------------------------------------ Connect / Disconnect

    def Connect(self, ScardCsn=None, ScardAid=None):
        """-> (Status, SCardHandle)"""
        if ScardAid is not None and not _out_ok(ScardAid, SCARD_AID_MAXSIZE):
            return EFI_INVALID_PARAMETER, None
        if ScardCsn is not None and len(ScardCsn) != SCARD_CSN_SIZE:
            return EFI_INVALID_PARAMETER, None
        for i in range(len(self.readers)):
            held = i in self.cards
            card = self._open(i)
            if card is None:
                continue
            if ScardCsn is not None and card.csn != bytes(ScardCsn):
                if not held and not card.handles:
                    self._release(i)
                continue
            self._next += 1
            h = self._next
            card.handles.append(h)
            self.handles[h] = card
            if ScardAid is not None:
                ScardAid[0:SCARD_AID_MAXSIZE] = card.aid + bytes(SCARD_AID_MAXSIZE - len(card.aid))
            return EFI_SUCCESS, h
        # "No Smart Card supported by protocol is present, Smart Card with CSN ScardCsn
        # or Reader has been removed"
        return EFI_NO_MEDIA, None

    def Disconnect(self, SCardHandle):
        """-> Status"""
        card = self.handles.get(SCardHandle) if isinstance(SCardHandle, int) else None
        if card is None:
            return EFI_INVALID_PARAMETER          # "No connection for SCardHandle value"
        del self.handles[SCardHandle]
        card.handles.remove(SCardHandle)
        for i in sorted(self.cards):
            if self.cards[i] is card:
                if self._alive(card):
                    self._release(i)
                elif not card.handles:
                    # removed card or reader: EFI_SUCCESS all the same
                    del self.cards[i]
                    card.sc.SCardDisconnect(R.SCARD_CA_NORESET)
        return EFI_SUCCESS

    # ------------------------------------------------------------------ identity

    def GetCsn(self, SCardHandle, Csn):
        """-> Status (Csn: a bytearray of SCARD_CSN_SIZE)"""
        try:
            card = self._handle(SCardHandle)
        except EdgeError as e:
            return e.status
        if not _out_ok(Csn, SCARD_CSN_SIZE):
            return EFI_INVALID_PARAMETER
        Csn[0:SCARD_CSN_SIZE] = card.csn
        return EFI_SUCCESS

    def GetReaderName(self, SCardHandle, ReaderNameLength, ReaderName=None):
        """-> (Status, ReaderNameLength)"""
        try:
            card = self._handle(SCardHandle)
        except EdgeError as e:
            return e.status, ReaderNameLength
        if ReaderNameLength is None:
            return EFI_INVALID_PARAMETER, None
        st, n, _, _, _ = card.sc.SCardStatus(ReaderName, ReaderNameLength, None, None)
        if ReaderName is None and st == EFI_SUCCESS:
            # no buffer: the caller learns the size it needs
            return (EFI_BUFFER_TOO_SMALL if n > ReaderNameLength else EFI_SUCCESS), n
        if st == EFI_DEVICE_ERROR:
            st = EFI_NO_MEDIA
        return st, n

    # ------------------------------------------------------------------ PIN

    def VerifyPin(self, SCardHandle, PinSize, PinCode):
        """-> (Status, PinResult, RemainingAttempts)"""
        try:
            card = self._handle(SCardHandle)
            if not isinstance(PinSize, int):
                return EFI_INVALID_PARAMETER, False, 0
            if PinCode is None:
                return self._secure_pin(card, PinSize)
            # "Negative or null PinSize value rejected if PinCode is not NULL"; PIV PINs
            # are 6 to 8 digits (SP 800-73-4 Part 2 §3.2.1): others are "not supported
            # by Smart Card"
            if PinSize <= 0 or PinSize > len(PinCode) or not 6 <= PinSize <= 8:
                return EFI_INVALID_PARAMETER, False, 0
            pin = bytes(PinCode[:PinSize])
            for c in pin:
                if not 0x30 <= c <= 0x39:
                    return EFI_INVALID_PARAMETER, False, 0
            block = pin + b"\xff" * (8 - len(pin))
            rsp, sw = self._command(card, 0x00, 0x20, 0x00, 0x80, block, le=False)
            return self._pin_result(card, sw)
        except EdgeError as e:
            return e.status, False, 0

    def _pin_result(self, card, sw):
        if sw == SW_OK:
            return EFI_SUCCESS, True, card.pin_max if card.pin_max is not None else 0
        if sw & 0xFFF0 == 0x63C0:
            return EFI_SUCCESS, False, sw & 0x0F
        if sw == 0x6983:
            return EFI_SUCCESS, False, 0
        if sw in (0x6A80, 0x6700):
            return EFI_INVALID_PARAMETER, False, 0
        if sw == 0x6400 or sw == 0x6401:
            return EFI_SUCCESS, False, self._remaining(card)      # PIN pad timeout/cancel
        raise EdgeError("VERIFY: %04X" % sw, EFI_DEVICE_ERROR)

    def _pin_pad(self, card):
        """The FEATURE_VERIFY_PIN_DIRECT control code, or None."""
        out = bytearray(64)
        st, n = card.sc.SCardControl(R.CM_IOCTL_GET_FEATURE_REQUEST, None, 0, out, 64)
        if st != EFI_SUCCESS:
            return None
        pos = 0
        for _ in range(16):
            if pos + 6 > n:
                break
            if out[pos] == 0x06 and out[pos + 1] == 4:
                return (out[pos + 2] << 24) | (out[pos + 3] << 16) | (out[pos + 4] << 8) | \
                    out[pos + 5]
            pos += 2 + out[pos + 1]
        return None

    def _secure_pin(self, card, PinSize):
        code = self._pin_pad(card)
        if code is None:
            # "Pinsize < 0 and Secure PIN Entry functionality not supported"
            return EFI_UNSUPPORTED, False, 0
        if PinSize < 0:
            return EFI_SUCCESS, False, 0          # the query: secure PIN entry is there
        from ccidkit.core import part10
        # PIN_VERIFY_STRUCTURE: ASCII digits in bytes, left in an 8-byte FF block
        structure = part10.build_verify_structure(
            bytes.fromhex("0020008008") + b"\xff" * 8, bmFormatString=0x82,
            bmPINBlockString=0x08, min_pin=6, max_pin=8)
        out = bytearray(8)
        st, n = card.sc.SCardControl(code, structure, len(structure), out, 8)
        if st in (EFI_NO_MEDIA, EFI_NOT_READY):
            return EFI_NO_MEDIA, False, 0
        if st != EFI_SUCCESS or n < 2:
            return (EFI_UNSUPPORTED if st == EFI_UNSUPPORTED else EFI_DEVICE_ERROR), False, 0
        return self._pin_result(card, (out[n - 2] << 8) | out[n - 1])

    def GetPinRemaining(self, SCardHandle):
        """-> (Status, RemainingAttempts)"""
        try:
            card = self._handle(SCardHandle)
            return EFI_SUCCESS, self._remaining(card)
        except EdgeError as e:
            return e.status, 0

    # ------------------------------------------------------------------ data

    def GetData(self, SCardHandle, DataId, DataSize, Data=None):
        """-> (Status, DataSize)"""
        try:
            card = self._handle(SCardHandle)
        except EdgeError as e:
            return e.status, DataSize
        if DataId is None or DataSize is None or not isinstance(DataSize, int) or \
                (Data is None and DataSize != 0) or \
                (Data is not None and not _out_ok(Data, DataSize)):
            return EFI_INVALID_PARAMETER, DataSize
        tag = None
        g = _guid(DataId)
        for guid, t in DATA_OBJECTS:
            if guid == g:
                tag = t
        if tag is None:
            return EFI_NOT_FOUND, DataSize            # "DataId unknown for this driver"
        try:
            value, sw = self._get_data(card, tag)
        except EdgeError as e:
            return e.status, DataSize
        if sw == 0x6A82:
            return EFI_NOT_FOUND, DataSize
        if sw == 0x6982:
            return EFI_ACCESS_DENIED, DataSize        # "PIN not verified"
        if sw != SW_OK:
            return EFI_DEVICE_ERROR, DataSize
        if len(value) > DataSize:
            return EFI_BUFFER_TOO_SMALL, len(value)
        if value:
            Data[0:len(value)] = value
        return EFI_SUCCESS, len(value)

    def _credentials(self, card):
        if card.credentials is not None:
            return card.credentials
        out = []
        for key_id, ref, tag, role in KEYS:
            obj, sw = self._get_data(card, tag)
            if sw != SW_OK:
                continue
            body = tlv_find(obj, 0x53)
            cert = tlv_find(body, 0x70) if body is not None else None
            info = tlv_find(body, 0x71) if body is not None else None
            if cert is None or (info is not None and info != b"\x00"):
                continue                # absent, or compressed (CertInfo bit 0)
            try:
                kind, bits = certificate_key(cert)
            except EdgeError:
                continue
            if kind == "rsa":
                ktype = SC_EDGE_RSA_EXCHANGE if role == "decrypt" else SC_EDGE_RSA_SIGNATURE
                alg = 0x07 if bits == 2048 else (0x06 if bits == 1024 else 0x05)
                if role == "agree":
                    continue
            else:
                i = (256, 384, 521).index(bits)
                if role == "agree":
                    ktype = (SC_EDGE_ECDH_256, SC_EDGE_ECDH_384, SC_EDGE_ECDH_521)[i]
                elif role == "sign":
                    ktype = (SC_EDGE_ECDSA_256, SC_EDGE_ECDSA_384, SC_EDGE_ECDSA_521)[i]
                else:
                    continue
                alg = (0x11, 0x14, None)[i]     # SP 800-78-4 Table 6-2
                if alg is None:
                    continue
            out.append((key_id, ref, ktype, bits, cert, alg))
        card.credentials = out
        return out

    def GetCredential(self, SCardHandle, CredentialSize, CredentialList=None):
        """-> (Status, CredentialSize)"""
        try:
            card = self._handle(SCardHandle)
        except EdgeError as e:
            return e.status, CredentialSize
        if CredentialSize is None or not isinstance(CredentialSize, int) or \
                (CredentialList is None and CredentialSize != 0) or \
                (CredentialList is not None and not _out_ok(CredentialList, CredentialSize)):
            return EFI_INVALID_PARAMETER, CredentialSize
        try:
            creds = self._credentials(card)
        except EdgeError as e:
            return e.status, CredentialSize
        # §35.6.2 GetCredential: header (00, 01, count), then per container
        # (01, 2-byte length, certificate) (02, 01, key index) (03, 01, key type)
        # (04, 00 02, key size in bits, big endian)
        out = bytearray((SC_EDGE_TAG_HEADER, SC_EDGE_L_VALUE_HEADER, len(creds)))
        for key_id, ref, ktype, bits, cert, alg in creds:
            out += bytes((SC_EDGE_TAG_CERT, len(cert) >> 8, len(cert) & 0xFF)) + cert
            out += bytes((SC_EDGE_TAG_KEY_ID, SC_EDGE_L_VALUE_KEY_ID, key_id))
            out += bytes((SC_EDGE_TAG_KEY_TYPE, SC_EDGE_L_VALUE_KEY_TYPE, ktype))
            out += bytes((SC_EDGE_TAG_KEY_SIZE, 0, SC_EDGE_L_VALUE_KEY_SIZE, bits >> 8,
                          bits & 0xFF))
        if len(out) > CredentialSize:
            return EFI_BUFFER_TOO_SMALL, len(out)
        CredentialList[0:len(out)] = out
        return EFI_SUCCESS, len(out)

    # ------------------------------------------------------------------ private-key operations

    def _key(self, card, KeyId):
        if not isinstance(KeyId, int):
            return None
        for c in self._credentials(card):
            if c[0] == KeyId:
                return c
        return None

    def _general_authenticate(self, card, alg, ref, tag, data):
        """GENERAL AUTHENTICATE (SP 800-73-4 Part 2 §3.2.4): 7C{82 00, tag data} -> 82."""
        rsp, sw = self._command(card, 0x00, 0x87, alg, ref,
                                tlv(0x7C, b"\x82\x00" + tlv(tag, data)))
        if sw == 0x6982:
            raise EdgeError("PIN not verified", EFI_ACCESS_DENIED)
        if sw in (0x6A80, 0x6A86):
            raise EdgeError("card refused the input: %04X" % sw, EFI_INVALID_PARAMETER)
        if sw != SW_OK:
            raise EdgeError("GENERAL AUTHENTICATE: %04X" % sw, EFI_DEVICE_ERROR)
        dyn = tlv_find(rsp, 0x7C)
        out = tlv_find(dyn, 0x82) if dyn is not None else None
        if out is None:
            raise EdgeError("no response in the dynamic template", EFI_DEVICE_ERROR)
        return out

    def SignData(self, SCardHandle, KeyId, KeyType, HashAlgorithm, PaddingMethod, HashedData,
                 SignatureData):
        """-> Status (SignatureData: a bytearray of the signature's size: the RSA
        modulus size, or 2 x the curve size for ECDSA as r || s)"""
        try:
            card = self._handle(SCardHandle)
            key = self._key(card, KeyId)
            if key is None:
                return EFI_INVALID_PARAMETER          # "KeyId is not valid"
            key_id, ref, ktype, bits, cert, alg = key
            # "KeyType is not valid or not corresponding to KeyId"
            if KeyType != ktype or ktype in (SC_EDGE_RSA_EXCHANGE, SC_EDGE_ECDH_256,
                                             SC_EDGE_ECDH_384, SC_EDGE_ECDH_521):
                return EFI_INVALID_PARAMETER
            h = _hash_entry(HashAlgorithm)            # NULL or not valid
            if h is None:
                return EFI_INVALID_PARAMETER
            pad = _guid(PaddingMethod)
            if pad not in (EFI_PADDING_RSASSA_PKCS1V1P5_GUID, EFI_PADDING_RSASSA_PSS_GUID):
                return EFI_INVALID_PARAMETER
            if HashedData is None or len(HashedData) != h[2]:
                return EFI_INVALID_PARAMETER
            k = (bits + 7) // 8
            size = k if ktype == SC_EDGE_RSA_SIGNATURE else 2 * k
            if SignatureData is None or not _out_ok(SignatureData, size):
                return EFI_INVALID_PARAMETER
            digest = bytes(HashedData)
            if ktype == SC_EDGE_RSA_SIGNATURE:
                if pad == EFI_PADDING_RSASSA_PKCS1V1P5_GUID:
                    em = emsa_pkcs1_v15(h[3], digest, k)
                else:
                    fn = self.hash_functions.get(h[1])
                    if fn is None:
                        return EFI_UNSUPPORTED        # no such hash function here for MGF1
                    em = emsa_pss(fn, h[2], digest, bits, self.random_bytes(h[2]))
                sig = self._general_authenticate(card, alg, ref, 0x81, em)
                if len(sig) != k:
                    raise EdgeError("RSA result of %d bytes" % len(sig), EFI_DEVICE_ERROR)
            else:
                sig = ecdsa_der_to_raw(self._general_authenticate(card, alg, ref, 0x81, digest),
                                       k)
            SignatureData[0:len(sig)] = sig
            return EFI_SUCCESS
        except EdgeError as e:
            return e.status

    def DecryptData(self, SCardHandle, KeyId, HashAlgorithm, PaddingMethod, EncryptedSize,
                    EncryptedData, PlaintextSize, PlaintextData):
        """-> (Status, PlaintextSize)"""
        try:
            card = self._handle(SCardHandle)
            key = self._key(card, KeyId)
            # "KeyId is not valid or associated key not of type SC_EDGE_RSA_EXCHANGE"
            if key is None or key[2] != SC_EDGE_RSA_EXCHANGE:
                return EFI_INVALID_PARAMETER, PlaintextSize
            key_id, ref, ktype, bits, cert, alg = key
            h = _hash_entry(HashAlgorithm)
            pad = _guid(PaddingMethod)
            if h is None or pad not in (EFI_PADDING_NONE_GUID, EFI_PADDING_RSAES_PKCS1V1P5_GUID,
                                        EFI_PADDING_RSAES_OAEP_GUID):
                return EFI_INVALID_PARAMETER, PlaintextSize
            k = (bits + 7) // 8
            if not isinstance(EncryptedSize, int) or EncryptedSize == 0 or \
                    EncryptedData is None or EncryptedSize > len(EncryptedData) or \
                    EncryptedSize != k:
                return EFI_INVALID_PARAMETER, PlaintextSize
            if PlaintextSize is None or PlaintextData is None or \
                    not isinstance(PlaintextSize, int) or not _out_ok(PlaintextData,
                                                                      PlaintextSize):
                return EFI_INVALID_PARAMETER, PlaintextSize
            fn = None
            if pad == EFI_PADDING_RSAES_OAEP_GUID:
                fn = self.hash_functions.get(h[1])
                if fn is None:
                    return EFI_UNSUPPORTED, PlaintextSize
            em = self._general_authenticate(card, alg, ref, 0x81,
                                            bytes(EncryptedData[:EncryptedSize]))
            if len(em) != k:
                raise EdgeError("RSA result of %d bytes" % len(em), EFI_DEVICE_ERROR)
            if pad == EFI_PADDING_NONE_GUID:
                plain = em
            elif pad == EFI_PADDING_RSAES_PKCS1V1P5_GUID:
                plain = eme_pkcs1_v15_decode(em)
            else:
                plain = eme_oaep_decode(fn, h[2], em)
            if len(plain) > PlaintextSize:
                return EFI_BUFFER_TOO_SMALL, len(plain)
            PlaintextData[0:len(plain)] = plain
            return EFI_SUCCESS, len(plain)
        except EdgeError as e:
            return e.status, PlaintextSize

    def BuildDHAgreement(self, SCardHandle, KeyId, dataQx, dataQy, DHAgreement):
        """-> Status (DHAgreement: a bytearray of at least the key size)"""
        try:
            card = self._handle(SCardHandle)
            key = self._key(card, KeyId)
            if key is None or key[2] not in (SC_EDGE_ECDH_256, SC_EDGE_ECDH_384,
                                             SC_EDGE_ECDH_521):
                return EFI_INVALID_PARAMETER          # "KeyId is not valid"
            key_id, ref, ktype, bits, cert, alg = key
            k = (bits + 7) // 8
            if dataQx is None or dataQy is None or len(dataQx) != k or len(dataQy) != k:
                return EFI_INVALID_PARAMETER
            if DHAgreement is None or not _out_ok(DHAgreement, k):
                return EFI_INVALID_PARAMETER
            z = self._general_authenticate(card, alg, ref, 0x85,
                                           b"\x04" + bytes(dataQx) + bytes(dataQy))
            DHAgreement[0:len(z)] = z
            return EFI_SUCCESS
        except EdgeError as e:
            return e.status


def parse_credentials(data):
    """[(KeyId, KeyType, key bits, certificate)] of a GetCredential list (for apps and tests)."""
    if len(data) < 3 or data[0] != SC_EDGE_TAG_HEADER or data[1] != 1:
        raise EdgeError("no credential header", EFI_INVALID_PARAMETER)
    count = data[2]
    pos = 3
    out = []
    for _ in range(count):
        if pos + 3 > len(data) or data[pos] != SC_EDGE_TAG_CERT:
            raise EdgeError("certificate item", EFI_INVALID_PARAMETER)
        n = (data[pos + 1] << 8) | data[pos + 2]
        cert = bytes(data[pos + 3:pos + 3 + n])
        pos += 3 + n
        tail = data[pos:pos + 11]
        if len(tail) != 11 or tail[0] != 2 or tail[1] != 1 or tail[3] != 3 or tail[4] != 1 \
                or tail[6] != 4 or tail[7] != 0 or tail[8] != 2 or len(cert) != n:
            raise EdgeError("key items", EFI_INVALID_PARAMETER)
        out.append((tail[2], tail[5], (tail[9] << 8) | tail[10], cert))
        pos += 11
    return out
