"""Short fuzz runs for CI (hypothesis, deadline=None): every target's only outcomes are
a value or the documented exception; peers announcing huge lengths get the layer's
error without the allocation (checked with tracemalloc)."""

import struct
import tracemalloc

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from ccidkit.scripts import fuzz
from ccidkit.core import ccid as C, t1 as T1
from ccidkit.emu import vicc, vscard, usbredir


@pytest.mark.parametrize("target", fuzz.TARGETS)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=300), seed=st.integers(0, 3))
def test_only_values_or_documented_errors(target, data, seed):
    # half raw bytes, half a mutated valid message
    if seed:
        import random
        data = fuzz.mutate(random.Random(data), fuzz.seeds(target)[seed % len(fuzz.seeds(target))])
    assert fuzz.run_one(target, data) is None


def test_a_finding_is_reported():
    # an input outside the contract is a finding, not a silent pass
    fuzz.TARGET_FN["atr"], real = (lambda d: {}[1]), fuzz.TARGET_FN["atr"]
    try:
        assert fuzz.run_one("atr", b"\x3B") == "KeyError: 1"
    finally:
        fuzz.TARGET_FN["atr"] = real


def test_campaign_counts_executions():
    res = fuzz.campaign_random("vicc", 0.3, seed=1)
    assert res["executions"] > 10 and res["findings"] == 0 and res["engine"] == "random"


def _peak(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def _raises_small(fn, exc, name):
    box = {}

    def call():
        with pytest.raises(exc) as e:
            fn()
        box["e"] = e.value
    assert _peak(call) < 256 * 1024
    assert box["e"].name == name


def test_ccid_dwlength_4gb():
    _raises_small(lambda: C.decode_bulk_in(bytes.fromhex("80 FFFFFFFF 00 00 000000")),
                  C.CCIDError, "TOO_LONG")
    _raises_small(lambda: C.BulkInReassembler().feed(bytes.fromhex("80 FFFFFFFF 00 00 000000")),
                  C.CCIDError, "TOO_LONG")


def test_vicc_length_beyond_limit():
    _raises_small(lambda: vicc.Decoder(max_payload=4096).feed(b"\xFF\xFF"),
                  vicc.ViccError, "VICC_TOO_LONG")


def test_vscard_length_4gb():
    _raises_small(lambda: vscard.Decoder().feed(struct.pack(">III", vscard.VSC_APDU, 0, 0xFFFFFFFF)),
                  vscard.VSCardError, "VSC_TOO_LONG")


def test_usbredir_length_4gb():
    _raises_small(lambda: usbredir.Codec("host").feed(
        struct.pack("<III", usbredir.HELLO, 0xFFFFFFFF, 0)), usbredir.UsbredirError,
        "USBREDIR_TOO_LONG")


def test_t1_len_ff_and_oversized():
    _raises_small(lambda: T1.decode_block(b"\x00\x00\xFF" + b"\x00" * 255 + b"\xFF"),
                  T1.T1Error, "T1_BAD_LEN")
    _raises_small(lambda: T1.i_block(0, False, b"\x00" * 255).encode(), T1.T1Error, "T1_TOO_LONG")
