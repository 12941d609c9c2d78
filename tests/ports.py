"""Ports for the servers the tests start: the one place they come from.

A port found free and handed to a server later can be taken in between by
anything else on a busy machine (issue 10 saw ``test_person_index_cli`` lose
that race). So a server the tests start binds port 0 itself and the port is
read back:

- ``cpis serve`` with ``CPIS_PORT=0`` binds a port the system picks and logs it
  in its ``serving`` line (its public base URL's port 0 becomes that port too);
  :func:`served_port` reads it from the process's output;
- a server in the test process takes an already-listening socket from
  :func:`listening_socket` (aiohttp's ``SockSite``, or
  ``cpis.web.server.serving(..., sock=...)``).

:func:`free_port` remains for what cannot bind port 0: an address that must
refuse connections, or a program outside the project that only takes a port
number.
"""

from __future__ import annotations

import json
import socket


def listening_socket(host: str = "127.0.0.1") -> socket.socket:
    """A socket listening on a port the system picked; ``.getsockname()[1]`` is it."""
    return socket.create_server((host, 0), backlog=128)


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def free_port() -> int:
    """A port nobody listens on at this moment (for a refused address, or a program
    that cannot be given a socket): another process may take it before it is used."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return port_of(s)


def served_port(output: str, event_name: str = "serving") -> int | None:
    """The port a ``cpis serve`` process (``CPIS_LOG_FORMAT=json``) says it is serving
    on, from its output so far; None before its ``serving`` line (``cpis worker``'s
    is ``worker_started``)."""
    for line in output.splitlines():
        if f'"{event_name}"' not in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == event_name:
            return int(event["port"])
    return None
