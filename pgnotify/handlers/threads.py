"""The thread a handler's sync code runs in: one per handler, and one that can be left behind.

A sync call cannot be interrupted. When one overruns its handler's timeout, the handler's lane
gives up on it: the thread is left to finish on its own (a daemon thread, so the process does not
wait for it at exit) and the handler's later calls run in a fresh thread. At most
MAX_LEFT_BEHIND stuck threads per handler: past that, later calls wait behind the stuck one.
"""

import itertools
import threading
from collections import deque
from concurrent.futures import Executor, Future
from contextvars import ContextVar

MAX_LEFT_BEHIND = 4
_numbers = itertools.count(1)
# The thread of the handler whose lane runs the current task (and the tasks it starts).
current: ContextVar["WorkerThread | None"] = ContextVar("pgnotify_handler_thread", default=None)


def leave_current_behind() -> bool:
    """For a handler's async code whose sync call (sync_to_async) overran its own timeout: give
    up on that call, so the handler's next calls run in a fresh thread. True when one was left."""
    thread = current.get()
    return thread is not None and thread.leave_behind()


class WorkerThread(Executor):
    """Runs one call at a time, in submission order, in one daemon thread (what asgiref's
    thread-sensitive mode needs from an executor, so a handler keeps its Django connection)."""

    def __init__(self, name: str):
        self.name = name
        self._calls: deque = deque()
        self._ready = threading.Condition()
        self._generation = 0  # a thread serves while its generation is the current one
        self._thread: threading.Thread | None = None
        self._busy = False
        self._closed = False
        self.left_behind: list[threading.Thread] = []

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError(f"{self.name}: the handler's thread is closed")
            self._calls.append((future, fn, args, kwargs))
            if self._thread is None:
                self._start()
            self._ready.notify()
        return future

    @property
    def busy(self) -> bool:
        return self._busy

    def leave_behind(self) -> bool:
        """Give up on the call the thread is running: later calls go to a new thread. False (and
        nothing changes) when it is idle or too many threads are stuck already."""
        with self._ready:
            self.left_behind = [thread for thread in self.left_behind if thread.is_alive()]
            if not self._busy or self._thread is None or len(self.left_behind) >= MAX_LEFT_BEHIND:
                return False
            self.left_behind.append(self._thread)
            self._generation += 1
            self._busy = False
            self._thread = None
            if self._calls:
                self._start()
            return True

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; the thread ends after its current call (never waited for: a
        stuck call must not hold the process)."""
        with self._ready:
            self._closed = True
            if cancel_futures:
                while self._calls:
                    self._calls.popleft()[0].cancel()
            self._generation += 1
            self._ready.notify_all()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._serve, args=(self._generation,), daemon=True,
                                        name=f"pgnotify {self.name} #{next(_numbers)}")
        self._thread.start()

    def _serve(self, generation: int) -> None:
        while True:
            with self._ready:
                while generation == self._generation and not self._calls:
                    self._ready.wait()
                if generation != self._generation:
                    return  # left behind, or shut down
                future, fn, args, kwargs = self._calls.popleft()
                if not future.set_running_or_notify_cancel():
                    continue
                self._busy = True
            try:
                result = fn(*args, **kwargs)
            except BaseException as error:  # handed to whoever awaits the call
                future.set_exception(error)
            else:
                future.set_result(result)
            finally:
                with self._ready:
                    if generation == self._generation:
                        self._busy = False
