"""Run N worker processes on this host, forward shutdown signals, and replace any that die."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType

from worker import running
from worker.running import Board, Running

log = logging.getLogger("worker")

ExitHook = Callable[[int, int, int, bool], None]
"""Called with (index, pid, exit code: minus the signal number if a signal ended it, and whether the
supervisor is stopping: a child stopped by a forwarded signal is not a death to explain) when a
child exits other than cleanly, before it is replaced."""

RESPAWN_DELAY_MAX = 30.0
"""Longest pause before replacing a worker process that keeps dying."""
STABLE_SECONDS = 60.0
"""A process that ran this long before it died starts the back-off afresh."""


class Supervisor:
    """Keeps `count` children running `target(index)`; SIGTERM/SIGINT are forwarded to them.

    RQ's WorkerPool does the same but builds its workers itself, with no way to hand them our
    runtime (catalogue, slots, names); this is the small part of it that we need.
    """

    def __init__(
        self,
        count: int,
        target: Callable[[int], None],
        respawn: bool,
        on_exit: ExitHook | None = None,
        board_slots: int = 0,
    ) -> None:
        self.count = count
        self.board_slots = board_slots
        """Task slots of each child's shared record of its running tasks (worker.running); 0: none."""
        self._boards: dict[int, Board] = {}
        self.target = target
        self.respawn = respawn
        self.on_exit = on_exit
        self._due: dict[int, float] = {}
        self.children: dict[int, BaseProcess] = {}
        self.signals_received = 0
        self._context = multiprocessing.get_context("fork")
        self._failures: dict[int, int] = {}
        self._started: dict[int, float] = {}
        self._pid = os.getpid()

    def run(self) -> int:
        """Start the children and supervise them until they have all stopped; returns an exit code.

        A child's exit is seen at once (its sentinel), and replacements wait out their back-off
        without holding up the watch over the others.
        """
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        gc.freeze()  # what the children inherit stays shared: no collection touches (and copies) it
        for index in range(self.count):
            self._start(index)
        worst = 0
        while self.children or self._due:
            sentinels = [p.sentinel for p in self.children.values()]
            multiprocessing.connection.wait(sentinels, timeout=self._next_wait())
            for index, process in list(self.children.items()):
                if process.is_alive():
                    continue
                process.join()
                code = process.exitcode or 0
                del self.children[index]
                if code != 0 and self.on_exit is not None and process.pid is not None:
                    self._report_exit(index, process.pid, code)
                if self.respawn and not self.signals_received:
                    self._restart_later(index, code)
                elif code not in (0, -signal.SIGTERM, -signal.SIGINT):
                    worst = max(worst, 1 if code < 0 else code)
            self._start_due()
        return worst

    def _next_wait(self) -> float:
        if not self._due:
            return 1.0
        return max(0.0, min(min(self._due.values()) - time.monotonic(), 1.0))

    def _start_due(self) -> None:
        if self.signals_received:
            self._due.clear()
            return
        now = time.monotonic()
        for index, due in list(self._due.items()):
            if due <= now:
                del self._due[index]
                self._start(index)

    def _report_exit(self, index: int, pid: int, code: int) -> None:
        assert self.on_exit is not None
        try:
            self.on_exit(index, pid, code, bool(self.signals_received))
        except Exception as exc:  # the heartbeat TTL recovers the chunk anyway
            log.warning("worker process %d: could not hand its chunk back at once: %s", index, exc)

    def running(self, index: int) -> Running | None:
        """What child `index` was running when it exited (for the exit hook), if it recorded it."""
        board = self._boards.get(index)
        return None if board is None else board.read()

    def _start(self, index: int) -> None:
        if self.board_slots:  # mapped before the fork, so that it is shared with the child
            self._boards[index] = Board(self.board_slots)
        process = self._context.Process(target=self._child, args=(index,), name=f"worker-{index}")
        process.start()
        self.children[index] = process
        self._started[index] = time.monotonic()

    def _child(self, index: int) -> None:
        _stop_with_parent(self._pid)
        if index in self._boards:
            running.install(self._boards[index])
        self.target(index)

    def _restart_later(self, index: int, code: int) -> None:
        if time.monotonic() - self._started.get(index, 0.0) > STABLE_SECONDS:
            self._failures[index] = 0  # it had been running fine: this is not a crash loop
        failures = self._failures.get(index, 0) + 1
        self._failures[index] = failures
        delay = min(RESPAWN_DELAY_MAX, 0.5 * 2 ** (failures - 1))
        log.warning("worker process %d exited with %s; starting a new one in %.1f s", index, code, delay)
        self._due[index] = time.monotonic() + delay

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signals_received += 1
        for process in self.children.values():
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)


def _stop_with_parent(parent: int) -> None:
    """Ask Linux to send this process SIGTERM (a warm shutdown) when its supervisor dies, so that a
    killed supervisor leaves no orphan serving the queue (and, with Redis gone, retrying forever)."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
