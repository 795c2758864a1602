"""The authentication card (PIV, emu/cards/auth.py) in process: selection, data
objects, PIN/PUK with persisted retry counters, and every private-key
operation checked against the card's public keys with `cryptography`."""

import hashlib
import json
import os
import shutil

import pytest
from hypothesis import given, strategies as st

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from ccidkit.emu.cards import make_card
from ccidkit.emu.cards.auth import AuthCard, parse_tlvs, tlv

SEED = b"ccidkit auth card test"
SELECT = bytes.fromhex("00A4040005A000000308") + b"\x00"
PIN = b"123456\xff\xff"
PUK = b"12345678"
CHALLENGE = b"pre-boot login challenge 0001"


@pytest.fixture(scope="module")
def base_image(tmp_path_factory):
    """One personalised image (key generation takes a while); tests copy it."""
    path = tmp_path_factory.mktemp("auth") / "base.img"
    AuthCard(image=str(path), seed=SEED).close()
    return path


@pytest.fixture
def image(base_image, tmp_path):
    path = tmp_path / "card.img"
    shutil.copy(base_image, path)
    return str(path)


@pytest.fixture
def card(image):
    c = make_card("auth", image=image)
    assert sw_of(c.process_apdu(SELECT)) == 0x9000
    return c


def sw_of(resp):
    return (resp[-2] << 8) | resp[-1]


def send(card, apdu):
    """One APDU; (data, SW) after following 61xx with GET RESPONSE (bounded)."""
    resp = card.process_apdu(bytes(apdu))
    data = resp[:-2]
    for _ in range(64):
        if resp[-2] != 0x61:
            break
        resp = card.process_apdu(bytes((0x00, 0xC0, 0x00, 0x00, resp[-1])))
        data += resp[:-2]
    else:
        raise AssertionError("GET RESPONSE did not end")
    return data, sw_of(resp)


def verify(card, pin=PIN):
    return send(card, bytes((0x00, 0x20, 0x00, 0x80, len(pin))) + pin)[1]


def general_authenticate(card, alg, ref, template):
    """GENERAL AUTHENTICATE with command chaining over short APDUs (CLA 10)."""
    data = tlv(0x7C, template)
    chunks = [data[i:i + 255] for i in range(0, len(data), 255)]
    for chunk in chunks[:-1]:
        resp = card.process_apdu(bytes((0x10, 0x87, alg, ref, len(chunk))) + chunk)
        assert resp == b"\x90\x00"
    last = chunks[-1]
    out, sw = send(card, bytes((0x00, 0x87, alg, ref, len(last))) + last + b"\x00")
    if sw != 0x9000:
        return None, sw
    (tag, body), = parse_tlvs(out)
    assert tag == 0x7C
    (tag, value), = parse_tlvs(body)
    assert tag == 0x82
    return value, sw


def get_object(card, tag_bytes):
    return send(card, bytes((0x00, 0xCB, 0x3F, 0xFF, len(tag_bytes) + 2, 0x5C, len(tag_bytes)))
                + tag_bytes + b"\x00")


# --- selection and data objects ----------------------------------------------------------

def test_select_answers_the_application_property_template(image):
    card = make_card("auth", image=image)
    data, sw = send(card, SELECT)
    assert sw == 0x9000
    assert data == bytes.fromhex(
        "6128" "4F06000010000100" "79074F05A000000308" "500B" + b"ccidkit PIV".hex() +
        "AC08800107800111" "0600")
    # the full AID, P2=0C (no answer), and a foreign AID
    full = bytes.fromhex("00A404000BA000000308000010000100")
    assert send(card, full + b"\x00") == (data, 0x9000)
    assert card.process_apdu(bytes.fromhex("00A4040C05A000000308")) == b"\x90\x00"
    assert card.process_apdu(bytes.fromhex("00A4040006D2760001240100")) == b"\x6A\x82"


def test_piv_commands_need_the_application(image):
    card = make_card("auth", image=image)
    assert card.process_apdu(bytes.fromhex("00CB3FFF035C017E00")) == b"\x6D\x00"
    send(card, SELECT)
    data, sw = send(card, bytes.fromhex("00CB3FFF035C017E00"))
    assert sw == 0x9000
    assert data == bytes.fromhex("7E124F0BA0000003080000100001005F2F024000")


@pytest.mark.parametrize("ref,tag", [(0x9A, "5FC105"), (0x9C, "5FC10A"), (0x9D, "5FC10B"),
                                     (0x82, "5FC10D")])
def test_certificate_objects_carry_the_card_keys(card, ref, tag):
    data, sw = get_object(card, bytes.fromhex(tag))
    assert sw == 0x9000
    (t, body), = parse_tlvs(data)
    assert t == 0x53
    fields = parse_tlvs(body)
    assert [f[0] for f in fields] == [0x70, 0x71, 0xFE]
    assert fields[1][1] == b"\x00" and fields[2][1] == b""
    cert = x509.load_der_x509_certificate(fields[0][1])
    assert cert.public_key().public_numbers() == card.public_key(ref).public_numbers()
    key = cert.public_key()
    if ref in (0x9A, 0x9D):
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
        key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                   hashes.SHA256())
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_agreement == (ref == 0x82)
    assert usage.digital_signature == (ref in (0x9A, 0x9C))


def test_certificate_in_one_extended_apdu(card):
    resp = card.process_apdu(bytes.fromhex("00CB3FFF000005" "5C035FC105" "0000"))
    assert sw_of(resp) == 0x9000
    assert resp[:-2] == card.data_object(0x5FC105)
    assert len(resp) > 700


def test_chuid_key_history_and_ccc(card):
    data, sw = get_object(card, bytes.fromhex("5FC102"))
    assert sw == 0x9000
    (t, body), = parse_tlvs(data)
    fields = dict(parse_tlvs(body))
    assert t == 0x53 and fields[0x30][:4] == bytes.fromhex("D4E739DA")   # FASC-N, agency 9999
    assert len(fields[0x34]) == 16 and fields[0x35] == b"20441231"
    assert get_object(card, bytes.fromhex("5FC10C")) == (bytes.fromhex("5308C10101C20100FE00"), 0x9000)
    data, sw = get_object(card, bytes.fromhex("5FC107"))
    assert sw == 0x9000 and data[:2] == b"\x53\x33"


def test_get_data_errors(card):
    assert get_object(card, bytes.fromhex("5FC109"))[1] == 0x6A82       # printed information
    assert get_object(card, bytes.fromhex("5FC1FF"))[1] == 0x6A82
    assert send(card, bytes.fromhex("00CB3FFE035C017E00"))[1] == 0x6A86
    assert send(card, bytes.fromhex("00CB3FFF035D017E00"))[1] == 0x6A80
    assert send(card, bytes.fromhex("00CB3FFF035C057E00"))[1] == 0x6A80  # length past the end
    assert send(card, bytes.fromhex("00CB3FFF00"))[1] == 0x6A80


# --- PIN and PUK --------------------------------------------------------------------------

def test_verify_and_status_query(card):
    assert card.process_apdu(bytes.fromhex("0020008000")) == b"\x63\xC3"
    assert verify(card) == 0x9000
    assert card.process_apdu(bytes.fromhex("0020008000")) == b"\x90\x00"
    assert card.process_apdu(bytes.fromhex("0020FF80")) == b"\x90\x00"   # reset status
    assert card.process_apdu(bytes.fromhex("0020008000")) == b"\x63\xC3"


def test_wrong_pin_counts_down_and_persists(image):
    card = make_card("auth", image=image)
    send(card, SELECT)
    assert verify(card, b"654321\xff\xff") == 0x63C2
    with open(image) as fh:
        assert '"remaining":2' in fh.read()
    # a new card object on the same image: a restarted card process
    card2 = make_card("auth", image=image)
    send(card2, SELECT)
    assert card2.pin_remaining == 2
    assert card2.process_apdu(bytes.fromhex("0020008000")) == b"\x63\xC2"
    assert verify(card2, b"1111111\xff") == 0x63C1
    assert verify(card2, b"22222222") == 0x6983
    card3 = make_card("auth", image=image)
    send(card3, SELECT)
    assert card3.process_apdu(bytes.fromhex("0020008000")) == b"\x69\x83"
    assert verify(card3) == 0x6983                   # blocked: even the right PIN
    # the PUK unblocks and sets a new PIN
    rrc = bytes.fromhex("002C008010") + PUK + b"24680135"
    assert card3.process_apdu(rrc) == b"\x90\x00"
    assert verify(card3) == 0x63C2                   # the old value is gone
    assert verify(card3, b"24680135") == 0x9000
    card4 = make_card("auth", image=image)
    assert card4.pin_remaining == 3 and card4.puk_remaining == 3


def test_good_pin_restores_the_counter(card):
    assert verify(card, b"000000\xff\xff") == 0x63C2
    assert verify(card) == 0x9000
    assert card.pin_remaining == 3


def test_pin_format_and_references(card):
    for bad in (b"12345\xff\xff\xff", b"12a456\xff\xff", b"123456\xff", b"123456\xff\xff\xff"):
        assert verify(card, bad) == 0x6A80
    assert card.pin_remaining == 3                   # malformed PINs cost no try
    assert card.process_apdu(bytes.fromhex("0020008100")) == b"\x6A\x88"
    assert card.process_apdu(bytes.fromhex("0020000000")) == b"\x6A\x88"
    assert card.process_apdu(bytes.fromhex("0020009A00")) == b"\x6A\x86"
    assert card.process_apdu(bytes.fromhex("0020018000")) == b"\x6A\x86"


def test_puk_wrong_and_blocked(image):
    card = make_card("auth", image=image)
    send(card, SELECT)
    rrc = bytes.fromhex("002C008010")
    assert card.process_apdu(rrc + b"87654321" + b"111111\xff\xff") == b"\x63\xC2"
    assert make_card("auth", image=image).puk_remaining == 2
    assert card.process_apdu(rrc + b"87654321" + b"111111\xff\xff") == b"\x63\xC1"
    assert card.process_apdu(rrc + b"87654321" + b"111111\xff\xff") == b"\x69\x83"
    assert card.process_apdu(rrc + PUK + b"111111\xff\xff") == b"\x69\x83"
    assert card.process_apdu(rrc + PUK + b"1111\xff\xff\xff\xff") == b"\x6A\x80"
    assert card.process_apdu(bytes.fromhex("002C008108") + PUK) == b"\x6A\x88"


def test_change_pin_and_puk(card):
    cr = bytes.fromhex("0024008010")
    assert card.process_apdu(cr + b"999999\xff\xff" + b"13572468") == b"\x63\xC2"
    assert card.process_apdu(cr + PIN + b"13572468") == b"\x90\x00"
    assert verify(card, b"13572468") == 0x9000
    crp = bytes.fromhex("0024008110")
    assert card.process_apdu(crp + b"00000000" + b"87654321") == b"\x63\xC2"
    assert card.process_apdu(crp + PUK + b"87654321") == b"\x90\x00"
    assert card.puk_remaining == 3
    rrc = bytes.fromhex("002C008010")
    assert card.process_apdu(rrc + b"87654321" + PIN) == b"\x90\x00"
    assert verify(card) == 0x9000


# --- private-key operations --------------------------------------------------------------

def _pkcs1_sha256_block(message, size):
    # PKCS #1 v1.5 EMSA encoding: DigestInfo for SHA-256 (RFC 8017 §9.2 note 1)
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420") + \
        hashlib.sha256(message).digest()
    return b"\x00\x01" + b"\xff" * (size - len(digest_info) - 3) + b"\x00" + digest_info


def test_keys_need_the_pin(card):
    block = _pkcs1_sha256_block(CHALLENGE, 256)
    assert general_authenticate(card, 0x07, 0x9A, tlv(0x82, b"") + tlv(0x81, block)) == \
        (None, 0x6982)
    assert verify(card) == 0x9000
    assert general_authenticate(card, 0x07, 0x9A, tlv(0x82, b"") + tlv(0x81, block))[1] == 0x9000
    card.event("reset_warm")                         # a reset clears the security status
    send(card, SELECT)
    assert general_authenticate(card, 0x07, 0x9A, tlv(0x82, b"") + tlv(0x81, block)) == \
        (None, 0x6982)


def test_rsa_signature_over_a_challenge(card):
    assert verify(card) == 0x9000
    block = _pkcs1_sha256_block(CHALLENGE, 256)
    sig, sw = general_authenticate(card, 0x07, 0x9A, tlv(0x82, b"") + tlv(0x81, block))
    assert sw == 0x9000 and len(sig) == 256
    card.public_key(0x9A).verify(sig, CHALLENGE, padding.PKCS1v15(), hashes.SHA256())
    # the certificate read from the card verifies it too
    data, _ = get_object(card, bytes.fromhex("5FC105"))
    cert = x509.load_der_x509_certificate(dict(parse_tlvs(parse_tlvs(data)[0][1]))[0x70])
    cert.public_key().verify(sig, CHALLENGE, padding.PKCS1v15(), hashes.SHA256())


def _oaep_decode(em, label=b""):
    # RFC 8017 §7.1.2 step 3, SHA-256 / MGF1-SHA-256
    hlen = 32

    def mgf1(seed, n):
        out = b""
        for i in range((n + hlen - 1) // hlen):
            out += hashlib.sha256(seed + i.to_bytes(4, "big")).digest()
        return out[:n]

    assert em[0] == 0
    masked_seed, masked_db = em[1:1 + hlen], em[1 + hlen:]
    seed = bytes(a ^ b for a, b in zip(masked_seed, mgf1(masked_db, hlen)))
    db = bytes(a ^ b for a, b in zip(masked_db, mgf1(seed, len(masked_db))))
    assert db[:hlen] == hashlib.sha256(label).digest()
    rest = db[hlen:].lstrip(b"\x00")
    assert rest[0] == 1
    return rest[1:]


def test_rsa_decryption_oaep_and_pkcs1(card):
    assert verify(card) == 0x9000
    pub = card.public_key(0x9D)
    secret = b"disk unlock key 0123456789abcdef"
    ct = pub.encrypt(secret, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
    em, sw = general_authenticate(card, 0x07, 0x9D, tlv(0x82, b"") + tlv(0x81, ct))
    assert sw == 0x9000 and _oaep_decode(em) == secret
    ct = pub.encrypt(secret, padding.PKCS1v15())
    em, sw = general_authenticate(card, 0x07, 0x9D, tlv(0x82, b"") + tlv(0x81, ct))
    assert sw == 0x9000
    assert em[:2] == b"\x00\x02" and em[2:].split(b"\x00", 1)[1] == secret


def test_ecdsa_signature(card):
    assert verify(card) == 0x9000
    digest = hashlib.sha256(CHALLENGE).digest()
    sig, sw = general_authenticate(card, 0x11, 0x9C, tlv(0x82, b"") + tlv(0x81, digest))
    assert sw == 0x9000
    card.public_key(0x9C).verify(sig, CHALLENGE, ec.ECDSA(hashes.SHA256()))
    card.public_key(0x9C).verify(sig, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    # 9C is "PIN Always": a second signature needs another VERIFY; the other keys do not
    template = tlv(0x82, b"") + tlv(0x81, digest)
    assert general_authenticate(card, 0x11, 0x9C, template) == (None, 0x6982)
    block = _pkcs1_sha256_block(CHALLENGE, 256)
    for _ in range(2):
        assert general_authenticate(card, 0x07, 0x9A, tlv(0x82, b"") + tlv(0x81, block))[1] \
            == 0x9000
    assert verify(card) == 0x9000
    sig, sw = general_authenticate(card, 0x11, 0x9C, template)
    assert sw == 0x9000
    card.public_key(0x9C).verify(sig, digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def test_ecdh_shared_secret(card):
    assert verify(card) == 0x9000
    host = ec.derive_private_key(0x1234567890ABCDEF, ec.SECP256R1())
    point = host.public_key().public_bytes(serialization.Encoding.X962,
                                           serialization.PublicFormat.UncompressedPoint)
    z, sw = general_authenticate(card, 0x11, 0x82, tlv(0x82, b"") + tlv(0x85, point))
    assert sw == 0x9000
    assert z == host.exchange(ec.ECDH(), card.public_key(0x82))
    # a point not on the curve, a compressed point
    bad = point[:-1] + bytes((point[-1] ^ 1,))
    assert general_authenticate(card, 0x11, 0x82, tlv(0x82, b"") + tlv(0x85, bad)) == \
        (None, 0x6A80)
    assert general_authenticate(card, 0x11, 0x82, tlv(0x82, b"") + tlv(0x85, point[:33])) == \
        (None, 0x6A80)


def test_general_authenticate_errors(card):
    assert verify(card) == 0x9000
    block = _pkcs1_sha256_block(CHALLENGE, 256)
    ga = general_authenticate
    assert ga(card, 0x11, 0x9A, tlv(0x82, b"") + tlv(0x81, block))[1] == 0x6A86    # wrong alg
    assert ga(card, 0x07, 0x9E, tlv(0x82, b"") + tlv(0x81, block))[1] == 0x6A86    # no such key
    assert ga(card, 0x03, 0x9B, tlv(0x80, b""))[1] == 0x6A86                       # management key
    assert ga(card, 0x07, 0x9A, tlv(0x81, block))[1] == 0x6A80                     # no 82
    assert ga(card, 0x07, 0x9A, tlv(0x82, b"") + tlv(0x81, block[1:]))[1] == 0x6A80  # short
    assert ga(card, 0x07, 0x9A, tlv(0x82, b"") + tlv(0x81, b"\xff" * 256))[1] == 0x6A80  # >= n
    assert ga(card, 0x07, 0x9A, tlv(0x82, b"") + tlv(0x85, block))[1] == 0x6A80    # RSA has no 85
    assert ga(card, 0x11, 0x9C, tlv(0x82, b"") + tlv(0x81, b""))[1] == 0x6A80
    assert card.process_apdu(bytes.fromhex("0087079A047C028200")) == b"\x6A\x80"
    assert card.process_apdu(bytes.fromhex("0087079A037C0582")) == b"\x6A\x80"


def test_status_words(card):
    cases = {
        "0050000000": 0x6D00,             # unknown instruction
        "00CA004F00": 0x6D00,             # no ISO GET DATA in the PIV application
        "8020008000": 0x6E00,             # proprietary class
        "0C20008000": 0x6882,             # secure messaging
        "0120008000": 0x6881,             # logical channel 1 not open
        "00C0000000": 0x6985,             # nothing to GET RESPONSE
        "00DB3FFF00": 0x6982,             # PUT DATA needs the management key
        "0047009A05AC03800107": 0x6982,   # GENERATE ASYMMETRIC KEY PAIR
        "00A4040005A0000003": 0x6700,     # Lc larger than the data
        "00": 0x6700,
    }
    for apdu, want in cases.items():
        assert sw_of(card.process_apdu(bytes.fromhex(apdu))) == want, apdu
    # a chained command followed by another instruction
    assert card.process_apdu(bytes.fromhex("1087079A027C00")) == b"\x90\x00"
    assert card.process_apdu(bytes.fromhex("00CB3FFF035C017E00")) == b"\x68\x83"
    assert card.process_apdu(bytes.fromhex("10A4040005A000000308")) == b"\x68\x84"


@given(st.binary(min_size=0, max_size=300))
def test_any_bytes_get_a_status_word(base_image, apdu):
    card = _shared_card(base_image)
    card.process_apdu(SELECT)
    resp = card.process_apdu(apdu)
    assert isinstance(resp, bytes) and len(resp) >= 2
    # ISO/IEC 7816-4 §5.6: a normal, warning or error status word
    assert resp[-2] in (0x90, 0x61, 0x62, 0x63, 0x65, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6D,
                        0x6E, 0x6F)
    if resp[-2] != 0x90 and resp[-2] != 0x61:
        assert len(resp) == 2


@given(st.sampled_from([0x07, 0x11, 0x03, 0x00]), st.sampled_from([0x9A, 0x9C, 0x9D, 0x82, 0x9B]),
       st.lists(st.tuples(st.sampled_from([0x80, 0x81, 0x82, 0x85, 0x7C]),
                          st.binary(max_size=70)), max_size=4),
       st.booleans())
def test_general_authenticate_bodies(base_image, alg, ref, fields, verified):
    card = _shared_card(base_image)
    card.process_apdu(SELECT)
    card.process_apdu(bytes.fromhex("0020FF80"))
    if verified:
        assert verify(card) == 0x9000
    body = tlv(0x7C, b"".join(tlv(t, v) for t, v in fields))
    resp = card.process_apdu(bytes((0x00, 0x87, alg, ref, len(body))) + body + b"\x00")
    assert sw_of(resp) in (0x9000, 0x6A80, 0x6A86, 0x6982, 0x6700) or resp[-2] == 0x61


_SHARED = {}


def _shared_card(base_image):
    # in memory, from the base image's keys: fuzzing must not write the image
    if "card" not in _SHARED:
        _SHARED["card"] = AuthCard(image=None, seed=SEED)
    return _SHARED["card"]


# --- personalisation ----------------------------------------------------------------------

def test_seeded_keys_are_deterministic(tmp_path):
    a = AuthCard(seed=b"x", rsa_bits=1024)
    b = AuthCard(seed=b"x", rsa_bits=1024)
    c = AuthCard(seed=b"y", rsa_bits=1024)
    for ref in (0x9A, 0x9C, 0x9D, 0x82):
        assert a.public_key(ref).public_numbers() == b.public_key(ref).public_numbers()
        assert a.public_key(ref).public_numbers() != c.public_key(ref).public_numbers()


def test_image_keeps_keys_and_custom_pin(tmp_path):
    path = str(tmp_path / "c.img")
    a = AuthCard(image=path, seed=b"z", rsa_bits=1024, pin="24681357", puk="11223344")
    b = make_card("auth", image=path)                # no seed: the image's keys
    assert b.public_key(0x9D).public_numbers() == a.public_key(0x9D).public_numbers()
    send(b, SELECT)
    assert verify(b, b"24681357") == 0x9000
    with open(path) as fh:
        doc = json.load(fh)
    assert set(doc["sections"]) == {"auth"}


def test_no_secret_in_repr_events_or_errors(card, image):
    verify(card)
    card.event("power_off")
    card.event("power_on")
    text = repr(card) + repr(card.events) + repr(card.pin_object)
    for secret in (b"123456", PIN.hex().encode(), PUK):
        assert secret.decode() not in text
    assert card.events[-2:] == [("power_off", {}), ("power_on", {})]


def test_corrupt_image_is_reported(tmp_path):
    from ccidkit.emu.cardos import CardOSError
    path = tmp_path / "bad.img"
    path.write_text(json.dumps({"format": "ccidkit-card-image", "version": 1,
                                "sections": {"auth": {"nv": {"piv": {"keys": {}}}}}}))
    with pytest.raises(CardOSError) as e:
        AuthCard(image=str(path))
    assert e.value.name == "IMAGE_CORRUPT"
    assert os.path.getsize(path) > 0


def test_bad_personalisation_values():
    from ccidkit.emu.cardos import CardOSError
    for options in ({"pin": "12345"}, {"pin": "123456789"}, {"pin": "12ab56"},
                    {"puk": "1234567890"}):
        with pytest.raises(CardOSError) as e:
            AuthCard(seed=b"x", rsa_bits=1024, **options)
        assert e.value.name == "BAD_PIN"


def test_command_chain_is_bounded(card):
    part = bytes((0x10, 0x87, 0x07, 0x9A, 0xFF)) + b"\x00" * 255
    answers = [card.process_apdu(part) for _ in range(17)]
    assert answers[:16] == [b"\x90\x00"] * 16
    assert answers[16] == b"\x67\x00"                # past our 4096-byte limit
    assert card.process_apdu(bytes.fromhex("0087079A00")) == b"\x6A\x80"  # the chain is gone


def test_get_data_over_t0_tpdu_level():
    # GET DATA (INS CB) carries its tag list to the card: at T=0 TPDU level the
    # card side must read P3 as Lc, not Le, or the certificate is out of reach.
    from ccidkit.core.t0 import T0Reader
    from ccidkit.emu.card.t0 import T0Card
    card = AuthCard(seed=b"t0")
    card.power_on()
    t0card = T0Card(card)
    reader = T0Reader(auto_get_response=True)

    def send(apdu):
        return reader.transceive(apdu, lambda tpdu, timeout_us: t0card.process_tpdu(tpdu))
    assert send(bytes.fromhex("00A4040009A0000003080000100000"))[-2:] == b"\x90\x00"
    resp = send(bytes.fromhex("00CB3FFF055C035FC10500"))
    data = bytearray(resp[:-2])
    for _ in range(16):  # a certificate object is larger than one short Le: 61xx, GET RESPONSE
        if resp[-2] != 0x61:
            break
        resp = send(bytes((0x00, 0xC0, 0x00, 0x00, resp[-1])))
        data += resp[:-2]
    assert resp[-2:] == b"\x90\x00" and data[0] == 0x53 and len(data) > 300
