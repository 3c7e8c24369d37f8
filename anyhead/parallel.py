"""Fan work out over a Dask cluster: a LocalCluster by default, any scheduler address to go
multi-machine. Results stream back as they finish, with a progress bar; failures are logged
with the item that failed and collected, never silently dropped."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from tqdm import tqdm

log = logging.getLogger(__name__)


def map_tasks(fn: Callable[[Any], Any], items: Iterable[Any], workers: int = 1, scheduler: str | None = None,
              desc: str = "tasks") -> tuple[list[Any], list[tuple[Any, str]]]:
    """Run ``fn(item)`` for every item. Returns ``(results, failures)``; failures are (item, error).

    ``workers <= 1`` and no scheduler runs in-process (tests, debugging). ``scheduler`` is a Dask
    scheduler address (``tcp://host:8786``); otherwise a LocalCluster of ``workers`` processes.
    """
    items = list(items)
    results: list[Any] = []
    failures: list[tuple[Any, str]] = []
    if not items:
        return results, failures
    if scheduler is None and workers <= 1:
        for it in tqdm(items, desc=desc):
            try:
                results.append(fn(it))
            except Exception as e:  # keep going; report every failure at the end
                log.error("%s failed on %r: %s", desc, it, e)
                failures.append((it, f"{type(e).__name__}: {e}"))
        return results, failures

    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.WARNING)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        futures = {client.submit(fn, it, pure=False): it for it in items}
        for fut in tqdm(as_completed(futures), total=len(futures), desc=desc):
            it = futures[fut]
            try:
                results.append(fut.result())
            except Exception as e:
                log.error("%s failed on %r: %s", desc, it, e)
                failures.append((it, f"{type(e).__name__}: {e}"))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return results, failures
