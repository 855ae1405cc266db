"""A file-writer child gone wrong, for the pool's tests: says ready, then answers every job with what
is no reply to it. ``WriterPool`` runs it as ``python -m tests.support.garbage_writer``;
``ZU_TEST_GARBAGE`` says how: ``bytes`` (the default: bytes that are no message at all), ``short``
(a well-formed message holding one result fewer than the job has files) or ``wrong-id`` (a result
for every file, under another job's id)."""

from __future__ import annotations

import os
import sys

from zos_upgrade.flist.writer_child import HEADER, read_message, write_message


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    how = os.environ.get("ZU_TEST_GARBAGE", "bytes")
    read_message(stdin)  # the setup: answered as a real child would
    write_message(stdout, ("ready", 0))
    while (job := read_message(stdin)) is not None:
        if how in ("short", "wrong-id"):
            job_id, files = job
            answered = len(files) - 1 if how == "short" else len(files)
            answer_id = job_id + 1 if how == "wrong-id" else job_id
            write_message(stdout, (answer_id, (("ok", (1, 0, 0, 0, False)),) * answered, []))
            continue
        garbage = b"\xffnot marshal"
        stdout.write(HEADER.pack(len(garbage)) + garbage)
        stdout.flush()


if __name__ == "__main__":
    main()
