"""Micro-batching: concurrent requests for one model share model calls.

One encoder call on 32 documents costs far less than 32 calls, so requests queue up; the
batcher takes the first, waits up to ``max_wait`` for more (up to ``max_documents``), groups
them by prediction options and runs one call per group on the prediction executor. Every
model call runs on that executor: with one thread, XR-Linear's numba kernels (whose default
threading layer must not be entered from two threads at once) and torch never overlap.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from typing import Any, Callable, Sequence

from .predictor import Job

logger = logging.getLogger(__name__)

_STOP = object()


class MicroBatcher:
    """Queue of jobs for one loaded model.

    Args:
        run: ``run(jobs) -> results`` (one result per job; all jobs share their options).
        executor: where ``run`` executes (off the event loop).
        max_documents: documents per call at most (a larger single job runs alone).
        max_wait: seconds the first job of a batch waits for others; 0 takes only those already queued.
    """

    def __init__(self, run: Callable[[Sequence[Job]], list[Any]], executor: Executor, *,
                 max_documents: int, max_wait: float):
        self._run = run
        self._executor = executor
        self.max_documents = max_documents
        self.max_wait = max_wait
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._closed = False
        self.calls = 0  # model calls made (for tests and /v1/models stats)

    async def submit(self, job: Job) -> Any:
        """The job's result, once its batch has run (exceptions of the call are raised here)."""
        loop = asyncio.get_running_loop()
        if self._closed:  # a request that took this model just before a reload: run it alone
            return (await loop.run_in_executor(self._executor, self._call, [job]))[0]
        if self._task is None or self._task.get_loop() is not loop:  # started lazily, in the server's event loop
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._loop())
        future = loop.create_future()
        self._queue.put_nowait((job, future))
        return await future

    def _call(self, jobs: Sequence[Job]) -> list[Any]:
        self.calls += 1
        return self._run(jobs)

    async def close(self) -> None:
        """Finish the queued jobs, then stop (later submissions run unbatched)."""
        self._closed = True
        if self._task is not None and self._task.get_loop() is asyncio.get_running_loop() and not self._task.done():
            self._queue.put_nowait((_STOP, None))
            await self._task

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        carry = None  # a job that did not fit the last batch: it opens the next one
        while True:
            job, future = carry if carry is not None else await self._queue.get()
            carry = None
            if job is _STOP:
                return
            batch, size, stop = [(job, future)], len(job), False
            deadline = loop.time() + self.max_wait
            while size < self.max_documents:
                try:
                    remaining = deadline - loop.time()
                    item = self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(
                        self._queue.get(), remaining)
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                if item[0] is _STOP:
                    stop = True
                    break
                if size + len(item[0]) > self.max_documents:
                    carry = item
                    break
                batch.append(item)
                size += len(item[0])
            groups: dict[Any, list] = {}
            for item in batch:
                groups.setdefault(item[0].options, []).append(item)
            for items in groups.values():
                await self._run_group(loop, items)
            if stop:
                return

    async def _run_group(self, loop, items) -> None:
        live = [(job, fut) for job, fut in items if not fut.done()]  # a client that went away cancels its future
        if not live:
            return
        try:
            results = await loop.run_in_executor(self._executor, self._call, [job for job, _ in live])
        except Exception as exc:  # noqa: BLE001 - handed to each waiting request, which reports it
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), result in zip(live, results):
            if not fut.done():
                fut.set_result(result)
