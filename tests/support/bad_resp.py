"""A RESP server that answers every command with the same raw bytes, for the client's hostile-input tests.

``python -m tests.support.bad_resp PORT HEX`` listens on 127.0.0.1:PORT and, for each command it
reads (any RESP array), writes the bytes HEX decodes to, then keeps the connection open. It stands in
for a broken or hostile server behind a zdb:// URL: replies no real 0-db sends.
"""

from __future__ import annotations

import socket
import sys
import threading


def serve(conn: socket.socket, answer: bytes) -> None:
    buffer = b""
    with conn:
        while True:
            data = conn.recv(1 << 20)
            if not data:
                return
            buffer += data
            # one answer per array header; values never start a line with "*" in these tests
            while True:
                start = buffer.find(b"*")
                end = buffer.find(b"\r\n", start)
                if start < 0 or end < 0:
                    break
                count = int(buffer[start + 1:end])
                # skip the command's arguments: $len line + value + CRLF each
                pos, complete = end + 2, True
                for _ in range(count):
                    line_end = buffer.find(b"\r\n", pos)
                    if line_end < 0:
                        complete = False
                        break
                    length = int(buffer[pos + 1:line_end])
                    pos = line_end + 2 + length + 2
                    if pos > len(buffer):
                        complete = False
                        break
                if not complete:
                    break
                buffer = buffer[pos:]
                conn.sendall(answer)


def main() -> None:
    port, answer = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
    with socket.create_server(("127.0.0.1", port)) as server:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=serve, args=(conn, answer), daemon=True).start()


if __name__ == "__main__":
    main()
