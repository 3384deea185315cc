"""Ask a PostgreSQL server which authentication method it wants, without logging in.

libpq reports "password authentication failed" for md5, scram and cleartext alike.
To name the method in a `db.auth.failed` finding we send a protocol-3.0 startup
packet and read the server's first `AuthenticationRequest`, then hang up before
answering it: no credentials are ever sent.
"""

from __future__ import annotations

import socket
import struct

__all__ = ["auth_method"]

_METHODS = {0: "trust", 2: "kerberos", 3: "password", 5: "md5", 7: "gss", 9: "sspi"}
_MAX_REPLY = 4096


def auth_method(host: str, port: int, user: str, dbname: str, timeout: float) -> str:
    """The method the server asks `user` for ("scram-sha-256", "md5", …) or "unknown"."""
    params = f"user\0{user}\0database\0{dbname}\0\0".encode()
    packet = struct.pack("!ii", 8 + len(params), 196608) + params
    try:
        if host.startswith("/"):
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(timeout)
            sock.connect(f"{host}/.s.PGSQL.{port}")
        else:
            sock = socket.create_connection((host, port), timeout=timeout)
        with sock:
            sock.sendall(packet)
            reply = sock.recv(_MAX_REPLY)
    except OSError:
        return "unknown"
    if len(reply) < 9 or reply[:1] != b"R":
        return "unknown"  # an 'E' reply: rejected before authentication (pg_hba, ssl)
    code = struct.unpack("!i", reply[5:9])[0]
    if code == 10:  # SASL: a list of mechanism names follows
        names = [m.decode("ascii", "replace") for m in reply[9:].split(b"\0") if m]
        return names[0].lower() if names else "sasl"
    return _METHODS.get(code, f"code {code}")
