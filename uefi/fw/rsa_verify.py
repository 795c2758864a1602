"""RSA signature verification, PKCS #1 v1.5 with SHA-256, in the portable subset.

    from ccidkit.uefi.fw.rsa_verify import RsaPublicKey, sha256, verify_pkcs1_v15_sha256
    key = RsaPublicKey(n, e)                         # ints (the enrolled key)
    ok = verify_pkcs1_v15_sha256(key, message, signature)   # True or False, never raises
                                                            # for any signature bytes

Only big ints are needed: the RSA public operation is square-and-multiply
(RFC 8017 §5.2.2 RSAVP1), the encoding is EMSA-PKCS1-v1_5 (§9.2) and the
comparison is the whole encoded block (§8.2.2 step 3-4), so no parser of
the signature's content is involved. SHA-256: the runtime's ``hashlib``
when there is one (the firmware's MicroPython WASI build has
``hashlib.sha256`` and nothing else: no sha1, no md5), else
``sha256_portable`` (FIPS 180-4, written here; the two agree).

A malformed key is ``RsaVerifyError`` (name BAD_KEY); a signature of any
content or length is just True or False.
"""

from ccidkit.core.errors import CcidkitError

try:
    from hashlib import sha256 as _hashlib_sha256
except ImportError:
    _hashlib_sha256 = None

# RFC 8017 §9.2 note 1: the DER of DigestInfo for SHA-256, before the 32-byte hash
SHA256_DIGEST_INFO = bytes((0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                            0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20))

MIN_MODULUS_BYTES = 64            # 512 bits: below that, not a key we take
MAX_MODULUS_BYTES = 1024          # 8192 bits


class RsaVerifyError(CcidkitError):
    """A public key that cannot be used (name BAD_KEY) or a bad argument (BAD_ARGUMENT)."""


# ---------------------------------------------------------------- SHA-256 (FIPS 180-4)

_K = (
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
)
# FIPS 180-4 §5.3.3
_H0 = (0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
       0x5be0cd19)
_M32 = 0xFFFFFFFF


def _rotr(x, n):
    return ((x >> n) | (x << (32 - n))) & _M32


def _compress(h, block):
    # FIPS 180-4 §6.2.2
    w = [0] * 64
    for t in range(16):
        i = 4 * t
        w[t] = (block[i] << 24) | (block[i + 1] << 16) | (block[i + 2] << 8) | block[i + 3]
    for t in range(16, 64):
        x = w[t - 15]
        y = w[t - 2]
        s0 = _rotr(x, 7) ^ _rotr(x, 18) ^ (x >> 3)
        s1 = _rotr(y, 17) ^ _rotr(y, 19) ^ (y >> 10)
        w[t] = (w[t - 16] + s0 + w[t - 7] + s1) & _M32
    a, b, c, d, e, f, g, hh = h
    for t in range(64):
        t1 = (hh + (_rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)) + ((e & f) ^ (~e & g))
              + _K[t] + w[t]) & _M32
        t2 = ((_rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) & _M32
        hh = g
        g = f
        f = e
        e = (d + t1) & _M32
        d = c
        c = b
        b = a
        a = (t1 + t2) & _M32
    return [(h[0] + a) & _M32, (h[1] + b) & _M32, (h[2] + c) & _M32, (h[3] + d) & _M32,
            (h[4] + e) & _M32, (h[5] + f) & _M32, (h[6] + g) & _M32, (h[7] + hh) & _M32]


def sha256(data):
    """The SHA-256 digest (32 bytes) of ``data`` (bytes, bytearray or memoryview)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise RsaVerifyError("sha256 wants bytes", None, "BAD_ARGUMENT")
    if _hashlib_sha256 is not None:
        return _hashlib_sha256(bytes(data)).digest()
    return sha256_portable(data)


def sha256_portable(data):
    """SHA-256 in plain Python (FIPS 180-4), for runtimes without hashlib."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise RsaVerifyError("sha256 wants bytes", None, "BAD_ARGUMENT")
    data = bytes(data)
    n = len(data)
    # §5.1.1: a 1 bit, zeros to 56 mod 64 bytes, the length in bits as 64 bits
    pad = b"\x80" + bytes((55 - n) % 64)
    bits = n * 8
    length = bytes(((bits >> s) & 0xFF) for s in (56, 48, 40, 32, 24, 16, 8, 0))
    msg = data + pad + length
    h = list(_H0)
    for i in range(0, len(msg), 64):
        h = _compress(h, msg[i:i + 64])
    out = bytearray(32)
    for i in range(8):
        v = h[i]
        out[4 * i] = (v >> 24) & 0xFF
        out[4 * i + 1] = (v >> 16) & 0xFF
        out[4 * i + 2] = (v >> 8) & 0xFF
        out[4 * i + 3] = v & 0xFF
    return bytes(out)


# ---------------------------------------------------------------- RSA

def _byte_len(n):
    k = 0
    while n > 0 and k <= MAX_MODULUS_BYTES:
        n >>= 8
        k += 1
    return k


def _powmod(base, exp, mod):
    # left-to-right square and multiply; the exponent is public
    result = 1
    bits = []
    while exp > 0:
        bits.append(exp & 1)
        exp >>= 1
    for i in range(len(bits) - 1, -1, -1):
        result = (result * result) % mod
        if bits[i]:
            result = (result * base) % mod
    return result


class RsaPublicKey:
    """An RSA public key (n, e) checked for size and shape."""

    def __init__(self, n, e):
        if not isinstance(n, int) or not isinstance(e, int) or isinstance(n, bool) \
                or isinstance(e, bool):
            raise RsaVerifyError("n and e must be ints", None, "BAD_KEY")
        if n <= 0 or n % 2 == 0:
            raise RsaVerifyError("the modulus must be odd and positive", None, "BAD_KEY")
        k = _byte_len(n)
        if not MIN_MODULUS_BYTES <= k <= MAX_MODULUS_BYTES:
            raise RsaVerifyError("modulus of %d bytes (%d..%d taken)"
                                 % (k, MIN_MODULUS_BYTES, MAX_MODULUS_BYTES), None, "BAD_KEY")
        if e < 3 or e % 2 == 0 or e >= n:
            raise RsaVerifyError("the public exponent must be odd, 3 <= e < n", None, "BAD_KEY")
        self.n = n
        self.e = e
        self.size = k          # k of RFC 8017: the modulus length in bytes

    def fingerprint(self):
        """SHA-256 of the modulus (k bytes, big-endian) as hex: a short name for the key."""
        return sha256(self.n.to_bytes(self.size, "big")).hex()

    def __repr__(self):
        return "RsaPublicKey(%d bits, e=%d)" % (self.size * 8, self.e)


def emsa_pkcs1_v15_sha256(digest, k):
    """EM = 00 01 FF..FF 00 DigestInfo(SHA-256, digest), k bytes (RFC 8017 §9.2)."""
    if not isinstance(digest, (bytes, bytearray)) or len(digest) != 32:
        raise RsaVerifyError("a SHA-256 digest has 32 bytes", None, "BAD_ARGUMENT")
    t = SHA256_DIGEST_INFO + bytes(digest)
    if k < len(t) + 11:
        raise RsaVerifyError("modulus too short for SHA-256", None, "BAD_ARGUMENT")
    return b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t


def rsavp1(key, signature):
    """s^e mod n as k bytes (RFC 8017 §5.2.2), or None when the signature is not an
    integer below n of exactly k bytes (§8.2.2 step 1 and RSAVP1 step 1)."""
    if not isinstance(signature, (bytes, bytearray, memoryview)):
        return None
    signature = bytes(signature)
    if len(signature) != key.size:
        return None
    s = int.from_bytes(signature, "big")
    if s >= key.n:
        return None
    return _powmod(s, key.e, key.n).to_bytes(key.size, "big")


def verify_pkcs1_v15_sha256(key, message, signature):
    """True when ``signature`` is the RSASSA-PKCS1-v1_5 SHA-256 signature of
    ``message`` under ``key`` (RFC 8017 §8.2.2); False for anything else."""
    if not isinstance(key, RsaPublicKey):
        raise RsaVerifyError("key must be an RsaPublicKey", None, "BAD_ARGUMENT")
    em = rsavp1(key, signature)
    if em is None:
        return False
    expected = emsa_pkcs1_v15_sha256(sha256(message), key.size)
    # the whole block compared, every byte looked at
    diff = 0
    for i in range(key.size):
        diff |= em[i] ^ expected[i]
    return diff == 0
