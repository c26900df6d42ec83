"""A result writer whose output fails (a full disk): OutputFailed, then nothing more is written."""

from __future__ import annotations

import errno
import io
import os

import pytest

from common.errors import EXIT_OUTPUT, OutputFailed
from common.wire import TaskResult
from dispatcher.output import ResultWriter


def result(index: int) -> TaskResult:
    return TaskResult(index, "add", [index, 1], {}, None, True, index + 1, worker="w")


class FullDisk(io.StringIO):
    """A text stream on a device that refuses every write, like /dev/full."""

    writes = 0

    def write(self, text: str) -> int:
        FullDisk.writes += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_write_raises_output_failed_and_the_writer_stops() -> None:
    writer = ResultWriter(FullDisk(), as_json=True, ordered=False)
    with pytest.raises(OutputFailed, match="cannot write the results: No space left on device") as raised:
        writer.write_many([result(0), result(1)])
    assert raised.value.exit_code == EXIT_OUTPUT == 74
    before = FullDisk.writes
    writer.close()  # in the command's `finally`: it must not hide the first error with a second one
    assert FullDisk.writes == before


def test_dev_full_through_a_real_descriptor() -> None:
    with open("/dev/full", "w") as full:
        writer = ResultWriter(full, as_json=False, ordered=True)
        with pytest.raises(OutputFailed):
            writer.write_many([result(i) for i in range(3)])
        writer.close()
