"""WORKERS=N: N workers that claim participants of a batch and load them, one at a time each.

Each worker has its own database connection (its transactions, its claims) and its own
sources (a Google source keeps one participant's HTTP session; wearipedia draws from
process-wide random state). Workers are processes by default (WORKER_KIND=process), threads
on request (WORKER_KIND=thread):

- synthetic generation is CPU-bound Python, and wearipedia's random state is process-wide
  (sources/synthetic/source.py, _RNG_LOCK): threads would take turns on one core;
- a Google worker mostly waits on the network, but a real page of 10,000 points costs
  ~130 ms of client CPU to parse, flatten and write (bench/scale.py), ~4.7 s a participant
  a night: threads would be bound to one core by the GIL from 2 workers on. A process
  without wearipedia costs ~30 MB, so processes are the default for both.

bench/scale.py measures both. The cohort is shared through the database (claims.py), so
processes of other containers or pods that run the same command work on the same batch.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import multiprocessing.connection
import resource
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg2

from . import claims, db, state
from .config import Settings
from .errors import DatabaseUnavailable, IngestError
from .logs import configure_logging
from .pipeline import DatabaseLost, Outcome, RunContext, RunOptions, load_participant
from .sources import Source, build_source

log = logging.getLogger(__name__)

# The cyclic garbage collector's thresholds while workers load (Python's default: 700, 10,
# 10). A 1 Hz heart-rate page parses into ~50,000 dictionaries that live until its rows are
# written: at the default, ~70 young collections a page walk them, push them into the old
# generation, and set off a full collection of everything most pages; that was a third of
# a worker's CPU a page (docs/performance.md, "The command's cost a page"). At 100,000 the
# young generation is collected about once a page; nothing the service makes relies on the
# collector but the odd cycle (an exception's traceback), which it still frees.
GC_THRESHOLDS = (100_000, 10, 10)


@contextmanager
def collector_for_pages() -> Iterator[None]:
    """The collector at GC_THRESHOLDS inside, as it was after (the setting is the process's:
    a test that runs workers in its own process gets its own back)."""
    before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)


class SourceFactory:
    """Builds each kind of source once, on first use (sources.build_source). One per worker:
    sources keep per-participant state."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._built: dict[str, Source] = {}

    def __call__(self, kind: str) -> Source:
        if kind not in self._built:
            self._built[kind] = build_source(kind, self._settings)
        return self._built[kind]

    def __enter__(self) -> SourceFactory:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        for source in self._built.values():
            source.close()
        self._built.clear()


@dataclass(frozen=True)
class Job:
    """What every worker of a run needs; picklable, for worker processes."""

    settings: Settings
    batch: claims.Batch
    options: RunOptions
    loaded: state.LoadedState
    run_id: uuid.UUID


@dataclass
class WorkerResult:
    outcomes: list[Outcome] = field(default_factory=list)
    error: str | None = None  # why the worker stopped early
    database_lost: bool = False
    busy: bool = False  # others held the batch's last participants too long (exit 4)


def work(job: Job, index: int) -> WorkerResult:
    """One worker: claim, load, finish, until the batch is done. Never raises."""
    result = WorkerResult()
    try:
        connection = db.connect(job.settings)
    except DatabaseUnavailable as error:
        return WorkerResult(error=str(error), database_lost=True)
    sources = SourceFactory(job.settings)
    run = RunContext(connection, sources, job.settings.state_file, job.options, job.run_id)
    name = claims.worker_name(index)
    try:
        claims.hold_membership(connection, job.batch)
        for pid in claims.claims(connection, job.batch, name):
            outcome = _one(run, job.loaded, pid)
            result.outcomes.append(outcome)
            claims.finish(connection, job.batch, pid, outcome.status)
    except DatabaseUnavailable as error:
        result.error, result.database_lost = str(error), True
        if isinstance(error, DatabaseLost):  # its committed slices count in the summary
            result.outcomes.append(error.outcome)
    except claims.ClaimWaitTimeout as error:
        result.error, result.busy = str(error), True
    except IngestError as error:
        result.error = str(error)
    except psycopg2.Error as error:  # outside a participant (claims): the database's trouble
        result.error, result.database_lost = f"{type(error).__name__}: {error}", True
    except Exception as error:  # a bug: this worker stops, its claim is freed, others go on
        log.exception("worker %s failed", name)
        result.error = f"{type(error).__name__}: {error}"
    finally:
        sources.close()
        connection.close()
    if result.error:
        log.error("worker %s stopped: %s", name, result.error)
    if multiprocessing.parent_process() is None:  # a thread's peak is the run's (cli.run)
        log.info("worker %s done: %d participants", name, len(result.outcomes))
    else:  # ru_maxrss: KiB on Linux
        log.info("worker %s done: %d participants, peak RSS %.0f MiB", name,
                 len(result.outcomes), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def _one(run: RunContext, loaded: state.LoadedState, pid: str) -> Outcome:
    found = db.load_participants(run.connection, [pid])
    if not found:
        log.info("%s: removed from the cohort before it was loaded", pid)
        return Outcome(pid, "removed", error="removed from the cohort before it was loaded")
    return load_participant(run, found[0], loaded.watermarks.get(pid, {}))


def run_workers(job: Job, count: int, kind: str) -> list[WorkerResult]:
    """Run `count` workers of `kind` to the end of the batch; one result per worker."""
    if count == 1:
        with collector_for_pages():
            return [work(job, 0)]
    if kind == "thread":
        with collector_for_pages():
            return _threads(job, count)
    return _processes(job, count)


def _threads(job: Job, count: int) -> list[WorkerResult]:
    # work() never raises, so the pool's results are every worker's own.
    with ThreadPoolExecutor(count, thread_name_prefix="worker") as pool:
        return list(pool.map(work, [job] * count, range(count)))


def _processes(job: Job, count: int) -> list[WorkerResult]:
    # spawn, not fork: the parent holds a database connection and maybe threads; a forked
    # child would share the socket. Each child imports the service afresh.
    context = multiprocessing.get_context("spawn")
    children = []
    for index in range(count):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_child, args=(job, index, sender), name=f"worker-{index}", daemon=False
        )
        process.start()
        sender.close()
        children.append((process, receiver))
    results = []
    for index, (process, receiver) in enumerate(children):
        try:
            results.append(receiver.recv())
        except EOFError:  # died without a word: SIGKILL, out of memory
            results.append(WorkerResult(error="worker process died"))
        process.join()
        if process.exitcode:
            results[-1].error = results[-1].error or f"exit status {process.exitcode}"
            log.error("worker %d ended with exit status %s", index, process.exitcode)
    return results


def _child(job: Job, index: int, sender: multiprocessing.connection.Connection) -> None:
    configure_logging(job.settings.log_level)
    with collector_for_pages():
        result = work(job, index)
    sender.send(result)
    sender.close()



