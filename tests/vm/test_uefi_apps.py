"""The image's apps under QEMU: the portable suite, the runtime's own checks,
status propagation through `ccidkit uefi run`, and the harness's own rules."""

import re

import pytest

from ccidkit.emu import qemu

RESULT_RE = re.compile(r"^(\d+) passed, (\d+) failed$")


def result_lines(text):
    return [m for m in (RESULT_RE.match(line.strip()) for line in text.splitlines()) if m]


def test_core_tests_in_uefi_match_the_micropython_binary(ccidkit_cli, esp_dir):
    proc = ccidkit_cli("uefi", "run", "--app", "core-tests", "--image", esp_dir,
                       "--timeout", "900")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "ccidkit uefi run: status=0" in proc.stderr
    results = result_lines(proc.stdout)
    assert results, out
    passed, failed = int(results[-1].group(1)), int(results[-1].group(2))
    assert failed == 0 and passed > 0, out
    lines = [l.strip() for l in proc.stdout.splitlines() if l.strip()]
    assert lines[-1] == "CCIDKIT-EXIT status=0"
    assert RESULT_RE.match(lines[-2]), "the result line is the app's last line"

    # The same modules on the MicroPython unix binary give the same count.
    m = re.search(r"^core-tests: \d+ modules: (.*)$", proc.stdout, re.M)
    assert m, out
    modules = m.group(1).split()
    from mpstage import run_portable_suite
    unix = run_portable_suite(modules)
    unix_results = result_lines(unix.stdout)
    assert unix_results, unix.stdout + unix.stderr
    assert (int(unix_results[-1].group(1)), int(unix_results[-1].group(2))) == (passed, 0)


def test_cli_hello_and_status_propagation(ccidkit_cli, esp_dir):
    # exactly as a user types it: the image comes from $CCIDKIT_UEFI_IMAGE or a cached build
    proc = ccidkit_cli("uefi", "run", "--app", "hello", "--timeout", "60")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hello from ccidkit" in proc.stdout
    assert proc.stdout.rstrip().endswith("CCIDKIT-EXIT status=0")

    proc = ccidkit_cli("uefi", "run", "--app", "core-tests", "--timeout", "60",
                       "--image", esp_dir, "--quiet", "--", "--exit", "3")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout == ""                        # --quiet
    assert "ccidkit uefi run: status=3" in proc.stderr


@pytest.mark.parametrize("app", ["gc-stress", "hostcall-errors"])
def test_runtime_apps_pass(uefi_run, app):
    vm = uefi_run(app, timeout=900)
    assert vm.status == 0, vm.exit_message
    assert vm.console_lines[-1] == "CCIDKIT-EXIT status=0"


def test_unknown_app_status_64(uefi_run):
    vm = uefi_run("no-such-app", timeout=120)
    assert vm.status == 64, vm.exit_message
    assert "unknown app" in vm.console


def test_harness_timeout_no_marker_and_qmp(uefi_image):
    """Without booting the guest (-S keeps the CPU stopped): QMP answers, a
    run that never exits is killed at its timeout (124), and QEMU ending
    without the marker gives 125."""
    with qemu.Vm(uefi_image, app="hello", extra_args=["-S"]) as vm:
        assert vm.qmp_command("query-status")["status"] == "prelaunch"
        assert vm.wait_exit(2) == qemu.STATUS_TIMEOUT
        assert "timed out after 2 s" in vm.exit_message
        assert not vm.running
    with qemu.Vm(uefi_image, app="hello", extra_args=["-S"]) as vm:
        vm.qmp_command("quit")
        assert vm.wait_exit(30) == qemu.STATUS_NO_MARKER
        assert vm.returncode == 0
        assert "no CCIDKIT-EXIT marker" in vm.exit_message
