"""`ccidkit uefi`: build the UEFI image and run its apps in QEMU.

    ccidkit uefi build [...]                       the image (ccidkit.uefi.build)
    ccidkit uefi run [--app NAME] [--timeout S] [-- APP ARGS ...]

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
