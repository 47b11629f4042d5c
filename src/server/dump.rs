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
//! at all. Every event's CRC32 is checked again before it leaves.

use std::fmt;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::binlog::event;
use crate::binlog::gtid::{format_uuid, MariaGtid, MariaGtidList, MysqlGtidSet};
use crate::binlog::transaction::{Gtid, TransactionTracker};
use crate::binlog::Flavour;
use crate::mysql::resultset::ER_MASTER_FATAL_ERROR_READING_BINLOG;
use crate::net::conn::PacketConn;
use crate::net::NetError;
use crate::store::cursor::{Cursor, Item};
use crate::store::index::{BinlogIndex, Loc};
use crate::store::{Store, StoreError};

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
    pub server_id: u32,
    /// MySQL 8.0.26+ replicas ask (dump flag 2 on MySQL data) for HEARTBEAT_LOG_EVENT_V2.
    pub heartbeat_v2: bool,
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
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DumpError::Refused(m) => write!(f, "refused: {m}"),
            DumpError::Net(e) => write!(f, "connection: {e}"),
            DumpError::Store(e) => write!(f, "store: {e}"),
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

/// A resolved start.
#[derive(Debug)]
struct Start {
    loc: Loc,
    file: String,
    /// FDE to send as a copy (log_pos 0) when the dump does not start at the file's FDE.
    fde_copy: Option<Vec<u8>>,
    /// GTID mode: the replica's state, sent as the fake GTID_LIST.
    state: Option<MariaGtidList>,
    /// GTID mode: the state's GTIDs that come after the start location: in their domains,
    /// groups are skipped until that GTID has passed (what a MariaDB master does).
    pending: MariaGtidList,
    /// The stored binlog is MySQL's: FDEs leave with LOG_EVENT_BINLOG_IN_USE_F cleared.
    mysql: bool,
    /// MySQL GTID mode: the replica's gtid_executed; transactions in it are skipped.
    exclude: Option<MysqlGtidSet>,
    /// MySQL GTID mode: the start file's first transaction is skipped, so its FDE leaves
    /// with log_pos and `created` zeroed (the replica must not drop its temporary tables).
    clear_first_fde: bool,
}

/// Streams until the replica goes away, the server stops, or (non-blocking) the end.
pub fn run<S: Read + Write>(
    conn: &mut PacketConn<S>,
    store: &Store,
    opts: &DumpOptions,
    progress: &DumpProgress,
    stop: &AtomicBool,
) -> Result<(), DumpError> {
    let resolved = resolve_waiting(store, &opts.start, stop);
    let checked = match resolved {
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

    let mut cursor = Cursor::at(start.loc);
    let mut filter = start
        .state
        .is_some()
        .then(|| GroupFilter::new(start.pending.clone()));
    let mut mysql_filter = start.exclude.clone().map(|exclude| {
        let checksum_len = {
            let index = store.index();
            index
                .files()
                .get(start.loc.file)
                .map_or(event::CHECKSUM_LEN, |f| event::checksum_len_of_fde(&f.fde))
        };
        MysqlGroupFilter::new(exclude, checksum_len)
    });
    let mut clear_fde = start.clear_first_fde;
    let heartbeat = |file: &str, pos: u64, crc: bool| {
        if opts.heartbeat_v2 {
            build_heartbeat_v2(file, pos, opts.server_id, crc)
        } else {
            event::build_heartbeat(file, pos_u32(pos), opts.server_id, crc)
        }
    };
    let mut seen = store.whole_upto();
    loop {
        while let Some(item) = next_item(conn, &mut cursor, store, seen)? {
            match item {
                Item::FileStart(fs) => {
                    if let Some(f) = mysql_filter.as_mut() {
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
                    if let Some(f) = filter.as_mut() {
                        f.new_file(&fs.fde);
                    }
                }
                Item::Event { pos: at, bytes } => {
                    if !event::verify_checksum(&bytes) {
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
                        crc = event::checksum_len_of_fde(&bytes) > 0;
                    }
                    // The filters follow transactions through the same tracker the store
                    // indexed with; one that cannot means the stored bytes are damaged, and
                    // going on could send half of a transaction the replica has.
                    let untrackable = |e: String| {
                        let message = format!(
                            "stored event at {file}:{at} cannot be followed ({e}); refusing to \
                             serve past it"
                        );
                        log::error!("{message}");
                        message
                    };
                    let skip_maria = match filter.as_mut().map(|f| f.skip(&bytes)) {
                        Some(Err(e)) => {
                            let message = untrackable(e);
                            send_err(conn, &message)?;
                            return Err(DumpError::Refused(message));
                        }
                        Some(Ok(skip)) => skip,
                        None => false,
                    };
                    if skip_maria || (!opts.send_annotate_rows && is_annotate_rows(&bytes)) {
                        continue;
                    }
                    if let Some(f) = mysql_filter.as_mut() {
                        let skip = match f.skip(&bytes, pos) {
                            Ok(skip) => skip,
                            Err(e) => {
                                let message = untrackable(e);
                                send_err(conn, &message)?;
                                return Err(DumpError::Refused(message));
                            }
                        };
                        if skip {
                            continue;
                        }
                        // Where the skipped transactions ended, so that the replica's
                        // position moves past them (what MySQL's source sends).
                        if let Some(end) = f.take_skipped() {
                            send_event(conn, &heartbeat(&file, end, crc), progress)?;
                        }
                    }
                    if start.mysql && is_fde {
                        let fde = mysql_fde(&bytes, clear_fde);
                        clear_fde = false;
                        send_event(conn, &fde, progress)?;
                        continue;
                    }
                    send_event(conn, &bytes, progress)?;
                }
            }
        }
        if let Some(end) = mysql_filter
            .as_mut()
            .and_then(MysqlGroupFilter::take_skipped)
        {
            send_event(conn, &heartbeat(&file, end, crc), progress)?;
        }
        conn.flush()?;
        set_position(progress, &file, pos);
        if opts.non_blocking {
            conn.write_packet(&[0xfe, 0, 0, 0x02, 0])?;
            conn.flush()?;
            return Ok(());
        }
        // Wait for new whole transactions; a heartbeat each period of silence.
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            match store.wait_beyond(seen, opts.heartbeat_period) {
                None => return Ok(()),
                Some(upto) if upto > seen => {
                    seen = upto;
                    break;
                }
                Some(_) => {
                    send_event(conn, &heartbeat(&file, pos, crc), progress)?;
                    conn.flush()?;
                }
            }
        }
    }
}

/// The cursor's next item. Reading an entry a purge compacted away (this dump was still
/// reading a purged file) ends the dump with ERR 1236 saying so.
fn next_item<S: Read + Write>(
    conn: &mut PacketConn<S>,
    cursor: &mut Cursor,
    store: &Store,
    upto: u64,
) -> Result<Option<Item>, DumpError> {
    match cursor.next(store, upto) {
        Ok(item) => Ok(item),
        Err(StoreError::Storage(crate::storage::StorageError::Compacted { index })) => {
            let message = {
                let index_guard = store.index();
                format!(
                    "Could not find first log file name in binary log index file: the binlog \
                     this replica was reading has been purged (log entry {index}); the first \
                     binlog file ferrobus still has is {}",
                    first_file(&index_guard)
                )
            };
            send_err(conn, &message)?;
            Err(DumpError::Refused(message))
        }
        Err(e) => Err(e.into()),
    }
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

/// OTW_HB_* field ids of a HEARTBEAT_LOG_EVENT_V2 body (MySQL's binary heartbeat codec).
const HB_V2_END_MARK: u64 = 0;
const HB_V2_LOG_FILENAME: u64 = 1;
const HB_V2_LOG_POSITION: u64 = 2;

/// A HEARTBEAT_LOG_EVENT_V2 (type 41), which carries a 64-bit position: the body is
/// `type length value` triples of length-encoded integers (the file name as bytes, the
/// position as a length-encoded integer), then the end mark. The header's log_pos holds
/// the position too, capped at 32 bits.
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
    event::build_event(
        event::HEARTBEAT_LOG_EVENT_V2,
        0,
        server_id,
        pos_u32(log_pos),
        0,
        &body,
        with_crc,
    )
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

/// Resolves the start; a start just ahead of what this node has applied (a replica that
/// moved here from a node further along, or a node still catching up after a restart) is
/// waited for, bounded, instead of refused at once: the replica would stop on ERR 1236.
fn resolve_waiting(store: &Store, start: &DumpStart, stop: &AtomicBool) -> Result<Start, String> {
    let deadline =
        std::time::Instant::now() + Duration::from_millis(crate::limits::DUMP_AHEAD_WAIT_MS);
    loop {
        let seen = store.whole_upto();
        let (result, ahead) = {
            let index = store.index();
            let result = resolve(&index, start);
            let ahead = result.is_err() && is_ahead(&index, start);
            (result, ahead)
        };
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if !ahead || left.is_zero() || stop.load(Ordering::SeqCst) {
            return result;
        }
        if store.wait_beyond(seen, left).is_none() {
            return result;
        }
    }
}

/// Whether the requested start lies beyond the stored binlog (rather than before it or
/// beside it): a GTID with a higher seq_no than the newest of its domain, or a position
/// past the end of the last file, or a file after it.
fn is_ahead(index: &BinlogIndex, start: &DumpStart) -> bool {
    if index.files().is_empty() {
        // Nothing applied yet (a node starting or joining): anything asked for is ahead.
        return true;
    }
    match start {
        DumpStart::MariaGtid(text) => MariaGtidList::parse(text).is_ok_and(|state| {
            state.iter().any(|g| {
                index
                    .maria_state()
                    .get(g.domain_id)
                    .is_some_and(|have| have.seq_no < g.seq_no)
            })
        }),
        DumpStart::FilePos { file, pos } => is_file_pos_ahead(index, file, *pos),
        DumpStart::MysqlGtid {
            sid_data,
            file,
            pos,
        } => {
            index.flavour() != Some(Flavour::MariaDb)
                && (MysqlGtidSet::decode(sid_data)
                    .is_ok_and(|set| !set.is_subset(index.mysql_executed()))
                    || (!file.is_empty() && is_file_pos_ahead(index, file, *pos)))
        }
    }
}

fn is_file_pos_ahead(index: &BinlogIndex, file: &str, pos: u64) -> bool {
    match index.files().last() {
        Some(last) if last.name == *file => pos > last.end_pos,
        Some(last) => {
            crate::consensus::state::binlog_file_order(file, &last.name)
                == Some(std::cmp::Ordering::Greater)
        }
        None => true,
    }
}

/// Whether the start location is where an event begins: walks the events of its entry from
/// the first one that starts in it. A replica asking for a position inside an event gets an
/// error instead of garbage.
fn check_event_boundary(store: &Store, start: &Start) -> Result<Result<(), String>, StoreError> {
    let not_boundary = || {
        Err(format!(
            "position {} of {} is not the start of an event",
            start.loc.pos, start.file
        ))
    };
    let first_offset = {
        let index = store.index();
        match index.entry_meta(start.loc.entry) {
            // Past the last entry of the file: the end of its content, a boundary.
            None => return Ok(Ok(())),
            Some(meta) => meta.first_event_offset,
        }
    };
    let Some(first_offset) = first_offset else {
        return Ok(not_boundary());
    };
    if start.loc.offset < first_offset {
        return Ok(not_boundary());
    }
    let mut cursor = Cursor::at(Loc {
        offset: first_offset,
        ..start.loc
    });
    let upto = store.whole_upto();
    let mut at = start.loc.pos - (start.loc.offset - first_offset) as u64;
    while at < start.loc.pos {
        match cursor.next(store, upto)? {
            Some(Item::Event { pos, bytes }) => at = pos + bytes.len() as u64,
            Some(Item::FileStart(_)) | None => break,
        }
    }
    Ok(if at == start.loc.pos {
        Ok(())
    } else {
        not_boundary()
    })
}

/// Turns the replica's request into a location, or the text of ERR 1236.
fn resolve(index: &BinlogIndex, start: &DumpStart) -> Result<Start, String> {
    match start {
        DumpStart::FilePos { file, pos } => {
            let mut start = resolve_file_pos(index, file, *pos)?;
            start.mysql = index.flavour() == Some(Flavour::MySql);
            Ok(start)
        }
        DumpStart::MariaGtid(state) => resolve_gtid(index, state),
        DumpStart::MysqlGtid {
            sid_data,
            file,
            pos,
        } => resolve_mysql_gtid(index, sid_data, file, *pos),
    }
}

/// COM_BINLOG_DUMP_GTID: checks the replica's set against the stored one and finds where
/// to start (see the module doc).
fn resolve_mysql_gtid(
    index: &BinlogIndex,
    sid_data: &[u8],
    file: &str,
    pos: u64,
) -> Result<Start, String> {
    let replica = MysqlGtidSet::decode(sid_data).map_err(|e| {
        format!("the replica sent a malformed GTID set with COM_BINLOG_DUMP_GTID: {e}")
    })?;
    if index.files().is_empty() {
        return Err("ferrobus has not stored any binlog yet".into());
    }
    if index.flavour() == Some(Flavour::MariaDb) {
        return Err(format!(
            "the replica asks for MySQL GTID auto-positioning (COM_BINLOG_DUMP_GTID), but \
             the binlog ferrobus stores is MariaDB's ({}); use MASTER_USE_GTID=slave_pos or \
             a file and position",
            index.server_version().unwrap_or_default()
        ));
    }
    if index.mysql_executed().is_empty() {
        return Err(
            "Request to dump GTID when @@GLOBAL.GTID_MODE <> ON: the MySQL binlog ferrobus \
             stores has no GTIDs (its master ran with gtid_mode OFF); replicate by file and \
             position (MASTER_AUTO_POSITION=0)"
                .into(),
        );
    }
    if !index.mysql_start_known() {
        let first = &index.files()[0];
        return Err(format!(
            "the binlog ferrobus stores begins inside {} at position {}, after transactions \
             it has no record of (its syncer was started at a file and position, not at a \
             GTID set), so GTID auto-positioning cannot tell what the replica lacks before \
             that point; replicate by file and position (MASTER_AUTO_POSITION=0)",
            first.name, first.start_pos
        ));
    }
    check_replica_set(index, &replica)?;
    let name = file.trim_end_matches('\0');
    let mut start = if name.is_empty() {
        start_by_gtid(index, &replica)?
    } else {
        // MySQL serves a named file and position even in GTID mode, still skipping what
        // the replica has.
        resolve_file_pos(index, name, pos)?
    };
    start.mysql = true;
    start.exclude = Some(replica);
    Ok(start)
}

/// MySQL's checks of a GTID dump: the replica has nothing the stored binlog lacks (a server
/// UUID it never saw, or later transactions of one it knows), and has every transaction
/// that was purged.
fn check_replica_set(index: &BinlogIndex, replica: &MysqlGtidSet) -> Result<(), String> {
    let executed = index.mysql_executed();
    let known: std::collections::BTreeSet<[u8; 16]> =
        executed.iter().map(|(tsid, _)| tsid.uuid).collect();
    let mut unknown: Vec<String> = replica
        .iter()
        .map(|(tsid, _)| tsid.uuid)
        .filter(|uuid| !known.contains(uuid))
        .map(|uuid| format_uuid(&uuid))
        .collect();
    unknown.dedup();
    if !unknown.is_empty() {
        return Err(format!(
            "Slave has more GTIDs than the master has: the replica has transactions of server \
             UUID {} that never appear in the binlog ferrobus stores (gtid_executed '{}'). The \
             replica has transactions its source never had (written on the replica, or \
             replicated from another source); remove them or provision the replica again",
            unknown.join(", "),
            executed
        ));
    }
    let missing = replica.subtract(executed);
    if !missing.is_empty() {
        return Err(format!(
            "Slave has more GTIDs than the master has: the replica has '{missing}', which the \
             binlog ferrobus stores does not have (gtid_executed '{executed}'). The source's \
             binlog may have lost its end, or the replica ran transactions of its own; a \
             replica that is ahead cannot be served"
        ));
    }
    let purged = index.mysql_purged();
    let needed = purged.subtract(replica);
    if !needed.is_empty() {
        return Err(format!(
            "The slave is connecting using CHANGE MASTER TO MASTER_AUTO_POSITION = 1, but the \
             master has purged binary logs containing GTIDs that the slave requires: the \
             replica lacks '{needed}', which ferrobus no longer has (gtid_purged '{purged}'; \
             the first binlog file ferrobus still has is {}). Provision the replica from a \
             backup that includes those transactions",
            first_file(index)
        ));
    }
    Ok(())
}

/// The start of the newest stored file whose PREVIOUS_GTIDS the replica has (MySQL's
/// find_first_log_not_in_gtid_set): every transaction the replica lacks comes after it.
fn start_by_gtid(index: &BinlogIndex, replica: &MysqlGtidSet) -> Result<Start, String> {
    let files = index.files();
    // The first file's set is gtid_purged, which check_replica_set found in the replica.
    let file = (0..files.len())
        .rev()
        .find(|&k| {
            index
                .mysql_gtids_before(k)
                .is_some_and(|before| before.is_subset(replica))
        })
        .unwrap_or(0);
    let meta = &files[file];
    let loc = locate(index, file, meta.start_pos)?;
    // The file's first transaction, in stream order.
    let first = index
        .mysql_groups()
        .filter(|(_, _, g)| g.start.file == file)
        .min_by_key(|(_, _, g)| (g.start.entry, g.start.offset));
    let clear_first_fde = first
        .is_some_and(|(tsid, gno, _)| replica.contains_gtid(&tsid.uuid, tsid.tag.as_deref(), gno));
    Ok(Start {
        loc,
        file: meta.name.clone(),
        fde_copy: (meta.start_pos != 4).then(|| meta.fde.clone()),
        state: None,
        pending: MariaGtidList::new(),
        mysql: true,
        exclude: None,
        clear_first_fde,
    })
}

fn resolve_file_pos(index: &BinlogIndex, name: &str, pos: u64) -> Result<Start, String> {
    let files = index.files();
    let (first, last) = match (files.first(), files.last()) {
        (Some(f), Some(l)) => (f.name.as_str(), l.name.as_str()),
        _ => return Err("ferrobus has not stored any binlog yet".into()),
    };
    let name = if name.is_empty() { first } else { name };
    let file = index.file_index(name).ok_or_else(|| {
        if is_purged_file(index, name) {
            format!(
                "Could not find first log file name in binary log index file: {name} has been \
                 purged (the first binlog file ferrobus still has is {first}, up to {last})"
            )
        } else {
            format!(
                "Could not find first log file name in binary log index file: {name} is not \
                 stored (ferrobus has {first} .. {last})"
            )
        }
    })?;
    let meta = &files[file];
    let pos = pos.max(4);
    if file == 0 && pos < meta.start_pos && index.origin().0 > 0 {
        return Err(format!(
            "Could not find first log file name in binary log index file: position {pos} of \
             {name} has been purged (ferrobus has {name} from {} on)",
            meta.start_pos
        ));
    }
    if pos < meta.start_pos || pos > meta.end_pos {
        return Err(format!(
            "position {pos} of {name} is not stored (ferrobus has {name} from {} to {})",
            meta.start_pos, meta.end_pos
        ));
    }
    let loc = locate(index, file, pos)?;
    let fde_copy = (pos != 4 || meta.start_pos != 4).then(|| meta.fde.clone());
    Ok(Start {
        loc,
        file: name.to_string(),
        fde_copy,
        state: None,
        pending: MariaGtidList::new(),
        mysql: false,
        exclude: None,
        clear_first_fde: false,
    })
}

/// The location of `pos` in `file`, which must be an event boundary.
fn locate(index: &BinlogIndex, file: usize, pos: u64) -> Result<Loc, String> {
    let name = &index.files()[file].name;
    if let Some(e) = index.entry_at(file, pos) {
        return Ok(Loc {
            entry: e.index,
            offset: (pos - e.start_pos) as usize,
            file,
            pos,
        });
    }
    // At the end of the stored content of the file: start reading after its last entry.
    let after = index
        .entries_of(file)
        .last()
        .map(|e| e.index)
        .unwrap_or(index.files()[file].file_start_entry);
    if pos == index.files()[file].end_pos {
        return Ok(Loc {
            entry: after + 1,
            offset: 0,
            file,
            pos,
        });
    }
    Err(format!("position {pos} of {name} is not stored"))
}

fn resolve_gtid(index: &BinlogIndex, state_text: &str) -> Result<Start, String> {
    let state = MariaGtidList::parse(state_text).map_err(|e| {
        format!("Error: connecting slave sent a malformed GTID state '{state_text}': {e}")
    })?;
    let first = index
        .first_loc()
        .ok_or_else(|| "ferrobus has not stored any binlog yet".to_string())?;
    let mut start: Option<Loc> = None;
    let mut covered = std::collections::BTreeSet::new();
    for gtid in state.iter() {
        covered.insert(gtid.domain_id);
        let loc = match index.maria_group(gtid) {
            Some(group) => group.end,
            // The replica stopped exactly where the store begins.
            None if index
                .maria_start_state()
                .and_then(|s| s.get(gtid.domain_id))
                == Some(gtid) =>
            {
                first
            }
            None => return Err(missing_gtid_message(index, gtid)),
        };
        start = Some(start.map_or(loc, |s| earlier(s, loc)));
    }
    // Domains the replica has never seen are sent from the beginning, which is only right
    // when the store holds that domain's whole history.
    let uncovered: Vec<u32> = index
        .maria_domains()
        .filter(|d| !covered.contains(d))
        .collect();
    for domain in &uncovered {
        check_whole_history(index, *domain)?;
    }
    if start.is_none() || !uncovered.is_empty() {
        start = Some(first);
    }
    let loc = start.expect("set above");
    let meta = &index.files()[loc.file];
    // The GTIDs the stream has not passed yet at `loc`: their domains are skipped until then.
    let mut pending = state.clone();
    for gtid in state.iter() {
        let passed = index
            .maria_group(gtid)
            .is_some_and(|g| !is_before(loc, g.end))
            || index
                .maria_start_state()
                .and_then(|s| s.get(gtid.domain_id))
                == Some(gtid);
        if passed {
            pending.remove(gtid.domain_id);
        }
    }
    Ok(Start {
        loc,
        file: meta.name.clone(),
        fde_copy: (loc.pos != 4 || meta.start_pos != 4).then(|| meta.fde.clone()),
        state: Some(state),
        pending,
        mysql: false,
        exclude: None,
        clear_first_fde: false,
    })
}

/// Whether `name` comes before the first stored file of its series: a file that was purged
/// (or that the store never held because it began later; to a replica, the same).
fn is_purged_file(index: &BinlogIndex, name: &str) -> bool {
    index.files().first().is_some_and(|first| {
        crate::consensus::state::binlog_file_order(name, &first.name)
            == Some(std::cmp::Ordering::Less)
    })
}

/// The first stored file's name, for messages.
fn first_file(index: &BinlogIndex) -> &str {
    index.files().first().map_or("(none)", |f| f.name.as_str())
}

fn missing_gtid_message(index: &BinlogIndex, gtid: &MariaGtid) -> String {
    let purged = index.purged_gtids();
    if purged.contains(gtid) {
        return format!(
            "Could not find GTID state requested by slave in any binlog files. Probably the \
             slave state is too old and required binlog files have been purged: GTID {gtid} is \
             in the purged binlog (purged up to {}; the first binlog file ferrobus still has \
             is {})",
            purged,
            first_file(index)
        );
    }
    match index.maria_first_seq(gtid.domain_id) {
        Some(first) if gtid.seq_no < first => format!(
            "Could not find GTID state requested by slave in any binlog files. Probably the \
             slave state is too old and required binlog files have been purged: GTID {gtid} is \
             older than the first stored transaction of domain {} (seq_no {first}, in \
             {})",
            gtid.domain_id,
            first_file(index)
        ),
        _ => format!(
            "Error: connecting slave requested to start from GTID {gtid}, which is not in the \
             master's binlog"
        ),
    }
}

/// A replica without a position in `domain` would be sent the domain from the start of the
/// store: refuse unless the store begins before the domain's first transaction.
fn check_whole_history(index: &BinlogIndex, domain: u32) -> Result<(), String> {
    match index.maria_start_state() {
        Some(start) => match start.get(domain) {
            None => Ok(()),
            Some(at) => Err(format!(
                "Could not find GTID state requested by slave in any binlog files. Probably the \
                 slave state is too old and required binlog files have been purged: the slave \
                 has no position in domain {domain}, and ferrobus's binlog of that domain \
                 begins after {at} (the first binlog file ferrobus still has is {})",
                first_file(index)
            )),
        },
        None => Err(format!(
            "the slave has no position in domain {domain}, and ferrobus does not know where \
             its binlog of that domain begins; start the slave at a GTID of domain {domain}"
        )),
    }
}

/// Whether `a` comes before `b` in the stored stream.
fn is_before(a: Loc, b: Loc) -> bool {
    (a.entry, a.offset) < (b.entry, b.offset)
}

fn earlier(a: Loc, b: Loc) -> Loc {
    if (b.entry, b.offset) < (a.entry, a.offset) {
        b
    } else {
        a
    }
}

/// Skips the groups a GTID-mode replica already has.
struct GroupFilter {
    /// Per domain, the GTID to reach; groups of that domain are skipped until it has passed.
    pending: MariaGtidList,
    tracker: TransactionTracker,
    skipping: bool,
    /// The domain whose pending GTID is the group being skipped now.
    reaching: Option<u32>,
}

impl GroupFilter {
    fn new(pending: MariaGtidList) -> GroupFilter {
        GroupFilter {
            pending,
            tracker: TransactionTracker::new(4),
            skipping: false,
            reaching: None,
        }
    }

    fn new_file(&mut self, fde: &[u8]) {
        self.tracker = TransactionTracker::new(event::checksum_len_of_fde(fde));
        self.skipping = false;
    }

    /// Whether to skip this event (an error: the event cannot be followed).
    fn skip(&mut self, ev: &[u8]) -> Result<bool, String> {
        let step = self.tracker.feed(ev).map_err(|e| e.to_string())?;
        if step.starts_group {
            self.skipping = match step.gtid {
                Some(Gtid::Maria(g)) => match self.pending.get(g.domain_id) {
                    Some(target) => {
                        if *target == g {
                            self.reaching = Some(g.domain_id);
                        }
                        true
                    }
                    None => false,
                },
                _ => false,
            };
        }
        let skip = self.skipping;
        if step.ends_group {
            if let Some(domain) = self.reaching.take() {
                self.pending.remove(domain);
            }
            self.skipping = false;
        }
        Ok(skip)
    }
}

/// Skips the transactions a MySQL GTID-mode replica already has (anonymous ones never), and
/// remembers where the last skipped one ended.
struct MysqlGroupFilter {
    exclude: MysqlGtidSet,
    tracker: TransactionTracker,
    skipping: bool,
    /// End position of the last skipped event not yet told to the replica.
    skipped_to: Option<u64>,
}

impl MysqlGroupFilter {
    fn new(exclude: MysqlGtidSet, checksum_len: usize) -> MysqlGroupFilter {
        MysqlGroupFilter {
            exclude,
            tracker: TransactionTracker::new(checksum_len),
            skipping: false,
            skipped_to: None,
        }
    }

    fn new_file(&mut self, fde: &[u8]) {
        self.tracker = TransactionTracker::new(event::checksum_len_of_fde(fde));
        self.skipping = false;
    }

    /// Whether to skip this event, which ends at `end_pos` (an error: the event cannot be
    /// followed).
    fn skip(&mut self, ev: &[u8], end_pos: u64) -> Result<bool, String> {
        let step = self.tracker.feed(ev).map_err(|e| e.to_string())?;
        if step.starts_group {
            self.skipping = match &step.gtid {
                Some(Gtid::Mysql { uuid, tag, gno }) => {
                    self.exclude.contains_gtid(uuid, tag.as_deref(), *gno)
                }
                _ => false,
            };
        }
        let skip = self.skipping;
        if skip {
            self.skipped_to = Some(end_pos);
        }
        if step.ends_group {
            self.skipping = false;
        }
        Ok(skip)
    }

    /// The end of the skipped events not yet told to the replica, once.
    fn take_skipped(&mut self) -> Option<u64> {
        self.skipped_to.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testdata::{dump_stream, file_events, index_of, ingest};

    fn index_for(names: &[&str], limit: usize) -> BinlogIndex {
        index_of(&ingest(&dump_stream(names), limit))
    }

    fn gtid(text: &str) -> MariaGtid {
        MariaGtid::parse(text).unwrap()
    }

    fn file_pos(index: &BinlogIndex, file: &str, pos: u64) -> Result<Start, String> {
        resolve(
            index,
            &DumpStart::FilePos {
                file: file.into(),
                pos,
            },
        )
    }

    fn by_gtid(index: &BinlogIndex, state: &str) -> Result<Start, String> {
        resolve(index, &DumpStart::MariaGtid(state.into()))
    }

    #[test]
    fn file_and_position() {
        let index = index_for(&["bin.000001", "bin.000002"], 200);
        let events = file_events("bin.000001");
        // Start of the file: the FDE is the first event read, no copy.
        for (name, pos) in [("bin.000001", 4), ("bin.000001", 0), ("", 4)] {
            let s = file_pos(&index, name, pos).unwrap();
            assert_eq!(s.file, "bin.000001");
            assert_eq!(s.loc, index.first_loc().unwrap());
            assert!(s.fde_copy.is_none() && s.state.is_none());
        }
        // Every event boundary: the location of that event, with the FDE copy.
        for (pos, _) in &events[1..] {
            let s = file_pos(&index, "bin.000001", *pos).unwrap();
            let e = index.entry_at(0, *pos).unwrap();
            assert_eq!(
                s.loc,
                Loc {
                    entry: e.index,
                    offset: (pos - e.start_pos) as usize,
                    file: 0,
                    pos: *pos,
                }
            );
            assert_eq!(s.fde_copy.as_deref(), Some(&events[0].1[..]));
        }
        // End of the first file: the next file's FileStart is read next.
        let s = file_pos(&index, "bin.000001", 4587).unwrap();
        assert_eq!(s.loc.pos, 4587);
        assert_eq!(s.loc.entry, index.files()[1].file_start_entry);
        // Second file.
        let s = file_pos(&index, "bin.000002", 4).unwrap();
        assert_eq!(
            (s.file.as_str(), s.loc.file, s.loc.pos),
            ("bin.000002", 1, 4)
        );
        assert_eq!(s.loc.entry, index.files()[1].file_start_entry + 1);
        // End of the last file: after the last entry.
        let s = file_pos(&index, "bin.000002", 1160).unwrap();
        assert_eq!(s.loc.entry, index.last_index() + 1);
    }

    #[test]
    fn file_and_position_refusals() {
        let index = index_for(&["bin.000001"], 200);
        let err = file_pos(&index, "bin.000009", 4).err().unwrap();
        assert!(err.contains("Could not find first log file"), "{err}");
        assert!(err.contains("bin.000009"), "{err}");
        let err = file_pos(&index, "bin.000001", 4588).err().unwrap();
        assert!(
            err.contains("position 4588 of bin.000001 is not stored"),
            "{err}"
        );
        let err = file_pos(&BinlogIndex::new(), "bin.000001", 4)
            .err()
            .unwrap();
        assert!(err.contains("not stored any binlog"), "{err}");
        // A store that begins mid-file refuses positions before its start.
        let events = file_events("bin.000001");
        let pos = events[10].0;
        let mut stream = vec![
            event::build_rotate("bin.000001", pos, 1, true, true),
            event::with_log_pos_zeroed_fde(&events[0].1, true),
        ];
        stream.extend(events[10..].iter().map(|(_, e)| e.clone()));
        let index = index_of(&ingest(&stream, 200));
        let err = file_pos(&index, "bin.000001", 4).err().unwrap();
        assert!(err.contains(&format!("from {pos} to 4587")), "{err}");
        let s = file_pos(&index, "bin.000001", pos).unwrap();
        assert_eq!(s.loc, index.first_loc().unwrap());
        assert!(s.fde_copy.is_some());
    }

    #[test]
    fn gtid_state() {
        for limit in [200, 30] {
            let index = index_for(&["bin.000001", "bin.000002"], limit);
            // Both domains covered: right after the earlier of the two groups.
            let a = index.maria_group(&gtid("0-1-7")).unwrap().end;
            let b = index.maria_group(&gtid("2-1-1")).unwrap().end;
            let s = by_gtid(&index, "0-1-7,2-1-1").unwrap();
            assert_eq!(s.loc, if a.pos < b.pos { a } else { b });
            assert_eq!(s.file, "bin.000001");
            assert_eq!(s.state, Some(MariaGtidList::parse("0-1-7,2-1-1").unwrap()));
            assert!(s.fde_copy.is_some());
            // Domain 2 ends in the first file, so the dump starts there (and skips).
            let s = by_gtid(&index, "0-1-16,2-1-2").unwrap();
            let b = index.maria_group(&gtid("2-1-2")).unwrap().end;
            assert_eq!(s.loc, b);
            assert_eq!((s.file.as_str(), s.loc.file), ("bin.000001", 0));
            // A domain the replica lacks is sent from the start.
            let s = by_gtid(&index, "0-1-7").unwrap();
            assert_eq!(s.loc, index.first_loc().unwrap());
            assert!(s.fde_copy.is_none());
            // Empty state: everything.
            let s = by_gtid(&index, "").unwrap();
            assert_eq!(s.loc, index.first_loc().unwrap());
            assert_eq!(s.state, Some(MariaGtidList::new()));
            // Caught up: from the earliest domain's last group, the filter skips the rest.
            let s = by_gtid(&index, "0-1-18,2-1-2").unwrap();
            assert_eq!(s.loc, index.maria_group(&gtid("2-1-2")).unwrap().end);
            assert_eq!(s.loc.pos, 3206);
        }
    }

    #[test]
    fn gtid_refusals() {
        let index = index_for(&["bin.000001"], 200);
        let err = by_gtid(&index, "0-1-99,2-1-2").err().unwrap();
        assert!(err.contains("0-1-99"), "{err}");
        assert!(err.contains("not in the master's binlog"), "{err}");
        let err = by_gtid(&index, "0-5-7,2-1-2").err().unwrap();
        assert!(err.contains("not in the master's binlog"), "{err}");
        let err = by_gtid(&index, "0-1-x").err().unwrap();
        assert!(err.contains("malformed GTID state"), "{err}");
        // A store that begins at bin.000002 (0-1-16..18).
        let index = index_for(&["bin.000002"], 200);
        let err = by_gtid(&index, "0-1-3,2-1-2").err().unwrap();
        assert!(err.contains("purged"), "{err}");
        // Exactly where the store begins (its first GTID_LIST): served from the start.
        let s = by_gtid(&index, "0-1-15,2-1-2").unwrap();
        assert_eq!(s.loc, index.first_loc().unwrap());
        let s = by_gtid(&index, "0-1-17,2-1-2").unwrap();
        assert_eq!(
            s.loc,
            index.first_loc().unwrap(),
            "2-1-2 is where the store begins"
        );
        let s = by_gtid(&index, "0-1-17").unwrap();
        assert_eq!(s.loc, index.maria_group(&gtid("0-1-17")).unwrap().end);
        assert_eq!((s.file.as_str(), s.loc.file), ("bin.000002", 0));
    }

    #[test]
    fn purged_files_and_gtids_are_refused_as_purged() {
        for limit in [200, 30] {
            let mut index = index_for(&["bin.000001", "bin.000002", "bin.000003"], limit);
            index.purge_to("bin.000002").unwrap();
            for pos in [4, 1000] {
                let err = file_pos(&index, "bin.000001", pos).err().unwrap();
                assert!(err.contains("Could not find first log file"), "{err}");
                assert!(err.contains("bin.000001 has been purged"), "{err}");
                assert!(err.contains("bin.000002"), "{err}");
            }
            // A file of another series, or after the stored ones, is not "purged".
            let err = file_pos(&index, "other.000001", 4).err().unwrap();
            assert!(err.contains("is not stored"), "{err}");
            let err = file_pos(&index, "bin.000009", 4).err().unwrap();
            assert!(err.contains("is not stored"), "{err}");
            let s = file_pos(&index, "bin.000002", 4).unwrap();
            assert_eq!((s.loc.file, s.loc.pos), (0, 4));
            assert_eq!(s.loc, index.first_loc().unwrap());
            // GTIDs in the purged file.
            for state in ["0-1-3,2-1-2", "0-1-15,2-1-1", "0-1-3"] {
                let err = by_gtid(&index, state).err().unwrap();
                assert!(err.contains("purged"), "{state}: {err}");
                assert!(err.contains("bin.000002"), "{state}: {err}");
            }
            // Exactly where the store now begins: served from its start.
            let s = by_gtid(&index, "0-1-15,2-1-2").unwrap();
            assert_eq!(s.loc, index.first_loc().unwrap());
            // After it: right after that group.
            let s = by_gtid(&index, "0-1-17,2-1-2").unwrap();
            assert_eq!(s.file, "bin.000002");
            // A domain with nothing stored any more is not asked for (as a store that
            // began after it: see gtid_refusals).
            let s = by_gtid(&index, "0-1-16").unwrap();
            assert_eq!(s.loc, index.maria_group(&gtid("0-1-16")).unwrap().end);
        }
    }

    #[test]
    fn group_filter_skips_exactly_the_groups_the_replica_has() {
        let state = MariaGtidList::parse("0-1-7,2-1-1").unwrap();
        let mut filter = GroupFilter::new(state.clone());
        let mut tracker = TransactionTracker::new(4);
        let mut current: Option<MariaGtid> = None;
        let mut skipped_groups = std::collections::BTreeSet::new();
        let mut skipped_events = 0;
        for name in ["bin.000001", "bin.000002"] {
            let events = file_events(name);
            filter.new_file(&events[0].1);
            for (_, ev) in &events {
                let step = tracker.feed(ev).unwrap();
                if step.starts_group {
                    current = match step.gtid {
                        Some(Gtid::Maria(g)) => Some(g),
                        _ => None,
                    };
                }
                let want = current.is_some_and(|g| state.contains(&g));
                assert_eq!(filter.skip(ev), Ok(want), "{name}: {current:?}");
                if want {
                    skipped_events += 1;
                    skipped_groups.insert(current.unwrap());
                }
                if step.ends_group {
                    current = None;
                }
            }
        }
        let want: std::collections::BTreeSet<MariaGtid> = (1..=7)
            .map(|s| gtid(&format!("0-1-{s}")))
            .chain([gtid("2-1-1")])
            .collect();
        assert_eq!(skipped_groups, want);
        assert!(skipped_events > want.len() * 2);
    }
}

#[cfg(test)]
mod boundary_tests {
    use super::*;
    use crate::store::testdata::{dump_stream, file_events, ingest};

    /// A store in a temp dir holding the entries of `names` cut at `limit` bytes.
    fn store_for(names: &[&str], limit: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        store.append(ingest(&dump_stream(names), limit)).unwrap();
        (dir, store)
    }

    fn check(store: &Store, pos: u64) -> Result<(), String> {
        let start = {
            let index = store.index();
            resolve(
                &index,
                &DumpStart::FilePos {
                    file: "bin.000001".into(),
                    pos,
                },
            )?
        };
        check_event_boundary(store, &start).unwrap()
    }

    #[test]
    fn every_event_start_is_a_boundary_and_nothing_else_is() {
        for limit in [60, 200, 4096] {
            let (_dir, store) = store_for(&["bin.000001"], limit);
            let events = file_events("bin.000001");
            let starts: Vec<u64> = events.iter().map(|(p, _)| *p).collect();
            let end = events.last().map(|(p, e)| p + e.len() as u64).unwrap();
            for pos in 4..end {
                let result = check(&store, pos);
                if starts.contains(&pos) {
                    assert_eq!(result, Ok(()), "limit {limit}, event start {pos}");
                } else {
                    let err = result.expect_err(&format!("limit {limit}, inside at {pos}"));
                    assert!(err.contains("not the start of an event"), "{err}");
                }
            }
            assert_eq!(check(&store, end), Ok(()), "end of the file");
        }
    }
}

#[cfg(test)]
mod mysql_tests {
    use super::*;
    use crate::binlog::event::{EventHeader, MysqlGtidEvent};
    use crate::store::index::mysql_testdata::*;
    use crate::store::testdata::{index_of, ingest};

    fn uuid_text() -> String {
        format_uuid(&kingbus_uuid())
    }

    fn set(text: &str) -> MysqlGtidSet {
        MysqlGtidSet::parse(text).unwrap()
    }

    /// `uuid:1-n` of the kingbus chain.
    fn upto(n: u64) -> MysqlGtidSet {
        set(&format!("{}:1-{n}", uuid_text()))
    }

    fn chain_index(limit: usize) -> BinlogIndex {
        index_of(&ingest(&kingbus_stream(&KINGBUS), limit))
    }

    fn by_set(index: &BinlogIndex, replica: &MysqlGtidSet) -> Result<Start, String> {
        resolve(
            index,
            &DumpStart::MysqlGtid {
                sid_data: replica.encode(),
                file: String::new(),
                pos: 4,
            },
        )
    }

    #[test]
    fn a_store_that_began_mid_file_refuses_gtid_auto_positioning() {
        // A syncer started at a file position inside .000011: the store has no
        // PREVIOUS_GTIDS, so nobody knows what came before its first transaction.
        let name = KINGBUS[0];
        let events = kingbus_events(name);
        let (start, _) = events
            .iter()
            .filter(|(_, ev)| ev[4] == crate::binlog::event::GTID_LOG_EVENT)
            .nth(3)
            .cloned()
            .unwrap();
        let mut stream = vec![
            crate::binlog::event::build_rotate(name, start, 1, true, true),
            crate::binlog::event::with_log_pos_zeroed_fde(&events[0].1, true),
        ];
        stream.extend(
            events
                .iter()
                .filter(|(pos, _)| *pos >= start)
                .map(|(_, ev)| ev.clone()),
        );
        let index = index_of(&ingest(&stream, 4096));
        assert!(!index.mysql_start_known());
        for replica in [MysqlGtidSet::new(), upto(11795)] {
            let err = by_set(&index, &replica).unwrap_err();
            assert!(
                err.contains("begins inside")
                    && err.contains(name)
                    && err.contains("file and position"),
                "{err}"
            );
        }
        // By file and position it is served.
        assert!(resolve(
            &index,
            &DumpStart::FilePos {
                file: name.into(),
                pos: start
            }
        )
        .is_ok());
        // A store that holds the file whole knows where it begins.
        assert!(chain_index(4096).mysql_start_known());
    }

    #[test]
    fn the_start_is_the_newest_file_whose_previous_gtids_the_replica_has() {
        for limit in [crate::limits::ENTRY_PAYLOAD_MAX, 300, 40] {
            let index = chain_index(limit);
            // (replica set, start file, FDE cleared because the file's first trx is skipped)
            let cases = [
                (upto(11789), 0, false),
                (upto(11795), 0, true),
                (upto(11800), 1, false),
                (upto(11805), 1, true),
                (upto(11810), 2, false),
                (upto(11820), 2, true),
            ];
            for (replica, file, clear) in cases {
                let s = by_set(&index, &replica).unwrap_or_else(|e| panic!("{replica}: {e}"));
                assert_eq!(s.file, KINGBUS[file], "{replica}");
                assert_eq!((s.loc.file, s.loc.pos), (file, 4), "{replica}");
                assert_eq!(s.clear_first_fde, clear, "{replica}");
                assert!(s.fde_copy.is_none() && s.mysql);
                assert_eq!(s.exclude.as_ref(), Some(&replica));
            }
            // A replica with gaps: the newest file whose set it holds whole.
            let gappy = upto(11805).subtract(&set(&format!("{}:11795", uuid_text())));
            let s = by_set(&index, &gappy).unwrap();
            assert_eq!(s.file, KINGBUS[0]);
            // A named file is served from there, still skipping what the replica has.
            let s = resolve(
                &index,
                &DumpStart::MysqlGtid {
                    sid_data: upto(11805).encode(),
                    file: "mysql_bin.000013\0".into(),
                    pos: 4,
                },
            )
            .unwrap();
            assert_eq!((s.file.as_str(), s.loc.file), ("mysql_bin.000013", 2));
            assert!(s.exclude.is_some());
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        let index = chain_index(300);
        let u = uuid_text();
        // The replica is ahead of the store.
        let err = by_set(&index, &upto(11825)).unwrap_err();
        assert!(
            err.contains("Slave has more GTIDs than the master has"),
            "{err}"
        );
        assert!(err.contains(&format!("{u}:11821-11825")), "{err}");
        // A server UUID the store never saw, named.
        let stranger = "0e2bcd7a-1111-2222-3333-444455556666";
        let err = by_set(&index, &upto(11805).union(&set(&format!("{stranger}:1-3")))).unwrap_err();
        assert!(err.contains(&format!("server UUID {stranger}")), "{err}");
        assert!(!err.contains(&format!("UUID {u}")), "{err}");
        // A tag the store never had is missing GTIDs of a known UUID.
        let err = by_set(&index, &upto(11805).union(&set(&format!("{u}:blue:1")))).unwrap_err();
        assert!(err.contains(&format!("{u}:blue:1")), "{err}");
        // Purged: the store begins after GTIDs the replica lacks.
        let err = by_set(&index, &upto(11000)).unwrap_err();
        assert!(err.contains("purged binary logs containing GTIDs"), "{err}");
        assert!(err.contains(&format!("{u}:11001-11789")), "{err}");
        assert!(err.contains("mysql_bin.000011"), "{err}");
        let err = by_set(&index, &MysqlGtidSet::new()).unwrap_err();
        assert!(err.contains(&format!("lacks '{u}:1-11789'")), "{err}");
        // After a purge, what was in the dropped file is purged too.
        let mut purged = chain_index(300);
        purged.purge_to("mysql_bin.000012").unwrap();
        let err = by_set(&purged, &upto(11795)).unwrap_err();
        assert!(err.contains(&format!("{u}:11796-11800")), "{err}");
        assert!(err.contains("mysql_bin.000012"), "{err}");
        let s = by_set(&purged, &upto(11800)).unwrap();
        assert_eq!((s.file.as_str(), s.loc.file), ("mysql_bin.000012", 0));
        // Bytes that are not a GTID set.
        let err = resolve(
            &index,
            &DumpStart::MysqlGtid {
                sid_data: vec![1, 2, 3],
                file: String::new(),
                pos: 4,
            },
        )
        .err()
        .unwrap();
        assert!(err.contains("malformed GTID set"), "{err}");
        // MariaDB data cannot be served by MySQL GTID.
        let maria = index_of(&ingest(
            &crate::store::testdata::dump_stream(&["bin.000001"]),
            300,
        ));
        let err = by_set(&maria, &MysqlGtidSet::new()).unwrap_err();
        assert!(err.contains("MariaDB"), "{err}");
        assert!(!is_ahead(
            &maria,
            &DumpStart::MysqlGtid {
                sid_data: upto(5).encode(),
                file: String::new(),
                pos: 4
            }
        ));
        assert!(is_ahead(
            &index,
            &DumpStart::MysqlGtid {
                sid_data: upto(11825).encode(),
                file: String::new(),
                pos: 4
            }
        ));
        // MySQL data without GTIDs (gtid_mode OFF).
        let anonymous = synth_file(
            &MysqlGtidSet::new(),
            &[([0; 16], None, 0), ([0; 16], None, 0)],
            None,
        );
        let off = index_of(&ingest(&stream_of(&[("a.000001".into(), anonymous)]), 300));
        let err = by_set(&off, &MysqlGtidSet::new()).unwrap_err();
        assert!(err.contains("GTID_MODE <> ON"), "{err}");
    }

    /// Captures what a dump writes; reads see the end of input.
    #[derive(Default)]
    struct Sink(Vec<u8>);

    impl Read for Sink {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Ok(0)
        }
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What a non-blocking dump sent: each packet's payload.
    fn dump(store: &Store, start: DumpStart, heartbeat_v2: bool) -> Vec<Vec<u8>> {
        let opts = DumpOptions {
            start,
            non_blocking: true,
            send_annotate_rows: false,
            heartbeat_period: Duration::from_secs(60),
            artificial_crc: true,
            server_id: 9,
            heartbeat_v2,
        };
        let mut conn = PacketConn::new(Sink::default(), 1 << 24);
        let progress = DumpProgress::default();
        let _ = run(&mut conn, store, &opts, &progress, &AtomicBool::new(false));
        let out = conn.into_inner().0;
        let mut packets = Vec::new();
        let mut at = 0;
        while at + 4 <= out.len() {
            let len = u32::from_le_bytes([out[at], out[at + 1], out[at + 2], 0]) as usize;
            packets.push(out[at + 4..at + 4 + len].to_vec());
            at += 4 + len;
        }
        packets
    }

    fn store_of(stream: &[Vec<u8>], limit: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        store.append(ingest(stream, limit)).unwrap();
        (dir, store)
    }

    fn gtid_dump(store: &Store, replica: &MysqlGtidSet) -> Vec<Vec<u8>> {
        dump(
            store,
            DumpStart::MysqlGtid {
                sid_data: replica.encode(),
                file: String::new(),
                pos: 4,
            },
            false,
        )
    }

    /// The GTIDs of the transactions in a dump's events, in order.
    fn gnos_of(events: &[&[u8]]) -> Vec<(Option<String>, i64)> {
        events
            .iter()
            .filter(|e| matches!(e[4], event::GTID_LOG_EVENT | event::GTID_TAGGED_LOG_EVENT))
            .map(|e| {
                let g = MysqlGtidEvent::parse(e, 4).unwrap();
                (g.tag, g.gno)
            })
            .collect()
    }

    #[test]
    fn a_gtid_dump_from_the_middle_of_the_chain_sends_exactly_the_rest() {
        for limit in [crate::limits::ENTRY_PAYLOAD_MAX, 200] {
            let (_dir, store) = store_of(&kingbus_stream(&KINGBUS), limit);
            let packets = gtid_dump(&store, &upto(11805));
            assert_eq!(packets.last().unwrap()[0], 0xfe, "ends with EOF");
            let events: Vec<&[u8]> = packets[..packets.len() - 1]
                .iter()
                .map(|p| {
                    assert_eq!(p[0], 0, "an event packet");
                    &p[1..]
                })
                .collect();
            for ev in &events {
                assert!(event::verify_checksum(ev), "CRC32 of type {}", ev[4]);
            }
            // Exactly the transactions after the replica's set, across the ROTATE.
            let want: Vec<(Option<String>, i64)> = (11806..=11820).map(|g| (None, g)).collect();
            assert_eq!(gnos_of(&events), want);
            // Preamble: artificial ROTATE to the start file, then its FDE with log_pos and
            // created zeroed (its first transaction is skipped) and a valid CRC32.
            let rotate = event::Rotate::parse(events[0], 4).unwrap();
            assert_eq!(
                (rotate.next_file.as_str(), rotate.position),
                (KINGBUS[1], 4)
            );
            let h = EventHeader::parse(events[0]).unwrap();
            assert_eq!((h.timestamp, h.log_pos, h.flags), (0, 0, 0x20));
            assert_eq!(events[1][4], event::FORMAT_DESCRIPTION_EVENT);
            assert_eq!(EventHeader::parse(events[1]).unwrap().log_pos, 0);
            assert_eq!(events[1][17] & 1, 0, "IN_USE cleared");
            let stored_fde = &kingbus_events(KINGBUS[1])[0].1;
            assert_eq!(
                events[1],
                &event::with_log_pos_zeroed_fde(stored_fde, true)[..]
            );
            assert_eq!(events[2][4], event::PREVIOUS_GTIDS_LOG_EVENT);
            // A heartbeat tells where the skipped transactions end, right before the first
            // transaction sent.
            let first_sent = events
                .iter()
                .position(|e| e[4] == event::GTID_LOG_EVENT)
                .unwrap();
            let hb = events[first_sent - 1];
            assert_eq!(hb[4], event::HEARTBEAT_LOG_EVENT);
            let (_, start_11806) = kingbus_gtids(KINGBUS[1])[5];
            let hb = event::Heartbeat::parse(hb, 4).unwrap();
            assert_eq!(
                (hb.log_file.as_str(), u64::from(hb.log_pos)),
                (KINGBUS[1], start_11806)
            );
            // The next file comes whole, with its FDE as stored (IN_USE clear).
            let rotates: Vec<usize> = events
                .iter()
                .enumerate()
                .filter(|(_, e)| e[4] == event::ROTATE_EVENT)
                .map(|(i, _)| i)
                .collect();
            assert_eq!(rotates.len(), 3, "artificial, real, artificial");
            let next_fde = events[rotates[2] + 1];
            // (The fixture's FDE has LOG_EVENT_BINLOG_IN_USE_F set: the file was copied
            // while open.)
            let stored = &kingbus_events(KINGBUS[2])[0].1;
            assert_eq!(stored[17] & 1, 1);
            assert_eq!(next_fde, &mysql_fde(stored, false)[..]);
            assert_eq!(next_fde[17] & 1, 0);
            assert_eq!(next_fde[..17], stored[..17]);
            assert_eq!(next_fde[18..], stored[18..]);
            assert!(event::verify_checksum(next_fde));
            // Every event of the chain after 11805 is sent unchanged.
            let sent: std::collections::BTreeSet<&[u8]> = events.iter().copied().collect();
            for (pos, ev) in kingbus_events(KINGBUS[2]).iter().skip(1) {
                assert!(sent.contains(&ev[..]), "mysql_bin.000013:{pos}");
            }
        }
    }

    #[test]
    fn caught_up_replicas_get_only_heartbeats_and_an_exact_start_gets_everything_after() {
        let (_dir, store) = store_of(&kingbus_stream(&KINGBUS), 300);
        let packets = gtid_dump(&store, &upto(11820));
        let events: Vec<&[u8]> = packets[..packets.len() - 1]
            .iter()
            .map(|p| &p[1..])
            .collect();
        assert!(gnos_of(&events).is_empty());
        let hb = events
            .iter()
            .rev()
            .find(|e| e[4] == event::HEARTBEAT_LOG_EVENT)
            .expect("a heartbeat after the skipped transactions");
        assert_eq!(
            u64::from(event::Heartbeat::parse(hb, 4).unwrap().log_pos),
            5984,
            "the end of the last file"
        );
        // Exactly the previous GTIDs of the last file: everything in it, FDE as stored.
        let packets = gtid_dump(&store, &upto(11810));
        let events: Vec<&[u8]> = packets[..packets.len() - 1]
            .iter()
            .map(|p| &p[1..])
            .collect();
        let want: Vec<(Option<String>, i64)> = (11811..=11820).map(|g| (None, g)).collect();
        assert_eq!(gnos_of(&events), want);
        assert_eq!(
            events[1],
            &mysql_fde(&kingbus_events(KINGBUS[2])[0].1, false)[..]
        );
        assert_eq!(EventHeader::parse(events[1]).unwrap().log_pos, 123);
        assert!(!events.iter().any(|e| e[4] == event::HEARTBEAT_LOG_EVENT));
        // A refusal is one ERR 1236 packet.
        let packets = gtid_dump(&store, &upto(100));
        assert_eq!(packets.len(), 1);
        assert_eq!(packets[0][0], 0xff);
        assert_eq!(u16::from_le_bytes([packets[0][1], packets[0][2]]), 1236);
    }

    #[test]
    fn a_file_and_position_dump_of_mysql_data() {
        let (_dir, store) = store_of(&kingbus_stream(&KINGBUS), 300);
        let (_, pos) = kingbus_gtids(KINGBUS[1])[3];
        let packets = dump(
            &store,
            DumpStart::FilePos {
                file: KINGBUS[1].into(),
                pos,
            },
            false,
        );
        let events: Vec<&[u8]> = packets[..packets.len() - 1]
            .iter()
            .map(|p| &p[1..])
            .collect();
        let rotate = event::Rotate::parse(events[0], 4).unwrap();
        assert_eq!(
            (rotate.next_file.as_str(), rotate.position),
            (KINGBUS[1], pos)
        );
        assert_eq!(events[1][4], event::FORMAT_DESCRIPTION_EVENT);
        assert_eq!(EventHeader::parse(events[1]).unwrap().log_pos, 0);
        assert!(event::verify_checksum(events[1]));
        let want: Vec<(Option<String>, i64)> = (11804..=11820).map(|g| (None, g)).collect();
        assert_eq!(gnos_of(&events), want);
        assert!(!events.iter().any(|e| e[4] == event::HEARTBEAT_LOG_EVENT));
    }

    #[test]
    fn tagged_gtids_and_transaction_payloads() {
        let u = kingbus_uuid();
        let other = [0x5a; 16];
        let first = synth_file(
            &MysqlGtidSet::new(),
            &[(u, None, 1), (other, Some("blue"), 1), (u, None, 2)],
            Some("t.000002"),
        );
        // The second file: a compressed transaction (GTID + TRANSACTION_PAYLOAD copied from
        // a MySQL 8.0.32 capture) between tagged ones.
        let compressed = crate::binlog::test_data::mysql_file("transaction_compression.000001");
        let payload = crate::binlog::test_data::events_of(&compressed)
            .into_iter()
            .find(|e| e[4] == event::TRANSACTION_PAYLOAD_EVENT)
            .unwrap()
            .to_vec();
        let mut previous = MysqlGtidSet::new();
        previous.add(u, None, 1).unwrap();
        previous.add(u, None, 2).unwrap();
        previous.add(other, Some("blue"), 1).unwrap();
        let mut second = file_head(&previous);
        second.push(gtid_event(other, Some("blue"), 2));
        second.extend(transaction_body());
        second.push(gtid_event(u, None, 3));
        second.push(payload.clone());
        second.push(gtid_event(other, Some("blue"), 3));
        second.extend(transaction_body());
        fix_positions(&mut second);
        let sent_payload = second
            .iter()
            .find(|e| e[4] == event::TRANSACTION_PAYLOAD_EVENT)
            .unwrap()
            .clone();
        let stream = stream_of(&[("t.000001".into(), first), ("t.000002".into(), second)]);
        for limit in [crate::limits::ENTRY_PAYLOAD_MAX, 100] {
            let (_dir, store) = store_of(&stream, limit);
            let u_text = format_uuid(&u);
            let o_text = format_uuid(&other);
            assert_eq!(
                store.index().mysql_executed(),
                &set(&format!("{u_text}:1-3,{o_text}:blue:1-3"))
            );
            // Has blue 1-2 and u 1: gets u 2 and 3 (the payload) and blue 3.
            let replica = set(&format!("{u_text}:1,{o_text}:blue:1-2"));
            let packets = gtid_dump(&store, &replica);
            let events: Vec<&[u8]> = packets[..packets.len() - 1]
                .iter()
                .map(|p| &p[1..])
                .collect();
            assert_eq!(
                gnos_of(&events),
                vec![(None, 2), (None, 3), (Some("blue".to_string()), 3)]
            );
            let got = events
                .iter()
                .find(|e| e[4] == event::TRANSACTION_PAYLOAD_EVENT)
                .expect("the compressed transaction is sent");
            assert_eq!(got, &&sent_payload[..], "untouched");
            // Has the compressed one: it is skipped whole.
            let replica = set(&format!("{u_text}:1-3,{o_text}:blue:1"));
            let packets = gtid_dump(&store, &replica);
            let events: Vec<&[u8]> = packets[..packets.len() - 1]
                .iter()
                .map(|p| &p[1..])
                .collect();
            assert_eq!(
                gnos_of(&events),
                vec![(Some("blue".to_string()), 2), (Some("blue".to_string()), 3)]
            );
            assert!(!events
                .iter()
                .any(|e| e[4] == event::TRANSACTION_PAYLOAD_EVENT));
        }
    }

    #[test]
    fn heartbeat_v2_layout() {
        let hb = build_heartbeat_v2("binlog.000041", 1_234_567, 9, true);
        assert_eq!(hb[4], event::HEARTBEAT_LOG_EVENT_V2);
        assert!(event::verify_checksum(&hb));
        let body = &hb[19..hb.len() - 4];
        let mut want = vec![1, 13];
        want.extend_from_slice(b"binlog.000041");
        // 1234567 as a length-encoded integer: 0xfd + 3 bytes; then the end mark.
        want.extend_from_slice(&[2, 4, 0xfd, 0x87, 0xd6, 0x12, 0]);
        assert_eq!(body, &want[..]);
        let h = EventHeader::parse(&hb).unwrap();
        assert_eq!((h.timestamp, h.log_pos, h.server_id), (0, 1_234_567, 9));
        // Past 4 GiB the header holds the 32-bit cap, the body the real position.
        let hb = build_heartbeat_v2("b.1", 1 << 33, 9, false);
        assert_eq!(EventHeader::parse(&hb).unwrap().log_pos, u32::MAX);
        assert_eq!(&hb[19 + 5..], &[2, 9, 0xfe, 0, 0, 0, 0, 2, 0, 0, 0, 0][..]);
        // A dump asked for v2 gets v2 heartbeats after skipped transactions.
        let (_dir, store) = store_of(&kingbus_stream(&KINGBUS), 300);
        let packets = dump(
            &store,
            DumpStart::MysqlGtid {
                sid_data: upto(11805).encode(),
                file: String::new(),
                pos: 4,
            },
            true,
        );
        let types: Vec<u8> = packets.iter().filter(|p| p[0] == 0).map(|p| p[5]).collect();
        assert!(types.contains(&event::HEARTBEAT_LOG_EVENT_V2));
        assert!(!types.contains(&event::HEARTBEAT_LOG_EVENT));
    }
}
