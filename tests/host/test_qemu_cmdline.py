"""The QEMU harness's pure parts: command line, args.txt, status rules, console cleaning."""

import pytest

from ccidkit.emu import qemu
from ccidkit.emu.qemu import (
    QemuError, STATUS_MISMATCH, STATUS_NO_MARKER, STATUS_TIMEOUT, Vm, args_line,
    build_command_line, clean_console, exit_status,
)


def option_values(argv, option):
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == option]


def test_command_line_tcg_defaults():
    argv = build_command_line("/r/esp", "/r/VARS.fd", "/fw/CODE.fd", qmp_path="/r/qmp.sock",
                              qemu="/usr/bin/qemu-system-x86_64")
    assert argv[0] == "/usr/bin/qemu-system-x86_64"
    assert option_values(argv, "-machine") == ["q35"]
    assert option_values(argv, "-accel") == ["tcg"]
    assert option_values(argv, "-m") == ["512"]
    for flag in ("-nodefaults", "-nographic", "-no-reboot"):
        assert flag in argv
    assert option_values(argv, "-drive") == [
        "if=pflash,format=raw,readonly=on,file=/fw/CODE.fd",
        "if=pflash,format=raw,file=/r/VARS.fd",
        "file=fat:/r/esp,format=raw,if=virtio,readonly=on",
    ]
    assert option_values(argv, "-device") == [
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "virtio-rng-pci,rng=rng0",
        "qemu-xhci,id=xhci",
    ]
    assert option_values(argv, "-object") == ["rng-random,filename=/dev/urandom,id=rng0"]
    assert option_values(argv, "-chardev") == ["stdio,id=con0,signal=off"]
    assert option_values(argv, "-serial") == ["chardev:con0"]
    assert option_values(argv, "-qmp") == ["unix:/r/qmp.sock,server=on,wait=off"]


def test_command_line_kvm_extras_and_order():
    argv = build_command_line(
        "/r/esp", "/r/V.fd", "/fw/C.fd", kvm=True, memory_mb=256, no_reboot=False,
        chardevs=["socket,id=ccid0,path=/s/v.sock,reconnect=1"],
        extra_devices=["usb-ccid,id=ccid,bus=xhci.0", "ccid-card-passthru,chardev=ccid0"],
        extra_args=["-S"])
    assert option_values(argv, "-accel") == ["kvm"]
    assert option_values(argv, "-m") == ["256"]
    assert "-no-reboot" not in argv
    assert "-qmp" not in argv
    assert option_values(argv, "-chardev")[1] == "socket,id=ccid0,path=/s/v.sock,reconnect=1"
    devices = option_values(argv, "-device")
    assert devices[-2:] == ["usb-ccid,id=ccid,bus=xhci.0", "ccid-card-passthru,chardev=ccid0"]
    # the xHCI controller exists before the devices that sit on it; chardevs before users
    assert devices.index("qemu-xhci,id=xhci") < devices.index("usb-ccid,id=ccid,bus=xhci.0")
    assert argv.index("socket,id=ccid0,path=/s/v.sock,reconnect=1") < argv.index(
        "ccid-card-passthru,chardev=ccid0")
    assert argv[-1] == "-S"


def test_command_line_refuses_commas_in_paths():
    with pytest.raises(QemuError) as e:
        build_command_line("/r/a,b", "/r/V.fd", "/fw/C.fd")
    assert e.value.name == "BAD_ARGS"


def test_args_line():
    assert args_line("core-tests") == "core-tests\n"
    assert args_line("hello", ["--status", 3]) == "hello --status 3\n"
    for bad_app, bad_args in (("", []), ("a b", []), ("hello", ["x y"]), ("hello", ["a\nb"]),
                              ("hello", [""])):
        with pytest.raises(QemuError) as e:
            args_line(bad_app, bad_args)
        assert e.value.name == "BAD_ARGS"


def test_vm_refuses_bad_args_before_starting_anything():
    with pytest.raises(QemuError):
        Vm("/nonexistent", app="hello", args=["two words"])


def test_exit_status_rules():
    assert exit_status(0, 1) == (0, "status=0")
    assert exit_status(3, 7) == (3, "status=3")
    assert exit_status(200, ((200 << 1) | 1) & 0xFF)[0] == 200   # exit code is 8 bits
    assert exit_status(3, 7, timed_out=True)[0] == STATUS_TIMEOUT
    status, msg = exit_status(None, 1)
    assert status == STATUS_NO_MARKER and "no CCIDKIT-EXIT marker" in msg
    assert exit_status(None, -9)[0] == STATUS_NO_MARKER
    status, msg = exit_status(3, 1)
    assert status == STATUS_MISMATCH and "status=3" in msg
    assert exit_status(0, 0)[0] == STATUS_MISMATCH   # shut down without isa-debug-exit
    assert len({STATUS_TIMEOUT, STATUS_NO_MARKER, STATUS_MISMATCH}) == 3


def test_clean_console_and_marker():
    raw = ("\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01HBdsDxe: starting Boot0001\r\n"
           "hello\r\r\nCCIDKIT-EXIT status=3\r\r\n")
    text = clean_console(raw)
    assert text == "BdsDxe: starting Boot0001\nhello\nCCIDKIT-EXIT status=3\n"
    lines = text.split("\n")
    assert qemu.MARKER_RE.match(lines[2]).group(1) == "3"
    assert not qemu.MARKER_RE.match("xCCIDKIT-EXIT status=3")
    assert not qemu.MARKER_RE.match("CCIDKIT-EXIT status=3 and more")


def test_vm_console_feed_and_marker_without_qemu():
    vm = Vm("/nonexistent")
    seen = []
    vm.echo = seen.append
    vm._feed(b"\x1b[2Jboot\r")
    vm._feed(b"\nfirst line\r\r\nCCIDKIT-EXIT sta")
    assert vm.console_lines == ["boot", "first line"]
    vm._feed(b"tus=5\r\nCCIDKIT-EXIT status=7\r\n")
    assert vm.marker_status() == 7                     # the last marker wins
    assert seen == ["boot", "first line", "CCIDKIT-EXIT status=5", "CCIDKIT-EXIT status=7"]
    assert vm.console.endswith("CCIDKIT-EXIT status=7\n")
    assert vm.console_raw.startswith(b"\x1b[2Jboot\r\n")


def test_resolve_esp(tmp_path):
    esp = tmp_path / "esp"
    (esp / "EFI" / "BOOT").mkdir(parents=True)
    assert qemu.resolve_esp(str(esp)) == str(esp)

    class Result:
        esp_dir = str(esp)
    assert qemu.resolve_esp(Result()) == str(esp)
    assert qemu.resolve_esp({"esp_dir": esp}) == str(esp)
    efi = tmp_path / "app.efi"
    efi.write_bytes(b"MZ")
    assert qemu.resolve_esp(str(efi)) == str(efi)
    with pytest.raises(QemuError) as e:
        qemu.resolve_esp(str(tmp_path / "missing"))
    assert e.value.name == "IMAGE_NOT_FOUND"


def test_firmware_and_accel_overrides(monkeypatch, tmp_path):
    code, vars_ = tmp_path / "C.fd", tmp_path / "V.fd"
    code.write_bytes(b"c")
    vars_.write_bytes(b"v")
    monkeypatch.setenv("CCIDKIT_OVMF_CODE", str(code))
    monkeypatch.setenv("CCIDKIT_OVMF_VARS", str(vars_))
    assert qemu.find_firmware() == (str(code), str(vars_))
    monkeypatch.setenv("CCIDKIT_OVMF_VARS", str(tmp_path / "missing.fd"))
    with pytest.raises(QemuError) as e:
        qemu.find_firmware()
    assert e.value.name == "OVMF_NOT_FOUND"
    # a firmware the caller names wins over the environment (a user's override of the default)
    other_code, other_vars = tmp_path / "SB_C.fd", tmp_path / "SB_V.fd"
    other_code.write_bytes(b"c")
    other_vars.write_bytes(b"v")
    assert qemu.find_firmware((str(other_code), str(other_vars))) == (str(other_code),
                                                                     str(other_vars))
    for bad in ((str(other_code), str(tmp_path / "missing.fd")), (str(other_code),), "x", (None, None)):
        with pytest.raises(QemuError) as e:
            qemu.find_firmware(bad)
        assert e.value.name == "OVMF_NOT_FOUND"
    monkeypatch.setenv("CCIDKIT_ACCEL", "tcg")
    assert qemu.kvm_usable() is False
    monkeypatch.setenv("CCIDKIT_ACCEL", "kvm")
    assert qemu.kvm_usable() is True


def test_one_vm_per_process(monkeypatch, tmp_path):
    """A second VM in the same process is refused instead of waiting on itself."""
    monkeypatch.setattr(qemu, "_process_vm", [object()])
    esp = tmp_path / "esp"
    esp.mkdir()
    with pytest.raises(QemuError) as e:
        Vm(str(esp), exclusive=False).start()
    assert e.value.name == "VM_BUSY"


def test_vm_takes_its_firmware_as_a_parameter(tmp_path, monkeypatch):
    monkeypatch.delenv("CCIDKIT_OVMF_CODE", raising=False)
    monkeypatch.delenv("CCIDKIT_OVMF_VARS", raising=False)
    monkeypatch.setenv("CCIDKIT_QEMU", "/bin/true")
    esp = tmp_path / "esp"
    esp.mkdir()
    vm = Vm(str(esp), exclusive=False, firmware=(str(tmp_path / "C.fd"), str(tmp_path / "V.fd")))
    assert vm.firmware == (str(tmp_path / "C.fd"), str(tmp_path / "V.fd"))
    with pytest.raises(QemuError) as e:
        vm.start()                  # checked before anything runs
    assert e.value.name == "OVMF_NOT_FOUND" and "C.fd" in e.value.message
    assert vm.proc is None and vm.workdir is None


def test_cli_parses_run_options():
    from ccidkit.scripts.main import build_parser
    args = build_parser().parse_args(
        ["uefi", "run", "--app", "core-tests", "--timeout", "60", "--", "-v", "x"])
    assert (args.app, args.timeout, args.app_args) == ("core-tests", 60.0, ["-v", "x"])
    assert args.func.__name__ == "run_vm"


def test_machine_lock_is_exclusive_and_bounded(monkeypatch, tmp_path):
    lock_file = str(tmp_path / "vm.lock")
    monkeypatch.setattr(qemu, "_lock_path", lambda: lock_file)
    first = qemu._MachineLock(timeout=5)
    first.acquire()
    notes = []
    second = qemu._MachineLock(timeout=0.3, note=notes.append)
    with pytest.raises(QemuError) as e:
        second.acquire()
    assert e.value.name == "VM_BUSY"
    assert notes and "waiting for another ccidkit VM" in notes[0]
    first.release()
    second.acquire()          # free again
    second.release()


def test_wait_for_line_reads_in_order_without_qemu():
    vm = Vm("/nonexistent")
    vm.proc = type("Exited", (), {"poll": lambda self: 0, "returncode": 0})()
    vm._feed(b"step 1\r\nstep 2\r\nresult 7\r\nstep 3\r\n")
    assert vm.wait_for_line(r"^step (\d)", 1).group(1) == "1"
    assert vm.wait_for_line(r"^step (\d)", 1).group(1) == "2"
    assert vm.wait_for_line(r"^step (\d)", 1).group(1) == "3"
    assert vm.wait_for_line(r"^step (\d)", 1, start=0).group(1) == "1"
    with pytest.raises(QemuError) as e:       # QEMU is gone: no waiting for more
        vm.wait_for_line(r"^never", 30)
    assert e.value.name == "VM_EXITED"
