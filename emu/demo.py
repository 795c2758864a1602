"""`ccidkit uefi demo`: pre-boot smart-card authentication in QEMU, end to end.

    from ccidkit.emu.demo import Demo
    with Demo(card_image=None, pin="123456", reader="qemu-ccid", echo=print) as demo:
        status = demo.run()          # 0 only when the card authenticated

What happens:
1. the card: the PIV authentication card (emu/cards/auth.py) on a card image
   (a fresh one in a private temporary folder unless ``card_image`` names
   one; an existing image keeps its keys and its PIN retry counter);
2. enrolment: the public key of the card's PIV Authentication key (9A) (or
   of ``enroll_image``'s card) becomes the generated module
   ``ccidkit.uefi.fw.apps.enrolled_key`` embedded in the image, built into
   ``build/uefi-demo`` (the builder's ``--app``; under Secure Boot the
   image's signature covers it);
3. Secure Boot (``secure_boot=True``): the image is signed with sbsign and
   OVMF's secure-boot firmware starts with PK/KEK/db holding our certificate
   (emu/secureboot.py); ``unsigned=True`` boots the unsigned image instead,
   which the firmware refuses;
4. the reader: QEMU's usb-ccid with the card behind VSCard (``qemu-ccid``),
   or an emulated reader through usb-redir (``emulated:PROFILE``,
   emu/vm_readers.py);
5. QEMU boots ``preboot-auth``; at each PIN prompt the demo types the PIN on
   the serial console (the firmware reads it as keys), until the app's
   verdict line and exit;
6. hand-over (``handover=True``, the default): the VM's variable store holds
   two boot options, Boot0000 the demo (``\\EFI\\BOOT\\BOOTX64.EFI``) and
   Boot0001 the stand-in for an OS loader (``\\ccidkit\\next-stage.efi``, a
   copy of the same image, signed alike, whose load options run
   ``hello next-boot-option``). After SUCCESS the app starts Boot0001 through
   the firmware (efi.boot_next), which prints its lines and ends the run.
   ``handover=False`` runs the app with ``--no-handover`` on the firmware's
   own store: it ends right after its verdict.

``fault="tamper-signature"`` flips one bit of the card's signature on its
way to the VM (the app must refuse it). Nothing here prints the PIN; the
VSCard trace (which holds the VERIFY APDU) stays in memory.
"""

import os
import re
import shutil
import tempfile
import threading
import time

from ccidkit.core.errors import CcidkitError

DEFAULT_PIN = "123456"            # emu/cards/auth.py's documented default
DEFAULT_TIMEOUT_S = 600.0
APP = "preboot-auth"
PROMPT_RE = re.compile(r"^preboot-auth: enter the PIN")
VERDICT_RE = re.compile(r"^PREBOOT-AUTH: (SUCCESS|REFUSED|FAILED)\b(.*)$")
EXIT_RE = re.compile(r"^CCIDKIT-EXIT status=\d+")
FAULTS = ("tamper-signature",)
REFUSED_PULL_S = 1.0              # a refused card is pulled and put back after this
NEXT_STAGE_PATH = "\\ccidkit\\next-stage.efi"
NEXT_STAGE_OPTIONS = "hello next-boot-option"   # app and argument of the next boot option
HANDOVER_RE = re.compile(r"^ccidkit: boot\.next: starting (Boot[0-9A-F]{4}) ")


class DemoError(CcidkitError):
    """``name``: BAD_READER, BAD_FAULT, NO_VM_READERS, BAD_PIN."""


def demo_out_dir():
    from ccidkit.uefi.build import default_out_dir
    return default_out_dir() + "-demo"


def enrolled_key_source(n, e, label):
    """The generated module holding the enrolled public key."""
    return ('"""The enrolled public key (written by ccidkit.emu.demo)."""\n\n'
            "import sys\n\n"
            "LABEL = %r\n"
            "E = %d\n"
            "N = int(\n    %r, 16)\n\n\n"
            "def main(argv):\n"
            "    sys.stdout.write('enrolled key %%s: RSA, e=%%d\\n' %% (LABEL, E))\n"
            "    return 0\n" % (label, e, "%x" % n))


def _seed_work(out_dir, progress):
    """A new demo build folder starts from the default build's cached steps
    (the builder's keys allow a copied work tree), so only the Python part runs."""
    from ccidkit.uefi.build import default_out_dir
    src = os.path.join(default_out_dir(), "work")
    dst = os.path.join(out_dir, "work")
    if os.path.isdir(dst) or not os.path.isdir(src):
        return
    progress("demo: seeding %s from the default build's cache" % dst)
    tmp = dst + ".tmp"
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("*.tmp", ".lock"))
    os.replace(tmp, dst)


def build_demo_image(public_key, label="card", out_dir=None, progress=None):
    """The image with ``public_key`` (cryptography RSA public key) enrolled."""
    from ccidkit.uefi.build import build_image
    progress = progress or (lambda m: None)
    out_dir = out_dir or demo_out_dir()
    os.makedirs(out_dir, exist_ok=True)
    _seed_work(out_dir, progress)
    nums = public_key.public_numbers()
    gen = os.path.join(out_dir, "gen")
    os.makedirs(gen, exist_ok=True)
    path = os.path.join(gen, "enrolled_key.py")
    text = enrolled_key_source(nums.n, nums.e, label)
    old = None
    if os.path.isfile(path):
        with open(path) as f:
            old = f.read()
    if old != text:
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    return build_image(out_dir=out_dir, apps=[path], progress=progress)


class TamperSignature:
    """A card wrapper that flips one bit inside GENERAL AUTHENTICATE answers."""

    def __init__(self, card):
        self.card = card
        self.tampered = 0
        self.active = True

    def __getattr__(self, name):
        return getattr(self.card, name)

    def process_apdu(self, apdu):
        rsp = self.card.process_apdu(apdu)
        if self.active and len(apdu) >= 2 and apdu[1] == 0x87 and len(rsp) > 64:
            rsp = bytearray(rsp)
            rsp[40] ^= 0x01
            rsp = bytes(rsp)
            self.tampered += 1
        return rsp


class _QemuCcid:
    """QEMU's usb-ccid with the card behind a VSCard server."""

    def __init__(self, card, inserted):
        from ccidkit.emu.vscard import VSCardServer
        self.server = VSCardServer(card, inserted=inserted)

    def start(self):
        self.server.start()

    def stop(self):
        self.server.stop()

    def qemu_options(self):
        return self.server.qemu_options(0)

    def insert(self, card=None):
        if card is not None:
            self.server.card = card
        self.server.insert_card()

    def remove(self):
        self.server.remove_card()


class _Emulated:
    """An emulated reader through usb-redir (emu/vm_readers.py)."""

    def __init__(self, profile, card, inserted):
        try:
            from ccidkit.emu.vm_readers import EmulatedBridge
        except ImportError as e:
            raise DemoError("emulated readers in the VM need ccidkit.emu.vm_readers (%s)" % e,
                            None, "NO_VM_READERS")
        self.card = card
        self.bridge = EmulatedBridge(profile, {0: card} if inserted else {})

    def start(self):
        self.bridge.start()

    def stop(self):
        self.bridge.stop()

    def qemu_options(self):
        return self.bridge.qemu_options(0)

    def insert(self, card=None):
        if card is not None:
            self.card = card
        self.bridge.insert_card(0, self.card)

    def remove(self):
        self.bridge.remove_card(0)


class Demo:
    """One demo run (see the module docstring); ``run()`` does it all, the
    other methods let tests drive the steps (remove/insert the card, type a
    given PIN)."""

    def __init__(self, card_image=None, pin=DEFAULT_PIN, reader="qemu-ccid", secure_boot=False,
                 unsigned=False, enroll_image=None, fault=None, attempts=3, inserted=True,
                 echo=None, progress=None, out_dir=None, wait_s=300, card_seed=None,
                 handover=True):
        if not isinstance(pin, str) or not pin.isdigit() or not 1 <= len(pin) <= 8:
            raise DemoError("the PIN is 1 to 8 digits", None, "BAD_PIN")
        if fault is not None and fault not in FAULTS:
            raise DemoError("unknown fault %r (%s)" % (fault, ", ".join(FAULTS)), None,
                            "BAD_FAULT")
        if reader != "qemu-ccid" and not reader.startswith("emulated:"):
            raise DemoError("reader: qemu-ccid or emulated:PROFILE, not %r" % reader, None,
                            "BAD_READER")
        self.pin = pin
        self.reader_spec = reader
        self.secure_boot = secure_boot
        self.unsigned = unsigned
        self.enroll_image = enroll_image
        self.fault = fault
        self.attempts = attempts
        self.inserted = inserted
        self.echo = echo
        self.progress = progress or (lambda m: None)
        self.out_dir = out_dir or demo_out_dir()
        self.wait_s = wait_s
        self.card_seed = card_seed
        self.handover = handover
        self._tmp = None
        self._work = None
        self.card_image = card_image
        self.card = None
        self.served = None
        self.reader = None
        self.vm = None
        self.image = None
        self.t_launch = None
        self.t_success = None
        self.verdicts = []
        self.pins_typed = 0
        self._stamps = []
        self._lock = threading.Lock()

    # -- preparation -------------------------------------------------------
    def prepare(self):
        from ccidkit.emu.cards.auth import AuthCard
        if self.card_image is None:
            self._tmp = tempfile.mkdtemp(prefix="ccidkit-demo-")
            os.chmod(self._tmp, 0o700)
            self.card_image = os.path.join(self._tmp, "auth-card.img")
        self.card = AuthCard(image=self.card_image, seed=self.card_seed)
        enrolled_card = self.card
        if self.enroll_image is not None:
            enrolled_card = AuthCard(image=self.enroll_image)
        label = os.path.basename(self.enroll_image or self.card_image)
        self.image = build_demo_image(enrolled_card.public_key(0x9A), label=label,
                                      out_dir=self.out_dir, progress=self.progress)
        self.served = TamperSignature(self.card) if self.fault == "tamper-signature" else self.card
        if self.reader_spec == "qemu-ccid":
            self.reader = _QemuCcid(self.served, self.inserted)
        else:
            self.reader = _Emulated(self.reader_spec.split(":", 1)[1], self.served, self.inserted)
        return self

    def _esp(self):
        if not self.secure_boot or self.unsigned:
            return self.image.esp_dir
        from ccidkit.emu import secureboot
        keys = secureboot.ensure_keys(os.path.join(self.out_dir, "secureboot"))
        return secureboot.signed_esp(self.image, keys.key, keys.cert,
                                     os.path.join(self.out_dir, "esp-signed"))

    def _firmware(self):
        """(code, VARS template) and extra QEMU arguments for this run."""
        from ccidkit.emu import qemu
        if self.secure_boot:
            from ccidkit.emu import secureboot
            folder = os.path.join(self.out_dir, "secureboot")
            keys = secureboot.ensure_keys(folder)
            opts = secureboot.vm_options(*secureboot.firmware(folder, keys.cert))
            return opts["firmware"], opts["extra_args"]
        return qemu.find_firmware(), []

    def _handover_setup(self, esp, firmware):
        """A private ESP with the next-stage copy and a VARS store with the two
        boot options (see the module docstring); returns (esp, firmware)."""
        from ccidkit.emu import secureboot
        self._work = tempfile.mkdtemp(prefix="ccidkit-demo-boot-")
        os.chmod(self._work, 0o700)
        dst = os.path.join(self._work, "esp")
        shutil.copytree(esp, dst)
        image = os.path.join(dst, "EFI", "BOOT", "BOOTX64.EFI")
        target = os.path.join(dst, *NEXT_STAGE_PATH.split("\\")[1:])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(image, target)
        code, template = firmware
        store = secureboot.add_boot_options(
            template, os.path.join(self._work, "VARS.fd"),
            [("\\EFI\\BOOT\\BOOTX64.EFI", None), (NEXT_STAGE_PATH, NEXT_STAGE_OPTIONS)])
        return dst, (code, store)

    def _on_line(self, line):
        with self._lock:
            self._stamps.append(time.monotonic())
        if self.echo is not None:
            self.echo(line)

    # -- life cycle ----------------------------------------------------------
    def start(self):
        from ccidkit.emu import qemu
        if self.image is None:
            self.prepare()
        esp = self._esp()
        firmware, extra = self._firmware()
        args = ["--attempts", self.attempts, "--wait-s", self.wait_s]
        if self.handover:
            esp, firmware = self._handover_setup(esp, firmware)
        else:
            args.append("--no-handover")
        self.reader.start()
        opts = self.reader.qemu_options()
        self.vm = qemu.Vm(esp, app=APP, args=args, chardevs=opts.get("chardevs", ()),
                          extra_devices=opts.get("devices", ()), echo=self._on_line,
                          echo_err=self.echo, firmware=firmware, extra_args=extra)
        self.vm.start()
        # QEMU runs from here (start() returns once QMP answers, after any wait
        # for another VM to finish)
        self.t_launch = time.monotonic()
        return self

    def stop(self):
        if self.vm is not None:
            self.vm.close()
        if self.reader is not None:
            self.reader.stop()
        for attr in ("_tmp", "_work"):
            if getattr(self, attr) is not None:
                shutil.rmtree(getattr(self, attr), ignore_errors=True)
                setattr(self, attr, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- steps -------------------------------------------------------------------
    def type_pin(self, pin=None):
        """Type ``pin`` (default: the demo's) and Enter on the serial console."""
        self.vm.send_console((self.pin if pin is None else pin) + "\r")
        self.pins_typed += 1

    def insert_card(self, card=None):
        """Insert the demo's card (or ``card``, another card object, instead)."""
        self.reader.insert(card)

    def remove_card(self):
        self.reader.remove()

    def wait_line(self, pattern, timeout=300.0):
        return self.vm.wait_for_line(pattern, timeout=timeout)

    def run(self, timeout=DEFAULT_TIMEOUT_S):
        """Boot, answer every PIN prompt, wait for the exit; the status (0 only
        when a SUCCESS verdict came and the app exited with 0)."""
        from ccidkit.emu.qemu import QemuError
        if self.vm is None:
            self.start()
        deadline = time.monotonic() + timeout
        either = re.compile("|".join((PROMPT_RE.pattern, VERDICT_RE.pattern, EXIT_RE.pattern)))
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                m = self.vm.wait_for_line(either, timeout=left)
            except QemuError:
                break
            line = m.string
            if PROMPT_RE.match(line):
                self.type_pin()
                continue
            v = VERDICT_RE.match(line)
            if v:
                self.verdicts.append((v.group(1), v.group(2).strip()))
                if v.group(1) == "SUCCESS":
                    self.t_success = self._stamp_of_last_line()
                elif v.group(1) == "REFUSED":
                    # the user pulls the refused card and tries it again; the app
                    # counts the attempts and gives up after the last one
                    threading.Timer(REFUSED_PULL_S, self._reinsert).start()
                continue
            break           # the exit marker
        status = self.vm.wait_exit(max(1.0, deadline - time.monotonic()))
        if status == 0 and not any(v[0] == "SUCCESS" for v in self.verdicts):
            return 1        # never 0 without an authentication
        return status

    def _reinsert(self):
        try:
            self.reader.remove()
            time.sleep(REFUSED_PULL_S)
            self.reader.insert()
        except (CcidkitError, OSError):
            pass

    def _stamp_of_last_line(self):
        with self._lock:
            return self._stamps[-1] if self._stamps else time.monotonic()

    @property
    def handed_over_to(self):
        """``Boot####`` the app started after its SUCCESS line, or None."""
        if self.vm is None:
            return None
        for line in self.vm.console_lines:
            m = HANDOVER_RE.match(line)
            if m:
                return m.group(1)
        return None

    @property
    def seconds_to_success(self):
        if self.t_success is None or self.t_launch is None:
            return None
        return self.t_success - self.t_launch


def run_demo(echo=print, progress=None, timeout=DEFAULT_TIMEOUT_S, **options):
    """The whole demo; returns (status, Demo) after QEMU ended."""
    demo = Demo(echo=echo, progress=progress, **options)
    try:
        demo.prepare()
        status = demo.run(timeout)
    finally:
        demo.stop()
    return status, demo
