"""A file-writer child that takes 5 s to start, for the pool's tests (then it is the real one).
``WriterPool`` runs it as ``python -m tests.support.slow_writer``."""

from __future__ import annotations

import time

from zos_upgrade.flist.writer_child import main

if __name__ == "__main__":
    time.sleep(5)
    main()
