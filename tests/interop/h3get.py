#!/usr/bin/env python3
"""Fetches URLs over HTTP/3 with aioquic (a client holdfast did not write)
and prints one line per URL: status, x-cache, body length, BLAKE3 of the body.

usage: h3get.py HOST PORT CAFILE PATH [PATH...]
"""
import asyncio
import ssl
import sys

import blake3
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.waiters = {}
        self.responses = {}

    def quic_event_received(self, event):
        for h3_event in self.h3.handle_event(event):
            stream_id = getattr(h3_event, "stream_id", None)
            if stream_id not in self.responses:
                continue
            response = self.responses[stream_id]
            if isinstance(h3_event, HeadersReceived):
                response["headers"].extend(h3_event.headers)
            elif isinstance(h3_event, DataReceived):
                response["body"] += h3_event.data
            if getattr(h3_event, "stream_ended", False):
                self.waiters.pop(stream_id).set_result(response)

    async def get(self, authority, path):
        stream_id = self._quic.get_next_available_stream_id()
        self.responses[stream_id] = {"headers": [], "body": b""}
        waiter = self._loop.create_future()
        self.waiters[stream_id] = waiter
        self.h3.send_headers(
            stream_id,
            [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority.encode()), (b":path", path.encode())],
            end_stream=True,
        )
        self.transmit()
        return await asyncio.wait_for(waiter, 20)


async def main():
    host, port, cafile, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.load_verify_locations(cafile)
    config.verify_mode = ssl.CERT_REQUIRED
    async with connect(host, port, configuration=config, create_protocol=Client) as client:
        for path in paths:
            response = await client.get(f"{host}:{port}", path)
            headers = dict(response["headers"])
            status = headers.get(b":status", b"?").decode()
            x_cache = headers.get(b"x-cache", b"-").decode()
            length = headers.get(b"content-length", b"-").decode()
            digest = blake3.blake3(response["body"]).hexdigest()
            print(f"{path} {status} {x_cache} {len(response['body'])} {length} {digest}", flush=True)


asyncio.run(main())
