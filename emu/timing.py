"""Emulated time for the emulated readers: a virtual clock, the card-line and
USB timing model, and the bus the readers behind one hub share.

Nothing here sleeps unless asked: ``VirtualClock(time_scale=0)`` is pure
virtual time (tests run as fast as Python goes); ``time_scale`` > 0 also
sleeps that many real seconds per emulated second as the clock advances.

Card line (ISO/IEC 7816-3): one etu = F / (D · f) (§7.1); a character is
10 etu of data plus the guard time: 12 etu for T=0 (§7.2, §10.2) and 11 etu
for T=1 (§11.2), plus N extra etu from TC1 (N = 255 means the minimum).
T=1 blocks are separated by BGT = 22 etu (§11.4.3); T=0 adds one procedure
byte per TPDU and the two status bytes.

USB (full speed, USB 2.0 §5.8 and §8.4): 1 ms frames; a bulk packet of up
to 64 bytes takes about 64·8 bit / 12 Mbit/s plus packet overhead; the host
polls a pending IN endpoint once a frame, so an answer becomes visible at
the next frame boundary. Readers behind one hub share one ``Bus``: a
transfer starts when the bus is free.
"""

import threading
import time

FRAME_US = 1000              # full-speed frame
FULL_SPEED_BPS = 12000000
PACKET_OVERHEAD_BITS = 88    # token + data/handshake packets, bit stuffing ignored
BGT_ETU = 22                 # ISO/IEC 7816-3 §11.4.3


class VirtualClock:
    """Emulated time in microseconds; only the model advances it."""

    def __init__(self, time_scale=0.0, start_us=0):
        if time_scale < 0:
            raise ValueError("time_scale must be >= 0")
        self.time_scale = float(time_scale)
        self._now = int(start_us)

    def now_us(self):
        return self._now

    def advance(self, us):
        """Move time forward by ``us`` (>= 0); sleeps scaled real time when asked."""
        us = int(us)
        if us <= 0:
            return self._now
        self._now += us
        if self.time_scale > 0:
            time.sleep(us * self.time_scale / 1000000.0)
        return self._now

    def advance_to(self, t_us):
        if t_us > self._now:
            self.advance(t_us - self._now)
        return self._now


def etu_us(fi, di, clock_hz):
    """ISO/IEC 7816-3 §7.1: one etu = F / (D · f), in µs."""
    return fi * 1000000.0 / (di * clock_hz)


def char_etu(protocol, n=0):
    """etu per character: 12 (T=0) or 11 (T=1) with N = 255, else 12 + N (§8.3 TC1)."""
    if n == 255:
        return 12 if protocol == 0 else 11
    return 12 + n


def char_time_us(fi, di, clock_hz, protocol=0, n=0):
    return char_etu(protocol, n) * etu_us(fi, di, clock_hz)


def data_rate_bps(fi, di, clock_hz):
    """Bits per second on the card line: f · D / F."""
    return clock_hz * di // fi


def tpdu_t0_us(bytes_to_card, bytes_from_card, fi, di, clock_hz, n=0):
    """One T=0 TPDU: the header and data, one procedure byte, the answer and SW1 SW2."""
    chars = bytes_to_card + 1 + bytes_from_card
    return chars * char_time_us(fi, di, clock_hz, 0, n)


def block_t1_us(block_len, fi, di, clock_hz, n=0):
    """One T=1 block on the line plus the block guard time before the next one."""
    e = etu_us(fi, di, clock_hz)
    return block_len * char_etu(1, n) * e + BGT_ETU * e


def apdu_line_us(apdu_len, resp_len, protocol, fi, di, clock_hz, ifsc=32, n=0):
    """Line time of a whole APDU exchange done by an APDU-level reader."""
    if protocol == 1:
        t = 0.0
        for size in (apdu_len, resp_len):
            blocks = max(1, (size + ifsc - 1) // ifsc)
            t += blocks * block_t1_us(0, fi, di, clock_hz, n) + (size + 4 * blocks) * \
                char_etu(1, n) * etu_us(fi, di, clock_hz)
        return t
    return tpdu_t0_us(apdu_len, resp_len, fi, di, clock_hz, n)


def usb_bulk_us(nbytes, max_packet=64):
    """Bus time of one bulk transfer of ``nbytes`` (a zero-length packet at least)."""
    packets = max(1, (nbytes + max_packet - 1) // max_packet)
    if nbytes and nbytes % max_packet == 0:
        packets += 1       # the zero-length packet that ends the transfer
    bits = nbytes * 8 + packets * PACKET_OVERHEAD_BITS
    return (bits * 1000000 + FULL_SPEED_BPS - 1) // FULL_SPEED_BPS


def next_frame(t_us):
    """The start of the first frame at or after ``t_us``."""
    return ((t_us + FRAME_US - 1) // FRAME_US) * FRAME_US


class Bus:
    """One full-speed bus (a hub and the readers behind it): transfers take turns."""

    def __init__(self, name="bus"):
        self.name = name
        self.free_at = 0
        self.transfers = 0
        self.busy_us = 0
        self._lock = threading.Lock()     # readers of one bus may run in threads

    def transfer(self, start_us, duration_us):
        """Reserve the bus for a transfer wanted at ``start_us``; returns its end."""
        with self._lock:
            begin = start_us if start_us > self.free_at else self.free_at
            end = begin + int(duration_us)
            self.free_at = end
            self.transfers += 1
            self.busy_us += int(duration_us)
            return end


class SharedClock(VirtualClock):
    """One emulated clock for readers driven from several threads at once.

    A parallel discrete-event clock (conservative): threads that drive
    readers at the same time *take part* (``add_participants(n)`` by the
    thread that starts them, ``enter()`` / ``leave()`` by each of them).
    A taking-part thread that asks for a later time waits until every
    other taking-part thread waits too (or has left); then the clock jumps
    to the earliest time asked for and wakes only the threads waiting for
    that time. So a slot's card line and a reader's firmware run side by
    side in emulated time, as the hardware does, however the host
    interleaves the threads; host CPU between two waits costs no emulated
    time.

    Threads that do not take part (one reader driven alone) move the clock
    straight away, as ``VirtualClock`` does. With ``time_scale`` > 0 the
    clock sleeps that many real seconds per emulated second; the sleeps are
    gathered (at least ``min_sleep_s`` at a time) and what the system slept
    too long is paid back, so many small advances cost what they should.
    ``max_stall_s`` bounds a wait for threads that stop taking part
    without saying so (TimeoutError then).
    """

    def __init__(self, time_scale=0.0, start_us=0, min_sleep_s=0.002, max_stall_s=600.0):
        VirtualClock.__init__(self, time_scale, start_us)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._running = 0          # taking-part threads not waiting on the clock
        self._waits = {}           # time asked for -> [conditions of the threads waiting]
        self._debt_s = 0.0         # scaled time not slept yet (negative: slept ahead)
        self.min_sleep_s = float(min_sleep_s)
        self.max_stall_s = float(max_stall_s)
        self.slept_s = 0.0

    def add_participants(self, n=1):
        with self._lock:
            self._running += int(n)

    def enter(self):
        """This thread takes part (its share was counted by add_participants)."""
        self._local.on = True
        if getattr(self._local, "cond", None) is None:
            self._local.cond = threading.Condition(self._lock)

    def leave(self):
        with self._lock:
            self._local.on = False
            self._running -= 1
            if self._running < 0:
                self._running = 0
            self._next()

    @property
    def participants_running(self):
        return self._running

    def _sleep(self, us):
        if self.time_scale <= 0 or us <= 0:
            return
        self._debt_s += us * self.time_scale / 1000000.0
        if self._debt_s >= self.min_sleep_s:
            self._pay()

    def _pay(self):
        t0 = time.perf_counter()
        time.sleep(self._debt_s)
        took = time.perf_counter() - t0
        self.slept_s += took
        self._debt_s -= took

    def flush(self):
        """Sleep what is still owed (at the end of a measured run)."""
        with self._lock:
            if self._debt_s > 0:
                self._pay()

    def _next(self):
        """With the lock held: when no taking-part thread runs, move to the
        earliest time asked for and wake the threads waiting for it."""
        if self._running > 0 or not self._waits:
            return
        nxt = min(self._waits)
        if nxt > self._now:
            self._sleep(nxt - self._now)
            self._now = nxt
        woken = self._waits.pop(nxt)
        self._running += len(woken)
        for c in woken:
            c.notify()

    def advance(self, us):
        us = int(us)
        if us <= 0:
            return self._now
        return self.advance_to(self._now + us)

    def advance_to(self, t_us):
        t_us = int(t_us)
        with self._lock:
            if t_us <= self._now:
                return self._now
            if not getattr(self._local, "on", False):
                self._sleep(t_us - self._now)
                self._now = t_us
                return self._now
            cond = self._local.cond
            self._waits.setdefault(t_us, []).append(cond)
            self._running -= 1
            self._next()
            stall = time.monotonic() + self.max_stall_s
            while self._now < t_us or cond in self._waits.get(t_us, ()):
                if time.monotonic() > stall:
                    self._waits[t_us].remove(cond)
                    if not self._waits[t_us]:
                        del self._waits[t_us]
                    self._running += 1
                    raise TimeoutError("emulated clock: a thread taking part stopped "
                                       "without leave()")
                cond.wait(min(1.0, self.max_stall_s))
            return self._now


class PacedClock(VirtualClock):
    """Emulated time that runs with real time, ``time_scale`` real seconds per
    emulated second (> 0): the whole rig behaves as hardware would, slowed down.

    ``now_us()`` follows the real clock; ``advance_to(t)`` sleeps until real
    time reaches ``t`` (waits shorter than ``min_sleep_s`` are not slept: the
    clock just moves on, never backwards). Threads need not coordinate: each
    slot's wait is its own sleep, so the hardware's parallel work overlaps,
    and host CPU overlaps it too, as it does against real readers (at a scale
    below 1 the host looks that much slower next to the hardware).
    The ``SharedClock`` participation calls are accepted and do nothing.
    """

    def __init__(self, time_scale, start_us=0, min_sleep_s=0.0002):
        if time_scale <= 0:
            raise ValueError("a paced clock needs time_scale > 0")
        VirtualClock.__init__(self, time_scale, start_us)
        self._lock = threading.Lock()
        self._t0 = time.perf_counter() - start_us * self.time_scale / 1000000.0
        self.min_sleep_s = float(min_sleep_s)
        self.slept_s = 0.0

    def _real_us(self):
        return int((time.perf_counter() - self._t0) / self.time_scale * 1000000.0)

    def now_us(self):
        with self._lock:
            r = self._real_us()
            if r > self._now:
                self._now = r
            return self._now

    def advance(self, us):
        us = int(us)
        if us <= 0:
            return self.now_us()
        return self.advance_to(self.now_us() + us)

    def advance_to(self, t_us):
        t_us = int(t_us)
        wait = self._t0 + t_us * self.time_scale / 1000000.0 - time.perf_counter()
        if wait >= self.min_sleep_s:
            time.sleep(wait)
            with self._lock:
                self.slept_s += wait
        with self._lock:
            if t_us > self._now:
                self._now = t_us
        return self.now_us()

    def add_participants(self, n=1):
        pass

    def enter(self):
        pass

    def leave(self):
        pass

    def flush(self):
        pass

    @property
    def participants_running(self):
        return 0


def bench_clock(time_scale):
    """The clock a benchmark rig runs on: pure emulated time (``SharedClock``)
    at scale 0, emulated time paced by real time (``PacedClock``) above."""
    if time_scale and time_scale > 0:
        return PacedClock(time_scale)
    return SharedClock()
