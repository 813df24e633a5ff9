"""Trace Capsules: a failing session packaged as a replayable, scrubbed bug report.

Layout (docs/capsule.md):

- ``model.py`` — the format: ``capsule.json`` structure, canonical id, file hashes, verify;
- (failure signatures and replay verdicts: ``trace/signature.py``, shared with the observer);
- ``create.py`` — a Session + its repository → a capsule (intent, trajectory, context,
  failure, snapshot, reproduce, metrics), everything through the scrubber;
- ``render.py`` — capsule.md, the terminal summary, the issue body;
- ``sandbox.py`` — running commands isolated (env allow-list, throwaway HOME, no network);
- ``replay.py`` — materialize the snapshot in a worktree, run the reproduction, verdict;
- ``share.py`` — push to the bucket, resolve, watch; the issue body and ``gh``.
"""
