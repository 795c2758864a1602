"""Emulated readers inside UEFI over usbredir: one boot, two readers.

An emulated GemPC Twin (TPDU, T=0 and T=1, one slot) and an emulated
sysmoOCTSIM (TPDU, T=0, eight slots) reach OVMF through QEMU's usb-redir and
ccidkit.emu.usbredir; the in-firmware driver (usbredir-app, tests/vm/
usbredir_app.py, embedded in an image built for this module) reads their CCID
class descriptors, powers the cards, exchanges APDUs (a 4 KiB ECHO over T=1
with chaining on the Twin), then sees card removals and both readers leave
the bus while it runs.
"""

import os
import sys

import pytest

from ccidkit.emu import profiles as P
from ccidkit.emu import usbredir as U
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.vm_readers import Event, VmReaders

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "usbredir_app.py")
TWIN = "08E6:3437"
OCTSIM = "1D50:6141"


@pytest.fixture(scope="module")
def uefi_image(pytestconfig):
    """The default image plus usbredir-app, built beside it (build/uefi-usbredir)
    from a copy of the default build's cache, so only the Python steps run."""
    if pytestconfig.getoption("ccidkit_image") or os.environ.get("CCIDKIT_UEFI_IMAGE"):
        pytest.skip("these tests embed their own app: they build their image")
    build = pytest.importorskip("ccidkit.uefi.build")

    def progress(msg):
        sys.stderr.write(msg + "\n")
    return build.build_with_apps("usbredir", [APP], progress=progress)


def lines_of(vm, tag):
    prefix = "usbredir: %s " % tag
    return [line[len(prefix):] for line in vm.console_lines if line.startswith(prefix)]


def test_two_emulated_readers_enumerate_exchange_and_leave(uefi_vm):
    rig = VmReaders(["emulated:gemalto-pctwin", "emulated:sysmooctsim"],
                    ["none", "0:mini", "3:mini"])
    with rig:
        twin, octsim = rig.bridges
        vm = uefi_vm("usbredir-app", args=["--t1-echo", "4096", "--wait-ms", "240000",
                                           "--replug"], attach=rig.bridges)
        assert twin.wait_connected(60) and octsim.wait_connected(60)
        vm.wait_for_line(r"^usbredir: ready$", timeout=400)

        # removals while the driver watches: NotifySlotChange through usbredir
        rig.apply(Event(0, "remove", 0, 0))
        vm.wait_for_line(r"^usbredir: %s slot 0 removed$" % TWIN, timeout=60, start=0)
        rig.apply(Event(0, "remove", 1, 3))
        vm.wait_for_line(r"^usbredir: %s slot 3 removed$" % OCTSIM, timeout=60, start=0)
        # unplug: device_disconnect, the UsbIo handle goes away
        rig.apply(Event(0, "unplug", 1))
        vm.wait_for_line(r"^usbredir: %s gone$" % OCTSIM, timeout=60, start=0)
        rig.apply(Event(0, "unplug", 0))
        vm.wait_for_line(r"^usbredir: %s gone$" % TWIN, timeout=60, start=0)
        # re-attach: a fresh enumeration, a new handle, the card there again
        rig.apply(Event(0, "insert", 1, 3, "mini"))
        rig.apply(Event(0, "plug", 1))
        vm.wait_for_line(r"^usbredir: back$", timeout=120, start=0)
        status = vm.wait_exit(120)
        assert status == 0, vm.exit_message + "\n" + vm.console

    # the class descriptors the firmware read are the profiles'
    for tag, pid in ((TWIN, "gemalto-pctwin"), (OCTSIM, "sysmooctsim")):
        c = P.profile(pid)["ccid"]
        line = [x for x in lines_of(vm, "reader") if x.startswith(tag)][0]
        assert line == (
            "%s slots %d level TPDU dwFeatures 0x%08X dwProtocols 0x%08X "
            "dwMaxCCIDMessageLength %d dwMaxIFSD %d bMaxCCIDBusySlots %d" % (
                tag, c["bMaxSlotIndex"] + 1, c["dwFeatures"], c["dwProtocols"],
                c["dwMaxCCIDMessageLength"], c["dwMaxIFSD"], c["bMaxCCIDBusySlots"]))
    atr = " ".join("%02X" % b for b in MiniCard().atr)
    assert lines_of(vm, TWIN)[:6] == [
        "slot 0 present", "slot 0 ATR %s T=0" % atr, "slot 0 APDU <- 61 04",
        "slot 0 APDU <- DE AD BE EF 90 00", "slot 0 reset, T=1 IFSC 32",
        "slot 0 ECHO 4096 bytes T=1 ok"]
    oct_lines = lines_of(vm, OCTSIM)
    assert oct_lines[:8] == ["slot %d %s" % (i, "present" if i in (0, 3) else "empty")
                             for i in range(8)]
    assert oct_lines[8:11] == ["slot 0 ATR %s T=0" % atr, "slot 0 APDU <- 61 04",
                               "slot 0 APDU <- DE AD BE EF 90 00"]
    assert "slot 3 removed" in oct_lines
    back = oct_lines.index("gone") + 1
    assert oct_lines[back:back + 8] == ["slot %d %s" % (i, "present" if i in (0, 3) else "empty")
                                        for i in range(8)]
    assert oct_lines[back + 8:] == ["slot 0 ATR %s T=0" % atr, "slot 0 APDU <- 61 04",
                                    "slot 0 APDU <- DE AD BE EF 90 00"]
    assert lines_of(vm, TWIN)[-2:] == ["slot 0 removed", "gone"]
    assert [x for x in lines_of(vm, "reader") if x.startswith(OCTSIM)][0] == \
        [x for x in lines_of(vm, "reader") if x.startswith(OCTSIM)][1]
    # the handle went away: a transfer to it fails as the reader removed
    for tag in (TWIN, OCTSIM):
        assert "usbredir: %s: NO_DEVICE" % tag in vm.console_lines

    # what the usb-host side saw: one attach, one detach each, no protocol error
    for b in (twin, octsim):
        s = b.server
        assert s.errors == [], s.errors
        assert s.counts["->device_disconnect"] == 1
        assert s.counts["<-set_configuration"] >= 1 and s.counts["->interrupt_packet"] >= 2
    assert twin.server.counts["->device_connect"] == 1 and twin.reader.gone
    assert octsim.server.counts["->device_connect"] == 2 and not octsim.reader.gone
    assert octsim.server.counts["<-device_disconnect_ack"] == 1
    # the 4 KiB ECHO really crossed usbredir in T=1 blocks (IFSC 32: 128+ each way)
    assert twin.server.counts["<-bulk_packet"] > 2 * 128
    assert U.STATUS_NAMES[0] == "success"


def test_qemu_ccid_reader_unplugged_and_plugged_through_qmp(uefi_vm):
    """The same watcher over QEMU's usb-ccid: card removal through VSCard, the
    reader's unplug and plug through QMP (device_del, then device_add of the
    reader and its card on the chardev QEMU kept)."""
    rig = VmReaders(["qemu-ccid"], ["mini"])
    with rig:
        vm = uefi_vm("usbredir-app", args=["--wait-ms", "120000", "--replug"],
                     attach=rig.bridges)
        vm.wait_for_line(r"^usbredir: ready$", timeout=400)
        rig.apply(Event(0, "remove"), vm.qmp_command)
        vm.wait_for_line(r"^usbredir: 08E6:4433 slot 0 removed$", timeout=60, start=0)
        rig.apply(Event(0, "unplug"), vm.qmp_command)
        vm.wait_for_line(r"^usbredir: 08E6:4433 gone$", timeout=60, start=0)
        rig.apply(Event(0, "insert", 0, 0, "mini"), vm.qmp_command)
        rig.apply(Event(0, "plug"), vm.qmp_command)
        status = vm.wait_exit(120)
        assert status == 0, vm.exit_message + "\n" + vm.console
        srv = rig.bridges[0].server
    lines = lines_of(vm, "08E6:4433")
    atr = " ".join("%02X" % b for b in MiniCard().atr)
    back = lines.index("gone") + 1
    assert lines[back:] == ["slot 0 present", "slot 0 ATR %s T=0" % atr,
                            "slot 0 APDU <- DE AD BE EF 90 00"]
    assert "usbredir: back" in vm.console_lines
    # the card side: the chardev and its connection outlived the reader (QEMU
    # greets again with Init on it); the ECHO answered before and after
    assert srv.connections == 1 and srv.errors == []
    assert srv.trace.count("<- Init reader=4294967295 56 53 43 44 00 00 00 02 00 00 00 00") == 2
    echo = (bytes.fromhex("80EE000004DEADBEEF00"), bytes.fromhex("DEADBEEF9000"))
    assert srv.apdus.count(echo) == 2
