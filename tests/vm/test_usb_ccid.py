"""usb-probe inside UEFI against QEMU's usb-ccid with our VSCard card behind it."""

import pytest

from ccidkit.core.hexutil import to_hex
from ccidkit.emu.vscard import StubCard


def minicard():
    mod = pytest.importorskip("ccidkit.emu.card.minicard")
    return mod.MiniCard()


def probe_lines(vm):
    out = {}
    for line in vm.console_lines:
        if line.startswith("usb-probe: "):
            key, _, rest = line[len("usb-probe: "):].partition(" ")
            out.setdefault(key, []).append(rest)
    return out


@pytest.mark.parametrize("make_card", [StubCard, minicard], ids=["stub", "minicard"])
def test_usb_probe_reads_descriptor_atr_and_apdu(uefi_vm, vscard, make_card):
    card = make_card()
    srv = vscard(card)
    vm = uefi_vm("usb-probe", args=["80EE000005A1B2C3D4E500"], attach=[srv])
    assert vm.qmp_command("query-status")["status"] == "running"
    assert srv.wait_connected(60)
    status = vm.wait_exit(300)
    assert status == 0, vm.exit_message + "\n" + vm.console

    lines = probe_lines(vm)
    assert lines["reader"][0].startswith("08E6:4433 interface 0")
    assert lines["dwFeatures"] == [
        "0x000104FE dwProtocols 0x00000001 dwMaxIFSD 254 dwMaxCCIDMessageLength 65554"]
    assert lines["bcdCCID"] == ["1.10 bMaxSlotIndex 0 bVoltageSupport 0x07"]
    assert lines["endpoints:"] == ["bulk-in 0x82 bulk-out 0x03 interrupt 0x81"]
    assert lines["ATR"] == [to_hex(card.atr)]
    assert lines["APDU"] == ["-> 80 EE 00 00 05 A1 B2 C3 D4 E5 00",
                             "<- A1 B2 C3 D4 E5 90 00"]
    # what the card side saw: exactly the APDU, unchanged, answered once
    assert srv.apdus == [(bytes.fromhex("80EE000005A1B2C3D4E500"),
                          bytes.fromhex("A1B2C3D4E59000"))]
    assert srv.peer_version == 2


def test_usb_probe_sees_the_card_leave_on_qmp_device_del(uefi_vm, vscard):
    srv = vscard()
    vm = uefi_vm("usb-probe", args=["--wait-removal"], attach=[srv])
    vm.wait_for_line(r"^usb-probe: APDU <- DE AD BE EF 90 00$", timeout=300)
    vm.wait_for_line(r"^usb-probe: waiting for card removal$", timeout=300)
    vm.qmp_command("device_del", id="card0")
    assert vm.wait_event("DEVICE_DELETED", 30)["data"]["device"] == "card0"
    status = vm.wait_exit(300)
    assert status == 0, vm.exit_message + "\n" + vm.console
    lines = probe_lines(vm)
    assert lines["NotifySlotChange"] == ["50 03: slot 0 present", "50 02: slot 0 empty"]
    assert lines["slot"][-1] == "status: no ICC present"
