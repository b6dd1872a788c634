"""The two redactors: every occurrence of every spelling hidden, overlaps and cuts included.

Tests that build a redactor run twice: with the gateway's (secrets/redact.py, its native first
pass) and the runtime's (runtime/redact.py, standard library only, in action images); both must
hide exactly what a brute-force search finds, and one table of cases runs through both at once.
"""

from __future__ import annotations

import base64
import json
import random
import time
from urllib.parse import quote, quote_plus

import pytest

from hatchway.domain.runs import Mode
from hatchway.runtime import contract
from hatchway.runtime.contract import MAX_LINE_BYTES, OutputCollector
from hatchway.runtime.redact import HIDDEN, Redactor, spellings
from hatchway.secrets.redact import ACTIVE_SECRETS, ActiveRedaction, NativeRedactor

CONTRACT_SECRET = "s3cr3t-Value/+="


@pytest.fixture(params=["native", "stdlib"])
def redactor_class(request: pytest.FixtureRequest) -> type[Redactor]:
    """The gateway's redactor, then the runtime's."""
    return NativeRedactor if request.param == "native" else Redactor


def brute_force(text: str, secrets: list[str]) -> str:
    """What the redactor must answer: every occurrence's characters hidden, overlapping ones as one marker."""
    forms = {form for secret in secrets if len(secret) >= 4 for form in spellings(secret)}
    hidden = []
    for form in forms:
        start = text.find(form)
        while start >= 0:
            hidden.append((start, start + len(form)))
            start = text.find(form, start + 1)
    merged: list[list[int]] = []
    for begin, stop in sorted(hidden):
        if merged and begin < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([begin, stop])
    out, position = [], 0
    for begin, stop in merged:
        out += [text[position:begin], HIDDEN]
        position = stop
    return "".join(out) + text[position:]


def test_every_spelling_is_hidden(redactor_class: type[Redactor]) -> None:
    secret = 'pa ss"w\\ord/+=-\u00e4\u6f22\U0001f600'
    redactor = redactor_class([secret])
    raw = secret.encode()
    forms = [
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]
    for form in forms:
        assert redactor.text(f"<{form}>") == f"<{HIDDEN}>", form


def test_redactor_hides_every_spelling(redactor_class: type[Redactor]) -> None:
    redactor = redactor_class([CONTRACT_SECRET])
    for form in (
        CONTRACT_SECRET,
        base64.b64encode(CONTRACT_SECRET.encode()).decode(),
        base64.urlsafe_b64encode(CONTRACT_SECRET.encode()).decode().rstrip("="),
        json.dumps(CONTRACT_SECRET)[1:-1],
        quote(CONTRACT_SECRET, safe=""),
    ):
        assert redactor.text(f"before {form} after") == f"before {HIDDEN} after"
    assert redactor.data({"k": [CONTRACT_SECRET, 1], CONTRACT_SECRET: "v"}) == {"k": [HIDDEN, 1], HIDDEN: "v"}


def test_json_escaped_secrets_are_hidden_however_the_action_serialises_them(redactor_class: type[Redactor]) -> None:
    # Given a secret with characters JSON escapes: a quote, a backslash, a tab and non-ASCII text
    secret = 'pa"ss\\w\tord-\u00e4\u6f22'
    redactor = redactor_class([secret])
    # Python's json.dumps (ASCII-only), JavaScript's JSON.stringify (non-ASCII kept), and the raw value
    for form in (json.dumps(secret), json.dumps(secret, ensure_ascii=False), secret):
        # Then none of them shows
        assert secret not in redactor.text(form)
        assert HIDDEN in redactor.text(form), form


def test_overlapping_occurrences_become_one_marker(redactor_class: type[Redactor]) -> None:
    # Given two secrets that share characters, and a periodic one printed into itself
    redactor = redactor_class(["abcd1234", "1234wxyz", "passpass"])
    # Then no part of either shows beside the marker
    assert redactor.text("<abcd1234wxyz>") == f"<{HIDDEN}>"
    assert redactor.text("<passpasspass>") == f"<{HIDDEN}>"
    assert redactor.text("<passpass passpass>") == f"<{HIDDEN} {HIDDEN}>"
    # And occurrences that only touch stay two markers, as they always were
    assert redactor.text("abcd1234abcd1234") == HIDDEN + HIDDEN


def test_secrets_that_are_prefixes_and_suffixes_of_each_other(redactor_class: type[Redactor]) -> None:
    redactor = redactor_class(["pass", "password", "password1", "word1234"])
    assert redactor.text("a pass b password c password1 d") == f"a {HIDDEN} b {HIDDEN} c {HIDDEN} d"
    assert redactor.text("passwor") == f"{HIDDEN}wor"  # "pass" alone
    assert redactor.text("password1234") == HIDDEN  # password + word1234 overlap


def test_a_chain_of_overlaps_longer_than_any_secret(redactor_class: type[Redactor]) -> None:
    # occurrences that each overlap the next: the leftmost-longest pass finds every other one
    secrets = ["AAAAB", "ABCCC", "CCCDD", "CDDEE"]
    text = "xAAAABCCCDDEEx"
    assert redactor_class(secrets).text(text) == brute_force(text, secrets) == f"x{HIDDEN}x"


def test_agrees_with_brute_force_on_random_texts(redactor_class: type[Redactor]) -> None:
    rng = random.Random(15)
    for _ in range(300):
        alphabet = "ab" if rng.random() < 0.5 else "abc="
        secrets = ["".join(rng.choice(alphabet) for _ in range(rng.randint(3, 9))) for _ in range(rng.randint(1, 4))]
        text = "".join(rng.choice(alphabet + " ") for _ in range(rng.randint(0, 80)))
        assert redactor_class(secrets).text(text) == brute_force(text, secrets), (secrets, text)


def test_short_and_empty_values(redactor_class: type[Redactor]) -> None:
    assert redactor_class(["abc"]).text("abc") == "abc"
    assert not redactor_class(["", "abc"])
    assert not redactor_class([])
    assert redactor_class(["abcd"]).text("") == ""
    assert redactor_class(["abcd", "abcd"]).secrets == ["abcd"]


def test_lines_of_a_multi_line_secret_are_hidden_one_by_one(redactor_class: type[Redactor]) -> None:
    pem = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\nAQEFAASCBKcwggSjAgEAAoIB\n-----END KEY-----"
    redactor = redactor_class([pem])
    for line in pem.splitlines():
        assert redactor.text(line) == HIDDEN
    assert redactor.text(json.dumps(pem)) == f'"{HIDDEN}"'  # the escaped form, on one line
    assert redactor_class(["ab\n{\ncd-long-enough"]).text("{") == "{"  # short lines are not looked for alone


def test_data_hides_keys_and_values_at_any_depth(redactor_class: type[Redactor]) -> None:
    redactor = redactor_class(["s3cr3t-value"])
    data = {"k": ["s3cr3t-value", 1, {"s3cr3t-value": ("x s3cr3t-value",)}], "n": None}
    assert redactor.data(data) == {"k": [HIDDEN, 1, {HIDDEN: [f"x {HIDDEN}"]}], "n": None}


def test_split_leaves_a_secret_across_the_cut_whole_or_carries_it(redactor_class: type[Redactor]) -> None:
    redactor = redactor_class(["0123456789"])
    text = "abc0123456789def"
    # the head ends where the secret starts, and the next piece starts with it
    assert redactor.split(text, 6) == ("abc", 3, 0)
    assert redactor.split(text, 3) == ("abc", 3, 0)
    # cut exactly: both pieces show a marker, and the next is told how much of it is hidden
    head, cut, carried = redactor.split(text, 6, exact=True)
    assert (head, cut, carried) == (f"abc{HIDDEN}", 6, 7)
    assert redactor.text(text[6:], carried) == f"{HIDDEN}def"
    # a secret at the very start is carried, or no piece would ever end
    assert redactor.split(text[3:], 2) == (HIDDEN, 2, 8)


def test_a_maximal_secret_is_hidden_and_its_automaton_is_shared(redactor_class: type[Redactor]) -> None:
    # Given a 64 KiB secret with characters every encoding spells differently
    rng = random.Random(64)
    secret = "".join(rng.choice('abcXYZ019 +/="\\\u00e4\U0001f600') for _ in range(20000)).encode()[:65536]
    value = secret.decode(errors="ignore")
    redactor = redactor_class([value])
    # When its spellings are printed among ordinary text
    text = "head " + " | ".join(sorted(spellings(value))) + " tail"
    # Then nothing but markers and the separators remain
    assert redactor.text(text) == "head " + " | ".join([HIDDEN] * len(spellings(value))) + " tail"
    # And a view with a deadline shares the automata built once
    assert redactor.until(None)._finder is redactor._finder


def test_past_its_deadline_a_search_hides_what_is_left(redactor_class: type[Redactor]) -> None:
    secret = "A" * 64
    text = "B" * 10 + ("A" * 200_000) + "tail"
    # Given a redactor whose deadline has passed
    late = redactor_class([secret]).until(time.monotonic() - 1)
    # Then what is left of the text is hidden whole rather than searched (it fails closed)
    redacted = late.text(text)
    assert "A" not in redacted and "tail" not in redacted and redacted.endswith(HIDDEN)
    # And in time, the same text is searched
    assert redactor_class([secret]).text(text) == "B" * 10 + HIDDEN + "tail"


def test_secret_split_across_writes_is_hidden(redactor_class: type[Redactor]) -> None:
    collector = OutputCollector(Mode.ASYNC, redactor_class([CONTRACT_SECRET]))
    collector.feed("stdout", b"token=" + CONTRACT_SECRET[:5].encode())
    collector.feed("stdout", CONTRACT_SECRET[5:].encode() + b" end\n")
    collector.close()
    assert [e.msg for e in collector.entries] == [f"token={HIDDEN} end"]


def test_collector_finds_a_secret_split_across_writes_byte_by_byte(redactor_class: type[Redactor]) -> None:
    secret = "s3cr3t-\u00e4-value"
    collector = OutputCollector(Mode.ASYNC, redactor_class([secret]))
    for byte in f"x {secret} y\n".encode():
        collector.feed("stdout", bytes([byte]))
    collector.close()
    assert [e.msg for e in collector.entries] == [f"x {HIDDEN} y"]


@pytest.mark.parametrize("offset", [-7, -1, 0, 1, 5])
def test_collector_hides_a_secret_across_the_cut_of_a_long_line(offset: int, redactor_class: type[Redactor]) -> None:
    # Given a line longer than a piece, with a secret straddling the cut at MAX_LINE_BYTES
    secret = "0123456789abcdef"
    start = MAX_LINE_BYTES + offset - len(secret) // 2
    line = "x" * start + secret + "y" * 100_000
    collector = OutputCollector(Mode.ASYNC, redactor_class([secret]))
    # When it arrives in uneven writes
    data = (line + "\n").encode()
    for begin in range(0, len(data), 9_999):
        collector.feed("stdout", data[begin : begin + 9_999])
    collector.close()
    # Then the pieces together hold no character of it, and everything else is kept
    pieces = [e.msg for e in collector.entries]
    assert len(pieces) > 1
    joined = "".join(pieces)
    assert "0123" not in joined and "cdef" not in joined and "789a" not in joined
    assert joined.replace(HIDDEN, "") == "x" * start + "y" * 100_000


def test_collector_hides_a_64_kib_secret_on_one_line(redactor_class: type[Redactor]) -> None:
    # a secret longer than a piece of a long line (its URL-encoded form is three times longer)
    secret = "%" * 65536
    for form in (secret, quote(secret, safe="")):
        collector = OutputCollector(Mode.ASYNC, redactor_class([secret]))
        collector.feed("stderr", f"before {form} after\n".encode())
        collector.close()
        assert "".join(e.msg for e in collector.entries) == f"before {HIDDEN} after"


def test_collector_without_secrets_cuts_lines_as_before() -> None:
    collector = OutputCollector(Mode.ASYNC)
    collector.feed("stdout", b"z" * (MAX_LINE_BYTES * 2 + 10))
    collector.close()
    assert [len(e.msg) for e in collector.entries] == [MAX_LINE_BYTES, MAX_LINE_BYTES, 10]
    assert contract.MAX_LINE_BYTES == MAX_LINE_BYTES


def test_active_secrets_redact_the_gateway_log_while_an_attempt_runs(redactor_class: type[Redactor]) -> None:
    redactor = redactor_class(["gateway-log-secret"])
    handle = ACTIVE_SECRETS.add(redactor)
    try:
        assert ACTIVE_SECRETS.text("saw gateway-log-secret") == f"saw {HIDDEN}"
    finally:
        ACTIVE_SECRETS.remove(handle)
    assert ACTIVE_SECRETS.text("saw gateway-log-secret") == "saw gateway-log-secret"


def test_an_open_redaction_keeps_its_secrets_out_of_the_gateway_log_until_it_closes() -> None:
    redaction = ActiveRedaction()
    with redaction.open(["attempt-secret"]) as redactor:
        assert redactor.text("got attempt-secret") == f"got {HIDDEN}"
        assert ACTIVE_SECRETS.text("saw attempt-secret") == f"saw {HIDDEN}"
    assert ACTIVE_SECRETS.text("saw attempt-secret") == "saw attempt-secret"
    # an attempt that fails still takes its secrets off the list
    with pytest.raises(RuntimeError), redaction.open(["failing-secret"]):
        raise RuntimeError("the attempt failed")
    assert ACTIVE_SECRETS.text("saw failing-secret") == "saw failing-secret"


def test_a_stream_in_small_pieces_is_redacted_as_the_whole_text(redactor_class: type[Redactor]) -> None:
    # Given a text whose secrets cross the cuts between pieces wherever they fall
    rng = random.Random(7)
    secrets = ["0123456789", "89abc", "zzzz"]
    text = "".join(rng.choice(["-", "0123456789", "89abc", "zzzzz", "ab", "\n"]) for _ in range(400))
    redactor = redactor_class(secrets)
    whole = brute_force(text, secrets)
    assert redactor.text(text) == whole

    def one_marker_a_run(value: str) -> str:
        while HIDDEN + HIDDEN in value:
            value = value.replace(HIDDEN + HIDDEN, HIDDEN)
        return value

    for piece in (1, 3, 11, 64):
        chunks = [text[i : i + piece] for i in range(0, len(text), piece)]
        # Then streaming it, holding a few characters at a time, hides what a whole search hides
        # (a run of overlapping secrets longer than what is held may show as two markers)
        assert one_marker_a_run("".join(redactor.stream(chunks, size=5))) == one_marker_a_run(whole)
        # and holding more than any run, exactly the same
        assert "".join(redactor.stream(chunks, size=50)) == whole
    assert list(redactor_class().stream(["a", "b"])) == ["a", "b"]


# ---- parity: one table through both redactors ------------------------------------------------

PEM = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\nAQEFAASCBKcwggSjAgEAAoIB\n-----END KEY-----"
ODD = 'pa"ss\\w\tord/+=-\u00e4\u6f22 &?'
B64 = base64.b64encode(ODD.encode()).decode()
URL_B64 = base64.urlsafe_b64encode(ODD.encode()).decode().rstrip("=")
PARITY = {
    "raw": (["s3cr3t-value"], "a s3cr3t-value b s3cr3t-value"),
    "base64": ([ODD], f"b64={B64} url={URL_B64}"),
    "json-escaped": ([ODD], json.dumps({"a": ODD}) + json.dumps([ODD], ensure_ascii=False)),
    "url-encoded": ([ODD], f"?q={quote(ODD, safe='')}&r={quote_plus(ODD)}"),
    "overlapping": (["abcd1234", "1234wxyz", "passpass"], "<abcd1234wxyz> passpasspass abcd1234abcd1234"),
    "chain": (["AAAAB", "ABCCC", "CCCDD", "CDDEE"], "xAAAABCCCDDEEx"),
    "short": (["abc", "ab", "", "abcd"], "abc ab abcd abcde"),
    "multi-line": ([PEM], PEM.replace("\n", " | ") + " " + json.dumps(PEM)),
    "many secrets": ([f"secret-number-{i:03d}" for i in range(40)], "x secret-number-007 y secret-number-039 z"),
    "none present": (["s3cr3t-value"], "nothing to hide here"),
}


@pytest.mark.parametrize(("secrets", "text"), list(PARITY.values()), ids=list(PARITY))
def test_both_redactors_hide_the_same_characters(secrets: list[str], text: str) -> None:
    native, runtime = NativeRedactor(secrets), Redactor(secrets)
    # the whole text, JSON-like data and a cut anywhere answer the same in both
    assert native.text(text) == runtime.text(text) == brute_force(text, secrets)
    assert native.data({text: [text, 1]}) == runtime.data({text: [text, 1]})
    for at in range(0, len(text) + 1, 7):
        assert native.split(text, at) == runtime.split(text, at)
    pieces = [text[i : i + 5] for i in range(0, len(text), 5)]
    assert list(native.stream(pieces, size=8)) == list(runtime.stream(pieces, size=8))
    assert (bool(native), native.secrets, native.longest_bytes) == (
        bool(runtime),
        runtime.secrets,
        runtime.longest_bytes,
    )
