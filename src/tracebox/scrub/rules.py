"""What a scrub rule is: the ``Rule`` record, shared regex fragments and value checks.

A rule pairs two regular expressions over **bytes**:

* ``detect`` — a cheap expression in the subset both Hyperscan and Python ``re`` accept
  (no look-arounds, no back-references). Every place the rule can match starts where a
  ``detect`` match starts — or one byte later with ``lead=True`` (the detector consumed
  a boundary byte), or earlier by a run of ``back`` bytes (at most ``MAX_BACK``; the
  detector found the middle, e.g. the ``@`` of an e-mail address). The engine runs all
  detectors in one pass.
* ``pattern`` — the precise Python expression, tried with ``pattern.match`` only at the
  positions the detectors found. Its named group ``s`` (if any) is the part replaced;
  otherwise the whole match is.

``check`` (optional) gets the bytes about to be replaced and may veto the finding (hash
and placeholder filters, entropy thresholds, address ranges that are not personal).

The ``kind`` says how a finding is replaced: ``secret`` → ``[REDACTED:<category>]``;
``pii`` → a stable pseudonym (see ``pii.py``); ``keep`` → left as is and not reported: it
only claims known non-secret material (public keys, certificates) so that weaker rules
such as the entropy check cannot fire inside it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Literal

import msgspec

Kind = Literal["secret", "pii", "keep"]
MAX_BACK = 64


class Rule(msgspec.Struct, frozen=True):
    name: str  # unique, e.g. "github-pat"
    category: str  # what reports count and the placeholder names, e.g. "github"
    detect: bytes
    pattern: bytes
    check: Callable[[bytes], bool] | None = None
    kind: Kind = "secret"
    priority: int = 100  # the higher one wins when two findings overlap
    lead: bool = False  # the detector may start one boundary byte before the match
    back: bytes = b""  # the match may start up to MAX_BACK of these bytes before the detector
    literal: bytes = b""  # set when the rule matches exactly these bytes (found with find)


# -- regex fragments (bytes) --------------------------------------------------------------

# A token may start after a non-token byte, or right after a JSON escape such as ``\n``
# or ``\u00e9`` (whose last byte is a letter or digit), never inside one.
ESC = rb"(?<=\\[nrtbf])|(?<=\\u[0-9A-Fa-f]{4})"


def left(token_class: bytes) -> bytes:
    """A left boundary for tokens made of ``token_class`` (a ``[...]`` body)."""
    return rb"(?:(?<![" + token_class + rb"\\])|" + ESC + rb")"


def right(token_class: bytes) -> bytes:
    return rb"(?![" + token_class + rb"])"


ALNUM = rb"A-Za-z0-9"
WORD = rb"A-Za-z0-9_"
B64 = rb"A-Za-z0-9+/"
B64URL = rb"A-Za-z0-9_\-"


def token(prefix: bytes, body: bytes, cls: bytes = WORD) -> bytes:
    """``prefix`` + ``body`` as a whole token: not glued to other ``cls`` bytes."""
    return left(cls) + rb"(?:" + prefix + rb")" + body + right(cls)


# -- value checks -------------------------------------------------------------------------


def entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte."""
    n = len(data)
    if not n:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(data).values())


_PLACEHOLDER_WORDS = (
    b"example",
    b"placeholder",
    b"your",
    b"xxxx",
    b"****",
    b"redacted",
    b"dummy",
    b"changeme",
    b"secret_here",
    b"token_here",
    b"key_here",
    b"<",
    b"${",
    b"{{",
    b"%(",
    b"process.env",
    b"os.environ",
    b"getenv",
)


def is_placeholder(value: bytes) -> bool:
    """Obvious non-secrets: documentation placeholders, template and code references."""
    v = value.lower()
    if v in (b"null", b"none", b"true", b"false", b"undefined", b"nil", b"empty", b"string"):
        return True
    if any(w in v for w in _PLACEHOLDER_WORDS):
        return True
    return len(set(v)) <= 2  # "aaaaaaaa", "********", "--------"


def not_placeholder(value: bytes) -> bool:
    return not is_placeholder(value)
