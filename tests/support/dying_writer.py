"""A file-writer child that is killed (SIGKILL, like the OOM killer would) on taking its second job,
for the pool's tests; until then it is the real one. ``WriterPool`` runs it as
``python -m tests.support.dying_writer``."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

from zos_upgrade.flist import writer_child


def main() -> None:
    stdin = sys.stdin.buffer
    setup = writer_child.read_message(stdin)

    def jobs() -> Iterator[tuple[Any, ...]]:
        taken = 0
        while (job := writer_child.read_message(stdin)) is not None:
            taken += 1
            if taken == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            yield job

    writer_child.serve(jobs(), setup, sys.stdout.buffer)


if __name__ == "__main__":
    main()
