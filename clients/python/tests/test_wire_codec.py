"""Frame codecs against the byte-level examples of docs/wire-protocol.md (no server)."""

import re
import struct

import pytest

import sluice
from sluice import wire
from conftest import REPO


def doc_examples():
    text = (REPO / "docs" / "wire-protocol.md").read_text()
    return {name: bytes.fromhex("".join(body.split())) for name, body in re.findall(r"```hex (\w+)\n(.*?)```", text, re.S)}


ENCODED = {
    "ts_put_buffered": lambda: wire.encode_ts_put([("cpu_usage", "server01", 75.5, 1702645200000, {"datacenter": "eu-west-1"})]),
    "ts_put_buffered_batch": lambda: wire.encode_ts_put([("cpu", "a", 1.0, 1000), ("cpu", "a", 2.5, 2000)]),
    "ts_put": lambda: wire.encode_ts_put([sluice.Point("cpu", "a", 1.0, 1000), {"metric": "cpu", "entity": "a", "value": 2.5, "timestamp_ms": 2000}], buffered=False),
    "ts_buffer_stats": lambda: wire.encode_frame(wire.Opcode.TS_BUFFER_STATS),
    "ts_buffer_flush": lambda: wire.encode_frame(wire.Opcode.TS_BUFFER_FLUSH),
    "vector_add_buffered": lambda: wire.encode_vector_put([("doc1", [0.5, -1.0, 2.0], {"category": "tech"})]),
    "vector_update_buffered": lambda: wire.encode_vector_put([sluice.VectorEntity("doc1", [1.0, 0.0])], update=True),
    "vector_remove_buffered_batch": lambda: wire.encode_vector_remove(["a", "bc"]),
    "vector_buffer_stats": lambda: wire.encode_frame(wire.Opcode.VECTOR_BUFFER_STATS),
    "vector_buffer_flush": lambda: wire.encode_frame(wire.Opcode.VECTOR_BUFFER_FLUSH),
    "auth": lambda: wire.encode_auth("s3cret"),
    "vector_search": lambda: wire.encode_vector_search([1.0, 0.0], 2, {"a": 1}),
    "changes_subscribe": lambda: wire.encode_frame(wire.Opcode.CHANGES_SUBSCRIBE, b'{"from_lsn":41}'),
}


def test_the_documented_search_answer_decodes():
    text = (REPO / "docs" / "wire-protocol.md").read_text()
    block = text.split("Its answer with one hit", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    ((status, _, payload),) = wire.decode_frames(bytes.fromhex("".join(block.split())))
    assert status == 0
    (hit,) = wire.decode_search_hits(payload)
    assert (hit.pk, hit.distance, hit.score, hit.metadata) == ("p1", 0.0, 1.0, {})
    for cut in range(len(payload)):
        with pytest.raises(sluice.DecodeError):
            wire.decode_search_hits(payload[:cut])


def test_every_doc_example_is_encoded_exactly():
    examples = doc_examples()
    assert set(examples) == set(ENCODED), "docs/wire-protocol.md examples changed"
    for name, expected in examples.items():
        assert ENCODED[name]() == expected, name


def test_numpy_vector_encodes_like_a_list():
    np = pytest.importorskip("numpy")
    a = wire.encode_vector_put([("doc1", np.array([0.5, -1.0, 2.0]), {"category": "tech"})])
    assert a == doc_examples()["vector_add_buffered"]
    b = wire.encode_vector_put([("doc1", np.array([0.5, -1.0, 2.0], dtype=np.float32), {"category": "tech"})])
    assert a == b
    with pytest.raises(ValueError):
        wire.encode_vector_put([("x", np.zeros((2, 2)))])


def test_decode_round_trip_and_timestamp_now():
    frame = wire.encode_ts_put([("m", "e", 1.5, None, {"k": "v"}), ("m", "e", 2.5, 7)])
    ((op, flags, payload),) = wire.decode_frames(frame)
    assert op == 0x70 and flags == 1
    # i64::MIN on the wire is 00..80
    assert payload.find(b"\x00" * 7 + b"\x80") > 0
    pts = wire.decode_ts_items(payload, flags)
    assert pts == [sluice.Point("m", "e", 1.5, None, {"k": "v"}), sluice.Point("m", "e", 2.5, 7, {})]
    vf = wire.encode_vector_put([("a", [1.0, 2.0], {"x": 1}), ("b", [3.0, 4.0])])
    ((op, flags, payload),) = wire.decode_frames(vf)
    ents = wire.decode_vector_items(payload, flags)
    assert [(e.pk, e.vector, e.metadata) for e in ents] == [("a", [1.0, 2.0], {"x": 1}), ("b", [3.0, 4.0], None)]


def test_invalid_points_are_refused_before_sending():
    with pytest.raises(ValueError):
        wire.encode_ts_put([("m", "e", float("nan"), 1)])
    with pytest.raises(TypeError):
        wire.encode_ts_put([("m", "e", "high", 1)])
    with pytest.raises(ValueError):
        wire.encode_ts_put([("m" * 70000, "e", 1.0, 1)])
    with pytest.raises(ValueError):
        wire.encode_ts_put([])


def test_header_layout():
    f = wire.encode_frame(0x72, b"abc", 1)
    assert f[:6] == struct.pack("<BBI", 0x72, 1, 3)
