"""Card images: what persists, what does not, and crash safety under SIGKILL."""

import json
import os
import random
import select
import signal
import time

import pytest

from ccidkit.emu.cardos import CardImage, CardOSError
from ccidkit.emu.cards import make_card
from ccidkit.emu.cards.usim import UsimCard, encode_adn

WRONG_PIN = bytes.fromhex("0020000108") + b"9999" + b"\xff" * 4
RIGHT_PIN = bytes.fromhex("0020000108") + b"0000" + b"\xff" * 4


def h(text):
    return bytes.fromhex(text.replace(" ", ""))


def test_image_is_created_on_first_change_and_read_back(tmp_path):
    path = tmp_path / "usim.json"
    card = make_card("usim", image=str(path), records=10)
    assert not path.exists()            # nothing changed yet
    assert card.process_apdu(h("00A4080C04 7F10 6F3A")) == h("9000")
    rec = encode_adn("Persisted", "+4930123456", 30)
    assert card.process_apdu(h("00DC0404 1E") + rec) == h("9000")
    assert card.process_apdu(WRONG_PIN) == h("63C2")
    card.close()
    doc = json.loads(path.read_text())
    assert doc["format"] == "ccidkit-card-image" and doc["version"] == 1
    assert doc["sections"]["usim"]["pins"]["01"]["remaining"] == 2
    again = make_card("usim", image=str(path), records=10)
    assert again.pin(0x01).remaining == 2
    assert again.contacts()[3] == (4, "Persisted", "+4930123456")
    # the same record under DF Phonebook (one file, two paths)
    again.power_on()
    assert again.process_apdu(h("00A4080C06 7F10 5F3A 4F3A")) == h("9000")
    assert again.process_apdu(h("00B2040420")) == h("6C1E")     # Le must be the record length
    assert again.process_apdu(h("00B204041E")) == rec + h("9000")


def test_volatile_state_is_not_persisted(tmp_path):
    path = str(tmp_path / "usim.json")
    card = make_card("usim", image=path, records=5, pin1_enabled=True)
    assert card.process_apdu(RIGHT_PIN) == h("9000")
    assert card.process_apdu(h("00A4080C04 7F10 6F3A")) == h("9000")
    assert card.process_apdu(h("00B201041E"))[-2:] == h("9000")
    card.close()
    again = make_card("usim", image=path, records=5, pin1_enabled=True)
    # security status, current file: gone with the power
    assert again.process_apdu(h("00B201041E")) == h("6986")
    assert again.process_apdu(h("00A4080C04 7F10 6F3A")) == h("9000")
    assert again.process_apdu(h("00B201041E")) == h("6982")
    # the retry counter was restored by the right PIN, and that persisted
    assert again.pin(0x01).remaining == 3


def test_blocked_pin_stays_blocked_and_unblock_persists(tmp_path):
    path = str(tmp_path / "usim.json")
    card = make_card("usim", image=path)
    answers = [card.process_apdu(WRONG_PIN) for _ in range(4)]
    assert answers == [h("63C2"), h("63C1"), h("63C0"), h("6983")]
    card = make_card("usim", image=path)
    assert card.process_apdu(RIGHT_PIN) == h("6983")
    assert card.process_apdu(h("0020000100")) == h("6983")
    unblock = h("002C000110") + b"12345678" + b"4321" + b"\xff" * 4
    assert card.process_apdu(unblock) == h("9000")
    card = make_card("usim", image=path)
    assert card.process_apdu(RIGHT_PIN) == h("63C2")
    assert card.process_apdu(h("0020000108") + b"4321" + b"\xff" * 4) == h("9000")


def test_esim_ports_share_one_image(tmp_path):
    path = str(tmp_path / "esim.json")
    card = make_card("esim", image=path, ports=2)
    assert card.port(1).process_apdu(WRONG_PIN) == h("63C2")
    card.close()
    doc = json.loads(open(path).read())
    assert sorted(doc["sections"]) == ["port0", "port1"]
    again = make_card("esim", image=path, ports=2)
    assert again.port(0).pin(1).remaining == 3
    assert again.port(1).pin(1).remaining == 2


@pytest.mark.parametrize("content,name", [
    (b"not json", "IMAGE_CORRUPT"),
    (b'{"format": "other", "version": 1, "sections": {}}', "IMAGE_CORRUPT"),
    (b'{"format": "ccidkit-card-image", "version": 9, "sections": {}}', "IMAGE_CORRUPT"),
    (b'{"format": "ccidkit-card-image", "version": 1, "sections": {"usim": '
     b'{"pins": {"01": {"value": "zz"}}}}}', "IMAGE_CORRUPT"),
    (b'{"format": "ccidkit-card-image", "version": 1, "sections": {"usim": '
     b'{"files": {"3F00/7F10/6F3A": ["00"]}}}}', "IMAGE_CORRUPT"),
])
def test_foreign_or_damaged_images_are_refused(tmp_path, content, name):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(CardOSError) as e:
        make_card("usim", image=str(path))
    assert e.value.name == name


def test_a_failed_write_answers_memory_failure_and_keeps_the_counter(tmp_path, monkeypatch):
    path = str(tmp_path / "usim.json")
    card = make_card("usim", image=path)
    assert card.process_apdu(WRONG_PIN) == h("63C2")
    assert card.process_apdu(h("00A4080C04 7F10 6F3A")) == h("9000")

    def no_rename(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("ccidkit.emu.cardos.image.os.replace", no_rename)
    # the decrement cannot be stored: the card refuses to compare at all (ISO 65 81)
    assert card.process_apdu(RIGHT_PIN) == h("6581")
    assert card.process_apdu(h("00DC0104 1E") + b"\x00" * 30) == h("6581")
    # the record in memory is what the card still has
    assert bytes(card.adn().records[0]) == encode_adn("Alice Martin", "+33612345678")
    monkeypatch.undo()
    assert CardImage(path).section("usim")["pins"]["01"]["remaining"] == 2
    assert os.listdir(str(tmp_path)) == ["usim.json"]      # no temporary file left behind


# --- SIGKILL at random moments -------------------------------------------------------------

RETRIES = 1000000
KILLS = 200


def _operations(seed):
    """The child's operations, reproducible from its seed: ("P", None) or ("R", byte)."""
    rng = random.Random(seed)
    for _ in range(100000):
        if rng.random() < 0.5:
            yield "P", None
        else:
            yield "R", rng.randrange(256)


def _writer(path, wfd, seed):
    """Child: wrong PINs and whole-record updates, one report line after each answer."""
    card = UsimCard(image=path, records=4, pin_retries=RETRIES)
    card.process_apdu(h("00A4080C04 7F10 6F3A"))
    for op, k in _operations(seed):
        if op == "P":
            resp = card.process_apdu(WRONG_PIN)
            os.write(wfd, b"P%d\n" % card.pin(1).remaining if resp[:1] == b"\x63" else b"X\n")
        else:
            resp = card.process_apdu(h("00DC0104 1E") + bytes((k,)) * 30)
            os.write(wfd, b"R%d\n" % k if resp == h("9000") else b"X\n")


def _run_child(path, seed):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            _writer(path, w, seed)
        finally:
            os._exit(0)
    os.close(w)
    return pid, r


def _wait_lines(fd, n, buf, deadline_s=60.0):
    """Read the child's report lines until ``n`` have come (bounded by a deadline)."""
    end = time.monotonic() + deadline_s
    while buf.count(b"\n") < n:
        left = end - time.monotonic()
        assert left > 0, "the writer made no progress"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, "the writer died by itself"
            buf.extend(chunk)


def _drain(fd, buf=b""):
    chunks = [bytes(buf)]
    while True:
        b = os.read(fd, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(fd)
    return b"".join(chunks).splitlines()


def _states_after(state, seed, n):
    """The (remaining, record) after the first n and n + 1 operations from ``state``."""
    remaining, record = state
    out = []
    for i, (op, k) in enumerate(_operations(seed)):
        if i == n:
            out.append((remaining, record))
        if op == "P":
            remaining -= 1
        else:
            record = bytes((k,)) * 30
        if i == n:
            out.append((remaining, record))
            return out
    return out


@pytest.mark.slow
def test_retry_counter_never_goes_up_under_random_kills(tmp_path):
    path = str(tmp_path / "usim.json")
    rng = random.Random(20261121)
    state = (RETRIES, encode_adn("Alice Martin", "+33612345678"))
    progressed = 0
    for i in range(KILLS):
        seed = rng.randrange(1 << 30)
        pid, fd = _run_child(path, seed)
        # the moment of the kill: after a random number of answered operations (none for
        # one child in ten: killed while starting), then a random fraction of the next one
        buf = bytearray()
        if rng.random() >= 0.1:
            _wait_lines(fd, rng.randrange(1, 40), buf)
        time.sleep(rng.random() * 0.002)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        lines = _drain(fd, buf)
        assert b"X" not in lines
        if not os.path.exists(path):
            assert lines == []          # nothing answered, nothing written
            continue
        # the image always parses: never torn
        CardImage(path).load()
        card = UsimCard(image=path, records=4, pin_retries=RETRIES)
        now = (card.pin(1).remaining, bytes(card.adn().records[0]))
        assert now[0] <= state[0], "retry counter went up after kill %d" % i
        reported = [int(x[1:]) for x in lines if x.startswith(b"P")]
        if reported:
            # persisted before the answer: never above what the card already answered
            assert now[0] <= reported[-1]
        # exactly the state after the answered operations, or after one more that was
        # stored before the kill came and never answered
        assert now in _states_after(state, seed, len(lines)), "kill %d: image %r" % (i, now)
        if lines:
            progressed += 1
        state = now
    assert progressed >= KILLS * 8 // 10
    assert state[0] < RETRIES - 500
    # killed writers' temporary files are cleaned up by the next load
    CardImage(path).load()
    assert not [n for n in os.listdir(str(tmp_path)) if ".tmp-" in n]


# --- images of any content: a card or CardOSError ---------------------------------------------

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(["00", "ff" * 30, "3F00/7F10/6F3A", "3F00/2FE2", "zz"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["files", "pins", "nv", "01", "81", "value", "remaining", "enabled",
                         "puk", "puk_remaining", "3F00/7F10/6F3A", "3F00/2FE2", "x/y"]),
        inner, max_size=5),
    max_leaves=20)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(section=json_value, raw=st.one_of(st.none(), st.binary(max_size=64)))
def test_any_image_content_gives_a_card_or_card_os_error(tmp_path, section, raw):
    path = tmp_path / "any.json"
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(json.dumps({"format": "ccidkit-card-image", "version": 1,
                                    "sections": {"usim": section}}))
    try:
        card = make_card("usim", image=str(path), records=2)
    except CardOSError as e:
        assert e.name == "IMAGE_CORRUPT"
        return
    assert card.process_apdu(h("00A4000C02 2FE2")) == h("9000")
    assert 0 <= card.pin(1).remaining <= 3
