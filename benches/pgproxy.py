#!/usr/bin/env python3
"""A TCP proxy that `benches/e2e.sh flood` puts between the demo and PostgreSQL, so a
database outage can be staged without touching the shared server.

Usage: pgproxy.py TARGET_HOST TARGET_PORT   (prints "port N" once listening)
SIGUSR1 takes it down: every proxied connection is cut and new ones are closed at once.
SIGUSR2 brings it back.
"""
import asyncio
import signal
import sys

target_host, target_port = sys.argv[1], int(sys.argv[2])
up = True
connections = set()


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def handle(client_reader, client_writer):
    if not up:
        client_writer.transport.abort()
        return
    try:
        server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
    except OSError:
        client_writer.transport.abort()
        return
    pair = (client_writer, server_writer)
    connections.add(pair)
    try:
        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
    finally:
        connections.discard(pair)


def down():
    global up
    up = False
    for client_writer, server_writer in list(connections):
        client_writer.transport.abort()
        server_writer.transport.abort()
    connections.clear()


def back_up():
    global up
    up = True


async def main():
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, down)
    loop.add_signal_handler(signal.SIGUSR2, back_up)
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print("port", server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
