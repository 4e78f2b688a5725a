"""A GET that costs its client as little as a real reader can: ``recv_into`` one 4 MiB buffer
until the body is in, discarding it.  curl (100 KiB reads, each then written to /dev/null) needs
most of a core to take a 1 GiB body from nginx over loopback, so its GET figures can be the
client's; this cross-check reads the same bytes with about half that CPU.

    python -m bench.rawget PORT HOST_HEADER TARGET  ->  prints "STATUS SECONDS BODY_BYTES"

Run as a subprocess so its CPU is counted by ``os.wait4`` like curl's.
"""

from __future__ import annotations

import socket
import sys
import time

BUFFER = 4 * 1024 * 1024


def get(port: int, host: str, target: str) -> tuple[int, float, int]:
    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode("ascii")
        )
        head = b""
        while b"\r\n\r\n" not in head:
            n = sock.recv_into(view)
            if n == 0:
                raise ConnectionError(f"closed before the end of the head: {head[:200]!r}")
            head += bytes(view[:n])
        head, _, rest = head.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        body = len(rest)
        while n := sock.recv_into(view):
            body += n
    return status, time.perf_counter() - started, body


def main() -> None:
    port, host, target = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    status, seconds, body = get(port, host, target)
    print(f"{status} {seconds:.6f} {body}")


if __name__ == "__main__":
    main()
