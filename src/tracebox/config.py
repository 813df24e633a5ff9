"""Find and merge settings: flags > environment > ``.tracebox.toml`` > defaults.

``.tracebox.toml`` is looked up from the working directory upwards, then in the user
config dir (``$XDG_CONFIG_HOME/tracebox/config.toml``).  It never holds credentials:
``write_config`` refuses keys that look like secrets.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .dirs import user_dir
from .errors import ConfigError, UsageError

CONFIG_NAME = ".tracebox.toml"
_SECRET_WORDS = ("secret", "password", "token", "access_key", "credential")


@dataclass
class Settings:
    bucket: str | None = None
    project: str | None = None
    agent: str | None = None
    s3: dict = field(default_factory=dict)  # endpoint, region, profile (never keys)
    alive_after: float = 300.0  # seconds since the last heartbeat an agent counts as alive
    skew: float = 2.0  # clock-skew allowance when judging lease expiry (seconds)
    allow_racy_claims: bool = False
    cas_verified: bool | None = None  # what `tracebox init` measured on this bucket
    config_path: Path | None = None
    # the whole config file, so features read their own [section]
    raw: dict = field(default_factory=dict)

    @property
    def base_dir(self) -> str | None:
        return str(self.config_path.parent) if self.config_path else None


def find_config(start: str | None = None) -> Path | None:
    explicit = os.environ.get("TRACEBOX_CONFIG")
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise ConfigError(f"TRACEBOX_CONFIG points to {p}, which does not exist")
        return p
    d = Path(start or os.getcwd()).resolve()
    for folder in (d, *d.parents):
        p = folder / CONFIG_NAME
        if p.is_file():
            return p
    p = Path(user_dir("config", "config.toml"))
    return p if p.is_file() else None


def parse_duration(text: str | float | int, *, what: str = "duration") -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d``, ``1h30m`` → seconds."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        t = str(text).strip().lower()
        parts = re.fullmatch(r"((?:\d+(?:\.\d+)?(?:ms|s|m|h|d)?)+)", t)
        if not t or not parts:
            raise UsageError(f"invalid {what} {text!r}; use e.g. 30s, 15m, 2h")
        units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "": 1}
        value = 0.0
        for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?", t):
            value += float(num) * units[unit or ""]
    if value < 0 or value > 366 * 86400:
        raise UsageError(f"{what} out of range: {text!r}")
    return value


def load_settings(**overrides) -> Settings:
    """Settings from the config file, then env vars, then non-None ``overrides``."""
    s = Settings()
    path = find_config()
    if path:
        import tomllib

        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read {path}: {e}") from None
        s.config_path = path
        s.raw = data
        s.bucket = data.get("bucket")
        s.project = data.get("project")
        s.agent = data.get("agent")
        s.s3 = {k: v for k, v in (data.get("s3") or {}).items() if isinstance(v, str)}
        claims = data.get("claims") or {}
        s.allow_racy_claims = bool(claims.get("allow_racy", False))
        s.cas_verified = claims.get("conditional_writes_verified")
        if "skew" in claims:
            s.skew = parse_duration(claims["skew"], what="claims.skew")
        agents = data.get("agents") or {}
        if "alive_after" in agents:
            s.alive_after = parse_duration(agents["alive_after"], what="agents.alive_after")
    env = os.environ
    s.bucket = env.get("TRACEBOX_BUCKET") or s.bucket
    s.project = env.get("TRACEBOX_PROJECT") or s.project
    s.agent = env.get("TRACEBOX_AGENT") or s.agent
    if env.get("TRACEBOX_ALIVE_AFTER"):
        s.alive_after = parse_duration(env["TRACEBOX_ALIVE_AFTER"], what="TRACEBOX_ALIVE_AFTER")
    if env.get("TRACEBOX_ALLOW_RACY_CLAIMS", "").lower() in ("1", "true", "yes"):
        s.allow_racy_claims = True
    for k, v in overrides.items():
        if v is None:
            continue
        if k in ("endpoint", "region", "profile"):
            s.s3[k] = v
        else:
            setattr(s, k, v)
    return s


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, data: dict) -> None:
    """Write a small TOML file (flat keys and one level of tables); never secrets."""
    lines, tables = [], []
    for k, v in data.items():
        if v is None:
            continue
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    for name, table in tables:
        items = {k: v for k, v in table.items() if v is not None}
        if not items:
            continue
        lines.append(f"\n[{name}]")
        for k, v in items.items():
            if any(w in k.lower() for w in _SECRET_WORDS):
                raise UsageError(f"refusing to write {name}.{k} to {path}: no secrets in config")
            lines.append(f"{k} = {_toml_value(v)}")
    header = "# tracebox project settings (no credentials here: use env vars or a profile)\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
