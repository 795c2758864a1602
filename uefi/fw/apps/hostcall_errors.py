"""hostcall_errors: bad host.call names and payloads are EfiError answers.

Sends unknown service names and malformed payloads (wrong token counts,
non-numbers, out-of-range values, bad hex, oversized and binary payloads)
and checks each raises EfiError with the expected status, then that the
runtime still answers good calls (including one larger than the per-call
answer buffer). Status: the number of failed checks.
"""

import sys

from ccidkit.uefi.fw import efi

INVALID = efi.EFI_INVALID_PARAMETER
UNSUPPORTED = efi.EFI_UNSUPPORTED

BAD_CALLS = (
    ("no.such.service", "", UNSUPPORTED),
    ("STALL", "0", UNSUPPORTED),
    ("stall", "", INVALID),
    ("stall", "abc", INVALID),
    ("stall", "-1", INVALID),
    ("stall", "1 2", INVALID),
    ("stall", "99999999999", INVALID),
    ("stall", "0x", INVALID),
    ("stall", "123456789012345678901234567890", INVALID),
    ("rng", "0", INVALID),
    ("rng", "5000", INVALID),
    ("var.get", "not-a-guid Boot0000", INVALID),
    ("var.get", efi.GLOBAL_VARIABLE, INVALID),
    ("var.set", efi.GLOBAL_VARIABLE + " X 6 zz", INVALID),
    ("var.set", efi.GLOBAL_VARIABLE + " X 6 abc", INVALID),
    ("reset", "bogus 0", INVALID),
    ("reset", "", INVALID),
    ("debug_exit", "256", INVALID),
    ("debug_exit", "", INVALID),
    ("con.key", "-5", INVALID),
    ("exit", "1000", INVALID),
    ("usb.bulk_in", "999 129 100 10", INVALID),
    ("usb.bulk_in", "1 1 100 10", INVALID),
    ("usb.bulk_out", "1 1 100 zz", INVALID),
    ("usb.bulk_out", "1 1 0 00", INVALID),
    ("usb.control", "1 2", INVALID),
    ("usb.control", "1 128 6 256 0 1000 99999", INVALID),
    ("usb.intr_start", "1 1 8 10", INVALID),
    ("usb.intr_poll", "77 129", INVALID),
    ("usb.intr_stop", "", INVALID),
    ("usb.list", "extra", INVALID),
    ("_pending", "", efi.EFI_NOT_READY),
    ("", "", INVALID),
    ("x" * 100, "", INVALID),
    ("stall", "1" * 200000, INVALID),
    ("stall", "\x00\xff", INVALID),
    ("rng", "1\n", INVALID),
)


def check_bad_calls(out):
    failed = 0
    for name, payload, status in BAD_CALLS:
        label = "%s(%r)" % (name[:20], payload[:24])
        try:
            answer = efi.call(name, payload)
        except efi.EfiError as e:
            if e.status != status:
                out("FAIL %s: %s, expected %s\n" % (label, e, efi.status_name(status)))
                failed += 1
            continue
        out("FAIL %s: answered %r\n" % (label, answer[:40]))
        failed += 1
    return failed


def check_wrappers(out):
    failed = 0
    bad = (
        lambda: efi.stall(-1),
        lambda: efi.random_bytes(0),
        lambda: efi.get_variable("has blank", efi.GLOBAL_VARIABLE),
        lambda: efi.usb_bulk_in(1, 0x02, 10),
        lambda: efi.usb_bulk_out(1, 0x81, b"x"),
        lambda: efi.reset("sideways"),
        lambda: efi.debug_exit(-1),
        lambda: efi.call(b"stall", "0"),
    )
    for i, fn in enumerate(bad):
        try:
            fn()
        except efi.EfiError as e:
            if e.status != INVALID:
                out("FAIL wrapper %d: %s\n" % (i, e))
                failed += 1
            continue
        out("FAIL wrapper %d: no EfiError\n" % i)
        failed += 1
    return failed


def check_good_calls(out):
    failed = 0

    def expect(cond, what):
        if not cond:
            out("FAIL %s\n" % what)
        return 0 if cond else 1

    failed += expect(efi.call("stall", "0") == "", "stall 0 answers ''")
    t1 = efi.ticks_us()
    efi.stall(2000)
    t2 = efi.ticks_us()
    failed += expect(t2 - t1 >= 2000, "ticks_us advances over stall(2000): %d" % (t2 - t1))
    # 4096 random bytes = 8192 hex characters: more than one answer buffer
    try:
        r = efi.random_bytes(4096)
        failed += expect(len(r) == 4096 and r.count(b"\x00") < 200, "random_bytes(4096)")
    except efi.EfiError as e:
        failed += expect(e.status == UNSUPPORTED, "random_bytes: %s" % e)
    failed += expect(efi.get_variable("CcidkitNoSuchVariable", efi.GLOBAL_VARIABLE) is None,
                     "missing variable is None")
    guid = "5f0c1b4e-6a3d-4c1e-9b7e-2d1c0a9b8e7f"
    attrs = efi.VARIABLE_BOOTSERVICE_ACCESS | efi.VARIABLE_RUNTIME_ACCESS
    efi.set_variable("CcidkitTest", guid, attrs, b"\x01\x02\xfe")
    failed += expect(efi.get_variable("CcidkitTest", guid) == (attrs, b"\x01\x02\xfe"),
                     "variable round trip")
    efi.set_variable("CcidkitTest", guid, attrs, b"")
    failed += expect(efi.get_variable("CcidkitTest", guid) is None, "variable deleted")
    failed += expect(isinstance(efi.usb_devices(), list), "usb_devices is a list")
    return failed


def main(argv):
    out = sys.stdout.write
    failed = check_bad_calls(out)
    failed += check_wrappers(out)
    failed += check_good_calls(out)
    out("hostcall_errors: %s (%d malformed calls, %d wrapper checks, good calls; "
        "%d failure(s))\n" % ("PASS" if not failed else "FAIL", len(BAD_CALLS), 8, failed))
    return failed
