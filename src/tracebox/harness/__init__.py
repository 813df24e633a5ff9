"""The generational harness: variants of an agent in parallel, generation after generation,
each generation given what the earlier ones learned (``observations.md``).

- ``config.py`` — the harness file (TOML): run, variants or matrix, validator, live rules;
- ``run.py`` — a run: per generation, every variant in its own worktree with its model
  calls captured, the validator, the observer; ``run_variant`` is one variant end to end;
- ``live.py`` — the live rules that stop a stuck agent while it runs;
- ``executors/`` — where variants run: local threads, or Ray;
- ``report.py`` — ``report.md`` and a self-contained ``report.html``.

Python API::

    from tracebox.harness import config, run
    summary = run.run(config.load("HARNESS.toml"), tracebox.open_project())
"""
