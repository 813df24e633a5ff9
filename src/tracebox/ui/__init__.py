"""`tracebox ui`: every run, session, observation and capsule of a bucket, in the browser.

- ``app.py`` — the Starlette routes (read-only, same-origin only, token off loopback);
- ``data.py`` — what the pages show, from the bucket and the local index;
- ``pages.py`` — the pages, rendered on the server (escaped HTML);
- ``static/`` — the UI's own CSS and JavaScript (no CDN, no network): ``ui.js``
  (shared), ``runs.js`` (live mode of the timeline), ``session.js`` (step-by-step keys).
  The timeline itself is ``coord/timeline.py``'s, the same as ``tracebox replay``'s.
"""
