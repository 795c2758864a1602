"""Key pairs and X.509 certificates for the authentication card.

With a ``seed`` every key is derived deterministically (the same seed gives
the same RSA and EC keys on every machine), so tests can compare against
known public keys; without one the keys come from the OS random generator.
Certificates are self-signed with the slot's own key (an EC certificate's
signature is randomised by ECDSA, so only its key is deterministic); the
card image stores them, so a card keeps its keys across restarts.

Host-side crypto only: CPython with ``cryptography``.
"""

import datetime
import hashlib
import hmac

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

RSA_EXPONENT = 65537
# Miller-Rabin rounds for a candidate prime of a deterministic key (error < 4^-40).
MR_ROUNDS = 40
# A seeded 1024-bit prime search ends well before this; it bounds the loop.
MAX_CANDIDATES = 100000

_SMALL_PRIMES = []


def _small_primes():
    if not _SMALL_PRIMES:
        sieve = bytearray([1]) * 2000
        for i in range(2, 2000):
            if sieve[i]:
                _SMALL_PRIMES.append(i)
                for j in range(i * i, 2000, i):
                    sieve[j] = 0
    return _SMALL_PRIMES


class Drbg:
    """A byte stream from HMAC-SHA256 in counter mode, keyed by seed and label."""

    def __init__(self, seed, label):
        if isinstance(seed, str):
            seed = seed.encode("utf-8")
        self._key = hmac.new(bytes(seed), label.encode("ascii"), hashlib.sha256).digest()
        self._counter = 0

    def read(self, n):
        out = bytearray()
        while len(out) < n:
            self._counter += 1
            out += hmac.new(self._key, self._counter.to_bytes(8, "big"), hashlib.sha256).digest()
        return bytes(out[:n])

    def integer(self, bits):
        n = (bits + 7) // 8
        v = int.from_bytes(self.read(n), "big")
        return v >> (n * 8 - bits)


def _probably_prime(n, drbg):
    for p in _small_primes():
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(MR_ROUNDS):
        a = 2 + drbg.integer(n.bit_length()) % (n - 3)
        x = pow(a, d, n)
        if x == 1 or x == n - 1:
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits, drbg):
    for _ in range(MAX_CANDIDATES):
        c = drbg.integer(bits) | (3 << (bits - 2)) | 1     # top two bits: n has 2*bits bits
        if (c - 1) % RSA_EXPONENT == 0:
            continue
        if _probably_prime(c, drbg):
            return c
    raise ValueError("no prime found within %d candidates" % MAX_CANDIDATES)


def rsa_key(bits=2048, seed=None, label="rsa"):
    """An RSA private key; deterministic from ``seed`` and ``label`` when a seed is given."""
    if seed is None:
        return rsa.generate_private_key(public_exponent=RSA_EXPONENT, key_size=bits)
    drbg = Drbg(seed, label)
    for _ in range(16):
        p = _prime(bits // 2, drbg)
        q = _prime(bits - bits // 2, drbg)
        if p == q:
            continue
        if p < q:
            p, q = q, p
        n = p * q
        if n.bit_length() != bits:
            continue
        phi = (p - 1) * (q - 1)
        d = pow(RSA_EXPONENT, -1, phi)
        pub = rsa.RSAPublicNumbers(RSA_EXPONENT, n)
        priv = rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                                     rsa.rsa_crt_iqmp(p, q), pub)
        return priv.private_key()
    raise ValueError("no RSA key from this seed")


def ec_key(seed=None, label="ec"):
    """An EC P-256 private key; deterministic from ``seed`` and ``label`` when given."""
    curve = ec.SECP256R1()
    if seed is None:
        return ec.generate_private_key(curve)
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    drbg = Drbg(seed, label)
    # FIPS 186-4 B.4.1: 64 extra bits make the bias negligible
    k = drbg.integer(256 + 64) % (order - 1) + 1
    return ec.derive_private_key(k, curve)


def self_signed(key, common_name, key_usage, serial):
    """A self-signed X.509 v3 certificate for ``key`` (SHA-256 signature)."""
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ccidkit"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ku = dict(digital_signature=False, content_commitment=False, key_encipherment=False,
              data_encipherment=False, key_agreement=False, key_cert_sign=False,
              crl_sign=False, encipher_only=False, decipher_only=False)
    for u in key_usage:
        ku[u] = True
    builder = (x509.CertificateBuilder()
               .subject_name(name).issuer_name(name)
               .public_key(key.public_key())
               .serial_number(serial)
               .not_valid_before(datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc))
               .not_valid_after(datetime.datetime(2044, 1, 1, tzinfo=datetime.timezone.utc))
               .add_extension(x509.KeyUsage(**ku), critical=True))
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.DER)


def key_to_der(key):
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def key_from_der(der):
    return serialization.load_der_private_key(der, password=None)
