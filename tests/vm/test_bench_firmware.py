"""`ccidkit bench firmware --smoke`: one boot (bench-firmware with usb-ccid and
an emulated reader over usb-redir, 5 APDUs each; the demo's boot is skipped
in smoke runs) through the real CLI. Shape and sanity only, no speed."""

import json
import shutil

import pytest

from ccidkit.scripts.main import main

pytestmark = [pytest.mark.vm, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                 reason="no QEMU")]


def test_firmware_bench_smoke_one_boot(tmp_path):
    out = tmp_path / "out"
    assert main(["bench", "firmware", "--smoke", "--out", str(out)]) == 0
    for name in ("firmware.json", "firmware.md", "firmware.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "firmware.png").read_bytes()[:4] == b"\x89PNG"
    r = json.loads((out / "firmware.json").read_text())
    assert r["bench"] == "firmware" and r["parameters"]["smoke"] is True
    assert r["parameters"]["apdus"] == 5 and r["parameters"]["demo"] is False
    assert len(r["boots"]["bench"]) == 1 and r["boots"]["demo"] == []
    assert r["efi"]["bytes"] == r["efi"]["manifest_bytes"] > 100000
    boot = r["boots"]["bench"][0]
    assert boot["status"] == 0
    assert boot["readers"]["08E6:4433"].startswith("T=0")      # usb-ccid offers T=0 only
    assert boot["readers"]["08E6:3437"].startswith("T=1")      # the Twin runs T=1
    assert sorted(f["reader"] for f in boot["first_apdu"]) == ["08E6:3437", "08E6:4433"]
    b = r["boot"]
    assert 0 < b["launch_to_app_start_s"]["median"] <= b["launch_to_first_apdu_s"]["median"]
    assert b["launch_to_first_apdu_s"]["median"] <= boot["launch_to_exit_s"]
    assert b["launch_to_authenticated_s"] is None
    assert r["verdict"]["launch_to_authenticated_met"] is None
    for tag in ("08E6:4433", "08E6:3437"):
        raw = boot["rtt_us"][tag]
        s = r["rtt"][tag]
        assert len(raw) == s["n"] == 5 and all(v > 0 for v in raw)
        assert s["min_ms"] <= s["median_ms"] <= s["p95_ms"] <= s["max_ms"]
        assert s["median_ms"] == round(sorted(raw)[2] / 1000.0, 3)
    md = (out / "firmware.md").read_text()
    assert "QEMU launch -> authenticated" in md and "not run" in md
