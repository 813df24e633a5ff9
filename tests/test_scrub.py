"""The scrubber: every rule's true positives, false-positive bait, JSON validity (hypothesis),
environment values, pseudonyms, user rules, counts, both detection backends, odd input."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scrub_cases import ALNUM, Case, _r, cases, not_secrets
from tracebox.errors import ConfigError
from tracebox.scrub import Scrubber, engine, pii, secrets

CORPUS = Path(__file__).resolve().parent / "corpus"
SALT = b"s" * 32
CASES = cases()
NOT_SECRETS = not_secrets()
ALL_RULES = {r.name: r for r in (*secrets.RULES, *pii.RULES)}
BACKENDS = ["hyperscan", "re"]
PSEUDONYM = {
    "email": re.compile(r"user-[0-9a-f]{8}@example\.invalid"),
    "user": re.compile(r"user-[0-9a-f]{8}"),
    "phone": re.compile(r"phone-[0-9a-f]{8}"),
    "ip": re.compile(r"240\.\d+\.\d+\.\d+|2001:db8:[0-9a-f]{4}:[0-9a-f]{4}::[0-9a-f]+"),
}


@pytest.fixture(scope="module", params=BACKENDS)
def scrubber_factory(request):
    def make(**kw):
        kw.setdefault("env", {})
        kw.setdefault("salt", SALT)
        return Scrubber(backend=request.param, **kw)

    return make


@pytest.fixture(scope="module")
def scrubber(scrubber_factory) -> Scrubber:
    return scrubber_factory()


def _case_id(c: Case) -> str:
    return c.rule


# -- every rule ---------------------------------------------------------------------------


def test_every_rule_has_a_true_positive():
    keep = {n for n, r in ALL_RULES.items() if r.kind == "keep"}  # tested by the bait below
    assert keep == {"public-pem-block"}
    assert set(ALL_RULES) - keep == {c.rule for c in CASES}
    providers = {r.category for r in secrets.PROVIDERS}
    assert len(providers) >= 40, sorted(providers)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_true_positive(scrubber: Scrubber, case: Case):
    rule = ALL_RULES[case.rule]
    out = scrubber.scrub_text(case.text)
    assert case.secret not in out
    assert case.rule in {f.rule for f in scrubber.findings(case.text)}
    if rule.kind == "secret":
        assert f"[REDACTED:{rule.category}]" in out
    else:
        assert PSEUDONYM[rule.category].search(out), out
    # the same text inside a JSON line: still valid JSON, the value gone from the decoded text
    line = json.dumps({"type": "tool_result", "content": case.text})
    decoded = json.loads(scrubber.scrub_text(line))["content"]
    assert case.secret not in decoded


@pytest.mark.parametrize("text", NOT_SECRETS, ids=lambda t: t[:40])
def test_false_positive_bait_survives(scrubber: Scrubber, text: str):
    assert scrubber.findings(text) == []
    assert scrubber.scrub_text(text) == text
    line = json.dumps({"text": text})
    assert scrubber.scrub_text(line) == line


def test_secret_keeps_its_key_name(scrubber: Scrubber):
    tok = "gh" + "p_" + _r(__import__("random").Random(1), 36)
    assert scrubber.scrub_text(f"GITHUB_TOKEN={tok}\n") == "GITHUB_TOKEN=[REDACTED:github]\n"
    conn = "postgres://app:" + "Tr0ub4dor&3x" + "@db.internal:5432/app"
    assert scrubber.scrub_text(conn) == "postgres://app:[REDACTED:password]@db.internal:5432/app"


def test_structured_credentials_documents(scrubber: Scrubber):
    """A GCP service-account key file and `aws sts` output, as an agent would cat them."""
    import random

    g = random.Random(3)
    key_id, body = _r(g, 40, "0123456789abcdef"), "\n".join(_r(g, 64) for _ in range(3))
    pem = "-----BEGIN PRIVATE" + f" KEY-----\n{body}\n-----END PRIVATE" + " KEY-----\n"
    sa = {"type": "service_account", "private_key_id": key_id, "private_key": pem}
    akid, secret, session = (
        "AS" + "IA" + _r(g, 16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
        _r(g, 40),
        _r(g, 300),
    )
    sts = {"Credentials": {"AccessKeyId": akid, "SecretAccessKey": secret, "SessionToken": session}}
    for doc, values in ((sa, (key_id, body.split("\n")[1])), (sts, (akid, secret, session))):
        text = json.dumps(doc, indent=2)
        out = scrubber.scrub_text(text)
        json.loads(out)
        for v in values:
            assert v not in out


# -- JSON validity ------------------------------------------------------------------------

_SEPARATORS = [" ", "\n", "\t", "\r\n", '"', "'", ", ", " = "]
_GLUE = [*_SEPARATORS, "\\", "é", "\u2028", "\x00", "😀", "\\u00e9", "{", "="]
_fragment = st.one_of(
    st.sampled_from([c.text for c in CASES]),
    st.sampled_from(NOT_SECRETS),
    st.text(max_size=40),
    st.text(alphabet='\\"nu0123456789abcdefé/ ', max_size=20),
)


def _line(parts: list[str], seps: list[str], ascii_only: bool, nested: bool) -> str:
    text = "".join(p + s for p, s in zip(parts, seps, strict=False))
    obj = {"message": {"content": [{"type": "text", "text": text}]}, "n": 1}
    if nested:  # JSON inside a JSON string, as tool results often hold
        obj = {"tool_result": json.dumps(obj, ensure_ascii=ascii_only)}
    return json.dumps(obj, ensure_ascii=ascii_only)


def _text_of(line: str, nested: bool) -> str:
    decoded = json.loads(line)  # must not raise
    if nested:
        decoded = json.loads(decoded["tool_result"])
    return decoded["message"]["content"][0]["text"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(_fragment, min_size=1, max_size=8),
    seps=st.lists(st.sampled_from(_GLUE), min_size=8, max_size=8),
    ascii_only=st.booleans(),
    nested=st.booleans(),
)
def test_valid_json_stays_valid_json(parts, seps, ascii_only, nested):
    """Whatever is glued together, however it is escaped: the output parses."""
    _text_of(_hs_scrubber().scrub_text(_line(parts, seps, ascii_only, nested)), nested)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.sampled_from(CASES), min_size=1, max_size=8),
    seps=st.lists(st.sampled_from(_SEPARATORS), min_size=8, max_size=8),
    ascii_only=st.booleans(),
    nested=st.booleans(),
)
def test_secrets_in_json_lines_are_gone(parts, seps, ascii_only, nested):
    """Secrets separated as text separates them never survive, at any escaping depth."""
    line = _line([c.text for c in parts], seps, ascii_only, nested)
    got = _text_of(_hs_scrubber().scrub_text(line), nested)
    for c in parts:
        assert c.secret not in got, c.rule


_HS: list[Scrubber] = []


def _hs_scrubber() -> Scrubber:
    if not _HS:
        _HS.append(Scrubber(env={}, salt=SALT))
    return _HS[0]


def test_tokens_right_after_json_escapes(scrubber: Scrubber):
    tok = "gh" + "p_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    for before in ("\n", "\t", "é", "\u00e9x "):
        line = json.dumps({"t": f"x{before}{tok}\nnext"})
        out = scrubber.scrub_text(line)
        assert json.loads(out)["t"] == f"x{before}[REDACTED:github]\nnext"
    line = json.dumps({"t": "a\nbob.jones@mailhost.org"})
    assert json.loads(scrubber.scrub_text(line))["t"].startswith("a\nuser-")


def test_a_deny_rule_cannot_break_json_escapes():
    s = Scrubber(config={"deny": [r"n.{3}", r'Z.*"', r"\\u00"]}, env={}, salt=SALT)
    for text in ("x\nabcdef", 'Zq"rest', "caf\u00e9 ok", "tab\there"):
        line = json.dumps({"t": text})
        json.loads(s.scrub_text(line))


# -- environment values -------------------------------------------------------------------


def test_env_values_are_redacted_exactly_and_in_json_form(scrubber_factory):
    quoted = 'p@ss"w\\rd-' + _r(__import__("random").Random(5), 12)
    env = {
        "MY_SERVICE_TOKEN": "tok-" + "abc123XYZ789",
        "DB_PASSWORD": quoted,
        "HOME": "/root",
        "PWD": "/work/main/somewhere",
        "SHORT_TOKEN": "abc",
        "EDITOR": "vim-something-long",
        "GOOGLE_APPLICATION_CREDENTIALS": "/etc/keys/sa.json",
    }
    s = scrubber_factory(env=env)
    text = f"using {env['MY_SERVICE_TOKEN']} in {env['EDITOR']} at {env['PWD']} abc"
    assert s.scrub_text(text) == f"using [REDACTED:env] in {env['EDITOR']} at {env['PWD']} abc"
    line = json.dumps({"out": f"pw is {quoted}!"})
    assert quoted not in json.loads(s.scrub_text(line))["out"]
    assert json.loads(s.scrub_text(line))["out"] == "pw is [REDACTED:env]!"
    assert s.findings("/etc/keys/sa.json") == []


def test_process_environment_is_the_default(monkeypatch):
    value = "q9" + "Zx7Lm2Vb8Nc"
    monkeypatch.setenv("TRACEBOX_TEST_API_KEY", value)
    assert Scrubber(salt=SALT).scrub_text(f"k {value} k") == "k [REDACTED:env] k"
    assert Scrubber(env=None, salt=SALT).scrub_text(f"k {value} k") == f"k {value} k"


# -- pseudonyms ---------------------------------------------------------------------------


def test_pseudonyms_are_stable_per_salt_and_not_the_value():
    text = "mail Jane.Doe@Acme-Corp.io from /home/jdoe/x at 8.8.4.4 or +44 20 7946 0958"
    a1 = Scrubber(env={}, salt=SALT).scrub_text(text)
    a2 = Scrubber(env={}, salt=SALT).scrub_text(text.replace("Jane.Doe", "jane.doe"))
    b = Scrubber(env={}, salt=b"t" * 32).scrub_text(text)
    assert a1 == a2  # same salt, same pseudonyms (e-mail compared case-insensitively)
    assert a1 != b
    for value in ("Jane.Doe", "jdoe", "8.8.4.4", "7946"):
        assert value not in a1 and value not in b
    other = Scrubber(env={}, salt=SALT).scrub_text("mail jim@acme-corp.io")
    assert other.split()[1] != a1.split()[1]  # different people, different pseudonyms


def test_salt_file_is_created_private_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    path = tmp_path / "tracebox" / "scrub-salt"
    s = Scrubber(env={})
    assert s.findings("bob@corp-mail.io") and not path.exists()  # reporting needs no salt
    first = s.scrub_text("bob@corp-mail.io")
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == pii.SALT_BYTES
    assert Scrubber(env={}).scrub_text("bob@corp-mail.io") == first
    assert pii.load_salt() == path.read_bytes()


def test_scrubbing_twice_changes_nothing(scrubber: Scrubber):
    for c in CASES:
        once = scrubber.scrub_text(c.text)
        assert scrubber.scrub_text(once) == once, c.rule


# -- user rules and counts ----------------------------------------------------------------


def test_config_deny_allow_disable():
    text = "ticket ACME-12345 mail ops@corp-mail.io and dev@partner.org at 8.8.4.4"
    s = Scrubber(
        config={"deny": [r"ACME-\d+"], "allow": [r"@partner\.org$"], "disable": ["ip"]},
        env={},
        salt=SALT,
    )
    out = s.scrub_text(text)
    assert "[REDACTED:custom]" in out and "ACME-12345" not in out
    assert "ops@corp-mail.io" not in out
    assert "dev@partner.org" in out  # allowlist wins
    assert "8.8.4.4" in out  # category disabled
    tok = "gh" + "p_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    allowed = Scrubber(config={"allow": ["^ghp_A1b2"]}, env={}, salt=SALT)
    assert allowed.scrub_text(f"x {tok}") == f"x {tok}"
    denied_over_allow = Scrubber(config={"deny": ["ACME"], "allow": ["ACME"]}, env={}, salt=SALT)
    assert denied_over_allow.scrub_text("ACME") == "ACME"


def test_allowlisted_span_blocks_weaker_overlapping_rules():
    tok = "gh" + "p_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    text = f"value {tok}== end"  # the entropy rule would take the token and its padding
    s = Scrubber(config={"allow": [r"^ghp_\w{36}$"]}, env={}, salt=SALT)
    assert s.scrub_text(text) == text
    assert Scrubber(env={}, salt=SALT).scrub_text(text) == "value [REDACTED:github]== end"


def test_surrogate_pairs_are_never_split():
    s = Scrubber(config={"deny": [r"\\ud83d", r"\\ude01"]}, env={}, salt=SALT)
    line = json.dumps({"t": "a😀b😁c"})  # ensure_ascii: \ud83d\ude00 ...
    text = json.loads(s.scrub_text(line))["t"]
    assert text == "a[REDACTED:custom]b[REDACTED:custom]c"


@pytest.mark.parametrize(
    "config",
    [{"deny": ["(unclosed"]}, {"allow": "["}, {"deny": [1, 2]}, {"disable": {"a": 1}}],
)
def test_bad_config_is_a_config_error(config):
    with pytest.raises(ConfigError):
        Scrubber(config=config, env={}, salt=SALT)


def test_counts_are_cumulative_per_category_and_findings_do_not_count():
    s = Scrubber(env={}, salt=SALT)
    by_rule = {c.rule: c for c in CASES}
    text = "\n".join(
        by_rule[r].text for r in ("github-token", "email", "stripe-key", "ipv4", "email")
    )
    expected = {"github": 1, "email": 2, "stripe": 1, "ip": 1}  # each occurrence counts
    assert s.findings(text) and s.counts == {}
    s.scrub_text(text)
    assert s.counts == expected
    s.scrub_bytes(text.encode())
    assert s.counts == {k: 2 * v for k, v in expected.items()}


def test_findings_have_locations_but_no_text(scrubber: Scrubber):
    tok = "np" + "m_" + _r(__import__("random").Random(9), 36)
    mail = "zoë@mailhost.org".replace("ë", "e")
    text = f"first line\nnaïve — {tok} end — ünïcödé {mail}\n"
    f, g = scrubber.findings(text)
    assert (f.category, f.rule, f.line, g.rule, g.line) == ("npm", "npm-token", 2, "email", 2)
    line = text.split("\n")[1]
    assert line[f.start : f.end] == tok  # columns are characters for str input
    assert line[g.start : g.end] == mail
    assert tok not in repr(f)
    fb, gb = scrubber.findings(text.encode())
    raw = text.encode().split(b"\n")[1]
    assert raw[fb.start : fb.end] == tok.encode()  # bytes: byte columns
    assert raw[gb.start : gb.end] == mail.encode()


# -- detection backends -------------------------------------------------------------------


def _corpus_samples() -> list[Path]:
    names = [
        "claude-code/short.jsonl",
        "claude-code/tool_heavy.jsonl",
        "claude-code/subagent.jsonl",
        "codex/rollout-2026-02-23T12-41-04-019c8a4d-8f45-7010-8b5d-7fad920aa6f9.jsonl",
    ]
    return [CORPUS / n for n in names if (CORPUS / n).exists()]


def test_backends_agree_on_real_transcripts():
    assert engine._hs is not None, "hyperscan is a dependency: pip install -e '.[dev]'"
    files = _corpus_samples()
    assert files, f"corpus missing under {CORPUS}"
    hs = Scrubber(env={}, salt=SALT, backend="hyperscan")
    rx = Scrubber(env={}, salt=SALT, backend="re")
    for path in files:
        data = path.read_bytes()[:400_000]
        data = data[: data.rfind(b"\n") + 1]
        out = hs.scrub_bytes(data)
        assert rx.scrub_bytes(data) == out, path.name
        for line in out.splitlines():
            json.loads(line)
    assert hs.counts == rx.counts


def _ids(obj, out: list, key: str = "") -> list:
    """Every string under a key that names an id (uuid, sessionId, toolUseID, call_id...)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            _ids(v, out, k)
    elif isinstance(obj, list):
        for v in obj:
            _ids(v, out, key)
    elif isinstance(obj, str) and (key.lower().endswith(("id", "uuid")) or key == "id"):
        out.append((key, obj))
    return out


def test_real_transcript_ids_survive():
    """Message, request, tool-call, session and agent ids are structure, not secrets:
    replacing them would break the links between steps, tool results and subagents."""
    files = sorted(CORPUS.rglob("*.jsonl"))
    assert len(files) >= 10, f"corpus missing under {CORPUS}"
    s = Scrubber(env={}, salt=SALT)
    checked = 0
    for path in files:
        data = path.read_bytes()
        out = s.scrub_bytes(data)
        for raw, clean in zip(data.splitlines(), out.splitlines(), strict=True):
            before, after = _ids(json.loads(raw), []), _ids(json.loads(clean), [])
            assert before == after, path.name
            checked += len(before)
    assert checked > 10_000


# -- odd input ----------------------------------------------------------------------------


def test_invalid_utf8_and_truncated_lines_pass_through(scrubber: Scrubber):
    tok = "sk" + "_live_" + _r(__import__("random").Random(2), 24)
    data = b'{"a":"\xff\xfe bad bytes ' + tok.encode() + b' \xc3"}\n{"b":"trunc'
    out = scrubber.scrub_bytes(data)
    assert out == data.replace(tok.encode(), b"[REDACTED:stripe]")
    assert scrubber.scrub_bytes(b"") == b""


@pytest.mark.parametrize("mib", [50])
def test_a_huge_line_is_scrubbed_without_trouble(mib: int):
    scrubber = Scrubber(env={}, salt=SALT)  # the pure-re fallback is ~20x slower on this
    tok = "gl" + "pat-" + _r(__import__("random").Random(4), 20, ALNUM)
    blob = b"A" * (mib << 20)
    data = b'{"image":"' + blob + b'","note":"' + tok.encode() + b'"}\n'
    out = scrubber.scrub_bytes(data)
    assert len(out) == len(data) - len(tok) + len(b"[REDACTED:gitlab]")
    assert out.endswith(b'"note":"[REDACTED:gitlab]"}\n')


def test_unknown_backend_request_fails_cleanly(monkeypatch):
    monkeypatch.setattr(engine, "_hs", None)
    with pytest.raises(ConfigError):
        Scrubber(env={}, salt=SALT, backend="hyperscan")
    assert Scrubber(env={}, salt=SALT).scrub_text("x 8.8.4.4").startswith("x 240.")


def test_no_secret_in_this_repository_file():
    """The labelled cases are assembled at run time: no full token sits in the sources."""
    src = (Path(__file__).parent / "scrub_cases.py").read_text()
    s = Scrubber(
        env={}, salt=SALT, config={"disable": ["high-entropy", "user", "email", "phone", "ip"]}
    )
    assert [f.rule for f in s.findings(src)] == []
    assert os.path.basename(__file__) == "test_scrub.py"


# -- the compiled-rules cache -------------------------------------------------------------


def _cache_files() -> list[Path]:
    return sorted(Path(os.environ["XDG_CACHE_HOME"], "tracebox", "scrub").glob("*.hsdb"))


def test_compiled_rules_are_cached_and_reused(monkeypatch):
    text = "mail bob@acme-corp.io and key gh" + "p_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    first = Scrubber(env={}, salt=SALT).scrub_text(text)
    files = _cache_files()
    assert len(files) == 1
    compiled = []
    real = engine._compile_database
    monkeypatch.setattr(
        engine, "_compile_database", lambda *a, **k: compiled.append(1) or real(*a, **k)
    )
    assert Scrubber(env={}, salt=SALT).scrub_text(text) == first
    assert compiled == []  # loaded, not compiled
    assert "[REDACTED:github]" in first and "bob@" not in first


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_damaged_cache_is_rebuilt(damage):
    text = "token sk" + "_live_" + "Zq8Xw7Vu6Ts5Rq4Po3Nm2Lk1"
    want = Scrubber(env={}, salt=SALT).scrub_text(text)
    (f,) = _cache_files()
    blob = f.read_bytes()
    bad = {
        "truncate": blob[: len(blob) // 2],
        "flip": blob[:-100] + bytes([blob[-100] ^ 0xFF]) + blob[-99:],
        "garbage": b"not a database",
    }[damage]
    f.write_bytes(bad)
    assert Scrubber(env={}, salt=SALT).scrub_text(text) == want
    assert f.read_bytes() == blob  # rewritten whole


def test_environment_values_never_reach_the_cache():
    value = "Sup3rS3cretEnvValue-" + "x9Q2w8E7r6T5"
    s = Scrubber(env={"MY_SERVICE_TOKEN": value}, salt=SALT)
    assert s.scrub_text(f"echo {value}") == "echo [REDACTED:env]"
    for f in _cache_files():
        data = f.read_bytes()
        assert value.encode() not in data and b"Sup3rS3cret" not in data
    # a process with other environment values shares the same cached rules
    Scrubber(env={"OTHER_API_KEY": "another-" + "v4lue-9f8e7d6c"}, salt=SALT)
    assert len(_cache_files()) == 1


def test_an_unwritable_cache_only_costs_the_compile(monkeypatch, tmp_path):
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert Scrubber(env={}, salt=SALT).scrub_text("ip 8.8.4.4").startswith("ip 240.")


def test_precompile_fills_the_cache_from_a_child_process(monkeypatch):
    """A long-running process asks a child to compile, then only loads the database."""
    assert _cache_files() == []
    engine.precompile({"disable": ["email"]})
    (f,) = _cache_files()
    compiled = []
    real = engine._compile_database
    monkeypatch.setattr(
        engine, "_compile_database", lambda *a, **k: compiled.append(1) or real(*a, **k)
    )
    s = Scrubber(config={"disable": ["email"]}, env={}, salt=SALT)
    assert compiled == []  # the child's database, loaded
    assert s.scrub_text("key sk" + "_live_" + "Zq8Xw7Vu6Ts5Rq4Po3Nm2Lk1") == "key [REDACTED:stripe]"
    engine.precompile({"disable": ["email"]})  # already there: nothing to do
    assert _cache_files() == [f]
    engine.precompile(None)  # other rules: their own database
    assert len(_cache_files()) == 2


def test_environment_values_are_searched_or_compiled(monkeypatch):
    """Up to MAX_FIND_LITERALS values are found with bytes.find; more are compiled."""
    compiled = []
    real = engine._compile_database
    monkeypatch.setattr(
        engine, "_compile_database", lambda *a, **k: compiled.append(k) or real(*a, **k)
    )
    n = engine.MAX_FIND_LITERALS + 6
    values = {f"SVC_{i}_TOKEN": f"v4lue-{i:03d}-Zq8Xw7Vu6Ts5" for i in range(n)}
    text = " ".join(values.values())
    few = Scrubber(env=dict(list(values.items())[:3]), salt=SALT)
    assert few.scrub_text(text).startswith("[REDACTED:env] " * 3 + "v4lue-003-")
    assert not [k for k in compiled if k.get("first_id")]  # searched, not compiled
    many = Scrubber(env=values, salt=SALT)
    assert many.scrub_text(text) == " ".join(["[REDACTED:env]"] * n)
    assert [k for k in compiled if k.get("first_id")]  # compiled into a database
