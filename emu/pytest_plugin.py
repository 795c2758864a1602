"""pytest plugin (entry point pytest11 `ccidkit`): fixtures for firmware tests.

Fixtures
    uefi_apps     (session) extra app files to embed: the ``ccidkit_uefi_apps``
                  ini option (paths); override the fixture to compute them.
    uefi_image    (session) the image every VM boots: built once per run with
                  ccidkit.uefi.build.build_image (cached rebuilds take seconds),
                  or an existing ESP directory from ``--ccidkit-image`` or
                  $CCIDKIT_UEFI_IMAGE.
    uefi_vm       factory: ``vm = uefi_vm("usb-probe", args=[...],
                  extra_devices=[...], chardevs=[...], attach=[server, ...])``
                  starts a ccidkit.emu.qemu.Vm; every VM is killed and cleaned
                  up after the test. ``vm.console``, ``vm.wait_for_line``,
                  ``vm.qmp_command``, ``vm.wait_event``, ``vm.wait_exit``.
    uefi_run      ``vm = uefi_run("core-tests", timeout=600)``: boots, waits for
                  the exit and returns the finished Vm (``.status``,
                  ``.console``, ``.exit_message``).
    vscard        factory: ``srv = vscard(card=None)`` a started
                  ccidkit.emu.vscard.VSCardServer (StubCard by default), stopped
                  after the test; pass it to ``uefi_vm(..., attach=[srv])``.

``attach`` takes any object with ``qemu_options(index) -> {"chardevs": [...],
"devices": [...]}``: emulated readers and cards plug in the same way.

Marker ``vm``: tests that boot QEMU (``-m "not vm"`` leaves them out). Only one
VM runs at a time (a per-user lock file), whatever runs the tests. When a test
fails, the tail of each of its VMs' consoles is added to the report.
"""

import os
import sys

import pytest

from ccidkit.emu import qemu
from ccidkit.emu.vscard import StubCard, VSCardServer
# A private pcscd with vpcd readers, for tests that judge cards with real PC/SC software.
from ccidkit.emu.pcscd import pcscd_vpcd  # noqa: F401  (re-exported fixture)

CONSOLE_TAIL_LINES = 200

_vms_key = pytest.StashKey()


def pytest_addoption(parser):
    group = parser.getgroup("ccidkit", "ccidkit firmware tests")
    group.addoption("--ccidkit-image", default=None, metavar="DIR",
                    help="boot this ESP directory instead of building the image "
                         "(also $CCIDKIT_UEFI_IMAGE)")
    group.addoption("--ccidkit-echo", action="store_true",
                    help="show the VM consoles live (with -s)")
    parser.addini("ccidkit_uefi_apps", type="paths", default=[],
                  help="app files (.py) to embed in the image the VM tests boot")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "vm: boots QEMU (TCG); runs serially, never beside another CPU-heavy test")


@pytest.fixture(scope="session")
def uefi_apps(pytestconfig):
    return [str(p) for p in pytestconfig.getini("ccidkit_uefi_apps")]


@pytest.fixture(scope="session")
def uefi_image(pytestconfig, uefi_apps):
    """The image (a build result or an ESP directory path) every VM test boots."""
    given = pytestconfig.getoption("ccidkit_image") or os.environ.get("CCIDKIT_UEFI_IMAGE")
    if given:
        return qemu.resolve_esp(given)
    try:
        from ccidkit.uefi.build import build_image
    except ImportError as e:
        pytest.skip("the UEFI image builder is not available: %s" % e)
    tw = pytestconfig.get_terminal_writer() if hasattr(pytestconfig, "get_terminal_writer") \
        else None

    def progress(msg):
        if tw is not None:
            tw.line(msg)
        else:
            sys.stderr.write(msg + "\n")
    return build_image(apps=uefi_apps, progress=progress)


def _echo(config):
    if not config.getoption("ccidkit_echo"):
        return None

    def echo(line):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    return echo


@pytest.fixture
def uefi_vm(request, uefi_image):
    """Factory of running VMs; all of them are stopped after the test."""
    vms = request.node.stash.setdefault(_vms_key, [])
    mine = []

    def start(app=None, args=(), extra_devices=(), chardevs=(), extra_args=(), attach=(),
              **kwargs):
        extra_devices = list(extra_devices)
        chardevs = list(chardevs)
        for i, thing in enumerate(attach):
            opts = thing.qemu_options(i)
            chardevs += list(opts.get("chardevs", ()))
            extra_devices += list(opts.get("devices", ()))
        for old in mine:
            if not old.running:
                old.close()          # finished VMs free the one-VM slot at once
        kwargs.setdefault("echo", _echo(request.config))
        vm = qemu.Vm(uefi_image, app, args, extra_devices=extra_devices, chardevs=chardevs,
                     extra_args=extra_args, **kwargs)
        vms.append(vm)
        mine.append(vm)
        vm.start()
        return vm

    yield start
    for vm in mine:
        vm.close()


@pytest.fixture
def uefi_run(uefi_vm):
    """Boot an app, wait for its exit (bounded), return the finished Vm."""

    def run(app=None, args=(), timeout=300.0, **kwargs):
        vm = uefi_vm(app, args, **kwargs)
        vm.wait_exit(timeout)
        vm.close()
        return vm

    return run


@pytest.fixture
def vscard():
    """Factory of started VSCard servers (a StubCard unless ``card`` is given)."""
    servers = []

    def start(card=None, **kwargs):
        srv = VSCardServer(card if card is not None else StubCard(), **kwargs)
        servers.append(srv)
        srv.start()
        return srv

    yield start
    for srv in servers:
        srv.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for i, vm in enumerate(item.stash.get(_vms_key, [])):
        lines = vm.console_lines
        tail = lines[-CONSOLE_TAIL_LINES:]
        head = "" if len(lines) <= len(tail) else "... (%d lines before)\n" % (
            len(lines) - len(tail))
        text = head + "\n".join(tail)
        if vm.exit_message:
            text += "\n[%s]" % vm.exit_message
        err = vm.stderr.strip()
        if err:
            text += "\n[qemu stderr]\n" + err[-4000:]
        report.sections.append(("VM %d console (app %s)" % (i, vm.app), text))
