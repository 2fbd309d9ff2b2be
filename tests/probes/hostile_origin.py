#!/usr/bin/env python3
"""A hostile origin for probing a cache by hand: GET /case/NAME answers the
raw bytes of CASES[NAME] (framing, status lines and header fields no HTTP
library would send), then closes. `hostile_origin.py list` prints the names.

    hostile_origin.py PORT

hostile_origin.sh runs every case twice through a node and prints what a
client got; tests/tests/hostile_origin.rs keeps the cases that found bugs.
"""
import socketserver, sys, threading

def big_headers(n): return "".join(f"X-H{i}: v\r\n" for i in range(n))
ok_tail = "Cache-Control: public, max-age=3600\r\n"
CASES = {
 "dup-cl": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n" + ok_tail + "\r\nhello!",
 "same-dup-cl": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n" + ok_tail + "\r\nhello",
 "cl-list": "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n" + ok_tail + "\r\nhello",
 "cl-te": "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n" + ok_tail + "\r\n5\r\nhello\r\n0\r\n\r\n",
 "te-gzip-chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n" + ok_tail + "\r\n5\r\nhello\r\n0\r\n\r\n",
 "te-chunked-gzip": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n" + ok_tail + "\r\nhello",
 "te-identity": "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n" + ok_tail + "\r\nhello",
 "status-999": "HTTP/1.1 999 Weird\r\nContent-Length: 5\r\n" + ok_tail + "\r\nhello",
 "status-2digit": "HTTP/1.1 20 OK\r\nContent-Length: 5\r\n\r\nhello",
 "status-600": "HTTP/1.1 600 X\r\nContent-Length: 5\r\n\r\nhello",
 "nul-in-value": "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 5\r\n" + ok_tail + "\r\nhello",
 "bare-cr": "HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: x=1\r\nContent-Length: 5\r\n" + ok_tail + "\r\nhello",
 "bare-lf": "HTTP/1.1 200 OK\nContent-Length: 5\n" + ok_tail.replace("\r\n","\n") + "\nhello",
 "obs-fold": "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 5\r\n" + ok_tail + "\r\nhello",
 "space-before-colon": "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n" + ok_tail + "\r\nhello",
 "many-headers": "HTTP/1.1 200 OK\r\n" + big_headers(5000) + "Content-Length: 5\r\n" + ok_tail + "\r\nhello",
 "huge-value": "HTTP/1.1 200 OK\r\nX-Big: " + "a" * 1_000_000 + "\r\nContent-Length: 5\r\n" + ok_tail + "\r\nhello",
 "cl-negative": "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n" + ok_tail + "\r\nhello",
 "cl-plus": "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n" + ok_tail + "\r\nhello",
 "cl-huge": "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n" + ok_tail + "\r\nhello",
 "cl-short": "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n" + ok_tail + "\r\nhello",
 "cl-long": "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n" + ok_tail + "\r\nhello",
 "chunk-overflow": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + ok_tail + "\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
 "chunk-no-end": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + ok_tail + "\r\n5\r\nhello\r\n",
 "chunk-bad-size": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + ok_tail + "\r\nzz\r\nhello\r\n0\r\n\r\n",
 "chunk-ext-huge": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + ok_tail + "\r\n5;" + "e" * 200000 + "\r\nhello\r\n0\r\n\r\n",
 "trailer-huge": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + ok_tail + "\r\n5\r\nhello\r\n0\r\n" + big_headers(5000) + "\r\n",
 "continue-flood": "HTTP/1.1 100 Continue\r\n\r\n" * 2000 + "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n" + ok_tail + "\r\nhello",
 "early-hints": "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n" + ok_tail + "\r\nhello",
 "switching": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nhello",
 "http2-version": "HTTP/2.0 200 OK\r\nContent-Length: 5\r\n" + ok_tail + "\r\nhello",
 "http09": "hello",
 "http10-close": "HTTP/1.0 200 OK\r\n" + ok_tail + "\r\nhello",
 "no-reason": "HTTP/1.1 200\r\nContent-Length: 5\r\n" + ok_tail + "\r\nhello",
 "maxage-huge": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCache-Control: public, max-age=999999999999999999999999\r\n\r\nhello",
 "smaxage-neg": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCache-Control: public, s-maxage=-5\r\n\r\nhello",
 "age-neg": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nAge: -5\r\n" + ok_tail + "\r\nhello",
 "age-huge": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nAge: 99999999999999999999999\r\n" + ok_tail + "\r\nhello",
 "date-far": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nDate: Fri, 31 Dec 99999 23:59:59 GMT\r\nExpires: Sat, 01 Jan 1 00:00:00 GMT\r\n" + ok_tail + "\r\nhello",
 "vary-star": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nVary: *\r\n" + ok_tail + "\r\nhello",
 "vary-many": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nVary: " + ", ".join(f"x-v{i}" for i in range(3000)) + "\r\n" + ok_tail + "\r\nhello",
 "cookies": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n" + "Set-Cookie: a=b\r\n" * 3000 + ok_tail + "\r\nhello",
 "surrogate-keys": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSurrogate-Key: " + " ".join(f"k{i}" for i in range(50000)) + "\r\n" + ok_tail + "\r\nhello",
 "content-range-200": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Range: bytes 0-4/99999999999999999999\r\n" + ok_tail + "\r\nhello",
 "206-unasked": "HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\nContent-Range: bytes 0-4/10\r\n" + ok_tail + "\r\nhello",
 "304-unasked": "HTTP/1.1 304 Not Modified\r\n" + ok_tail + "\r\n",
 "204-body": "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n" + ok_tail + "\r\nhello",
 "ce-stacked": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Encoding: gzip, gzip\r\nVary: Accept-Encoding\r\n" + ok_tail + "\r\nhello",
 "location-ctl": "HTTP/1.1 301 Moved\r\nLocation: /a\x7fb\r\nContent-Length: 0\r\n" + ok_tail + "\r\n",
 "header-name-bad": "HTTP/1.1 200 OK\r\nX A: b\r\nContent-Length: 5\r\n" + ok_tail + "\r\nhello",
 "header-name-empty": "HTTP/1.1 200 OK\r\n: b\r\nContent-Length: 5\r\n" + ok_tail + "\r\nhello",
 "utf8-value": "HTTP/1.1 200 OK\r\nX-U: caf\xc3\xa9\r\nContent-Length: 5\r\n" + ok_tail + "\r\nhello",
 "connection-hop": "HTTP/1.1 200 OK\r\nConnection: x-secret, close\r\nX-Secret: leak\r\nKeep-Alive: timeout=5\r\nContent-Length: 5\r\n" + ok_tail + "\r\nhello",
 "etag-obs": "HTTP/1.1 200 OK\r\nETag: \"abcdef\xfc\"\r\nContent-Length: 5\r\n" + ok_tail + "\r\nhello",
 "vary-ua": "HTTP/1.1 200 OK\r\nVary: User-Agent\r\nContent-Length: 5\r\n" + ok_tail + "\r\nhello",
 "empty": "",
 "garbage": "\x16\x03\x01\x00\xa5\x01\x00",
}
class H(socketserver.BaseRequestHandler):
    def handle(self):
        data = b""
        self.request.settimeout(5)
        try:
            while b"\r\n\r\n" not in data:
                c = self.request.recv(65536)
                if not c: return
                data += c
        except Exception:
            return
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        path = line.split(" ")[1] if " " in line else "/"
        name = path.rsplit("/", 1)[-1].split("?")[0]
        body = CASES.get(name, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        try:
            self.request.sendall(body.encode("latin-1"))
        except Exception:
            pass
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
if __name__ == "__main__":
    if sys.argv[1:] == ["list"]:
        print("\n".join(CASES)); sys.exit()
    S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
