"""A private pcscd for tests and tools: its own readers, socket and network.

pcsc-lite 1.9.9's daemon has its socket and pid file compiled in
(``/run/pcscd/pcscd.comm``, ``/run/pcscd/pcscd.pid``; the daemon reads no
PCSCLITE_CSOCK_NAME, only the client library does) and refuses to start
beside another one. So ``PrivatePcscd`` starts it with ``unshare`` in

- its own mount namespace, where a private directory is bind-mounted on
  ``/run``: the daemon's socket appears as ``<run>/pcscd/pcscd.comm`` and
  clients reach it with ``PCSCLITE_CSOCK_NAME`` set to that path; the
  system-wide ``/run/pcscd`` is never touched;
- its own network namespace (loopback only): vpcd's listening sockets
  (bound to all interfaces by vpcd) exist only there, nobody else can reach
  them, and the fixed vpcd ports never clash with another pcscd. A virtual
  card connects from inside it (``socket_factory`` / ``vicc()``), or with
  ``nsenter --net=<netns> ccidkit vicc``;

with a private reader.conf directory (``-c``), in the foreground (``-f``),
debug logging (``-d``) captured to a file; APDU logging (``-a``: every
command and answer in clear, PINs included) only when asked for with
``apdu=True``. ``start()`` waits
until the daemon says it is ready (its readers are added before that);
``stop()`` ends it by its PID (SIGTERM, then SIGKILL), and the kernel ends it
too if the thread that started it dies (PR_SET_PDEATHSIG).

libpcsclite reads PCSCLITE_CSOCK_NAME once per process and keeps it, so all
pcscds started in one process without an explicit ``run_dir`` share one
run directory (one at a time): the socket path stays the same.

    with private_pcscd([vpcd_reader()]) as pcscd:
        vicc = pcscd.vicc(MiniCard())          # the card in "Virtual PCD 00 00"
        env = pcscd.client_env()               # for subprocesses (pcsc_scan, opensc-tool)
        pcscd.activate()                       # os.environ, for pyscard in this process

Needs root or unprivileged user namespaces (``unshare -r`` is used when not
root); ``unavailable_reason()`` says why it cannot run here, or None.
"""

import atexit
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from ccidkit.core.errors import CcidkitError
from ccidkit.emu.vicc import VPCD_PORT, Vicc

PCSCD = "pcscd"
UNSHARE = "unshare"
VPCD_LIBPATH = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
CCIDTWIN_LIBPATH = "/usr/lib/pcsc/drivers/serial/libccidtwin.so"

READY_LINE = "daemon ready"
SOCKET_RELPATH = os.path.join("pcscd", "pcscd.comm")

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1

# vpcd 3.3 serves vicc_max_slots slots per reader.conf entry, on PORT, PORT+1...
VPCD_SLOTS = 2


class PcscdError(CcidkitError):
    """The private pcscd could not be started, reached or stopped.

    ``name``: PCSCD_UNAVAILABLE (a tool or permission missing), PCSCD_EXITED
    (the daemon ended early; the message has its log tail), PCSCD_TIMEOUT,
    PCSCD_BUSY (this process's shared run directory is in use), PCSCD_NETNS
    (cannot enter its network namespace).
    """


def vpcd_reader(port=VPCD_PORT, name="Virtual PCD", connect_to=None):
    """A reader.conf entry for vpcd listening on ``port`` (and port+1, ...),
    or, with ``connect_to`` (an address), connecting out to cards listening
    at connect_to:port, port+1, ... (see emu/vicc.py for why that mode ends
    pcscd once a card stops listening)."""
    host = "/dev/null" if connect_to is None else connect_to
    return {"FRIENDLYNAME": name, "DEVICENAME": "%s:0x%X" % (host, port),
            "LIBPATH": VPCD_LIBPATH, "CHANNELID": "0x%X" % port}


def serial_reader(device, model="GemPCTwin", name="GemPCTwin serial"):
    """A reader.conf entry for libccid's serial driver on ``device`` (a tty/pty)."""
    return {"FRIENDLYNAME": name, "DEVICENAME": "%s:%s" % (device, model),
            "LIBPATH": CCIDTWIN_LIBPATH}


def reader_conf(entry):
    """reader.conf text of one entry (a dict as made by vpcd_reader)."""
    lines = []
    for key in ("FRIENDLYNAME", "DEVICENAME", "LIBPATH", "CHANNELID"):
        if key in entry:
            value = entry[key]
            if key == "FRIENDLYNAME":
                value = '"%s"' % value
            lines.append("%-13s %s" % (key, value))
    return "\n".join(lines) + "\n"


def _unshare_argv(network=True):
    argv = [UNSHARE]
    if os.geteuid() != 0:
        argv.append("--map-root-user")
    argv.append("--mount")
    if network:
        argv.append("--net")
    return argv + ["--propagation", "private", "--"]


_reason_cache = []


def unavailable_reason():
    """Why a private pcscd cannot run on this machine, or None if it can."""
    if _reason_cache:
        return _reason_cache[0]
    reason = None
    for tool in (PCSCD, UNSHARE, "mount", "ip"):
        if shutil.which(tool) is None and not os.path.exists("/usr/sbin/" + tool):
            reason = "%s not installed" % tool
            break
    if reason is None and not os.path.exists(VPCD_LIBPATH):
        reason = "vsmartcard-vpcd not installed (%s)" % VPCD_LIBPATH
    if reason is None:
        try:
            done = subprocess.run(_unshare_argv() + ["true"], capture_output=True, timeout=20)
            if done.returncode != 0:
                reason = "cannot create namespaces: %s" % done.stderr.decode(
                    "utf-8", "replace").strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            reason = "unshare failed: %s" % e
    _reason_cache.append(reason)
    return reason


def die_with_parent():
    """``preexec_fn`` for helper processes (pcscd here, a ``ccidkit vicc``
    in a test): the kernel sends SIGTERM when the thread that started it
    dies, so a killed test run leaves nothing behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def socket_in_netns(netns_path, family=socket.AF_INET, type=socket.SOCK_STREAM):
    """A new socket created inside the network namespace ``netns_path``.

    Only the calling thread switches namespace, and only while the socket is
    created; the socket stays in that namespace for its whole life.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    except OSError as e:
        raise PcscdError("cannot open this thread's network namespace: %s" % e,
                         name="PCSCD_NETNS")
    try:
        try:
            target = os.open(netns_path, os.O_RDONLY)
        except OSError as e:
            raise PcscdError("cannot open %s: %s" % (netns_path, e), name="PCSCD_NETNS")
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise PcscdError("setns(%s): %s" % (netns_path, os.strerror(err)), err,
                                 "PCSCD_NETNS")
            try:
                return socket.socket(family, type)
            finally:
                if libc.setns(own, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise PcscdError("cannot return to the own network namespace: %s"
                                     % os.strerror(err), err, "PCSCD_NETNS")
        finally:
            os.close(target)
    finally:
        os.close(own)


_shared = {"dir": None, "owner": None}
_shared_lock = threading.Lock()


def _cleanup_shared():
    d = _shared["dir"]
    if d and os.path.isdir(d):
        shutil.rmtree(d, ignore_errors=True)


def _claim_shared_run_dir(owner):
    with _shared_lock:
        if _shared["owner"] is not None:
            raise PcscdError("another private pcscd of this process is running "
                             "(libpcsclite keeps one socket path per process)",
                             name="PCSCD_BUSY")
        if _shared["dir"] is None:
            _shared["dir"] = tempfile.mkdtemp(prefix="ccidkit-pcscd-run-")
            os.chmod(_shared["dir"], 0o755)
            atexit.register(_cleanup_shared)
        _shared["owner"] = owner
        return _shared["dir"]


def _release_shared_run_dir(owner):
    with _shared_lock:
        if _shared["owner"] is owner:
            _shared["owner"] = None


class PrivatePcscd:
    """One private pcscd (see the module documentation).

    ``readers``: reader.conf entries (``vpcd_reader()``, ``serial_reader()``),
    one file each. ``run_dir``: the directory mounted on /run (default: this
    process's shared one). ``private_network=False`` keeps the host's network
    (for vpcd connecting out to cards on loopback: then vpcd listens nowhere). Attributes after ``start()``: ``pid``,
    ``socket_path``, ``netns`` (``/proc/<pid>/ns/net``), ``log_path``.
    ``apdu=True`` adds pcscd's APDU log (opt-in: it holds PINs in clear).
    """

    def __init__(self, readers=None, run_dir=None, debug=True, apdu=False, extra_args=(),
                 ready_timeout=20.0, private_network=True):
        self.readers = list(readers) if readers is not None else [vpcd_reader()]
        self.private_network = private_network
        self.debug = debug
        self.apdu = apdu
        self.extra_args = list(extra_args)
        self.ready_timeout = ready_timeout
        self._own_run_dir = run_dir
        self.run_dir = None
        self.proc = None
        self.pid = None
        self.netns = None
        self.socket_path = None
        self.log_path = None
        self.log_text = ""
        self._dir = None
        self._log_file = None
        self._saved_env = None

    # -- life cycle -----------------------------------------------------
    def start(self):
        reason = unavailable_reason()
        if reason:
            raise PcscdError(reason, name="PCSCD_UNAVAILABLE")
        if self._own_run_dir is not None:
            self.run_dir = self._own_run_dir
            os.makedirs(self.run_dir, exist_ok=True)
        else:
            self.run_dir = _claim_shared_run_dir(self)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self):
        self._dir = tempfile.mkdtemp(prefix="ccidkit-pcscd-")
        conf = os.path.join(self._dir, "reader.conf.d")
        os.mkdir(conf)
        for i, entry in enumerate(self.readers):
            with open(os.path.join(conf, "reader%02d" % i), "w") as f:
                f.write(reader_conf(entry))
        # leftovers of a daemon that was killed would stop this one
        piddir = os.path.join(self.run_dir, "pcscd")
        for name in ("pcscd.comm", "pcscd.pid"):
            try:
                os.unlink(os.path.join(piddir, name))
            except FileNotFoundError:
                pass
        self.socket_path = os.path.join(self.run_dir, SOCKET_RELPATH)
        self.log_path = os.path.join(self._dir, "pcscd.log")
        self._log_file = open(self.log_path, "wb")
        daemon = [PCSCD, "--foreground", "-c", conf]
        # info level at least: the "daemon ready" line is what start() waits for
        daemon.append("--debug" if self.debug else "--info")
        if self.apdu:
            daemon.append("--apdu")
        daemon += self.extra_args
        if self.private_network:
            script = 'mount -n --bind "$0" /run && ip link set lo up && exec "$@"'
        else:
            script = 'mount -n --bind "$0" /run && exec "$@"'
        argv = _unshare_argv(self.private_network) + ["sh", "-c", script, self.run_dir] + daemon
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        self.pid = self.proc.pid
        self.netns = "/proc/%d/ns/net" % (self.pid if self.private_network else os.getpid())
        self.wait_for_log(READY_LINE, self.ready_timeout)
        deadline = time.monotonic() + self.ready_timeout
        while not os.path.exists(self.socket_path):
            if time.monotonic() > deadline:
                raise PcscdError("no socket at %s" % self.socket_path, name="PCSCD_TIMEOUT")
            time.sleep(0.02)

    def stop(self, timeout=10.0):
        """End the daemon by its PID (SIGTERM, then SIGKILL) and clean up."""
        self.deactivate()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.log_path and os.path.exists(self.log_path):
            self.log_text = self.read_log()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            self.log_path = None
        _release_shared_run_dir(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- the log --------------------------------------------------------
    def read_log(self):
        """The daemon's output so far (after stop(): all of it)."""
        if self.log_path is None:
            return self.log_text
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def tail(self, lines=40):
        return "\n".join(self.read_log().splitlines()[-lines:])

    def wait_for_log(self, pattern, timeout=10.0, start=0):
        """Block until ``pattern`` (a regex) appears in the log after offset
        ``start``; returns the match. PcscdError when the daemon exits or the
        (bounded) wait ends."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.read_log(), start)
            if m:
                return m
            if self.proc.poll() is not None:
                raise PcscdError("pcscd exited with status %s:\n%s"
                                 % (self.proc.returncode, self.tail()), self.proc.returncode,
                                 "PCSCD_EXITED")
            if time.monotonic() > deadline:
                raise PcscdError("no %r in the pcscd log within %gs:\n%s"
                                 % (pattern, timeout, self.tail()), name="PCSCD_TIMEOUT")
            time.sleep(0.02)

    # -- clients --------------------------------------------------------
    def client_env(self, base=None):
        """An environment for client processes (pcsc_scan, opensc-tool, ...)."""
        env = dict(os.environ if base is None else base)
        env["PCSCLITE_CSOCK_NAME"] = self.socket_path
        return env

    def activate(self):
        """Point this process's libpcsclite (pyscard) at this daemon."""
        if self._saved_env is None:
            self._saved_env = (os.environ.get("PCSCLITE_CSOCK_NAME"),)
        os.environ["PCSCLITE_CSOCK_NAME"] = self.socket_path

    def deactivate(self):
        if self._saved_env is None:
            return
        (old,) = self._saved_env
        self._saved_env = None
        if old is None:
            os.environ.pop("PCSCLITE_CSOCK_NAME", None)
        else:
            os.environ["PCSCLITE_CSOCK_NAME"] = old

    def socket_factory(self, family=socket.AF_INET, type=socket.SOCK_STREAM):
        """A new socket inside the daemon's network namespace."""
        return socket_in_netns(self.netns, family, type)

    def vicc(self, card, port=VPCD_PORT, slot=0, **options):
        """A started ``Vicc`` serving ``card`` to vpcd slot ``slot`` (port + slot)."""
        v = Vicc(card, host="127.0.0.1", port=port + slot, socket_factory=self.socket_factory,
                 **options)
        return v.start()


@contextlib.contextmanager
def private_pcscd(readers=None, **options):
    """``with private_pcscd([vpcd_reader()]) as pcscd:`` a started PrivatePcscd,
    stopped (by PID) on the way out."""
    daemon = PrivatePcscd(readers, **options)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


try:
    import pytest
except ImportError:  # the harness works without pytest
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="module")
    def pcscd_vpcd():
        """(module) a private pcscd with one vpcd reader entry (slots "Virtual
        PCD 00 00" and "00 01"), activated for pyscard in this process;
        skipped where the machine cannot run it."""
        reason = unavailable_reason()
        if reason:
            pytest.skip("private pcscd: " + reason)
        with private_pcscd([vpcd_reader()]) as daemon:
            daemon.activate()
            yield daemon
