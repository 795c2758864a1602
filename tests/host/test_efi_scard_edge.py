"""EFI_SMART_CARD_EDGE_PROTOCOL (uefi/fw/scard_edge.py) over the PIV
authentication card (emu/cards/auth.py) in an emulated reader behind the
stand-in firmware host: Edge -> Reader facade -> in-firmware transport ->
driver -> emulated CCID reader -> card. Signatures, decryptions and ECDH
results are checked with ``cryptography`` on the host."""

import hashlib
import os
import shutil

import pytest
from hypothesis import given, strategies as st
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ccidkit.emu.cards.auth import AuthCard, TAG_CHUID, TAG_DISCOVERY
from ccidkit.emu.reader import EmulatedReader
from ccidkit.uefi.fw import efi
from ccidkit.uefi.fw import scard_edge as E
from ccidkit.uefi.fw import scard_reader as R
from ccidkit.uefi.fw.efi_status import (
    EFI_SUCCESS, EFI_INVALID_PARAMETER, EFI_UNSUPPORTED, EFI_BUFFER_TOO_SMALL, EFI_NOT_FOUND,
    EFI_ACCESS_DENIED, EFI_NO_MEDIA,
)

from test_usb_transport_fake import Host

SEED = b"ccidkit edge facade test"
PIN = b"123456"
FILL = 0xA5
SHA256 = E.EFI_HASH_ALGORITHM_SHA256_GUID
PKCS1 = E.EFI_PADDING_RSASSA_PKCS1V1P5_GUID
HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384,
          "sha512": hashlib.sha512}


@pytest.fixture(scope="module")
def base_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("edge") / "base.img"
    AuthCard(image=str(path), seed=SEED).close()
    return path


@pytest.fixture
def env(base_image, tmp_path):
    """(emulated reader, card, edge) with a fresh copy of the personalised card."""
    path = tmp_path / "card.img"
    shutil.copy(base_image, path)

    def build(profile="gemalto-pctwin", with_card=True):
        card = AuthCard(image=str(path))
        em = EmulatedReader(profile, cards={0: card} if with_card else {})
        efi.set_host(Host([em]))
        edge = E.EFI_SMART_CARD_EDGE_PROTOCOL(random_bytes=os.urandom, hash_functions=HASHES)
        return em, card, edge

    yield build
    efi.set_host(None)


def buf(n):
    return bytearray([FILL]) * n


def connect(edge):
    st, h = edge.Connect()
    assert st == EFI_SUCCESS and isinstance(h, int)
    return h


def verify(edge, h):
    assert edge.VerifyPin(h, len(PIN), PIN) == (EFI_SUCCESS, True, 3)


def credentials(edge, h):
    st, n = edge.GetCredential(h, 0, None)
    assert st == EFI_BUFFER_TOO_SMALL
    out = buf(n + 10)
    assert edge.GetCredential(h, n + 10, out) == (EFI_SUCCESS, n)
    assert out[n:] == buf(10)
    return E.parse_credentials(bytes(out[:n]))


# ================================================================ constants

def test_guids_and_constants_are_the_specifications():
    assert E.EFI_SMART_CARD_EDGE_PROTOCOL_GUID == "d317f29b-a325-4712-9bf1-c61954dc198c"
    assert E.EFI_PADDING_RSAES_OAEP_GUID == "c1e63ac4-d0cf-4ce6-835b-eed0e6a8a45b"
    assert (E.SCARD_AID_MAXSIZE, E.SCARD_CSN_SIZE) == (16, 16)
    assert E.SMART_CARD_EDGE_PROTOCOL_VERSION_1 == 0x100
    assert (E.SC_EDGE_RSA_EXCHANGE, E.SC_EDGE_ECDH_521) == (1, 8)


# ================================================================ context and connection

def test_get_context_lists_the_card_by_its_chuid_guid(env):
    em, card, edge = env()
    aids = buf(40)
    csns = buf(40)
    st, naid, aid_n, npresent, csn_n, version = edge.GetContext(2, aids, 2, csns)
    assert (st, naid, aid_n, npresent, csn_n, version) == (EFI_SUCCESS, 1, 1, 1, 1, 0x100)
    assert bytes(aids[:16]) == E.PIV_AID + bytes(5) and aids[16:] == buf(24)
    assert bytes(csns[:16]) == card.guid and csns[16:] == buf(24)
    # a table of 0 items: no error, nothing written; the scan left the reader free
    assert edge.GetContext(0, aids, 0, csns)[:5] == (EFI_SUCCESS, 1, 0, 1, 0)
    assert not edge.readers[0].connected


def test_get_context_without_a_card(env):
    em, card, edge = env(with_card=False)
    assert edge.GetContext(None, None, None, None) == (EFI_SUCCESS, 1, None, 0, None, 0x100)


def test_connect_returns_the_aid_and_honours_the_csn(env):
    em, card, edge = env()
    aid = buf(20)
    st, h = edge.Connect(None, aid)
    assert st == EFI_SUCCESS
    assert bytes(aid[:16]) == E.PIV_AID + bytes(5) and aid[16:] == buf(4)
    assert edge.Connect(bytes(16), None) == (EFI_NO_MEDIA, None)
    st, h2 = edge.Connect(card.guid, None)
    assert st == EFI_SUCCESS and h2 != h
    assert edge.Connect(None, bytearray(8))[0] == EFI_INVALID_PARAMETER


def test_connect_no_media_without_a_supported_card(env):
    em, card, edge = env(with_card=False)
    assert edge.Connect() == (EFI_NO_MEDIA, None)


def test_disconnect(env):
    em, card, edge = env()
    h = connect(edge)
    assert edge.Disconnect(12345) == EFI_INVALID_PARAMETER
    assert edge.Disconnect(h) == EFI_SUCCESS
    assert edge.Disconnect(h) == EFI_INVALID_PARAMETER        # no connection any more
    assert not edge.readers[0].connected
    h = connect(edge)
    em.remove_card(0)
    assert edge.Disconnect(h) == EFI_SUCCESS                   # removed: success all the same


def test_disconnect_resets_the_pin_status(env):
    em, card, edge = env()
    h = connect(edge)
    verify(edge, h)
    edge.Disconnect(h)
    h = connect(edge)
    sig = buf(256)
    assert edge.SignData(h, 1, E.SC_EDGE_RSA_SIGNATURE, SHA256, PKCS1, bytes(32),
                         sig) == EFI_ACCESS_DENIED


def test_get_csn_and_reader_name(env):
    em, card, edge = env()
    h = connect(edge)
    csn = buf(20)
    assert edge.GetCsn(h, csn) == EFI_SUCCESS
    assert bytes(csn[:16]) == card.guid and csn[16:] == buf(4)
    assert edge.GetCsn(h + 1, csn) == EFI_INVALID_PARAMETER
    assert edge.GetCsn(h, bytearray(4)) == EFI_INVALID_PARAMETER
    name = R.str_to_char16(edge.readers[0].name)
    assert edge.GetReaderName(h, None, None) == (EFI_INVALID_PARAMETER, None)
    assert edge.GetReaderName(h, 0, None) == (EFI_BUFFER_TOO_SMALL, len(name))
    out = buf(200)
    assert edge.GetReaderName(h, 10, out) == (EFI_BUFFER_TOO_SMALL, len(name))
    assert out == buf(200)
    assert edge.GetReaderName(h, 200, out) == (EFI_SUCCESS, len(name))
    assert bytes(out[:len(name)]) == name and out[len(name):] == buf(200 - len(name))
    assert edge.GetReaderName(h + 1, 200, out)[0] == EFI_INVALID_PARAMETER
    em.remove_card(0)
    assert edge.GetCsn(h, csn) == EFI_NO_MEDIA
    assert edge.GetReaderName(h, 200, out)[0] == EFI_NO_MEDIA


# ================================================================ PIN

def test_verify_pin_wrong_then_right(env):
    em, card, edge = env()
    h = connect(edge)
    assert edge.GetPinRemaining(h) == (EFI_SUCCESS, 3)
    assert edge.VerifyPin(h, 6, b"654321") == (EFI_SUCCESS, False, 2)
    assert card.pin_remaining == 2
    assert edge.GetPinRemaining(h) == (EFI_SUCCESS, 2)
    assert edge.VerifyPin(h, 6, b"123456") == (EFI_SUCCESS, True, 3)
    assert card.pin_remaining == 3
    assert edge.GetPinRemaining(h) == (EFI_SUCCESS, 3)


def test_verify_pin_blocked(env):
    em, card, edge = env()
    h = connect(edge)
    for left in (2, 1, 0):
        assert edge.VerifyPin(h, 6, b"000000") == (EFI_SUCCESS, False, left)
    assert edge.VerifyPin(h, 6, PIN) == (EFI_SUCCESS, False, 0)
    assert edge.GetPinRemaining(h) == (EFI_SUCCESS, 0)


def test_verify_pin_invalid_parameters(env):
    em, card, edge = env()
    h = connect(edge)
    assert edge.VerifyPin(h, 0, PIN)[0] == EFI_INVALID_PARAMETER          # null size
    assert edge.VerifyPin(h, -1, PIN)[0] == EFI_INVALID_PARAMETER         # negative, PinCode
    assert edge.VerifyPin(h, 5, b"12345")[0] == EFI_INVALID_PARAMETER     # PIV: 6..8
    assert edge.VerifyPin(h, 9, b"123456789")[0] == EFI_INVALID_PARAMETER
    assert edge.VerifyPin(h, 6, b"12a456")[0] == EFI_INVALID_PARAMETER
    assert edge.VerifyPin(h, 8, PIN)[0] == EFI_INVALID_PARAMETER          # size past the buffer
    assert edge.VerifyPin(h + 1, 6, PIN)[0] == EFI_INVALID_PARAMETER      # no connection
    assert card.pin_remaining == 3
    em.remove_card(0)
    assert edge.VerifyPin(h, 6, PIN)[0] == EFI_NO_MEDIA
    assert edge.GetPinRemaining(h)[0] == EFI_NO_MEDIA
    assert edge.GetPinRemaining(h + 1)[0] == EFI_INVALID_PARAMETER


def test_secure_pin_query_and_entry(env):
    em, card, edge = env()
    h = connect(edge)
    assert edge.VerifyPin(h, -1, None)[0] == EFI_UNSUPPORTED             # no PIN pad
    assert edge.VerifyPin(h, 0, None)[0] == EFI_UNSUPPORTED
    edge.Disconnect(h)
    em, card, edge = env("pinpad")
    h = connect(edge)
    assert edge.VerifyPin(h, -1, None) == (EFI_SUCCESS, False, 0)         # supported
    em.keypad(0, "123456")
    assert edge.VerifyPin(h, 0, None) == (EFI_SUCCESS, True, 3)
    em.keypad(0, "999999")
    assert edge.VerifyPin(h, 0, None) == (EFI_SUCCESS, False, 2)


# ================================================================ data and credentials

def test_get_data(env):
    em, card, edge = env()
    h = connect(edge)
    expect = card.data_object(TAG_CHUID)
    assert edge.GetData(h, E.DATA_ID_CHUID, 0, None) == (EFI_BUFFER_TOO_SMALL, len(expect))
    out = buf(len(expect) + 8)
    assert edge.GetData(h, E.DATA_ID_CHUID, 3, out) == (EFI_BUFFER_TOO_SMALL, len(expect))
    assert out == buf(len(expect) + 8)
    assert edge.GetData(h, E.DATA_ID_CHUID.upper(), len(out), out) == (EFI_SUCCESS, len(expect))
    assert bytes(out[:len(expect)]) == expect and out[len(expect):] == buf(8)
    st, n = edge.GetData(h, E.DATA_ID_DISCOVERY, 100, buf(100))
    assert (st, n) == (EFI_SUCCESS, len(card.data_object(TAG_DISCOVERY)))
    # an identifier this driver does not know, and an object this card does not hold
    assert edge.GetData(h, "00000000-0000-0000-0000-000000000000", 10, buf(10))[0] == \
        EFI_NOT_FOUND
    assert edge.GetData(h, E.DATA_ID_PRINTED_INFORMATION, 10, buf(10))[0] == EFI_NOT_FOUND
    assert edge.GetData(h, None, 10, buf(10))[0] == EFI_INVALID_PARAMETER
    assert edge.GetData(h, E.DATA_ID_CHUID, None, buf(10))[0] == EFI_INVALID_PARAMETER
    assert edge.GetData(h, E.DATA_ID_CHUID, 10, None)[0] == EFI_INVALID_PARAMETER
    assert edge.GetData(h + 1, E.DATA_ID_CHUID, 10, buf(10))[0] == EFI_INVALID_PARAMETER
    em.remove_card(0)
    assert edge.GetData(h, E.DATA_ID_CHUID, 10, buf(10))[0] == EFI_NO_MEDIA


def test_get_credential_lists_the_four_keys_with_their_certificates(env):
    em, card, edge = env()
    h = connect(edge)
    creds = credentials(edge, h)
    assert [(c[0], c[1], c[2]) for c in creds] == [
        (1, E.SC_EDGE_RSA_SIGNATURE, 2048), (2, E.SC_EDGE_ECDSA_256, 256),
        (3, E.SC_EDGE_RSA_EXCHANGE, 2048), (4, E.SC_EDGE_ECDH_256, 256)]
    assert [c[3] for c in creds] == [card.certs[r] for r in (0x9A, 0x9C, 0x9D, 0x82)]
    st, n = edge.GetCredential(h, 0, None)
    raw = buf(n)
    edge.GetCredential(h, n, raw)
    # the TLV bytes as §35.6.2 lays them out
    c0 = card.certs[0x9A]
    assert bytes(raw[:6]) == bytes((0, 1, 4, 1, len(c0) >> 8, len(c0) & 0xFF))
    assert bytes(raw[6 + len(c0):6 + len(c0) + 11]) == bytes.fromhex("020101 030102 0400020800")
    assert edge.GetCredential(h, None, None)[0] == EFI_INVALID_PARAMETER
    assert edge.GetCredential(h, 10, None)[0] == EFI_INVALID_PARAMETER
    short = buf(20)
    assert edge.GetCredential(h, 20, short) == (EFI_BUFFER_TOO_SMALL, n)
    assert short == buf(20)
    assert edge.GetCredential(h + 1, n, raw)[0] == EFI_INVALID_PARAMETER


# ================================================================ private-key operations

def test_sign_rsa_pkcs1_and_pss_verified_on_the_host(env):
    em, card, edge = env()
    h = connect(edge)
    digest = hashlib.sha256(b"pre-boot login challenge").digest()
    sig = buf(260)
    assert edge.SignData(h, 1, E.SC_EDGE_RSA_SIGNATURE, SHA256, PKCS1, digest,
                         sig) == EFI_ACCESS_DENIED                     # PIN not verified
    assert sig == buf(260)
    verify(edge, h)
    assert edge.SignData(h, 1, E.SC_EDGE_RSA_SIGNATURE, SHA256, PKCS1, digest, sig) == \
        EFI_SUCCESS
    assert sig[256:] == buf(4)
    pub = card.public_key(0x9A)
    pub.verify(bytes(sig[:256]), b"pre-boot login challenge", padding.PKCS1v15(),
               hashes.SHA256())
    with pytest.raises(InvalidSignature):
        pub.verify(bytes(sig[:256]), b"another challenge", padding.PKCS1v15(), hashes.SHA256())
    assert edge.SignData(h, 1, E.SC_EDGE_RSA_SIGNATURE, SHA256, E.EFI_PADDING_RSASSA_PSS_GUID,
                         digest, sig) == EFI_SUCCESS
    pub.verify(bytes(sig[:256]), b"pre-boot login challenge",
               padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    d384 = hashlib.sha384(b"x").digest()
    assert edge.SignData(h, 1, E.SC_EDGE_RSA_SIGNATURE, E.EFI_HASH_ALGORITHM_SHA384_GUID,
                         PKCS1, d384, sig) == EFI_SUCCESS
    pub.verify(bytes(sig[:256]), b"x", padding.PKCS1v15(), hashes.SHA384())


def test_sign_ecdsa_needs_the_pin_before_each_use(env):
    em, card, edge = env()
    h = connect(edge)
    digest = hashlib.sha256(b"ecdsa").digest()
    sig = buf(64)
    verify(edge, h)
    assert edge.SignData(h, 2, E.SC_EDGE_ECDSA_256, SHA256, PKCS1, digest, sig) == EFI_SUCCESS
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    card.public_key(0x9C).verify(encode_dss_signature(r, s), b"ecdsa", ec.ECDSA(hashes.SHA256()))
    # key 9C is PIN Always: the next signature needs another VerifyPin
    assert edge.SignData(h, 2, E.SC_EDGE_ECDSA_256, SHA256, PKCS1, digest, sig) == \
        EFI_ACCESS_DENIED
    verify(edge, h)
    assert edge.SignData(h, 2, E.SC_EDGE_ECDSA_256, SHA256, PKCS1, digest, sig) == EFI_SUCCESS


def test_sign_invalid_parameters(env):
    em, card, edge = env()
    h = connect(edge)
    verify(edge, h)
    d = bytes(32)
    sig = buf(256)
    RS = E.SC_EDGE_RSA_SIGNATURE
    cases = [
        (h + 1, 1, RS, SHA256, PKCS1, d, sig),                       # no connection
        (h, 9, RS, SHA256, PKCS1, d, sig),                           # KeyId not valid
        (h, 1, E.SC_EDGE_ECDSA_256, SHA256, PKCS1, d, sig),          # KeyType not KeyId's
        (h, 3, E.SC_EDGE_RSA_EXCHANGE, SHA256, PKCS1, d, sig),       # not a signature key
        (h, 1, RS, None, PKCS1, d, sig),                             # HashAlgorithm NULL
        (h, 1, RS, "11111111-2222-3333-4444-555555555555", PKCS1, d, sig),
        (h, 1, RS, SHA256, None, d, sig),                            # PaddingMethod NULL
        (h, 1, RS, SHA256, E.EFI_PADDING_RSAES_OAEP_GUID, d, sig),   # not a signature padding
        (h, 1, RS, SHA256, PKCS1, None, sig),                        # HashedData NULL
        (h, 1, RS, SHA256, PKCS1, bytes(20), sig),                   # not a SHA-256 value
        (h, 1, RS, SHA256, PKCS1, d, None),                          # SignatureData NULL
        (h, 1, RS, SHA256, PKCS1, d, bytearray(100)),                # too short for the key
    ]
    for args in cases:
        assert edge.SignData(*args) == EFI_INVALID_PARAMETER, args[1:4]
    assert sig == buf(256)
    em.remove_card(0)
    assert edge.SignData(h, 1, RS, SHA256, PKCS1, d, sig) == EFI_NO_MEDIA


def test_decrypt_pkcs1_oaep_and_raw(env):
    em, card, edge = env()
    h = connect(edge)
    pub = card.public_key(0x9D)
    secret = b"disk key 0123456789abcdef"
    ct = pub.encrypt(secret, padding.PKCS1v15())
    out = buf(300)
    assert edge.DecryptData(h, 3, SHA256, E.EFI_PADDING_RSAES_PKCS1V1P5_GUID, len(ct), ct, 300,
                            out) == (EFI_ACCESS_DENIED, 300)
    verify(edge, h)
    assert edge.DecryptData(h, 3, SHA256, E.EFI_PADDING_RSAES_PKCS1V1P5_GUID, len(ct), ct, 300,
                            out) == (EFI_SUCCESS, len(secret))
    assert bytes(out[:len(secret)]) == secret and out[len(secret):] == buf(300 - len(secret))
    ct = pub.encrypt(secret, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                          algorithm=hashes.SHA256(), label=None))
    out = buf(300)
    assert edge.DecryptData(h, 3, SHA256, E.EFI_PADDING_RSAES_OAEP_GUID, len(ct), ct, 300,
                            out) == (EFI_SUCCESS, len(secret))
    assert bytes(out[:len(secret)]) == secret
    # no padding: the raw RSA result, 256 bytes
    ct = pub.encrypt(secret, padding.PKCS1v15())
    assert edge.DecryptData(h, 3, SHA256, E.EFI_PADDING_NONE_GUID, len(ct), ct, 300,
                            out) == (EFI_SUCCESS, 256)
    assert bytes(out[:2]) == b"\x00\x02" and bytes(out[256 - len(secret):256]) == secret
    # too small: the size needed, nothing written
    small = buf(8)
    assert edge.DecryptData(h, 3, SHA256, E.EFI_PADDING_RSAES_PKCS1V1P5_GUID, len(ct), ct, 8,
                            small) == (EFI_BUFFER_TOO_SMALL, len(secret))
    assert small == buf(8)


def test_decrypt_invalid_parameters(env):
    em, card, edge = env()
    h = connect(edge)
    verify(edge, h)
    ct = bytes(255) + b"\x01"
    P = E.EFI_PADDING_RSAES_PKCS1V1P5_GUID
    cases = [
        (h, 1, SHA256, P, 256, ct, 300, buf(300)),                 # key not SC_EDGE_RSA_EXCHANGE
        (h, 7, SHA256, P, 256, ct, 300, buf(300)),                 # KeyId not valid
        (h, 3, None, P, 256, ct, 300, buf(300)),                   # HashAlgorithm NULL
        (h, 3, "1-2", P, 256, ct, 300, buf(300)),                  # HashAlgorithm not valid
        (h, 3, SHA256, None, 256, ct, 300, buf(300)),              # PaddingMethod NULL
        (h, 3, SHA256, PKCS1, 256, ct, 300, buf(300)),             # a signature padding
        (h, 3, SHA256, P, 0, ct, 300, buf(300)),                   # EncryptedSize 0
        (h, 3, SHA256, P, 256, None, 300, buf(300)),               # EncryptedData NULL
        (h, 3, SHA256, P, 256, ct, None, buf(300)),                # PlaintextSize NULL
        (h, 3, SHA256, P, 256, ct, 300, None),                     # PlaintextData NULL
        (h + 1, 3, SHA256, P, 256, ct, 300, buf(300)),             # no connection
    ]
    for args in cases:
        assert edge.DecryptData(*args)[0] == EFI_INVALID_PARAMETER, args[1:4]


def test_oaep_and_pss_need_a_hash_function(env):
    em, card, edge = env()
    edge.hash_functions = {}
    h = connect(edge)
    verify(edge, h)
    assert edge.SignData(h, 1, E.SC_EDGE_RSA_SIGNATURE, SHA256, E.EFI_PADDING_RSASSA_PSS_GUID,
                         bytes(32), buf(256)) == EFI_UNSUPPORTED


def test_dh_agreement_checked_on_the_host(env):
    em, card, edge = env()
    h = connect(edge)
    mine = ec.generate_private_key(ec.SECP256R1())
    pt = mine.public_key().public_numbers()
    qx = pt.x.to_bytes(32, "big")
    qy = pt.y.to_bytes(32, "big")
    z = buf(40)
    assert edge.BuildDHAgreement(h, 4, qx, qy, z) == EFI_ACCESS_DENIED
    verify(edge, h)
    assert edge.BuildDHAgreement(h, 4, qx, qy, z) == EFI_SUCCESS
    assert bytes(z[:32]) == mine.exchange(ec.ECDH(), card.public_key(0x82)) and z[32:] == buf(8)
    assert edge.BuildDHAgreement(h, 2, qx, qy, z) == EFI_INVALID_PARAMETER   # not an ECDH key
    assert edge.BuildDHAgreement(h, 9, qx, qy, z) == EFI_INVALID_PARAMETER
    assert edge.BuildDHAgreement(h, 4, None, qy, z) == EFI_INVALID_PARAMETER
    assert edge.BuildDHAgreement(h, 4, qx, None, z) == EFI_INVALID_PARAMETER
    assert edge.BuildDHAgreement(h, 4, qx, qy, None) == EFI_INVALID_PARAMETER
    assert edge.BuildDHAgreement(h, 4, qx, qy, bytearray(16)) == EFI_INVALID_PARAMETER
    assert edge.BuildDHAgreement(h, 4, qx, bytes(32), z) == EFI_INVALID_PARAMETER  # off curve
    assert edge.BuildDHAgreement(h + 1, 4, qx, qy, z) == EFI_INVALID_PARAMETER


# ================================================================ helpers

def test_certificate_key_and_ecdsa_conversion():
    card = AuthCard(seed=SEED, rsa_bits=1024)
    assert E.certificate_key(card.certs[0x9A]) == ("rsa", 1024)
    assert E.certificate_key(card.certs[0x9C]) == ("ec", 256)
    der = encode_dss_signature(5, (1 << 255) + 7)
    raw = E.ecdsa_der_to_raw(der, 32)
    assert raw == (5).to_bytes(32, "big") + ((1 << 255) + 7).to_bytes(32, "big")
    with pytest.raises(E.EdgeError):
        E.ecdsa_der_to_raw(b"\x30\x03\x02\x01", 32)
    with pytest.raises(E.EdgeError):
        E.certificate_key(b"\x04\x00")


# ================================================================ decoders on arbitrary bytes


@given(st.binary(max_size=300))
def test_decoders_return_a_value_or_edge_error(data):
    for fn in (E.tlv_items, E.certificate_key, lambda d: E.ecdsa_der_to_raw(d, 32),
               E.parse_credentials, E.eme_pkcs1_v15_decode,
               lambda d: E.eme_oaep_decode(hashlib.sha256, 32, d)):
        try:
            fn(data)
        except E.EdgeError:
            pass


@given(st.lists(st.tuples(st.integers(1, 0xFE).filter(lambda t: t & 0x1F != 0x1F),
                          st.binary(max_size=300)), max_size=5))
def test_tlv_round_trip(items):
    raw = b"".join(E.tlv(t, v) for t, v in items)
    assert E.tlv_items(raw) == items


def test_paddings_match_cryptography():
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(65537, 1024)
    n = key.private_numbers().public_numbers.n
    d = key.private_numbers().d
    digest = hashlib.sha256(b"m").digest()
    em = E.emsa_pkcs1_v15(E.HASHES[2][3], digest, 128)
    sig = pow(int.from_bytes(em, "big"), d, n).to_bytes(128, "big")
    key.public_key().verify(sig, b"m", padding.PKCS1v15(), hashes.SHA256())
    em = E.emsa_pss(hashlib.sha256, 32, digest, 1024, os.urandom(32))
    sig = pow(int.from_bytes(em, "big"), d, n).to_bytes(128, "big")
    key.public_key().verify(sig, b"m", padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                   salt_length=32), hashes.SHA256())
    ct = key.public_key().encrypt(b"secret", padding.OAEP(padding.MGF1(hashes.SHA1()),
                                                          hashes.SHA1(), None))
    em = pow(int.from_bytes(ct, "big"), d, n).to_bytes(128, "big")
    assert E.eme_oaep_decode(hashlib.sha1, 20, em) == b"secret"


# ================================================================ the firmware app on CPython

def test_facade_app_runs_over_the_stand_in_host(env, capsys):
    from ccidkit.uefi.fw.apps import facade_tests
    em, card, edge = env()
    assert facade_tests.main([]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("facade: ")]
    got = dict((l.split(" ")[1], l.split(" ")[2]) for l in lines)
    assert got["done"] == "EFI_SUCCESS"
    assert got["edge.sign"] == "EFI_SUCCESS" and got["edge.verify.right"] == "EFI_SUCCESS"
    sig = bytes.fromhex([l for l in lines if l.startswith("facade: edge.sign EFI")][0].split()[3])
    card.public_key(0x9A).verify(sig, facade_tests.CHALLENGE, padding.PKCS1v15(),
                                 hashes.SHA256())
    assert not [l for l in lines if "123456" in l]          # no PIN in the output


def test_a_reader_held_through_the_reader_protocol_is_left_alone(env):
    em, card, edge = env()
    sc = edge.readers[0]
    assert sc.SCardConnect(R.SCARD_AM_READER, 0, 0)[0] == EFI_SUCCESS
    assert edge.GetContext(None, None, None, None)[3] == 0
    assert edge.Connect() == (EFI_NO_MEDIA, None)
    assert sc.connected and sc.access_mode == R.SCARD_AM_READER
    sc.SCardDisconnect(R.SCARD_CA_NORESET)
    assert edge.Connect()[0] == EFI_SUCCESS
