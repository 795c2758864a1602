"""uefi/fw/rsa_verify.py: SHA-256 and RSASSA-PKCS1-v1_5 verification against
the cryptography package, and the same module under the MicroPython binary."""

import hashlib
import os
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given, settings, strategies as st

from ccidkit.uefi.fw import rsa_verify as R
from mpstage import REPO, micropython_path

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUB = KEY.public_key().public_numbers()
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def sign(message, key=KEY):
    return key.sign(message, padding.PKCS1v15(), hashes.SHA256())


def test_sha256_matches_hashlib_at_every_padding_boundary():
    for n in list(range(0, 130)) + [1000, 4096]:
        data = bytes((i * 37 + n) & 0xFF for i in range(n))
        assert R.sha256_portable(data) == hashlib.sha256(data).digest(), n
        assert R.sha256(data) == hashlib.sha256(data).digest(), n
    assert R.sha256_portable(b"abc").hex() == \
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"   # FIPS 180-4 example
    assert R.sha256_portable(bytearray(b"abc")) == R.sha256_portable(memoryview(b"abc"))
    with pytest.raises(R.RsaVerifyError):
        R.sha256_portable("text")


def test_good_signature_verifies_and_any_change_is_refused():
    key = R.RsaPublicKey(PUB.n, PUB.e)
    assert key.size == 256
    msg = os.urandom(32)
    sig = sign(msg)
    assert R.verify_pkcs1_v15_sha256(key, msg, sig) is True
    for i in (0, 1, 100, 255):
        bad = bytearray(sig)
        bad[i] ^= 0x01
        assert R.verify_pkcs1_v15_sha256(key, msg, bytes(bad)) is False
    assert R.verify_pkcs1_v15_sha256(key, msg + b"x", sig) is False
    assert R.verify_pkcs1_v15_sha256(key, msg, sign(msg, OTHER)) is False
    other = OTHER.public_key().public_numbers()
    assert R.verify_pkcs1_v15_sha256(R.RsaPublicKey(other.n, other.e), msg, sig) is False
    assert R.verify_pkcs1_v15_sha256(key, msg, sig[1:]) is False           # k-1 bytes
    assert R.verify_pkcs1_v15_sha256(key, msg, b"\x00" + sig) is False     # k+1 bytes
    assert R.verify_pkcs1_v15_sha256(key, msg, PUB.n.to_bytes(256, "big")) is False   # s >= n


def test_encoding_is_rfc8017_and_matches_the_raw_public_operation():
    key = R.RsaPublicKey(PUB.n, PUB.e)
    msg = b"challenge"
    em = R.emsa_pkcs1_v15_sha256(hashlib.sha256(msg).digest(), 256)
    assert em[:2] == b"\x00\x01" and em[2:204] == b"\xff" * 202 and em[204] == 0
    assert em[205:224].hex() == "3031300d060960864801650304020105000420"
    assert R.rsavp1(key, sign(msg)) == em
    # a PSS signature of the same message is not a PKCS #1 v1.5 one
    pss = KEY.sign(msg, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    assert R.verify_pkcs1_v15_sha256(key, msg, pss) is False


def test_bad_keys_and_arguments_are_named_errors():
    for n, e in ((PUB.n, 2), (PUB.n, 1), (PUB.n + 1, 65537), (0, 65537), (2 ** 300 + 1, 65537),
                 (PUB.n, PUB.n + 2), ("1", 3), (True, 3)):
        with pytest.raises(R.RsaVerifyError) as ei:
            R.RsaPublicKey(n, e)
        assert ei.value.name == "BAD_KEY"
    with pytest.raises(R.RsaVerifyError) as ei:
        R.verify_pkcs1_v15_sha256((PUB.n, PUB.e), b"m", b"s")
    assert ei.value.name == "BAD_ARGUMENT"
    with pytest.raises(R.RsaVerifyError):
        R.sha256("text")
    with pytest.raises(R.RsaVerifyError):
        R.emsa_pkcs1_v15_sha256(b"\x00" * 31, 256)


@settings(max_examples=150)
@given(st.binary(max_size=300), st.binary(max_size=64))
def test_any_signature_bytes_give_a_bool(sig, msg):
    key = R.RsaPublicKey(PUB.n, PUB.e)
    assert R.verify_pkcs1_v15_sha256(key, msg, sig) is False


def test_same_module_under_micropython(tmp_path):
    exe = micropython_path()
    if exe is None:
        pytest.skip("micropython binary not installed")
    stage = tmp_path / "stage"
    (stage / "ccidkit" / "uefi").mkdir(parents=True)
    os.symlink(os.path.join(REPO, "core"), stage / "ccidkit" / "core")
    os.symlink(os.path.join(REPO, "uefi", "fw"), stage / "ccidkit" / "uefi" / "fw")
    msg = b"pre-boot challenge"
    sig = sign(msg)
    script = tmp_path / "check.py"
    script.write_text(
        "from ccidkit.uefi.fw import rsa_verify as R\n"
        "k = R.RsaPublicKey(%d, %d)\n"
        "sig = bytes.fromhex(%r)\n"
        "print(R.sha256_portable(b'abc').hex(), R.sha256(b'abc') == R.sha256_portable(b'abc'))\n"
        "print(R.verify_pkcs1_v15_sha256(k, %r, sig))\n"
        "bad = bytearray(sig); bad[7] ^= 4\n"
        "print(R.verify_pkcs1_v15_sha256(k, %r, bytes(bad)))\n"
        "print(k.fingerprint())\n" % (PUB.n, PUB.e, sig.hex(), msg, msg))
    env = dict(os.environ, MICROPYPATH=str(stage))
    proc = subprocess.run([exe, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fp = hashlib.sha256(PUB.n.to_bytes(256, "big")).hexdigest()
    assert proc.stdout.split() == [hashlib.sha256(b"abc").hexdigest(), "True", "True", "False", fp]
