"""Personal data: e-mail addresses, phone numbers, IP addresses and the user names in home
directories — and the stable pseudonyms that replace them.

A pseudonym is a keyed hash (BLAKE2b with a local salt) of the normalised value: the same
input gives the same pseudonym wherever the same salt is used, so sessions stay
correlatable (the same user, the same host) without the value being recoverable. The salt
lives in ``$XDG_DATA_HOME/tracebox/scrub-salt`` (created on first use, mode 0600) unless
the caller passes one; it never leaves the machine.

Precision choices (see docs/scrubber.md): phone numbers need an international ``+CC``
prefix or the North-American ``(555) 555-5555`` / ``555-555-5555`` layout, so digit runs
(timestamps, ids, sizes) are left alone; IP addresses are replaced only when globally
routable (private, loopback, link-local, documentation and reserved ranges stay), and not
right after a version operator or word (``==1.2.3.4``, ``version 1.2.3.4``, ``v1.2.3.4``). Pseudonyms are chosen so that
scrubbing twice changes nothing: ``user-<hex>@example.invalid``, ``/home/user-<hex>``,
IPv4 ``240.x.y.z`` (reserved), IPv6 ``2001:db8:...`` (documentation), ``phone-<hex>``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from pathlib import Path

from ..dirs import user_dir
from .rules import ESC, Rule, left

# -- rules --------------------------------------------------------------------------------

_FILE_TLDS = frozenset(
    b"png jpg jpeg gif svg webp ico bmp js mjs cjs ts tsx jsx py pyc rb go rs java kt c h cc"
    b" cpp hpp cs php swift css scss less json yaml yml toml ini cfg md rst txt html htm xml"
    b" lock zip gz tgz tar whl so dll exe log csv pdf map wasm sh bat".split()
)
_NOT_PERSONAL_DOMAINS = (b"example.com", b"example.org", b"example.net")
_NOT_PERSONAL_TLDS = (b".invalid", b".test", b".example", b".localhost", b".local")
_NOT_PERSONAL_LOCAL = (b"git", b"noreply", b"no-reply", b"donotreply", b"do-not-reply")


def _personal_email(v: bytes) -> bool:
    local, _, domain = v.lower().rpartition(b"@")
    if local in _NOT_PERSONAL_LOCAL or domain.rpartition(b".")[2] in _FILE_TLDS:
        return False
    return not (domain in _NOT_PERSONAL_DOMAINS or domain.endswith(_NOT_PERSONAL_TLDS))


def _phone(v: bytes) -> bool:
    return 8 <= sum(48 <= c <= 57 for c in v) <= 15


def _public_ip(v: bytes) -> bool:
    try:
        ip = ipaddress.ip_address(v.decode("ascii"))
    except ValueError:
        return False
    return ip.is_global and not ip.is_multicast


_PSEUDO_USER = re.compile(rb"user-[0-9a-f]{8}")
_NOT_USERS = frozenset((b"USER", b"Shared", b"Public", b"Default", b"All Users", b"username"))


def _real_user(v: bytes) -> bool:
    return v not in _NOT_USERS and not _PSEUDO_USER.fullmatch(v)


_EMAIL_LOCAL = rb"A-Za-z0-9._%+\-"
_LABEL = rb"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_WIN_USER = rb"(?:[^\\/\"\s:*?<>|]|\\u[0-9A-Fa-f]{4}){1,64}"
_VERSION_OP = rb"(?<!==)(?<!>=)(?<!<=)(?<!~=)(?<!!=)(?<![\^~])(?<!version )(?<!Version )"

RULES: list[Rule] = [
    Rule(
        "email",
        "email",
        detect=rb"[A-Za-z0-9._%+\-]@[A-Za-z0-9]",
        back=b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-",
        pattern=left(_EMAIL_LOCAL)
        + rb"[A-Za-z0-9._%+\-]{1,64}@(?:"
        + _LABEL
        + rb"\.)+[A-Za-z]{2,24}(?![A-Za-z0-9\-])",
        check=_personal_email,
        kind="pii",
        priority=60,
    ),
    Rule(
        "home-dir-posix",
        "user",
        detect=rb"/(?:home|Users)/",
        pattern=rb"/(?:home|Users)/(?P<s>[A-Za-z0-9._\-]{1,64})(?![A-Za-z0-9._\-])",
        check=_real_user,
        kind="pii",
        priority=60,
    ),
    Rule(
        "home-dir-windows",
        "user",
        detect=rb"(?i)[A-Za-z]:(?:\\+|/)Users(?:\\+|/)",  # \\ doubles per JSON level
        pattern=rb"[A-Za-z]:(?:\\+|/)(?i:Users)(?:\\+|/)(?P<s>" + _WIN_USER + rb")",
        check=_real_user,
        kind="pii",
        priority=60,
    ),
    Rule(
        "phone-international",
        "phone",
        detect=rb"\+[1-9]",
        pattern=rb"(?<![A-Za-z0-9+])\+[1-9][0-9]{0,2}(?:[ .\-]?\(?[0-9]{1,5}\)?){2,6}(?![0-9])",
        check=_phone,
        kind="pii",
        priority=40,
    ),
    Rule(
        "phone-nanp",
        "phone",
        detect=rb"\(?[2-9][0-9]{2}\)?[ .\-]?[2-9][0-9]{2}[.\-][0-9]{4}",
        # (555) 555-5555, 555-555-5555, 555.555.5555; not space-separated number columns
        pattern=rb"(?:(?<![A-Za-z0-9_.+\-\\(])|"
        + ESC
        + rb")(?:\([2-9][0-9]{2}\) ?[2-9][0-9]{2}[.\-]|[2-9][0-9]{2}([.\-])[2-9][0-9]{2}\1)"
        + rb"[0-9]{4}(?![0-9\-])",
        kind="pii",
        priority=40,
    ),
    Rule(
        "ipv4",
        "ip",
        detect=rb"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
        pattern=rb"(?:(?<![A-Za-z0-9_.\-\\])|"
        + ESC
        + rb")"
        + _VERSION_OP
        + rb"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?![0-9]|\.[0-9])",
        check=_public_ip,
        kind="pii",
        priority=50,
    ),
    Rule(
        "ipv6",
        "ip",
        detect=rb"[23][0-9A-Fa-f]{3}:[0-9A-Fa-f]{0,4}:",
        pattern=rb"(?<![0-9A-Fa-f:])[23][0-9A-Fa-f]{3}:[0-9A-Fa-f:]{2,35}[0-9A-Fa-f](?![0-9A-Fa-f:])",
        check=_public_ip,
        kind="pii",
        priority=50,
    ),
]


# -- pseudonyms ---------------------------------------------------------------------------


def _digest(salt: bytes, category: str, value: bytes) -> bytes:
    return hashlib.blake2b(
        value, digest_size=8, key=salt[:64], person=category.encode()[:16]
    ).digest()


def pseudonym(category: str, value: bytes, salt: bytes) -> bytes:
    """The stable stand-in for ``value`` (normalised: e-mails and hosts ignore case)."""
    if category == "email":
        return (
            b"user-%s@example.invalid" % _digest(salt, category, value.lower()).hex()[:8].encode()
        )
    if category == "user":
        return b"user-%s" % _digest(salt, category, value).hex()[:8].encode()
    if category == "phone":
        digits = bytes(c for c in value if 48 <= c <= 57)
        return b"phone-%s" % _digest(salt, category, digits).hex()[:8].encode()
    d = _digest(salt, category, ipaddress.ip_address(value.decode("ascii")).packed)
    if b":" in value:
        return b"2001:db8:%s:%s::%x" % (d[:2].hex().encode(), d[2:4].hex().encode(), d[4] + 1)
    return b"240.%d.%d.%d" % (d[0], d[1], d[2])


# -- the salt -----------------------------------------------------------------------------

SALT_BYTES = 32


def salt_path() -> Path:
    return Path(user_dir("data", "scrub-salt"))


def load_salt(path: Path | None = None) -> bytes:
    """The local pseudonym salt, created (random, mode 0600) on first use."""
    p = path or salt_path()
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f"{p.name}.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(SALT_BYTES))
        try:
            os.link(tmp, p)  # create-if-absent: a concurrent first use keeps one salt
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    salt = p.read_bytes()
    if len(salt) < 16:
        from ..errors import ConfigError

        raise ConfigError(f"scrub salt {p} is too short; delete it to make a new one")
    return salt
