//! Frame headers, opcodes and statuses.

/// Bytes of a frame header: code, flags, length.
pub const HEADER_LEN: usize = 6;
/// Request flag: the payload is `count u32` then `count` items.
pub const FLAG_BATCH: u8 = 0x01;
/// Response flag: an event of a subscription (`CHANGES_SUBSCRIBE`), not the answer to a
/// request.
pub const FLAG_EVENT: u8 = 0x02;

/// Request opcodes: the seed's, plus ours (`0x01`, `0x73`, `0x93`, and `0xA0` outside the seed's
/// ranges).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// Ours: authenticate the connection with a bearer token.
    Auth = 0x01,
    TsPutBuffered = 0x70,
    /// Ours: the same payload as `TS_PUT_BUFFERED`, written directly (all or nothing) and
    /// answered once fsync'd with the LSN.
    TsPut = 0x73,
    TsBufferStats = 0x71,
    TsBufferFlush = 0x72,
    VectorAddBuffered = 0x80,
    VectorUpdateBuffered = 0x81,
    VectorRemoveBuffered = 0x82,
    VectorBufferStats = 0x83,
    VectorBufferFlush = 0x84,
    WalApplyCompressed = 0x90,
    ReplicationStats = 0x91,
    ReplicationConfig = 0x92,
    /// Ours: subscribe a WebSocket session to a database's changefeed (JSON payload
    /// `{"database", "from_lsn"}`); events follow as frames with [`FLAG_EVENT`].
    ChangesSubscribe = 0x93,
    /// Ours: a similarity search (the payload of `POST /vectors/search` in binary); answers
    /// the hits, best first.
    VectorSearch = 0xA0,
}

impl Opcode {
    pub const ALL: [Opcode; 15] = [
        Opcode::Auth,
        Opcode::TsPutBuffered,
        Opcode::TsPut,
        Opcode::TsBufferStats,
        Opcode::TsBufferFlush,
        Opcode::VectorAddBuffered,
        Opcode::VectorUpdateBuffered,
        Opcode::VectorRemoveBuffered,
        Opcode::VectorBufferStats,
        Opcode::VectorBufferFlush,
        Opcode::WalApplyCompressed,
        Opcode::ReplicationStats,
        Opcode::ReplicationConfig,
        Opcode::ChangesSubscribe,
        Opcode::VectorSearch,
    ];

    pub fn from_u8(b: u8) -> Option<Opcode> {
        Opcode::ALL.into_iter().find(|o| *o as u8 == b)
    }
}

/// Response statuses (the seed's `0x00`–`0x04`, then ours).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Ok = 0x00,
    InvalidOpcode = 0x01,
    MalformedPayload = 0x02,
    ProcessingError = 0x03,
    BufferOverflow = 0x04,
    Unauthorized = 0x05,
    Forbidden = 0x06,
    TooManyRequests = 0x07,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Ok,
        Status::InvalidOpcode,
        Status::MalformedPayload,
        Status::ProcessingError,
        Status::BufferOverflow,
        Status::Unauthorized,
        Status::Forbidden,
        Status::TooManyRequests,
    ];

    pub fn from_u8(b: u8) -> Option<Status> {
        Status::ALL.into_iter().find(|s| *s as u8 == b)
    }
}

/// One frame as read: its first byte (opcode or status), flags, and the borrowed payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawFrame<'a> {
    pub code: u8,
    pub flags: u8,
    pub payload: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header announces a payload beyond the limit; the stream cannot be resynchronised.
    #[error("frame payload of {length} bytes exceeds the limit of {max}")]
    TooLarge { length: u64, max: usize },
}

/// Splits the next frame off `buf`: `Ok(None)` while it is incomplete, else the frame and the
/// bytes it took. Never copies.
pub fn split_frame(
    buf: &[u8],
    max_payload: usize,
) -> Result<Option<(RawFrame<'_>, usize)>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let length = u32::from_le_bytes([buf[2], buf[3], buf[4], buf[5]]) as u64;
    if length > max_payload as u64 {
        return Err(FrameError::TooLarge {
            length,
            max: max_payload,
        });
    }
    let end = HEADER_LEN + length as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((
        RawFrame {
            code: buf[0],
            flags: buf[1],
            payload: &buf[HEADER_LEN..end],
        },
        end,
    )))
}

/// Appends a frame to `out`. Panics only if `payload` exceeds `u32::MAX` bytes, which no
/// caller can produce within the frame limits.
pub fn encode_frame(code: u8, flags: u8, payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("frame payloads are far below 4 GiB");
    out.reserve(HEADER_LEN + payload.len());
    out.push(code);
    out.push(flags);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
}
