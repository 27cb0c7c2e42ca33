"""One function to run independent tasks in parallel: :func:`parallel_map`.

Every parallel valuation code path (Monte Carlo samplers, exact KNN-Shapley chunks,
asymmetric Shapley) goes through :func:`parallel_map`, so the choice of backend lives in
one place:

``"joblib"``
    joblib's default backend (loky worker processes, reused between calls), or whatever
    backend an enclosing ``joblib.parallel_config(...)`` selects.
``"loky"`` / ``"threading"`` (alias ``"threads"``) / ``"sequential"``
    a specific joblib backend.  Threads suit functions that release the GIL (numpy,
    numba ``nogil``) and avoid pickling the arguments.
``"ray"``
    one Ray task per item.  With ``ray_address`` it connects to an existing cluster
    (``ray.init(address=ray_address)``); otherwise, if Ray is not running yet, it starts
    a local instance with ``n_jobs`` CPUs (no dashboard, worker logs not forwarded).  An
    already initialised Ray session is reused and never shut down here.

The signature is stable; callers rely on it::

    parallel_map(fn, tasks, n_jobs=1, backend="joblib", ray_address=None) -> list

``fn`` is called once per task as ``fn(task)`` and the results come back **in the order
of** ``tasks`` whatever the backend, so results never depend on scheduling.  ``fn`` must
be picklable for process and Ray backends (module-level functions, ``functools.partial``
of them, or closures, which joblib and Ray serialise with cloudpickle).  With
``n_jobs == 1`` and a joblib backend the tasks run in the calling process with no
serialisation at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from databazaar.core.errors import InvalidInput

__all__ = ["BACKENDS", "effective_n_jobs", "parallel_map"]

T = TypeVar("T")
R = TypeVar("R")

#: Accepted values of ``backend``.
BACKENDS = ("joblib", "loky", "threading", "threads", "sequential", "ray")


def check_backend(backend: Any) -> str:
    """Return the canonical backend name or raise :class:`InvalidInput`."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise InvalidInput(
            f"unknown parallel backend {backend!r}",
            hint=f"use one of {', '.join(BACKENDS)}",
        )
    return "threading" if backend == "threads" else backend


def check_n_jobs(n_jobs: Any) -> int:
    """Validate ``n_jobs`` (a non-zero int; negative counts back from the CPU count)."""
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0:
        raise InvalidInput(
            f"n_jobs must be a non-zero integer, got {n_jobs!r}",
            hint="use 1 for no parallelism, -1 for all cores",
        )
    return int(n_jobs)


def effective_n_jobs(n_jobs: int, backend: str = "joblib") -> int:
    """Number of workers ``n_jobs`` stands for (joblib semantics: -1 = all CPUs)."""
    n_jobs = check_n_jobs(n_jobs)
    backend = check_backend(backend)
    if backend == "sequential":
        return 1
    if backend == "ray":
        if n_jobs > 0:
            return n_jobs
        try:
            import ray

            if ray.is_initialized():
                cpus = int(ray.cluster_resources().get("CPU", 1))
                return max(1, cpus + 1 + n_jobs)
        except ImportError:  # pragma: no cover - reported when the map runs
            pass
        return max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    from joblib import effective_n_jobs as _joblib_effective

    return max(1, int(_joblib_effective(n_jobs)))


def parallel_map(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    n_jobs: int = 1,
    backend: str = "joblib",
    ray_address: str | None = None,
) -> list[R]:
    """Apply ``fn`` to every task, possibly in parallel; results in task order.

    Args:
        fn: function of one argument.
        tasks: the arguments, one per call.
        n_jobs: number of parallel workers; ``-1`` means all CPUs (joblib semantics).
        backend: ``"joblib"`` (default), ``"loky"``, ``"threading"``/``"threads"``,
            ``"sequential"`` or ``"ray"``; see the module docstring.
        ray_address: address of a running Ray cluster (``"auto"``, ``"ray://host:10001"``)
            for ``backend="ray"``; ``None`` starts or reuses a local Ray.

    Returns:
        ``[fn(t) for t in tasks]``, computed in parallel.

    Raises:
        InvalidInput: unknown backend, bad ``n_jobs``, or Ray requested but not installed.
    """
    backend = check_backend(backend)
    n_jobs = check_n_jobs(n_jobs)
    items = list(tasks)
    if not items:
        return []
    if backend == "ray":
        return _ray_map(fn, items, n_jobs, ray_address)
    if backend == "sequential" or (n_jobs == 1 and backend != "joblib") or len(items) == 1:
        return [fn(t) for t in items]
    from joblib import Parallel, delayed

    if backend == "joblib":
        if n_jobs == 1:
            return [fn(t) for t in items]
        runner = Parallel(n_jobs=n_jobs)
    else:
        runner = Parallel(n_jobs=n_jobs, backend=backend)
    return list(runner(delayed(fn)(t) for t in items))


# -- Ray ---------------------------------------------------------------------------------

_RAY_CALL: Any = None


def _ray_call(fn: Callable[[Any], Any], task: Any) -> Any:
    return fn(task)


def ensure_ray(n_jobs: int = -1, ray_address: str | None = None) -> Any:
    """Import Ray and initialise it if needed; returns the ``ray`` module.

    ``ray_address`` connects to a running cluster; otherwise a local instance with
    ``n_jobs`` CPUs (all CPUs for ``n_jobs < 1``) is started unless one is already up.
    """
    try:
        import ray
    except ImportError as exc:
        raise InvalidInput(
            "backend='ray' needs Ray", hint="pip install 'databazaar[distributed]'"
        ) from exc
    if not ray.is_initialized():
        if ray_address is not None:
            ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False)
        else:
            cpus = n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + n_jobs)
            ray.init(
                num_cpus=cpus,
                include_dashboard=False,
                ignore_reinit_error=True,
                log_to_driver=False,
            )
    return ray


def _ray_map(fn: Callable[[T], R], items: list[T], n_jobs: int, ray_address: str | None) -> list[R]:
    global _RAY_CALL
    ray = ensure_ray(n_jobs, ray_address)
    if _RAY_CALL is None:
        _RAY_CALL = ray.remote(_ray_call)
    fn_ref = ray.put(fn)  # serialise the (possibly large) function once, not per task
    refs = [_RAY_CALL.remote(fn_ref, t) for t in items]
    return list(ray.get(refs))
