"""The Ray executor: each variant a Ray task (``ray.init()`` joins the cluster named by
``RAY_ADDRESS``, else starts a local one), at most ``parallel`` in flight; results in
task order. Workers need tracebox installed and the repository path reachable."""

from __future__ import annotations

from ...errors import TraceboxError


def run(fn, tasks: list, parallel: int, on_done=None) -> list:
    try:
        import ray
    except ImportError:
        raise TraceboxError("the Ray executor needs ray: pip install 'tracebox[ray]'") from None
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=0.5, max_retries=0)(fn)
    results: list = [None] * len(tasks)
    pending: dict = {}
    queue = list(enumerate(tasks))
    while queue or pending:
        while queue and len(pending) < max(1, parallel):
            i, t = queue.pop(0)
            pending[remote.remote(t)] = i
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            i = pending.pop(ref)
            results[i] = r = ray.get(ref)
            if on_done:
                on_done({"type": "variant.end", **r})
    return results
