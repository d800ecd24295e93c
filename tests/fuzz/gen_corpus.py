#!/usr/bin/env python3
"""Write the seed corpus for fuzz_entry into tests/fuzz/corpus/entry/.

Each seed is a valid cache entry in the agw_entry.c layout (magic "AGWE",
u16 version (2), u16 status, u64 created, u64 fresh until, u32 CRC-32 of
the key, u32 key, headers and body lengths, all little-endian, then key,
headers, body), plus
a few bare headers blobs and near-misses, so the fuzzer starts from inputs
that reach deep into the decoder.  Run from anywhere; it rewrites the
directory's seeds deterministically.
"""

import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "entry")


def entry(status, created, key, headers, body, version=2, fresh=None):
    if fresh is None:
        fresh = created + 60 if created < 2**64 - 60 else 0
    fixed = b"AGWE" + struct.pack("<HHQQIIII", version, status, created,
                                  fresh, zlib.crc32(key) & 0xffffffff,
                                  len(key), len(headers), len(body))
    return fixed + key + headers + body


def fields(max_byte, status, headers, body, created, key, fresh=None):
    """The six Redis hash fields as fuzz_fields() reads them (None:
    missing)."""
    parts = [status, headers, body, created, key, fresh]
    lens = b"".join(struct.pack("<H", 0xffff if p is None else len(p))
                    for p in parts)
    return bytes([max_byte]) + lens + b"".join(p or b"" for p in parts)


def blob(*pairs):
    return b"".join(n + b": " + v + b"\r\n" for n, v in pairs)


JSON = blob((b"Content-Type", b"application/json"),
            (b"X-Server-Id", b"sim-1"))

SEEDS = {
    "minimal": entry(200, 0, b"", b"", b""),
    "get-models": entry(200, 1700000000, b"GEThttplocalhost/v1/models",
                        JSON, b'{"object":"list","data":[]}'),
    "post-chat": entry(200, 1700000123,
                       b"POSThttpapi.local/v1/chat/completions",
                       blob((b"Content-Type", b"application/json"),
                            (b"X-Empty", b""),
                            (b"Link", b"<https://x/y>; rel=next"),
                            (b"ETag", b'"abc"')),
                       b'{"id":"cmpl-1","choices":[{"text":"hi"}]}'),
    "binary-body": entry(200, 1, b"k", blob((b"A", b"b\tc")),
                         bytes(range(256))),
    "status-404": entry(404, 2, b"key\r\n\x00", b"", b"not found"),
    "obs-text": entry(599, 2**64 - 1, b"\xff" * 8,
                      blob((b"X-Caf", b"caf\xc3\xa9")), b""),
    "headers-only": blob((b"Content-Type", b"text/plain"),
                         (b"Cache-Control", b"max-age=60, public")),
    "bad-version": entry(200, 0, b"k", b"", b"", version=1),
    "bad-crc": entry(200, 0, b"k", b"", b"")[:24] + b"\0\0\0\0"
               + entry(200, 0, b"k", b"", b"")[28:],
    "no-fresh": entry(200, 1700000000, b"k", JSON, b"{}", fresh=0),
    "truncated": entry(200, 5, b"key", JSON, b"body")[:-1],
    "trailing": entry(200, 5, b"key", JSON, b"body") + b"x",
    "bad-header": entry(200, 5, b"key", b"A:b\r\n", b""),
    # a stored stream (SPEC 7.2): the events as the upstream sent them
    "stream-chat": entry(200, 1700000200,
                         b"POSThttpapi.local/v1/chat/completions",
                         blob((b"Content-Type", b"text/event-stream"),
                              (b"X-Server-Id", b"sim-1")),
                         b'data: {"choices":[{"delta":{"role":"assistant"}}]}'
                         b'\n\ndata: {"choices":[{"delta":{"content":"hi"}}]}'
                         b'\n\ndata: [DONE]\n\n'),
    "fields-stream": fields(1, b"200",
                            blob((b"Content-Type", b"text/event-stream")),
                            b"event: message_stop\ndata: {}\n\n",
                            b"1700000000", b"k"),
    "fields-ok": fields(1, b"200", JSON, b'{"ok":true}', b"1700000000",
                        b"GEThttplocalhost/v1/models", b"1700000060"),
    "fields-bad-fresh": fields(1, b"200", JSON, b"{}", b"1700000000",
                               b"k", b"-1"),
    "fields-101": fields(1, b"101",
                         blob((b"Transfer-Encoding", b"chunked"),
                              (b"Content-Length", b"5")),
                         b"hello", b"1", b"k"),
    "fields-missing": fields(1, b"200", JSON, None, b"1", b"k"),
    "fields-small-max": fields(40, b"200", b"", b"0123456789", b"1", b"k"),
}


def main():
    os.makedirs(OUT, exist_ok=True)

    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
