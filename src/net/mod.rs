//! Blocking network I/O for the MySQL protocol, one layer above the pure `mysql` module.
//!
//! - [`conn`]: [`conn::PacketConn`], buffered logical-packet reads and writes over any
//!   `Read + Write` stream, with sequence-id checks and size bounds.
//! - [`client`]: [`client::Client`], the blocking MySQL client the syncer uses to log in to
//!   a master, run queries and send binlog commands.
//!
//! Every socket opened here has connect, read and write timeouts. This module decides
//! nothing about replication; it moves packets and reports typed errors.

pub mod client;
pub mod conn;

use std::fmt;
use std::io;

use crate::mysql::auth::nonce_from_entropy;
use crate::mysql::handshake::SCRAMBLE_LEN;
use crate::mysql::resultset::ErrPacket;
use crate::mysql::ProtocolError;

#[derive(Debug)]
pub enum NetError {
    /// The socket failed (including read/write timeouts).
    Io(io::Error),
    /// The peer sent bytes that break the protocol.
    Protocol(ProtocolError),
    /// The server answered with an ERR packet.
    Server(ErrPacket),
    /// Authentication could not proceed (unsupported plugin, bad greeting, ...).
    Auth(String),
    /// The peer closed the connection at a packet boundary.
    Closed,
    /// The peer answered something valid but not what this exchange allows.
    Unexpected(&'static str),
}

impl NetError {
    /// Whether this is a read or write timeout (the socket itself may still be usable
    /// if no byte of a packet had been read; see `PacketConn::read_packet_into`).
    pub fn is_timeout(&self) -> bool {
        matches!(self, NetError::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Io(e) => write!(f, "i/o error: {e}"),
            NetError::Protocol(e) => write!(f, "protocol error: {e}"),
            NetError::Server(e) => write!(f, "server error: {e}"),
            NetError::Auth(msg) => write!(f, "authentication failed: {msg}"),
            NetError::Closed => write!(f, "connection closed by peer"),
            NetError::Unexpected(what) => write!(f, "unexpected packet: {what}"),
        }
    }
}

impl std::error::Error for NetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NetError::Io(e) => Some(e),
            NetError::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

/// A fresh greeting nonce: 20 printable bytes from /dev/urandom.
pub fn random_nonce() -> io::Result<[u8; SCRAMBLE_LEN]> {
    use std::io::Read;
    let mut entropy = [0; SCRAMBLE_LEN];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut entropy)?;
    Ok(nonce_from_entropy(&entropy))
}

impl From<io::Error> for NetError {
    fn from(e: io::Error) -> Self {
        NetError::Io(e)
    }
}

impl From<ProtocolError> for NetError {
    fn from(e: ProtocolError) -> Self {
        NetError::Protocol(e)
    }
}

impl From<ErrPacket> for NetError {
    fn from(e: ErrPacket) -> Self {
        NetError::Server(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_nonces_are_printable_and_differ() {
        let a = random_nonce().unwrap();
        let b = random_nonce().unwrap();
        assert!(a.iter().chain(&b).all(|c| c.is_ascii_graphic()));
        assert_ne!(a, b);
    }
}
