//! The MySQL client/server wire protocol, pure: bytes in, values out, and back.
//!
//! - [`packet`]: physical packet framing (3-byte length, sequence id) and joining of
//!   packets of 16 MiB and more into one logical payload.
//! - [`codec`]: the little-endian and length-encoded primitives every message is made of.
//! - [`handshake`]: capability and status flags, the server greeting, the client's
//!   handshake response and the auth switch request.
//! - [`auth`]: `mysql_native_password` and `caching_sha2_password` proofs, and the RSA
//!   steps of caching_sha2_password's full authentication.
//! - [`command`]: the commands a client sends (query, ping, binlog dump, ...).
//! - [`resultset`]: OK, ERR and EOF packets, column definitions and text result sets.
//!
//! This module must not do I/O: no sockets, no files, no clocks, no randomness (entropy is
//! passed in). Partial input is reported as "need more" or [`ProtocolError::Truncated`],
//! never as a panic.

pub mod auth;
pub mod codec;
pub mod command;
pub mod handshake;
pub mod packet;
pub mod resultset;

use std::fmt;

/// Why bytes could not be turned into a protocol value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The input ended before `what` was complete.
    Truncated { what: &'static str },
    /// `what` was present but its contents are not valid.
    Malformed { what: &'static str },
    /// A length of `len` bytes exceeds the bound `max` for `what`.
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// A packet arrived with sequence id `got` where `expected` was due.
    OutOfOrder { expected: u8, got: u8 },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Truncated { what } => write!(f, "truncated {what}"),
            ProtocolError::Malformed { what } => write!(f, "malformed {what}"),
            ProtocolError::TooLarge { what, len, max } => {
                write!(f, "{what} too large: {len} bytes, at most {max}")
            }
            ProtocolError::OutOfOrder { expected, got } => {
                write!(
                    f,
                    "packets out of order: sequence id {got}, expected {expected}"
                )
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Decodes a hex string of captured bytes (tests only).
#[cfg(test)]
pub(crate) fn test_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digits"))
        .collect()
}
