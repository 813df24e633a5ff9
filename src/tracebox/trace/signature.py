"""Failure signatures: what a failing test/command run printed, and whether a later run
reproduces it.

Pure functions, stdlib only, no I/O. ``extract(output, command, exit_code)`` turns the
combined output of one run into a :class:`Signature`:

* ``framework``: ``"pytest"``, ``"unittest"``, ``"go"``, ``"jest"``, ``"vitest"``,
  ``"mocha"``, ``"cargo"``, ``"generic"`` (unrecognized output of a run that failed) or
  ``None`` (nothing recognizable). Detected from the output, the command being a hint;
* ``failed``: the failing test ids exactly as the framework prints them
  (``tests/test_calc.py::test_add``, ``test_add (tests.test_calc.CalcTest.test_add)``,
  ``TestAdd``, ``calc › adds numbers``, ``tests::adds``, ...);
* ``errors``: the first line of each error as printed (``AssertionError: assert 2 == 3``,
  ``panic: runtime error: ...``), at most :data:`MAX_ERRORS`, each at most
  :data:`MAX_LINE` characters;
* ``summary``: the framework's own summary line (``1 failed, 2 passed in 0.03s``,
  ``FAILED (failures=1)``, ``FAIL\\tgithub.com/x/y\\t0.01s``, ...);
* ``exit_code`` as given.

``compare(expected, output, exit_code)`` parses a later run the same way and gives a
verdict: ``"reproduces"`` (the run failed and one of the expected failing tests fails
again; with no failing test ids, one of the expected errors appears again),
``"fixed"`` (exit code 0, tests actually ran, none of the expected ones fails) or
``"inconclusive"`` (anything else: a different failure, nothing ran, no exit code), with
an evidence dict that says why.

Errors are matched after :func:`normalize`: ANSI codes stripped, whitespace collapsed,
memory addresses, durations and temporary paths replaced by placeholders; an expected
error matches a found one when both normalize to the same line or the expected one is a
prefix of the found one (pytest truncates its short summary lines).

Input is untrusted and may be huge: ANSI codes, binary junk and CRLF are cleaned first,
only the last :data:`SCAN_CHARS` characters are scanned, and no regex can backtrack
over a long line (ids are cut out with ``str`` methods where one would).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "FRAMEWORKS",
    "MAX_ERRORS",
    "MAX_FAILED",
    "MAX_LINE",
    "SCAN_CHARS",
    "TEST_FRAMEWORKS",
    "Signature",
    "compare",
    "extract",
    "normalize",
]

TEST_FRAMEWORKS = ("pytest", "unittest", "go", "jest", "vitest", "mocha", "cargo")
FRAMEWORKS = (*TEST_FRAMEWORKS, "generic")
MAX_ERRORS = 20  # error lines kept in a signature
MAX_GENERIC_ERRORS = 5  # ... for output of no known framework
MAX_FAILED = 200  # failing test ids kept
MAX_LINE = 500  # characters of one id, error or summary
MAX_EVIDENCE = 50  # entries of one evidence list
SCAN_CHARS = 2_000_000  # only the tail of the output is scanned
_SCAN_LINE = 4_000  # characters of one line looked at
_SCAN_LINES = 200_000  # ... and lines

Verdict = str  # "reproduces" | "fixed" | "inconclusive"


@dataclass(frozen=True, slots=True)
class Signature:
    """The failure signature of one run (see the module docstring)."""

    framework: str | None
    failed: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    summary: str | None = None
    exit_code: int | None = None

    def to_dict(self) -> dict:
        """A JSON-safe dict (lists, not tuples)."""
        return {
            "framework": self.framework,
            "failed": list(self.failed),
            "errors": list(self.errors),
            "summary": self.summary,
            "exit_code": self.exit_code,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Signature:
        """The signature of ``d``; wrong or missing fields become defaults, never raises."""
        if not isinstance(d, dict):
            return cls(None)
        try:
            fw = dict.get(d, "framework")
            summary = dict.get(d, "summary")
            return cls(
                framework=fw[:32] if isinstance(fw, str) and fw.strip() else None,
                failed=_str_list(dict.get(d, "failed"), MAX_FAILED),
                errors=_str_list(dict.get(d, "errors"), MAX_ERRORS),
                summary=summary[:MAX_LINE] if isinstance(summary, str) and summary else None,
                exit_code=_int_or_none(dict.get(d, "exit_code")),
            )
        except Exception:  # a hostile subclass of list or str: nothing worth keeping
            return cls(None)


def _str_list(v: object, limit: int) -> tuple[str, ...]:
    if not isinstance(v, list | tuple):
        return ()
    out: list[str] = []
    for x in v[: limit * 4]:
        if isinstance(x, str) and x.strip():
            out.append(x[:MAX_LINE])
            if len(out) >= limit:
                break
    return tuple(out)


def _int_or_none(v: object) -> int | None:
    if isinstance(v, bool) or not isinstance(v, int):
        return None
    return int(v) if -(2**63) <= v < 2**63 else None


# --------------------------------------------------------------------------- cleaning

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colors, cursor moves
    r"|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?"  # OSC: titles, hyperlinks
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_JUNK = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]+")


def _clean(output: object) -> str:
    """The tail of ``output`` as plain text: no ANSI codes, no junk, ``\\n`` line ends."""
    if isinstance(output, bytes | bytearray | memoryview):
        output = bytes(output[-SCAN_CHARS * 2 :]).decode("utf-8", "replace")
    if not isinstance(output, str):
        return ""
    if len(output) > SCAN_CHARS:
        output = output[-SCAN_CHARS:]
        nl = output.find("\n")
        if 0 <= nl < 10_000:
            output = output[nl + 1 :]
    text = _ANSI.sub("", output).replace("\r\n", "\n")
    if "\r" in text:  # "progress\rfinal": keep what a terminal shows
        text = "\n".join(_overwritten(ln) for ln in text.split("\n"))
    return _JUNK.sub("", text)


def _overwritten(line: str) -> str:
    if "\r" not in line:
        return line
    parts = [x for x in line.split("\r") if x.strip()]
    return parts[-1] if parts else ""


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    return [ln[:_SCAN_LINE].rstrip() for ln in lines[-_SCAN_LINES:]]


def _cap(s: str) -> str:
    s = s.strip()
    return s if len(s) <= MAX_LINE else s[: MAX_LINE - 3] + "..."


# ---------------------------------------------------------------------- normalization

_WS = re.compile(r"\s+")
_NORM = [  # after whitespace is collapsed (no run of spaces to backtrack over)
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "0x<addr>"),
    (re.compile(r"\(\s*\d+(?:\.\d+)?\s*(?:ns|us|µs|ms|s|sec|m)\s*\)"), "(<dur>)"),
    (re.compile(r"\bin \d+(?:\.\d+)?\s*(?:ns|us|µs|ms|s|sec|seconds)\b"), "in <dur>"),
    (re.compile(r"\b\d+\.\d+\s?(?:ms|s)\b|\b\d+\s?ms\b"), "<dur>"),
    (
        re.compile(
            r"(?:/private)?/var/folders/[^\s'\"`,;:)\]}>]*"
            r"|/(?:tmp|var/tmp|dev/shm)/[^\s'\"`,;:)\]}>]*"
            r"|[A-Za-z]:\\Users\\[^\\\s]+\\AppData\\Local\\Temp\\[^\s'\"`,;)\]}>]*"
            r"|(?:^|(?<=[\s'\"`(\[{<=]))[^\s'\"`(\[{<=]*pytest-of-[^\s'\"`,;:)\]}>]*"
        ),
        "<tmp>",
    ),
    (re.compile(r"\s*\[recovered[^\]]*\]$"), ""),  # go: "panic: ... [recovered]"
    (re.compile(r"(?:\.\.\.|…)$"), ""),  # truncated by the framework
]


def normalize(line: str) -> str:
    """``line`` with what changes from run to run replaced by placeholders."""
    s = _JUNK.sub("", _ANSI.sub("", line if isinstance(line, str) else ""))
    s = _WS.sub(" ", s[:_SCAN_LINE]).strip()
    for rx, rep in _NORM:
        s = rx.sub(rep, s)
    return s.strip()


def _error_matches(expected: str, found: str) -> bool:
    """Normalized equality, or the expected error a prefix of the found one."""
    if not expected:
        return False
    return found == expected or (len(expected) >= 8 and found.startswith(expected))


_UNITTEST_ID = re.compile(r"^(\w+) \(([\w.]+)\)(.*)$")


def _id_key(test_id: str) -> str:
    """One spelling per test: whitespace, unittest's two id styles, durations."""
    s = re.sub(r"\s+", " ", test_id).strip()
    m = _UNITTEST_ID.match(s)
    if m:  # "test_x (mod.Class.test_x)" (3.11+) and "test_x (mod.Class)" (older)
        name, where, rest = m.groups()
        if not where.endswith("." + name):
            where = f"{where}.{name}"
        return where + rest
    return s


def _id_matches(expected: str, found: str) -> bool:
    a, b = _id_key(expected), _id_key(found)
    if a == b:
        return True
    if "::" in a and "::" in b:  # pytest ids seen from another rootdir
        return a.endswith("/" + b) or b.endswith("/" + a)
    if ("::" in a) != ("::" in b):  # a pytest id and a bare FAILURES block name
        full, bare = (a, b) if "::" in a else (b, a)
        return "/" not in bare and ".".join(full.split("::")[1:]) == bare
    return False


# -------------------------------------------------------------------------- detection

_M = re.MULTILINE
# (pattern, weight): a framework needs a score of 3 (or the command as a hint) to be chosen.
# These run over the whole text: [ \t], never \s, or runs of blank lines get quadratic.
_MARKERS: dict[str, list[tuple[re.Pattern[str], int]]] = {
    "pytest": [
        (re.compile(r"^=+ test session starts =+$", _M), 3),
        (re.compile(r"^=+ short test summary info =+$", _M), 3),
        (re.compile(r"^=+ (?:FAILURES|ERRORS) =+$", _M), 3),
        (re.compile(r"^(?:FAILED|ERROR) \S+::\S", _M), 2),
        (re.compile(r"^platform \S+ -- Python \S+, pytest-", _M), 3),
        (re.compile(r"^collected \d+ items?\b", _M), 2),
        (
            re.compile(r"^=+ (?:\d+ [a-z]+(?:, \d+ [a-z]+)*|no tests ran) in \d[\d.]*s\b.*=+$", _M),
            3,
        ),
        (re.compile(r"^(?:\d+ [a-z]+(?:, \d+ [a-z]+)*|no tests ran) in \d[\d.]*s\b", _M), 2),
        (re.compile(r"^E {3}\S", _M), 1),
    ],
    "unittest": [
        (re.compile(r"^Ran \d+ tests? in \d[\d.]*s$", _M), 3),
        (re.compile(r"^(?:FAIL|ERROR): \w+ \([\w.]+\)", _M), 2),
        (re.compile(r"^FAILED \((?:failures|errors|unexpected)=\d+[^)]*\)$", _M), 2),
        (re.compile(r"^NO TESTS RAN$", _M), 2),
    ],
    "go": [
        (re.compile(r"^[ \t]*--- (?:FAIL|PASS|SKIP): \S+ \(\d", _M), 3),
        (
            re.compile(
                r"^(?:FAIL|ok)[ \t]+\S+[ \t]+(?:\d[\d.]*s|\(cached\)|\[(?:build|setup) failed\])",
                _M,
            ),
            3,
        ),
        (re.compile(r"^=== (?:RUN|CONT|PAUSE)[ \t]+\S+", _M), 3),
        (re.compile(r"^\?[ \t]+\S+[ \t]+\[no test files\]", _M), 3),
        (re.compile(r"^goroutine \d+ \[running\]:$", _M), 1),
    ],
    "cargo": [
        (re.compile(r"^test result: (?:ok|FAILED)\. \d+ passed", _M), 3),
        (re.compile(r"^running \d+ tests?$", _M), 1),
        (re.compile(r"^test \S+ \.\.\. (?:ok|FAILED|ignored)", _M), 2),
        (re.compile(r"^---- \S+ stdout ----$", _M), 2),
        (re.compile(r"^[ \t]*Running (?:unittests )?\S+ \(target/", _M), 3),
        (re.compile(r"^error: could not compile `", _M), 3),
        (re.compile(r"^error\[E\d{4}\]: ", _M), 1),
    ],
    "jest": [
        (re.compile(r"^Tests:[ \t]+.*\d+ total$", _M), 3),
        (re.compile(r"^Test Suites:[ \t]+.*\d+ total$", _M), 3),
        (re.compile(r"^[ \t]*● .+ › ", _M), 2),
        (re.compile(r"^[ \t]*(?:FAIL|PASS)[ \t]+\S+\.(?:test|spec)\.[cm]?[jt]sx?$", _M), 2),
        (re.compile(r"^No tests found, exiting with code \d", _M), 3),
    ],
    "vitest": [
        (re.compile(r"^[ \t]*Test Files[ \t]+\d+ (?:failed|passed)", _M), 3),
        (re.compile(r"^[ \t]*Tests[ \t]+\d+ (?:failed|passed|skipped)", _M), 2),
        (re.compile(r"^[ \t]*RUN[ \t]+v\d+\.\d+", _M), 2),
        (re.compile(r"^[ \t]*FAIL[ \t]+\S+ > ", _M), 2),
        (re.compile(r"(?<!⎯)⎯+ Failed (?:Tests|Suites) \d+ ⎯"), 3),
        (re.compile(r"^No test files found, exiting with code \d", _M), 3),
    ],
    "mocha": [
        (re.compile(r"^[ \t]+\d+ passing \(\d+(?:\.\d+)?m?s\)$", _M), 3),
        (re.compile(r"^[ \t]+\d+ failing$", _M), 2),
        (re.compile(r"^[ \t]+\d+ pending$", _M), 1),
    ],
}

_COMMAND_HINTS = [
    ("pytest", re.compile(r"(?:^|[\s/;&|(])(?:py\.test|pytest)(?:\s|$|[;&|)])|-m\s+pytest\b")),
    ("unittest", re.compile(r"-m\s+unittest\b|\bunittest\b")),
    ("go", re.compile(r"\bgo\s+test\b|\bgotestsum\b")),
    ("cargo", re.compile(r"\bcargo\s+(?:\+\S+\s+)?(?:test|nextest)\b")),
    ("vitest", re.compile(r"\bvitest\b")),
    ("jest", re.compile(r"\bjest\b")),
    ("mocha", re.compile(r"\bmocha\b")),
]


def _hint(command: str | None) -> str | None:
    if not isinstance(command, str):
        return None
    command = command[:10_000]
    for name, rx in _COMMAND_HINTS:
        if rx.search(command):
            return name
    return None


def _detect(text: str, command: str | None) -> str | None:
    hint = _hint(command)
    best, best_score = None, 0
    for name, patterns in _MARKERS.items():
        score = 0
        for rx, weight in patterns:
            hits = 0
            for _ in rx.finditer(text):
                hits += 1
                if hits >= 3:
                    break
            score += hits * weight
        if name == hint:
            score += 3
        if score > best_score:
            best, best_score = name, score
    return best if best_score >= 3 else None


# ---------------------------------------------------------------------------- parsing


@dataclass(slots=True)
class _Parsed:
    failed: list[str]
    errors: list[str]
    summary: str | None = None
    ran: bool | None = None  # some test passed or failed / clearly nothing ran / unknown
    why_not_ran: str | None = None


def _add(seq: list[str], item: str, limit: int) -> None:
    item = _cap(item)
    if item and item not in seq and len(seq) < limit:
        seq.append(item)


_COUNTS = re.compile(r"(\d+) (passed|passing|failed|failing|errors?|skipped|deselected|total)")


def _counts(s: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for n, word in _COUNTS.findall(s or ""):
        word = {"passing": "passed", "failing": "failed", "errors": "error"}.get(word, word)
        out[word] = out.get(word, 0) + int(n)
    return out


# pytest ---------------------------------------------------------------------------

_PT_SECTION = re.compile(r"^=+ (.+?) =+$")
_PT_BLOCK = re.compile(r"^_{3,} (.+?) _{3,}$")
_PT_E = re.compile(r"^E {3,}(\S.*)$")
_PT_E_PREFIX = re.compile(r"^E {3,}")
# ids are cut out with str methods: a regex with two open-ended parts backtracks on junk
_PT_SHORT = re.compile(r"(?:\[gw\d+\] \[ *\d+%\] )?(FAILED|ERROR) (?=\S)")
_PT_VERBOSE_TAIL = re.compile(r" (?:FAILED|ERROR)(?: +\[ *\d+%\])?$")


def _pytest_short(ln: str) -> tuple[str, str | None] | None:
    """``FAILED id - message`` -> (id, message)."""
    m = _PT_SHORT.match(ln)
    if not m:
        return None
    test_id, sep, msg = ln[m.end() :].partition(" - ")
    return test_id.strip(), (msg.strip() or None) if sep else None


def _pytest_verbose(ln: str) -> str | None:
    """The id of ``FAILED path::test`` (outside the summary) or ``path::test FAILED [ 50%]``."""
    short = _pytest_short(ln)
    if short:
        test_id = short[0]
    else:
        m = _PT_VERBOSE_TAIL.search(ln)
        if not m:
            return None
        test_id = ln[: m.start()]
    first = test_id.split(" ", 1)[0]
    return test_id if "::" in first and not first.startswith("::") else None


_PT_COUNTS = r"(?:\d+ [a-z]+(?:, \d+ [a-z]+)*|no tests ran) in \d[\d.]*s\b"
_PT_SUMMARY_EQ = re.compile(rf"^=+ ({_PT_COUNTS}.*?) =+$")
_PT_SUMMARY_Q = re.compile(rf"^({_PT_COUNTS}.*)$")
_PT_LINE_TB = re.compile(r"^\S+:\d+: (.+)$")


def _parse_pytest(lines: list[str], exit_code: int | None) -> _Parsed:
    p = _Parsed([], [])
    section = ""
    block: str | None = None
    block_has_e = False
    block_names: list[str] = []
    short_msgs: list[str] = []
    stray_e: list[str] = []
    prev_e = False
    collected_zero = False
    for ln in lines:
        m = _PT_SECTION.match(ln)
        if m:
            sm = _PT_SUMMARY_EQ.match(ln)
            if sm:
                p.summary = sm.group(1)
            else:
                section, block = m.group(1).lower(), None
            prev_e = False
            continue
        if section in ("failures", "errors"):
            b = _PT_BLOCK.match(ln)
            if b:
                block, block_has_e = b.group(1), False
                block_names.append(block)
                prev_e = False
                continue
            e = _PT_E.match(ln)
            if e:
                if block is not None and not block_has_e:
                    _add(p.errors, e.group(1), MAX_ERRORS)
                    block_has_e = True
                elif block is None and not prev_e:
                    _add(p.errors, e.group(1), MAX_ERRORS)
                prev_e = True
                continue
            prev_e = False
            if block is None and (t := _PT_LINE_TB.match(ln)):  # --tb=line
                _add(p.errors, t.group(1), MAX_ERRORS)
            continue
        if section.startswith("short test summary"):
            short = _pytest_short(ln)
            if short:
                _add(p.failed, short[0], MAX_FAILED)
                if short[1]:
                    short_msgs.append(short[1])
                continue
        test_id = _pytest_verbose(ln) if "::" in ln else None
        if test_id:
            _add(p.failed, test_id, MAX_FAILED)
            continue
        e = _PT_E.match(ln)
        if e:  # conftest import errors and the like, outside any section
            if not prev_e:
                stray_e.append(e.group(1))
            prev_e = True
            continue
        prev_e = False
        if ln.startswith("collected 0 items"):
            collected_zero = True
        q = _PT_SUMMARY_Q.match(ln)
        if q:
            p.summary = q.group(1)
    if not p.errors:  # --tb=no, or an error outside any test
        for msg in stray_e + short_msgs:
            _add(p.errors, msg, MAX_ERRORS)
    if not p.failed:
        for name in block_names:
            _add(p.failed, name, MAX_FAILED)
    c = _counts(p.summary)
    if exit_code == 5 or collected_zero or (p.summary or "").startswith("no tests ran"):
        p.ran, p.why_not_ran = False, "no tests ran"
    elif c.get("passed", 0) + c.get("failed", 0) > 0:
        p.ran = True
    elif p.summary:
        p.ran, p.why_not_ran = False, f"no test passed or failed ({p.summary})"
    return p


# unittest -------------------------------------------------------------------------

_UT_HEAD = re.compile(r"^(?:FAIL|ERROR|UNEXPECTED SUCCESS): (\S.*)$")
_UT_VERBOSE = re.compile(r"^(\w+ \([\w.]+\).*?) \.\.\. (?:FAIL|ERROR)$")
_UT_RAN = re.compile(r"^Ran (\d+) tests? in ")
_UT_RESULT = re.compile(r"^(?:OK|NO TESTS RAN)(?: \([^()]*\))?$|^FAILED \([^()]*\)$")


def _exception_line(block: list[str]) -> str | None:
    """The exception line of the last traceback in ``block``."""
    start = None
    for i, ln in enumerate(block):
        if ln.startswith("Traceback (most recent call last):"):
            start = i
    if start is None:
        return None
    for ln in block[start + 1 :]:
        if ln and not ln[0].isspace():
            return ln
    return None


def _parse_unittest(lines: list[str], exit_code: int | None) -> _Parsed:
    p = _Parsed([], [])
    block: list[str] | None = None
    ran: int | None = None
    verbose_ids: list[str] = []

    def close() -> None:
        if block:
            exc = _exception_line(block)
            if exc:
                _add(p.errors, exc, MAX_ERRORS)

    for i, ln in enumerate(lines):
        m = _UT_HEAD.match(ln)
        if m and i > 0 and lines[i - 1].startswith("=" * 10):
            close()
            block = []
            _add(p.failed, m.group(1), MAX_FAILED)
            continue
        if ln.startswith("=" * 10) or (
            ln.startswith("-" * 10) and i + 1 < len(lines) and _UT_RAN.match(lines[i + 1])
        ):
            close()
            block = None
            continue
        if block is not None:
            if len(block) < 5_000:
                block.append(ln)
            continue
        r = _UT_RAN.match(ln)
        if r:
            ran = int(r.group(1))
            continue
        r = _UT_RESULT.match(ln)
        if r and ran is not None:
            p.summary = ln.strip()
            continue
        v = _UT_VERBOSE.match(ln)
        if v:
            verbose_ids.append(v.group(1))
    close()
    if not p.failed:
        for t in verbose_ids:
            _add(p.failed, t, MAX_FAILED)
    if ran == 0 or p.summary == "NO TESTS RAN" or exit_code == 5:
        p.ran, p.why_not_ran = False, "no tests ran (Ran 0 tests)"
    elif ran:
        p.ran = True
    return p


# go test --------------------------------------------------------------------------

_GO_RESULT = re.compile(r"^\s*--- (FAIL|PASS|SKIP): (\S+) \(")
_GO_RUN = re.compile(r"^=== (?:RUN|CONT|PAUSE|NAME)\s+(\S+)")
_GO_LOG = re.compile(r"^\s+(\S+\.go:\d+: .*)$")
_GO_PKG = re.compile(r"^(FAIL|ok)\s+(\S+)(?:\s+(.*))?$")
_GO_NOFILES = re.compile(r"^\?\s+\S+\s+\[no test files\]")
_GO_BUILD = re.compile(r"^(\S+\.go:\d+(?::\d+)?: .+)$")
_GO_PANIC = re.compile(r"^(panic: .+|fatal error: .+)$")


def _parse_go(lines: list[str], exit_code: int | None) -> _Parsed:
    p = _Parsed([], [])
    logs: dict[str, list[str]] = {}
    current: str | None = None
    panics: list[str] = []
    build: list[str] = []
    fail_pkgs: list[str] = []
    ok_pkgs: list[str] = []
    ran_any = False
    no_files = False
    no_files_line: str | None = None
    for ln in lines:
        m = _GO_RESULT.match(ln)
        if m:
            current = m.group(2)
            if m.group(1) == "FAIL":
                _add(p.failed, current, MAX_FAILED)
            if m.group(1) in ("FAIL", "PASS"):
                ran_any = True
            continue
        m = _GO_RUN.match(ln)
        if m:
            current = m.group(1)
            continue
        m = _GO_LOG.match(ln)
        if m and current is not None:
            lst = logs.setdefault(current, [])
            if len(lst) < MAX_ERRORS:
                lst.append(m.group(1))
            continue
        m = _GO_PANIC.match(ln)
        if m:
            panics.append(m.group(1))
            continue
        m = _GO_PKG.match(ln)
        if m:
            rest = m.group(3) or ""
            if m.group(1) == "FAIL":
                fail_pkgs.append(ln.strip())
            else:
                ok_pkgs.append(ln.strip())
                if "[no tests to run]" not in rest:
                    ran_any = True
            continue
        if _GO_NOFILES.match(ln):
            no_files = True
            no_files_line = no_files_line or ln.strip()
            continue
        m = _GO_BUILD.match(ln)
        if m:
            build.append(m.group(1))
    for msg in panics:
        _add(p.errors, msg, MAX_ERRORS)
    for t in p.failed:
        for msg in logs.get(t, ()):
            _add(p.errors, msg, MAX_ERRORS)
    for msg in build:
        _add(p.errors, msg, MAX_ERRORS)
    p.summary = (fail_pkgs or ok_pkgs[-1:] or [no_files_line])[0]
    if ran_any:
        p.ran = True
    elif no_files or ok_pkgs:
        p.ran, p.why_not_ran = False, "no test files" if no_files else "no tests to run"
    return p


# jest -----------------------------------------------------------------------------

_JEST_BULLET = re.compile(r"^\s*● (.+)$")
_JEST_CROSS = re.compile(r"^\s*✕ (.+?)(?: \(\d+(?:\.\d+)? ?m?s\))?$")
_JEST_FILE = re.compile(r"^\s*FAIL\s+(\S+)")
_JEST_TESTS = re.compile(r"^Tests:\s+.*$")


def _parse_jest(lines: list[str], exit_code: int | None) -> _Parsed:
    p = _Parsed([], [])
    crosses: list[str] = []
    fail_file: str | None = None
    want_error = False
    no_tests = False
    for ln in lines:
        if want_error:
            if ln.strip():
                _add(p.errors, ln, MAX_ERRORS)
                want_error = False
            continue
        m = _JEST_BULLET.match(ln)
        if m:
            name = m.group(1).strip()
            if name == "Console":
                continue
            if name == "Test suite failed to run":
                _add(p.failed, fail_file or name, MAX_FAILED)
            else:
                _add(p.failed, name, MAX_FAILED)
            want_error = True
            continue
        m = _JEST_CROSS.match(ln)
        if m:
            crosses.append(m.group(1))
            continue
        m = _JEST_FILE.match(ln)
        if m:
            fail_file = m.group(1)
            continue
        if _JEST_TESTS.match(ln):
            p.summary = ln.strip()
        elif ln.startswith("No tests found"):
            no_tests = True
            p.summary = p.summary or ln.strip()
    if not p.failed:
        for c in crosses:
            _add(p.failed, c, MAX_FAILED)
    c = _counts(p.summary) if p.summary and p.summary.startswith("Tests:") else {}
    if no_tests:
        p.ran, p.why_not_ran = False, "No tests found"
    elif c.get("passed", 0) + c.get("failed", 0) > 0:
        p.ran = True
    elif c:
        p.ran, p.why_not_ran = False, f"no test passed or failed ({p.summary})"
    return p


# vitest ---------------------------------------------------------------------------

_VT_FAIL = re.compile(r"^\s*FAIL\s+(?=\S)")


def _vitest_fail(ln: str) -> str | None:
    """The id of `` FAIL  file > suite > test`` (or `` FAIL  file [ file ]``)."""
    m = _VT_FAIL.match(ln)
    if not m:
        return None
    test_id = ln[m.end() :].strip()
    if test_id.endswith(" ]") and " [ " in test_id:
        test_id = test_id[: test_id.rindex(" [ ")].rstrip()
    return test_id or None


_VT_CROSS = re.compile(r"^\s*[×✗] (.+?)(?: \d+(?:\.\d+)?m?s)?$")
_VT_TESTS = re.compile(r"^\s*Tests\s+\d+ \w+")


def _parse_vitest(lines: list[str], exit_code: int | None) -> _Parsed:
    p = _Parsed([], [])
    crosses: list[str] = []
    want_error = False
    no_tests = False
    for ln in lines:
        test_id = _vitest_fail(ln)
        if want_error and not test_id:
            if ln.strip():
                _add(p.errors, ln, MAX_ERRORS)
                want_error = False
            continue
        if test_id:  # consecutive FAIL lines share the error below them
            _add(p.failed, test_id, MAX_FAILED)
            want_error = True
            continue
        m = _VT_CROSS.match(ln)
        if m:
            crosses.append(m.group(1))
            continue
        if _VT_TESTS.match(ln):
            p.summary = ln.strip()
        elif "No test files found" in ln or "No test found" in ln:
            no_tests = True
    if not p.failed:
        for c in crosses:
            _add(p.failed, c, MAX_FAILED)
    c = _counts(p.summary)
    if no_tests:
        p.ran, p.why_not_ran = False, "No test files found"
        p.summary = p.summary or "No test files found"
    elif c.get("passed", 0) + c.get("failed", 0) > 0:
        p.ran = True
    elif p.summary:
        p.ran, p.why_not_ran = False, f"no test passed or failed ({p.summary})"
    return p


# mocha ----------------------------------------------------------------------------

_MO_COUNT = re.compile(r"^\s+(\d+) (passing|failing|pending)\b.*$")
_MO_HEAD = re.compile(r"^(\s+)(\d+)\) (.+)$")


def _parse_mocha(lines: list[str], exit_code: int | None) -> _Parsed:
    p = _Parsed([], [])
    counts: dict[str, str] = {}
    passing = None
    in_failures = False
    title: list[str] | None = None
    want_error = False
    for ln in lines:
        m = _MO_COUNT.match(ln)
        if m:
            counts[m.group(2)] = ln.strip()
            if m.group(2) == "passing":
                passing = int(m.group(1))
                in_failures = False
            elif m.group(2) == "failing":
                in_failures = True
            continue
        if not in_failures:
            continue
        if want_error:
            if ln.strip():
                _add(p.errors, ln, MAX_ERRORS)
                want_error = False
            continue
        if title is not None:
            part = ln.strip()
            title.append(part)
            if part.endswith(":") or len(title) > 20:
                _add(p.failed, " ".join(title).rstrip(":"), MAX_FAILED)
                title, want_error = None, True
            continue
        m = _MO_HEAD.match(ln)
        if m:
            part = m.group(3).strip()
            if part.endswith(":"):
                _add(p.failed, part.rstrip(":"), MAX_FAILED)
                want_error = True
            else:
                title = [part]
    parts = [counts[k] for k in ("passing", "failing", "pending") if k in counts]
    p.summary = ", ".join(parts) or None
    if passing:
        p.ran = True
    elif p.failed or "failing" in counts:
        p.ran = True
    elif passing == 0:
        p.ran, p.why_not_ran = False, "0 passing"
    return p


# cargo test -----------------------------------------------------------------------

_CG_TEST = re.compile(r"^test (\S+) \.\.\. FAILED$")
_CG_STDOUT = re.compile(r"^---- (\S+) stdout ----$")
_CG_WHERE = re.compile(r"[^\s']+:\d+:\d+")


def _cargo_panic(ln: str) -> str | bool | None:
    """``thread 'x' panicked at src/lib.rs:6:17:`` -> True (the message is on the next
    line); the old ``... panicked at 'message', src/lib.rs:6:5`` -> the message."""
    if not ln.startswith("thread '") or " panicked at " not in ln:
        return None
    after = ln.rpartition(" panicked at ")[2]
    if after.endswith(":") and _CG_WHERE.fullmatch(after[:-1]):
        return True
    msg, sep, where = after.rpartition("', ")
    if sep and msg.startswith("'") and _CG_WHERE.fullmatch(where):
        return msg[1:]
    return None


_CG_RESULT = re.compile(r"^test result: (ok|FAILED)\. .*$")
_CG_ERROR = re.compile(r"^(error(?:\[E\d+\])?: .+)$")
_CG_NOISE = re.compile(r"^error: test failed, to rerun pass|^error: \d+ targets? failed")
_CG_FAILURES_LIST = re.compile(r"^    (\S+)$")


def _parse_cargo(lines: list[str], exit_code: int | None) -> _Parsed:
    p = _Parsed([], [])
    results: list[str] = []
    want_msg = False
    in_stdout = False
    in_list = False
    compile_errors: list[str] = []
    for ln in lines:
        if want_msg:
            if ln.strip():
                _add(p.errors, ln, MAX_ERRORS)
                want_msg = False
            continue
        m = _CG_TEST.match(ln)
        if m:
            _add(p.failed, m.group(1), MAX_FAILED)
            continue
        if _CG_STDOUT.match(ln):
            in_stdout, in_list = True, False
            continue
        panic = _cargo_panic(ln)
        if panic is True:
            want_msg = True
            continue
        if panic:
            _add(p.errors, panic, MAX_ERRORS)
            continue
        if in_stdout and ln.startswith("Error: "):  # a test returning Err(...)
            _add(p.errors, ln, MAX_ERRORS)
            continue
        if ln == "failures:":
            in_list, in_stdout = True, False
            continue
        if in_list and (m := _CG_FAILURES_LIST.match(ln)):
            _add(p.failed, m.group(1), MAX_FAILED)
            continue
        m = _CG_RESULT.match(ln)
        if m:
            results.append(ln.strip())
            in_list = in_stdout = False
            continue
        m = _CG_ERROR.match(ln)
        if m and not _CG_NOISE.match(ln):
            compile_errors.append(m.group(1))
    for msg in compile_errors:
        _add(p.errors, msg, MAX_ERRORS)
    failed_results = [r for r in results if r.startswith("test result: FAILED")]
    passed_results = [r for r in results if _counts(r).get("passed")]
    p.summary = (failed_results or passed_results or results[-1:] or [None])[0]
    passed = sum(_counts(r).get("passed", 0) + _counts(r).get("failed", 0) for r in results)
    if passed > 0:
        p.ran = True
    elif results:
        p.ran, p.why_not_ran = False, "0 tests ran"
    return p


# generic --------------------------------------------------------------------------

_GENERIC = re.compile(
    r"\b\w*(?:Error|Exception)\b"
    r"|\berror(?:\[\w+\])?:|\bERROR\b|\bfatal:|\bFATAL\b|\bFAIL(?:ED|URE)?\b|\bpanic:|\bERR!"
    r"|: command not found$|: No such file or directory$|: Permission denied$"
    r"|\bSegmentation fault\b|\bcore dumped\b|\bKilled$"
)
_GENERIC_WORDS = (  # a cheap prefilter for _GENERIC
    "Error",
    "Exception",
    "error",
    "ERR",
    "fatal",
    "FATAL",
    "FAIL",
    "panic:",
    "command not found",
    "No such file",
    "Permission denied",
    "Segmentation fault",
    "core dumped",
    "Killed",
)
_GENERIC_NOISE = re.compile(
    r"^make(?:\[\d+\])?: \*\*\*"
    r"|^npm (?:ERR!|error) (?:code|errno|path|command|syscall|A complete log|Lifecycle|"
    r"Test failed|workspace|location|\s*$)"
    r"|^error Command failed with exit code"
    r"|^Error: Process completed with exit code"
    r"|^\s*at "
    r"|^Traceback \(most recent call last\):$"
)


def _generic_errors(lines: list[str], limit: int = MAX_GENERIC_ERRORS) -> list[str]:
    """The last ``limit`` error-looking lines (a Python traceback counts once: its last line)."""
    found: list[str] = []
    in_tb = False
    for ln in lines[-50_000:]:
        if ln.startswith("Traceback (most recent call last):"):
            in_tb = True
            continue
        if in_tb:
            if not ln or ln[0].isspace():
                continue  # a frame
            in_tb = False
            found.append(ln)  # the exception line
            continue
        if (
            any(w in ln for w in _GENERIC_WORDS)
            and _GENERIC.search(ln)
            and not _GENERIC_NOISE.match(ln)
        ):
            found.append(ln)
    out: list[str] = []
    for ln in reversed(found):
        _add(out, ln, limit)
        if len(out) >= limit:
            break
    return out[::-1]


_PARSERS = {
    "pytest": _parse_pytest,
    "unittest": _parse_unittest,
    "go": _parse_go,
    "jest": _parse_jest,
    "vitest": _parse_vitest,
    "mocha": _parse_mocha,
    "cargo": _parse_cargo,
}


def _parse(lines: list[str], framework: str | None, exit_code: int | None) -> _Parsed:
    parser = _PARSERS.get(framework or "")
    if parser is None:
        return _Parsed([], _generic_errors(lines))
    p = parser(lines, exit_code)
    if not p.errors and not p.failed and exit_code not in (None, 0):
        p.errors = _generic_errors(lines)
    return p


def extract(output: str, command: str | None = None, exit_code: int | None = None) -> Signature:
    """The failure signature of one run's ``output`` (see the module docstring)."""
    exit_code = _int_or_none(exit_code)
    lines = _lines(_clean(output))
    text = "\n".join(lines)
    framework = _detect(text, command)
    p = _parse(lines, framework, exit_code)
    if framework is None:
        if exit_code not in (None, 0) or (exit_code is None and p.errors):
            framework = "generic"
        else:
            p.errors = []
    return Signature(
        framework=framework,
        failed=tuple(p.failed[:MAX_FAILED]),
        errors=tuple(p.errors[:MAX_ERRORS]),
        summary=_cap(p.summary) if p.summary else None,
        exit_code=exit_code,
    )


# -------------------------------------------------------------------------- comparing


def compare(expected: Signature, output: str, exit_code: int | None) -> tuple[Verdict, dict]:
    """``("reproduces" | "fixed" | "inconclusive", evidence)`` for a later run's output."""
    if not isinstance(expected, Signature):
        expected = Signature.from_dict(expected if isinstance(expected, dict) else {})
    exit_code = _int_or_none(exit_code)
    lines = _lines(_clean(output))
    fw = expected.framework if expected.framework in _PARSERS else None
    if fw is None:
        fw = _detect("\n".join(lines), None)
    p = _parse(lines, fw, exit_code)

    matched_failed = [e for e in expected.failed if any(_id_matches(e, f) for f in p.failed)]
    still = [f for f in p.failed if any(_id_matches(e, f) for e in expected.failed)]
    new = [f for f in p.failed if f not in still]
    found_norm = [normalize(x) for x in p.errors]
    # the errors may also be anywhere in the output (a different reporter, a capped list)
    matched_errors = [
        e
        for e in expected.errors
        if (ne := normalize(e)) and any(_error_matches(ne, f) for f in found_norm)
    ]
    if len(matched_errors) < len(expected.errors):  # printed elsewhere, or past the caps
        all_norm: list[str] | None = None
        for e in expected.errors:
            ne = normalize(e)
            if e in matched_errors or len(ne) < 8:
                continue
            if all_norm is None:
                all_norm = [normalize(_PT_E_PREFIX.sub("", ln)) for ln in lines if ln.strip()]
            if any(_error_matches(ne, f) for f in all_norm):
                matched_errors.append(e)

    evidence = {
        "exit_code": exit_code,
        "expected_exit_code": expected.exit_code,
        "framework": fw if fw is not None else ("generic" if exit_code else None),
        "matched_failed": matched_failed[:MAX_EVIDENCE],
        "matched_errors": matched_errors[:MAX_EVIDENCE],
        "still_failing": still[:MAX_EVIDENCE],
        "now_failing": new[:MAX_EVIDENCE],
        "summary": _cap(p.summary) if p.summary else None,
        "reason": "",
    }
    verdict, reason = _verdict(expected, p, exit_code, matched_failed, matched_errors, new)
    evidence["reason"] = reason
    return verdict, evidence


def _verdict(
    expected: Signature,
    p: _Parsed,
    exit_code: int | None,
    matched_failed: list[str],
    matched_errors: list[str],
    new: list[str],
) -> tuple[Verdict, str]:
    failing = exit_code not in (None, 0) or (exit_code is None and bool(p.failed or p.errors))
    if failing:
        if expected.failed and matched_failed:
            n = len(matched_failed)
            what = matched_failed[0] if n == 1 else f"{n} of {len(expected.failed)} expected tests"
            return "reproduces", f"{what} {'fails' if n == 1 else 'fail'} again"
        if not expected.failed and matched_errors:
            return "reproduces", f"the expected error appears again: {_short(matched_errors[0])}"
        if exit_code is None:
            return "inconclusive", "no exit code, and none of the expected failures was found"
        if not expected.failed and not expected.errors:
            return "inconclusive", (
                f"exit code {exit_code}, but the signature has no failing tests or errors to match"
            )
        if p.ran is False and not new:
            return "inconclusive", f"exit code {exit_code}, and {p.why_not_ran or 'no tests ran'}"
        if new:
            return "inconclusive", (
                f"a different failure: exit code {exit_code}, now failing {_short(new[0])}"
                + (f" and {len(new) - 1} more" if len(new) > 1 else "")
                + ", none of the expected tests"
            )
        if expected.failed:
            return "inconclusive", (
                f"a different failure: exit code {exit_code}, none of the expected tests "
                "is reported failing"
            )
        return "inconclusive", (
            f"a different failure: exit code {exit_code}, none of the expected errors appears"
        )
    if exit_code is None:
        return "inconclusive", "no exit code and no failure found"
    # exit code 0
    if matched_failed:
        return "inconclusive", (
            f"exit code 0, but {_short(matched_failed[0])} is still reported failing"
        )
    if expected.framework in TEST_FRAMEWORKS:
        if p.ran is False:
            return "inconclusive", f"exit code 0, but {p.why_not_ran or 'no tests ran'}"
        if p.ran is None:
            return "inconclusive", (
                f"exit code 0, but the output does not show that any {expected.framework} test ran"
            )
        return "fixed", (
            f"exit code 0, tests ran ({_short(p.summary or 'ran')}), none of the expected "
            "failures fails"
        )
    return "fixed", "exit code 0"


def _short(s: str, n: int = 120) -> str:
    s = re.sub(r"\s+", " ", s).strip()
    return s if len(s) <= n else s[: n - 1] + "…"
