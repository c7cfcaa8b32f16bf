//! The client's errors.

use sluice_api::{ErrorBody, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error (HTTP status or wire status code) and its error body.
    #[error("server answered {status}: {} ({})", body.error, body.code)]
    Api { status: u16, body: Box<ErrorBody> },
    /// Still refused (429/503/0x04/0x07) after every retry.
    #[error("still refused after {attempts} attempts: {last}")]
    RetriesExhausted { attempts: u32, last: Box<Error> },
    /// The connection failed or the answer could not be read.
    #[error("transport: {0}")]
    Transport(String),
    /// The answer did not have the expected shape.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The request cannot be encoded (e.g. a wire field longer than its length prefix).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl Error {
    /// The server's error code, if it answered.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api { body, .. } => Some(body.code),
            Error::RetriesExhausted { last, .. } => last.code(),
            _ => None,
        }
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        Error::Transport(e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Transport(e.to_string())
    }
}
