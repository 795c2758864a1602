"""The authentication card behind a real pcscd + vpcd, used by OpenSC 0.23.

The card runs in its own process (``ccidkit vicc --card auth`` inside the
private pcscd's network namespace) on a card image personalised here with a
seed, so the test knows its public keys. OpenSC must name it, list its
certificates, and sign, decrypt and derive through its PKCS#11 module after
a PIN login; a wrong PIN costs one try, and the count survives restarting
the card process.

The private pcscd runs without APDU logging: its log would hold the PIN.
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

from ccidkit.emu.cards.auth import AuthCard
from ccidkit.emu.pcscd import private_pcscd, unavailable_reason, vpcd_reader

SEED = b"ccidkit auth card, OpenSC test"
PORT = 35963
WAIT = 15.0
TOOL_TIMEOUT = 120
CHALLENGE = b"pre-boot login challenge 0002"
SELECT_PIV = "00:A4:04:00:05:A0:00:00:03:08"


def _pkcs11_module():
    for path in sorted(glob.glob("/usr/lib/*/opensc-pkcs11.so")) + \
            sorted(glob.glob("/usr/lib/*/pkcs11/opensc-pkcs11.so")):
        return path
    return None


MODULE = _pkcs11_module()


@pytest.fixture(scope="module")
def env():
    reason = unavailable_reason()
    if reason:
        pytest.skip("private pcscd: " + reason)
    for tool in ("opensc-tool", "pkcs15-tool", "pkcs11-tool", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed" % tool)
    if MODULE is None:
        pytest.skip("OpenSC's PKCS#11 module (Debian opensc-pkcs11) is not installed")
    with private_pcscd([vpcd_reader(PORT)], apdu=False) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("auth-opensc") / "auth.img")
    AuthCard(image=path, seed=SEED).close()
    return path


class CardProcess:
    """``ccidkit vicc --card auth`` in the daemon's network namespace."""

    def __init__(self, daemon, image):
        self.daemon = daemon
        self.image = image
        self.proc = None

    def start(self):
        ccidkit = os.path.join(os.path.dirname(sys.executable), "ccidkit")
        self.proc = subprocess.Popen(
            ["nsenter", "--net=" + self.daemon.netns, ccidkit, "vicc", "--card", "auth",
             "--card-image", self.image, "--port", str(PORT)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        deadline = time.monotonic() + WAIT
        while run(self.daemon, "opensc-tool", "-a").returncode != 0:
            assert self.proc.poll() is None, self.proc.stderr.read()
            assert time.monotonic() < deadline, "the card never appeared"
            time.sleep(0.2)

    def stop(self):
        if self.proc is None:
            return
        try:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(WAIT) == 0
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(WAIT)
            self.proc.stderr.close()
            self.proc = None
        deadline = time.monotonic() + WAIT
        while run(self.daemon, "opensc-tool", "-a").returncode == 0:
            assert time.monotonic() < deadline, "the card was never removed"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def card(env, image):
    proc = CardProcess(env, image)
    proc.start()
    yield proc
    proc.stop()


def run(daemon, *argv):
    return subprocess.run(list(argv), env=daemon.client_env(), capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT)


def pkcs11(daemon, *argv):
    return run(daemon, "pkcs11-tool", "--module", MODULE, *argv)


def test_opensc_names_the_card(env, card):
    r = run(env, "opensc-tool", "-n")
    assert r.returncode == 0
    assert r.stdout.strip() == "Personal Identity Verification Card"


def test_pkcs15_lists_the_certificates(env, card, image, tmp_path):
    r = run(env, "pkcs15-tool", "--list-certificates")
    assert r.returncode == 0, r.stderr
    ids = re.findall(r"^\s*ID\s*:\s*(\w+)", r.stdout, re.M)
    assert ids == ["01", "02", "03", "05"]
    assert "Certificate for PIV Authentication" in r.stdout
    out = tmp_path / "cert.pem"
    r = run(env, "pkcs15-tool", "--read-certificate", "01", "-o", str(out))
    assert r.returncode == 0, r.stderr
    cert = x509.load_pem_x509_certificate(out.read_bytes())
    keys = AuthCard(image=image)
    assert cert.public_key().public_numbers() == keys.public_key(0x9A).public_numbers()
    r = run(env, "pkcs15-tool", "--list-keys")
    assert r.returncode == 0
    assert re.search(r"Private EC Key \[Retired KEY MAN 1\].*?Usage\s*:\s*\[0x100\], derive",
                     r.stdout, re.S)


def test_pkcs11_signs_after_login(env, card, image, tmp_path):
    keys = AuthCard(image=image)
    msg = tmp_path / "challenge.bin"
    msg.write_bytes(CHALLENGE)
    sig = tmp_path / "rsa.sig"
    r = pkcs11(env, "--login", "--pin", "123456", "--sign", "--id", "01",
               "-m", "SHA256-RSA-PKCS", "-i", str(msg), "-o", str(sig))
    assert r.returncode == 0, r.stderr
    keys.public_key(0x9A).verify(sig.read_bytes(), CHALLENGE, padding.PKCS1v15(),
                                 hashes.SHA256())
    sig = tmp_path / "ec.sig"
    r = pkcs11(env, "--login", "--pin", "123456", "--sign", "--id", "02",
               "-m", "ECDSA-SHA256", "-i", str(msg), "-o", str(sig))
    assert r.returncode == 0, r.stderr
    raw = sig.read_bytes()
    assert len(raw) == 64                           # PKCS#11: r || s
    der = utils.encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                     int.from_bytes(raw[32:], "big"))
    keys.public_key(0x9C).verify(der, CHALLENGE, ec.ECDSA(hashes.SHA256()))


def test_pkcs11_decrypts_and_derives(env, card, image, tmp_path):
    keys = AuthCard(image=image)
    secret = b"volume key 0123456789abcdef0123"
    ct = tmp_path / "ct.bin"
    ct.write_bytes(keys.public_key(0x9D).encrypt(
        secret, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)))
    out = tmp_path / "pt.bin"
    r = pkcs11(env, "--login", "--pin", "123456", "--decrypt", "--id", "03",
               "-m", "RSA-PKCS-OAEP", "--hash-algorithm", "SHA256", "--mgf", "MGF1-SHA256",
               "-i", str(ct), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == secret
    host = ec.derive_private_key(0xC0FFEE, ec.SECP256R1())
    peer = tmp_path / "peer.der"
    peer.write_bytes(host.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    z = tmp_path / "z.bin"
    r = pkcs11(env, "--login", "--pin", "123456", "--derive", "--id", "05",
               "-m", "ECDH1-DERIVE", "-i", str(peer), "-o", str(z))
    assert r.returncode == 0, r.stderr
    assert z.read_bytes() == host.exchange(ec.ECDH(), keys.public_key(0x82))


def _pin_status(env):
    r = run(env, "opensc-tool", "-s", SELECT_PIV, "-s", "00:20:00:80")
    assert r.returncode == 0, r.stderr
    found = re.findall(r"SW1=0x(\w\w), SW2=0x(\w\w)", r.stdout)
    assert len(found) == 2, r.stdout
    return (int(found[1][0], 16) << 8) | int(found[1][1], 16)


def test_wrong_pin_costs_a_try_that_survives_a_restart(env, card, image, tmp_path):
    msg = tmp_path / "challenge.bin"
    msg.write_bytes(CHALLENGE)
    r = pkcs11(env, "--login", "--pin", "999999", "--sign", "--id", "01",
               "-m", "SHA256-RSA-PKCS", "-i", str(msg), "-o", str(tmp_path / "x.sig"))
    assert r.returncode != 0
    assert "CKR_PIN_INCORRECT" in r.stderr
    assert _pin_status(env) == 0x63C2
    # restart the card process: the counter comes back from the card image
    card.stop()
    assert AuthCard(image=image).pin_remaining == 2
    card.start()
    assert _pin_status(env) == 0x63C2
    # the right PIN restores the counter
    r = pkcs11(env, "--login", "--pin", "123456", "--sign", "--id", "01",
               "-m", "SHA256-RSA-PKCS", "-i", str(msg), "-o", str(tmp_path / "y.sig"))
    assert r.returncode == 0, r.stderr
    card.stop()
    assert AuthCard(image=image).pin_remaining == 3
    card.start()
    assert _pin_status(env) == 0x63C3
