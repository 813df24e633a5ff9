"""The CLI starts as a real subprocess (`python -m tracebox`) and the `cli` fixture passes
the test's environment through to it."""

from __future__ import annotations


def test_help_runs_as_subprocess(cli):
    proc = cli("--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout
    assert proc.stderr == ""


def test_unknown_command_is_usage_error(cli):
    proc = cli("no-such-command-xyz")
    assert proc.returncode == 2
    assert "no-such-command-xyz" in proc.stderr
