"""preboot-auth: smart-card login before the operating system starts.

    preboot-auth [--attempts N] [--wait-s S] [--pin-timeout-s S] [--no-handover]

Waits for a CCID reader and a card (the in-firmware driver: usb_transport +
core/driver.py through the PC/SC-like core/pcsc.py), shows the reader's name
and the ATR, selects the PIV application, reads the card's CHUID GUID and the
PIN retry counter, asks for the PIN on the console (masked ``******``),
verifies it (VERIFY 00 20 00 80, NIST SP 800-73-4 Part 2 §3.2.1), draws a
fresh 32-byte challenge from EFI_RNG_PROTOCOL, has the card sign it with the
PIV Authentication key 9A (GENERAL AUTHENTICATE, Part 2 §3.2.4; the padding
is made here, RFC 8017 §9.2, the card runs the raw RSA operation) and checks
the signature with the ENROLLED public key: the module
``ccidkit.uefi.fw.apps.enrolled_key`` (``N``, ``E``, ``LABEL``) that the
image builder embeds, so under Secure Boot the image's signature covers it.

Verdict lines (everything else starts with ``preboot-auth:``):
    PREBOOT-AUTH: SUCCESS card <CHUID GUID hex> key <fingerprint>
    PREBOOT-AUTH: REFUSED <why>          (this card cannot log in)
    PREBOOT-AUTH: FAILED <why>           (the run ends without a login)

A wrong PIN shows the tries the card has left (63Cx) and asks again; a card
whose signature does not check is refused and the app waits for another
card; a card pulled out at any point sends the app back to waiting (that is
no failed attempt). Every wait is bounded and so are the failed attempts
(``--attempts``, default 3, wrong PINs and refused cards together): after
the last one the status is non-zero. Status 0 only after a verified
signature.

After the SUCCESS line the app hands the machine over to the next boot
option (efi.boot_next(): the option after BootCurrent in BootOrder, loaded
by the firmware so Secure Boot checks it) and never comes back while that
image runs; with no next option (``no next boot option``), or when the
started image returns, the app ends with status 0. ``--no-handover`` ends
at once after SUCCESS instead (tests that want the exit marker). A failed
login never hands over: it ends the run with its non-zero status.

Status: 0 authenticated, 1 refused, 2 bad arguments, 3 no enrolled key,
4 PIN failures (attempts used up, or the PIN blocked), 5 no card in time,
6 no random source (EFI_RNG_PROTOCOL missing).
"""

import sys

from ccidkit.core.errors import CcidkitError
from ccidkit.uefi.fw import rsa_verify

STATUS_OK = 0
STATUS_REFUSED = 1
STATUS_BAD_ARGS = 2
STATUS_NO_KEY = 3
STATUS_PIN_FAILED = 4
STATUS_TIMEOUT = 5
STATUS_NO_RNG = 6

DEFAULT_ATTEMPTS = 3
DEFAULT_WAIT_S = 300
DEFAULT_PIN_TIMEOUT_S = 120
MAX_ROUNDS = 64              # card insertions/removals handled in one run
KEY_POLL_MS = 200            # console read step; card presence looked at between keys
CHALLENGE_SIZE = 32

# SP 800-73-4 Part 2: the PIV application, the PIN, the authentication key
PIV_AID = bytes((0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00))
REF_PIN = 0x80
KEY_9A = 0x9A
ALG_RSA_2048 = 0x07
TAG_CHUID = bytes((0x5F, 0xC1, 0x02))
PIN_LENGTH = 8
PIN_MIN = 6
MAX_GET_RESPONSE = 16
SHORT_MAX = 255


class CardGone(CcidkitError):
    """The card (or its reader) went away in the middle of a step."""


class CardFailure(CcidkitError):
    """The card answered something a PIV card does not (code: SW1SW2)."""


# ---------------------------------------------------------------- small TLV reader

def tlv_find(data, tag, limit=32):
    """The value of the first BER-TLV ``tag`` (bytes, 1-3 bytes) at this level, or None
    (ISO/IEC 7816-4 §5.2; bounded, None on any malformation)."""
    i = 0
    n = len(data)
    for _ in range(limit):
        if i >= n:
            return None
        start = i
        if data[i] & 0x1F == 0x1F:
            i += 1
            while i < n and data[i] & 0x80:
                i += 1
        i += 1
        if i >= n:
            return None
        t = bytes(data[start:i])
        first = data[i]
        i += 1
        if first < 0x80:
            length = first
        elif first in (0x81, 0x82, 0x83):
            m = first - 0x80
            if i + m > n:
                return None
            length = 0
            for k in range(m):
                length = (length << 8) | data[i + k]
            i += m
        else:
            return None
        if i + length > n:
            return None
        if t == tag:
            return bytes(data[i:i + length])
        i += length
    return None


def _tlv(tag, value):
    n = len(value)
    if n < 0x80:
        head = bytes((n,))
    elif n < 0x100:
        head = bytes((0x81, n))
    else:
        head = bytes((0x82, n >> 8, n & 0xFF))
    return bytes((tag,)) + head + bytes(value)


def to_hex(data):
    return " ".join("%02X" % b for b in data)


# ---------------------------------------------------------------- the PIV steps

def _sw(rsp):
    if len(rsp) < 2:
        raise CardFailure("answer shorter than a status word", None, "SHORT_ANSWER")
    return (rsp[-2] << 8) | rsp[-1]


def exchange(card, apdu):
    """One APDU with 61xx collected by GET RESPONSE and 6Cxx re-sent
    (ISO/IEC 7816-4 §5.1.3, §7.6.1); returns (data, SW)."""
    rsp = card.transmit(apdu)
    sw = _sw(rsp)
    if sw >> 8 == 0x6C and len(apdu) >= 5:
        rsp = card.transmit(bytes(apdu[:4]) + bytes(apdu[4:-1]) + bytes((sw & 0xFF,)))
        sw = _sw(rsp)
    data = bytes(rsp[:-2])
    for _ in range(MAX_GET_RESPONSE):
        if sw >> 8 != 0x61:
            return data, sw
        rsp = card.transmit(bytes((apdu[0] & 0x03, 0xC0, 0x00, 0x00, sw & 0xFF)))
        sw = _sw(rsp)
        data += bytes(rsp[:-2])
    raise CardFailure("too many GET RESPONSE rounds", sw, "GET_RESPONSE_LOOP")


def exchange_chained(card, cla, ins, p1, p2, data):
    """A command with more than 255 bytes of data as an ISO/IEC 7816-4 §5.1.1.1
    chain (CLA b5 set on every part but the last), Le=00 on the last."""
    pos = 0
    n = len(data)
    while n - pos > SHORT_MAX:
        part = data[pos:pos + SHORT_MAX]
        _, sw = exchange(card, bytes((cla | 0x10, ins, p1, p2, len(part))) + part)
        if sw != 0x9000:
            return b"", sw
        pos += SHORT_MAX
    part = data[pos:]
    return exchange(card, bytes((cla, ins, p1, p2, len(part))) + part + b"\x00")


def select_piv(card):
    data, sw = exchange(card, bytes((0x00, 0xA4, 0x04, 0x00, len(PIV_AID))) + PIV_AID + b"\x00")
    if sw != 0x9000:
        raise CardFailure("not a PIV card (SELECT %04X)" % sw, sw, "NOT_PIV")
    return data


def card_id(card):
    """The CHUID's GUID (SP 800-73-4 Part 1 Table 9, tag 34) as hex, or "unknown"."""
    data, sw = exchange(card, bytes((0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03)) + TAG_CHUID +
                        b"\x00")
    if sw != 0x9000:
        return "unknown"
    body = tlv_find(data, b"\x53")
    guid = tlv_find(body, b"\x34") if body is not None else None
    if not guid:
        return "unknown"
    return "".join("%02x" % b for b in guid)


def pin_tries(card):
    """(verified, tries left or None) from VERIFY without data (Part 2 §3.2.1)."""
    _, sw = exchange(card, bytes((0x00, 0x20, 0x00, REF_PIN)))
    if sw == 0x9000:
        return True, None
    if sw & 0xFFF0 == 0x63C0:
        return False, sw & 0x0F
    if sw == 0x6983:
        return False, 0
    return False, None


def pin_block(pin):
    """The PIN as VERIFY carries it: ASCII digits padded with FF to 8 bytes."""
    raw = pin.encode() if isinstance(pin, str) else bytes(pin)
    return raw + b"\xff" * (PIN_LENGTH - len(raw))


def verify_pin(card, pin):
    """SW of VERIFY 00 20 00 80 with the PIN."""
    _, sw = exchange(card, bytes((0x00, 0x20, 0x00, REF_PIN, PIN_LENGTH)) + pin_block(pin))
    return sw


def sign_challenge(card, key, challenge):
    """The card's RSA signature (PKCS #1 v1.5, SHA-256) of ``challenge`` with key 9A:
    (signature bytes or None, SW)."""
    em = rsa_verify.emsa_pkcs1_v15_sha256(rsa_verify.sha256(challenge), key.size)
    # Part 2 Table 7: dynamic authentication template, response asked for (82 empty),
    # challenge (81) = the block the private key is applied to
    template = _tlv(0x7C, b"\x82\x00" + _tlv(0x81, em))
    data, sw = exchange_chained(card, 0x00, 0x87, ALG_RSA_2048, KEY_9A, template)
    if sw != 0x9000:
        return None, sw
    inner = tlv_find(data, b"\x7C")
    sig = tlv_find(inner, b"\x82") if inner is not None else None
    return sig, sw


# ---------------------------------------------------------------- console

class Console:
    """Lines out, keys in. ``read_key(timeout_ms)`` -> (scan, char) or None."""

    def __init__(self, write, read_key, now_ms):
        self.write = write
        self.read_key = read_key
        self.now_ms = now_ms

    def line(self, text):
        self.write("preboot-auth: " + text + "\n")

    def verdict(self, text):
        self.write("PREBOOT-AUTH: " + text + "\n")

    def read_pin(self, card, timeout_ms):
        """Digits typed until Enter, echoed as '*' (backspace erases); None when
        the time is up. Raises CardGone when the card leaves meanwhile."""
        self.write("PIN: ")
        digits = ""
        start = self.now_ms()
        steps = timeout_ms // KEY_POLL_MS + 2
        for _ in range(steps):
            if self.now_ms() - start > timeout_ms:
                break
            k = self.read_key(KEY_POLL_MS)
            if k is None:
                if not card.present():
                    self.write("\n")
                    raise CardGone("card removed during PIN entry", None, "REMOVED")
                continue
            ch = k[1]
            if ch in ("\r", "\n"):
                self.write("\n")
                return digits
            if ch in ("\x08", "\x7f"):
                if digits:
                    digits = digits[:-1]
                    self.write("\x08 \x08")
                continue
            if "0" <= ch <= "9" and len(digits) < PIN_LENGTH:
                digits += ch
                self.write("*")
        self.write("\n")
        return None


# ---------------------------------------------------------------- the login

class Outcome:
    def __init__(self, status, message):
        self.status = status
        self.message = message


def authenticate_card(card, console, key, rng, state, pin_timeout_ms):
    """One card, from SELECT to the verdict. Returns an Outcome for a final
    answer, or None when the card was refused and another may be tried."""
    console.line("reader %s" % card.name)
    console.line("ATR %s" % to_hex(card.atr))
    select_piv(card)
    cid = card_id(card)
    # a PIN verified earlier in the card's session does not count: reset it (P1 FF)
    exchange(card, bytes((0x00, 0x20, 0xFF, REF_PIN)))
    verified, left = pin_tries(card)
    console.line("card %s (PIV), PIN tries left %s" % (cid, "?" if left is None else left))
    if left == 0:
        console.verdict("FAILED PIN blocked on card %s" % cid)
        return Outcome(STATUS_PIN_FAILED, "PIN blocked")
    while not verified:
        console.line("enter the PIN of card %s (attempt %d of %d)"
                     % (cid, state["attempt"] + 1, state["attempts"]))
        pin = console.read_pin(card, pin_timeout_ms)
        if pin is None:
            console.verdict("FAILED no PIN typed in time")
            return Outcome(STATUS_TIMEOUT, "no PIN")
        if not PIN_MIN <= len(pin) <= PIN_LENGTH:
            console.line("a PIN has %d to %d digits" % (PIN_MIN, PIN_LENGTH))
            sw = None
        else:
            sw = verify_pin(card, pin)
        pin = None
        if sw == 0x9000:
            verified = True
            console.line("PIN verified")
            break
        # a failed attempt: a wrong PIN (a card pulled, or a PIN verified, is none)
        state["attempt"] += 1
        if sw is not None and sw & 0xFFF0 == 0x63C0:
            console.line("wrong PIN: %d tries left" % (sw & 0x0F))
            if sw & 0x0F == 0:
                console.verdict("FAILED PIN blocked on card %s" % cid)
                return Outcome(STATUS_PIN_FAILED, "PIN blocked")
        elif sw == 0x6983:
            console.verdict("FAILED PIN blocked on card %s" % cid)
            return Outcome(STATUS_PIN_FAILED, "PIN blocked")
        elif sw is not None:
            console.line("VERIFY answered %04X" % sw)
        if state["attempt"] >= state["attempts"]:
            console.verdict("FAILED %d attempts used" % state["attempts"])
            return Outcome(STATUS_PIN_FAILED, "attempts used")
    challenge = rng(CHALLENGE_SIZE)
    console.line("challenge of %d bytes from EFI_RNG_PROTOCOL" % len(challenge))
    sig, sw = sign_challenge(card, key, challenge)
    if sig is None:
        state["attempt"] += 1
        console.verdict("REFUSED card %s did not sign (%04X)" % (cid, sw))
        return None
    console.line("signature of %d bytes from key 9A" % len(sig))
    if not rsa_verify.verify_pkcs1_v15_sha256(key, challenge, sig):
        state["attempt"] += 1
        console.verdict("REFUSED card %s: the signature does not match the enrolled key" % cid)
        return None
    console.verdict("SUCCESS card %s key %s" % (cid, key.fingerprint()[:16]))
    return Outcome(STATUS_OK, "authenticated")


def login(readers, console, key, rng, attempts=DEFAULT_ATTEMPTS, wait_ms=DEFAULT_WAIT_S * 1000,
          pin_timeout_ms=DEFAULT_PIN_TIMEOUT_S * 1000):
    """The whole login: wait for a card, authenticate it, start again after a
    removal or a refusal, until a verdict. Returns the status."""
    state = {"attempt": 0, "attempts": attempts}
    refused = None
    for _ in range(MAX_ROUNDS):
        if refused is not None:
            console.line("remove the card")
            if not readers.wait_removal(refused, wait_ms):
                console.verdict("FAILED the refused card stayed in the reader")
                return STATUS_REFUSED
            refused = None
        card = readers.wait_card(console, wait_ms)
        if card is None:
            console.verdict("FAILED no card within %d s" % (wait_ms // 1000))
            return STATUS_TIMEOUT
        try:
            outcome = authenticate_card(card, console, key, rng, state, pin_timeout_ms)
        except CardGone as e:
            console.line("card removed (%s); waiting for a card" % e.name)
            card.close()
            continue
        except CardFailure as e:
            console.verdict("REFUSED %s" % e.message)
            state["attempt"] += 1
            outcome = None
        if outcome is not None:
            card.close()
            return outcome.status
        if state["attempt"] >= attempts:
            card.close()
            console.verdict("FAILED %d attempts used" % attempts)
            return STATUS_REFUSED
        refused = card
    console.verdict("FAILED too many card changes")
    return STATUS_TIMEOUT


# ---------------------------------------------------------------- firmware glue

class _PcscCard:
    """One connected card through core/pcsc.py (errors -> CardGone)."""

    def __init__(self, pcsc, ctx, name, hcard, atr):
        self.pcsc = pcsc
        self.ctx = ctx
        self.name = name
        self.hcard = hcard
        self.atr = atr
        self.events = None

    def transmit(self, apdu):
        try:
            return self.pcsc.SCardTransmit(self.hcard, None, apdu)
        except self.pcsc.PCSCError as e:
            raise CardGone(e.message, e.code, e.name)

    def present(self):
        p = self.pcsc
        try:
            states = p.SCardGetStatusChange(self.ctx, 0, [(self.name, p.SCARD_STATE_UNAWARE)])
        except p.PCSCError:
            return False
        return bool(states[0][1] & p.SCARD_STATE_PRESENT)

    def close(self):
        try:
            self.pcsc.SCardDisconnect(self.hcard, self.pcsc.SCARD_UNPOWER_CARD)
        except self.pcsc.PCSCError:
            pass


class _PcscReaders:
    def __init__(self, pcsc, ctx, now_ms):
        self.pcsc = pcsc
        self.ctx = ctx
        self.now_ms = now_ms
        self.seen = []

    def _names(self):
        try:
            return self.pcsc.SCardListReaders(self.ctx)
        except self.pcsc.PCSCError:
            return []

    def wait_card(self, console, wait_ms):
        p = self.pcsc
        start = self.now_ms()
        told_reader = told_card = False
        for _ in range(wait_ms // 250 + 4):
            if self.now_ms() - start > wait_ms:
                return None
            names = self._names()
            if not names:
                if not told_reader:
                    console.line("waiting for a smart-card reader")
                    told_reader = True
                try:
                    p.SCardGetStatusChange(self.ctx, 500, [(p.PNP_NOTIFICATION, 0)])
                except p.PCSCError:
                    pass
                continue
            for n in names:
                if n not in self.seen:
                    self.seen.append(n)
                    console.line("found reader %s" % n)
            try:
                states = p.SCardGetStatusChange(self.ctx, 0, [(n, p.SCARD_STATE_UNAWARE)
                                                              for n in names])
            except p.PCSCError:
                continue
            for n, ev, atr in states:
                if ev & p.SCARD_STATE_PRESENT and not ev & p.SCARD_STATE_MUTE:
                    try:
                        hcard, _ = p.SCardConnect(self.ctx, n, p.SCARD_SHARE_EXCLUSIVE,
                                                  p.SCARD_PROTOCOL_T0 | p.SCARD_PROTOCOL_T1)
                        atr = p.SCardStatus(hcard)[3]
                    except p.PCSCError as e:
                        console.line("%s: %s" % (n, e))
                        continue
                    card = _PcscCard(p, self.ctx, n, hcard, atr)
                    card.events = (ev >> 16) & 0xFFFF
                    return card
            if not told_card:
                console.line("waiting for a card")
                told_card = True
            try:
                p.SCardGetStatusChange(self.ctx, 1000, [(n, ev) for n, ev, _ in states])
            except p.PCSCError:
                pass
        return None

    def wait_removal(self, card, wait_ms):
        p = self.pcsc
        start = self.now_ms()
        cur = p.SCARD_STATE_UNAWARE
        first = getattr(card, "events", None)     # the count when the card was taken
        for _ in range(wait_ms // 250 + 4):
            if self.now_ms() - start > wait_ms:
                break
            try:
                states = p.SCardGetStatusChange(self.ctx, 500, [(card.name, cur)])
            except p.PCSCError:
                continue                      # SCARD_E_TIMEOUT: nothing changed
            ev = states[0][1]
            count = (ev >> 16) & 0xFFFF          # the reader's card events (pcsc-lite)
            if first is None:
                first = count
            # gone, or gone and another card in already (both between two looks)
            if not ev & p.SCARD_STATE_PRESENT or count != first:
                card.close()
                return True
            cur = ev & ~p.SCARD_STATE_CHANGED
        return False


def load_enrolled_key():
    """(RsaPublicKey, label) of the image's enrolled key, or None."""
    try:
        from ccidkit.uefi.fw.apps import enrolled_key
    except ImportError:
        return None
    return rsa_verify.RsaPublicKey(enrolled_key.N, enrolled_key.E), enrolled_key.LABEL


def hand_over(console, boot_next, not_found):
    """After a verified login: start the next boot option. ``boot_next`` is
    efi.boot_next (raises an error with ``.status``; ``not_found`` is the
    status meaning "no next option"). Returns a line of what happened when
    the call comes back (no option, refused, or the started image returned)."""
    console.line("handing over to the next boot option")
    try:
        number, status = boot_next()
    except CcidkitError as e:
        if getattr(e, "status", None) == not_found:
            text = "no next boot option (%s)" % e.message
        else:
            text = "the next boot option could not be started: %s %s" % (e.name, e.message)
        console.line(text)
        return text
    text = "Boot%04X returned status %X" % (number, status)
    console.line(text)
    return text


def split_handover(argv):
    """(hand over after SUCCESS?, the other arguments): ``--no-handover`` anywhere."""
    rest = [a for a in argv if a != "--no-handover"]
    return len(rest) == len(argv), rest


def _parse(argv):
    opts = {"attempts": DEFAULT_ATTEMPTS, "wait_s": DEFAULT_WAIT_S,
            "pin_timeout_s": DEFAULT_PIN_TIMEOUT_S}
    names = {"--attempts": "attempts", "--wait-s": "wait_s", "--pin-timeout-s": "pin_timeout_s"}
    i = 0
    while i < len(argv):
        name = names.get(argv[i])
        if name is None or i + 1 >= len(argv):
            return None
        try:
            v = int(argv[i + 1])
        except ValueError:
            return None
        if not 1 <= v <= 3600:
            return None
        opts[name] = v
        i += 2
    return opts


def main(argv):
    from ccidkit.core import pcsc
    from ccidkit.uefi.fw import efi
    from ccidkit.uefi.fw.usb_transport import now_ms, usb_manager

    def write(text):
        sys.stdout.write(text)

    console = Console(write, efi.read_key, now_ms)
    handover, argv = split_handover(list(argv))
    opts = _parse(argv)
    if opts is None:
        console.line("usage: preboot-auth [--attempts N] [--wait-s S] [--pin-timeout-s S] "
                     "[--no-handover]")
        return STATUS_BAD_ARGS
    enrolled = load_enrolled_key()
    if enrolled is None:
        console.verdict("FAILED no enrolled key in this image")
        return STATUS_NO_KEY
    key, label = enrolled
    console.line("enrolled key %s RSA-%d sha256:%s" % (label, key.size * 8,
                                                       key.fingerprint()[:16]))

    def rng(n):
        return efi.random_bytes(n)

    try:
        rng(1)
    except efi.EfiError as e:
        console.verdict("FAILED no EFI_RNG_PROTOCOL (%s)" % e.name)
        return STATUS_NO_RNG
    mgr = usb_manager()
    ctx = pcsc.SCardEstablishContext(pcsc.SCARD_SCOPE_USER, mgr)
    readers = _PcscReaders(pcsc, ctx, now_ms)
    try:
        status = login(readers, console, key, rng, opts["attempts"], opts["wait_s"] * 1000,
                       opts["pin_timeout_s"] * 1000)
    finally:
        try:
            pcsc.SCardReleaseContext(ctx)
        except pcsc.PCSCError:
            pass
    # only a verified signature reaches the next boot option; the reader is
    # let go first (the next image may want it)
    if status == STATUS_OK and handover:
        hand_over(console, efi.boot_next, efi.EFI_NOT_FOUND)
    return status
