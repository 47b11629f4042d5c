//! Streams the stored binlog to one downstream replica: resolves the start (file+position,
//! MariaDB GTID state, or a MySQL GTID set from COM_BINLOG_DUMP_GTID), sends the preamble a
//! master sends (artificial ROTATE, FDE, GTID_LIST), then every stored event in order,
//! heartbeats while idle, and either waits for new data (woken by the store, no polling) or
//! ends with EOF for a non-blocking dump.
//!
//! MySQL GTID dumps work as MySQL's source does: the replica's set must be contained in the
//! stored gtid_executed and contain the stored gtid_purged (else ERR 1236 naming the GTIDs);
//! the dump starts at the start of the newest file whose PREVIOUS_GTIDS the replica has,
//! skips every transaction the replica has (telling it how far it got with a heartbeat), and
//! passes everything else (TRANSACTION_PAYLOAD included) through untouched.
//!
//! Only events up to the store's watermark are read, so a transaction is sent whole or not
//! at all. Every event's CRC32 is checked again before it leaves. An event larger than the
//! cursor's window whose type the transaction tracker follows by type code alone (row
//! events, ANNOTATE_ROWS, ...) is sent as it is read, never held whole: its CRC32 is
//! checked on the way, and its last bytes leave only once it matched (a damaged one ends
//! the connection inside its packet, so the replica never receives it whole).
//!
//! `start` resolves where a dump begins (and refuses what cannot be served); `filter` skips
//! what a GTID-mode replica already has; this module streams.

#[cfg(test)]
mod boundary_tests;
mod filter;
#[cfg(test)]
mod mysql_tests;
mod start;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::binlog::event;
use crate::binlog::transaction::TransactionTracker;
use crate::limits::DUMP_STOP_CHECK_MS;
use crate::mysql::resultset::ER_MASTER_FATAL_ERROR_READING_BINLOG;
use crate::net::conn::PacketConn;
use crate::net::NetError;
use crate::store::cursor::{Cursor, Item};
use crate::store::{Store, StoreError};

use filter::*;
use start::*;

/// Where a dump starts, as the replica asked.
#[derive(Clone, Debug)]
pub enum DumpStart {
    FilePos {
        file: String,
        pos: u64,
    },
    /// MariaDB GTID mode: `@slave_connect_state`.
    MariaGtid(String),
    /// MySQL COM_BINLOG_DUMP_GTID: the replica's gtid_executed (MySQL's binary encoding), and
    /// the file and position it named (an empty file: find the start by GTID, as MySQL
    /// replicas with MASTER_AUTO_POSITION=1 ask).
    MysqlGtid {
        sid_data: Vec<u8>,
        file: String,
        pos: u64,
    },
}

/// How the replica asked to be served.
#[derive(Clone, Debug)]
pub struct DumpOptions {
    pub start: DumpStart,
    pub non_blocking: bool,
    /// MariaDB: the replica asked for ANNOTATE_ROWS events (a master leaves them out
    /// otherwise).
    pub send_annotate_rows: bool,
    pub heartbeat_period: Duration,
    /// Whether artificial events carry a CRC32 (the replica is checksum-aware and did not
    /// ask for NONE).
    pub artificial_crc: bool,
    /// The replica set `@master_binlog_checksum` (any value): it handles checksums.
    pub checksum_aware: bool,
    pub server_id: u32,
    /// MySQL 8.0.26+ replicas ask (dump flag 2 on MySQL data) for HEARTBEAT_LOG_EVENT_V2.
    pub heartbeat_v2: bool,
}

#[cfg(test)]
impl DumpOptions {
    /// What the tests dump with unless they say otherwise: a checksum-aware replica (server
    /// id 9) that reads to the end and stops (non-blocking), heartbeats every 60 s.
    pub(crate) fn for_test(start: DumpStart) -> DumpOptions {
        DumpOptions {
            start,
            non_blocking: true,
            send_annotate_rows: false,
            heartbeat_period: Duration::from_secs(60),
            artificial_crc: true,
            checksum_aware: true,
            server_id: 9,
            heartbeat_v2: false,
        }
    }
}

/// Live position of a dump, for the status API.
#[derive(Debug, Default)]
pub struct DumpProgress {
    pub position: Mutex<(String, u64)>,
    pub bytes_sent: AtomicU64,
}

/// Why a dump ended.
#[derive(Debug)]
pub enum DumpError {
    /// Sent to the replica as ERR 1236 (before anything else was sent).
    Refused(String),
    Net(NetError),
    Store(StoreError),
    /// Found while an event was partly sent: the connection must be closed (the replica
    /// never receives that packet whole).
    Cut(String),
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DumpError::Refused(m) => write!(f, "refused: {m}"),
            DumpError::Net(e) => write!(f, "connection: {e}"),
            DumpError::Store(e) => write!(f, "store: {e}"),
            DumpError::Cut(m) => write!(f, "cut inside an event: {m}"),
        }
    }
}

impl From<NetError> for DumpError {
    fn from(e: NetError) -> Self {
        DumpError::Net(e)
    }
}

impl From<StoreError> for DumpError {
    fn from(e: StoreError) -> Self {
        DumpError::Store(e)
    }
}

/// The ERR 1236 text for a replica that never said it handles checksums while the stored
/// binlog has them: MariaDB and MySQL refuse it too, since it would read each event's
/// CRC32 as part of its body.
pub(super) fn checksum_refusal(store: &Store, checksum_aware: bool) -> Option<String> {
    if checksum_aware {
        return None;
    }
    let index = store.index();
    let first = index.files().first()?;
    (event::checksum_len_of_fde(&first.fde) > 0).then(|| {
        "Slave can not handle replication events with the checksum that master is \
         configured to log (set @master_binlog_checksum first)"
            .to_string()
    })
}

/// Streams until the replica goes away, the server stops, or (non-blocking) the end.
pub fn run<S: Read + Write>(
    conn: &mut PacketConn<S>,
    store: &Store,
    opts: &DumpOptions,
    progress: &DumpProgress,
    stop: &AtomicBool,
) -> Result<(), DumpError> {
    if let Some(message) = checksum_refusal(store, opts.checksum_aware) {
        send_err(conn, &message)?;
        return Err(DumpError::Refused(message));
    }
    let resolved = resolve_waiting(store, &opts.start, stop);
    let checked = match resolved {
        // A MariaDB GTID start is where the index saw a group end: a boundary by
        // construction, also where no event begins in its entry (a transaction's last
        // event cut across two entries ends the second one).
        Ok(s) if matches!(opts.start, DumpStart::MariaGtid(_)) => Ok(s),
        Ok(s) => check_event_boundary(store, &s)?.map(|()| s),
        Err(message) => Err(message),
    };
    let start = match checked {
        Ok(s) => s,
        Err(message) => {
            send_err(conn, &message)?;
            return Err(DumpError::Refused(message));
        }
    };
    let mut file = start.file.clone();
    let mut pos = start.loc.pos;
    // Artificial events carry a checksum as the replica asked until the first FDE is sent;
    // from then on as that file's FDE says (what a MariaDB master does, and what
    // mariadb-binlog expects when it parses them).
    let mut crc = opts.artificial_crc;
    send_event(
        conn,
        &event::build_rotate(&file, pos, opts.server_id, true, crc),
        progress,
    )?;
    if let Some(fde) = &start.fde_copy {
        // MySQL recomputes the copy's CRC32 only when the file has checksums.
        let with_crc = !start.mysql || event::checksum_len_of_fde(fde) > 0;
        send_event(
            conn,
            &event::with_log_pos_zeroed_fde(fde, with_crc),
            progress,
        )?;
        crc = event::checksum_len_of_fde(fde) > 0;
    }
    if let Some(state) = &start.state {
        if pos > 4 {
            let list = event::build_gtid_list(state, pos, opts.server_id, crc);
            send_event(conn, &list, progress)?;
        }
    }
    conn.flush()?;
    set_position(progress, &file, pos);

    let mut cursor = Cursor::at(start.loc).streaming(TransactionTracker::classifies_by_type);
    let checksum_len = store
        .index()
        .files()
        .get(start.loc.file)
        .map_or(event::CHECKSUM_LEN, |f| event::checksum_len_of_fde(&f.fde));
    // A MariaDB GTID dump has a state to reach, a MySQL one a set to leave out; never both.
    let mut filter = match (&start.exclude, &start.state) {
        (Some(exclude), _) => Some(GroupFilter::mysql(exclude.clone(), checksum_len)),
        (None, Some(_)) => Some(GroupFilter::maria(start.pending.clone(), checksum_len)),
        (None, None) => None,
    };
    let mut clear_fde = start.clear_first_fde;
    let heartbeat = |file: &str, pos: u64, crc: bool| {
        if opts.heartbeat_v2 {
            event::build_heartbeat_v2(file, pos, opts.server_id, crc)
        } else {
            event::build_heartbeat(file, pos_u32(pos), opts.server_id, crc)
        }
    };
    let mut seen = store.whole_upto();
    loop {
        while let Some(item) = next_item(conn, &mut cursor, store, seen)? {
            match item {
                Item::FileStart(fs) => {
                    if let Some(f) = filter.as_mut() {
                        if let Some(end) = f.take_skipped() {
                            send_event(conn, &heartbeat(&file, end, crc), progress)?;
                        }
                        f.new_file(&fs.fde);
                    }
                    clear_fde = false;
                    file = fs.file_name;
                    pos = fs.start_pos;
                    let rotate = event::build_rotate(&file, pos, opts.server_id, true, crc);
                    send_event(conn, &rotate, progress)?;
                    if pos > 4 {
                        send_event(
                            conn,
                            &event::with_log_pos_zeroed_fde(&fs.fde, true),
                            progress,
                        )?;
                        crc = event::checksum_len_of_fde(&fs.fde) > 0;
                    }
                }
                Item::Event { pos: at, bytes } => {
                    if !event::verify_checksum(bytes) {
                        let message = format!(
                            "stored event at {file}:{at} fails its CRC32 check; refusing to serve it"
                        );
                        log::error!("{message}");
                        send_err(conn, &message)?;
                        return Err(DumpError::Refused(message));
                    }
                    pos = at + bytes.len() as u64;
                    let is_fde = bytes.get(4) == Some(&event::FORMAT_DESCRIPTION_EVENT);
                    if is_fde {
                        crc = event::checksum_len_of_fde(bytes) > 0;
                    }
                    let skip = match filter.as_mut() {
                        Some(f) => skip_or_refuse(conn, f.skip(bytes, pos), &file, at)?,
                        None => false,
                    };
                    if skip || (!opts.send_annotate_rows && is_annotate_rows(bytes)) {
                        continue;
                    }
                    // MySQL: where the skipped transactions ended, so that the replica's
                    // position moves past them (what MySQL's source sends).
                    if let Some(end) = filter.as_mut().and_then(GroupFilter::take_skipped) {
                        send_event(conn, &heartbeat(&file, end, crc), progress)?;
                    }
                    if start.mysql && is_fde {
                        let fde = mysql_fde(bytes, clear_fde);
                        clear_fde = false;
                        send_event(conn, &fde, progress)?;
                        continue;
                    }
                    send_event(conn, bytes, progress)?;
                    // The replica moves to the file a real ROTATE names at once, and checks
                    // every later heartbeat against it (MariaDB stops the IO thread with
                    // ER_SLAVE_HEARTBEAT_FAILURE otherwise): heartbeats name it from now on,
                    // also while the next file's first entry is not committed yet.
                    if bytes.get(4) == Some(&event::ROTATE_EVENT) {
                        let checksum_len = if crc { event::CHECKSUM_LEN } else { 0 };
                        if let Ok(rotate) = event::Rotate::parse(bytes, checksum_len) {
                            file = rotate.next_file;
                            pos = rotate.position;
                        }
                    }
                }
                Item::Head { pos: at, len, head } => {
                    pos = at + len as u64;
                    let skip = match filter.as_mut() {
                        Some(f) => skip_or_refuse(conn, f.skip_head(head, len, pos), &file, at)?,
                        None => false,
                    };
                    let send = !skip && (opts.send_annotate_rows || !is_annotate_rows(head));
                    if send {
                        if let Some(end) = filter.as_mut().and_then(GroupFilter::take_skipped) {
                            send_event(conn, &heartbeat(&file, end, crc), progress)?;
                        }
                    }
                    let mut check = event::ChecksumStream::new(len);
                    check.update(head);
                    // Sent bytes are counted as they go (an event may take a while).
                    let sending = send.then_some(progress);
                    if let Some(progress) = sending {
                        conn.begin_packet(len + 1)?;
                        conn.write_payload(&[0])?;
                        conn.write_payload(head)?;
                        progress
                            .bytes_sent
                            .fetch_add(head.len() as u64 + 1, Ordering::Relaxed);
                    }
                    let at = Streamed { file: &file, at };
                    stream_rest(conn, &mut cursor, store, seen, &mut check, sending, &at)?;
                }
            }
        }
        if let Some(end) = filter.as_mut().and_then(GroupFilter::take_skipped) {
            send_event(conn, &heartbeat(&file, end, crc), progress)?;
        }
        conn.flush()?;
        set_position(progress, &file, pos);
        if opts.non_blocking {
            conn.write_packet(&[0xfe, 0, 0, 0x02, 0])?;
            conn.flush()?;
            return Ok(());
        }
        // Wait for new whole transactions; a heartbeat each period of silence. The wait is
        // cut in slices, so that an ended dump (server stop, the replica dumping again)
        // goes away soon even when heartbeats are rare or off.
        let mut silent_since = std::time::Instant::now();
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let until_heartbeat = opts.heartbeat_period.saturating_sub(silent_since.elapsed());
            let slice = until_heartbeat.min(Duration::from_millis(DUMP_STOP_CHECK_MS));
            match store.wait_beyond(seen, slice) {
                None => return Ok(()),
                Some(upto) if upto > seen => {
                    seen = upto;
                    break;
                }
                Some(_) if silent_since.elapsed() >= opts.heartbeat_period => {
                    send_event(conn, &heartbeat(&file, pos, crc), progress)?;
                    conn.flush()?;
                    silent_since = std::time::Instant::now();
                }
                Some(_) => {}
            }
        }
    }
}

/// The group filter's decision on the event at `file:at`. The filters follow transactions
/// through the same tracker the store indexed with; one that cannot means the stored bytes
/// are damaged, and going on could send half of a transaction the replica has: ERR 1236.
#[inline]
fn skip_or_refuse<S: Read + Write>(
    conn: &mut PacketConn<S>,
    decision: Result<bool, String>,
    file: &str,
    at: u64,
) -> Result<bool, DumpError> {
    match decision {
        Ok(skip) => Ok(skip),
        Err(e) => {
            let message = format!(
                "stored event at {file}:{at} cannot be followed ({e}); refusing to serve past it"
            );
            log::error!("{message}");
            send_err(conn, &message)?;
            Err(DumpError::Refused(message))
        }
    }
}

/// Where a streamed event starts, for messages.
struct Streamed<'a> {
    file: &'a str,
    at: u64,
}

/// The rest of an event the cursor began as a `Head` (`check` has taken its first bytes),
/// written to the packet already begun when `sending` (and counted there): each piece as
/// it is read, except that
/// the last one leaves only once the event's CRC32 is known to match. A damaged event
/// (or one cut short by the watermark, which the store never does to a whole transaction)
/// ends the dump: with ERR 1236 when nothing of it was sent, else by cutting the
/// connection inside its packet.
fn stream_rest<S: Read + Write>(
    conn: &mut PacketConn<S>,
    cursor: &mut Cursor,
    store: &Store,
    upto: u64,
    check: &mut event::ChecksumStream,
    sending: Option<&DumpProgress>,
    at: &Streamed,
) -> Result<(), DumpError> {
    let send = sending.is_some();
    loop {
        let piece = match cursor.piece(store, upto) {
            Ok(Some(piece)) => piece,
            Ok(None) => break,
            // Purged under this dump: as between events, when nothing of this one left.
            Err(StoreError::Storage(crate::storage::StorageError::Compacted { index }))
                if !send =>
            {
                return Err(refuse_purged(conn, store, index)?)
            }
            Err(e) if send => return Err(DumpError::Cut(format!("reading the store: {e}"))),
            Err(e) => return Err(e.into()),
        };
        check.update(piece);
        if check.complete() && !check.matches() {
            break;
        }
        if let Some(progress) = sending {
            conn.write_payload(piece)?;
            progress
                .bytes_sent
                .fetch_add(piece.len() as u64, Ordering::Relaxed);
        }
    }
    if check.matches() {
        return Ok(());
    }
    let what = if check.complete() {
        "fails its CRC32 check"
    } else {
        "is cut short in the store"
    };
    let message = format!(
        "stored event at {}:{} {what}; refusing to serve it",
        at.file, at.at
    );
    log::error!("{message}");
    if send {
        return Err(DumpError::Cut(message));
    }
    send_err(conn, &message)?;
    Err(DumpError::Refused(message))
}

/// The cursor's next item. Reading an entry a purge compacted away (this dump was still
/// reading a purged file) ends the dump with ERR 1236 saying so.
fn next_item<'c, S: Read + Write>(
    conn: &mut PacketConn<S>,
    cursor: &'c mut Cursor,
    store: &Store,
    upto: u64,
) -> Result<Option<Item<'c>>, DumpError> {
    match cursor.next(store, upto) {
        Ok(item) => Ok(item),
        Err(StoreError::Storage(crate::storage::StorageError::Compacted { index })) => {
            Err(refuse_purged(conn, store, index)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// ERR 1236 for a dump whose next log entry (`index`) a purge compacted away, and the
/// error that ends it.
fn refuse_purged<S: Read + Write>(
    conn: &mut PacketConn<S>,
    store: &Store,
    index: u64,
) -> Result<DumpError, DumpError> {
    let message = {
        let index_guard = store.index();
        format!(
            "Could not find first log file name in binary log index file: the binlog this \
             replica was reading has been purged (log entry {index}); the first binlog file \
             ferrobus still has is {}",
            first_file(&index_guard)
        )
    };
    send_err(conn, &message)?;
    Ok(DumpError::Refused(message))
}

/// A MySQL file's FDE as MySQL's source sends it: LOG_EVENT_BINLOG_IN_USE_F cleared (the
/// CRC32 is computed as if it were, so it stays valid), and when the dump skips the file's
/// first transaction, log_pos and `created` zeroed with the CRC32 recomputed.
fn mysql_fde(fde: &[u8], clear_pos: bool) -> Vec<u8> {
    if clear_pos {
        return event::with_log_pos_zeroed_fde(fde, event::checksum_len_of_fde(fde) > 0);
    }
    let mut out = fde.to_vec();
    if let Some(flags) = out.get_mut(event::FLAGS_OFFSET) {
        *flags &= !(event::LOG_EVENT_BINLOG_IN_USE_F as u8);
    }
    out
}

fn is_annotate_rows(ev: &[u8]) -> bool {
    ev.get(4) == Some(&event::ANNOTATE_ROWS_EVENT)
}

fn pos_u32(pos: u64) -> u32 {
    u32::try_from(pos).unwrap_or(u32::MAX)
}

fn set_position(progress: &DumpProgress, file: &str, pos: u64) {
    let mut p = progress.position.lock().expect("progress lock");
    if p.0 != file {
        p.0 = file.to_string();
    }
    p.1 = pos;
}

fn send_event<S: Read + Write>(
    conn: &mut PacketConn<S>,
    bytes: &[u8],
    progress: &DumpProgress,
) -> Result<(), NetError> {
    conn.write_parts_no_flush(&[0], bytes)?;
    progress
        .bytes_sent
        .fetch_add(bytes.len() as u64 + 1, Ordering::Relaxed);
    Ok(())
}

fn send_err<S: Read + Write>(conn: &mut PacketConn<S>, message: &str) -> Result<(), NetError> {
    let err = crate::mysql::resultset::ErrPacket {
        code: ER_MASTER_FATAL_ERROR_READING_BINLOG,
        sql_state: *b"HY000",
        message: message.to_string(),
    };
    conn.write_packet(&err.encode())?;
    conn.flush()
}
