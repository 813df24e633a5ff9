"""The scrub engine: one pass over whole lines, every rule at once, counts per category.

``Scrubber`` compiles the rules of ``secrets.py`` and ``pii.py``, the exact values of the
process's secret-looking environment variables, and the user's ``[scrub]`` config
(``deny``/``allow`` regexes, ``disable`` rule names or categories) once. Per buffer it

1. finds candidate starts with every rule's ``detect`` expression in one Hyperscan pass
   (falling back to Python ``re``, rule by rule, where Hyperscan cannot load);
2. confirms each candidate with the rule's precise ``pattern`` and ``check``;
3. keeps spans JSON-safe: a span never starts or ends inside a JSON escape (``\\n``,
   ``\\"``, ``\\u00e9``), never contains a bare ``"``, never splits a UTF-8 character;
4. drops spans an ``allow`` regex matches, resolves overlaps (higher priority, then
   longer, wins) and writes ``[REDACTED:<category>]`` or a stable pseudonym.

Replacements contain no ``"`` or ``\\``, so a valid JSON line stays valid JSON. Matched
text is never logged, returned or counted by value: only categories, rule names and
positions leave this module.
"""

from __future__ import annotations

import os
import re
import threading
from bisect import bisect_left, insort
from collections.abc import Callable, Mapping
from typing import NamedTuple

from ..errors import ConfigError
from . import pii, secrets
from .rules import MAX_BACK, Rule

try:  # optional accelerator: all detectors in one SIMD pass
    import hyperscan as _hs
except ImportError:  # pragma: no cover - exercised by forcing backend="re" in tests
    _hs = None

# bytes a ``lead`` detector's boundary byte can never be (token bytes)
_TOKEN_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_")
_ESCAPE_LETTERS = frozenset(b'nrtbf/\\"')
_BACKSLASH = 0x5C
_KEPT = -1  # a span claimed by a keep rule or the allowlist: never replaced
_ALNUM = re.compile(rb"[A-Za-z0-9]")


class Finding(NamedTuple):
    """Where something would be redacted. ``line`` is 1-based; ``start``/``end`` are
    0-based columns in that line (characters for ``str`` input, bytes for ``bytes``)."""

    category: str
    rule: str
    line: int
    start: int
    end: int


class _Span(NamedTuple):
    start: int
    end: int
    rule: int  # index into Scrubber._rules


class Scrubber:
    """Compile once, reuse for many buffers (thread-safe for concurrent scrubbing)."""

    def __init__(
        self,
        config: dict | None = None,
        env: Mapping[str, str] | None = os.environ,
        salt: bytes | None = None,
        *,
        backend: str = "auto",
    ) -> None:
        cfg = config or {}
        rules = _static_rules(cfg)
        n_static = len(rules)
        if env is not None and "env" not in _strings(cfg, "disable"):
            rules += secrets.env_rules(env)
        deny = [_compile(p, "deny") for p in _strings(cfg, "deny")]
        self._allow = [_compile(p, "allow") for p in _strings(cfg, "allow")]
        self._rules: list[Rule] = rules + [
            Rule(f"deny[{i}]", "custom", detect=b"", pattern=p.pattern, priority=200)
            for i, p in enumerate(deny)
        ]
        # precise patterns are compiled on first use: most rules never fire, and compiling
        # all of them would cost more than scrubbing a typical transcript
        self._patterns: list[tuple[re.Pattern[bytes], int | None] | None] = [None] * len(rules)
        self._patterns += [(p, p.groupindex.get("s")) for p in deny]
        self._deny = list(range(len(rules), len(self._rules)))  # run by Python re only
        self._replacement = [
            b"[REDACTED:" + r.category.encode() + b"]" if r.kind == "secret" else None
            for r in self._rules
        ]
        self._keep = [r.kind == "keep" for r in self._rules]
        self._trim = [r.kind == "secret" for r in self._rules]
        self._detect = None
        if backend != "re" and _hs is not None:
            self._detect = _hyperscan(rules[:n_static], rules[n_static:])
        if backend == "hyperscan" and self._detect is None:
            raise ConfigError("the hyperscan scrub backend is not available here")
        if self._detect is None:
            self._detect = _python_detector(rules)
        self._salt = salt
        self._lock = threading.Lock()
        self._pseudonyms: dict[tuple[str, bytes], bytes] = {}
        self.counts: dict[str, int] = {}

    # -- public API -----------------------------------------------------------------------

    def scrub_bytes(self, data: bytes) -> bytes:
        """``data`` with every finding replaced; counts are added to ``self.counts``."""
        return self.scrub_counted(data)[0]

    def scrub_counted(self, data: bytes) -> tuple[bytes, dict[str, int]]:
        """``data`` scrubbed, and the counts per category of this call alone (also added
        to ``self.counts``); safe to call from several threads at once."""
        spans = self._spans(data)
        if not spans:
            return data, {}
        out: list[bytes] = []
        pos = 0
        counts: dict[str, int] = {}
        for sp in spans:
            category = self._rules[sp.rule].category
            out.append(data[pos : sp.start])
            rep = self._replacement[sp.rule]
            if rep is None:
                rep = self._pseudonym(category, data[sp.start : sp.end])
            out.append(rep)
            pos = sp.end
            counts[category] = counts.get(category, 0) + 1
        out.append(data[pos:])
        with self._lock:
            for k, v in counts.items():
                self.counts[k] = self.counts.get(k, 0) + v
        return b"".join(out), counts

    def scrub_text(self, text: str) -> str:
        data = text.encode("utf-8", "surrogatepass")
        return self.scrub_bytes(data).decode("utf-8", "surrogatepass")

    def findings(self, text: str | bytes, first_line: int = 1) -> list[Finding]:
        """What ``scrub_*`` would replace, without the matched text. Counts are untouched."""
        is_str = isinstance(text, str)
        data = text.encode("utf-8", "surrogatepass") if is_str else text
        found: list[Finding] = []
        line, line_start, pos, col = first_line, 0, 0, 0
        for sp in self._spans(data):
            nl = data.count(b"\n", pos, sp.start)
            if nl:
                line += nl
                line_start = data.rfind(b"\n", pos, sp.start) + 1
                pos, col = line_start, 0
            a, b = sp.start - line_start, sp.end - line_start
            if is_str:  # columns in characters, counted on from the previous finding
                col += _chars(data[pos : sp.start])
                a, b = col, col + _chars(data[sp.start : sp.end])
            pos = sp.start
            rule = self._rules[sp.rule]
            found.append(Finding(rule.category, rule.name, line, a, b))
        return found

    # -- internals ------------------------------------------------------------------------

    def _spans(self, data: bytes) -> list[_Span]:
        """The spans to replace, in order of position, none overlapping."""
        cands: list[tuple[int, int, int, int]] = []  # (-priority, -length, start, rule)
        append = cands.append
        rules, patterns, allow = self._rules, self._patterns, self._allow
        n = len(data)
        for i, starts in self._detect(data).items():  # rule by rule: its constants stay local
            rule = rules[i]
            pat, group = patterns[i] or self._compile_pattern(i)
            match, check, rank = pat.match, rule.check, -rule.priority
            lead, back = rule.lead, rule.back
            for p in starts:
                if lead:
                    if p < n and data[p] not in _TOKEN_BYTES:
                        p += 1
                elif back:
                    lo = max(0, p - MAX_BACK)
                    while p > lo and data[p - 1] in back:
                        p -= 1
                if p and data[p - 1] == _BACKSLASH:
                    p = _after_escape(data, p)
                m = match(data, p)
                if m is None:
                    continue
                a, b = m.span(group) if group else m.span()
                if check is None or check(data[a:b]):
                    append((rank, a - b, a, i))
        for i in self._deny:
            pat, g = patterns[i]
            for m in pat.finditer(data):
                a, b = m.span(g) if g else m.span()
                cands.append((-rules[i].priority, a - b, a, i))
        if not cands:
            return []
        cands.sort()
        starts: list[int] = []
        taken: dict[int, tuple[int, int]] = {}  # start -> (end, rule or _KEPT)
        for _, neglen, a, i in cands:
            a, b = _json_safe(data, a, a - neglen)
            if a >= b:
                continue
            free = _free(starts, taken, a, b)
            if free != [(a, b)]:
                # overlaps a stronger span: a secret still loses the parts around it
                # (``PASSWORD=x<glued>API_KEY=y``); a pseudonym needs its whole value,
                # and what a keep rule or the allowlist claimed stays whole
                if not self._trim[i] or _touches_kept(starts, taken, a, b):
                    continue
                free = [g for g in (_json_safe(data, *g) for g in free) if _ALNUM.search(data, *g)]
            if self._keep[i] or (allow and any(p.search(data[a:b]) for p in allow)):
                i = _KEPT  # claimed, so no weaker rule fires inside it, but left as is
            for fa, fb in free:
                insort(starts, fa)
                taken[fa] = (fb, i)
        return [_Span(a, *taken[a]) for a in starts if taken[a][1] != _KEPT]

    def _compile_pattern(self, i: int) -> tuple[re.Pattern[bytes], int | None]:
        pat = re.compile(self._rules[i].pattern)
        self._patterns[i] = got = (pat, pat.groupindex.get("s"))
        return got

    def _pseudonym(self, category: str, value: bytes) -> bytes:
        key = (category, value)
        got = self._pseudonyms.get(key)
        if got is None:
            if self._salt is None:
                with self._lock:
                    if self._salt is None:
                        self._salt = pii.load_salt()
            got = pii.pseudonym(category, value, self._salt)
            if len(self._pseudonyms) > 100_000:
                self._pseudonyms.clear()
            self._pseudonyms[key] = got
        return got


def _free(
    starts: list[int], taken: dict[int, tuple[int, int]], a: int, b: int
) -> list[tuple[int, int]]:
    """The parts of [a, b) not covered by spans already taken."""
    k = bisect_left(starts, a)
    if k and taken[starts[k - 1]][0] > a:
        k -= 1
    out, pos = [], a
    while k < len(starts) and starts[k] < b:
        s, e = starts[k], taken[starts[k]][0]
        if s > pos:
            out.append((pos, s))
        pos = max(pos, e)
        k += 1
    if pos < b:
        out.append((pos, b))
    return out


def _touches_kept(starts: list[int], taken: dict[int, tuple[int, int]], a: int, b: int) -> bool:
    k = max(0, bisect_left(starts, a) - 1)
    while k < len(starts) and starts[k] < b:
        if taken[starts[k]][0] > a and taken[starts[k]][1] == _KEPT:
            return True
        k += 1
    return False


# -- detection backends -------------------------------------------------------------------


MAX_FIND_LITERALS = 64  # more environment values than this are compiled into a database


Hits = dict[int, set[int]]  # rule id -> candidate starts


def _hyperscan(static: list[Rule], env: list[Rule]) -> Callable[[bytes], Hits] | None:
    """All detectors in Hyperscan (start-of-match reporting): the fixed rules in one
    database loaded from the compile cache when it can be; the environment's values (exact
    text, never written anywhere) found with ``bytes.find`` when there are few of them —
    faster than compiling them, and it keeps Hyperscan's compiler out of memory — else in
    a small database compiled here. Rule ids are list positions (static first, then env)."""
    first = len(static)
    literals = [(first + i, r.literal) for i, r in enumerate(env) if r.literal]
    if len(literals) != len(env) or len(literals) > MAX_FIND_LITERALS:
        literals = []
    try:
        dbs = [_static_database(static)]
        if env and not literals:
            dbs.append(_compile_database(env, first_id=first))
    except _hs.error:  # pragma: no cover - a CPU or build Hyperscan cannot serve
        return None
    local = threading.local()

    def detect(data: bytes) -> Hits:
        scratches = getattr(local, "scratches", None)
        if scratches is None:
            scratches = local.scratches = [_hs.Scratch(db) for db in dbs]
        hits: Hits = {}

        def on_match(i: int, a: int, b: int, flags: int, ctx: object) -> None:
            starts = hits.get(i)
            if starts is None:
                hits[i] = {a}
            else:
                starts.add(a)  # one start can end several matches

        if data:
            for db, scratch in zip(dbs, scratches, strict=True):
                db.scan(data, match_event_handler=on_match, scratch=scratch)
            for i, text in literals:
                at = data.find(text)
                while at >= 0:
                    on_match(i, at, 0, 0, None)
                    at = data.find(text, at + 1)
        return hits

    return detect


def _compile_database(rules: list[Rule], first_id: int = 0):
    db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    db.compile(
        expressions=[r.detect for r in rules],
        ids=list(range(first_id, first_id + len(rules))),
        elements=len(rules),
        flags=[_hs.HS_FLAG_SOM_LEFTMOST] * len(rules),
    )
    return db


_CACHE_MAGIC = b"tracebox-hsdb-1\n"


def _static_rules(cfg: dict) -> list[Rule]:
    """The fixed rules in force: every built-in one minus what ``[scrub] disable`` names."""
    disabled = set(_strings(cfg, "disable"))
    return [
        r
        for r in (*secrets.RULES, *pii.RULES)
        if r.name not in disabled and r.category not in disabled
    ]


def precompile(config: dict | None = None) -> None:
    """Fill the compile cache from a short-lived child process if it has no database for
    these rules yet, so a long-running process (the proxy's shipper) never maps
    Hyperscan's compiler: ~8 MiB it would keep for life. Best effort: if the child fails,
    the caller's scrubber compiles as usual. The child gets no environment values."""
    import json
    import subprocess
    import sys

    if _hs is None or os.path.exists(_cache_path(_static_rules(config or {}))):
        return
    code = "import json,sys; from tracebox.scrub.engine import Scrubber as S; "
    code += "S(config=json.loads(sys.argv[1]), env=None)"
    try:
        subprocess.run(
            [sys.executable, "-c", code, json.dumps(config or {})],
            env={k: v for k, v in os.environ.items() if k in _CHILD_ENV},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError):
        pass


# what the compiling child needs to find Python, tracebox and the cache dir (no secrets)
_CHILD_ENV = ("PATH", "HOME", "XDG_CACHE_HOME", "PYTHONPATH", "VIRTUAL_ENV", "LANG")


def _cache_path(rules: list[Rule]) -> str:
    """Where the compiled database of ``rules`` is cached: the key hashes everything the
    database depends on (expressions and their order, flags, Hyperscan version, machine)."""
    import hashlib
    import platform

    from ..dirs import user_dir

    h = hashlib.sha256(_CACHE_MAGIC)
    for part in (
        getattr(_hs, "__version__", "?"),
        platform.machine(),
        str(_hs.HS_FLAG_SOM_LEFTMOST),
    ):
        h.update(part.encode() + b"\0")
    for r in rules:
        h.update(r.detect + b"\0")
    return os.path.join(user_dir("cache", "scrub"), f"{h.hexdigest()[:32]}.hsdb")


def _static_database(rules: list[Rule]):
    """The compiled database of the fixed rules, from ``<cache dir>/scrub/<key>.hsdb``
    when a valid one is there (compiling costs ~0.1-0.2 s, loading well under 1 ms).

    The key hashes everything the database depends on: the detect expressions and their
    order, the flags, the Hyperscan module version and the machine architecture. The
    file holds a magic line, the SHA-256 of the serialized database, then the database;
    a file that fails the check, or a database this CPU cannot run, is compiled again
    and replaced. Only fixed rule text goes in; environment values never do. A cache
    that cannot be read or written only costs the compile."""
    import hashlib

    path = _cache_path(rules)
    try:
        with open(path, "rb") as f:
            blob = f.read(64 << 20)
        head, digest, body = (
            blob[: len(_CACHE_MAGIC)],
            blob[len(_CACHE_MAGIC) : len(_CACHE_MAGIC) + 32],
            blob[len(_CACHE_MAGIC) + 32 :],
        )
        if head == _CACHE_MAGIC and hashlib.sha256(body).digest() == digest:
            db = _hs.loadb(body, mode=_hs.HS_MODE_BLOCK)
            _hs.Scratch(db)  # refuses a database built for other CPU features
            return db
    except (OSError, _hs.error):
        pass
    db = _compile_database(rules)
    body = _hs.dumpb(db)
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(_CACHE_MAGIC + hashlib.sha256(body).digest() + body)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    return db


def _python_detector(rules: list[Rule]) -> Callable[[bytes], Hits]:
    """The same detectors with Python ``re``, one pass per rule (slower, always there).
    Every start is reported, overlapping ones too, as Hyperscan reports them."""
    searches = [re.compile(r.detect).search for r in rules]

    def detect(data: bytes) -> Hits:
        hits: Hits = {}
        for i, search in enumerate(searches):
            m = search(data)
            while m is not None:
                a = m.start()
                hits.setdefault(i, set()).add(a)
                m = search(data, a + 1)
        return hits

    return detect


# -- JSON safety --------------------------------------------------------------------------


def _escaped(data: bytes, i: int) -> bool:
    """Is the byte at ``i`` preceded by an odd number of backslashes?"""
    k = i
    while k > 0 and data[k - 1] == _BACKSLASH:
        k -= 1
    return (i - k) % 2 == 1


def _escape_around(data: bytes, i: int) -> tuple[int, int] | None:
    """The JSON escape sequence that strictly contains position ``i`` (between bytes)."""
    for e in range(max(0, i - 5), i):
        if data[e] == _BACKSLASH and not _escaped(data, e):
            length = 6 if data[e + 1 : e + 2] == b"u" else 2
            if e < i < e + length:
                return e, e + length
    return None


def _after_escape(data: bytes, p: int) -> int:
    """``p`` moved past the escape sequence it points into, if any."""
    if p and data[p - 1] == _BACKSLASH and _escaped(data, p):
        return p + 5 if data[p : p + 1] == b"u" else p + 1
    return p


_HIGH_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}")
_LOW_SURROGATE = re.compile(rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def _json_safe(data: bytes, a: int, b: int) -> tuple[int, int]:
    """Shrink [a, b) so that removing it cannot break a JSON string or a UTF-8 character."""
    esc = _escape_around(data, a)
    if esc:
        a = esc[1]
    esc = _escape_around(data, b)
    if esc:
        b = esc[0]
    if _LOW_SURROGATE.match(data, a) and _HIGH_SURROGATE.fullmatch(data, max(0, a - 6), a):
        a -= 6  # never split a surrogate pair (one character, two escapes)
    if _LOW_SURROGATE.match(data, b) and _HIGH_SURROGATE.fullmatch(data, max(0, b - 6), b):
        b += 6
    q = data.find(b'"', a, b)
    while q != -1:
        if not _escaped(data, q):
            b = q
            break
        q = data.find(b'"', q + 1, b)
    n = len(data)
    while a < b and 0x80 <= data[a] < 0xC0:
        a += 1
    while b > a and b < n and 0x80 <= data[b] < 0xC0:
        b -= 1
    return a, b


# -- config -------------------------------------------------------------------------------


def _strings(cfg: dict, key: str) -> list[str]:
    v = cfg.get(key, [])
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ConfigError(f"[scrub] {key} must be a list of strings")
    return v


def _compile(pattern: str, key: str) -> re.Pattern[bytes]:
    try:
        return re.compile(pattern.encode("utf-8"))
    except re.error as e:
        raise ConfigError(f"[scrub] {key}: invalid regex {pattern!r}: {e}") from None


def _chars(b: bytes) -> int:
    return len(b.decode("utf-8", "surrogateescape"))
