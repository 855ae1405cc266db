#!/usr/bin/env python3
"""Demo service `web`: answers GET / on a loopback port with the installed release's version.

Release 1.0.0 keeps its settings as ``key=value`` lines in ``var/lib/demo/settings.conf``; the
``migrate`` hook of 1.1.0 converts them to ``settings.json``, which this service reads from 1.1.0 on
(``SETTINGS_FORMAT`` is rewritten when the demo packs a release).
"""

import http.server
import json
import os
from pathlib import Path

SETTINGS_FORMAT = "conf"
ROOT = Path(os.environ["DEMO_ROOT"])
PORT = int(os.environ["DEMO_PORT"])
DATA = ROOT / "var/lib/demo"


def settings() -> dict[str, str]:
    if SETTINGS_FORMAT == "json":
        return dict(json.loads((DATA / "settings.json").read_text()))
    conf = DATA / "settings.conf"
    if not conf.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        conf.write_text("greeting=hello from the demo node\n")
    return dict(line.split("=", 1) for line in conf.read_text().splitlines() if "=" in line)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({
            "service": "web",
            "version": (ROOT / "opt/demo/VERSION").read_text().strip(),
            "settings_format": SETTINGS_FORMAT,
            "greeting": settings().get("greeting", ""),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    settings()
    http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
