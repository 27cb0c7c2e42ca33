"""The one parallel setting: :class:`ParallelConfig` and :func:`parallel_map`.

Every parallel code path of the project (Monte Carlo valuation, exact KNN chunks,
asymmetric Shapley, confidence intervals, mixture proxy runs) takes the same three
arguments and nothing else:

``n_jobs``
    number of workers; ``1`` runs in the calling thread, ``-1`` means all CPUs (joblib
    semantics: ``-2`` all but one, ...).
``backend``
    one of :data:`BACKENDS`:

    ``"threads"``
        worker threads of this process (joblib's ``threading`` backend).  Suits work that
        releases the GIL (numpy, BLAS, numba ``nogil`` kernels) and avoids pickling.
    ``"processes"``
        worker processes (joblib's ``loky`` backend, workers reused between calls).
        Suits pure-Python work such as fitting scikit-learn models.
    ``"ray"``
        one Ray task per item.  With ``ray_address`` it connects to an existing cluster
        (``ray.init(address=ray_address)``); otherwise, if Ray is not running yet, a local
        instance with ``n_jobs`` CPUs is started (no dashboard, worker logs not
        forwarded).  An initialised Ray session is reused and never shut down here.
        :func:`ensure_ray` is the only place the project initialises Ray.
``ray_address``
    address of a running Ray cluster (``"auto"``, ``"ray://host:10001"``) for
    ``backend="ray"``; ``None`` starts or reuses a local Ray.

The joblib backends run inside ``joblib.parallel_config(backend=..., n_jobs=...)``, so a
joblib ``Parallel`` nested in the mapped function sees the same setting.  Results always
come back **in task order**, whatever the backend, so nothing depends on scheduling.

:func:`blas_limit` caps BLAS/OpenMP thread pools (process-wide, reference counted), and
:meth:`ParallelConfig.thread_blas` gives worker threads one BLAS thread each so that
``n_jobs`` threads do not oversubscribe the cores.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from databazaar.core.errors import InvalidInput

__all__ = [
    "BACKENDS",
    "ParallelConfig",
    "blas_limit",
    "check_backend",
    "check_n_jobs",
    "effective_n_jobs",
    "ensure_ray",
    "parallel_map",
]

T = TypeVar("T")
R = TypeVar("R")

#: The accepted values of ``backend``, everywhere in the project.
BACKENDS = ("threads", "processes", "ray")
_JOBLIB_NAME = {"threads": "threading", "processes": "loky"}


def check_backend(backend: Any) -> str:
    """Return ``backend`` if it is one of :data:`BACKENDS`, else raise :class:`InvalidInput`."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise InvalidInput(
            f"unknown backend {backend!r}",
            hint=f"use one of {', '.join(BACKENDS)}",
        )
    return backend


def check_n_jobs(n_jobs: Any) -> int:
    """Validate ``n_jobs`` (a non-zero int; negative counts back from the CPU count)."""
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0:
        raise InvalidInput(
            f"n_jobs must be a non-zero integer, got {n_jobs!r}",
            hint="use 1 for no parallelism, -1 for all cores",
        )
    return int(n_jobs)


def _cpus_for(n_jobs: int) -> int:
    return n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + n_jobs)


@dataclass(frozen=True)
class ParallelConfig:
    """Validated ``(n_jobs, backend, ray_address)``: how independent tasks are run.

    Example:
        >>> ParallelConfig(n_jobs=2, backend="threads").map(abs, [-1, 2, -3])
        [1, 2, 3]
    """

    n_jobs: int = 1
    backend: str = "processes"
    ray_address: str | None = None

    def __post_init__(self) -> None:
        check_n_jobs(self.n_jobs)
        check_backend(self.backend)
        if self.ray_address is not None and not isinstance(self.ray_address, str):
            raise InvalidInput(f"ray_address must be a string or None, got {self.ray_address!r}")

    @property
    def workers(self) -> int:
        """Number of workers ``n_jobs`` stands for (``-1`` = all CPUs)."""
        if self.backend == "ray":
            if self.n_jobs > 0:
                return self.n_jobs
            try:
                import ray

                if ray.is_initialized():
                    cpus = int(ray.cluster_resources().get("CPU", 1))
                    return max(1, cpus + 1 + self.n_jobs)
            except ImportError:  # pragma: no cover - reported when the map runs
                pass
            return _cpus_for(self.n_jobs)
        from joblib import effective_n_jobs as _joblib_effective

        return max(1, int(_joblib_effective(self.n_jobs)))

    @property
    def in_process(self) -> bool:
        """True when tasks run in this process (threads, or a single worker)."""
        return self.backend == "threads" or (self.backend != "ray" and self.n_jobs == 1)

    def map(
        self,
        fn: Callable[[T], R],
        tasks: Iterable[T],
        progress: Callable[[int], None] | None = None,
        weight: Callable[[T], int] | None = None,
    ) -> list[R]:
        """``[fn(t) for t in tasks]``, computed with this setting; results in task order.

        ``fn`` must be picklable for processes and Ray (module-level functions,
        ``functools.partial`` of them, or closures, which joblib and Ray serialise with
        cloudpickle).  One worker (or one task) runs in the calling thread with no
        serialisation at all.  ``progress(weight(task))`` (weight 1 by default) is called
        as each result is collected, in task order.
        """
        items = list(tasks)
        out: list[R] = []

        def collect(results: Iterable[R]) -> list[R]:
            for task, result in zip(items, results, strict=False):
                out.append(result)
                if progress is not None:
                    progress(1 if weight is None else weight(task))
            return out

        if self.backend == "ray" and items:
            return collect(_ray_map(fn, items, self.n_jobs, self.ray_address))
        if self.n_jobs == 1 or len(items) <= 1:
            return collect(fn(t) for t in items)
        from joblib import Parallel, delayed, parallel_config

        with parallel_config(backend=_JOBLIB_NAME[self.backend], n_jobs=self.n_jobs):
            return collect(Parallel(return_as="generator")(delayed(fn)(t) for t in items))

    def thread_blas(self) -> contextlib.AbstractContextManager[None]:
        """One BLAS thread per worker while ``n_jobs`` threads run, else a no-op."""
        if self.backend == "threads" and self.n_jobs != 1:
            return blas_limit(1)
        return contextlib.nullcontext()


def effective_n_jobs(n_jobs: int, backend: str = "processes") -> int:
    """Number of workers ``n_jobs`` stands for on ``backend`` (``-1`` = all CPUs)."""
    return ParallelConfig(n_jobs, backend).workers


def parallel_map(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    n_jobs: int = 1,
    backend: str = "processes",
    ray_address: str | None = None,
) -> list[R]:
    """Apply ``fn`` to every task, possibly in parallel; results in task order.

    Shorthand for ``ParallelConfig(n_jobs, backend, ray_address).map(fn, tasks)``.

    Raises:
        InvalidInput: unknown backend, bad ``n_jobs``, or Ray requested but not installed.
    """
    return ParallelConfig(n_jobs, backend, ray_address).map(fn, tasks)


# -- Ray ---------------------------------------------------------------------------------

_RAY_CALL: Any = None


def _ray_call(fn: Callable[[Any], Any], task: Any) -> Any:
    return fn(task)


def ensure_ray(n_jobs: int = -1, ray_address: str | None = None) -> Any:
    """Import Ray and initialise it if needed; returns the ``ray`` module.

    The one place the project calls ``ray.init``.  ``ray_address`` connects to a running
    cluster; otherwise a local instance with ``n_jobs`` CPUs (all CPUs for
    ``n_jobs < 1``) is started unless one is already up.
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
            ray.init(
                num_cpus=_cpus_for(n_jobs),
                include_dashboard=False,
                ignore_reinit_error=True,
                log_to_driver=False,
            )
    return ray


def _ray_map(
    fn: Callable[[T], R], items: list[T], n_jobs: int, ray_address: str | None
) -> Iterator[R]:
    global _RAY_CALL
    ray = ensure_ray(n_jobs, ray_address)
    if _RAY_CALL is None:
        _RAY_CALL = ray.remote(_ray_call)
    fn_ref = ray.put(fn)  # serialise the (possibly large) function once, not per task
    refs = [_RAY_CALL.remote(fn_ref, t) for t in items]
    return (ray.get(ref) for ref in refs)


# -- BLAS threads ------------------------------------------------------------------------

_CONTROLLER: Any = None
_LIMIT_LOCK = threading.Lock()
_LIMIT_DEPTH = 0
_LIMITER: Any = None


@contextlib.contextmanager
def blas_limit(n_threads: int | None) -> Iterator[None]:
    """Limit BLAS/OpenMP thread pools to ``n_threads`` while inside (``None``: no-op).

    Thread pools are process-wide, so the limit is reference-counted: the first context
    to enter sets it, the last to leave restores the original sizes, and nested or
    concurrent contexts (threads backend) cost only a lock.  While a limit is active a
    different ``n_threads`` does not change it.
    """
    global _CONTROLLER, _LIMIT_DEPTH, _LIMITER
    if n_threads is None:
        yield
        return
    with _LIMIT_LOCK:
        if _LIMIT_DEPTH == 0:
            if _CONTROLLER is None:
                from threadpoolctl import ThreadpoolController

                _CONTROLLER = ThreadpoolController()
            _LIMITER = _CONTROLLER.limit(limits=n_threads)
        _LIMIT_DEPTH += 1
    try:
        yield
    finally:
        with _LIMIT_LOCK:
            _LIMIT_DEPTH -= 1
            if _LIMIT_DEPTH == 0 and _LIMITER is not None:
                _LIMITER.restore_original_limits()
                _LIMITER = None
