//! Binlog events as bytes: the common 19-byte header, every MySQL and MariaDB event type
//! code, the CRC32 rules, and parsers/builders for the events ferrobus reasons about
//! (FORMAT_DESCRIPTION, ROTATE, HEARTBEAT, QUERY, XID, the MySQL and MariaDB GTID events).
//!
//! An "event" here is always the whole event: header, body and, when the binlog checksum is
//! CRC32, the trailing 4-byte CRC. Functions that need to know where the body ends take a
//! `checksum_len` (0 or [`CHECKSUM_LEN`]). Nothing here does I/O, and nothing panics on bad
//! input: malformed events come back as [`BinlogError`]. Row events are not decoded.

use super::gtid::{MariaGtid, MysqlGtidSet};
use super::reader::Reader;
use super::{BinlogError, Result};
use crate::limits::BINLOG_FILE_NAME_MAX;

/// Length of the v4 event header: timestamp 4, type 1, server_id 4, event_size 4, log_pos 4,
/// flags 2.
pub const HEADER_LEN: usize = 19;
/// Length of the trailing CRC32 when the binlog checksum is CRC32.
pub const CHECKSUM_LEN: usize = 4;
/// Byte offset of the type code in the header.
pub const TYPE_CODE_OFFSET: usize = 4;
/// Byte offset of event_size in the header.
pub const EVENT_SIZE_OFFSET: usize = 9;
/// Byte offset of log_pos in the header.
pub const LOG_POS_OFFSET: usize = 13;
/// Byte offset of the 2-byte flags in the header.
pub const FLAGS_OFFSET: usize = 17;

// ---- Event type codes: MySQL (0..=42) ----
pub const UNKNOWN_EVENT: u8 = 0;
pub const START_EVENT_V3: u8 = 1;
pub const QUERY_EVENT: u8 = 2;
pub const STOP_EVENT: u8 = 3;
pub const ROTATE_EVENT: u8 = 4;
pub const INTVAR_EVENT: u8 = 5;
pub const LOAD_EVENT: u8 = 6;
pub const SLAVE_EVENT: u8 = 7;
pub const CREATE_FILE_EVENT: u8 = 8;
pub const APPEND_BLOCK_EVENT: u8 = 9;
pub const EXEC_LOAD_EVENT: u8 = 10;
pub const DELETE_FILE_EVENT: u8 = 11;
pub const NEW_LOAD_EVENT: u8 = 12;
pub const RAND_EVENT: u8 = 13;
pub const USER_VAR_EVENT: u8 = 14;
pub const FORMAT_DESCRIPTION_EVENT: u8 = 15;
pub const XID_EVENT: u8 = 16;
pub const BEGIN_LOAD_QUERY_EVENT: u8 = 17;
pub const EXECUTE_LOAD_QUERY_EVENT: u8 = 18;
pub const TABLE_MAP_EVENT: u8 = 19;
pub const PRE_GA_WRITE_ROWS_EVENT: u8 = 20;
pub const PRE_GA_UPDATE_ROWS_EVENT: u8 = 21;
pub const PRE_GA_DELETE_ROWS_EVENT: u8 = 22;
pub const WRITE_ROWS_EVENT_V1: u8 = 23;
pub const UPDATE_ROWS_EVENT_V1: u8 = 24;
pub const DELETE_ROWS_EVENT_V1: u8 = 25;
pub const INCIDENT_EVENT: u8 = 26;
pub const HEARTBEAT_LOG_EVENT: u8 = 27;
pub const IGNORABLE_LOG_EVENT: u8 = 28;
pub const ROWS_QUERY_LOG_EVENT: u8 = 29;
pub const WRITE_ROWS_EVENT: u8 = 30;
pub const UPDATE_ROWS_EVENT: u8 = 31;
pub const DELETE_ROWS_EVENT: u8 = 32;
/// MySQL GTID (uuid:gno). Not to be confused with MariaDB's [`GTID_EVENT`] (162).
pub const GTID_LOG_EVENT: u8 = 33;
pub const ANONYMOUS_GTID_LOG_EVENT: u8 = 34;
pub const PREVIOUS_GTIDS_LOG_EVENT: u8 = 35;
pub const TRANSACTION_CONTEXT_EVENT: u8 = 36;
pub const VIEW_CHANGE_EVENT: u8 = 37;
/// Ends the prepared part of an XA transaction (MySQL 5.7+, and MariaDB 10.5+ uses the same
/// code for its XA_prepare_log_event).
pub const XA_PREPARE_LOG_EVENT: u8 = 38;
pub const PARTIAL_UPDATE_ROWS_EVENT: u8 = 39;
/// A whole (usually zstd-compressed) transaction in one event (MySQL 8.0.20+).
pub const TRANSACTION_PAYLOAD_EVENT: u8 = 40;
pub const HEARTBEAT_LOG_EVENT_V2: u8 = 41;
/// MySQL 8.3+ GTID with a tag, serialized in the mysql::serialization format.
pub const GTID_TAGGED_LOG_EVENT: u8 = 42;

// ---- Event type codes: MariaDB (160..) ----
pub const ANNOTATE_ROWS_EVENT: u8 = 160;
pub const BINLOG_CHECKPOINT_EVENT: u8 = 161;
/// MariaDB GTID (domain-server-seq). Not to be confused with MySQL's [`GTID_LOG_EVENT`].
pub const GTID_EVENT: u8 = 162;
pub const GTID_LIST_EVENT: u8 = 163;
pub const START_ENCRYPTION_EVENT: u8 = 164;
pub const QUERY_COMPRESSED_EVENT: u8 = 165;
pub const WRITE_ROWS_COMPRESSED_EVENT_V1: u8 = 166;
pub const UPDATE_ROWS_COMPRESSED_EVENT_V1: u8 = 167;
pub const DELETE_ROWS_COMPRESSED_EVENT_V1: u8 = 168;
pub const WRITE_ROWS_COMPRESSED_EVENT: u8 = 169;
pub const UPDATE_ROWS_COMPRESSED_EVENT: u8 = 170;
pub const DELETE_ROWS_COMPRESSED_EVENT: u8 = 171;
/// MariaDB 11.x (MDEV-32570): a fragment of a rows event too big for one packet.
pub const PARTIAL_ROW_DATA_EVENT: u8 = 172;

/// The server's name for an event type code ("UNKNOWN" for codes no server defines).
pub fn type_name(code: u8) -> &'static str {
    match code {
        UNKNOWN_EVENT => "UNKNOWN_EVENT",
        START_EVENT_V3 => "START_EVENT_V3",
        QUERY_EVENT => "QUERY_EVENT",
        STOP_EVENT => "STOP_EVENT",
        ROTATE_EVENT => "ROTATE_EVENT",
        INTVAR_EVENT => "INTVAR_EVENT",
        LOAD_EVENT => "LOAD_EVENT",
        SLAVE_EVENT => "SLAVE_EVENT",
        CREATE_FILE_EVENT => "CREATE_FILE_EVENT",
        APPEND_BLOCK_EVENT => "APPEND_BLOCK_EVENT",
        EXEC_LOAD_EVENT => "EXEC_LOAD_EVENT",
        DELETE_FILE_EVENT => "DELETE_FILE_EVENT",
        NEW_LOAD_EVENT => "NEW_LOAD_EVENT",
        RAND_EVENT => "RAND_EVENT",
        USER_VAR_EVENT => "USER_VAR_EVENT",
        FORMAT_DESCRIPTION_EVENT => "FORMAT_DESCRIPTION_EVENT",
        XID_EVENT => "XID_EVENT",
        BEGIN_LOAD_QUERY_EVENT => "BEGIN_LOAD_QUERY_EVENT",
        EXECUTE_LOAD_QUERY_EVENT => "EXECUTE_LOAD_QUERY_EVENT",
        TABLE_MAP_EVENT => "TABLE_MAP_EVENT",
        PRE_GA_WRITE_ROWS_EVENT => "PRE_GA_WRITE_ROWS_EVENT",
        PRE_GA_UPDATE_ROWS_EVENT => "PRE_GA_UPDATE_ROWS_EVENT",
        PRE_GA_DELETE_ROWS_EVENT => "PRE_GA_DELETE_ROWS_EVENT",
        WRITE_ROWS_EVENT_V1 => "WRITE_ROWS_EVENT_V1",
        UPDATE_ROWS_EVENT_V1 => "UPDATE_ROWS_EVENT_V1",
        DELETE_ROWS_EVENT_V1 => "DELETE_ROWS_EVENT_V1",
        INCIDENT_EVENT => "INCIDENT_EVENT",
        HEARTBEAT_LOG_EVENT => "HEARTBEAT_LOG_EVENT",
        IGNORABLE_LOG_EVENT => "IGNORABLE_LOG_EVENT",
        ROWS_QUERY_LOG_EVENT => "ROWS_QUERY_LOG_EVENT",
        WRITE_ROWS_EVENT => "WRITE_ROWS_EVENT",
        UPDATE_ROWS_EVENT => "UPDATE_ROWS_EVENT",
        DELETE_ROWS_EVENT => "DELETE_ROWS_EVENT",
        GTID_LOG_EVENT => "GTID_LOG_EVENT",
        ANONYMOUS_GTID_LOG_EVENT => "ANONYMOUS_GTID_LOG_EVENT",
        PREVIOUS_GTIDS_LOG_EVENT => "PREVIOUS_GTIDS_LOG_EVENT",
        TRANSACTION_CONTEXT_EVENT => "TRANSACTION_CONTEXT_EVENT",
        VIEW_CHANGE_EVENT => "VIEW_CHANGE_EVENT",
        XA_PREPARE_LOG_EVENT => "XA_PREPARE_LOG_EVENT",
        PARTIAL_UPDATE_ROWS_EVENT => "PARTIAL_UPDATE_ROWS_EVENT",
        TRANSACTION_PAYLOAD_EVENT => "TRANSACTION_PAYLOAD_EVENT",
        HEARTBEAT_LOG_EVENT_V2 => "HEARTBEAT_LOG_EVENT_V2",
        GTID_TAGGED_LOG_EVENT => "GTID_TAGGED_LOG_EVENT",
        ANNOTATE_ROWS_EVENT => "ANNOTATE_ROWS_EVENT",
        BINLOG_CHECKPOINT_EVENT => "BINLOG_CHECKPOINT_EVENT",
        GTID_EVENT => "GTID_EVENT",
        GTID_LIST_EVENT => "GTID_LIST_EVENT",
        START_ENCRYPTION_EVENT => "START_ENCRYPTION_EVENT",
        QUERY_COMPRESSED_EVENT => "QUERY_COMPRESSED_EVENT",
        WRITE_ROWS_COMPRESSED_EVENT_V1 => "WRITE_ROWS_COMPRESSED_EVENT_V1",
        UPDATE_ROWS_COMPRESSED_EVENT_V1 => "UPDATE_ROWS_COMPRESSED_EVENT_V1",
        DELETE_ROWS_COMPRESSED_EVENT_V1 => "DELETE_ROWS_COMPRESSED_EVENT_V1",
        WRITE_ROWS_COMPRESSED_EVENT => "WRITE_ROWS_COMPRESSED_EVENT",
        UPDATE_ROWS_COMPRESSED_EVENT => "UPDATE_ROWS_COMPRESSED_EVENT",
        DELETE_ROWS_COMPRESSED_EVENT => "DELETE_ROWS_COMPRESSED_EVENT",
        PARTIAL_ROW_DATA_EVENT => "PARTIAL_ROW_DATA_EVENT",
        _ => "UNKNOWN",
    }
}

// ---- Header flags ----
/// Set in the FDE of a binlog file while the server has it open; the FDE's CRC32 is
/// computed as if it were clear.
pub const LOG_EVENT_BINLOG_IN_USE_F: u16 = 0x1;
pub const LOG_EVENT_FORCED_ROTATE_F: u16 = 0x2;
pub const LOG_EVENT_THREAD_SPECIFIC_F: u16 = 0x4;
pub const LOG_EVENT_SUPPRESS_USE_F: u16 = 0x8;
pub const LOG_EVENT_UPDATE_TABLE_MAP_VERSION_F: u16 = 0x10;
/// The event does not exist in any binlog file (a dump's first ROTATE, for example).
pub const LOG_EVENT_ARTIFICIAL_F: u16 = 0x20;
pub const LOG_EVENT_RELAY_LOG_F: u16 = 0x40;
pub const LOG_EVENT_IGNORABLE_F: u16 = 0x80;
pub const LOG_EVENT_NO_FILTER_F: u16 = 0x100;
pub const LOG_EVENT_MTS_ISOLATE_F: u16 = 0x200;
/// MariaDB: the event may be applied even if it carries the replica's own server_id.
pub const LOG_EVENT_ACCEPT_OWN_F: u16 = 0x4000;
/// MariaDB: @@skip_replication was set when the event was logged.
pub const LOG_EVENT_SKIP_REPLICATION_F: u16 = 0x8000;

/// The common v4 event header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHeader {
    pub timestamp: u32,
    pub type_code: u8,
    pub server_id: u32,
    pub event_size: u32,
    /// Position of the next event in the master's binlog file; 0 for artificial events.
    pub log_pos: u32,
    pub flags: u16,
}

impl EventHeader {
    /// Decodes the first [`HEADER_LEN`] bytes. Does not check event_size against anything.
    ///
    /// Every stored byte passes through here several times (syncer, index, binlog server),
    /// so it reads the fixed layout directly rather than field by field with bound checks.
    #[inline]
    pub fn parse(bytes: &[u8]) -> Result<EventHeader> {
        let Some(h) = bytes.first_chunk::<HEADER_LEN>() else {
            return Err(BinlogError::Truncated {
                what: "event header",
                needed: HEADER_LEN,
                available: bytes.len(),
            });
        };
        let u32_at = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        Ok(EventHeader {
            timestamp: u32_at(0),
            type_code: h[4],
            server_id: u32_at(5),
            event_size: u32_at(EVENT_SIZE_OFFSET),
            log_pos: u32_at(LOG_POS_OFFSET),
            flags: u16::from_le_bytes([h[FLAGS_OFFSET], h[FLAGS_OFFSET + 1]]),
        })
    }

    /// Appends the 19 header bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        out.push(self.type_code);
        out.extend_from_slice(&self.server_id.to_le_bytes());
        out.extend_from_slice(&self.event_size.to_le_bytes());
        out.extend_from_slice(&self.log_pos.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
    }
}

/// Parses the header of a whole event and checks that event_size is the length of `event`.
pub fn parse_whole(event: &[u8]) -> Result<EventHeader> {
    let header = EventHeader::parse(event)?;
    if header.event_size as usize != event.len() || event.len() < HEADER_LEN {
        return Err(BinlogError::BadEventSize {
            event_size: header.event_size,
            available: event.len(),
        });
    }
    Ok(header)
}

/// The event's body: after the header, before the checksum.
pub fn event_body(event: &[u8], checksum_len: usize) -> Result<&[u8]> {
    let end = event
        .len()
        .checked_sub(checksum_len)
        .filter(|&end| end >= HEADER_LEN)
        .ok_or(BinlogError::Truncated {
            what: "event",
            needed: HEADER_LEN + checksum_len,
            available: event.len(),
        })?;
    Ok(&event[HEADER_LEN..end])
}

/// Overwrites log_pos in an event's header (the caller fixes the CRC afterwards).
pub fn set_log_pos(event: &mut [u8], log_pos: u32) {
    if let Some(field) = event.get_mut(LOG_POS_OFFSET..LOG_POS_OFFSET + 4) {
        field.copy_from_slice(&log_pos.to_le_bytes());
    }
}

// ---- CRC32 ----

/// CRC32 of `event` without its last 4 bytes, computed as MySQL does: for a
/// FORMAT_DESCRIPTION event the LOG_EVENT_BINLOG_IN_USE_F bit (byte 17) counts as clear.
/// Returns `None` if the event is shorter than a header plus a checksum.
pub fn compute_checksum(event: &[u8]) -> Option<u32> {
    if event.len() < HEADER_LEN + CHECKSUM_LEN {
        return None;
    }
    let covered = &event[..event.len() - CHECKSUM_LEN];
    let mut hasher = crc32fast::Hasher::new();
    if covered[TYPE_CODE_OFFSET] == FORMAT_DESCRIPTION_EVENT {
        hasher.update(&covered[..FLAGS_OFFSET]);
        hasher.update(&[covered[FLAGS_OFFSET] & !(LOG_EVENT_BINLOG_IN_USE_F as u8)]);
        hasher.update(&covered[FLAGS_OFFSET + 1..]);
    } else {
        hasher.update(covered);
    }
    Some(hasher.finalize())
}

/// The CRC32 stored in the last 4 bytes of an event.
pub fn stored_checksum(event: &[u8]) -> Option<u32> {
    let start = event.len().checked_sub(CHECKSUM_LEN)?;
    let bytes: [u8; 4] = event.get(start..)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// Whether the last 4 bytes of `event` are its CRC32 (see [`compute_checksum`]).
pub fn verify_checksum(event: &[u8]) -> bool {
    match (compute_checksum(event), stored_checksum(event)) {
        (Some(computed), Some(stored)) => computed == stored,
        _ => false,
    }
}

/// [`verify_checksum`] for an event that arrives in pieces (one too large to hold whole):
/// fed every byte in order, it knows the event's CRC32 once the last one is in. Not for
/// FORMAT_DESCRIPTION events (their in-use flag is masked; they are small and checked whole).
#[derive(Debug, Clone)]
pub struct ChecksumStream {
    hasher: crc32fast::Hasher,
    /// The event's length, and how many of its bytes are still to come.
    len: usize,
    left: usize,
    /// The stored CRC32, little endian, as its bytes arrive.
    stored: [u8; CHECKSUM_LEN],
    /// Never valid: too short to hold a checksum, a FORMAT_DESCRIPTION event, or fed more
    /// bytes than it has.
    unusable: bool,
}

impl ChecksumStream {
    /// For an event of `len` bytes.
    pub fn new(len: usize) -> ChecksumStream {
        ChecksumStream {
            hasher: crc32fast::Hasher::new(),
            len,
            left: len,
            stored: [0; CHECKSUM_LEN],
            unusable: len < HEADER_LEN + CHECKSUM_LEN,
        }
    }

    /// Takes the next bytes of the event.
    pub fn update(&mut self, bytes: &[u8]) {
        if bytes.len() > self.left {
            self.unusable = true;
            self.left = 0;
            return;
        }
        // Offset in the event of bytes[0], and where its checksum starts.
        let at = self.len - self.left;
        if let Some(&type_code) = TYPE_CODE_OFFSET.checked_sub(at).and_then(|i| bytes.get(i)) {
            self.unusable |= type_code == FORMAT_DESCRIPTION_EVENT;
        }
        let checksum_at = self.len.saturating_sub(CHECKSUM_LEN);
        let hashed = checksum_at.saturating_sub(at).min(bytes.len());
        self.hasher.update(&bytes[..hashed]);
        for (i, &b) in bytes[hashed..].iter().enumerate() {
            if let Some(slot) = self.stored.get_mut(at + hashed + i - checksum_at) {
                *slot = b;
            }
        }
        self.left -= bytes.len();
    }

    /// Whether every byte of the event is in.
    pub fn complete(&self) -> bool {
        self.left == 0
    }

    /// Whether the event is complete and its last 4 bytes are the CRC32 of the others.
    pub fn matches(&self) -> bool {
        self.complete()
            && !self.unusable
            && self.hasher.clone().finalize() == u32::from_le_bytes(self.stored)
    }
}

/// Like [`verify_checksum`], but says what differs.
pub fn check_checksum(event: &[u8]) -> Result<()> {
    let computed = compute_checksum(event).ok_or(BinlogError::Truncated {
        what: "checksummed event",
        needed: HEADER_LEN + CHECKSUM_LEN,
        available: event.len(),
    })?;
    let stored = stored_checksum(event).unwrap_or(0);
    if computed != stored {
        return Err(BinlogError::ChecksumMismatch { stored, computed });
    }
    Ok(())
}

/// Recomputes the trailing 4-byte CRC32 of `event` in place (masking the in-use flag of a
/// FORMAT_DESCRIPTION event). Does nothing to an event too short to hold one.
pub fn set_checksum(event: &mut [u8]) {
    if let Some(crc) = compute_checksum(event) {
        let start = event.len() - CHECKSUM_LEN;
        event[start..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Builds a whole event from header fields and a body: event_size is filled in, and a CRC32
/// is appended when `with_crc`.
pub fn build_event(
    type_code: u8,
    timestamp: u32,
    server_id: u32,
    log_pos: u32,
    flags: u16,
    body: &[u8],
    with_crc: bool,
) -> Vec<u8> {
    let checksum_len = if with_crc { CHECKSUM_LEN } else { 0 };
    let event_size = HEADER_LEN + body.len() + checksum_len;
    let header = EventHeader {
        timestamp,
        type_code,
        server_id,
        event_size: u32::try_from(event_size).unwrap_or(u32::MAX),
        log_pos,
        flags,
    };
    let mut out = Vec::with_capacity(event_size);
    header.encode(&mut out);
    out.extend_from_slice(body);
    if with_crc {
        out.extend_from_slice(&[0; CHECKSUM_LEN]);
        set_checksum(&mut out);
    }
    out
}

// ---- FORMAT_DESCRIPTION ----

/// Bytes of checksum that follow every event of the file an FDE describes (its own
/// announcement; 0 when it cannot be parsed or announces none).
pub fn checksum_len_of_fde(fde: &[u8]) -> usize {
    FormatDescription::parse(fde).map_or(0, |f| f.checksum_alg.checksum_len())
}

/// An artificial GTID_LIST event (timestamp 0, LOG_EVENT_ARTIFICIAL_F), as a MariaDB master
/// sends it after skipping to a GTID-mode replica's state: `log_pos` is where the stream
/// continues.
pub fn build_gtid_list(
    state: &crate::binlog::gtid::MariaGtidList,
    log_pos: u64,
    server_id: u32,
    with_crc: bool,
) -> Vec<u8> {
    let list = GtidListEvent {
        flags: 0,
        gtids: state.iter().copied().collect(),
    };
    let mut body = Vec::new();
    list.encode_body(&mut body);
    build_event(
        GTID_LIST_EVENT,
        0,
        server_id,
        u32::try_from(log_pos).unwrap_or(u32::MAX),
        LOG_EVENT_ARTIFICIAL_F,
        &body,
        with_crc,
    )
}

/// The binlog checksum algorithm an FDE announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlg {
    Off,
    Crc32,
    /// The FDE predates checksums (no algorithm byte) or says BINLOG_CHECKSUM_ALG_UNDEF.
    Undefined,
}

impl ChecksumAlg {
    /// Bytes of checksum this algorithm appends to every event.
    pub fn checksum_len(self) -> usize {
        match self {
            ChecksumAlg::Crc32 => CHECKSUM_LEN,
            ChecksumAlg::Off | ChecksumAlg::Undefined => 0,
        }
    }
}

/// A FORMAT_DESCRIPTION_EVENT (type 15), the first event of every binlog file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatDescription {
    pub binlog_version: u16,
    pub server_version: String,
    pub create_timestamp: u32,
    pub header_length: u8,
    /// Post-header length of event type `i + 1` at index `i`.
    pub post_header_lengths: Vec<u8>,
    pub checksum_alg: ChecksumAlg,
}

impl FormatDescription {
    /// Parses a whole FDE event (header included). Servers that know about checksums
    /// (MySQL >= 5.6.1, MariaDB >= 5.3) end the body with the algorithm byte and 4 checksum
    /// bytes, whatever the algorithm; older FDEs have neither.
    pub fn parse(event: &[u8]) -> Result<FormatDescription> {
        let header = EventHeader::parse(event)?;
        if header.type_code != FORMAT_DESCRIPTION_EVENT {
            return Err(BinlogError::Malformed {
                what: "format description event",
                detail: format!("type code {}", header.type_code),
            });
        }
        let body = event_body(event, 0)?;
        let mut r = Reader::new(body, "format description event");
        let binlog_version = r.u16()?;
        let server_version = nul_terminated(r.bytes(50)?);
        let create_timestamp = r.u32()?;
        let header_length = r.u8()?;
        let rest = r.rest();
        let (post_header_lengths, checksum_alg) =
            // The algorithm byte plus the checksum: more than CHECKSUM_LEN bytes.
            if version_has_checksum_alg(&server_version) && rest.len() > CHECKSUM_LEN {
                let alg_at = rest.len() - 1 - CHECKSUM_LEN;
                (rest[..alg_at].to_vec(), parse_checksum_alg(rest[alg_at])?)
            } else {
                (rest.to_vec(), ChecksumAlg::Undefined)
            };
        Ok(FormatDescription {
            binlog_version,
            server_version,
            create_timestamp,
            header_length,
            post_header_lengths,
            checksum_alg,
        })
    }

    /// Whether the server that wrote this binlog is MariaDB.
    pub fn is_mariadb(&self) -> bool {
        super::Flavour::of_server_version(&self.server_version) == super::Flavour::MariaDb
    }

    /// Post-header length this FDE declares for `type_code`, if it declares one.
    pub fn post_header_len(&self, type_code: u8) -> Option<u8> {
        let index = usize::from(type_code).checked_sub(1)?;
        self.post_header_lengths.get(index).copied()
    }
}

fn nul_terminated(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn parse_checksum_alg(byte: u8) -> Result<ChecksumAlg> {
    match byte {
        0 => Ok(ChecksumAlg::Off),
        1 => Ok(ChecksumAlg::Crc32),
        255 => Ok(ChecksumAlg::Undefined),
        other => Err(BinlogError::Malformed {
            what: "format description event",
            detail: format!("unknown checksum algorithm {other}"),
        }),
    }
}

/// MySQL added the checksum algorithm byte in 5.6.1, MariaDB in 5.3.
fn version_has_checksum_alg(server_version: &str) -> bool {
    let mut numbers = server_version
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let version = (
        numbers.next().unwrap_or(0),
        numbers.next().unwrap_or(0),
        numbers.next().unwrap_or(0),
    );
    if super::Flavour::of_server_version(server_version) == super::Flavour::MariaDb {
        version >= (5, 3, 0)
    } else {
        version >= (5, 6, 1)
    }
}

/// A copy of a FORMAT_DESCRIPTION event as a master sends it when a dump starts past
/// position 4: log_pos 0 (so the replica does not advance its position) and
/// LOG_EVENT_BINLOG_IN_USE_F clear. With `with_crc` the trailing CRC32 is recomputed;
/// without it the last 4 bytes are left as they were (MariaDB only fixes the CRC when the
/// dump carries checksums).
/// Offset of `created` (u32 timestamp) in a FORMAT_DESCRIPTION body: after binlog_version
/// (2 bytes) and server_version (50 bytes).
pub const FDE_CREATED_OFFSET: usize = 52;

pub fn with_log_pos_zeroed_fde(fde: &[u8], with_crc: bool) -> Vec<u8> {
    let mut out = fde.to_vec();
    set_log_pos(&mut out, 0);
    if let Some(flags) = out.get_mut(FLAGS_OFFSET) {
        *flags &= !(LOG_EVENT_BINLOG_IN_USE_F as u8);
    }
    // `created` (body offset 52) is zeroed too, as masters do: a non-zero value tells the
    // replica the master just started, and it would drop its temporary tables.
    if let Some(created) =
        out.get_mut(HEADER_LEN + FDE_CREATED_OFFSET..HEADER_LEN + FDE_CREATED_OFFSET + 4)
    {
        created.fill(0);
    }
    if with_crc {
        set_checksum(&mut out);
    }
    out
}

// ---- ROTATE and HEARTBEAT ----

/// A ROTATE_EVENT (type 4): the next event is at `position` of `next_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotate {
    pub position: u64,
    pub next_file: String,
}

impl Rotate {
    pub fn parse(event: &[u8], checksum_len: usize) -> Result<Rotate> {
        let mut r = Reader::new(event_body(event, checksum_len)?, "rotate event");
        let position = r.u64()?;
        let next_file = file_name(r.rest(), "rotate event")?;
        Ok(Rotate {
            position,
            next_file,
        })
    }
}

fn file_name(bytes: &[u8], what: &'static str) -> Result<String> {
    if bytes.len() > BINLOG_FILE_NAME_MAX {
        return Err(BinlogError::Malformed {
            what,
            detail: format!("file name of {} bytes", bytes.len()),
        });
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| BinlogError::Malformed {
        what,
        detail: "file name is not UTF-8".to_string(),
    })
}

/// Builds a ROTATE event. An artificial one (what a dump sends first) has timestamp 0,
/// log_pos 0 and LOG_EVENT_ARTIFICIAL_F; a non-artificial one also has timestamp 0 and
/// log_pos 0 here: patch them with [`set_log_pos`] (then [`set_checksum`]) when it must look
/// like the one the master wrote at the end of a file.
pub fn build_rotate(
    next_file: &str,
    position: u64,
    server_id: u32,
    artificial: bool,
    with_crc: bool,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 + next_file.len());
    body.extend_from_slice(&position.to_le_bytes());
    body.extend_from_slice(next_file.as_bytes());
    let flags = if artificial {
        LOG_EVENT_ARTIFICIAL_F
    } else {
        0
    };
    build_event(ROTATE_EVENT, 0, server_id, 0, flags, &body, with_crc)
}

/// A HEARTBEAT_LOG_EVENT (type 27): the master's current file, position in log_pos.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub log_file: String,
    pub log_pos: u32,
}

impl Heartbeat {
    pub fn parse(event: &[u8], checksum_len: usize) -> Result<Heartbeat> {
        let header = EventHeader::parse(event)?;
        let log_file = file_name(event_body(event, checksum_len)?, "heartbeat event")?;
        Ok(Heartbeat {
            log_file,
            log_pos: header.log_pos,
        })
    }
}

/// Builds a HEARTBEAT_LOG_EVENT as MySQL and MariaDB send it: timestamp 0, flags 0, log_pos
/// the position reached in `file`, body the bare file name.
pub fn build_heartbeat(file: &str, log_pos: u32, server_id: u32, with_crc: bool) -> Vec<u8> {
    build_event(
        HEARTBEAT_LOG_EVENT,
        0,
        server_id,
        log_pos,
        0,
        file.as_bytes(),
        with_crc,
    )
}

/// OTW_HB_* field ids of a HEARTBEAT_LOG_EVENT_V2 body (MySQL's binary heartbeat codec).
const HB_V2_END_MARK: u64 = 0;
const HB_V2_LOG_FILENAME: u64 = 1;
const HB_V2_LOG_POSITION: u64 = 2;

/// A HEARTBEAT_LOG_EVENT_V2 (type 41, MySQL 8.0.26+): the master's current file and its
/// position in 64 bits. The body is `type length value` triples of length-encoded integers
/// (the file name as bytes, the position as a length-encoded integer) up to the end mark;
/// unknown fields are skipped, as MySQL does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatV2 {
    pub log_file: String,
    pub log_pos: u64,
}

impl HeartbeatV2 {
    pub fn parse(event: &[u8], checksum_len: usize) -> Result<HeartbeatV2> {
        use crate::mysql::codec::Reader as FieldReader;
        let malformed = |detail: String| BinlogError::Malformed {
            what: "heartbeat v2 event",
            detail,
        };
        let bad = |e: crate::mysql::ProtocolError| malformed(format!("heartbeat v2 body: {e}"));
        let mut r = FieldReader::new(event_body(event, checksum_len)?);
        let mut file = None;
        let mut pos = None;
        while !r.is_empty() {
            let field = r.lenenc_int("heartbeat v2 field type").map_err(bad)?;
            if field == HB_V2_END_MARK {
                break;
            }
            let len = r.lenenc_int("heartbeat v2 field length").map_err(bad)?;
            let len = usize::try_from(len)
                .map_err(|_| malformed(format!("heartbeat v2 field length {len}")))?;
            let value = r.bytes(len, "heartbeat v2 field value").map_err(bad)?;
            match field {
                HB_V2_LOG_FILENAME => file = Some(String::from_utf8_lossy(value).into_owned()),
                HB_V2_LOG_POSITION => {
                    let mut v = FieldReader::new(value);
                    pos = Some(v.lenenc_int("heartbeat v2 position").map_err(bad)?);
                }
                _ => {}
            }
        }
        match (file, pos) {
            (Some(log_file), Some(log_pos)) => Ok(HeartbeatV2 { log_file, log_pos }),
            _ => Err(malformed(
                "heartbeat v2 without a file name and a position".into(),
            )),
        }
    }
}

/// Builds a HEARTBEAT_LOG_EVENT_V2 as MySQL sends it: timestamp 0, flags 0, the file name
/// and the 64-bit position in the body, and the position in the header's log_pos too,
/// capped at 32 bits.
pub fn build_heartbeat_v2(file: &str, log_pos: u64, server_id: u32, with_crc: bool) -> Vec<u8> {
    use crate::mysql::codec::put_lenenc_int;
    let mut position = Vec::with_capacity(9);
    put_lenenc_int(&mut position, log_pos);
    let mut body = Vec::with_capacity(file.len() + position.len() + 8);
    put_lenenc_int(&mut body, HB_V2_LOG_FILENAME);
    put_lenenc_int(&mut body, file.len() as u64);
    body.extend_from_slice(file.as_bytes());
    put_lenenc_int(&mut body, HB_V2_LOG_POSITION);
    put_lenenc_int(&mut body, position.len() as u64);
    body.extend_from_slice(&position);
    put_lenenc_int(&mut body, HB_V2_END_MARK);
    build_event(
        HEARTBEAT_LOG_EVENT_V2,
        0,
        server_id,
        u32::try_from(log_pos).unwrap_or(u32::MAX),
        0,
        &body,
        with_crc,
    )
}

// ---- QUERY and XID ----

/// Length of the QUERY_EVENT post-header in binlog v4: thread_id 4, exec_time 4, db_len 1,
/// error_code 2, status_vars_len 2.
pub const QUERY_HEADER_LEN: usize = 13;

/// A QUERY_EVENT (type 2), borrowed from the event bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryEvent<'a> {
    pub thread_id: u32,
    pub exec_time: u32,
    pub error_code: u16,
    /// Raw status variables (not decoded).
    pub status_vars: &'a [u8],
    /// The default database (`db` in MySQL's code), without its NUL.
    pub schema: &'a [u8],
    /// The statement text, as bytes (its character set is in the status variables).
    pub query: &'a [u8],
}

impl<'a> QueryEvent<'a> {
    /// Parses a QUERY_EVENT. A QUERY_COMPRESSED_EVENT has the same layout but a compressed
    /// `query`; it parses too, and its `query` is the compressed bytes.
    pub fn parse(event: &'a [u8], checksum_len: usize) -> Result<QueryEvent<'a>> {
        let mut r = Reader::new(event_body(event, checksum_len)?, "query event");
        let thread_id = r.u32()?;
        let exec_time = r.u32()?;
        let db_len = usize::from(r.u8()?);
        let error_code = r.u16()?;
        let status_vars_len = usize::from(r.u16()?);
        let status_vars = r.bytes(status_vars_len)?;
        let schema = r.bytes(db_len)?;
        // The schema name is followed by a NUL.
        r.u8()?;
        let query = r.rest();
        Ok(QueryEvent {
            thread_id,
            exec_time,
            error_code,
            status_vars,
            schema,
            query,
        })
    }

    /// What the statement means for transaction boundaries.
    pub fn kind(&self) -> QueryKind {
        classify_query(self.query)
    }
}

/// The statements that open or close a transaction group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    Begin,
    Commit,
    /// ROLLBACK (not ROLLBACK TO SAVEPOINT).
    Rollback,
    XaStart,
    XaEnd,
    XaPrepare,
    XaCommit,
    XaRollback,
    /// `CREATE TABLE … START TRANSACTION`: MySQL 8.0.21+ logs a row-based `CREATE TABLE …
    /// SELECT` as one transaction, this statement, the rows, then XID.
    CreateStartTransaction,
    /// Anything else: DML inside a transaction, or DDL (its own transaction).
    Other,
}

/// Classifies a statement by its first words, ignoring case and leading whitespace.
pub fn classify_query(query: &[u8]) -> QueryKind {
    let mut words = query
        .split(|b| b.is_ascii_whitespace() || *b == b';')
        .filter(|w| !w.is_empty());
    let first = words.next().unwrap_or(&[]);
    let second = words.next().unwrap_or(&[]);
    let is = |word: &[u8], expected: &str| word.eq_ignore_ascii_case(expected.as_bytes());
    if is(first, "BEGIN") {
        QueryKind::Begin
    } else if is(first, "COMMIT") {
        QueryKind::Commit
    } else if is(first, "ROLLBACK") && !is(second, "TO") {
        QueryKind::Rollback
    } else if is(first, "CREATE") && ends_with_start_transaction(query) {
        QueryKind::CreateStartTransaction
    } else if is(first, "XA") {
        match () {
            _ if is(second, "START") || is(second, "BEGIN") => QueryKind::XaStart,
            _ if is(second, "END") => QueryKind::XaEnd,
            _ if is(second, "PREPARE") => QueryKind::XaPrepare,
            _ if is(second, "COMMIT") => QueryKind::XaCommit,
            _ if is(second, "ROLLBACK") => QueryKind::XaRollback,
            _ => QueryKind::Other,
        }
    } else {
        QueryKind::Other
    }
}

/// Whether the statement's last two words are START TRANSACTION (any case; trailing blanks
/// and semicolons ignored).
fn ends_with_start_transaction(query: &[u8]) -> bool {
    let mut words = query
        .rsplit(|b| b.is_ascii_whitespace() || *b == b';')
        .filter(|w| !w.is_empty());
    let last = words.next().unwrap_or(&[]);
    let before = words.next().unwrap_or(&[]);
    before.eq_ignore_ascii_case(b"START") && last.eq_ignore_ascii_case(b"TRANSACTION")
}

/// The xid of an XID_EVENT (type 16): the InnoDB commit that ends a transaction.
pub fn parse_xid(event: &[u8], checksum_len: usize) -> Result<u64> {
    Reader::new(event_body(event, checksum_len)?, "xid event").u64()
}

// ---- MariaDB GTID and GTID_LIST ----

/// flags2 bits of a MariaDB GTID event.
pub const FL_STANDALONE: u8 = 1;
pub const FL_GROUP_COMMIT_ID: u8 = 2;
pub const FL_TRANSACTIONAL: u8 = 4;
pub const FL_ALLOW_PARALLEL: u8 = 8;
pub const FL_WAITED: u8 = 16;
pub const FL_DDL: u8 = 32;
pub const FL_PREPARED_XA: u8 = 64;
pub const FL_COMPLETED_XA: u8 = 128;

/// An XA transaction id (X/Open XID) as MariaDB's GTID event carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XaXid {
    pub format_id: u32,
    pub gtrid: Vec<u8>,
    pub bqual: Vec<u8>,
}

/// A MariaDB GTID_EVENT (type 162), which starts every transaction group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MariaGtidEvent {
    /// domain and sequence from the body, server_id from the header.
    pub gtid: MariaGtid,
    pub flags2: u8,
    /// Present with FL_GROUP_COMMIT_ID: transactions with the same id committed together.
    pub commit_id: Option<u64>,
    /// Present with FL_PREPARED_XA or FL_COMPLETED_XA.
    pub xid: Option<XaXid>,
}

impl MariaGtidEvent {
    pub fn parse(event: &[u8], checksum_len: usize) -> Result<MariaGtidEvent> {
        let header = EventHeader::parse(event)?;
        let mut r = Reader::new(event_body(event, checksum_len)?, "MariaDB GTID event");
        let seq_no = r.u64()?;
        let domain_id = r.u32()?;
        let flags2 = r.u8()?;
        let commit_id = if flags2 & FL_GROUP_COMMIT_ID != 0 {
            Some(r.u64()?)
        } else {
            None
        };
        // The XID follows directly; zero padding to 19 bytes only follows when nothing else
        // does.
        let xid = if flags2 & (FL_PREPARED_XA | FL_COMPLETED_XA) != 0 {
            Some(parse_xa_xid(&mut r)?)
        } else {
            None
        };
        Ok(MariaGtidEvent {
            gtid: MariaGtid {
                domain_id,
                server_id: header.server_id,
                seq_no,
            },
            flags2,
            commit_id,
            xid,
        })
    }

    pub fn is_standalone(&self) -> bool {
        self.flags2 & FL_STANDALONE != 0
    }
}

fn parse_xa_xid(r: &mut Reader<'_>) -> Result<XaXid> {
    let format_id = r.u32()?;
    let gtrid_len = usize::from(r.u8()?);
    let bqual_len = usize::from(r.u8()?);
    Ok(XaXid {
        format_id,
        gtrid: r.bytes(gtrid_len)?.to_vec(),
        bqual: r.bytes(bqual_len)?.to_vec(),
    })
}

/// Flag bits in the top 4 bits of a GTID_LIST event's count.
pub const GTID_LIST_FLAG_UNTIL_REACHED: u8 = 1;
pub const GTID_LIST_FLAG_IGN_GTIDS: u8 = 2;

/// A MariaDB GTID_LIST_EVENT (type 163): the binlog state when the file was started, one
/// GTID per (domain, server_id) pair, in the master's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GtidListEvent {
    /// The 4 flag bits from the top of the count.
    pub flags: u8,
    pub gtids: Vec<MariaGtid>,
}

impl GtidListEvent {
    pub fn parse(event: &[u8], checksum_len: usize) -> Result<GtidListEvent> {
        Self::decode_body(event_body(event, checksum_len)?)
    }

    /// Decodes the body (no header, no checksum).
    pub fn decode_body(body: &[u8]) -> Result<GtidListEvent> {
        let mut r = Reader::new(body, "GTID list event");
        let count_and_flags = r.u32()?;
        let count = (count_and_flags & 0x0fff_ffff) as usize;
        // Each entry is 16 bytes: refuse a count the body cannot hold before allocating.
        if count > r.remaining() / 16 {
            return Err(BinlogError::Truncated {
                what: "GTID list event",
                needed: count.saturating_mul(16),
                available: r.remaining(),
            });
        }
        let mut gtids = Vec::with_capacity(count);
        for _ in 0..count {
            gtids.push(MariaGtid {
                domain_id: r.u32()?,
                server_id: r.u32()?,
                seq_no: r.u64()?,
            });
        }
        Ok(GtidListEvent {
            flags: (count_and_flags >> 28) as u8,
            gtids,
        })
    }

    /// Encodes the body (no header, no checksum).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        let count = (self.gtids.len() as u32 & 0x0fff_ffff) | (u32::from(self.flags & 0xf) << 28);
        out.extend_from_slice(&count.to_le_bytes());
        for gtid in &self.gtids {
            out.extend_from_slice(&gtid.domain_id.to_le_bytes());
            out.extend_from_slice(&gtid.server_id.to_le_bytes());
            out.extend_from_slice(&gtid.seq_no.to_le_bytes());
        }
    }

    /// A whole GTID_LIST event (timestamp 0, flags 0).
    pub fn build(&self, server_id: u32, log_pos: u32, with_crc: bool) -> Vec<u8> {
        let mut body = Vec::with_capacity(4 + 16 * self.gtids.len());
        self.encode_body(&mut body);
        build_event(GTID_LIST_EVENT, 0, server_id, log_pos, 0, &body, with_crc)
    }
}

/// The file name of a MariaDB BINLOG_CHECKPOINT_EVENT (type 161).
pub fn parse_binlog_checkpoint(event: &[u8], checksum_len: usize) -> Result<String> {
    let mut r = Reader::new(event_body(event, checksum_len)?, "binlog checkpoint event");
    let len = r.u32()? as usize;
    file_name(r.bytes(len)?, "binlog checkpoint event")
}

// ---- MySQL GTID, ANONYMOUS_GTID, GTID_TAGGED, PREVIOUS_GTIDS ----

/// gtid_flags bit: the transaction may contain statement-based events.
pub const FLAG_MAY_HAVE_SBR: u8 = 1;

/// A MySQL GTID_LOG_EVENT, ANONYMOUS_GTID_LOG_EVENT or GTID_TAGGED_LOG_EVENT. Fields after
/// the GTID itself appeared over versions; those a server did not write are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MysqlGtidEvent {
    pub gtid_flags: u8,
    /// The source uuid (all zero for an anonymous GTID).
    pub uuid: [u8; 16],
    /// The MySQL 8.3+ tag, lowercase; `None` when untagged.
    pub tag: Option<String>,
    /// The transaction number (0 for an anonymous GTID).
    pub gno: i64,
    pub last_committed: Option<i64>,
    pub sequence_number: Option<i64>,
    /// Microseconds since the epoch.
    pub immediate_commit_timestamp: Option<u64>,
    pub original_commit_timestamp: Option<u64>,
    pub transaction_length: Option<u64>,
    pub immediate_server_version: Option<u32>,
    pub original_server_version: Option<u32>,
    /// Tagged events only: commit group ticket, when not 0.
    pub commit_group_ticket: Option<u64>,
}

/// Type code of the logical-clock timestamps in a GTID event.
const LOGICAL_TIMESTAMP_TYPECODE: u8 = 2;

impl MysqlGtidEvent {
    /// Parses type 33, 34 or 42.
    pub fn parse(event: &[u8], checksum_len: usize) -> Result<MysqlGtidEvent> {
        let header = EventHeader::parse(event)?;
        let body = event_body(event, checksum_len)?;
        match header.type_code {
            GTID_LOG_EVENT | ANONYMOUS_GTID_LOG_EVENT => Self::parse_untagged(body),
            GTID_TAGGED_LOG_EVENT => Self::parse_tagged(body),
            other => Err(BinlogError::Malformed {
                what: "MySQL GTID event",
                detail: format!("type code {other}"),
            }),
        }
    }

    /// Whether this is ANONYMOUS_GTID (gtid_mode OFF).
    pub fn is_anonymous(&self) -> bool {
        self.uuid == [0; 16] && self.gno == 0
    }

    fn parse_untagged(body: &[u8]) -> Result<MysqlGtidEvent> {
        let mut r = Reader::new(body, "MySQL GTID event");
        let mut out = MysqlGtidEvent {
            gtid_flags: r.u8()?,
            uuid: r.array()?,
            gno: r.i64()?,
            ..Default::default()
        };
        // 5.7.6+: logical clock.
        // Type code (1) plus two 8-byte timestamps.
        if r.remaining() > 16 && r.u8()? == LOGICAL_TIMESTAMP_TYPECODE {
            out.last_committed = Some(r.i64()?);
            out.sequence_number = Some(r.i64()?);
        } else {
            return Ok(out);
        }
        // 8.0.1+: commit timestamps; the top bit of the first says a second follows.
        if r.remaining() < 7 {
            return Ok(out);
        }
        let immediate = r.uint_n(7)?;
        const TIMESTAMP_FLAG: u64 = 1 << 55;
        out.immediate_commit_timestamp = Some(immediate & !TIMESTAMP_FLAG);
        out.original_commit_timestamp = if immediate & TIMESTAMP_FLAG != 0 {
            Some(r.uint_n(7)?)
        } else {
            Some(immediate & !TIMESTAMP_FLAG)
        };
        // 8.0.2+: transaction length.
        if r.remaining() == 0 {
            return Ok(out);
        }
        out.transaction_length = Some(r.packed_int()?);
        // 8.0.14+: server versions; the top bit of the first says a second follows.
        if r.remaining() < 4 {
            return Ok(out);
        }
        let immediate_version = r.u32()?;
        const VERSION_FLAG: u32 = 1 << 31;
        out.immediate_server_version = Some(immediate_version & !VERSION_FLAG);
        out.original_server_version = if immediate_version & VERSION_FLAG != 0 {
            Some(r.u32()?)
        } else {
            Some(immediate_version & !VERSION_FLAG)
        };
        Ok(out)
    }

    /// GTID_TAGGED_LOG_EVENT bodies are one mysql::serialization message (MySQL 8.3+,
    /// libs/mysql/serialization): a format version (field id 0), the message size and the
    /// last non-ignorable field id as varints, then `field_id value` pairs in id order,
    /// absent optional fields simply skipped. Field ids: 0 gtid_flags, 1 uuid (16 varint
    /// bytes), 2 gno, 3 tag (varint length + bytes), 4 last_committed, 5 sequence_number,
    /// 6 immediate_commit_timestamp, 7 original_commit_timestamp (optional), 8
    /// transaction_length, 9 immediate_server_version, 10 original_server_version
    /// (optional), 11 commit_group_ticket (optional). Integers are varints; signed ones are
    /// zig-zag encoded.
    fn parse_tagged(body: &[u8]) -> Result<MysqlGtidEvent> {
        let mut r = Reader::new(body, "MySQL tagged GTID event");
        let _format_version = varint_u64(&mut r)?;
        let message_size = varint_u64(&mut r)?;
        let _last_non_ignorable_field_id = varint_u64(&mut r)?;
        // The message size counts from the format version byte; stop reading there.
        let end = usize::try_from(message_size)
            .ok()
            .filter(|&end| end <= body.len())
            .unwrap_or(body.len());
        let mut out = MysqlGtidEvent::default();
        let mut next_field = 0u64;
        while r.position() < end {
            let field_id = varint_u64(&mut r)?;
            if field_id < next_field {
                return Err(BinlogError::Malformed {
                    what: "MySQL tagged GTID event",
                    detail: format!("field id {field_id} out of order"),
                });
            }
            next_field = field_id + 1;
            read_tagged_field(&mut r, field_id, &mut out)?;
        }
        if out.original_commit_timestamp.is_none() {
            out.original_commit_timestamp = out.immediate_commit_timestamp;
        }
        if out.original_server_version.is_none() {
            out.original_server_version = out.immediate_server_version;
        }
        Ok(out)
    }
}

fn read_tagged_field(r: &mut Reader<'_>, field_id: u64, out: &mut MysqlGtidEvent) -> Result<()> {
    match field_id {
        0 => out.gtid_flags = varint_u8(r)?,
        1 => {
            for byte in out.uuid.iter_mut() {
                *byte = varint_u8(r)?;
            }
        }
        2 => out.gno = varint_i64(r)?,
        3 => {
            let len = usize::try_from(varint_u64(r)?).unwrap_or(usize::MAX);
            let tag = r.bytes(len)?;
            out.tag = if tag.is_empty() {
                None
            } else {
                Some(String::from_utf8_lossy(tag).to_ascii_lowercase())
            };
        }
        4 => out.last_committed = Some(varint_i64(r)?),
        5 => out.sequence_number = Some(varint_i64(r)?),
        6 => out.immediate_commit_timestamp = Some(varint_u64(r)?),
        7 => out.original_commit_timestamp = Some(varint_u64(r)?),
        8 => out.transaction_length = Some(varint_u64(r)?),
        9 => out.immediate_server_version = Some(varint_u32(r)?),
        10 => out.original_server_version = Some(varint_u32(r)?),
        11 => out.commit_group_ticket = Some(varint_u64(r)?),
        // A field from a newer server: its size is unknown, so stop decoding here.
        _ => {
            r.rest();
        }
    }
    Ok(())
}

/// mysql::serialization unsigned varint: the number of trailing one bits of the first byte,
/// plus one, is the byte count (9 when all eight are set); the value follows those bits.
pub(crate) fn varint_u64(r: &mut Reader<'_>) -> Result<u64> {
    let first = r.u8()?;
    let byte_count = first.trailing_ones() as usize + 1;
    if byte_count == 1 {
        return Ok(u64::from(first >> 1));
    }
    let rest = r.uint_n(byte_count - 1)?;
    if byte_count == 9 {
        return Ok(rest);
    }
    let low_bits = u64::from(first) >> byte_count;
    Ok(low_bits | (rest << (8 - byte_count)))
}

/// Encodes `value` as a mysql::serialization unsigned varint.
pub(crate) fn put_varint_u64(out: &mut Vec<u8>, value: u64) {
    let bits = 64 - value.leading_zeros() as usize;
    let byte_count = ((bits * 575) >> 12) + 1;
    if byte_count == 9 {
        out.push(0xff);
        out.extend_from_slice(&value.to_le_bytes());
        return;
    }
    let marker = (1u64 << (byte_count - 1)) - 1;
    let first = (marker | (value << byte_count)) as u8;
    out.push(first);
    let rest = value >> (8 - byte_count);
    out.extend_from_slice(&rest.to_le_bytes()[..byte_count - 1]);
}

fn varint_i64(r: &mut Reader<'_>) -> Result<i64> {
    let raw = varint_u64(r)?;
    let magnitude = (raw >> 1) as i64;
    Ok(if raw & 1 == 1 { !magnitude } else { magnitude })
}

#[cfg(test)]
pub(crate) fn put_varint_i64(out: &mut Vec<u8>, value: i64) {
    let zigzag = if value < 0 {
        ((!value as u64) << 1) | 1
    } else {
        (value as u64) << 1
    };
    put_varint_u64(out, zigzag);
}

fn varint_u8(r: &mut Reader<'_>) -> Result<u8> {
    let value = varint_u64(r)?;
    u8::try_from(value).map_err(|_| BinlogError::Malformed {
        what: "serialized integer",
        detail: format!("{value} does not fit in a byte"),
    })
}

fn varint_u32(r: &mut Reader<'_>) -> Result<u32> {
    let value = varint_u64(r)?;
    u32::try_from(value).map_err(|_| BinlogError::Malformed {
        what: "serialized integer",
        detail: format!("{value} does not fit in 32 bits"),
    })
}

/// The GTID set of a PREVIOUS_GTIDS_LOG_EVENT (type 35): every GTID in earlier files.
pub fn parse_previous_gtids(event: &[u8], checksum_len: usize) -> Result<MysqlGtidSet> {
    MysqlGtidSet::decode(event_body(event, checksum_len)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::binlog::test_data::{events_of, mariadb_file, mysql_file, mysql_files};

    /// Fed in pieces of any size, every real event's CRC32 is known the same as checked
    /// whole; a flipped byte anywhere, a FORMAT_DESCRIPTION event or a byte too many is not
    /// valid, and an event is not complete before its last byte.
    #[test]
    fn a_checksum_fed_in_pieces_is_the_whole_one() {
        let check = |ev: &[u8], piece: usize| {
            let mut stream = ChecksumStream::new(ev.len());
            for chunk in ev.chunks(piece) {
                assert!(!stream.complete());
                stream.update(chunk);
            }
            stream
        };
        let files = [mariadb_file("bin.000001"), mysql_files()[0].1.clone()];
        let mut checked = 0;
        for file in &files {
            for ev in events_of(file) {
                let fde = ev[TYPE_CODE_OFFSET] == FORMAT_DESCRIPTION_EVENT;
                for piece in [1, 3, 4, 5, 19, 64, ev.len()] {
                    let whole = verify_checksum(ev) && !fde;
                    assert_eq!(check(ev, piece).matches(), whole, "piece {piece}");
                    assert!(check(ev, piece).complete());
                }
                if fde {
                    continue;
                }
                checked += 1;
                for at in [0, 4, ev.len() / 2, ev.len() - 4, ev.len() - 1] {
                    let mut bad = ev.to_vec();
                    bad[at] ^= 1;
                    assert!(!check(&bad, 7).matches(), "byte {at} flipped");
                }
                let mut long = ChecksumStream::new(ev.len() - 1);
                long.update(ev);
                assert!(!long.matches());
            }
        }
        assert!(checked > 50, "{checked} events");
    }

    #[test]
    fn header_round_trip() {
        let header = EventHeader {
            timestamp: 0x5bc6ee4d,
            type_code: FORMAT_DESCRIPTION_EVENT,
            server_id: 3150,
            event_size: 119,
            log_pos: 123,
            flags: 1,
        };
        let mut out = Vec::new();
        header.encode(&mut out);
        assert_eq!(out.len(), HEADER_LEN);
        assert_eq!(EventHeader::parse(&out).unwrap(), header);
        assert!(matches!(
            EventHeader::parse(&out[..18]),
            Err(BinlogError::Truncated { .. })
        ));
    }

    #[test]
    fn type_names() {
        assert_eq!(type_name(15), "FORMAT_DESCRIPTION_EVENT");
        assert_eq!(type_name(42), "GTID_TAGGED_LOG_EVENT");
        assert_eq!(type_name(162), "GTID_EVENT");
        assert_eq!(type_name(172), "PARTIAL_ROW_DATA_EVENT");
        assert_eq!(type_name(100), "UNKNOWN");
        for code in (0..=42).chain(160..=172) {
            assert_ne!(type_name(code), "UNKNOWN", "code {code}");
        }
    }

    #[test]
    fn mysql_fde_with_in_use_flag_verifies() {
        // kingbus .000013 was never closed: its FDE has the in-use flag set on disk.
        let file = mysql_file("kingbus-5.7-mysql_bin.000013");
        let fde = events_of(&file)[0];
        let header = EventHeader::parse(fde).unwrap();
        assert_eq!(header.flags & LOG_EVENT_BINLOG_IN_USE_F, 1);
        assert!(verify_checksum(fde));
        // The same event with the flag cleared has the same CRC.
        let mut cleared = fde.to_vec();
        cleared[FLAGS_OFFSET] &= !1;
        assert!(verify_checksum(&cleared));
        assert_eq!(stored_checksum(&cleared), stored_checksum(fde));
        // Any other bit is covered.
        let mut other = fde.to_vec();
        other[FLAGS_OFFSET] ^= 0x2;
        assert!(!verify_checksum(&other));
        assert!(matches!(
            check_checksum(&other),
            Err(BinlogError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn mariadb_open_file_fde_verifies_both_ways() {
        let file = mariadb_file("bin.000007-open");
        let fde = events_of(&file)[0];
        assert_eq!(fde[FLAGS_OFFSET] & 1, 1);
        assert!(verify_checksum(fde));
        let sent = with_log_pos_zeroed_fde(fde, true);
        assert_eq!(sent[FLAGS_OFFSET] & 1, 0);
        assert_eq!(EventHeader::parse(&sent).unwrap().log_pos, 0);
        assert!(verify_checksum(&sent));
        // Only log_pos and the flag changed.
        assert_eq!(sent[..LOG_POS_OFFSET], fde[..LOG_POS_OFFSET]);
        assert_eq!(
            sent[HEADER_LEN..sent.len() - 4],
            fde[HEADER_LEN..fde.len() - 4]
        );
        // Without CRC the trailing bytes are left alone (now stale: log_pos changed).
        let unfixed = with_log_pos_zeroed_fde(fde, false);
        assert_eq!(unfixed[unfixed.len() - 4..], fde[fde.len() - 4..]);
        assert!(!verify_checksum(&unfixed));
    }

    #[test]
    fn non_fde_flag_is_not_masked() {
        let mut event = build_heartbeat("bin.000001", 4, 1, true);
        assert!(verify_checksum(&event));
        event[FLAGS_OFFSET] |= 1;
        assert!(!verify_checksum(&event));
        set_checksum(&mut event);
        assert!(verify_checksum(&event));
    }

    #[test]
    fn every_fixture_event_checksum_verifies() {
        let mut files: Vec<Vec<u8>> = mysql_files().into_iter().map(|(_, bytes)| bytes).collect();
        for name in ["bin.000001", "bin.000002", "bin.000006", "bin.000008"] {
            files.push(mariadb_file(name));
        }
        let mut count = 0;
        for file in &files {
            for event in events_of(file) {
                assert!(verify_checksum(event), "{:?}", EventHeader::parse(event));
                count += 1;
            }
        }
        assert!(count > 500);
        assert!(!verify_checksum(&[0u8; 10]));
    }

    #[test]
    fn fde_mysql_57() {
        let file = mysql_file("kingbus-5.7-mysql_bin.000011");
        let fde = FormatDescription::parse(events_of(&file)[0]).unwrap();
        assert_eq!(fde.binlog_version, 4);
        assert_eq!(fde.server_version, "5.7.23-log");
        assert_eq!(fde.header_length, 19);
        assert_eq!(fde.checksum_alg, ChecksumAlg::Crc32);
        assert_eq!(fde.post_header_lengths.len(), 38);
        assert_eq!(fde.post_header_len(QUERY_EVENT), Some(13));
        assert_eq!(fde.post_header_len(ROTATE_EVENT), Some(8));
        assert!(!fde.is_mariadb());
    }

    #[test]
    fn fde_mysql_80_and_mariadb() {
        let file = mysql_file("transaction_compression.000001");
        let fde = FormatDescription::parse(events_of(&file)[0]).unwrap();
        assert_eq!(fde.server_version, "8.0.32");
        assert_eq!(fde.post_header_lengths.len(), 41);
        assert_eq!(fde.checksum_alg, ChecksumAlg::Crc32);

        let file = mariadb_file("bin.000001");
        let fde = FormatDescription::parse(events_of(&file)[0]).unwrap();
        assert!(fde.is_mariadb());
        assert!(fde.server_version.starts_with("10.11."));
        assert_eq!(fde.checksum_alg, ChecksumAlg::Crc32);
        assert_eq!(fde.post_header_len(GTID_EVENT), Some(19));

        // binlog_checksum=NONE: the FDE still carries the algorithm byte and 4 bytes.
        let file = mariadb_file("bin.000004");
        let fde = FormatDescription::parse(events_of(&file)[0]).unwrap();
        assert_eq!(fde.checksum_alg, ChecksumAlg::Off);
        assert_eq!(fde.checksum_alg.checksum_len(), 0);
    }

    #[test]
    fn fde_without_checksum_alg() {
        // A 5.5 server's FDE: no algorithm byte, no checksum.
        let mut body = vec![4, 0];
        let mut version = b"5.5.62-log".to_vec();
        version.resize(50, 0);
        body.extend_from_slice(&version);
        body.extend_from_slice(&[1, 2, 3, 4, 19]);
        body.extend_from_slice(&[56, 13, 0, 8, 0, 18, 0, 4, 4, 4, 4, 18, 0, 0, 84]);
        let event = build_event(FORMAT_DESCRIPTION_EVENT, 1, 1, 0, 0, &body, false);
        let fde = FormatDescription::parse(&event).unwrap();
        assert_eq!(fde.checksum_alg, ChecksumAlg::Undefined);
        assert_eq!(fde.post_header_lengths.len(), 15);
        assert_eq!(fde.server_version, "5.5.62-log");
        assert!(FormatDescription::parse(&event[..40]).is_err());
    }

    #[test]
    fn rotate_parse_and_build() {
        let file = mysql_file("kingbus-5.7-mysql_bin.000011");
        let last = *events_of(&file).last().unwrap();
        assert_eq!(last[TYPE_CODE_OFFSET], ROTATE_EVENT);
        let rotate = Rotate::parse(last, CHECKSUM_LEN).unwrap();
        assert_eq!(rotate.position, 4);
        assert_eq!(rotate.next_file, "mysql_bin.000012");

        let built = build_rotate("bin.000002", 4, 7, true, true);
        let header = EventHeader::parse(&built).unwrap();
        assert_eq!(header.timestamp, 0);
        assert_eq!(header.log_pos, 0);
        assert_eq!(header.flags, LOG_EVENT_ARTIFICIAL_F);
        assert_eq!(header.server_id, 7);
        assert_eq!(header.event_size as usize, built.len());
        assert!(verify_checksum(&built));
        let parsed = Rotate::parse(&built, CHECKSUM_LEN).unwrap();
        assert_eq!(parsed.next_file, "bin.000002");
        assert_eq!(parsed.position, 4);

        let plain = build_rotate("bin.000003", 1234, 1, false, false);
        assert_eq!(EventHeader::parse(&plain).unwrap().flags, 0);
        assert_eq!(plain.len(), HEADER_LEN + 8 + 10);
        assert_eq!(Rotate::parse(&plain, 0).unwrap().position, 1234);
        assert!(Rotate::parse(&plain[..25], 0).is_err());
    }

    #[test]
    fn mariadb_rotate_matches_builder_body() {
        // The master's own ROTATE at the end of bin.000001.
        let file = mariadb_file("bin.000001");
        let last = *events_of(&file).last().unwrap();
        let rotate = Rotate::parse(last, CHECKSUM_LEN).unwrap();
        assert_eq!(rotate.next_file, "bin.000002");
        let mut built = build_rotate(&rotate.next_file, rotate.position, 1, false, true);
        let header = EventHeader::parse(last).unwrap();
        built[..4].copy_from_slice(&header.timestamp.to_le_bytes());
        set_log_pos(&mut built, header.log_pos);
        set_checksum(&mut built);
        assert_eq!(built, last);
    }

    #[test]
    fn heartbeat_build_and_parse() {
        let event = build_heartbeat("mysql-bin.000042", 9876, 5, true);
        let header = EventHeader::parse(&event).unwrap();
        assert_eq!(header.type_code, HEARTBEAT_LOG_EVENT);
        assert_eq!(header.timestamp, 0);
        assert_eq!(header.flags, 0);
        assert_eq!(header.log_pos, 9876);
        assert_eq!(event.len(), HEADER_LEN + 16 + 4);
        assert!(verify_checksum(&event));
        let hb = Heartbeat::parse(&event, CHECKSUM_LEN).unwrap();
        assert_eq!(hb.log_file, "mysql-bin.000042");
        assert_eq!(hb.log_pos, 9876);
        let no_crc = build_heartbeat("f", 4, 5, false);
        assert_eq!(no_crc.len(), HEADER_LEN + 1);
    }

    #[test]
    fn query_events_from_mariadb() {
        let file = mariadb_file("bin.000001");
        let mut kinds = Vec::new();
        for event in events_of(&file) {
            if event[TYPE_CODE_OFFSET] == QUERY_EVENT {
                let query = QueryEvent::parse(event, CHECKSUM_LEN).unwrap();
                kinds.push((
                    query.kind(),
                    String::from_utf8_lossy(query.query).into_owned(),
                ));
            }
        }
        assert_eq!(kinds[0].1, "CREATE DATABASE shop");
        assert_eq!(kinds[0].0, QueryKind::Other);
        assert!(kinds.iter().any(|(k, _)| *k == QueryKind::Commit));
        assert!(kinds
            .iter()
            .any(|(k, q)| *k == QueryKind::XaEnd && q.starts_with("XA END")));
        assert!(kinds.iter().any(|(k, _)| *k == QueryKind::XaCommit));
        assert!(kinds.iter().any(|(k, _)| *k == QueryKind::XaRollback));
    }

    #[test]
    fn query_event_fields_mysql() {
        let file = mysql_file("kingbus-5.7-mysql_bin.000011");
        let begin = events_of(&file)
            .into_iter()
            .find(|e| {
                e[TYPE_CODE_OFFSET] == QUERY_EVENT
                    && QueryEvent::parse(e, CHECKSUM_LEN).unwrap().query == b"BEGIN"
            })
            .unwrap();
        let query = QueryEvent::parse(begin, CHECKSUM_LEN).unwrap();
        assert_eq!(query.kind(), QueryKind::Begin);
        assert_eq!(query.error_code, 0);
        assert!(query.thread_id > 0);
        // Truncated events error out instead of panicking.
        for cut in HEADER_LEN..begin.len() - 4 {
            let mut short = begin[..cut].to_vec();
            short.extend_from_slice(&[0; 4]);
            let _ = QueryEvent::parse(&short, CHECKSUM_LEN);
        }
        assert!(QueryEvent::parse(&begin[..25], CHECKSUM_LEN).is_err());
    }

    #[test]
    fn classify() {
        assert_eq!(classify_query(b"BEGIN"), QueryKind::Begin);
        assert_eq!(classify_query(b"  commit"), QueryKind::Commit);
        assert_eq!(classify_query(b"ROLLBACK"), QueryKind::Rollback);
        assert_eq!(classify_query(b"ROLLBACK TO SAVEPOINT a"), QueryKind::Other);
        assert_eq!(classify_query(b"XA START X'31',X'',1"), QueryKind::XaStart);
        assert_eq!(classify_query(b"XA END X'31',X'',1"), QueryKind::XaEnd);
        assert_eq!(classify_query(b"XA PREPARE X'31'"), QueryKind::XaPrepare);
        assert_eq!(
            classify_query(b"XA COMMIT X'31',X'',1 ONE PHASE"),
            QueryKind::XaCommit
        );
        assert_eq!(classify_query(b"xa rollback X'31'"), QueryKind::XaRollback);
        assert_eq!(classify_query(b"BEGINNING"), QueryKind::Other);
        assert_eq!(classify_query(b"CREATE TABLE t (a INT)"), QueryKind::Other);
        assert_eq!(
            classify_query(b"CREATE TABLE `t2` (\n  `a` int DEFAULT NULL\n) START TRANSACTION"),
            QueryKind::CreateStartTransaction
        );
        assert_eq!(
            classify_query(b"create table t (a int) start  transaction ;"),
            QueryKind::CreateStartTransaction
        );
        assert_eq!(
            classify_query(b"CREATE TABLE start_transaction (a INT)"),
            QueryKind::Other
        );
        assert_eq!(classify_query(b""), QueryKind::Other);
    }

    #[test]
    fn xid_event() {
        let file = mariadb_file("bin.000001");
        let xid = events_of(&file)
            .into_iter()
            .find(|e| e[TYPE_CODE_OFFSET] == XID_EVENT)
            .unwrap();
        assert_eq!(parse_xid(xid, CHECKSUM_LEN).unwrap(), 9);
    }

    #[test]
    fn mariadb_gtid_events() {
        let file = mariadb_file("bin.000001");
        let gtids: Vec<MariaGtidEvent> = events_of(&file)
            .into_iter()
            .filter(|e| e[TYPE_CODE_OFFSET] == GTID_EVENT)
            .map(|e| MariaGtidEvent::parse(e, CHECKSUM_LEN).unwrap())
            .collect();
        assert_eq!(gtids.len(), 17);
        let first = &gtids[0];
        assert_eq!(
            first.gtid,
            MariaGtid {
                domain_id: 0,
                server_id: 1,
                seq_no: 1
            }
        );
        assert!(first.is_standalone());
        assert_ne!(first.flags2 & FL_DDL, 0);
        assert_eq!(first.commit_id, None);
        // The XA PREPARE part and the XA COMMIT carry the XID.
        let prepared = gtids
            .iter()
            .find(|g| g.flags2 & FL_PREPARED_XA != 0)
            .unwrap();
        assert_eq!(
            prepared.xid,
            Some(XaXid {
                format_id: 1,
                gtrid: b"x1".to_vec(),
                bqual: vec![]
            })
        );
        let completed = gtids
            .iter()
            .find(|g| g.flags2 & FL_COMPLETED_XA != 0)
            .unwrap();
        assert!(completed.is_standalone());
        assert_eq!(completed.xid.as_ref().unwrap().gtrid, b"x1");
        assert!(gtids.iter().any(|g| g.gtid.domain_id == 2));

        // Group commit ids.
        let file = mariadb_file("bin.000006");
        let with_cid: Vec<MariaGtidEvent> = events_of(&file)
            .into_iter()
            .filter(|e| e[TYPE_CODE_OFFSET] == GTID_EVENT)
            .map(|e| MariaGtidEvent::parse(e, CHECKSUM_LEN).unwrap())
            .filter(|g| g.commit_id.is_some())
            .collect();
        assert_eq!(with_cid.len(), 9);
        assert_eq!(with_cid[0].commit_id, Some(76));

        // server_id comes from the header.
        let file = mariadb_file("bin.000008");
        let from7 = events_of(&file)
            .into_iter()
            .filter(|e| e[TYPE_CODE_OFFSET] == GTID_EVENT)
            .map(|e| MariaGtidEvent::parse(e, CHECKSUM_LEN).unwrap())
            .find(|g| g.gtid.domain_id == 5)
            .unwrap();
        assert_eq!(
            from7.gtid,
            MariaGtid {
                domain_id: 5,
                server_id: 7,
                seq_no: 1000
            }
        );
    }

    #[test]
    fn gtid_list_events() {
        let file = mariadb_file("bin.000002");
        let event = events_of(&file)
            .into_iter()
            .find(|e| e[TYPE_CODE_OFFSET] == GTID_LIST_EVENT)
            .unwrap();
        let list = GtidListEvent::parse(event, CHECKSUM_LEN).unwrap();
        assert_eq!(list.flags, 0);
        let mut gtids = list.gtids.clone();
        gtids.sort_by_key(|g| g.domain_id);
        assert_eq!(
            gtids,
            vec![
                MariaGtid {
                    domain_id: 0,
                    server_id: 1,
                    seq_no: 15
                },
                MariaGtid {
                    domain_id: 2,
                    server_id: 1,
                    seq_no: 2
                },
            ]
        );
        // Rebuilding it gives the same bytes.
        let header = EventHeader::parse(event).unwrap();
        let mut rebuilt = list.build(header.server_id, header.log_pos, true);
        rebuilt[..4].copy_from_slice(&header.timestamp.to_le_bytes());
        set_checksum(&mut rebuilt);
        assert_eq!(rebuilt, event);

        // An empty list (the first file of a fresh server).
        let file = mariadb_file("bin.000001");
        let event = events_of(&file)
            .into_iter()
            .find(|e| e[TYPE_CODE_OFFSET] == GTID_LIST_EVENT)
            .unwrap();
        assert!(GtidListEvent::parse(event, CHECKSUM_LEN)
            .unwrap()
            .gtids
            .is_empty());

        // Flags in the top bits; a count larger than the body is refused.
        let flagged = GtidListEvent {
            flags: GTID_LIST_FLAG_IGN_GTIDS,
            gtids: vec![MariaGtid {
                domain_id: 3,
                server_id: 4,
                seq_no: 5,
            }],
        };
        let mut body = Vec::new();
        flagged.encode_body(&mut body);
        assert_eq!(body[3] >> 4, GTID_LIST_FLAG_IGN_GTIDS);
        assert_eq!(GtidListEvent::decode_body(&body).unwrap(), flagged);
        body[0] = 200;
        assert!(GtidListEvent::decode_body(&body).is_err());
    }

    #[test]
    fn binlog_checkpoint() {
        let file = mariadb_file("bin.000002");
        let names: Vec<String> = events_of(&file)
            .into_iter()
            .filter(|e| e[TYPE_CODE_OFFSET] == BINLOG_CHECKPOINT_EVENT)
            .map(|e| parse_binlog_checkpoint(e, CHECKSUM_LEN).unwrap())
            .collect();
        assert_eq!(names, vec!["bin.000001", "bin.000002"]);
    }

    #[test]
    fn mysql_gtid_events() {
        let file = mysql_file("kingbus-5.7-mysql_bin.000011");
        let gtids: Vec<MysqlGtidEvent> = events_of(&file)
            .into_iter()
            .filter(|e| e[TYPE_CODE_OFFSET] == GTID_LOG_EVENT)
            .map(|e| MysqlGtidEvent::parse(e, CHECKSUM_LEN).unwrap())
            .collect();
        assert_eq!(gtids.len(), 11);
        for pair in gtids.windows(2) {
            assert_eq!(pair[0].uuid, pair[1].uuid);
            assert_eq!(pair[0].gno + 1, pair[1].gno);
        }
        assert!(gtids[0].last_committed.is_some());
        assert!(gtids[0].immediate_commit_timestamp.is_none());
        assert!(!gtids[0].is_anonymous());

        // 8.0: commit timestamps, transaction length, server versions.
        let file = mysql_file("mysql-enum-string-set.000001");
        let gtid = events_of(&file)
            .into_iter()
            .find(|e| e[TYPE_CODE_OFFSET] == GTID_LOG_EVENT)
            .map(|e| MysqlGtidEvent::parse(e, CHECKSUM_LEN).unwrap())
            .unwrap();
        assert_eq!(gtid.immediate_server_version, Some(80028));
        assert_eq!(gtid.original_server_version, Some(80028));
        assert!(gtid.transaction_length.unwrap() > 0);
        assert_eq!(
            gtid.original_commit_timestamp,
            gtid.immediate_commit_timestamp
        );

        // gtid_mode OFF: anonymous.
        let file = mysql_file("mysql-5.7.21-bin.checksum-crc32");
        let anonymous = events_of(&file)
            .into_iter()
            .find(|e| e[TYPE_CODE_OFFSET] == ANONYMOUS_GTID_LOG_EVENT)
            .map(|e| MysqlGtidEvent::parse(e, CHECKSUM_LEN).unwrap())
            .unwrap();
        assert!(anonymous.is_anonymous());
    }

    #[test]
    fn previous_gtids_event() {
        let file = mysql_file("kingbus-5.7-mysql_bin.000012");
        let event = events_of(&file)
            .into_iter()
            .find(|e| e[TYPE_CODE_OFFSET] == PREVIOUS_GTIDS_LOG_EVENT)
            .unwrap();
        let set = parse_previous_gtids(event, CHECKSUM_LEN).unwrap();
        assert!(!set.is_empty());
        let text = set.to_string();
        assert!(text.contains(':'), "{text}");
    }

    #[test]
    fn varint_round_trip_and_known_bytes() {
        // From the mysql::serialization readme: 65535 is 3 bytes, "00000111 11111111 11111011".
        let mut out = Vec::new();
        put_varint_u64(&mut out, 65535);
        assert_eq!(out, vec![0b1111_1011, 0b1111_1111, 0b0000_0111]);
        for value in [0u64, 1, 127, 128, 1 << 20, (1 << 56) - 1, 1 << 56, u64::MAX] {
            let mut out = Vec::new();
            put_varint_u64(&mut out, value);
            let mut r = Reader::new(&out, "varint");
            assert_eq!(varint_u64(&mut r).unwrap(), value, "{value}");
            assert_eq!(r.remaining(), 0);
        }
        for value in [0i64, 1, -1, 65535, -65535, -65536, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            put_varint_i64(&mut out, value);
            let mut r = Reader::new(&out, "varint");
            assert_eq!(varint_i64(&mut r).unwrap(), value, "{value}");
        }
        let mut out = Vec::new();
        put_varint_i64(&mut out, -65535);
        assert_eq!(out, vec![0b1110_1011, 0b1111_1111, 0b0000_1111]);
    }

    /// Encodes a tagged GTID body the way MySQL's serializer lays it out (used to test the
    /// parser; no real MySQL 8.3 capture is available here).
    fn encode_tagged(
        flags: u8,
        uuid: [u8; 16],
        gno: i64,
        tag: &str,
        extra_original: bool,
    ) -> Vec<u8> {
        let mut fields = Vec::new();
        put_varint_u64(&mut fields, 0);
        put_varint_u64(&mut fields, u64::from(flags));
        put_varint_u64(&mut fields, 1);
        for b in uuid {
            put_varint_u64(&mut fields, u64::from(b));
        }
        put_varint_u64(&mut fields, 2);
        put_varint_i64(&mut fields, gno);
        put_varint_u64(&mut fields, 3);
        put_varint_u64(&mut fields, tag.len() as u64);
        fields.extend_from_slice(tag.as_bytes());
        put_varint_u64(&mut fields, 4);
        put_varint_i64(&mut fields, 7);
        put_varint_u64(&mut fields, 5);
        put_varint_i64(&mut fields, 8);
        put_varint_u64(&mut fields, 6);
        put_varint_u64(&mut fields, 1_700_000_000_000_000);
        if extra_original {
            put_varint_u64(&mut fields, 7);
            put_varint_u64(&mut fields, 1_600_000_000_000_000);
        }
        put_varint_u64(&mut fields, 8);
        put_varint_u64(&mut fields, 500);
        put_varint_u64(&mut fields, 9);
        put_varint_u64(&mut fields, 80400);
        let mut body = Vec::new();
        put_varint_u64(&mut body, 0);
        // The size varint counts itself; 1 byte is enough for these tests.
        let size = 1 + 1 + 1 + fields.len();
        put_varint_u64(&mut body, size as u64);
        put_varint_u64(&mut body, 10);
        body.extend_from_slice(&fields);
        assert_eq!(body.len(), size);
        body
    }

    #[test]
    fn tagged_gtid_event() {
        let uuid = [
            0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42,
            0x95, 0x62,
        ];
        let body = encode_tagged(0, uuid, 42, "blue", false);
        let event = build_event(GTID_TAGGED_LOG_EVENT, 1, 1, 100, 0, &body, true);
        let parsed = MysqlGtidEvent::parse(&event, CHECKSUM_LEN).unwrap();
        assert_eq!(parsed.uuid, uuid);
        assert_eq!(parsed.gno, 42);
        assert_eq!(parsed.tag.as_deref(), Some("blue"));
        assert_eq!(parsed.last_committed, Some(7));
        assert_eq!(parsed.sequence_number, Some(8));
        assert_eq!(parsed.transaction_length, Some(500));
        assert_eq!(parsed.immediate_server_version, Some(80400));
        assert_eq!(parsed.original_server_version, Some(80400));
        assert_eq!(
            parsed.original_commit_timestamp,
            Some(1_700_000_000_000_000)
        );

        let body = encode_tagged(1, uuid, i64::MAX, "", true);
        let event = build_event(GTID_TAGGED_LOG_EVENT, 1, 1, 100, 0, &body, false);
        let parsed = MysqlGtidEvent::parse(&event, 0).unwrap();
        assert_eq!(parsed.tag, None);
        assert_eq!(parsed.gno, i64::MAX);
        assert_eq!(parsed.gtid_flags, 1);
        assert_eq!(
            parsed.original_commit_timestamp,
            Some(1_600_000_000_000_000)
        );

        // Truncations error out, never panic.
        for cut in 0..body.len() {
            let event = build_event(GTID_TAGGED_LOG_EVENT, 1, 1, 100, 0, &body[..cut], false);
            let _ = MysqlGtidEvent::parse(&event, 0);
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_u32;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            for type_code in [2u8, 4, 15, 16, 27, 33, 35, 42, 161, 162, 163] {
                let mut event = bytes.clone();
                if event.len() > TYPE_CODE_OFFSET {
                    event[TYPE_CODE_OFFSET] = type_code;
                }
                let _ = FormatDescription::parse(&event);
                let _ = Rotate::parse(&event, 4);
                let _ = Heartbeat::parse(&event, 0);
                let _ = QueryEvent::parse(&event, 4);
                let _ = parse_xid(&event, 4);
                let _ = MariaGtidEvent::parse(&event, 4);
                let _ = GtidListEvent::parse(&event, 4);
                let _ = MysqlGtidEvent::parse(&event, 4);
                let _ = parse_previous_gtids(&event, 4);
                let _ = parse_binlog_checkpoint(&event, 4);
                let _ = verify_checksum(&event);
                let _ = with_log_pos_zeroed_fde(&event, true);
            }
        }
    }
}
