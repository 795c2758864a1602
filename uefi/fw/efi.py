"""UEFI services for in-firmware Python, over the runtime's ``host.call``.

Every service is one ``host.call(name, payload)`` into the C runtime
(uefi/runtime/ck_host.c, ck_usb.c). Payloads are blank-separated tokens,
binary data crosses as hex; answers start with "=" (value follows) or "!"
("!<status hex> <EFI name> <message>"), which becomes ``EfiError``.
"""

import binascii

from ccidkit.core.errors import CcidkitError

try:
    import host as _host
except ImportError:      # CPython: tests install a stand-in with set_host()
    _host = None

# EFI_STATUS values (UEFI spec, Appendix D: error codes have the high bit set)
_ERR = 0x8000000000000000
EFI_SUCCESS = 0
EFI_LOAD_ERROR = _ERR | 1
EFI_INVALID_PARAMETER = _ERR | 2
EFI_UNSUPPORTED = _ERR | 3
EFI_BAD_BUFFER_SIZE = _ERR | 4
EFI_BUFFER_TOO_SMALL = _ERR | 5
EFI_NOT_READY = _ERR | 6
EFI_DEVICE_ERROR = _ERR | 7
EFI_WRITE_PROTECTED = _ERR | 8
EFI_OUT_OF_RESOURCES = _ERR | 9
EFI_NOT_FOUND = _ERR | 14
EFI_ACCESS_DENIED = _ERR | 15
EFI_NO_RESPONSE = _ERR | 16
EFI_TIMEOUT = _ERR | 18
EFI_NOT_STARTED = _ERR | 19
EFI_ALREADY_STARTED = _ERR | 20
EFI_ABORTED = _ERR | 21
EFI_SECURITY_VIOLATION = _ERR | 26

_STATUS_NAMES = (
    (EFI_SUCCESS, "EFI_SUCCESS"), (EFI_LOAD_ERROR, "EFI_LOAD_ERROR"),
    (EFI_INVALID_PARAMETER, "EFI_INVALID_PARAMETER"), (EFI_UNSUPPORTED, "EFI_UNSUPPORTED"),
    (EFI_BAD_BUFFER_SIZE, "EFI_BAD_BUFFER_SIZE"), (EFI_BUFFER_TOO_SMALL, "EFI_BUFFER_TOO_SMALL"),
    (EFI_NOT_READY, "EFI_NOT_READY"), (EFI_DEVICE_ERROR, "EFI_DEVICE_ERROR"),
    (EFI_WRITE_PROTECTED, "EFI_WRITE_PROTECTED"), (EFI_OUT_OF_RESOURCES, "EFI_OUT_OF_RESOURCES"),
    (EFI_NOT_FOUND, "EFI_NOT_FOUND"), (EFI_ACCESS_DENIED, "EFI_ACCESS_DENIED"),
    (EFI_NO_RESPONSE, "EFI_NO_RESPONSE"), (EFI_TIMEOUT, "EFI_TIMEOUT"),
    (EFI_NOT_STARTED, "EFI_NOT_STARTED"), (EFI_ALREADY_STARTED, "EFI_ALREADY_STARTED"),
    (EFI_ABORTED, "EFI_ABORTED"), (EFI_SECURITY_VIOLATION, "EFI_SECURITY_VIOLATION"),
)

# EFI_GLOBAL_VARIABLE (UEFI spec §3.3)
GLOBAL_VARIABLE = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
# variable attributes (UEFI spec §8.2)
VARIABLE_NON_VOLATILE = 0x1
VARIABLE_BOOTSERVICE_ACCESS = 0x2
VARIABLE_RUNTIME_ACCESS = 0x4


def status_name(status):
    for value, name in _STATUS_NAMES:
        if value == status:
            return name
    return "EFI_ERROR"


class EfiError(CcidkitError):
    """A UEFI service failed. ``status`` is the EFI_STATUS, ``name`` its name."""

    def __init__(self, message, status=EFI_DEVICE_ERROR, name=None):
        CcidkitError.__init__(self, message, status, name or status_name(status))
        self.status = status


def set_host(obj):
    """Replace the runtime's ``host`` module (tests on CPython)."""
    global _host
    _host = obj


def _parse_error(answer):
    # "!<status hex> <EFI name> <message>"
    parts = answer[1:].split(" ", 2)
    try:
        status = int(parts[0], 16)
    except ValueError:
        raise EfiError("malformed error answer %r" % answer[:60], EFI_DEVICE_ERROR)
    name = parts[1] if len(parts) > 1 else None
    message = parts[2] if len(parts) > 2 else ""
    return EfiError(message or "failed", status, name)


def call(name, payload=""):
    """One raw service call: str -> str. Failures raise EfiError."""
    if _host is None:
        raise EfiError("no UEFI runtime here (host module missing)", EFI_UNSUPPORTED)
    if not isinstance(name, str) or not isinstance(payload, str):
        raise EfiError("name and payload must be str", EFI_INVALID_PARAMETER)
    try:
        answer = _host.call(name, payload)
    except ValueError:
        # larger than the per-call answer buffer: the runtime kept it for us
        answer = _host.call("_pending", "")
    except RuntimeError:
        raise EfiError("host.call refused %r" % name, EFI_INVALID_PARAMETER)
    if answer[:1] == "=":
        return answer[1:]
    if answer[:1] == "!":
        raise _parse_error(answer)
    raise EfiError("malformed answer to %r" % name, EFI_DEVICE_ERROR)


def _int(value, what, low=0, high=0xFFFFFFFFFFFFFFFF):
    if not isinstance(value, int) or isinstance(value, bool) or value < low or value > high:
        raise EfiError("%s must be an int in %d..%d" % (what, low, high), EFI_INVALID_PARAMETER)
    return value


def _hex(data):
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EfiError("data must be bytes", EFI_INVALID_PARAMETER)
    if len(data) == 0:
        return "-"
    return binascii.hexlify(bytes(data)).decode()


def _unhex(text):
    if text == "-" or text == "":
        return b""
    try:
        return binascii.unhexlify(text)
    except ValueError:
        raise EfiError("malformed hex in an answer", EFI_DEVICE_ERROR)


# ---- time, console, randomness, variables, power ----

def stall(us):
    call("stall", str(_int(us, "us", 0, 10000000)))


def ticks_us():
    return int(call("time.ticks_us"))


def get_time():
    return tuple(int(v) for v in call("time.get").split())


def random_bytes(n):
    _int(n, "n", 1, 65536)
    out = b""
    while len(out) < n:
        k = min(4096, n - len(out))
        out += _unhex(call("rng", str(k)))
    return out


def read_key(timeout_ms=None):
    arg = "-" if timeout_ms is None else str(_int(timeout_ms, "timeout_ms", 0, 3600000))
    answer = call("con.key", arg)
    if not answer:
        return None
    scan, char = answer.split()
    return int(scan), chr(int(char)) if int(char) else ""


def _check_var_name(name):
    if not isinstance(name, str) or not name or len(name) > 127:
        raise EfiError("variable name: 1..127 characters", EFI_INVALID_PARAMETER)
    for ch in name:
        if ord(ch) <= 0x20 or ord(ch) > 0x7E:
            raise EfiError("variable name: printable ASCII without blanks", EFI_INVALID_PARAMETER)
    return name


def get_variable(name, guid=GLOBAL_VARIABLE):
    try:
        answer = call("var.get", "%s %s" % (guid, _check_var_name(name)))
    except EfiError as e:
        if e.status == EFI_NOT_FOUND:
            return None
        raise
    attributes, data = answer.split(" ")
    return int(attributes), _unhex(data)


def set_variable(name, guid, attributes, data):
    call("var.set", "%s %s %d %s" % (guid, _check_var_name(name),
                                     _int(attributes, "attributes", 0, 0xFFFFFFFF), _hex(data)))


def reset(kind="shutdown", status=0):
    if kind not in ("shutdown", "cold", "warm"):
        raise EfiError("reset kind: shutdown, cold or warm", EFI_INVALID_PARAMETER)
    call("reset", "%s %d" % (kind, _int(status, "status", 0, 255)))


def debug_exit(code):
    """QEMU's isa-debug-exit (I/O port 0xf4): QEMU exits with (code << 1) | 1."""
    call("debug_exit", str(_int(code, "code", 0, 255)))


def exit(status):
    """End the run: tell QEMU, then leave (back to the shell, or power off)."""
    status = _int(status, "status", 0, 0xFFFFFFFF) & 0xFF
    debug_exit(status)
    if runtime_info().get("from_shell") == "1":
        call("exit", str(status))
    reset("shutdown", status)


def boot_next():
    """Hand the machine over to the boot option after the current one.

    The runtime's ``boot.next`` (uefi/runtime/ck_boot.c) reads BootCurrent
    and BootOrder (UEFI spec §3.1, §3.3), skips options that are not
    LOAD_OPTION_ACTIVE or not of the boot category (§3.1.3), and starts the
    first one LoadImage accepts (BootPolicy TRUE: Secure Boot verifies it)
    with its OptionalData as LoadOptions, after printing
    ``ccidkit: boot.next: starting Boot#### "DESCRIPTION"``. Our USB
    interrupt transfers are cancelled before.

    An OS loader never comes back. When the started image returns, so does
    this call: ``(option number, the image's exit EFI_STATUS)``.

    @retval (number, status)        the option started and returned
    @raise EfiError EFI_NOT_FOUND   no BootCurrent (not started by the boot
                                    manager), no BootOrder, or no active boot
                                    option after the current one
    @raise EfiError EFI_SECURITY_VIOLATION / EFI_ACCESS_DENIED / EFI_LOAD_ERROR ...
                                    the options after the current one were all
                                    refused by LoadImage (the message names them)
    """
    answer = call("boot.next").split()
    if len(answer) != 2:
        raise EfiError("malformed boot.next answer", EFI_DEVICE_ERROR)
    try:
        return int(answer[0], 16), int(answer[1], 16)
    except ValueError:
        raise EfiError("malformed boot.next answer", EFI_DEVICE_ERROR)


def runtime_info():
    """dict of str: tsc_hz, stack_peak (bytes of native stack used), from_shell, files."""
    info = {}
    for item in call("rt.info").split():
        key, _, value = item.partition("=")
        info[key] = value
    return info


# ---- USB (EFI_USB_IO_PROTOCOL: one handle per interface) ----

class UsbDevice:
    """One EFI_USB_IO_PROTOCOL handle (one interface of a device)."""

    def __init__(self, handle, device_descriptor, config_descriptor, interface_descriptor,
                 endpoints):
        self.handle = handle
        self.device_descriptor = device_descriptor
        self.config_descriptor = config_descriptor
        self.interface_descriptor = interface_descriptor
        d = device_descriptor
        self.vid = d[8] | (d[9] << 8) if len(d) >= 10 else 0
        self.pid = d[10] | (d[11] << 8) if len(d) >= 12 else 0
        i = interface_descriptor
        self.interface_number = i[2] if len(i) >= 9 else 0
        self.interface_class = i[5] if len(i) >= 9 else 0
        self.interface_subclass = i[6] if len(i) >= 9 else 0
        self.interface_protocol = i[7] if len(i) >= 9 else 0
        self.endpoints = endpoints

    def __repr__(self):
        return "UsbDevice(handle=%d, %04X:%04X, interface %d class %02X)" % (
            self.handle, self.vid, self.pid, self.interface_number, self.interface_class)


def _parse_usb_line(line):
    fields = line.split(" ")
    if len(fields) != 5:
        raise EfiError("malformed usb.list line", EFI_DEVICE_ERROR)
    endpoints = []
    if fields[4] != "-":
        for ep in fields[4].split(","):
            a, attr, mps, ivl = ep.split(":")
            endpoints.append((int(a), int(attr), int(mps), int(ivl)))
    return UsbDevice(int(fields[0]), _unhex(fields[1]), _unhex(fields[2]), _unhex(fields[3]),
                     endpoints)


def usb_devices():
    answer = call("usb.list")
    return [_parse_usb_line(line) for line in answer.split("\n") if line]


def _handle(h):
    if isinstance(h, UsbDevice):
        h = h.handle
    return _int(h, "handle", 1, 1000)


def usb_control(handle, bmRequestType, bRequest, wValue, wIndex, data_or_length,
                timeout_ms=1000):
    _int(bmRequestType, "bmRequestType", 0, 255)
    head = "%d %d %d %d %d %d" % (_handle(handle), bmRequestType,
                                  _int(bRequest, "bRequest", 0, 255),
                                  _int(wValue, "wValue", 0, 0xFFFF),
                                  _int(wIndex, "wIndex", 0, 0xFFFF),
                                  _int(timeout_ms, "timeout_ms", 1, 60000))
    if bmRequestType & 0x80:
        return _unhex(call("usb.control", "%s %d" % (head, _int(data_or_length, "length", 0, 4096))))
    call("usb.control", "%s %s" % (head, _hex(data_or_length)))
    return b""


def usb_bulk_out(handle, endpoint, data, timeout_ms=1000):
    return int(call("usb.bulk_out", "%d %d %d %s" % (
        _handle(handle), _int(endpoint, "endpoint", 0, 0x7F),
        _int(timeout_ms, "timeout_ms", 1, 600000), _hex(data))))


def usb_bulk_in(handle, endpoint, length, timeout_ms=1000):
    return _unhex(call("usb.bulk_in", "%d %d %d %d" % (
        _handle(handle), _int(endpoint, "endpoint", 0x80, 0xFF),
        _int(timeout_ms, "timeout_ms", 1, 600000), _int(length, "length", 1, 65600))))


def usb_interrupt_start(handle, endpoint, length, interval_ms):
    call("usb.intr_start", "%d %d %d %d" % (
        _handle(handle), _int(endpoint, "endpoint", 0x80, 0xFF),
        _int(length, "length", 1, 64), _int(interval_ms, "interval_ms", 1, 255)))


def usb_interrupt_poll(handle, endpoint):
    answer = call("usb.intr_poll", "%d %d" % (_handle(handle), _int(endpoint, "endpoint", 0x80, 0xFF)))
    return [_unhex(p) for p in answer.split(" ") if p]


def usb_interrupt_stop(handle, endpoint):
    call("usb.intr_stop", "%d %d" % (_handle(handle), _int(endpoint, "endpoint", 0x80, 0xFF)))
