"""Which tasks a worker process runs now, in memory its supervisor can still read once it has died.

The supervisor maps a small anonymous shared region (a Board) before it forks each child. The child
writes its chunk's job id there once per chunk, and in each task slot the index of the task running
in it (IDLE when none) as each task starts and ends: a store into shared memory, with no system call
and no round trip to Redis, so that every task can afford it. When the child dies, the supervisor
reads which tasks were running and notes them in the chunk's crash record (common.crash.note_running)
before it hands the chunk back, so that the first death of a chunk already blames its task.

Slot numbers: the main thread is slot 0 (the serial loop, and the tasks of a process without a
thread pool); pool thread k is slot k; async slot k is slot max(1, threads) + k.
"""

from __future__ import annotations

import mmap
from array import array
from dataclasses import dataclass

IDLE = -1
"""A slot's value when no task runs in it."""
JOB_ID_BYTES = 240
"""Longest job id a board holds (ours are far shorter); a longer one is not recorded: no blame."""
_WORD = 8


@dataclass(frozen=True)
class Running:
    """What a dead process was running: its chunk's job id and the indices of the running tasks."""

    job_id: str
    indices: list[int]


class Board:
    """One child's record: word 0 the job id's length, then a word per slot, then the job id."""

    def __init__(self, slots: int) -> None:
        self.slots = max(1, slots)
        self._map = mmap.mmap(-1, _WORD * (self.slots + 1) + JOB_ID_BYTES)  # MAP_SHARED: survives fork
        words = memoryview(self._map).cast("q")
        self._length = words[0:1]
        self.tasks = words[1 : 1 + self.slots]
        """The slots, written directly by the loops that run tasks (`tasks[slot] = index`)."""
        self._job_at = _WORD * (self.slots + 1)
        self._idle = memoryview(array("q", [IDLE]) * self.slots)
        self.begin("")

    def begin(self, job_id: str) -> None:
        """A new chunk: record its job id, every slot idle."""
        self.idle()
        raw = job_id.encode()
        if len(raw) > JOB_ID_BYTES:
            raw = b""
        self._length[0] = 0  # a reader never sees a half-written id with a whole length
        self._map[self._job_at : self._job_at + len(raw)] = raw
        self._length[0] = len(raw)

    def idle(self) -> None:
        """Every slot idle (one copy, however many slots)."""
        self.tasks[:] = self._idle

    def read(self) -> Running | None:
        """The job id and running tasks (for the supervisor, once the child is dead); None if none ran."""
        length = self._length[0]
        indices = [index for index in self.tasks if index != IDLE]
        if not 0 < length <= JOB_ID_BYTES or not indices:
            return None
        return Running(self._map[self._job_at : self._job_at + length].decode(errors="replace"), indices)


_board: Board | None = None


def install(board: Board) -> None:
    """Use `board`, which this process's supervisor reads (called in the child, before it serves)."""
    global _board
    _board = board


def begin(job_id: str, slots: int) -> None:
    """A chunk starts with `slots` task slots, every one idle."""
    tasks(slots)
    assert _board is not None
    _board.begin(job_id)


def idle() -> None:
    """Every slot idle: a chunk stopped by an exception (a cold shutdown) blames none of its tasks."""
    if _board is not None:
        _board.idle()


def tasks(slots: int = 1) -> memoryview:
    """This process's slots (`Board.tasks`), at least `slots` of them: the supervisor's board if it has
    them, else a private one (an unsupervised process: nobody reads it, the loops write it all the same)."""
    global _board
    if _board is None or _board.slots < slots:
        _board = Board(slots)
    return _board.tasks
