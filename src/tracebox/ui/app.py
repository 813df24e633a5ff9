"""The `tracebox ui` web app: Starlette routes over ``data.py`` and ``pages.py``.

Read-only by construction: every route is a GET; nothing here writes to the bucket. Every
response carries a Content-Security-Policy that allows only this origin (``default-src
'self'``; scripts and styles are the files under ``/static/``), so a page can make no
request elsewhere and no string from the bucket can run. Bound to 127.0.0.1 by the CLI;
on another host a token is required (``?token=…`` once, then a cookie).

Live mode: ``/api/events?after=KEY`` returns the events added to the bucket's log since
KEY (the cache fetches only what is new), and ``/api/feed`` relays, as Server-Sent
Events, the live feed of a running `tracebox proxy` (model calls as they happen), so the
browser never talks to another origin.
"""

from __future__ import annotations

import hmac
import threading
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from ..errors import NotFound, TraceboxError
from . import data, pages

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
INDEX_EVERY_S = 30.0


class State:
    """What the app holds: the project, the index path, the event cache."""

    def __init__(self, project, index_path: str | None, token: str | None):
        self.project = project
        self.index_path = index_path
        self.token = token
        self.events = data.EventCache(project)
        self.events.refresh()
        self._indexed = 0.0
        self._index_lock = threading.Lock()

    def db(self):
        import sqlite3

        from ..index import db

        conn = db.connect(self.index_path)
        conn.row_factory = sqlite3.Row
        return conn

    def reindex(self, force: bool = False) -> None:
        """Index what changed in the bucket (sessions and captured calls), at most every
        ``INDEX_EVERY_S`` seconds; failures only leave the index as it was."""
        from ..index import sync

        if not force and time.monotonic() - self._indexed < INDEX_EVERY_S:
            return
        if not self._index_lock.acquire(blocking=False):
            return
        try:
            conn = self.db()
            try:
                sync.index_bucket(conn, self.project)
                sync.index_calls(conn, self.project)
            finally:
                conn.close()
        except TraceboxError:
            pass
        finally:
            self._indexed = time.monotonic()
            self._index_lock.release()


def _page(st: State, title: str, active: str, body: str, **kw) -> HTMLResponse:
    return HTMLResponse(pages.layout(title, active, body, project=st.project.name, **kw))


def create_app(project, *, index_path: str | None = None, token: str | None = None) -> Starlette:
    st = State(project, index_path, token)
    threading.Thread(target=st.reindex, kwargs={"force": True}, daemon=True).start()

    def home(request: Request):
        conn = st.db()
        try:
            return _page(st, "home", "", pages.home(data.project_summary(project, st.events, conn)))
        finally:
            conn.close()

    def timeline_parts() -> tuple[dict, int]:
        """The run timeline: the bucket's events, plus the model and tool calls of the
        sessions its agents made (from the index), as marks on the same lanes."""
        from ..coord import timeline

        st.events.refresh()
        st.reindex()
        evs = st.events.events()
        conn = st.db()
        try:
            calls = data.call_events(conn, {str(x.get("agent")) for x in evs if x.get("agent")})
        finally:
            conn.close()
        for c in calls:
            c["data"]["href"] = pages.session_href(*c.pop("_href"))
        return timeline.parts(evs + calls, title=f"project {project.name}"), len(evs)

    def runs(request: Request):
        parts, count = timeline_parts()
        body = pages.runs(parts, st.events.last_key(), count)
        return _page(
            st,
            "runs",
            "runs",
            body,
            extra_css="/static/timeline.css",
            scripts=("/static/timeline.js", "/static/runs.js"),
        )

    def runs_fragment(request: Request):
        """The timeline's markup and data, for the live mode to swap in."""
        parts, count = timeline_parts()
        return HTMLResponse(
            parts["body"] + parts["data"],
            headers={"x-last-key": st.events.last_key() or "", "x-count": str(count)},
        )

    def api_events(request: Request):
        from ..coord.timeline import category_of

        st.events.refresh()
        after = request.query_params.get("after") or None
        since = st.events.since(after)
        return JSONResponse(
            {
                "last": st.events.last_key(),
                "count": len(since),
                "events": [
                    {
                        "key": x["_key"],
                        "ts": x.get("ts"),
                        "agent": x.get("agent"),
                        "type": x.get("type"),
                        "step": x.get("step"),
                        "category": category_of(str(x.get("type") or "")),
                    }
                    for x in since[-500:]
                ],
            }
        )

    async def api_feed(request: Request):
        """The running proxy's live feed, relayed (same origin for the browser)."""
        from ..capture.proxy import server

        record = server.find_running(timeout=0.5)
        if record is None:  # nothing to relay now: the browser asks again later
            return Response(
                "retry: 15000\n: no tracebox proxy is running\n\n", media_type="text/event-stream"
            )

        async def relay():
            from ..capture.proxy.upstream import Pool

            pool = Pool(record["url"], connect_timeout=5, read_timeout=60)
            resp = await pool.request("GET", b"/_tracebox/events", [], b"")
            try:
                async for chunk in resp.chunks():
                    if await request.is_disconnected():
                        return
                    yield chunk
            finally:
                resp.release()
                pool.close()

        return StreamingResponse(
            relay(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )

    def sessions(request: Request):
        st.reindex()
        p = request.query_params
        page = _int(p.get("page"), 1)
        filters = {"harness": p.get("harness") or None, "agent": p.get("agent") or None}
        conn = st.db()
        try:
            rows, total = data.sessions(conn, page=page, per_page=50, **filters)
        finally:
            conn.close()
        return _page(
            st,
            "sessions",
            "sessions",
            pages.sessions_list(rows, total, page, 50, {k: v for k, v in filters.items() if v}),
        )

    def session(request: Request):
        harness, sid = request.path_params["harness"], request.path_params["sid"]
        p = request.query_params
        conn = st.db()
        try:
            row = data.session_row(conn, harness, sid)
        finally:
            conn.close()
        s = data.load_session(project, row)
        focus = _int(p.get("step"), None)
        sub = p.get("sub") or None
        page = _int(p.get("page"), None)
        if page is None:
            page = 1 if focus is None or sub else focus // pages.STEPS_PER_PAGE + 1
        body = pages.session_page(row, s, page, focus=focus, sub=sub)
        return _page(st, f"session {sid}", "sessions", body, scripts=("/static/session.js",))

    def session_by_id(request: Request):
        sid = request.path_params["sid"]
        conn = st.db()
        try:
            r = conn.execute(
                "SELECT harness, id, root FROM sessions WHERE id = ? ORDER BY root IS NOT NULL LIMIT 1",
                (sid,),
            ).fetchone()
            if r is not None and r[2] is not None:  # a subagent: its parent's page
                parent = conn.execute(
                    "SELECT harness, id FROM sessions WHERE key = ?", (r[2],)
                ).fetchone()
                return RedirectResponse(
                    pages.session_href(
                        parent[0], parent[1], _int(request.query_params.get("step"), 0), sid
                    ),
                    302,
                )
        finally:
            conn.close()
        if r is None:
            raise NotFound(f"no session {sid} in the index")
        return RedirectResponse(
            pages.session_href(r[0], r[1], _int(request.query_params.get("step"), None)), 302
        )

    def search(request: Request):
        from ..index.db import since_bound

        p = request.query_params
        query = (p.get("q") or "").strip()
        filters = {k: p.get(k) or None for k in ("harness", "agent", "model", "since", "kind")}
        if not query:
            return _page(st, "search", "search", pages.search_page("", filters, None, None))
        st.reindex()
        conn = st.db()
        try:
            f = dict(filters)
            if f.get("since"):
                f["since"] = since_bound(f["since"])
            hits = data.search(conn, query, limit=_int(p.get("limit"), 50), **f)
            err = None
        except TraceboxError as exc:
            hits, err = None, str(exc)
        finally:
            conn.close()
        return _page(st, f"search {query}", "search", pages.search_page(query, filters, hits, err))

    def stats(request: Request):
        from ..index.db import since_bound

        st.reindex()
        p = request.query_params
        by = p.get("by") or "model"
        since = p.get("since") or None
        conn = st.db()
        try:
            result = data.stats(conn, by, since_bound(since) if since else None)
            errors = data.top_errors(conn)
        finally:
            conn.close()
        return _page(st, "stats", "stats", pages.stats_page(result, by, since, errors))

    def observations(request: Request):
        runs = data.harness_runs(project)
        entries, run_id = data.observations(project, request.query_params.get("run") or None, runs)
        return _page(
            st,
            "observations",
            "observations",
            pages.observations_page(entries, run_id, [r["run"] for r in runs]),
        )

    def harness(request: Request):
        return _page(st, "harness runs", "harness", pages.harness_list(data.harness_runs(project)))

    def harness_run(request: Request):
        from ..harness.report import html_report

        rid = request.path_params["run"]
        return _page(st, f"harness {rid}", "harness", pages.harness_run(html_report(project, rid)))

    def capsules(request: Request):
        return _page(st, "capsules", "capsules", pages.capsules_list(data.capsules(project)))

    def capsule(request: Request):
        c = data.capsule(project, request.path_params["cid"])
        if c is None:
            raise NotFound(f"no capsule {request.path_params['cid']}")
        return _page(st, request.path_params["cid"], "capsules", pages.capsule_page(c))

    def static(request: Request):
        name = request.path_params["name"]
        if name == "timeline.js" or name == "timeline.css":
            from ..coord import timeline

            parts = timeline.parts([])
            body, kind = (
                (parts["js"], "text/javascript")
                if name.endswith(".js")
                else (parts["css"], "text/css")
            )
            return Response(body, media_type=kind, headers={"cache-control": "max-age=300"})
        path = STATIC / name
        if "/" in name or not path.is_file():
            raise NotFound(name)
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response(
            path.read_bytes(), media_type=kind, headers={"cache-control": "max-age=300"}
        )

    def favicon(request: Request):
        icon = (
            '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
            '<rect width="16" height="16" rx="3" fill="#0b5cad"/>'
            '<path d="M4 4h8M8 4v8" stroke="#fff" stroke-width="2"/></svg>'
        )
        return Response(
            icon, media_type="image/svg+xml", headers={"cache-control": "max-age=86400"}
        )

    def health(request: Request):
        return JSONResponse({"ok": True, "project": project.name})

    routes = [
        Route("/", home),
        Route("/runs", runs),
        Route("/runs/fragment", runs_fragment),
        Route("/api/events", api_events),
        Route("/api/feed", api_feed),
        Route("/api/health", health),
        Route("/favicon.ico", favicon),
        Route("/sessions", sessions),
        Route("/sessions/by-id/{sid:path}", session_by_id),
        Route("/sessions/{harness}/{sid:path}", session),
        Route("/search", search),
        Route("/stats", stats),
        Route("/observations", observations),
        Route("/harness", harness),
        Route("/harness/{run}", harness_run),
        Route("/capsules", capsules),
        Route("/capsules/{cid}", capsule),
        Route("/static/{name}", static),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_Guard, token=token)],
        exception_handlers={NotFound: _not_found, TraceboxError: _failed, 404: _not_found},
    )
    app.state.ui = st
    return app


class _Guard(BaseHTTPMiddleware):
    """Security headers on every response; the token check when one is set; GET only."""

    def __init__(self, app, token: str | None):
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next):
        if request.method not in ("GET", "HEAD"):
            return PlainTextResponse("tracebox ui is read-only", status_code=405)
        if self.token:
            given = request.query_params.get("token") or request.cookies.get("tb_token") or ""
            if not hmac.compare_digest(given, self.token):
                return PlainTextResponse(
                    "a token is required: open the URL `tracebox ui` printed", status_code=401
                )
        resp = await call_next(request)
        resp.headers["content-security-policy"] = CSP
        resp.headers["x-content-type-options"] = "nosniff"
        resp.headers["referrer-policy"] = "no-referrer"
        resp.headers["x-frame-options"] = "DENY"
        if self.token and request.query_params.get("token"):
            resp.set_cookie("tb_token", self.token, httponly=True, samesite="strict")
        return resp


def _not_found(request: Request, exc) -> HTMLResponse:
    msg = str(exc.detail) if hasattr(exc, "detail") else str(exc)
    return HTMLResponse(
        pages.layout(
            "not found", "", pages.error_page(404, msg), project=request.app.state.ui.project.name
        ),
        status_code=404,
    )


def _failed(request: Request, exc) -> HTMLResponse:
    return HTMLResponse(
        pages.layout(
            "error", "", pages.error_page(500, str(exc)), project=request.app.state.ui.project.name
        ),
        status_code=500,
    )


def _int(value, default):
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def serve(
    project,
    *,
    host: str = "127.0.0.1",
    port: int = 8788,
    index_path: str | None = None,
    token: str | None = None,
    ready=None,
) -> None:
    """Run the UI in the foreground (uvicorn) until interrupted."""
    import uvicorn

    from ..capture.proxy.server import bind

    app = create_app(project, index_path=index_path, token=token)
    sock = bind(host, port)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    if ready:
        ready(sock.getsockname()[1])
    server.run(sockets=[sock])
