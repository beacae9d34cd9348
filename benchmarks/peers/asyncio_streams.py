"""Peer: asyncio streams line echo (``readline`` / ``write`` / ``drain``).

``python asyncio_streams.py PORT [--uvloop] [--bulk]``; ``--bulk`` echoes raw bytes
(``read`` / ``write`` / ``drain``).
"""

import asyncio
import sys


async def echo_lines(reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            writer.write(line)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def echo_bytes(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(port, bulk):
    handler = echo_bytes if bulk else echo_lines
    server = await asyncio.start_server(handler, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main():
    port = int(sys.argv[1])
    if "--uvloop" in sys.argv:
        import uvloop

        uvloop.install()
    asyncio.run(serve(port, "--bulk" in sys.argv))


if __name__ == "__main__":
    main()
