"""mod_perl's MyApache::EchoBB: a line echo whose output passes a lower-casing connection filter.

In mod_perl the handler reads a line at a time (``MODE_GETLINE``) and passes it on unchanged;
``lowercase_filter``, registered as a ``PerlOutputFilterHandler``, lower-cases every byte on its
way to the client. The handler knows nothing about the filter.

greensrv builds the same pipeline from sans-IO filters. The input side is plain ``Line()``. The
output side is a ``Stack`` whose bottom layer (nearest the wire) is ``Stream()`` plus a
``Map`` over raw bytes: that pair is the connection output filter. ``Line()`` on top turns the
handler's records into bytes. Like the mod_perl handler, this one echoes a line made only of
newline characters and then ends the connection.

    python examples/echo_lowercase.py [--host 127.0.0.1] [--port 8011]
"""

from __future__ import annotations

import argparse
import logging

import greensrv
from greensrv.filters import Line, Map, Stack, Stream

log = logging.getLogger("echo_lowercase")


def echo(conn: greensrv.Connection) -> None:
    """Echo every line; the handler itself never changes the data."""
    for line in conn:
        conn.put(line)
        if not line.strip("\r\n"):  # an empty line (Perl's /^[\r\n]+$/): echoed, then goodbye
            break


#: The output side, bottom (wire) first: a byte-level lower-casing connection filter, then Line.
#: Each connection gets its own ``clone()`` of it.
LOWERCASE_OUTPUT = Stack(Stream(), Map(put=bytes.lower), Line())


def make_server(host: str = "127.0.0.1", port: int = 8011) -> greensrv.Server:
    return greensrv.Server(
        echo,
        host=host,
        port=port,
        input_filter=Line(),
        output_filter=LOWERCASE_OUTPUT,
    )


#: The example as the ``greensrv`` command runs it: ``greensrv examples/echo_lowercase.py:server``.
server = make_server()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Echo through a lower-casing output filter "
                                                 "(mod_perl's EchoBB).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=8011, help="TCP port (default %(default)s)")
    args = parser.parse_args(argv)
    make_server(args.host, args.port).serve_forever()


if __name__ == "__main__":
    main()
