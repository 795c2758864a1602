"""`ccidkit uefi`: build the UEFI image and run its apps in QEMU.

    ccidkit uefi build [...]                       the image (ccidkit.uefi.build)
    ccidkit uefi run [--app NAME] [--timeout S] [-- APP ARGS ...]
    ccidkit uefi demo [--pin PIN] [--reader R] [--card-image PATH] [--secure-boot]

`run` boots the image under QEMU with OVMF, streams the serial console to
the terminal and exits with the app's status (124: timeout, 125: QEMU ended
without the CCIDKIT-EXIT marker, 126: marker and isa-debug-exit disagree).
"""

import os
import sys

from ccidkit.core.errors import CcidkitError


def register(sub):
    p = sub.add_parser("uefi", help="build the UEFI image, run its apps in QEMU")
    uefi_sub = p.add_subparsers(dest="uefi_command", metavar="SUBCOMMAND")
    try:
        from ccidkit.uefi.build import register_build
    except ImportError:
        b = uefi_sub.add_parser("build", help="build the UEFI image (builder not installed)")
        b.set_defaults(func=_no_builder)
    else:
        register_build(uefi_sub)

    r = uefi_sub.add_parser(
        "run", help="boot an app in QEMU and exit with its status",
        description="Boot the ccidkit UEFI image in QEMU (OVMF, TCG) with APP and its "
                    "arguments; the serial console is shown live and the command exits "
                    "with the app's status (124 timeout, 125 no exit marker, "
                    "126 inconsistent exit).")
    r.add_argument("--app", default=None,
                   help="app to run (module ccidkit.uefi.fw.apps.<name>; default: the "
                        "firmware's default, hello)")
    r.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="kill QEMU after S seconds (default 120)")
    r.add_argument("--image", default=None, metavar="DIR",
                   help="ESP directory (or .efi file) to boot instead of building; "
                        "default $CCIDKIT_UEFI_IMAGE or a (cached) build")
    r.add_argument("--log", default=None, metavar="FILE", help="also write the raw console here")
    r.add_argument("--quiet", action="store_true", help="do not show the console")
    r.add_argument("--device", action="append", default=[], metavar="SPEC",
                   help="extra QEMU -device (repeatable)")
    r.add_argument("--chardev", action="append", default=[], metavar="SPEC",
                   help="extra QEMU -chardev (repeatable)")
    r.add_argument("app_args", nargs="*", metavar="APP_ARG",
                   help="arguments for the app (after --)")
    r.set_defaults(func=run_vm)
    from ccidkit.emu import vm_readers
    vm_readers.add_arguments(r, run_vm)     # --reader / --card / --events around run_vm

    d = uefi_sub.add_parser(
        "demo", help="pre-boot smart-card authentication in QEMU (exit 0 only when authenticated)",
        description="Boot the preboot-auth app in QEMU with the PIV authentication card "
                    "behind a reader; the card's key is enrolled in the image, the PIN is "
                    "typed on the console. Exit status 0 only when the card authenticated. "
                    "See docs/demo.md.")
    d.add_argument("--pin", default=None, metavar="PIN",
                   help="the PIN to type (default: the card's default, 123456)")
    d.add_argument("--reader", default="qemu-ccid", metavar="R",
                   help="qemu-ccid (QEMU's usb-ccid + VSCard, default) or emulated:PROFILE")
    d.add_argument("--card-image", default=None, metavar="PATH",
                   help="the card image to use and keep (default: a fresh one per run)")
    d.add_argument("--enroll-card-image", default=None, metavar="PATH",
                   help="enrol this card's key instead of the inserted card's")
    d.add_argument("--secure-boot", action="store_true",
                   help="sign the image and boot OVMF's secure-boot firmware with our "
                        "certificate enrolled")
    d.add_argument("--unsigned", action="store_true",
                   help="with --secure-boot: boot the unsigned image (the firmware refuses it)")
    d.add_argument("--fault", default=None, choices=["tamper-signature"],
                   help="tamper with the card's signature on its way to the VM")
    d.add_argument("--attempts", type=int, default=3, metavar="N",
                   help="PIN tries and refused cards before giving up (default 3)")
    d.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="kill QEMU after S seconds (default 600)")
    d.add_argument("--quiet", action="store_true", help="do not show the console")
    d.add_argument("--no-handover", action="store_true",
                   help="after a login, end the run instead of starting the next boot option "
                   "(by default a second boot option, the same image running `hello`, shows "
                   "the hand-over)")
    d.set_defaults(func=run_demo)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _no_builder(args):
    sys.stderr.write("ccidkit uefi build: the image builder (ccidkit.uefi.build) is not "
                     "available\n")
    return 2


def _build_errors():
    try:
        from ccidkit.uefi.build import UefiBuildError
    except ImportError:
        return ()
    return (UefiBuildError,)


def _image(args):
    """The ESP to boot: --image, $CCIDKIT_UEFI_IMAGE, or a (cached) build."""
    if args.image:
        return args.image
    env = os.environ.get("CCIDKIT_UEFI_IMAGE")
    if env:
        return env
    try:
        from ccidkit.uefi.build import build_image
    except ImportError:
        return None        # the default build output, if one exists
    return build_image(progress=lambda m: sys.stderr.write("%s\n" % m))


def run_vm(args):
    from ccidkit.emu import qemu

    def echo(line):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def echo_err(line):
        sys.stderr.write(line + "\n")

    try:
        image = _image(args)
        status, vm = qemu.run(image, app=args.app, args=args.app_args, timeout=args.timeout,
                              echo=None if args.quiet else echo,
                              echo_err=None if args.quiet else echo_err, log_path=args.log,
                              extra_devices=args.device, chardevs=args.chardev)
    except CcidkitError as e:   # QemuError
        sys.stderr.write("ccidkit uefi run: %s\n" % e)
        return 2
    except _build_errors() as e:
        sys.stderr.write("ccidkit uefi run: build failed: %s\n" % e)
        return 2
    sys.stderr.write("ccidkit uefi run: %s\n" % vm.exit_message)
    return status


def run_demo(args):
    from ccidkit.emu.demo import DEFAULT_PIN, run_demo as demo

    def echo(line):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def note(line):
        sys.stderr.write(line + "\n")

    options = dict(pin=args.pin or DEFAULT_PIN, reader=args.reader, card_image=args.card_image,
                   enroll_image=args.enroll_card_image, secure_boot=args.secure_boot,
                   unsigned=args.unsigned, fault=args.fault, attempts=max(1, args.attempts),
                   handover=not args.no_handover)
    try:
        status, d = demo(echo=None if args.quiet else echo, progress=note,
                         timeout=args.timeout, **options)
    except CcidkitError as e:
        sys.stderr.write("ccidkit uefi demo: %s\n" % e)
        return 2
    except _build_errors() as e:
        sys.stderr.write("ccidkit uefi demo: build failed: %s\n" % e)
        return 2
    verdict = d.verdicts[-1][0] if d.verdicts else "no verdict"
    took = d.seconds_to_success
    sys.stderr.write("ccidkit uefi demo: %s, status=%d%s\n" % (
        verdict, status, "" if took is None else
        ", authenticated %.1f s after QEMU started" % took))
    return status
