"""The one masking rule of every trace (core/hexutil.py), on both runtimes."""

from support import h

from ccidkit.core.hexutil import ApduMasker, mask_apdu, redact_apdu


def test_pin_data_is_masked():
    verify = h("00 20 00 80 08 37 33 39 31 38 32 FF FF")
    assert mask_apdu(verify) == "00 20 00 80 08 ** ** ** ** ** ** ** **"
    assert redact_apdu(verify) == h("00 20 00 80 08") + b"********"
    assert mask_apdu(h("00 2C 00 80 00 00 02 31 32")) == "00 2C 00 80 00 00 02 ** **"
    assert mask_apdu(h("00 20 00 80 00")) == "00 20 00 80 00"
    assert mask_apdu(h("00 A4 04 00 02 3F 00")) == "00 A4 04 00 02 3F 00"


def test_secret_answer_and_its_get_response_are_masked():
    m = ApduMasker()
    assert m.command(h("00 2A 80 86 02 00 01")) == "00 2A 80 86 02 00 01"
    assert m.response(h("AA BB 61 01")) == ("** ** 61 01", h("00 00 61 01"))
    m.command(h("00 C0 00 00 01"))
    assert m.response(h("CC 90 00")) == ("** 90 00", h("00 90 00"))
    m.command(h("00 B0 00 00 01"))
    assert m.response(h("DD 90 00")) == ("DD 90 00", h("DD 90 00"))
