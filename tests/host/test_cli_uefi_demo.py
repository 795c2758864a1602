"""`ccidkit uefi demo` options reach the demo (without booting anything)."""

from ccidkit.emu import demo as demo_mod
from ccidkit.scripts.main import main


class _Done:
    handed_over_to = None
    verdicts = [("SUCCESS", "card 00")]
    seconds_to_success = 4.0


def _capture(monkeypatch):
    seen = {}

    def fake_run_demo(echo=None, progress=None, timeout=None, **options):
        seen.update(options)
        seen["timeout"] = timeout
        return 0, _Done()
    monkeypatch.setattr(demo_mod, "run_demo", fake_run_demo)
    return seen


def test_demo_hands_over_by_default(monkeypatch):
    seen = _capture(monkeypatch)
    assert main(["uefi", "demo", "--quiet"]) == 0
    assert seen["handover"] is True and seen["pin"] == demo_mod.DEFAULT_PIN
    assert seen["reader"] == "qemu-ccid" and seen["attempts"] == 3


def test_no_handover_and_other_options_pass_through(monkeypatch):
    seen = _capture(monkeypatch)
    assert main(["uefi", "demo", "--quiet", "--no-handover", "--pin", "654321",
                 "--reader", "emulated:cherry-st", "--attempts", "0", "--timeout", "30"]) == 0
    assert seen["handover"] is False and seen["pin"] == "654321"
    assert seen["reader"] == "emulated:cherry-st"
    assert seen["attempts"] == 1 and seen["timeout"] == 30.0     # at least one try
