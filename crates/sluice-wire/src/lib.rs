//! The Sluice binary wire protocol: frames, opcodes, statuses and payloads, shared by
//! the server and the clients. `docs/wire-protocol.md` is the reference with byte-level
//! examples; `tests/it/doc_examples.rs` decodes and encodes exactly those bytes.
//!
//! # Frames
//! ```text
//! request:  [opcode u8][flags u8][length u32][payload: length bytes]
//! response: [status u8][flags u8][length u32][payload: length bytes]
//! ```
//! Little-endian throughout. Flag bit 0 ([`FLAG_BATCH`]) on a request: the payload is
//! `count u32` followed by `count` items of the opcode's item layout.
//!
//! # Decoding
//! [`split_frame`] is incremental and never copies: given the bytes read so far it answers
//! "incomplete", or a frame borrowing its payload plus how many bytes it used, so frames split
//! across reads or coalesced in one read decode the same. A header announcing more than the
//! reader's limit is [`FrameError::TooLarge`]: the connection cannot be resynchronised (the
//! payload is not read), so the caller answers an error frame and closes. [`decode_request`]
//! then turns a frame into a typed [`Request`]; an unknown opcode and a malformed payload are
//! distinct errors (statuses `0x01` and `0x02`) after which the connection stays usable,
//! because the frame's length was honoured. Vectors are borrowed as little-endian bytes
//! ([`VectorRef`]) and read without copying. No input makes the decoder panic or allocate
//! more than the frame's own size (counts are checked against the bytes present).

mod frame;
mod payload;

pub use frame::{
    FLAG_BATCH, FLAG_EVENT, FrameError, HEADER_LEN, Opcode, RawFrame, Status, encode_frame,
    split_frame,
};
pub use payload::{
    DecodeError, EncodeError, Reader, Request, SearchHitRef, TIMESTAMP_NOW, TsFrameBuilder,
    TsPoint, TsSample, TsSeries, TsSeriesBatch, VectorEntity, VectorQuery, VectorRef,
    decode_request, decode_search_hits, decode_ts_series, encode_auth, encode_search_hits,
    encode_ts_points, encode_vector_entities, encode_vector_removes, le_bytes, try_encode_ts_put,
    try_encode_vector_put,
};
