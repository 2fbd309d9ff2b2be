#!/usr/bin/env python3
"""A UDP relay for browser tests: listens on LISTEN_PORT (127.0.0.1) and
forwards to TARGET_PORT, one upstream socket per client address. The
second datagram of every client is held back DELAY_MS, as a network can
deliver a two-packet QUIC ClientHello (Chromium's post-quantum key share
needs two Initial packets): the server must not start HTTP/3 before the
whole ClientHello has arrived.

    udp_relay.py LISTEN_PORT TARGET_PORT [DELAY_MS]
"""
import asyncio
import sys


class Upstream(asyncio.DatagramProtocol):
    def __init__(self, front, client):
        self.front, self.client = front, client

    def datagram_received(self, data, addr):
        self.front.transport.sendto(data, self.client)


class Front(asyncio.DatagramProtocol):
    def __init__(self, target, delay):
        self.target, self.delay = target, delay
        self.clients = {}

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        asyncio.ensure_future(self.forward(data, addr))

    async def forward(self, data, addr):
        entry = self.clients.get(addr)
        if entry is None:
            entry = self.clients[addr] = {"count": 0, "ready": asyncio.Event(), "transport": None}
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(
                lambda: Upstream(self, addr), remote_addr=("127.0.0.1", self.target))
            entry["transport"] = transport
            entry["ready"].set()
        await entry["ready"].wait()
        entry["count"] += 1
        if entry["count"] == 2:
            await asyncio.sleep(self.delay)
        entry["transport"].sendto(data)


async def main():
    listen, target = int(sys.argv[1]), int(sys.argv[2])
    delay = (int(sys.argv[3]) if len(sys.argv) > 3 else 30) / 1000
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: Front(target, delay), local_addr=("127.0.0.1", listen))
    await asyncio.Event().wait()


asyncio.run(main())
