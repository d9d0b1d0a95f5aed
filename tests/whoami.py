"""A tiny TCP/UDP "who is asking" server and its client, for tests that must see real
traffic and the source address it arrives with (NAT tests).

    python tests/whoami.py serve tcp|udp PORT       answer every client with its address
    python tests/whoami.py ask tcp|udp IP PORT      print the answer; exit 1 if none
    python tests/whoami.py scan IP:PORT...          print each TCP IP:PORT that accepts
                                                    a connection, trying all at once
    python tests/whoami.py listen IP:PORT...        accept (and close) TCP on each (IPv6:
                                                    ``::``); one already taken is named

Run inside a namespace with ``nsenter --net=...``. No third-party imports.
"""

from __future__ import annotations

import errno
import selectors
import socket
import sys
from concurrent.futures import ThreadPoolExecutor

TIMEOUT = 2.0


def serve(proto: str, port: int) -> None:
    if proto == "tcp":
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind(("0.0.0.0", port))
            srv.listen(16)
            while True:
                conn, peer = srv.accept()
                with conn:
                    conn.sendall(f"{peer[0]}\n".encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as srv:
        srv.bind(("0.0.0.0", port))
        while True:
            _, peer = srv.recvfrom(512)
            srv.sendto(f"{peer[0]}\n".encode(), peer)


def ask(proto: str, ip: str, port: int) -> int:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    try:
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect((ip, port))
            if proto == "udp":
                sock.send(b"?")
            answer = sock.recv(512).decode().strip()
    except OSError as exc:
        print(f"no answer: {exc}", file=sys.stderr)
        return 1
    print(answer)
    return 0 if answer else 1


def _accepts(target: str) -> bool:
    ip, _, port = target.rpartition(":")
    try:
        with socket.create_connection((ip, int(port)), timeout=TIMEOUT):
            return True
    except OSError:
        return False


def scan(targets: list[str]) -> int:
    with ThreadPoolExecutor(max_workers=64) as pool:
        for target, ok in zip(targets, pool.map(_accepts, targets), strict=True):
            if ok:
                print(target)
    return 0


def listen(targets: list[str]) -> int:
    sel = selectors.DefaultSelector()
    for target in targets:
        ip, _, port = target.rpartition(":")
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        srv = socket.socket(family, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            srv.bind((ip, int(port)))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            srv.close()
            print(f"taken {target}", flush=True)
            continue
        srv.listen(64)
        sel.register(srv, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
            conn.close()


def main(argv: list[str]) -> int:
    if argv[:1] == ["scan"]:
        return scan(argv[1:])
    if argv[:1] == ["listen"]:
        return listen(argv[1:])
    if argv[:1] == ["serve"] and len(argv) == 3:
        serve(argv[1], int(argv[2]))
        return 0
    if argv[:1] == ["ask"] and len(argv) == 4:
        return ask(argv[1], argv[2], int(argv[3]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
