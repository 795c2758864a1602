"""Run a ccidkit UEFI image in QEMU (TCG, or KVM when /dev/kvm is usable) with OVMF.

One run = one private temporary directory (owner-only) holding a copy of the
OVMF variable store, a copy of the ESP with ``\\ccidkit\\args.txt`` written for
the chosen app, the QMP socket and the console log. The firmware boots the
image directly as ``\\EFI\\BOOT\\BOOTX64.EFI``; the app prints its status on the
serial console as the final marker line ``CCIDKIT-EXIT status=N`` and leaves
through QEMU's isa-debug-exit device, which makes QEMU exit with (N<<1)|1.
The run's status is N when both agree.

    with Vm(image, app="usb-probe", extra_devices=[...], chardevs=[...]) as vm:
        vm.wait_for_line(r"^ATR: ", timeout=60)
        vm.qmp_command("device_del", id="card0")
        status = vm.wait_exit(timeout=120)

Only one VM runs at a time on a machine (per user): TCG takes a whole core.
``Vm.start()`` waits (bounded) for a lock file held by any other run.

Statuses besides the app's own: STATUS_TIMEOUT (124) when the run was
killed at its timeout, STATUS_NO_MARKER (125) when QEMU ended without the
marker (crash, reset, garbled console), STATUS_MISMATCH (126) when the marker
and the isa-debug-exit code disagree.
"""

import asyncio
import concurrent.futures
import errno
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from ccidkit.core.errors import CcidkitError

STATUS_TIMEOUT = 124
STATUS_NO_MARKER = 125
STATUS_MISMATCH = 126

MARKER_RE = re.compile(r"^CCIDKIT-EXIT status=(\d+)\s*$")
_ANSI_RE = re.compile(r"\x1b\[[0-9;=?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>c]")

DEBUG_EXIT_IOBASE = 0xF4

# (code, vars) pairs in order of preference; the CODE and VARS of a pair must match.
OVMF_CANDIDATES = (
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
    ("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"),
)

DEFAULT_MEMORY_MB = 512
DEFAULT_LOCK_TIMEOUT = 1800.0


class QemuError(CcidkitError):
    """A harness failure: ``name`` is one of QEMU_NOT_FOUND, OVMF_NOT_FOUND,
    IMAGE_NOT_FOUND, BAD_ARGS, VM_BUSY, VM_NOT_STARTED, VM_EXITED, VM_TIMEOUT,
    QMP_ERROR."""


# -- environment -------------------------------------------------------------

def find_qemu():
    """The qemu-system-x86_64 to run ($CCIDKIT_QEMU overrides)."""
    exe = os.environ.get("CCIDKIT_QEMU") or shutil.which("qemu-system-x86_64")
    if not exe:
        raise QemuError("qemu-system-x86_64 not found (Debian: qemu-system-x86)",
                        name="QEMU_NOT_FOUND")
    return exe


def find_firmware(firmware=None):
    """(OVMF code, OVMF vars template): ``firmware`` (a (code, vars) pair, both
    files) when the caller chose one, e.g. the secure-boot build with an
    enrolled store; else the default, which $CCIDKIT_OVMF_CODE /
    $CCIDKIT_OVMF_VARS override, else the first installed pair."""
    if firmware is not None:
        try:
            code, vars_ = firmware
        except (TypeError, ValueError):
            raise QemuError("firmware is a (code, vars) pair of files", name="OVMF_NOT_FOUND")
        for path in (code, vars_):
            if not path or not os.path.isfile(path):
                raise QemuError("firmware file missing: %s" % (path,), name="OVMF_NOT_FOUND")
        return os.fspath(code), os.fspath(vars_)
    code = os.environ.get("CCIDKIT_OVMF_CODE")
    vars_ = os.environ.get("CCIDKIT_OVMF_VARS")
    if code or vars_:
        if not (code and vars_ and os.path.isfile(code) and os.path.isfile(vars_)):
            raise QemuError("CCIDKIT_OVMF_CODE and CCIDKIT_OVMF_VARS must both name files",
                            name="OVMF_NOT_FOUND")
        return code, vars_
    for code, vars_ in OVMF_CANDIDATES:
        if os.path.isfile(code) and os.path.isfile(vars_):
            return code, vars_
    raise QemuError("OVMF firmware not found (Debian: ovmf)", name="OVMF_NOT_FOUND")


def kvm_usable():
    """True when KVM can run the guest: $CCIDKIT_ACCEL=kvm|tcg decides when set;
    otherwise the CPU must advertise vmx/svm and /dev/kvm open read-write.

    (/dev/kvm alone is not enough: some sandboxes offer it without hardware
    virtualisation and QEMU then stops at the first instruction with
    "KVM internal error".)
    """
    accel = os.environ.get("CCIDKIT_ACCEL", "").strip().lower()
    if accel in ("kvm", "tcg"):
        return accel == "kvm"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = set()
            for line in f:
                if line.startswith("flags"):
                    flags.update(line.split(":", 1)[1].split())
                    break
    except OSError:
        return False
    if not flags & {"vmx", "svm"}:
        return False
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def args_line(app, args=()):
    """The single line of ``\\ccidkit\\args.txt``: ``APP [ARG ...]``.

    The format has no quoting, so names and arguments must be non-empty and
    free of whitespace.
    """
    words = [app] + [str(a) for a in args]
    for w in words:
        if not w or any(c.isspace() for c in w) or not w.isprintable():
            raise QemuError("app names and arguments must be printable and without "
                            "whitespace: %r" % (w,), name="BAD_ARGS")
    return " ".join(words) + "\n"


def resolve_esp(image):
    """The ESP directory of ``image``: a build result (``.esp_dir`` or
    ``["esp_dir"]``), an ESP directory, or None for the default build output."""
    if image is None:
        try:
            from ccidkit.uefi.build import default_out_dir
            out = default_out_dir()
        except ImportError:
            out = os.path.join(os.getcwd(), "build", "uefi")
        image = os.path.join(str(out), "esp")
    elif not isinstance(image, (str, os.PathLike)):
        esp = getattr(image, "esp_dir", None)
        if esp is None and isinstance(image, dict):
            esp = image.get("esp_dir")
        if esp is None:
            raise QemuError("not an image: %r" % (image,), name="IMAGE_NOT_FOUND")
        image = esp
    image = os.fspath(image)
    if os.path.isfile(image) and image.lower().endswith(".efi"):
        return image
    if not os.path.isdir(image):
        raise QemuError("no ESP directory at %s (run `ccidkit uefi build`)" % image,
                        name="IMAGE_NOT_FOUND")
    return image


def build_command_line(esp_dir, vars_path, firmware_code, qmp_path=None, qemu="qemu-system-x86_64",
                       kvm=False, memory_mb=DEFAULT_MEMORY_MB, extra_devices=(), chardevs=(),
                       extra_args=(), no_reboot=True):
    """The QEMU argv for one run (a pure function; nothing is started).

    ``chardevs`` and ``extra_devices`` are the values of extra ``-chardev``
    and ``-device`` options (chardevs come first so devices can name them);
    ``extra_args`` are appended as they are.
    """
    for v in (esp_dir, vars_path, firmware_code):
        if "," in os.fspath(v):
            # QEMU's option syntax would split the value (it wants ",," escaping).
            raise QemuError("path contains a comma: %s" % v, name="BAD_ARGS")
    argv = [qemu,
            "-machine", "q35",
            "-accel", "kvm" if kvm else "tcg",
            "-m", str(int(memory_mb)),
            "-nodefaults", "-nographic"]
    if no_reboot:
        argv.append("-no-reboot")   # a triple fault or a reset ends the run at once
    argv += [
        "-chardev", "stdio,id=con0,signal=off",
        "-serial", "chardev:con0",
        "-drive", "if=pflash,format=raw,readonly=on,file=%s" % firmware_code,
        "-drive", "if=pflash,format=raw,file=%s" % vars_path,
        "-drive", "file=fat:%s,format=raw,if=virtio,readonly=on" % esp_dir,
        "-device", "isa-debug-exit,iobase=0x%x,iosize=0x04" % DEBUG_EXIT_IOBASE,
        "-object", "rng-random,filename=/dev/urandom,id=rng0",
        "-device", "virtio-rng-pci,rng=rng0",
        "-device", "qemu-xhci,id=xhci",
    ]
    if qmp_path:
        argv += ["-qmp", "unix:%s,server=on,wait=off" % qmp_path]
    for c in chardevs:
        argv += ["-chardev", c]
    for d in extra_devices:
        argv += ["-device", d]
    argv += list(extra_args)
    return argv


def clean_console(text):
    """Console text without terminal escapes and carriage returns."""
    return _ANSI_RE.sub("", text).replace("\r", "")


def exit_status(marker, returncode, timed_out=False):
    """(status, message) of a finished run from the console marker (int or
    None) and QEMU's exit code."""
    if timed_out:
        return STATUS_TIMEOUT, "timed out: QEMU killed"
    if marker is None:
        return STATUS_NO_MARKER, ("no CCIDKIT-EXIT marker on the console "
                                  "(QEMU exit code %s)" % returncode)
    expected = ((marker << 1) | 1) & 0xFF
    if returncode != expected:
        return STATUS_MISMATCH, ("console says status=%d but QEMU exited with %s "
                                 "(isa-debug-exit would give %d)" % (marker, returncode,
                                                                     expected))
    return marker, "status=%d" % marker


# -- QMP ---------------------------------------------------------------------

class QmpConnection:
    """Synchronous use of ``qemu.qmp.QMPClient``: an event loop in a thread.

    ``command(name, **arguments)`` returns the command's result;
    ``events`` is the list of events received so far (dicts with "event",
    "data", "timestamp"); ``wait_event(name, timeout)`` waits for the next one.
    """

    def __init__(self, path, timeout=10.0):
        from qemu.qmp import EventListener, QMPClient
        self.timeout = timeout
        self.events = []
        self._seen = 0
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="qmp", daemon=True)
        self._thread.start()
        self._client = QMPClient("ccidkit")
        self._listener = EventListener()
        self._client.register_listener(self._listener)
        self._pump = None
        try:
            self._run(self._client.connect(path), timeout)
            self._pump = asyncio.run_coroutine_threadsafe(self._pump_events(), self._loop)
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro, timeout):
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise QemuError("QMP did not answer within %.0f s" % timeout, name="QMP_ERROR")

    async def _pump_events(self):
        while True:
            ev = await self._listener.get()
            with self._cond:
                self.events.append(dict(ev))
                self._cond.notify_all()

    def command(self, name, **arguments):
        from qemu.qmp import QMPError
        try:
            return self._run(self._client.execute(name, arguments or None), self.timeout)
        except QMPError as e:
            raise QemuError("QMP %s failed: %s" % (name, e), name="QMP_ERROR")

    def wait_event(self, name, timeout=10.0, since_start=False):
        """The next event called ``name`` not returned before (or, with
        ``since_start``, the first ever); QemuError VM_TIMEOUT otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            pos = 0 if since_start else self._seen
            while True:
                for i in range(pos, len(self.events)):
                    if self.events[i].get("event") == name:
                        self._seen = i + 1
                        return self.events[i]
                pos = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise QemuError("no QMP event %s within %.0f s" % (name, timeout),
                                    name="VM_TIMEOUT")
                self._cond.wait(left)

    def close(self):
        if self._pump is not None:
            self._pump.cancel()
        from qemu.qmp import QMPError
        try:
            # when QEMU is already gone, disconnect re-raises the reader's error
            self._run(self._client.disconnect(), 5.0)
        except (QemuError, QMPError, OSError, EOFError, RuntimeError,
                asyncio.CancelledError, concurrent.futures.CancelledError):
            pass
        self._stop_loop()

    def _stop_loop(self):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()


# -- the one-VM-at-a-time lock ------------------------------------------------

_process_lock = threading.Lock()
_process_vm = [None]


def _lock_path():
    return os.path.join(tempfile.gettempdir(), "ccidkit-vm-%d.lock" % os.getuid())


class _MachineLock:
    """An exclusive flock on a per-user lock file, acquired with a bounded wait."""

    def __init__(self, timeout, note=None):
        self.timeout = timeout
        self.note = note
        self.fd = None

    def acquire(self):
        fd = os.open(_lock_path(), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + self.timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            if time.monotonic() >= deadline:
                os.close(fd)
                raise QemuError("another ccidkit VM has been running for over %.0f s "
                                "(lock %s)" % (self.timeout, _lock_path()), name="VM_BUSY")
            if not told and self.note:
                self.note("waiting for another ccidkit VM to finish (%s)" % _lock_path())
                told = True
            time.sleep(0.25)
        self.fd = fd

    def release(self):
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


# -- the VM ------------------------------------------------------------------

def _die_with_parent():
    """In the child before exec: on Linux, have the kernel kill QEMU when the
    thread that started it dies (a killed test run leaves no QEMU behind)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, 9, 0, 0, 0)       # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass


class Vm:
    """One QEMU run of a ccidkit image (see the module docstring).

    image: a build result, an ESP directory or a single .efi file (None: the
    default build output). app/args: written to ``\\ccidkit\\args.txt`` (app
    None: no file, the firmware's default app). echo: a callable taking each
    console line as it arrives (e.g. ``print``), or None; echo_err: the same
    for QEMU's own stderr lines (default: echo, prefixed "qemu: "). log_path: also write
    the raw console there. extra_devices / chardevs / extra_args: see
    build_command_line. exclusive: take the machine-wide VM lock. firmware:
    (OVMF code, VARS template) for this run (see find_firmware; the template is
    copied, never written); None: the default.
    """

    def __init__(self, image=None, app=None, args=(), extra_devices=(), chardevs=(),
                 extra_args=(), echo=None, echo_err=None, log_path=None, memory_mb=DEFAULT_MEMORY_MB,
                 kvm=None, qmp=True, exclusive=True, lock_timeout=DEFAULT_LOCK_TIMEOUT,
                 no_reboot=True, firmware=None):
        self.image = image
        self.firmware = firmware
        self.app = app
        self.args = [str(a) for a in args]
        if app is not None:
            args_line(app, self.args)          # refuse bad arguments before starting
        self.extra_devices = list(extra_devices)
        self.chardevs = list(chardevs)
        self.extra_args = list(extra_args)
        self.echo = echo
        self.echo_err = echo_err
        self.log_path = log_path
        self.memory_mb = memory_mb
        self.kvm = kvm_usable() if kvm is None else kvm
        self.use_qmp = qmp
        self.exclusive = exclusive
        self.lock_timeout = lock_timeout
        self.no_reboot = no_reboot
        self.workdir = None
        self.argv = None
        self.proc = None
        self.pid = None
        self.qmp = None
        self.status = None
        self.exit_message = None
        self.returncode = None
        self.timed_out = False
        self._raw = bytearray()
        self._lines = []
        self._partial = ""
        self._cursor = 0
        self._stderr = bytearray()
        self._cond = threading.Condition()
        self._readers = []
        self._log = None
        self._lock = None
        self._owns_process_slot = False

    # -- life cycle ------------------------------------------------------
    def start(self):
        if self.proc is not None:
            raise QemuError("this VM was already started", name="VM_BUSY")
        qemu = find_qemu()
        code, vars_template = find_firmware(self.firmware)
        esp_src = resolve_esp(self.image)
        with _process_lock:
            if _process_vm[0] is not None:
                raise QemuError("a VM is already running in this process; ccidkit runs "
                                "one VM at a time", name="VM_BUSY")
            _process_vm[0] = self
            self._owns_process_slot = True
        try:
            if self.exclusive:
                self._lock = _MachineLock(self.lock_timeout,
                                          note=lambda m: sys.stderr.write(m + "\n"))
                self._lock.acquire()
            self.workdir = tempfile.mkdtemp(prefix="ccidkit-vm-")
            os.chmod(self.workdir, 0o700)
            esp = os.path.join(self.workdir, "esp")
            if os.path.isdir(esp_src):
                shutil.copytree(esp_src, esp)
            else:
                os.makedirs(os.path.join(esp, "EFI", "BOOT"))
                shutil.copyfile(esp_src, os.path.join(esp, "EFI", "BOOT", "BOOTX64.EFI"))
            if self.app is not None:
                os.makedirs(os.path.join(esp, "ccidkit"), exist_ok=True)
                with open(os.path.join(esp, "ccidkit", "args.txt"), "w", encoding="ascii",
                          newline="\n") as f:
                    f.write(args_line(self.app, self.args))
            vars_path = os.path.join(self.workdir, "OVMF_VARS.fd")
            shutil.copyfile(vars_template, vars_path)
            qmp_path = os.path.join(self.workdir, "qmp.sock") if self.use_qmp else None
            self.argv = build_command_line(
                esp, vars_path, code, qmp_path=qmp_path, qemu=qemu, kvm=self.kvm,
                memory_mb=self.memory_mb, extra_devices=self.extra_devices,
                chardevs=self.chardevs, extra_args=self.extra_args, no_reboot=self.no_reboot)
            self._log = open(self.log_path or os.path.join(self.workdir, "console.log"), "wb")
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         cwd=self.workdir, start_new_session=True,
                                         preexec_fn=_die_with_parent)
            self.pid = self.proc.pid
            for stream, fn in ((self.proc.stdout, self._read_console),
                               (self.proc.stderr, self._read_stderr)):
                t = threading.Thread(target=fn, args=(stream,), daemon=True)
                t.start()
                self._readers.append(t)
            if qmp_path:
                self._connect_qmp(qmp_path)
        except BaseException:
            self.close()
            raise
        return self

    def _connect_qmp(self, path, timeout=15.0):
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if self.proc.poll() is not None:
                self._join_readers()
                raise QemuError("QEMU exited at start (code %s): %s" % (
                    self.proc.returncode, self.stderr.strip()[-2000:]), name="VM_EXITED")
            if time.monotonic() > deadline:
                raise QemuError("QMP socket did not appear", name="QMP_ERROR")
            time.sleep(0.02)
        self.qmp = QmpConnection(path)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """Stop QEMU (the process this object started): SIGTERM, then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def close(self):
        """Kill QEMU if still running and remove everything the run created."""
        try:
            self.kill()
            if self.qmp is not None:
                self.qmp.close()
                self.qmp = None
            if self.proc is not None:
                if self.proc.stdin:
                    try:
                        self.proc.stdin.close()
                    except OSError:
                        pass
                self._join_readers()
            if self._log is not None:
                self._log.close()
                self._log = None
            if self.workdir and os.path.isdir(self.workdir):
                shutil.rmtree(self.workdir, ignore_errors=True)
        finally:
            self._release()

    def _release(self):
        """Let the next VM start (QEMU is gone): the machine lock and this
        process's VM slot."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._owns_process_slot:
            with _process_lock:
                _process_vm[0] = None
            self._owns_process_slot = False

    def _join_readers(self):
        for t in self._readers:
            t.join(5)

    # -- console -----------------------------------------------------------
    def _read_console(self, stream):
        fd = stream.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            self._feed(chunk)
        with self._cond:
            if self._partial:
                self._emit(self._partial)
                self._partial = ""
            self._cond.notify_all()

    def _feed(self, chunk):
        if self._log is not None:
            self._log.write(chunk)
            self._log.flush()
        with self._cond:
            self._raw += chunk
            text = self._partial + chunk.decode("utf-8", "replace")
            parts = text.split("\n")
            self._partial = parts.pop()
            for p in parts:
                self._emit(p)
            self._cond.notify_all()

    def _emit(self, raw_line):
        line = clean_console(raw_line)
        self._lines.append(line)
        if self.echo is not None:
            self.echo(line)

    def _read_stderr(self, stream):
        fd = stream.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            with self._cond:
                self._stderr += chunk
            sink = self.echo_err or self.echo
            if sink is not None:
                for line in chunk.decode("utf-8", "replace").splitlines():
                    sink("qemu: " + line)

    @property
    def console(self):
        """The console so far as text: escapes and CRs removed, lines joined by \\n."""
        with self._cond:
            text = "\n".join(self._lines)
            if self._partial:
                text += ("\n" if self._lines else "") + clean_console(self._partial)
            elif self._lines:
                text += "\n"
        return text

    @property
    def console_lines(self):
        with self._cond:
            return list(self._lines)

    @property
    def console_raw(self):
        with self._cond:
            return bytes(self._raw)

    @property
    def stderr(self):
        with self._cond:
            return self._stderr.decode("utf-8", "replace")

    def send_console(self, text):
        """Type ``text`` on the serial console (the firmware reads it as keys)."""
        self.proc.stdin.write(text.encode() if isinstance(text, str) else text)
        self.proc.stdin.flush()

    def wait_for_line(self, pattern, timeout=60.0, start=None):
        """The first re.Match of ``pattern`` in a complete console line, searched
        from line number ``start`` (default: after the line the previous
        wait_for_line matched, so successive waits read the console in order).
        QemuError VM_TIMEOUT when it does not come in time, VM_EXITED when
        QEMU ends before it."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        pos = self._cursor if start is None else start
        with self._cond:
            while True:
                while pos < len(self._lines):
                    m = rx.search(self._lines[pos])
                    pos += 1
                    if m:
                        self._cursor = pos
                        return m
                if self.proc is None:
                    raise QemuError("VM not started", name="VM_NOT_STARTED")
                if self.proc.poll() is not None and not self._readers_alive():
                    raise QemuError("QEMU exited (code %s) before a line matching %r"
                                    % (self.proc.returncode, rx.pattern), name="VM_EXITED")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise QemuError("no line matching %r within %.0f s" % (rx.pattern, timeout),
                                    name="VM_TIMEOUT")
                self._cond.wait(min(left, 0.5))

    def _readers_alive(self):
        return any(t.is_alive() for t in self._readers[:1])

    def marker_status(self):
        """N from the last ``CCIDKIT-EXIT status=N`` line, or None."""
        for line in reversed(self.console_lines):
            m = MARKER_RE.match(line)
            if m:
                return int(m.group(1))
        return None

    # -- QMP -----------------------------------------------------------------
    def qmp_command(self, name, **arguments):
        if self.qmp is None:
            raise QemuError("no QMP connection", name="VM_NOT_STARTED")
        return self.qmp.command(name, **arguments)

    def wait_event(self, name, timeout=10.0):
        if self.qmp is None:
            raise QemuError("no QMP connection", name="VM_NOT_STARTED")
        return self.qmp.wait_event(name, timeout)

    # -- the end ---------------------------------------------------------------
    def wait_exit(self, timeout=120.0):
        """Wait for QEMU to end (killing it at ``timeout``); returns the status
        and sets ``status``, ``exit_message``, ``returncode``."""
        if self.proc is None:
            raise QemuError("VM not started", name="VM_NOT_STARTED")
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.timed_out = True
            self.kill()
        self._join_readers()
        self._release()
        self.returncode = self.proc.returncode
        self.status, msg = exit_status(self.marker_status(), self.returncode, self.timed_out)
        if self.timed_out:
            msg = "timed out after %.0f s: QEMU (pid %d) killed" % (timeout, self.pid)
        self.exit_message = msg
        return self.status


def run(image=None, app=None, args=(), timeout=120.0, echo=None, **kwargs):
    """Boot ``app`` once and return (status, vm) after QEMU ended; the VM's
    temporary files are gone but its console and status stay readable."""
    vm = Vm(image, app, args, echo=echo, **kwargs)
    try:
        vm.start()
        vm.wait_exit(timeout)
    finally:
        vm.close()
    return vm.status, vm
