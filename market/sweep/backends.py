"""Where a sweep's jobs run: in this process, in a local process pool, or as Ray tasks.

Every backend runs the same function on the same tasks (`worker.run_task`) and hands each
`Outcome` to ``on_outcome`` as it arrives; ``on_outcome`` returns False to stop the sweep. On a
stop (a failed job, or Ctrl-C in the parent) jobs not yet started are cancelled and running ones
are asked to stop after their current round: they flush their rows and stay resumable. Outcomes of
jobs that finished meanwhile are still delivered. A job's rows do not depend on the backend or the
number of workers (each job's randomness is its own seed's, `folder.job_seed`).
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .errors import SweepError
from .worker import Outcome, Task, init_pool_worker, run_task

OnOutcome = Callable[[Outcome], bool]
BACKENDS = ("process", "ray")
RAY_HINT = "pip install 'admarket[ray]'"


def default_workers() -> int:
    """The number of cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class SerialBackend:
    """One worker: every job in this process, one after another (engines built once here)."""

    workers = 1
    label = "1 worker (this process)"

    def start(self) -> None:
        """Nothing to connect to."""

    def close(self) -> None:
        """Nothing to release."""

    def run(self, tasks: Sequence[Task], on_outcome: OnOutcome) -> None:
        for task in tasks:
            outcome = run_task(task)
            if not on_outcome(outcome):
                return


def _context():
    """Workers forked from a forkserver that imported admarket once (later sweeps of this
    process start at once), or spawned where there is no forkserver. Never plain fork, which
    would copy this process's engines and threads."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["market.sweep.worker"])
    return context


class PoolBackend:
    """K worker processes. Each keeps its engines between jobs; when this process dies, a
    worker stops after its current round (rows flushed) and exits."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.label = f"{workers} worker processes"

    def start(self) -> None:
        """Workers start with the first job."""

    def close(self) -> None:
        """The pool shuts down at the end of `run`."""

    def run(self, tasks: Sequence[Task], on_outcome: OnOutcome) -> None:
        context = _context()
        stop = context.Event()
        lifeline, held = context.Pipe(duplex=False)  # only this process holds the write end
        env = tasks[0].env if tasks else {}
        try:
            with ProcessPoolExecutor(
                self.workers,
                mp_context=context,
                initializer=init_pool_worker,
                initargs=(stop, env, lifeline),
            ) as pool:
                self._run(pool, stop, tasks, on_outcome)
        finally:
            held.close()
            lifeline.close()

    @staticmethod
    def _run(pool, stop, tasks: Sequence[Task], on_outcome: OnOutcome) -> None:
        """Submit every task; on a stop, cancel what has not started and ask the rest to stop."""
        futures = {pool.submit(run_task, task): task for task in tasks}
        stopping = False

        def halt() -> None:
            stop.set()
            for future in futures:
                future.cancel()

        pending: set[Future] = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    outcome = _pool_outcome(future, futures[future])
                    if outcome is not None and not on_outcome(outcome) and not stopping:
                        stopping = True
                        halt()
        except KeyboardInterrupt:
            halt()
            for future in pending:  # running jobs flush and return after their round
                if (outcome := _pool_outcome(future, futures[future])) is not None:
                    on_outcome(outcome)
            raise


def _pool_outcome(future: Future, task: Task) -> Outcome | None:
    if future.cancelled():
        return None
    try:
        return future.result()
    except BrokenProcessPool:
        return Outcome(
            task.job, error="a worker process died (killed, or out of memory) while running it"
        )


class RayBackend:
    """Jobs as Ray tasks, one CPU each: on a local Ray started here with ``workers`` CPUs, on the
    cluster at ``address``, or on the Ray this process is already connected to. A cluster's
    workers need admarket installed and ``--out`` on a filesystem every node shares."""

    def __init__(self, workers: int, address: str | None) -> None:
        self.workers = workers
        self.address = address
        self.label = f"Ray ({address or f'local, {workers} CPUs'})"
        self._started = False

    def start(self) -> None:
        """Import Ray and connect (before the sweep writes anything)."""
        try:
            import ray
        except ImportError as err:
            raise SweepError(f"--backend ray: ray is not installed — {RAY_HINT}") from err
        if ray.is_initialized():  # connected already: by the caller, or by an earlier start
            return
        if self.address not in (None, "auto", "local"):
            _probe(self.address)
        try:
            ray.init(
                address=self.address,
                num_cpus=self.workers if self.address is None else None,
                include_dashboard=False,
                log_to_driver=False,
                logging_level="ERROR",
            )
        except (ConnectionError, ValueError, RuntimeError) as err:
            where = f"--address {self.address}" if self.address else "--backend ray"
            raise SweepError(
                f"{where}: cannot start or reach Ray ({' '.join(str(err).split())[:200]}) — "
                "start a cluster with `ray start --head` and pass its address, or leave "
                "--address out for a local Ray"
            ) from err
        self._started = True

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def run(self, tasks: Sequence[Task], on_outcome: OnOutcome) -> None:
        import ray

        remote = ray.remote(num_cpus=1, max_retries=0)(run_task)
        refs = {remote.remote(task): task for task in tasks}
        pending = list(refs)
        stopping = False

        def halt() -> None:
            for ref in pending:
                ray.cancel(ref)

        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    outcome = _ray_outcome(ray, ref, refs[ref])
                    if outcome is not None and not on_outcome(outcome) and not stopping:
                        stopping = True
                        halt()
        except KeyboardInterrupt:
            halt()
            for ref in pending:
                if (outcome := _ray_outcome(ray, ref, refs[ref])) is not None:
                    on_outcome(outcome)
            raise


def _ray_outcome(ray: Any, ref: Any, task: Task) -> Outcome | None:
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return None
    except ray.exceptions.RayError as err:
        text = " ".join(str(err).split())[:300]
        return Outcome(task.job, error=f"Ray could not run it ({type(err).__name__}: {text})")


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an unreachable cluster (Ray itself retries for minutes)."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(
            f"--address {address}: expected HOST:PORT (e.g. 10.0.0.5:6379) — give the address "
            "`ray start --head` printed"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise SweepError(
            f"--address {address}: cannot reach a Ray cluster there ({err.strerror or err}) — "
            "start one with `ray start --head` and pass its address, or leave --address out "
            "for a local Ray"
        ) from err


def make_backend(backend: str = "process", workers: int | None = None, address: str | None = None):
    """The backend for ``--backend``, ``--workers`` and ``--address`` (checked here)."""
    if backend not in BACKENDS:
        raise SweepError(f"--backend {backend}: unknown backend — use one of {', '.join(BACKENDS)}")
    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise SweepError(
            f"--workers {workers}: must be at least 1 — give a number of processes, e.g. "
            f"--workers 2 (default: the {default_workers()} cores)"
        )
    if address is not None and backend != "ray":
        raise SweepError(f"--address {address}: only for --backend ray — add --backend ray")
    count = default_workers() if workers is None else int(workers)
    if backend == "ray":
        return RayBackend(count, address)
    return SerialBackend() if count == 1 else PoolBackend(count)
