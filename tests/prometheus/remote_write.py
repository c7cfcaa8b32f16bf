"""Prometheus remote write 1.0 encoder, in pure Python (no protobuf library).

Builds the body of ``POST /api/v1/write``: a protobuf ``WriteRequest`` compressed with snappy
*block* format (not the framed/stream format), as Prometheus's own remote-write client does:

    message WriteRequest { repeated TimeSeries timeseries = 1; }
    message TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
    message Label        { string name = 1; string value = 2; }
    message Sample       { double value = 1; int64 timestamp = 2; }   // timestamp in ms

Labels are sent sorted by name (the spec requires it). Floats are written with their exact
bits, so NaN payloads survive: ``STALE_NAN`` is Prometheus's staleness marker
(bits 0x7ff0000000000002), distinct from an ordinary NaN.
"""

from __future__ import annotations

import struct
from typing import Dict, Iterable, List, Sequence, Tuple

import cramjam

STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]

HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "sluice-prom-difftest/1",
}

Sample = Tuple[int, float]  # (timestamp ms, value)


def is_stale(v: float) -> bool:
    return struct.pack("<d", v) == struct.pack("<Q", STALE_NAN_BITS)


def _varint(n: int) -> bytes:
    """Unsigned LEB128; negative int64 values are written as their 64-bit two's complement."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _len_delimited(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def encode_label(name: str, value: str) -> bytes:
    return _len_delimited(1, name.encode()) + _len_delimited(2, value.encode())


def encode_sample(ts_ms: int, value: float) -> bytes:
    # double value = 1 (wire type 1, fixed64 little endian); int64 timestamp = 2 (varint).
    return _key(1, 1) + struct.pack("<d", value) + _key(2, 0) + _varint(ts_ms)


def encode_timeseries(labels: Dict[str, str], samples: Sequence[Sample]) -> bytes:
    body = bytearray()
    for name in sorted(labels):
        body += _len_delimited(1, encode_label(name, labels[name]))
    for ts, v in samples:
        body += _len_delimited(2, encode_sample(ts, v))
    return bytes(body)


def encode_write_request(series: Iterable[Tuple[Dict[str, str], Sequence[Sample]]]) -> bytes:
    """Uncompressed protobuf bytes of a WriteRequest."""
    out = bytearray()
    for labels, samples in series:
        out += _len_delimited(1, encode_timeseries(labels, samples))
    return bytes(out)


def snappy_block(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(data))


def body(series: Iterable[Tuple[Dict[str, str], Sequence[Sample]]]) -> bytes:
    """The HTTP body of one remote-write request (snappy block of the WriteRequest)."""
    return snappy_block(encode_write_request(series))


def _selftest() -> None:
    # Known encodings (checked against protoc's output for the same messages).
    assert _varint(0) == b"\x00" and _varint(300) == b"\xac\x02"
    assert _varint(-1) == b"\xff" * 9 + b"\x01"
    assert encode_label("a", "b") == b"\x0a\x01a\x12\x01b"
    assert encode_sample(1, 1.0) == b"\x09" + struct.pack("<d", 1.0) + b"\x10\x01"
    assert is_stale(STALE_NAN) and not is_stale(float("nan"))
    raw = encode_write_request([({"__name__": "x"}, [(1, 1.0)])])
    assert bytes(cramjam.snappy.decompress_raw(snappy_block(raw))) == raw


_selftest()
