"""`make demo`: a scripted multi-agent run on a local-folder bucket, step by step.

Four agents (alice, bob, carol, dave) coordinate through `tracebox` exactly as coding
agents would: each call below is a real `tracebox` CLI process.  The run exercises
claims with leases, a lease expiry and takeover (with a stale owner refused), a blocked
handoff, direct and broadcast messages, versioned memory with compare-and-swap, and an
artifact — and ends by writing `demo-run/run.html`, a self-contained timeline.

Then the agents' own transcripts (a Claude Code session and a Codex rollout, written by
`demo_transcripts.py` into a stand-in home folder) are inspected, mirrored into the
bucket with secrets and personal data scrubbed, indexed, searched, summed up in a stats
table and exported as ATIF.

Then a harness runs three generations of scripted agents on a real race (a hit counter
that loses updates under threads): generation 1 guesses blind and fails, a stuck agent is
stopped by a live rule, later generations read what the earlier ones learned and fix it;
the report lands in `demo-run/harness/report/`.

Last, a library's failing test becomes a Trace Capsule: created from the agent's
transcript (scrubbed), pushed, replayed by the maintainer (reproduces), fixed, replayed
again (fixed) and resolved — which unblocks the reporter's waiting `capsule watch`.

It ends with the `tracebox ui` URL of the demo bucket: run from a terminal, the demo
serves the UI until Ctrl-C; otherwise (CI, a pipe) it prints the URL and `make ui`
serves it later (`examples/demo.py --ui`).  Nothing outside `demo-run/` is read or
written.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("TRACEBOX_DEMO_DIR", ROOT / "demo-run"))
BUCKET = OUT / "bucket"
BOLD, DIM, RED, GREEN, RESET = (
    ("\033[1m", "\033[2m", "\033[31m", "\033[32m", "\033[0m")
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    else ("",) * 5
)


def say(text: str) -> None:
    print(f"\n{BOLD}# {text}{RESET}")


HOME = OUT / "home"  # the agents' stand-in home: their transcripts, tracebox's index and salt
SANDBOX = {
    "HOME": str(HOME),
    "CLAUDE_CONFIG_DIR": str(HOME / ".claude"),
    "CODEX_HOME": str(HOME / ".codex"),
    "XDG_CONFIG_HOME": str(HOME / ".config"),
    "XDG_DATA_HOME": str(HOME / ".local" / "share"),
    "XDG_STATE_HOME": str(HOME / ".local" / "state"),
    "XDG_CACHE_HOME": str(HOME / ".cache"),
    "TRACEBOX_INDEX": str(OUT / "index.db"),
}


def tb(agent: str, *args: str, expect: int = 0) -> str:
    """Run `tracebox` as AGENT, echo the command and its output, check the exit code."""
    cmd = [sys.executable, "-m", "tracebox", *args]
    env = {**os.environ, **SANDBOX, "TRACEBOX_AGENT": agent, "NO_COLOR": "1"}
    shown = "tracebox " + " ".join(shlex.quote(a) for a in args)
    print(f"{DIM}[{agent}]{RESET} $ {shown}")
    r = subprocess.run(cmd, cwd=OUT, env=env, capture_output=True, text=True, timeout=120)
    for line in (r.stdout + r.stderr).rstrip().splitlines():
        color = RED if r.returncode else ""
        print(f"    {color}{line}{RESET if color else ''}")
    if r.returncode != expect:
        sys.exit(f"demo failed: `{shown}` exited {r.returncode}, expected {expect}")
    if expect:
        print(f"    {GREEN}(refused, as it should be: exit {r.returncode}){RESET}")
    return r.stdout


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    (OUT / "api.patch").write_text("--- a/api.py\n+++ b/api.py\n+def invoices(): ...\n")

    say("alice creates the project in a local folder bucket (probing conditional writes)")
    tb("alice", "init", "--bucket", "bucket", "--project", "demo")

    say("alice plans, records the plan in shared memory, and hands off to bob")
    tb("alice", "claim", "plan", "--ttl", "10m")
    tb("alice", "memory", "set", "plan.endpoints", '["/invoices", "/customers"]')
    tb(
        "alice",
        "complete",
        "plan",
        "--note",
        "API sketched in memory plan.endpoints",
        "--to",
        "bob",
        "--next-action",
        "implement /invoices",
    )

    say("bob claims the API step with a short lease ... and then goes silent (a crash)")
    tb("bob", "claim", "api", "--ttl", "2s")
    tb("carol", "claim", "api", expect=1)
    print(
        f"    {DIM}(waiting for bob's lease to expire: 2 s TTL + 2 s clock-skew allowance){RESET}"
    )
    time.sleep(4.3)

    say("carol takes over the expired lease: exactly one new owner, epoch 2")
    tb("carol", "claim", "api", "--ttl", "10m")
    say("bob wakes up and tries to complete with his stale lease: refused (fencing)")
    tb("bob", "complete", "api", "--note", "done (I think)", expect=1)

    say("carol ships the work as an artifact, tells bob, and hands off to dave")
    tb("carol", "artifact", "upload", "api.patch", "--step", "api")
    tb("carol", "send", "bob", "I took over api after your lease expired; patch uploaded")
    tb(
        "carol",
        "complete",
        "api",
        "--note",
        "invoices endpoint done",
        "--to",
        "dave",
        "--next-action",
        "deploy to staging",
    )

    say("dave tries to deploy but is blocked; alice's wait-for fails fast instead of hanging")
    tb("dave", "claim", "deploy")
    tb("dave", "complete", "deploy", "--blocked", "--note", "staging credentials missing")
    tb("alice", "wait-for", "api", "deploy", "--timeout", "30", expect=1)

    say("shared memory is versioned; a stale compare-and-swap is refused")
    tb("dave", "memory", "set", "deploy.status", '{"state": "blocked"}')
    tb(
        "alice",
        "memory",
        "set",
        "deploy.status",
        '{"state": "unblocked"}',
        "--if-version",
        "0",
        expect=1,
    )
    tb("alice", "memory", "set", "deploy.status", '{"state": "unblocked"}', "--if-version", "1")
    tb("alice", "memory", "history", "deploy.status")

    say("alice broadcasts; bob reads his inbox and acknowledges it")
    tb("alice", "send", "--all", "credentials are in the vault now; dave please retry")
    tb("bob", "inbox", "--unread", "--ack")
    tb("bob", "inbox", "--unread")

    say("dave re-opens the blocked step on purpose and finishes it")
    tb("dave", "reopen", "deploy", "--reason", "credentials fixed")
    tb("dave", "claim", "deploy")
    tb("dave", "complete", "deploy", "--note", "deployed to staging")
    tb("alice", "wait-for", "plan", "api", "deploy", "--timeout", "30")

    say("the record: steps, agents, handoffs, the event log, and the replay")
    tb("alice", "steps")
    tb("alice", "agents")
    tb("alice", "handoff", "show", "api")
    tb("alice", "log")
    tb("alice", "replay", "--out", "run.html")

    capture()
    harness()
    capsules()
    print(
        f"\n{BOLD}Done.{RESET} The whole run (agents, handoffs, sessions, the harness's "
        f"generations, the capsule) is in {BUCKET}; one-file timeline: {OUT / 'run.html'}"
    )
    if sys.stdin.isatty() and sys.stdout.isatty():
        ui()
    else:
        print(f"Browse it: {UI_URL}  (`make ui` serves it; Ctrl-C stops)")


UI_PORT = 8788
UI_URL = f"http://127.0.0.1:{UI_PORT}/"


def ui() -> None:
    """Serve `tracebox ui` over the demo bucket in the foreground until Ctrl-C."""
    import socket

    if not (OUT / ".tracebox.toml").exists():
        sys.exit("no demo run here yet: run `make demo` first")
    port = UI_PORT
    with socket.socket() as s:  # a busy port (a second `make ui`): take a free one
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            port = 0
    env = {**os.environ, **SANDBOX, "TRACEBOX_AGENT": "viewer"}
    print(f"\n{BOLD}# browse the run: tracebox ui{RESET}", flush=True)
    child = subprocess.Popen(
        [sys.executable, "-m", "tracebox", "ui", "--port", str(port)], cwd=OUT, env=env
    )
    try:
        child.wait()
    except KeyboardInterrupt:
        child.wait(timeout=10)


def capture() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import demo_transcripts

    paths = demo_transcripts.write_all(HOME, OUT.resolve())

    say("carol's Claude Code session and dave's Codex session, as the agents wrote them")
    tb("carol", "session", "inspect", str(paths["claude-code"]))
    say("mirror every agent's sessions of this project into the bucket, scrubbed")
    tb("alice", "session", "mirror", "--all")
    tb("alice", "session", "list")
    say("index them (local SQLite FTS5), then search and count")
    tb("alice", "index")
    tb("alice", "search", "connection refused")
    tb("alice", "stats", "--by", "model")
    say("export carol's session as ATIF (scrubbed, like everything that leaves the machine)")
    tb(
        "alice",
        "export",
        demo_transcripts.CLAUDE_SESSION,
        "--format",
        "atif",
        "-o",
        "carol.atif.json",
    )


def harness() -> None:
    """Generations of scripted agents fix a real race; each reads what the last one learned."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "harness_demo"))
    import scenario

    root = OUT / "harness"
    root.mkdir()
    repo = scenario.make_repo(root)
    model = scenario.ModelServer()  # a scripted model: no network, no paid API
    try:
        h = scenario.write_harness(root, repo, generations=3, stubborn=True)
        say("a harness: 3 generations x 4 agent variants on a hit counter that loses updates")
        print(
            f"    {DIM}(the agents talk to a scripted model through tracebox's proxy: {model.url}){RESET}"
        )
        os.environ["TRACEBOX_UPSTREAM_OPENAI"] = model.url
        out = tb("harness", "harness", "run", str(h))
        rid = out.split()[1].rstrip(":")
        tb("harness", "harness", "report", rid, "--out", str(root / "report"))
        say("what generation 1 left for generation 2 (observations.md, as every prompt got it)")
        md = next((BUCKET / "demo" / "harness" / rid / "gen-1").glob("observations.md")).read_text()
        for line in md.splitlines()[:14]:
            print(f"    {line}")
    finally:
        model.close()


def capsules() -> None:
    """erin's agent hits a bug in a library; the bug becomes a capsule; the library's
    maintainer replays it, fixes it, resolves it; erin's waiting agent unblocks."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import failing_session

    s = failing_session.make_failing_session(OUT / "calc")
    cap = OUT / "calc" / "capsule"
    say("erin's agent ran the calc library's tests and they failed: make that a Trace Capsule")
    tb("erin", "capsule", "create", str(s["transcript"]), "--out", str(cap))
    tb("erin", "capsule", "show", str(cap))
    say("share it through the bucket; erin's agent blocks until it is resolved")
    tb("erin", "capsule", "push", str(cap))
    cid = json.loads((cap / "capsule.json").read_text())["id"]
    env = {**os.environ, **SANDBOX, "TRACEBOX_AGENT": "erin", "NO_COLOR": "1"}
    print(f"{DIM}[erin]{RESET} $ tracebox capsule watch {cid} --timeout 5m   (in the background)")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "tracebox", "capsule", "watch", cid, "--timeout", "5m"],
        cwd=OUT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    say("the maintainer replays it against the snapshot: it reproduces (sandboxed, no network)")
    tb("frank", "capsule", "replay", cid, "--repo", str(s["bare"]))
    say("the maintainer fixes add(), pushes a branch, replays against the fix, resolves")
    failing_session.fix(s["work"])
    tb("frank", "capsule", "replay", cid, "--repo", str(s["bare"]), "--against", "fix")
    tb(
        "frank",
        "capsule",
        "resolve",
        cid,
        "--fixed-in",
        "fix",
        "--verify",
        "--repo",
        str(s["bare"]),
    )
    out, _ = watcher.communicate(timeout=60)
    for line in out.rstrip().splitlines():
        print(f"    {GREEN}[erin's watcher] {line}{RESET}")
    if watcher.returncode != 0:
        sys.exit(f"demo failed: capsule watch exited {watcher.returncode}")


if __name__ == "__main__":
    ui() if sys.argv[1:] == ["--ui"] else main()
