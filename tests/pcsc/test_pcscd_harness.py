"""The private pcscd harness itself: configuration, isolation, clean stop,
one daemon per process at a time, and a card that follows pcscd restarts."""

import os
import socket
import time

import pytest

from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.pcscd import (PcscdError, PrivatePcscd, private_pcscd, reader_conf,
                               serial_reader, unavailable_reason, vpcd_reader)

needs_pcscd = pytest.mark.skipif(unavailable_reason() is not None,
                                 reason="private pcscd: %s" % unavailable_reason())


def test_reader_conf_entries():
    assert reader_conf(vpcd_reader()) == (
        'FRIENDLYNAME  "Virtual PCD"\n'
        "DEVICENAME    /dev/null:0x8C7B\n"
        "LIBPATH       /usr/lib/pcsc/drivers/serial/libifdvpcd.so\n"
        "CHANNELID     0x8C7B\n")
    assert reader_conf(serial_reader("/dev/pts/7")) == (
        'FRIENDLYNAME  "GemPCTwin serial"\n'
        "DEVICENAME    /dev/pts/7:GemPCTwin\n"
        "LIBPATH       /usr/lib/pcsc/drivers/serial/libccidtwin.so\n")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@needs_pcscd
def test_isolated_and_stopped_by_pid():
    system_run_pcscd = os.path.exists("/run/pcscd")
    with private_pcscd([vpcd_reader()]) as daemon:
        pid = daemon.pid
        assert daemon.running and _alive(pid)
        assert os.path.exists(daemon.socket_path)
        assert daemon.socket_path.startswith(daemon.run_dir)
        assert daemon.client_env()["PCSCLITE_CSOCK_NAME"] == daemon.socket_path
        log = daemon.read_log()
        assert "Waiting for virtual ICC on port 35963" in log
        assert "Waiting for virtual ICC on port 35964" in log
        # vpcd's port is open inside the daemon's namespace only
        inside = daemon.socket_factory()
        inside.settimeout(5)
        inside.connect(("127.0.0.1", 35963))
        inside.close()
        assert os.readlink(daemon.netns) != os.readlink("/proc/self/ns/net")
    assert not _alive(pid)
    assert not os.path.exists(daemon.socket_path)
    assert "daemon ready" in daemon.log_text
    # the system-wide socket directory was neither made nor used
    assert os.path.exists("/run/pcscd") == system_run_pcscd


@needs_pcscd
def test_one_shared_run_dir_at_a_time():
    with private_pcscd([vpcd_reader()]):
        with pytest.raises(PcscdError) as e:
            PrivatePcscd([vpcd_reader()]).start()
        assert e.value.name == "PCSCD_BUSY"


@needs_pcscd
def test_card_follows_a_pcscd_restart(tmp_path):
    daemon = PrivatePcscd([vpcd_reader()], run_dir=str(tmp_path / "run"))
    card = MiniCard()
    daemon.start()
    try:
        vicc = daemon.vicc(card, reconnect_interval=0.05)
        try:
            assert vicc.wait_connected(10)
            daemon.wait_for_log(r"Card ATR: 3B 99 96", 10)
            old_pid = daemon.pid
            daemon.stop()
            assert not _alive(old_pid)
            daemon.start()                        # a new daemon, a new namespace
            assert daemon.pid != old_pid
            daemon.wait_for_log(r"Card ATR: 3B 99 96", 10)
            deadline = time.monotonic() + 10
            while vicc.connections < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert vicc.connections == 2
        finally:
            vicc.stop()
    finally:
        daemon.stop()
    assert not _alive(daemon.pid)


def test_socket_in_netns_refuses_a_bad_path():
    from ccidkit.emu.pcscd import socket_in_netns
    with pytest.raises(PcscdError) as e:
        socket_in_netns("/nonexistent/ns/net")
    assert e.value.name == "PCSCD_NETNS"
    # the thread is still in its own namespace afterwards
    s = socket.socket()
    s.close()


@needs_pcscd
def test_quiet_daemon_logs_no_apdus():
    pytest.importorskip("smartcard")
    from smartcard.Exceptions import SmartcardException
    from smartcard.System import readers
    with private_pcscd([vpcd_reader()], debug=False, apdu=False) as daemon:
        daemon.activate()
        vicc = daemon.vicc(MiniCard())
        try:
            assert vicc.wait_connected(10)
            deadline = time.monotonic() + 10
            while True:
                try:
                    conn = readers()[0].createConnection()
                    conn.connect()
                    break
                except (SmartcardException, IndexError):   # until pcscd's next ATR poll
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            try:
                data, sw1, sw2 = conn.transmit(list(bytes.fromhex("80EE000002C0DE00")))
                assert (bytes(data), sw1, sw2) == (b"\xC0\xDE", 0x90, 0x00)
            finally:
                conn.disconnect()
                conn.release()
        finally:
            vicc.stop()
        log = daemon.read_log()
    assert "daemon ready" in log
    # neither the command nor the answer: a PIN in an APDU never reaches the log
    assert "C0 DE" not in log.upper() and "80 EE" not in log.upper()
