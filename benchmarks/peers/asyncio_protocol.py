"""Peer: asyncio ``Protocol`` line echo (split in ``data_received``, one ``write`` per chunk).

``python asyncio_protocol.py PORT [--uvloop] [--bulk]``; ``--bulk`` writes back each chunk as is.
Reading pauses while the transport's write buffer is above its high-water mark.
"""

import asyncio
import sys


class LineEcho(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.pending = b""

    def data_received(self, data):
        lines = (self.pending + data).split(b"\r\n")
        self.pending = lines.pop()
        if lines:
            self.transport.write(b"".join([line + b"\r\n" for line in lines]))

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()


class ByteEcho(LineEcho):
    def data_received(self, data):
        self.transport.write(data)


async def serve(port, bulk):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(ByteEcho if bulk else LineEcho, "127.0.0.1", port,
                                      backlog=1024)
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
