//! What a binlog is, as pure code: bytes in, values out, and back.
//!
//! - [`event`]: the 19-byte event header, every MySQL and MariaDB event type code, the CRC32
//!   rules (including the FORMAT_DESCRIPTION in-use flag quirk), and parsers/builders for the
//!   events ferrobus must understand (FDE, ROTATE, HEARTBEAT, QUERY, XID, the GTID events).
//! - [`gtid`]: MariaDB GTIDs and GTID lists (`0-1-5,1-2-9`), MySQL GTID sets
//!   (`uuid[:tag]:1-5:7`) with their text and binary encodings.
//! - [`transaction`]: a tracker that is fed whole events and says where transaction groups
//!   start and end, so that the syncer stores whole transactions only.
//! - [`mod@file`]: the native binlog file format (magic + events) over any `Read`.
//!
//! Nothing here opens a socket or a file; [`mod@file`] reads from a caller-supplied `impl Read`.
//! Malformed input is reported as a [`BinlogError`], never a panic.

pub mod event;
pub mod file;
pub mod gtid;
mod reader;
pub mod transaction;

use std::fmt;

/// Why a binlog value could not be decoded or a text form could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinlogError {
    /// Fewer bytes than the structure needs.
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    /// The header's event_size is below the header length or above the limit, or does not
    /// match the bytes given.
    BadEventSize { event_size: u32, available: usize },
    /// The event's trailing CRC32 does not match its bytes.
    ChecksumMismatch { stored: u32, computed: u32 },
    /// A field holds a value the format does not allow.
    Malformed { what: &'static str, detail: String },
    /// A GTID, GTID list or GTID set text could not be parsed.
    GtidText { text: String, reason: &'static str },
    /// An event arrived that cannot appear where it did in a transaction group (for
    /// example a GTID event before the previous group ended). The tracker has reset itself.
    UnexpectedEvent { type_code: u8, reason: &'static str },
}

impl fmt::Display for BinlogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BinlogError::Truncated {
                what,
                needed,
                available,
            } => write!(f, "truncated {what}: need {needed} bytes, have {available}"),
            BinlogError::BadEventSize {
                event_size,
                available,
            } => write!(f, "bad event_size {event_size} (have {available} bytes)"),
            BinlogError::ChecksumMismatch { stored, computed } => write!(
                f,
                "event CRC32 mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            BinlogError::Malformed { what, detail } => write!(f, "malformed {what}: {detail}"),
            BinlogError::GtidText { text, reason } => {
                write!(f, "bad GTID text {text:?}: {reason}")
            }
            BinlogError::UnexpectedEvent { type_code, reason } => write!(
                f,
                "unexpected {} event ({type_code}): {reason}",
                event::type_name(*type_code)
            ),
        }
    }
}

impl std::error::Error for BinlogError {}

/// Which server wrote a binlog: the two differ in GTIDs (MariaDB domain-server-seq lists vs
/// MySQL uuid sets), in the events a dump starts with, and in what replicas ask for.
/// The default is MariaDB's, what ferrobus assumes before it knows better (as when nothing
/// is stored and no version says otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavour {
    #[default]
    MariaDb,
    MySql,
}

impl Flavour {
    /// The flavour of a server version string (a FORMAT_DESCRIPTION's, a handshake's, or
    /// `SELECT VERSION()`): MariaDB always names itself ("10.11.6-MariaDB-log", or
    /// "5.5.5-10.x.y-MariaDB…" in a 10.x handshake), in any case; anything else speaks
    /// MySQL's protocol.
    pub fn of_server_version(version: &str) -> Flavour {
        if version.to_ascii_lowercase().contains("mariadb") {
            Flavour::MariaDb
        } else {
            Flavour::MySql
        }
    }

    /// The flavour's name in logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::MariaDb => "MariaDB",
            Flavour::MySql => "MySQL",
        }
    }
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Result of every fallible function in this module.
pub type Result<T> = std::result::Result<T, BinlogError>;

/// Real binlog files for tests: the MariaDB captures in `tests/data/mariadb/`, and the MySQL
/// fixtures in `tests/data/mysql/` or, until they are copied there, the shared fixtures.
#[cfg(test)]
pub(crate) mod test_data {
    use std::path::PathBuf;

    fn mysql_dir() -> PathBuf {
        let in_repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/mysql");
        if in_repo.is_dir() {
            in_repo
        } else {
            PathBuf::from("/work/shared/fixtures/mysql")
        }
    }

    fn read(path: PathBuf) -> Vec<u8> {
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    pub(crate) fn mariadb_file(name: &str) -> Vec<u8> {
        read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/mariadb")
                .join(name),
        )
    }

    pub(crate) fn mysql_file(name: &str) -> Vec<u8> {
        read(mysql_dir().join(name))
    }

    /// Every binlog file of a directory (skipping README.md), sorted by name.
    fn binlogs_in(dir: PathBuf) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.extension().and_then(|e| e.to_str()) != Some("md"))
            .map(|path| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, read(path))
            })
            .collect();
        out.sort();
        out
    }

    pub(crate) fn mysql_files() -> Vec<(String, Vec<u8>)> {
        binlogs_in(mysql_dir())
    }

    pub(crate) fn mariadb_files() -> Vec<(String, Vec<u8>)> {
        binlogs_in(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/mariadb"))
    }

    /// Splits a well-formed binlog file into its events (file.rs has the checked reader).
    pub(crate) fn events_of(file: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut pos = 4;
        while pos + 13 <= file.len() {
            let size = u32::from_le_bytes(file[pos + 9..pos + 13].try_into().unwrap()) as usize;
            out.push(&file[pos..pos + size]);
            pos += size;
        }
        out
    }
}
