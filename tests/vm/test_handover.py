"""The demo hands over to the next boot option (marker vm: one boot).

The VM's variable store holds Boot0000 = the demo image and Boot0001 = a copy
of it at \\ccidkit\\next-stage.efi whose load options run ``hello
next-boot-option`` (emu/demo.py builds both with virt-fw-vars). After the
SUCCESS line the app calls efi.boot_next(): the runtime starts Boot0001
through LoadImage/StartImage, and the next stage's own lines and exit marker
follow. The first image never wrote the exit marker nor isa-debug-exit.

The other tests here run without QEMU: the answer parsing of efi.boot_next
and the app's reaction to each of its outcomes, with a stand-in runtime.
"""

import re
import shutil

import pytest

from ccidkit.emu.demo import Demo
from ccidkit.uefi.fw import efi
from ccidkit.uefi.fw.apps import preboot_auth

needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                reason="QEMU missing")


@needs_qemu
def test_success_hands_over_to_the_next_boot_option(tmp_path):
    with Demo(card_image=str(tmp_path / "card.img"), echo=print) as demo:
        status = demo.run(timeout=600)
        lines = demo.vm.console_lines
        assert status == 0, demo.vm.exit_message

    def first(pattern):
        for i, line in enumerate(lines):
            if re.search(pattern, line):
                return i
        raise AssertionError("no line matching %r" % pattern)

    # BDS started the demo as Boot0000 (the store's first option)
    booted = first(r'^BdsDxe: starting Boot0000 "file BOOTX64.EFI"')
    success = first(r"^PREBOOT-AUTH: SUCCESS card [0-9a-f]{32} key [0-9a-f]{16}$")
    asking = first(r"^preboot-auth: handing over to the next boot option$")
    started = first(r'^ccidkit: boot\.next: starting Boot0001 "file next-stage\.efi"$')
    hello = first(r"^hello from ccidkit: MicroPython ")
    argv = first(r"^argv: next-boot-option$")
    end = first(r"^CCIDKIT-EXIT status=0$")
    assert booted < success < asking < started < hello < argv < end
    assert demo.handed_over_to == "Boot0001"
    # one exit marker, the next stage's: the demo itself never ended the run
    assert [l for l in lines if l.startswith("CCIDKIT-EXIT")] == ["CCIDKIT-EXIT status=0"]
    assert not [l for l in lines if "no next boot option" in l]
    # the next image is a second load of the same file, its own instance
    assert len([l for l in lines if l.startswith("hello from ccidkit")]) == 1


# ---- without QEMU ------------------------------------------------------------

class FakeHost:
    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def call(self, name, payload):
        self.calls.append((name, payload))
        return self.answer


class Console:
    def __init__(self):
        self.out = []

    def line(self, text):
        self.out.append(text)


def with_host(answer, fn):
    fake = FakeHost(answer)
    efi.set_host(fake)
    try:
        return fn(), fake
    finally:
        efi.set_host(None)


def test_boot_next_answer_parsing():
    (result, fake) = with_host("=0001 0", efi.boot_next)
    assert result == (1, 0) and fake.calls == [("boot.next", "")]
    (result, _) = with_host("=00A3 800000000000000e", efi.boot_next)
    assert result == (0xA3, efi.EFI_NOT_FOUND)
    for bad in ("=", "=0001", "=0001 0 7", "=zz 0"):
        with pytest.raises(efi.EfiError) as e:
            with_host(bad, efi.boot_next)
        assert e.value.status == efi.EFI_DEVICE_ERROR
    with pytest.raises(efi.EfiError) as e:
        with_host("!800000000000000e EFI_NOT_FOUND no active boot option after Boot0000",
                  efi.boot_next)
    assert e.value.status == efi.EFI_NOT_FOUND
    assert e.value.message == "no active boot option after Boot0000"


def test_hand_over_outcomes():
    def raising(status, name, message):
        def fn():
            raise efi.EfiError(message, status, name)
        return fn

    c = Console()
    text = preboot_auth.hand_over(c, raising(efi.EFI_NOT_FOUND, "EFI_NOT_FOUND",
                                             "no active boot option after Boot0000"),
                                  efi.EFI_NOT_FOUND)
    assert c.out == ["handing over to the next boot option",
                     "no next boot option (no active boot option after Boot0000)"]
    assert text == c.out[-1]
    c = Console()
    preboot_auth.hand_over(c, raising(efi.EFI_SECURITY_VIOLATION, "EFI_SECURITY_VIOLATION",
                                      "no boot option after Boot0000 could be loaded: "
                                      "Boot0001 EFI_SECURITY_VIOLATION"), efi.EFI_NOT_FOUND)
    assert c.out[-1] == ("the next boot option could not be started: EFI_SECURITY_VIOLATION "
                         "no boot option after Boot0000 could be loaded: Boot0001 "
                         "EFI_SECURITY_VIOLATION")
    c = Console()
    preboot_auth.hand_over(c, lambda: (0x1F, efi.EFI_ABORTED), efi.EFI_NOT_FOUND)
    assert c.out[-1] == "Boot001F returned status 8000000000000015"


def test_no_handover_option():
    assert preboot_auth.split_handover([]) == (True, [])
    assert preboot_auth.split_handover(["--attempts", "2", "--no-handover"]) == (
        False, ["--attempts", "2"])
    assert preboot_auth.split_handover(["--no-handover", "--wait-s", "9"]) == (
        False, ["--wait-s", "9"])
    assert preboot_auth._parse(preboot_auth.split_handover(["--no-handover", "x"])[1]) is None
