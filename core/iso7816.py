"""ISO/IEC 7816-3 transmission parameters: the Fi/f(max)/Di tables and etu arithmetic.

Shared by ATR, PPS, T=0 and T=1. Times are returned in microseconds as
integers or floats; nothing here reads a clock.
"""

# ISO/IEC 7816-3 §8.3 Table 7: clock rate conversion integer Fi and f(max), by TA1 high nibble.
# None marks RFU values.
FI_TABLE = (372, 372, 558, 744, 1116, 1488, 1860, None, None, 512, 768, 1024, 1536, 2048, None, None)
FMAX_MHZ_TABLE = (4, 5, 6, 8, 12, 16, 20, None, None, 5, 7.5, 10, 15, 20, None, None)

# ISO/IEC 7816-3 §8.3 Table 8: baud rate adjustment integer Di, by TA1 low nibble.
DI_TABLE = (None, 1, 2, 4, 8, 16, 32, 64, 12, 20, None, None, None, None, None, None)

# §7.1 default values before any PPS: Fd = 372, Dd = 1, f(max) 5 MHz.
FD = 372
DD = 1
FMAX_DEFAULT_MHZ = 5

# Default clock for arithmetic when a reader does not say (Hz).
DEFAULT_CLOCK_HZ = 4000000


def fi_index(fi):
    """TA1 high-nibble code of an Fi value, or -1 when Fi is not in the table."""
    for i in range(16):
        if FI_TABLE[i] == fi:
            return i
    return -1


def di_index(di):
    """TA1 low-nibble code of a Di value, or -1 when Di is not in the table."""
    for i in range(16):
        if DI_TABLE[i] == di:
            return i
    return -1


def baud_rate(fi, di, clock_hz):
    """Bits per second at a given clock: f × D / F (§7.1)."""
    return clock_hz * di // fi


def etu_us(fi, di, clock_hz):
    """One elementary time unit in microseconds: F / (D × f) (§7.1)."""
    return fi * 1000000.0 / (di * clock_hz)


def cwt_etu(cwi):
    """T=1 character waiting time in etu: 11 + 2^CWI (§11.4.3)."""
    return 11 + (1 << cwi)


def bwt_us(bwi, fi, di, clock_hz):
    """T=1 block waiting time in µs: 11 etu + 2^BWI × 960 × Fd / f (§11.4.3)."""
    return 11 * etu_us(fi, di, clock_hz) + (1 << bwi) * 960 * FD * 1000000.0 / clock_hz


def wt_us(wi, fi, clock_hz):
    """T=0 waiting time in µs: WI × 960 × Fi / f (§10.2)."""
    return wi * 960 * fi * 1000000.0 / clock_hz
