"""The harness file: what to run, how often, how to judge it, and when to stop an agent.

``load(path)`` reads a TOML file (docs/harness.md has a complete example)::

    [run]
    name = "counter-race"                 # the run id is <name>-<UTC time>
    repo = "."                            # the target repository (relative to this file)
    base = "main"                         # the ref every worktree starts from
    task = "Fix the lost updates in Counter"   # or task_file = "TASK.md"
    agent = "python agent.py {prompt_file}"    # {prompt_file} {workdir} {variant} {generation} {<param>}
    generations = 3
    parallel = 3
    timeout = "5m"                        # per agent
    validator = "python -m pytest -q tests/test_stress.py"
    validator_timeout = "2m"
    stop_when_solved = false              # stop after the first generation that solved it
    observations_budget = 6000            # characters of observations.md in each prompt

    [[variants]]                          # a list of variants ...
    name = "look-at-locking"
    strategy = "Start with the locking."
    params = { focus = "lock" }

    [matrix]                              # ... or every combination of these values
    focus = ["lock", "retry"]
    strategy = "Focus on {focus}."        # optional template over the parameters

    [rules]                               # live rules: data, not code
    no_progress = "90s"                   # no model call and no output for this long
    same_failing_command = 3              # the same command failing this many times
    token_rate = 200000                   # tokens per minute, averaged over a minute
    repeated_responses = 3                # identical model responses in a row

Every problem is reported as one ``ConfigError`` line naming the key.
"""

from __future__ import annotations

import itertools
import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from ..config import parse_duration
from ..errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
BUILTIN_FIELDS = ("prompt_file", "workdir", "variant", "generation", "run")


@dataclass(frozen=True)
class Variant:
    name: str
    strategy: str = ""
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rules:
    no_progress: float | None = None  # seconds
    same_failing_command: int | None = None
    token_rate: int | None = None  # tokens per minute
    repeated_responses: int | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Config:
    name: str
    repo: str
    base: str
    task: str
    agent: str
    validator: str
    generations: int = 1
    parallel: int = 2
    timeout: float = 600.0
    validator_timeout: float = 300.0
    stop_when_solved: bool = False
    observations_budget: int = 6000
    variants: tuple[Variant, ...] = ()
    rules: Rules = field(default_factory=Rules)
    path: str | None = None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "repo": self.repo,
            "base": self.base,
            "task": self.task,
            "agent": self.agent,
            "validator": self.validator,
            "generations": self.generations,
            "parallel": self.parallel,
            "timeout": self.timeout,
            "validator_timeout": self.validator_timeout,
            "stop_when_solved": self.stop_when_solved,
            "observations_budget": self.observations_budget,
            "variants": [v.__dict__ for v in self.variants],
            "rules": self.rules.to_dict(),
        }


def _get(d: dict, key: str, kind, default=None, *, required: bool = False, where: str = "run"):
    if key not in d:
        if required:
            raise ConfigError(f"harness file: [{where}] {key} is required")
        return default
    v = d[key]
    if kind is float and isinstance(v, int | float | str):
        return v
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise ConfigError(
            f"harness file: [{where}] {key} must be {getattr(kind, '__name__', kind)}"
        )
    return v


def load(path: str) -> Config:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read harness file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"harness file {path} is not valid TOML: {e}") from None
    return from_dict(data, base_dir=os.path.dirname(os.path.abspath(path)), path=path)


def from_dict(data: dict, *, base_dir: str = ".", path: str | None = None) -> Config:
    run = data.get("run")
    if not isinstance(run, dict):
        raise ConfigError("harness file: a [run] table is required")
    name = _get(run, "name", str, required=True)
    if not _NAME.fullmatch(name):
        raise ConfigError(f"harness file: [run] name {name!r}: use letters, digits, '.', '_', '-'")
    task = _get(run, "task", str)
    if task is None:
        task_file = _get(run, "task_file", str)
        if not task_file:
            raise ConfigError("harness file: [run] needs task or task_file")
        try:
            with open(os.path.join(base_dir, task_file), encoding="utf-8") as f:
                task = f.read()
        except OSError as e:
            raise ConfigError(f"harness file: task_file {task_file}: {e.strerror}") from None
    repo = os.path.normpath(os.path.join(base_dir, _get(run, "repo", str, ".")))
    variants = _variants(data)
    agent = _get(run, "agent", str, required=True)
    known = set(BUILTIN_FIELDS) | {k for v in variants for k in v.params} | {"strategy"}
    for ph in _PLACEHOLDER.findall(agent):
        if ph not in known:
            raise ConfigError(f"harness file: [run] agent uses {{{ph}}}, which no variant defines")
    generations = _get(run, "generations", int, 1)
    parallel = _get(run, "parallel", int, 2)
    if not 1 <= generations <= 1000 or not 1 <= parallel <= 256:
        raise ConfigError("harness file: generations must be 1..1000 and parallel 1..256")
    return Config(
        name=name,
        repo=repo,
        base=_get(run, "base", str, "HEAD"),
        task=task,
        agent=agent,
        validator=_get(run, "validator", str, required=True),
        generations=generations,
        parallel=parallel,
        timeout=parse_duration(_get(run, "timeout", float, 600), what="[run] timeout"),
        validator_timeout=parse_duration(
            _get(run, "validator_timeout", float, 300), what="[run] validator_timeout"
        ),
        stop_when_solved=_get(run, "stop_when_solved", bool, False),
        observations_budget=_get(run, "observations_budget", int, 6000),
        variants=tuple(variants),
        rules=_rules(data.get("rules") or {}),
        path=path,
    )


def _variants(data: dict) -> list[Variant]:
    out: list[Variant] = []
    listed = data.get("variants") or []
    if not isinstance(listed, list):
        raise ConfigError("harness file: [[variants]] must be an array of tables")
    for i, v in enumerate(listed):
        if not isinstance(v, dict):
            raise ConfigError(f"harness file: variant {i + 1} must be a table")
        params = v.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigError(f"harness file: variant {i + 1}: params must be a table")
        out.append(
            Variant(str(v.get("name") or f"v{i + 1}"), str(v.get("strategy") or ""), dict(params))
        )
    matrix = data.get("matrix")
    if matrix is not None:
        if not isinstance(matrix, dict):
            raise ConfigError("harness file: [matrix] must be a table")
        template = matrix.get("strategy", "")
        axes = {k: v for k, v in matrix.items() if k != "strategy"}
        for k, values in axes.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"harness file: [matrix] {k} must be a non-empty list")
        for combo in itertools.product(*axes.values()):
            params = dict(zip(axes, combo, strict=True))
            name = "-".join(_slug(str(x)) for x in combo)
            out.append(Variant(name, _fill(str(template), params), params))
    if not out:
        out.append(Variant("v1"))
    names = [v.name for v in out]
    for n in names:
        if not _NAME.fullmatch(n):
            raise ConfigError(
                f"harness file: variant name {n!r}: use letters, digits, '.', '_', '-'"
            )
    if len(set(names)) != len(names):
        raise ConfigError("harness file: variant names must be unique")
    return out


def _rules(r: dict) -> Rules:
    if not isinstance(r, dict):
        raise ConfigError("harness file: [rules] must be a table")
    unknown = set(r) - {"no_progress", "same_failing_command", "token_rate", "repeated_responses"}
    if unknown:
        raise ConfigError(f"harness file: unknown rule {sorted(unknown)[0]!r}")
    np = r.get("no_progress")
    return Rules(
        no_progress=parse_duration(np, what="[rules] no_progress") if np is not None else None,
        same_failing_command=_get(r, "same_failing_command", int, where="rules"),
        token_rate=_get(r, "token_rate", int, where="rules"),
        repeated_responses=_get(r, "repeated_responses", int, where="rules"),
    )


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s)[:24] or "x"


def _fill(template: str, values: dict[str, Any]) -> str:
    return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), template)


def command_for(cfg: Config, v: Variant, /, **builtins: str) -> str:
    """The agent command of one variant: placeholders filled (values shell-quoted)."""
    import shlex

    values = {k: shlex.quote(str(x)) for k, x in v.params.items()}
    values["strategy"] = shlex.quote(v.strategy)
    values.update({k: shlex.quote(str(v)) for k, v in builtins.items()})
    return _fill(cfg.agent, values)
