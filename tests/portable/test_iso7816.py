from ccidkit.core import iso7816


def test_tables_follow_7816_3_tables_7_and_8():
    assert iso7816.FI_TABLE[9] == 512 and iso7816.FMAX_MHZ_TABLE[9] == 5
    assert iso7816.FI_TABLE[1] == 372 and iso7816.DI_TABLE[6] == 32
    assert iso7816.DI_TABLE[0] is None and iso7816.FI_TABLE[7] is None
    assert iso7816.fi_index(512) == 9 and iso7816.di_index(32) == 6
    assert iso7816.fi_index(999) == -1


def test_rates_and_waiting_times():
    assert iso7816.baud_rate(512, 32, 4000000) == 250000
    assert iso7816.baud_rate(372, 1, 3571200) == 9600
    assert abs(iso7816.etu_us(372, 1, 3571200) - 104.1666) < 0.001
    assert iso7816.cwt_etu(5) == 43
    # BWI 4 at 4 MHz: 11 etu + 16 × 960 × 372 / 4 MHz ≈ 1.4296 s
    bwt = iso7816.bwt_us(4, 372, 1, 4000000)
    assert 1428000 < bwt < 1430000
    assert iso7816.wt_us(10, 372, 3571200) == 10 * 960 * 372 * 1000000.0 / 3571200
