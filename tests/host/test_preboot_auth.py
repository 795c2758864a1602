"""The preboot-auth app's login logic on CPython, with the PIV authentication
card in process (the firmware glue, pcsc over EFI_USB_IO, is the VM tests')."""

import os

import pytest

from ccidkit.emu.cards.auth import AuthCard
from ccidkit.uefi.fw import rsa_verify
from ccidkit.uefi.fw.apps import preboot_auth as A


class FakeCard:
    def __init__(self, card, name="Test Reader 00 00", tamper=False, pull_after=None):
        self.card = card
        self.name = name
        self.atr = card.atr
        self.tamper = tamper
        self.pull_after = pull_after      # commands answered before the card "leaves"
        self.gone = False
        self.log = []
        self.closed = 0

    def transmit(self, apdu):
        if self.pull_after is not None and len(self.log) >= self.pull_after:
            self.gone = True
        if self.gone:
            raise A.CardGone("no card", 0x80100069, "SCARD_W_REMOVED_CARD")
        rsp = bytes(self.card.process_apdu(bytes(apdu)))
        self.log.append((bytes(apdu), rsp))
        if self.tamper and apdu[1] == 0x87 and len(rsp) > 40:
            rsp = rsp[:20] + bytes((rsp[20] ^ 0x01,)) + rsp[21:]
        return rsp

    def present(self):
        return not self.gone

    def close(self):
        self.closed += 1


class FakeReaders:
    def __init__(self, cards):
        self.cards = list(cards)
        self.waits = 0
        self.removals = 0

    def wait_card(self, console, wait_ms):
        self.waits += 1
        if not self.cards:
            return None
        c = self.cards.pop(0)
        c.card.power_on() if hasattr(c.card, "power_on") else None
        return c

    def wait_removal(self, card, wait_ms):
        self.removals += 1
        return True


class Keys:
    def __init__(self, text):
        self.keys = list(text)

    def __call__(self, timeout_ms):
        if not self.keys:
            return None
        ch = self.keys.pop(0)
        return (0, ch)


def console_for(keys):
    out = []
    clock = [0]

    def now():
        clock[0] += 50
        return clock[0]
    return A.Console(out.append, Keys(keys), now), out


def enrolled(card):
    nums = card.public_key(0x9A).public_numbers()
    return rsa_verify.RsaPublicKey(nums.n, nums.e)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cards")


def new_card(tmp, name, seed):
    return AuthCard(image=str(tmp / name), seed=seed)


def test_right_pin_gives_success_with_the_chuid_and_a_masked_pin(image_dir):
    card = new_card(image_dir, "ok.img", "seed-ok")
    console, out = console_for("123456\r")
    fc = FakeCard(card)
    status = A.login(FakeReaders([fc]), console, enrolled(card), os.urandom)
    text = "".join(out)
    assert status == A.STATUS_OK, text
    guid = card.guid.hex()
    assert "PREBOOT-AUTH: SUCCESS card %s key %s\n" % (guid, enrolled(card).fingerprint()[:16]) \
        in text
    assert "PIN: ******\n" in text and "123456" not in text
    assert "preboot-auth: card %s (PIV), PIN tries left 3\n" % guid in text
    # VERIFY carried the PIN padded with FF; GENERAL AUTHENTICATE went as a two-part chain
    verifies = [a for a, _ in fc.log if a[1] == 0x20 and len(a) > 5]
    assert verifies == [bytes.fromhex("0020008008313233343536FFFF")]
    ga = [a for a, _ in fc.log if a[1] == 0x87]
    assert [a[0] for a in ga] == [0x10, 0x00] and ga[0][4] == 255 and ga[1][-1] == 0
    assert fc.closed == 1


def test_wrong_pins_count_down_and_persist_then_success(image_dir):
    card = new_card(image_dir, "wrong.img", "seed-wrong")
    key = enrolled(card)
    console, out = console_for("000000\r111111\r")
    status = A.login(FakeReaders([FakeCard(card)]), console, key, os.urandom, attempts=2)
    text = "".join(out)
    assert status == A.STATUS_PIN_FAILED, text
    assert "wrong PIN: 2 tries left" in text and "wrong PIN: 1 tries left" in text
    assert "PREBOOT-AUTH: FAILED 2 attempts used" in text and "SUCCESS" not in text
    # the counter lives in the card image: a new card process sees one try left
    again = AuthCard(image=str(image_dir / "wrong.img"))
    console, out = console_for("123456\r")
    assert A.login(FakeReaders([FakeCard(again)]), console, key, os.urandom) == A.STATUS_OK
    assert "PIN tries left 1\n" in "".join(out)


def test_other_card_and_tampered_signature_are_refused(image_dir):
    card = new_card(image_dir, "enrolled.img", "seed-enrolled")
    other = new_card(image_dir, "other.img", "seed-other")
    key = enrolled(card)
    console, out = console_for("123456\r123456\r")
    readers = FakeReaders([FakeCard(other), FakeCard(card, tamper=True)])
    status = A.login(readers, console, key, os.urandom, attempts=2)
    text = "".join(out)
    assert status == A.STATUS_REFUSED, text
    assert text.count("PREBOOT-AUTH: REFUSED card ") == 2
    assert "does not match the enrolled key" in text and "SUCCESS" not in text
    assert readers.removals == 1


def test_card_pulled_goes_back_to_waiting_then_succeeds(image_dir):
    card = new_card(image_dir, "pulled.img", "seed-pulled")
    # first round: the card leaves during the APDUs; second: it leaves at the PIN
    # prompt (no key typed, presence says gone); third: it stays and the PIN comes
    mid_apdu = FakeCard(card, pull_after=3)
    at_prompt = FakeCard(card)
    at_prompt.present = lambda: False
    stays = FakeCard(card)
    console, out = console_for("")
    keys = Keys("123456\r")
    readers = FakeReaders([mid_apdu, at_prompt, stays])
    orig = readers.wait_card

    def wait_card(c, ms):
        if readers.waits == 2:
            console.read_key = keys         # typing starts with the third insertion
        return orig(c, ms)
    readers.wait_card = wait_card
    status = A.login(readers, console, enrolled(card), os.urandom)
    text = "".join(out)
    assert status == A.STATUS_OK, text
    assert "card removed (SCARD_W_REMOVED_CARD); waiting for a card" in text
    assert "card removed (REMOVED); waiting for a card" in text
    assert readers.waits == 3 and mid_apdu.closed == at_prompt.closed == 1
    assert text.count("PREBOOT-AUTH:") == 1


def test_no_card_times_out_and_no_answer_never_succeeds(image_dir):
    console, out = console_for("")
    key = enrolled(new_card(image_dir, "none.img", "seed-none"))
    assert A.login(FakeReaders([]), console, key, os.urandom, wait_ms=1000) == A.STATUS_TIMEOUT
    assert "PREBOOT-AUTH: FAILED no card within 1 s" in "".join(out)


def test_tlv_find_on_arbitrary_bytes_and_options():
    assert A.tlv_find(bytes.fromhex("7C0482020102"), b"\x7C") == bytes.fromhex("82020102")
    assert A.tlv_find(bytes.fromhex("5FC10201AA"), bytes.fromhex("5FC102")) == b"\xAA"
    for junk in (b"", b"\x7C", b"\x7C\x05\x00", b"\x1F", b"\x7C\x84\x00\x00\x00\x01",
                 b"\x1F\xFF\xFF"):
        assert A.tlv_find(junk, b"\x7C") is None
    assert A._parse([]) == {"attempts": 3, "wait_s": 300, "pin_timeout_s": 120}
    assert A._parse(["--attempts", "1"])["attempts"] == 1
    for bad in (["--attempts"], ["--attempts", "x"], ["--attempts", "0"], ["--nope", "1"]):
        assert A._parse(bad) is None


def test_a_card_pulled_at_the_prompt_uses_no_attempt(image_dir):
    card = new_card(image_dir, "attempts.img", "seed-attempts")
    pulled = FakeCard(card)
    pulled.present = lambda: False
    console, out = console_for("")
    keys = Keys("123456\r")
    readers = FakeReaders([pulled, FakeCard(card)])
    orig = readers.wait_card

    def wait_card(c, ms):
        if readers.waits == 1:
            console.read_key = keys
        return orig(c, ms)
    readers.wait_card = wait_card
    assert A.login(readers, console, enrolled(card), os.urandom, attempts=1) == A.STATUS_OK
    text = "".join(out)
    assert text.count("(attempt 1 of 1)") == 2 and "attempt 2" not in text


class FakePcsc:
    """Just what _PcscReaders.wait_removal uses, answering from a script of states."""
    from ccidkit.core import pcsc as _p
    PCSCError = _p.PCSCError
    SCARD_STATE_UNAWARE = _p.SCARD_STATE_UNAWARE
    SCARD_STATE_PRESENT = _p.SCARD_STATE_PRESENT
    SCARD_STATE_CHANGED = _p.SCARD_STATE_CHANGED
    SCARD_UNPOWER_CARD = _p.SCARD_UNPOWER_CARD

    def __init__(self, states):
        self.states = list(states)
        self.asked = []

    def SCardGetStatusChange(self, ctx, timeout, readers):
        self.asked.append(readers[0][1])
        return [(readers[0][0], self.states.pop(0), b"")]

    def SCardDisconnect(self, h, disposition):
        pass


def test_wait_removal_sees_a_quick_swap_by_the_event_count():
    P = FakePcsc._p.SCARD_STATE_PRESENT
    clock = iter(range(0, 100000, 10))
    # the card stays (count 5), then a swap happened between two looks (count 7, present)
    fake = FakePcsc([P | (5 << 16), P | (5 << 16), P | (7 << 16)])
    readers = A._PcscReaders(fake, 1, lambda: next(clock))
    card = A._PcscCard(fake, 1, "R 00 00", 2, b"\x3b\x00")
    card.events = 5
    assert readers.wait_removal(card, 60000) is True
    assert fake.asked == [0, P | (5 << 16), P | (5 << 16)]     # UNAWARE, then the last state
    # a card that stays present with the same count keeps the app waiting (bounded)
    fake = FakePcsc([P | (5 << 16)] * 400)
    readers = A._PcscReaders(fake, 1, lambda: next(clock))
    assert readers.wait_removal(card, 1000) is False
    # an empty slot is a removal
    fake = FakePcsc([0x10 | (6 << 16)])
    assert A._PcscReaders(fake, 1, lambda: next(clock)).wait_removal(card, 1000) is True
