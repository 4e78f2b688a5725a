"""A PUT that costs its client as little as a real uploader can: the head, then the file's bytes
with ``sendfile`` (the kernel hands the page-cache pages to the socket; nothing passes through
this process).  curl reads the file into its buffer and sends it from there, two copies on the
same two cores the server runs on; this cross-check sends the same bytes for a fraction of that
CPU.

    python -m bench.rawput PORT HOST_HEADER TARGET FILE  ->  prints "STATUS SECONDS BODY_BYTES"

Run as a subprocess so its CPU is counted by ``os.wait4`` like curl's.
"""

from __future__ import annotations

import os
import socket
import sys
import time


def put(port: int, host: str, target: str, path: str) -> tuple[int, float, int]:
    with open(path, "rb") as body:
        size = os.fstat(body.fileno()).st_size
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                f"PUT {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {size}\r\n"
                "Connection: close\r\n\r\n".encode("ascii")
            )
            sent = sock.sendfile(body)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    seconds = time.perf_counter() - started
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, seconds, sent


def main() -> None:
    port, host, target, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    status, seconds, sent = put(port, host, target, path)
    print(f"{status} {seconds:.6f} {sent}")


if __name__ == "__main__":
    main()
