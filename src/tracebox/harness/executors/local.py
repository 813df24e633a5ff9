"""The local executor: a thread per running variant (each one drives a subprocess), at
most ``parallel`` at once; a slot freed by a finished or stopped agent is reused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed


def run(fn, tasks: list, parallel: int, on_done=None) -> list:
    results: list = [None] * len(tasks)
    with ThreadPoolExecutor(
        max(1, min(parallel, len(tasks) or 1)), thread_name_prefix="variant"
    ) as pool:
        futures = {pool.submit(fn, t): i for i, t in enumerate(tasks)}
        for f in as_completed(futures):
            results[futures[f]] = r = f.result()
            if on_done:
                on_done({"type": "variant.end", **r})
    return results
