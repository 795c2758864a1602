"""The pre-boot paths in one boot: QEMU's usb-ccid, several slots at once, and
a card or reader lost in the middle of an exchange.

preboot-paths-app (tests/vm/preboot_paths_app.py, embedded in an image built
for this module) runs the in-firmware driver against three readers:
QEMU's usb-ccid with a MiniCard behind VSCard (ATR, SELECT, READ BINARY of
1 KiB in 256-byte pieces, compared here with the card's file), an emulated
sysmoOCTSIM over usb-redir (three slots in one ``transmit_many``, pipelined)
and an emulated GemPC Twin over usb-redir (a long chained T=1 ECHO broken by
the card's removal, then by the reader's unplug; recovery after each).
"""

import os
import sys
import time

import pytest

from ccidkit.emu.card.minicard import MiniCard, ef_content
from ccidkit.emu.vm_readers import Event, VmReaders

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "preboot_paths_app.py")
CCID, OCTSIM, TWIN = 0, 1, 2          # the readers' positions in the rig
BLOCKS_BEFORE_FAULT = 24              # usbredir bulk packets into the ECHO before the fault


@pytest.fixture(scope="module")
def uefi_image(pytestconfig):
    """The default image plus preboot-paths-app, built beside it
    (build/uefi-preboot-paths) from a copy of the default build's cache."""
    if pytestconfig.getoption("ccidkit_image") or os.environ.get("CCIDKIT_UEFI_IMAGE"):
        pytest.skip("these tests embed their own app: they build their image")
    build = pytest.importorskip("ccidkit.uefi.build")

    def progress(msg):
        sys.stderr.write(msg + "\n")
    return build.build_with_apps("preboot-paths", [APP], progress=progress)


def lines_of(vm, tag):
    prefix = "paths: %s " % tag
    return [line[len(prefix):] for line in vm.console_lines if line.startswith(prefix)]


def _after_blocks(bridge, n, timeout=120.0):
    """Wait (bounded) until ``n`` more bulk packets crossed the reader's usbredir link."""
    start = bridge.server.counts["<-bulk_packet"]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if bridge.server.counts["<-bulk_packet"] >= start + n:
            return True
        time.sleep(0.005)
    return False


def test_usb_ccid_pipelined_slots_and_losses_mid_exchange(uefi_vm):
    rig = VmReaders(["qemu-ccid", "emulated:sysmooctsim", "emulated:gemalto-pctwin"],
                    ["none", "0:mini", "1:mini", "2:mini"])
    with rig:
        twin = rig.bridges[TWIN]
        # the card behind usb-ccid goes silent for one command
        rig.bridges[CCID].server.leave_unanswered(lambda apdu: apdu[1:2] == b"\xCA")
        vm = uefi_vm("preboot-paths-app", args=["--wait-ms", "180000", "--long", "8192"],
                     attach=rig.bridges)
        # 1. the card leaves the Twin while the chained ECHO runs
        vm.wait_for_line(r"^paths: twin wait remove$", timeout=600)
        assert _after_blocks(twin, BLOCKS_BEFORE_FAULT)
        twin.reader.faults.remove_mid_exchange(0)
        vm.wait_for_line(r"^paths: twin wait insert$", timeout=180)
        rig.apply(Event(0, "insert", TWIN, 0, "mini"))
        # 2. the Twin leaves the bus while the chained ECHO runs
        vm.wait_for_line(r"^paths: twin wait unplug$", timeout=300)
        assert _after_blocks(twin, BLOCKS_BEFORE_FAULT)
        rig.apply(Event(0, "unplug", TWIN))
        vm.wait_for_line(r"^paths: twin wait plug$", timeout=180)
        rig.apply(Event(0, "plug", TWIN))
        status = vm.wait_exit(300)
        assert status == 0, vm.exit_message + "\n" + vm.console
        ccid_srv = rig.bridges[CCID].server
        octsim = rig.bridges[OCTSIM]
    print("\n".join(line for line in vm.console_lines if line.startswith("paths: ")))
    atr = " ".join("%02X" % b for b in MiniCard().atr)

    # usb-ccid: the 1 KiB file in four 256-byte answers, byte for byte
    ccid = lines_of(vm, "ccid")
    assert ccid[0] == "ATR %s T=0" % atr
    assert ccid[1] == "SELECT 2F00 <- 90 00"
    content = ef_content(0x2F00)
    got = b""
    for i, line in enumerate(ccid[2:6]):
        off, n, sw1, sw2, hexdata = line.split(" ")[1:]
        assert (int(off), int(n), sw1 + sw2) == (256 * i, 256, "9000")
        got += bytes.fromhex(hexdata)
    assert got == content
    # ... and every one of them crossed VSCard as one APDU with its whole answer
    reads = [(a, r) for a, r in ccid_srv.apdus if a[1:2] == b"\xB0"]
    assert [a for a, _ in reads[:4]] == [bytes((0, 0xB0, i, 0, 0)) for i in range(4)]
    assert [r for _, r in reads[:4]] == [content[256 * i:256 * i + 256] + b"\x90\x00"
                                         for i in range(4)]
    # a silent card: the driver's timeout, then QEMU's shifted bSeq pairing survived
    assert ccid_srv.unanswered == [bytes.fromhex("00CA010000")]
    assert ccid[6] == "silent error IFD_RESPONSE_TIMEOUT -> SCARD_E_NOT_TRANSACTED"
    assert ccid[7] == "after SELECT 2F00 <- 90 00"
    assert ccid[8] == "after READ 512 <- %s 90 00" % " ".join(
        "%02X" % b for b in content[512:528])

    # sysmoOCTSIM: three slots in one transmit_many, three commands on the wire at once
    oct_lines = lines_of(vm, "octsim")
    assert oct_lines[:3] == ["slot %d ATR %s T=0" % (i, atr) for i in range(3)]
    assert oct_lines[3] == "max_busy 8"
    assert oct_lines[4:7] == ["slot %d SELECT <- 90 00" % i for i in range(3)]
    assert oct_lines[7] == "SELECT in flight 3"
    assert oct_lines[8:11] == [
        "slot %d READ %d <- %s 90 00" % (i, 64 * i, " ".join(
            "%02X" % b for b in content[64 * i:64 * i + 32])) for i in range(3)]
    assert oct_lines[11] == "READ in flight 3"
    assert octsim.server.errors == []

    # GemPC Twin: the documented errors, then the next exchange goes through
    tw = lines_of(vm, "twin")
    assert tw[0] == "start T=1 IFSC 32"
    assert tw[1:3] == ["wait remove",
                       "remove error IFD_ICC_NOT_PRESENT -> SCARD_W_REMOVED_CARD"]
    assert tw[3:7] == ["wait insert", "card back", "inserted T=1 IFSC 32",
                       "inserted ECHO 4096 ok"]
    # the transfer the unplug broke names the reader removed (the transport's
    # GET_STATUS probe after a failed transfer), and so does the next exchange
    assert tw[7:10] == ["wait unplug",
                        "unplug error IFD_NO_SUCH_DEVICE -> SCARD_E_READER_UNAVAILABLE",
                        "then IFD_NO_SUCH_DEVICE -> SCARD_E_READER_UNAVAILABLE"]
    assert tw[10:] == ["wait plug", "back slot 0 present", "back T=1 IFSC 32",
                      "back ECHO 4096 ok"]
    assert ("remove", 0) in twin.reader.faults.fired
    assert twin.server.counts["->device_disconnect"] == 1
    assert twin.server.counts["->device_connect"] == 2
    assert "paths: done" in vm.console_lines


# -- a host card shared with the VM: pcsc:NAME through both bridges --------------

PCSC_READER = "Virtual PCD 00 00"


def _host_card_ready(timeout=10.0):
    """The vpcd card as the host's pcscd lists it (pcscd looks every 400 ms)."""
    from ccidkit.emu.vm_readers import PcscCard, VmReadersError
    end = time.monotonic() + timeout
    while True:
        try:
            card = PcscCard(PCSC_READER)
            card.power_off()
            return
        except VmReadersError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def test_host_card_shared_through_pcsc_into_the_vm(uefi_vm, pcscd_vpcd):
    from smartcard.System import readers
    card = MiniCard()
    vicc = pcscd_vpcd.vicc(card)
    try:
        _host_card_ready()
        rig = VmReaders(["qemu-ccid", "emulated:gemalto-pctwin", "emulated:cherry-st"],
                        ["pcsc:" + PCSC_READER])
        with rig:
            vm = uefi_vm("preboot-paths-app", args=["--each"], attach=rig.bridges)
            vm.wait_for_line(r"^paths: each 08E6:4433 ATR ", timeout=300)
            # the host keeps its reader: its own session works while the VM uses the card
            host = [r for r in readers() if str(r).startswith(PCSC_READER)][0]
            conn = host.createConnection()
            conn.connect()
            data, sw1, sw2 = conn.transmit(list(bytes.fromhex("80EE000003C0FFEE00")))
            conn.disconnect()
            status = vm.wait_exit(300)
            assert status == 0, vm.exit_message + "\n" + vm.console
        assert bytes(data) + bytes((sw1, sw2)) == bytes.fromhex("C0FFEE9000")
        seen = [a for sess in vicc.sessions for a, _ in sess.apdus]
    finally:
        vicc.stop()
    lines = [line for line in lines_of(vm, "each") if " level " not in line]
    atr = " ".join("%02X" % b for b in card.atr)
    echo = " ".join("%02X" % (0x30 + i) for i in range(16)) + " 90 00"
    head = " ".join("%02X" % b for b in ef_content(0x2F00)[:32]) + " 90 00"
    # QEMU's usb-ccid; over usb-redir the Twin and the Cherry (its CCID interface is number 1)
    for tag in ("046A:0010", "08E6:3437", "08E6:4433"):
        mine = [line[len(tag) + 1:] for line in lines if line.startswith(tag + " ")]
        assert mine[0].startswith("ATR %s T=" % atr), mine
        assert mine[1:] == ["ECHO " + echo, "SELECT 2F00 <- 90 00", "READ 0 <- " + head]
    # the firmware's commands reached the host's pcscd and the card behind it
    assert rig.bridges[0].server.errors == []
    assert bytes.fromhex("80EE000003C0FFEE00") in seen                # the host's own
    assert sum(1 for a in seen if a[1:2] == b"\xB0") == 3              # a READ per reader
    assert sum(1 for a in seen if a[:4] == bytes.fromhex("80EE0000")) == 4


# -- the other emulated readers' profiles: each one found, powered and used by the firmware --

def test_every_other_profile_reaches_the_firmware(uefi_vm):
    from ccidkit.emu.profiles import profile
    names = ["pinpad", "au9560", "iccd-token", "contactless"]
    rig = VmReaders(["emulated:" + n for n in names], ["mini"])
    with rig:
        vm = uefi_vm("preboot-paths-app", args=["--each"], attach=rig.bridges)
        status = vm.wait_exit(300)
        assert status == 0, vm.exit_message + "\n" + vm.console
        for b in rig.bridges:
            assert b.server.errors == []
    lines = lines_of(vm, "each")
    print("\n".join(lines))
    head = " ".join("%02X" % b for b in ef_content(0x2F00)[:32]) + " 90 00"
    echo = " ".join("%02X" % (0x30 + i) for i in range(16)) + " 90 00"
    levels = {0x00010000: "TPDU", 0x00020000: "short APDU", 0x00040000: "extended APDU"}
    for n in names:
        p = profile(n)
        tag = "%04X:%04X" % (p["usb"]["idVendor"], p["usb"]["idProduct"])
        mine = [line[len(tag) + 1:] for line in lines if line.startswith(tag + " ")]
        assert mine[0] == "level " + levels[p["ccid"]["dwFeatures"] & 0x00070000], (n, mine)
        assert mine[1].startswith("ATR "), (n, mine)
        assert mine[2:] == ["ECHO " + echo, "SELECT 2F00 <- 90 00", "READ 0 <- " + head], (n, mine)
