"""The authentication card: a PIV card (NIST SP 800-73-4) for pre-boot login.

Why PIV and not OpenPGP: docs/cards.md. The card holds one PIV application
(AID A0 00 00 03 08 00 00 10 00 01 00), selectable by its 5-byte RID prefix,
and answers SELECT with the application property template.

Keys (SP 800-73-4 Part 1 §3.1, key references of Part 1 Table 4b):
  9A  PIV Authentication      RSA-2048   sign a login challenge (and decrypt)
  9C  Digital Signature       ECC P-256  ECDSA
  9D  Key Management          RSA-2048   decrypt (raw RSA, the host removes padding)
  82  Retired Key Management 1 ECC P-256 key agreement (ECDH)
Every private key needs the PIV Card Application PIN (key reference 80)
verified in the current session; 9C ("PIN Always") a VERIFY with the PIN
before each use. The PIN Unblocking Key (81) resets the PIN's retry
counter. Default PIN 123456, PUK 12345678, 3 tries each.

Data objects for GET DATA (Part 1 Table 3; BER-TLV tag in a 5C list):
CCC 5FC107, CHUID 5FC102, X.509 certificates for 9A 5FC105, 9C 5FC10A,
9D 5FC10B, 82 5FC10D, Discovery 7E, Key History 5FC10C.

Commands (Part 2 §3): SELECT, GET DATA, VERIFY (incl. the status query with
no data and P1=FF to reset), CHANGE REFERENCE DATA (80 and 81), RESET RETRY
COUNTER, GENERAL AUTHENTICATE (RSA private-key operation, ECDSA over a
hash, ECDH), GET RESPONSE (ISO/IEC 7816-4 §7.6.1), command chaining (CLA
b5, §5.1.1.1). PUT DATA and GENERATE ASYMMETRIC KEY PAIR need the card
management key, which this card never accepts (6982). Every error is a
status word; ``process_apdu`` never raises.

Persistence: keys, certificates and the PIN/PUK objects (value and retry
counters) live in section "auth" of a ``CardImage``; a retry counter is
written before the comparison's result is answered. Nothing here logs or
traces a PIN, a PUK or key material.
"""

import hmac
import os

from cryptography import x509
from cryptography.exceptions import InvalidKey, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from ..cardos import CardOS, CardOSError, CardStatus, DF, PIN, build_card_atr
from ..cardos.fs import FID_MF
from . import auth_keys

# SP 800-73-4 Part 1 §2.2: the PIV Card Application AID (NIST RID + PIX with version 01 00)
PIV_RID = bytes.fromhex("A000000308")
PIV_AID = bytes.fromhex("A000000308000010000100")

INS_SELECT = 0xA4
INS_GET_DATA = 0xCB
INS_VERIFY = 0x20
INS_CHANGE_REFERENCE_DATA = 0x24
INS_RESET_RETRY_COUNTER = 0x2C
INS_GENERAL_AUTHENTICATE = 0x87
INS_GET_RESPONSE = 0xC0
INS_PUT_DATA = 0xDB
INS_GENERATE_KEY = 0x47

# Part 1 Table 4b / Part 2 §3.2.1: key references
REF_PIN = 0x80
REF_PUK = 0x81
REF_GLOBAL_PIN = 0x00

# SP 800-78-4 Table 6-2: cryptographic algorithm identifiers
ALG_RSA_2048 = 0x07
ALG_ECC_P256 = 0x11

# key reference -> (role, algorithm, certificate object tag, key-usage bits, label)
SLOTS = (
    (0x9A, "piv-auth", ALG_RSA_2048, 0x5FC105, ("digital_signature",), "PIV Authentication"),
    (0x9C, "signature", ALG_ECC_P256, 0x5FC10A, ("digital_signature", "content_commitment"),
     "Digital Signature"),
    (0x9D, "key-management", ALG_RSA_2048, 0x5FC10B, ("key_encipherment", "data_encipherment"),
     "Key Management"),
    (0x82, "key-agreement", ALG_ECC_P256, 0x5FC10D, ("key_agreement",), "Key Agreement"),
)

# the Digital Signature key has the "PIN Always" access rule (Part 1 §3.1.2)
PIN_ALWAYS = (0x9C,)

TAG_CCC = 0x5FC107
TAG_CHUID = 0x5FC102
TAG_DISCOVERY = 0x7E
TAG_KEY_HISTORY = 0x5FC10C

# A FASC-N for a card that is not government issued (agency code 9999, SP 800-73-4
# Part 1 §3.3.1 and TIG SCEPACS), BCD with parity as the CHUID carries it.
FASC_N_9999 = bytes.fromhex("D4E739DA739CED39CE739D836858210842108421C84210C3EB")

DEFAULT_PIN = "123456"
DEFAULT_PUK = "12345678"
DEFAULT_PIN_RETRIES = 3
DEFAULT_PUK_RETRIES = 3
PIN_LENGTH = 8            # Part 2 §3.2.1: 6-8 ASCII digits, padded with FF to 8 bytes
PIN_MIN = 6

# Commands whose data or answer is secret (PINs, PUK, decrypted or agreed keys): whoever
# traces APDUs should print only their header and status word.
SENSITIVE_INS = frozenset((INS_VERIFY, INS_CHANGE_REFERENCE_DATA, INS_RESET_RETRY_COUNTER,
                           INS_GENERAL_AUTHENTICATE))

# Our bound on the data gathered over a command chain.
MAX_CHAIN = 4096
SECTION = "auth"

# Historical bytes: category 80, compact-TLV "card issuer's data" (tag 5) "ccidauth".
HISTORICAL = b"\x80\x58ccidauth"

FID_PIV_ADF = 0x7F50        # our choice: the FID of the PIV ADF under the MF


def tlv(tag, value):
    """BER-TLV with a tag of 1-3 bytes and a definite length (ISO/IEC 7816-4 §5.2)."""
    value = bytes(value)
    if tag > 0xFFFF:
        t = bytes((tag >> 16, (tag >> 8) & 0xFF, tag & 0xFF))
    elif tag > 0xFF:
        t = bytes((tag >> 8, tag & 0xFF))
    else:
        t = bytes((tag,))
    n = len(value)
    if n < 0x80:
        ln = bytes((n,))
    elif n < 0x100:
        ln = bytes((0x81, n))
    else:
        ln = bytes((0x82, n >> 8, n & 0xFF))
    return t + ln + value


def parse_tlvs(data, max_items=16):
    """[(tag, value)] of a BER-TLV sequence; CardStatus 6A80 when it is malformed."""
    out = []
    i = 0
    n = len(data)
    while i < n:
        if len(out) >= max_items:
            raise CardStatus(0x6A80)
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:                       # multi-byte tag (§5.2.2.1)
            for _ in range(2):
                if i >= n:
                    raise CardStatus(0x6A80)
                tag = (tag << 8) | data[i]
                i += 1
                if not data[i - 1] & 0x80:
                    break
            else:
                raise CardStatus(0x6A80)
        if i >= n:
            raise CardStatus(0x6A80)
        ln = data[i]
        i += 1
        if ln & 0x80:
            k = ln & 0x7F
            if k == 0 or k > 2 or i + k > n:
                raise CardStatus(0x6A80)
            ln = int.from_bytes(bytes(data[i:i + k]), "big")
            i += k
        if i + ln > n:
            raise CardStatus(0x6A80)
        out.append((tag, bytes(data[i:i + ln])))
        i += ln
    return out


class PivApplet:
    """The PIV Card Application as a CardOS applet (``os.add_application``).

    It sees every command while its ADF is current on a channel; GET RESPONSE
    and the answers longer than Ne are the OS's (``os.reply``). The PIN's
    security status is the channel's (``channel.verified``), so a reset or a
    power cycle clears it.
    """

    def __init__(self, card):
        self.card = card

    def select(self, cos, ch):
        return self.card.application_property_template()

    def process(self, cos, ch, cmd):
        if cmd.ins == INS_GET_RESPONSE:
            return None
        state = ch.applet_state
        chain = state.get("piv_chain")
        data = cmd.data
        if chain is not None:
            ins, p1, p2, buf = chain
            if (ins, p1, p2) != (cmd.ins, cmd.p1, cmd.p2):
                state["piv_chain"] = None
                raise CardStatus(0x6883)             # ISO/IEC 7816-4 §5.6: last of chain expected
            if len(buf) + len(data) > MAX_CHAIN:
                state["piv_chain"] = None
                raise CardStatus(0x6700)
            buf += data
            data = bytes(buf)
        if cmd.cla & 0x10:
            # ISO/IEC 7816-4 §5.1.1.1: command chaining, for the commands that carry data
            if cmd.ins not in (INS_GENERAL_AUTHENTICATE, INS_VERIFY, INS_CHANGE_REFERENCE_DATA,
                               INS_RESET_RETRY_COUNTER, INS_GET_DATA):
                state["piv_chain"] = None
                raise CardStatus(0x6884)
            if chain is None:
                state["piv_chain"] = (cmd.ins, cmd.p1, cmd.p2, bytearray(data))
            return b"\x90\x00"
        state["piv_chain"] = None
        card = self.card
        ins = cmd.ins
        if ins == INS_SELECT:
            return None                               # the OS selects (and asks select())
        if ins == INS_GET_DATA:
            return cos.reply(ch, cmd, card.get_data(cmd, data))
        if ins == INS_VERIFY:
            card.verify(ch, cmd, data)
        elif ins == INS_CHANGE_REFERENCE_DATA:
            card.change_reference_data(ch, cmd, data)
        elif ins == INS_RESET_RETRY_COUNTER:
            card.reset_retry_counter(ch, cmd, data)
        elif ins == INS_GENERAL_AUTHENTICATE:
            return cos.reply(ch, cmd, card.general_authenticate(ch, cmd, data))
        elif ins in (INS_PUT_DATA, INS_GENERATE_KEY):
            raise CardStatus(0x6982)                  # needs the card management key
        else:
            raise CardStatus(0x6D00)
        return b"\x90\x00"


class AuthCard(CardOS):
    """A PIV authentication card (see the module docstring) on the card OS.

    ``image``: path of the card image (None keeps everything in memory).
    ``seed``: derive keys deterministically (tests); otherwise random keys.
    A new image is personalised with ``pin``/``puk`` and the retry limits;
    an existing image keeps its own keys, PIN values and counters.
    """

    def __init__(self, image=None, seed=None, pin=DEFAULT_PIN, puk=DEFAULT_PUK,
                 pin_retries=DEFAULT_PIN_RETRIES, puk_retries=DEFAULT_PUK_RETRIES,
                 rsa_bits=2048, atr=None):
        for value, digits in ((pin, True), (puk, False)):
            value = value.encode("ascii") if isinstance(value, str) else bytes(value)
            if not PIN_MIN <= len(value) <= PIN_LENGTH:
                raise CardOSError("PIV PIN and PUK have 6..8 characters", name="BAD_PIN")
            if digits and not value.isdigit():
                raise CardOSError("the PIV PIN is made of digits", name="BAD_PIN")
        self.pin_object = PIN(REF_PIN, pin, retries=pin_retries, puk=puk, puk_retries=puk_retries,
                              length=PIN_LENGTH, min_length=PIN_MIN)
        if atr is None:
            atr = build_card_atr(protocols=(0, 1), historical=HISTORICAL)
        mf = DF(FID_MF)
        CardOS.__init__(self, mf, atr, pins=(self.pin_object,), image=image, image_key=SECTION,
                        extended=True, proprietary_class=False)
        self.add_application(PIV_AID, PivApplet(self), fid=FID_PIV_ADF, pins=(REF_PIN,))
        st = self.nv.get("piv")
        if st is None:
            self._personalise(seed, rsa_bits)
            self.save()
        else:
            self._load(st)

    # --- personalisation and persistence ------------------------------------------------

    def _personalise(self, seed, rsa_bits):
        self.keys = {}
        self.certs = {}
        for ref, _role, alg, _tag, usage, label in SLOTS:
            if alg == ALG_RSA_2048:
                key = auth_keys.rsa_key(rsa_bits, seed, "key-%02X" % ref)
            else:
                key = auth_keys.ec_key(seed, "key-%02X" % ref)
            self.keys[ref] = key
            self.certs[ref] = auth_keys.self_signed(key, "ccidkit %s" % label, usage, 0x1000 + ref)
        self.guid = os.urandom(16) if seed is None else auth_keys.Drbg(seed, "guid").read(16)
        st = {"keys": {}, "certs": {}, "guid": self.guid.hex()}
        for ref in self.keys:
            name = "%02X" % ref
            st["keys"][name] = auth_keys.key_to_der(self.keys[ref]).hex()
            st["certs"][name] = self.certs[ref].hex()
        self.nv["piv"] = st

    def _load(self, st):
        try:
            keys = {}
            certs = {}
            for ref, _role, _alg, _tag, _usage, _label in SLOTS:
                name = "%02X" % ref
                keys[ref] = auth_keys.key_from_der(bytes.fromhex(st["keys"][name]))
                certs[ref] = bytes.fromhex(st["certs"][name])
            guid = bytes.fromhex(st["guid"])
        except (KeyError, TypeError, ValueError, UnsupportedAlgorithm) as e:
            raise CardOSError("the PIV keys in card image %s: %s" % (self.image.path, e),
                              name="IMAGE_CORRUPT")
        self.keys = keys
        self.certs = certs
        self.guid = guid

    # --- public views (no private material) ----------------------------------------------

    def public_key(self, ref):
        return self.keys[ref].public_key()

    def certificate(self, ref):
        return x509.load_der_x509_certificate(self.certs[ref])

    @property
    def pin_remaining(self):
        return self.pin_object.remaining

    @property
    def puk_remaining(self):
        return self.pin_object.puk_remaining

    def __repr__(self):
        return "<AuthCard PIV %s>" % ("in memory" if self.image is None else self.image.path)

    # --- SELECT (Part 2 §3.1.1) ------------------------------------------------------------

    def application_property_template(self):
        # Part 2 Table 3: AID (PIX), coexistent tag allocation authority, label, algorithms
        body = (tlv(0x4F, PIV_AID[5:]) +
                tlv(0x79, tlv(0x4F, PIV_RID)) +
                tlv(0x50, b"ccidkit PIV") +
                tlv(0xAC, tlv(0x80, bytes((ALG_RSA_2048,))) + tlv(0x80, bytes((ALG_ECC_P256,))) +
                    tlv(0x06, b"")))
        return tlv(0x61, body)

    # --- GET DATA (Part 2 §3.1.2) ----------------------------------------------------------

    def data_object(self, tag):
        """The content of a PIV data object (its 53 template), or None."""
        for ref, _role, _alg, ctag, _usage, _label in SLOTS:
            if ctag == tag:
                # Part 1 Table 10: certificate, CertInfo (uncompressed), error detection code
                return tlv(0x53, tlv(0x70, self.certs[ref]) + tlv(0x71, b"\x00") + tlv(0xFE, b""))
        if tag == TAG_CHUID:
            # Part 1 Table 9: FASC-N, GUID, expiration date, issuer signature, EDC
            return tlv(0x53, tlv(0x30, FASC_N_9999) + tlv(0x34, self.guid) +
                       tlv(0x35, b"20441231") + tlv(0x3E, b"") + tlv(0xFE, b""))
        if tag == TAG_CCC:
            # Part 1 Table 8: card identifier, container versions, data model, ...
            return tlv(0x53, tlv(0xF0, b"\xA0\x00\x00\x01\x16\xFF\x02" + self.guid[:14]) +
                       tlv(0xF1, b"\x21") + tlv(0xF2, b"\x21") + tlv(0xF3, b"") +
                       tlv(0xF4, b"\x00") + tlv(0xF5, b"\x10") + tlv(0xF6, b"") +
                       tlv(0xF7, b"") + tlv(0xFA, b"") + tlv(0xFB, b"") + tlv(0xFC, b"") +
                       tlv(0xFD, b"") + tlv(0xFE, b""))
        if tag == TAG_DISCOVERY:
            # Part 1 §3.3.2: PIV AID, PIN usage policy 40 00 (PIV Card Application PIN only)
            return tlv(0x7E, tlv(0x4F, PIV_AID) + tlv(0x5F2F, b"\x40\x00"))
        if tag == TAG_KEY_HISTORY:
            # Part 1 Table 19: keys with on-card certificates (the retired key 82), off-card 0
            return tlv(0x53, tlv(0xC1, b"\x01") + tlv(0xC2, b"\x00") + tlv(0xFE, b""))
        return None

    def get_data(self, cmd, data):
        if cmd.p1 != 0x3F or cmd.p2 != 0xFF:
            raise CardStatus(0x6A86)
        items = parse_tlvs(data)
        if len(items) != 1 or items[0][0] != 0x5C or not 1 <= len(items[0][1]) <= 3:
            raise CardStatus(0x6A80)
        obj = self.data_object(int.from_bytes(items[0][1], "big"))
        if obj is None:
            raise CardStatus(0x6A82)
        return obj

    # --- PIN commands (Part 2 §3.2.1 - §3.2.3) ----------------------------------------------

    def _tries_sw(self, left):
        return 0x6983 if left == 0 else 0x63C0 | min(left, 15)

    def _pin_format_ok(self, value):
        # Part 2 §3.2.1: 6-8 ASCII digits, then FF padding to 8 bytes
        if len(value) != PIN_LENGTH:
            return False
        digits = value.rstrip(b"\xFF")
        if len(digits) < PIN_MIN:
            return False
        for c in digits:
            if not 0x30 <= c <= 0x39:
                return False
        return True

    def verify(self, ch, cmd, data):
        pin = self.pin_object
        if cmd.p1 not in (0x00, 0xFF):
            raise CardStatus(0x6A86)
        if cmd.p2 in (REF_GLOBAL_PIN, REF_PUK):
            raise CardStatus(0x6A88)                 # no global PIN; the PUK is never verified alone
        if cmd.p2 != REF_PIN:
            raise CardStatus(0x6A86)
        if cmd.p1 == 0xFF:
            if data:
                raise CardStatus(0x6A80)
            ch.verified.discard(REF_PIN)             # P1 FF: reset the security status
            return
        if not data:
            # the status query: 9000 when verified, else the tries left
            if REF_PIN in ch.verified and not pin.blocked:
                return
            raise CardStatus(self._tries_sw(pin.remaining))
        if not self._pin_format_ok(data):
            raise CardStatus(0x6A80)
        if pin.blocked:
            raise CardStatus(0x6983)
        ch.verified.discard(REF_PIN)
        if not pin.verify(data):                     # the counter is saved before this answer
            raise CardStatus(self._tries_sw(pin.remaining))
        ch.verified.add(REF_PIN)
        ch.applet_state["piv_pin_always"] = True     # one use of the PIN-always key 9C

    def change_reference_data(self, ch, cmd, data):
        pin = self.pin_object
        if cmd.p1 != 0x00:
            raise CardStatus(0x6A86)
        if cmd.p2 not in (REF_PIN, REF_PUK):
            raise CardStatus(0x6A88 if cmd.p2 == REF_GLOBAL_PIN else 0x6A86)
        if len(data) != 2 * PIN_LENGTH:
            raise CardStatus(0x6A80)
        old, new = data[:PIN_LENGTH], data[PIN_LENGTH:]
        if cmd.p2 == REF_PIN:
            if not self._pin_format_ok(old) or not self._pin_format_ok(new):
                raise CardStatus(0x6A80)
            if pin.blocked:
                raise CardStatus(0x6983)
            ch.verified.discard(REF_PIN)
            if not pin.change(old, new):
                raise CardStatus(self._tries_sw(pin.remaining))
            ch.verified.add(REF_PIN)
            return
        # the PUK (Part 2 §3.2.2): 8 bytes; its own counter, saved before the comparison
        if pin.puk_remaining == 0:
            raise CardStatus(0x6983)
        pin.puk_remaining -= 1
        self.save()
        if not hmac.compare_digest(old, pin.puk):
            raise CardStatus(self._tries_sw(pin.puk_remaining))
        pin.puk = bytes(new)
        pin.puk_remaining = pin.puk_retries
        self.save()

    def reset_retry_counter(self, ch, cmd, data):
        pin = self.pin_object
        if cmd.p1 != 0x00:
            raise CardStatus(0x6A86)
        if cmd.p2 != REF_PIN:
            raise CardStatus(0x6A88 if cmd.p2 in (REF_GLOBAL_PIN, REF_PUK) else 0x6A86)
        if len(data) != 2 * PIN_LENGTH:
            raise CardStatus(0x6A80)
        puk, new = data[:PIN_LENGTH], data[PIN_LENGTH:]
        if not self._pin_format_ok(new):
            raise CardStatus(0x6A80)
        if pin.puk_remaining == 0:
            raise CardStatus(0x6983)
        ch.verified.discard(REF_PIN)
        if not pin.unblock(puk, new):
            raise CardStatus(self._tries_sw(pin.puk_remaining))

    # --- GENERAL AUTHENTICATE (Part 2 §3.2.4) ---------------------------------------------

    def general_authenticate(self, ch, cmd, data):
        alg, ref = cmd.p1, cmd.p2
        slot = None
        for s in SLOTS:
            if s[0] == ref:
                slot = s
        if slot is None or slot[2] != alg:
            raise CardStatus(0x6A86)
        items = parse_tlvs(data)
        if len(items) != 1 or items[0][0] != 0x7C:
            raise CardStatus(0x6A80)
        fields = {}
        for tag, value in parse_tlvs(items[0][1]):
            if tag in fields:
                raise CardStatus(0x6A80)
            fields[tag] = value
        # Part 2 Table 7: an empty 82 (response) asked for, with 81 (challenge) or
        # 85 (exponentiation: the other party's public point)
        if fields.get(0x82) != b"" or (0x81 in fields) == (0x85 in fields) \
                or set(fields) - {0x81, 0x82, 0x85}:
            raise CardStatus(0x6A80)
        if REF_PIN not in ch.verified:
            raise CardStatus(0x6982)
        if ref in PIN_ALWAYS:
            # Part 1 §3.1.2 / Table 4b: the PIN must be presented again before each use
            if not ch.applet_state.get("piv_pin_always"):
                raise CardStatus(0x6982)
            ch.applet_state["piv_pin_always"] = False
        key = self.keys[ref]
        if alg == ALG_RSA_2048:
            if 0x81 not in fields:
                raise CardStatus(0x6A80)
            out = _rsa_private(key, fields[0x81])
        elif 0x81 in fields:
            out = _ecdsa(key, fields[0x81])
        else:
            out = _ecdh(key, fields[0x85])
        return tlv(0x7C, tlv(0x82, out))


def _rsa_private(key, block):
    # the raw RSA private-key operation on a modulus-sized block (PKCS #1 v2.2 §5.1.2
    # RSADP / §5.2.1 RSASP1, CRT form); the host pads and unpads
    nums = key.private_numbers()
    n = nums.public_numbers.n
    size = (n.bit_length() + 7) // 8
    if len(block) != size:
        raise CardStatus(0x6A80)
    c = int.from_bytes(block, "big")
    if c >= n:
        raise CardStatus(0x6A80)
    m1 = pow(c, nums.dmp1, nums.p)
    m2 = pow(c, nums.dmq1, nums.q)
    h = (nums.iqmp * (m1 - m2)) % nums.p
    return (m2 + h * nums.q).to_bytes(size, "big")


def _ecdsa(key, digest):
    # Part 2 §3.2.4: the card signs the hash it is given; FIPS 186-4 §6.4 takes its
    # leftmost 256 bits, a shorter value is the same integer left-padded
    if not digest or len(digest) > 64:
        raise CardStatus(0x6A80)
    digest = digest[:32] if len(digest) >= 32 else bytes(32 - len(digest)) + digest
    return key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def _ecdh(key, point):
    # Part 2 §3.2.4 / SP 800-56A §5.7.1.2 (ECC CDH): the x-coordinate of d*Q
    if len(point) != 65 or point[0] != 0x04:
        raise CardStatus(0x6A80)
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        return key.exchange(ec.ECDH(), peer)
    except (ValueError, InvalidKey):
        raise CardStatus(0x6A80)


def make(image=None, **options):
    """Registry entry point: ``make_card("auth", image=path, seed=..., pin=..., puk=...)``."""
    return AuthCard(image=image, **options)
