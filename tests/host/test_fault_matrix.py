"""The whole fault matrix (scripts/faults_matrix.py) is green, and a broken cell is seen."""

from ccidkit.scripts import faults_matrix as F
from ccidkit.scripts import cmd_faults


def test_whole_matrix_is_green():
    cells = F.run_matrix()
    assert len(cells) == len(F.FAULTS) * len(F.LEVELS) * len(F.SLOTS) == 104
    bad = [(c["fault"], c["level"], c["slots"], c.get("problems")) for c in cells
           if c["status"] == "FAIL"]
    assert bad == []
    # T=1 block faults apply to TPDU T=1 only
    assert all(c["status"] == "n/a" for c in cells
               if c["fault"] == "bad N(S)" and c["level"] != "TPDU T=1")
    by = dict(((c["fault"], c["level"], c["slots"]), c) for c in cells)
    # recovered faults: the answer and exactly one execution
    for key in (("corrupted EDC", "TPDU T=1", 8), ("lost I-block", "TPDU T=1", 1),
                ("duplicated block", "TPDU T=1", 8), ("WTX storm", "extended APDU", 8),
                ("stale bSeq", "TPDU T=0", 1)):
        assert by[key]["outcome"] == "completed 9000" and by[key]["runs"] == 1, key
    # a bulk-IN stall is cleared (CLEAR_FEATURE(ENDPOINT_HALT)) and the answer read
    for level in F.LEVELS:
        for slots in F.SLOTS:
            cell = by[("USB stall", level, slots)]
            assert (cell["outcome"], cell["runs"]) == ("completed 9000", 1), (level, slots)
    # unrecoverable ones: the documented error, the card ran nothing twice
    assert by[("mute card", "TPDU T=1", 1)]["outcome"] == "IFD_RESPONSE_TIMEOUT"
    assert by[("card removed mid-chain", "short APDU", 8)]["outcome"] == "IFD_ICC_NOT_PRESENT"
    assert by[("reader unplugged", "TPDU T=0", 8)]["outcome"] == "IFD_NO_SUCH_DEVICE"
    assert by[("mute card", "TPDU T=0", 8)]["others"] == "unaffected"


def test_a_card_that_runs_twice_fails_its_cell():
    real = F.CounterCard

    class Twice(real):
        def process_apdu(self, apdu):
            real.process_apdu(self, apdu)
            return real.process_apdu(self, apdu)
    F.CounterCard = Twice
    try:
        cell = F.run_cell("WTX storm", "TPDU T=1", 1)
    finally:
        F.CounterCard = real
    assert cell["status"] == "FAIL" and "ran 2 times" in cell["problems"]


def test_report_splices_between_markers():
    text = "intro\n" + cmd_faults.BEGIN + "\nold\n" + cmd_faults.END + "\nafter\n"
    assert cmd_faults.splice(text, "new\n") == \
        "intro\n" + cmd_faults.BEGIN + "\nnew\n" + cmd_faults.END + "\nafter\n"
