"""The pytest plugin seen from a user's test suite (an inner pytest run)."""

pytest_plugins = ["pytester"]

INNER = '''
import pytest

@pytest.mark.vm
def test_reuses_image_and_reports_console(uefi_image, uefi_vm):
    assert uefi_image == {esp!r}
    vm = uefi_vm("hello", extra_args=["-S"])       # the CPU never starts: no boot cost
    vm._feed(b"a line the report must show\\r\\n")
    assert vm.qmp_command("query-status")["status"] == "prelaunch"
    assert vm.wait_exit(1) == 124
    vm2 = uefi_vm("hello", extra_args=["-S"])      # the first one ended: a second may start
    vm2.qmp_command("quit")
    assert vm2.wait_exit(30) == 125
    assert False, "fail on purpose"

def test_not_a_vm_test():
    pass
'''


def test_plugin_fixtures_marker_and_failure_report(pytester, esp_dir, monkeypatch):
    monkeypatch.setenv("CCIDKIT_UEFI_IMAGE", esp_dir)
    pytester.makepyfile(test_inner=INNER.format(esp=esp_dir))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-m", "vm")
    result.assert_outcomes(failed=1, deselected=1)
    out = result.stdout.str()
    assert "fail on purpose" in out
    assert "VM 0 console (app hello)" in out
    assert "a line the report must show" in out
    assert "timed out after 1 s" in out
    assert "VM 1 console (app hello)" in out and "no CCIDKIT-EXIT marker" in out
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-m", "not vm")
    result.assert_outcomes(passed=1, deselected=1)
