"""The EFI Smart Card Reader / Edge facades inside UEFI (one boot): QEMU's
usb-ccid with our VSCard server serving the PIV authentication card; the app
facade-tests drives the in-firmware transport, the driver and both facades,
and the host checks every status and verifies the signature."""

import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from ccidkit.emu.cards import make_card

SEED = b"ccidkit facade vm test"
CHALLENGE = b"ccidkit pre-boot challenge"


def facade_lines(vm):
    out = {}
    for line in vm.console_lines:
        if line.startswith("facade: "):
            parts = line[len("facade: "):].split(" ", 2)
            out[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else None)
    return out


def test_facades_in_uefi_against_usb_ccid_and_the_auth_card(uefi_vm, vscard):
    card = make_card("auth", seed=SEED)
    srv = vscard(card)
    vm = uefi_vm("facade-tests", attach=[srv])
    assert srv.wait_connected(60)
    status = vm.wait_exit(900)
    assert status == 0, vm.exit_message + "\n" + vm.console
    got = facade_lines(vm)
    assert got["done"][0] == "EFI_SUCCESS", vm.console

    expect = {
        # Reader protocol @retval scenarios
        "reader.connect.bad_mode": "EFI_INVALID_PARAMETER",
        "reader.connect.bad_action": "EFI_INVALID_PARAMETER",
        "reader.connect.bad_combination": "EFI_INVALID_PARAMETER",
        "reader.connect.raw": "EFI_UNSUPPORTED",
        "reader.transmit.unconnected": "EFI_ACCESS_DENIED",
        "reader.connect": "EFI_SUCCESS",
        "reader.connect.again": "EFI_ACCESS_DENIED",
        "reader.status.small_atr": "EFI_BUFFER_TOO_SMALL",
        "reader.status": "EFI_SUCCESS",
        "reader.transmit.small": "EFI_BUFFER_TOO_SMALL",
        "reader.transmit": "EFI_SUCCESS",
        "reader.transmit.empty": "EFI_INVALID_PARAMETER",
        "reader.control.features": "EFI_SUCCESS",
        "reader.control.no_length": "EFI_INVALID_PARAMETER",
        "reader.control.unknown": "EFI_UNSUPPORTED",
        "reader.attrib.ifd_type": "EFI_SUCCESS",
        "reader.attrib.unknown": "EFI_UNSUPPORTED",
        "reader.attrib.zero": "EFI_INVALID_PARAMETER",
        "reader.disconnect.eject": "EFI_UNSUPPORTED",
        "reader.disconnect.bad": "EFI_INVALID_PARAMETER",
        "reader.disconnect": "EFI_SUCCESS",
        "reader.disconnect.again": "EFI_SUCCESS",
        # Edge protocol
        "edge.context": "EFI_SUCCESS",
        "edge.connect": "EFI_SUCCESS",
        "edge.csn": "EFI_SUCCESS",
        "edge.remaining": "EFI_SUCCESS",
        "edge.verify.wrong": "EFI_SUCCESS",
        "edge.sign.unverified": "EFI_ACCESS_DENIED",
        "edge.verify.right": "EFI_SUCCESS",
        "edge.credential.size": "EFI_BUFFER_TOO_SMALL",
        "edge.credential": "EFI_SUCCESS",
        "edge.sign": "EFI_SUCCESS",
        "edge.sign.bad_key": "EFI_INVALID_PARAMETER",
        "edge.disconnect": "EFI_SUCCESS",
        "edge.disconnect.again": "EFI_INVALID_PARAMETER",
    }
    wrong = dict((k, got.get(k)) for k in expect if got.get(k, (None,))[0] != expect[k])
    assert not wrong, vm.console

    # values: the card as the guest saw it through usb-ccid (T=0 only, APDU level)
    assert got["reader.status.before"][1] == "state=2 atr=0"          # present, not powered
    assert got["reader.connect"][1] == "protocol=1"                  # SCARD_PROTOCOL_T0
    assert got["reader.status.small_atr"][1] == "needed=%d untouched=1" % len(card.atr)
    state, proto, name, atr = got["reader.status"][1].split(" ")
    assert (state, proto) == ("state=3", "protocol=1")
    assert atr == "atr=" + card.atr.hex().upper()
    # usb-ccid passes the APDU through: the whole SELECT answer comes back at once
    apt = card.application_property_template()
    assert got["reader.transmit.small"][1] == "needed=%d untouched=1" % (len(apt) + 2)
    assert got["reader.transmit"][1] == "sw=9000"
    assert got["reader.name"][1].startswith("QEMU USB CCID [CCID Interface]")
    assert got["reader.attrib.ifd_type"][1] == "QEMU_USB_CCID"
    # no PIN pad, no escape (core/quirks.py for 08E6:4433): GET_TLV_PROPERTIES only
    assert got["reader.control.features"][1] == "120442330012"
    assert got["edge.context"][1] == "aids=1 present=1 version=100"
    assert got["edge.csn"][1] == card.guid.hex().upper()
    assert got["edge.remaining"][1] == "3"
    assert got["edge.verify.wrong"][1] == "result=0 remaining=2"
    assert got["edge.verify.right"][1] == "result=1 remaining=3"
    assert card.pin_remaining == 3
    certs = [card.certs[r] for r in (0x9A, 0x9C, 0x9D, 0x82)]
    assert got["edge.credential"][1] == "1:2:2048:%d,2:3:256:%d,3:1:2048:%d,4:6:256:%d" % tuple(
        len(c) for c in certs)
    assert got["edge.credential.cert1"][1] == certs[0][:16].hex().upper()

    # the signature made in the firmware, verified here
    assert hashlib.sha256(CHALLENGE).hexdigest() == \
        "796633848f05972ba47cb3f62ccbc13bd5184cddbdf78f7bb2f75f1e06ebe6ba"
    sig = bytes.fromhex(got["edge.sign"][1])
    assert len(sig) == 256
    card.public_key(0x9A).verify(sig, CHALLENGE, padding.PKCS1v15(), hashes.SHA256())
    # every APDU went through unchanged and was answered (none over 374 bytes)
    assert srv.apdus and max(len(r) for _, r in srv.apdus) <= 258
