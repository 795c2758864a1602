"""The pre-boot authentication demo in QEMU (marker vm): five boots in all.

1. card inserted late, pulled at the PIN prompt, put back, a wrong PIN with one
   attempt allowed: tries shown, status 4;
2. the same card image after the restart, through `ccidkit uefi demo
   --secure-boot` (signed image, our certificate in db): one try less shown,
   the right PIN, SUCCESS, then the hand-over: the signed next stage (Boot0001)
   passes Secure Boot's check, runs and exits 0;
3. a tampered signature, then a card whose key is not the enrolled one: both
   refused, status 1, never SUCCESS;
4. Secure Boot with the unsigned image: the firmware refuses it and the unsigned
   next stage, the app never starts;
5. `ccidkit uefi demo --reader emulated:gemalto-pctwin` (usb-redir): exit 0.
"""

import re
import shutil

import pytest

from ccidkit.emu.cards.auth import AuthCard
from ccidkit.emu.demo import Demo, TamperSignature

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                reason="QEMU missing")

LINE = r"^preboot-auth: "


def answer_prompts(demo, until, timeout=240, pin=None):
    """Type the PIN at every prompt (a card the stack saw leave and come back
    asks again) until a line matches ``until``; returns that match."""
    rx = re.compile(r"(?P<prompt>^preboot-auth: enter the PIN)|(?P<until>%s)" % until)
    for _ in range(10):
        m = demo.wait_line(rx, timeout)
        if m.group("until") is not None:
            return m
        demo.type_pin(pin)
    raise AssertionError("no %r after 10 PIN prompts" % until)


def lines(demo, prefix):
    return [l for l in demo.vm.console_lines if l.startswith(prefix)]


@pytest.fixture(scope="module")
def shared_image(tmp_path_factory):
    """The card image the first two tests share: the second boots after the first."""
    return str(tmp_path_factory.mktemp("demo") / "card.img")


def test_waits_for_card_survives_removal_and_counts_a_wrong_pin(shared_image):
    image = shared_image
    with Demo(card_image=image, inserted=False, attempts=1, wait_s=240,
              echo=print) as demo:
        demo.prepare()
        demo.start()
        demo.wait_line(LINE + r"waiting for a card$", 180)
        demo.insert_card()
        demo.wait_line(LINE + r"card \S+ \(PIV\), PIN tries left 3$", 120)
        demo.wait_line(LINE + r"enter the PIN", 120)
        demo.remove_card()
        demo.wait_line(LINE + r"card removed \(REMOVED\); waiting for a card$", 120)
        demo.insert_card()
        answer_prompts(demo, LINE + r"wrong PIN: 2 tries left$", pin="999999")
        demo.wait_line(r"^PREBOOT-AUTH: FAILED 1 attempts used$", 60)
        assert demo.vm.wait_exit(120) == 4, demo.vm.exit_message
        console = demo.vm.console
        assert "PIN: ******\n" in console and "999999" not in console
        assert "SUCCESS" not in console
        assert demo.card.pin_remaining == 2           # written to the card image


def test_restart_shows_one_try_less_then_the_cli_authenticates_under_secure_boot(
        shared_image, ccidkit_cli):
    image = shared_image
    card = AuthCard(image=image)
    if card.pin_remaining == 3:
        # run alone: the first test's wrong PIN, made here on the card image
        card.process_apdu(bytes.fromhex("00A4040005A000000308"))
        assert card.process_apdu(bytes.fromhex("0020008008393939393939FFFF")) == b"\x63\xC2"
    assert card.pin_remaining == 2
    del card
    proc = ccidkit_cli("uefi", "demo", "--card-image", image, "--secure-boot",
                       "--timeout", "600")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert re.search(r"^preboot-auth: card \S+ \(PIV\), PIN tries left 2$", out, re.M), out
    assert re.search(r"^preboot-auth: reader QEMU USB CCID .* 00 00$", out, re.M)
    assert re.search(r"^preboot-auth: ATR 3B ", out, re.M)
    guid = AuthCard(image=image).guid.hex()
    assert re.search(r"^PREBOOT-AUTH: SUCCESS card %s key [0-9a-f]{16}$" % guid, out, re.M), out
    # the hand-over: the next boot option, signed alike, passes Secure Boot and ends the run
    handover = re.search(r'^ccidkit: boot\.next: starting Boot0001 "file next-stage\.efi"$', out,
                         re.M)
    assert handover, out
    assert out.index("PREBOOT-AUTH: SUCCESS") < handover.start() < out.index(
        "argv: next-boot-option")
    assert out.count("CCIDKIT-EXIT") == 1
    assert out.rstrip().endswith("CCIDKIT-EXIT status=0")
    assert re.search(r"SUCCESS, status=0, authenticated \d+\.\d s after QEMU started",
                     proc.stderr)
    assert AuthCard(image=image).pin_remaining == 3   # a right PIN restores the count


def test_tampered_signature_and_foreign_key_are_refused(tmp_path):
    enrolled = str(tmp_path / "enrolled.img")
    other = AuthCard(image=str(tmp_path / "other.img"))
    with Demo(card_image=enrolled, fault="tamper-signature", attempts=2, wait_s=240,
              echo=print) as demo:
        demo.prepare()
        demo.start()
        answer_prompts(demo, r"^PREBOOT-AUTH: REFUSED card \S+: the signature does not match "
                             r"the enrolled key$")
        assert demo.served.tampered >= 1
        demo.wait_line(LINE + r"remove the card$", 60)
        demo.remove_card()
        demo.served.active = False
        demo.insert_card(other)                       # a real signature, another key
        answer_prompts(demo, r"^PREBOOT-AUTH: REFUSED card %s: the signature does not match "
                             r"the enrolled key$" % other.guid.hex())
        assert demo.vm.wait_exit(120) == 1, demo.vm.exit_message
        assert "SUCCESS" not in demo.vm.console
        assert "PREBOOT-AUTH: FAILED 2 attempts used" in demo.vm.console
        assert len(lines(demo, "preboot-auth: signature of 256 bytes")) >= 2


def test_secure_boot_refuses_the_unsigned_image(tmp_path):
    with Demo(card_image=str(tmp_path / "card.img"), secure_boot=True, unsigned=True,
              echo=print) as demo:
        demo.prepare()
        demo.start()
        demo.wait_line(r'failed to load Boot0000 "file BOOTX64.EFI" .*: Access Denied$', 120)
        demo.wait_line(r'failed to load Boot0001 "file next-stage.efi" .*: Access Denied$', 60)
        demo.wait_line(r"No bootable option or device was found", 120)
        assert not lines(demo, "preboot-auth")
        assert "CCIDKIT-EXIT" not in demo.vm.console
        assert demo.reader.server.apdus == []         # the card never heard from the VM


def test_cli_demo_over_an_emulated_reader(ccidkit_cli):
    proc = ccidkit_cli("uefi", "demo", "--reader", "emulated:gemalto-pctwin", "--timeout", "600")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert re.search(r"^preboot-auth: reader Gemplus USB SmartCard Reader .* 00 00$", out, re.M)
    # T=0 at TPDU level: GET DATA's tag list reaches the card, the CHUID names it
    assert re.search(r"^PREBOOT-AUTH: SUCCESS card [0-9a-f]{32} key [0-9a-f]{16}$", out, re.M), out
    assert "PIN: ******" in out and "123456" not in out
