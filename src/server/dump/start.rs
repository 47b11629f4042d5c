//! Where a dump starts: a file and position, a MariaDB GTID state or a MySQL GTID set
//! resolved against the store's indexes, with the refusals (ERR 1236 texts) a master gives
//! for a start it cannot serve. Pure over the index, except the bounded wait for a start a
//! little ahead of what this node has applied.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::binlog::gtid::{format_uuid, MariaGtid, MariaGtidList, MysqlGtidSet};
use crate::binlog::Flavour;
use crate::store::cursor::{Cursor, Item};
use crate::store::index::{BinlogIndex, Loc};
use crate::store::{Store, StoreError};

use super::DumpStart;

/// A resolved start.
#[derive(Debug)]
pub(super) struct Start {
    pub(super) loc: Loc,
    pub(super) file: String,
    /// FDE to send as a copy (log_pos 0) when the dump does not start at the file's FDE.
    pub(super) fde_copy: Option<Vec<u8>>,
    /// GTID mode: the replica's state, sent as the fake GTID_LIST.
    pub(super) state: Option<MariaGtidList>,
    /// GTID mode: the state's GTIDs that come after the start location: in their domains,
    /// groups are skipped until that GTID has passed (what a MariaDB master does).
    pub(super) pending: MariaGtidList,
    /// The stored binlog is MySQL's: FDEs leave with LOG_EVENT_BINLOG_IN_USE_F cleared.
    pub(super) mysql: bool,
    /// MySQL GTID mode: the replica's gtid_executed; transactions in it are skipped.
    pub(super) exclude: Option<MysqlGtidSet>,
    /// MySQL GTID mode: the start file's first transaction is skipped, so its FDE leaves
    /// with log_pos and `created` zeroed (the replica must not drop its temporary tables).
    pub(super) clear_first_fde: bool,
}

impl Start {
    /// A start at `loc` in `file` sending the file's FDE as it is, skipping nothing (the
    /// other fields are set where they apply; `mysql` by [`resolve`]).
    fn new(loc: Loc, file: String) -> Start {
        Start {
            loc,
            file,
            fde_copy: None,
            state: None,
            pending: MariaGtidList::new(),
            mysql: false,
            exclude: None,
            clear_first_fde: false,
        }
    }
}

/// Resolves the start; a start just ahead of what this node has applied (a replica that
/// moved here from a node further along, or a node still catching up after a restart) is
/// waited for, bounded, instead of refused at once: the replica would stop on ERR 1236.
pub(super) fn resolve_waiting(
    store: &Store,
    start: &DumpStart,
    stop: &AtomicBool,
) -> Result<Start, String> {
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
pub(super) fn is_ahead(index: &BinlogIndex, start: &DumpStart) -> bool {
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

pub(super) fn is_file_pos_ahead(index: &BinlogIndex, file: &str, pos: u64) -> bool {
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
pub(super) fn check_event_boundary(
    store: &Store,
    start: &Start,
) -> Result<Result<(), String>, StoreError> {
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
    // Only positions matter here: large events are skipped as pieces, never gathered.
    let mut cursor = Cursor::at(Loc {
        offset: first_offset,
        ..start.loc
    })
    .streaming(|_| true);
    let upto = store.whole_upto();
    let mut at = start.loc.pos - (start.loc.offset - first_offset) as u64;
    while at < start.loc.pos {
        match cursor.next(store, upto)? {
            Some(Item::Event { pos, bytes }) => at = pos + bytes.len() as u64,
            Some(Item::Head { pos, len, .. }) => at = pos + len as u64,
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
pub(super) fn resolve(index: &BinlogIndex, start: &DumpStart) -> Result<Start, String> {
    let mut resolved = match start {
        DumpStart::FilePos { file, pos } => resolve_file_pos(index, file, *pos),
        DumpStart::MariaGtid(state) => resolve_gtid(index, state),
        DumpStart::MysqlGtid {
            sid_data,
            file,
            pos,
        } => resolve_mysql_gtid(index, sid_data, file, *pos),
    }?;
    resolved.mysql = index.flavour() == Some(Flavour::MySql);
    Ok(resolved)
}

/// COM_BINLOG_DUMP_GTID: checks the replica's set against the stored one and finds where
/// to start (see the module doc).
pub(super) fn resolve_mysql_gtid(
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
    // The session took off the NUL some replicas end the file name with.
    let mut start = if file.is_empty() {
        start_by_gtid(index, &replica)?
    } else {
        // MySQL serves a named file and position even in GTID mode, still skipping what
        // the replica has.
        resolve_file_pos(index, file, pos)?
    };
    start.exclude = Some(replica);
    Ok(start)
}

/// MySQL's checks of a GTID dump: the replica has nothing the stored binlog lacks (a server
/// UUID it never saw, or later transactions of one it knows), and has every transaction
/// that was purged.
pub(super) fn check_replica_set(index: &BinlogIndex, replica: &MysqlGtidSet) -> Result<(), String> {
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
pub(super) fn start_by_gtid(index: &BinlogIndex, replica: &MysqlGtidSet) -> Result<Start, String> {
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
    let clear_first_fde = meta
        .first_mysql_gtid
        .as_ref()
        .is_some_and(|(tsid, gno)| replica.contains_gtid(&tsid.uuid, tsid.tag.as_deref(), *gno));
    Ok(Start {
        fde_copy: (meta.start_pos != 4).then(|| meta.fde.clone()),
        clear_first_fde,
        ..Start::new(loc, meta.name.clone())
    })
}

pub(super) fn resolve_file_pos(index: &BinlogIndex, name: &str, pos: u64) -> Result<Start, String> {
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
        fde_copy,
        ..Start::new(loc, name.to_string())
    })
}

/// The location of `pos` in `file`, which must be an event boundary.
pub(super) fn locate(index: &BinlogIndex, file: usize, pos: u64) -> Result<Loc, String> {
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

pub(super) fn resolve_gtid(index: &BinlogIndex, state_text: &str) -> Result<Start, String> {
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
        if is_unknown_domain(index, gtid.domain_id) {
            // As MariaDB does: a domain the master has nothing of is probably another
            // master's (multi-source, an earlier topology); the other domains are served,
            // and this one's groups, should any come, are skipped up to the GTID.
            continue;
        }
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
        fde_copy: (loc.pos != 4 || meta.start_pos != 4).then(|| meta.fde.clone()),
        state: Some(state),
        pending,
        ..Start::new(loc, meta.name.clone())
    })
}

/// Whether `name` comes before the first stored file of its series: a file that was purged
/// (or that the store never held because it began later; to a replica, the same).
pub(super) fn is_purged_file(index: &BinlogIndex, name: &str) -> bool {
    index.files().first().is_some_and(|first| {
        crate::consensus::state::binlog_file_order(name, &first.name)
            == Some(std::cmp::Ordering::Less)
    })
}

/// The first stored file's name, for messages.
pub(super) fn first_file(index: &BinlogIndex) -> &str {
    index.files().first().map_or("(none)", |f| f.name.as_str())
}

/// Whether the store has nothing of `domain`: no transaction, no purged one, and no
/// position in the state it began at.
fn is_unknown_domain(index: &BinlogIndex, domain: u32) -> bool {
    index.maria_first_seq(domain).is_none()
        && index.purged_gtids().get(domain).is_none()
        && index
            .maria_start_state()
            .is_none_or(|s| s.get(domain).is_none())
}

pub(super) fn missing_gtid_message(index: &BinlogIndex, gtid: &MariaGtid) -> String {
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
pub(super) fn check_whole_history(index: &BinlogIndex, domain: u32) -> Result<(), String> {
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
pub(super) fn is_before(a: Loc, b: Loc) -> bool {
    (a.entry, a.offset) < (b.entry, b.offset)
}

pub(super) fn earlier(a: Loc, b: Loc) -> Loc {
    if (b.entry, b.offset) < (a.entry, a.offset) {
        b
    } else {
        a
    }
}
