"""An http:// block store that writes down every block it was asked for (a child process).

    python -m tests.support.counting_store --dir BLOCKS --port N --log FILE

Serves ``BLOCKS`` (a ``dir://`` store's layout, ``<id[:2]>/<id>``) read-only on 127.0.0.1 and appends
the hex id of each GET to ``FILE``, one a line, flushed before the answer: a test reads what the
node fetched, and so what it did not. A GET that names no block (a node's batch GET, which this
plain store answers 404 like any store without batches) is not written down.
"""

from __future__ import annotations

import argparse
import functools
import http.server
from pathlib import Path


class _Handler(http.server.SimpleHTTPRequestHandler):
    log_path: Path

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        if "?" not in name:
            with open(self.log_path, "a", encoding="ascii") as log:
                log.write(name + "\n")
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


def requested(log: Path) -> set[str]:
    """The block ids the store was asked for so far."""
    return set(log.read_text().split()) if log.exists() else set()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    handler = functools.partial(type("Handler", (_Handler,), {"log_path": args.log}), directory=str(args.dir))
    with http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
