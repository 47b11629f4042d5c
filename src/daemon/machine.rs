//! The node's replicated state machine: what the raft thread applies committed entries to.
//! Binlog entries go to the store's indexes (and wake dump threads); commands change the
//! replicated cluster state (desired syncer, members, purge point). Snapshots carry both.
//!
//! It runs on the raft thread: it must not call the raft handle and must return promptly.
//! Others read the cluster state through [`ClusterShared`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use crate::consensus::node::{Applied, StateMachine};
use crate::consensus::state::{ClusterState, Command, Effect, MemberInfo, COMMAND_KIND};
use crate::store::index::Origin;
use crate::store::Store;

/// Magic of the first snapshot format (cluster state and end base only); still read.
const SNAPSHOT_MAGIC_V1: &[u8; 4] = b"FBSN";
/// Magic of the snapshot data this machine writes: the v1 parts, then the store's origin.
const SNAPSHOT_MAGIC: &[u8; 4] = b"FBS2";

/// The replicated cluster state and who waits on its changes.
pub struct ClusterShared {
    state: RwLock<ClusterState>,
    /// Bumped whenever a command changed the state (the syncer's desire, members).
    generation: Mutex<u64>,
    changed: Condvar,
    /// Term of the last applied entry: a new leader is ready once an entry of its own
    /// term is applied (everything committed before it is then applied too).
    pub last_applied_term: AtomicU64,
    pub last_applied_index: AtomicU64,
}

impl ClusterShared {
    pub fn new() -> ClusterShared {
        ClusterShared {
            state: RwLock::new(ClusterState::new()),
            generation: Mutex::new(0),
            changed: Condvar::new(),
            last_applied_term: AtomicU64::new(0),
            last_applied_index: AtomicU64::new(0),
        }
    }

    pub fn state(&self) -> RwLockReadGuard<'_, ClusterState> {
        self.state.read().expect("cluster state lock")
    }

    pub fn generation(&self) -> u64 {
        *self.generation.lock().expect("generation lock")
    }

    /// Whether a node with this raft status is a ready leader: it leads, and has applied an
    /// entry of its own term, so everything committed before its election too.
    pub fn leads_ready(&self, status: &crate::consensus::node::RaftStatus) -> bool {
        status.is_leader() && self.last_applied_term.load(Ordering::SeqCst) == status.term
    }

    /// Whether a node with this raft status has caught up with its cluster: a leader is
    /// known, what this node knows committed is applied, and that includes an entry of the
    /// current term (every leader appends one when elected). The last part matters after a
    /// restart: the commit index on disk is stale, and a leader elected meanwhile first
    /// tells a follower a commit index of 0 (it does not know the follower's log yet), so
    /// "applied everything known committed" alone can hold with most of the log unapplied.
    pub fn caught_up(&self, status: &crate::consensus::node::RaftStatus) -> bool {
        status.leader_id != 0
            && status.applied >= status.commit
            && self.last_applied_term.load(Ordering::SeqCst) == status.term
    }

    /// Wakes watchers (a change they must look at).
    pub fn bump(&self) {
        let mut g = self.generation.lock().expect("generation lock");
        *g += 1;
        self.changed.notify_all();
    }

    /// Waits until the generation passes `seen` or `timeout` passes.
    pub fn wait_change(&self, seen: u64, timeout: Duration) -> u64 {
        let g = self.generation.lock().expect("generation lock");
        let (g, _) = self
            .changed
            .wait_timeout_while(g, timeout, |g| *g == seen)
            .expect("generation lock");
        *g
    }
}

impl Default for ClusterShared {
    fn default() -> Self {
        ClusterShared::new()
    }
}

/// The state machine the raft thread drives.
pub struct NodeMachine {
    pub store: Arc<Store>,
    pub cluster: Arc<ClusterShared>,
    /// Commands of the log found at start were (mostly) applied before the restart:
    /// applying them again is logged at debug level, and once as a summary ([`Replay`]).
    /// (A tail the log ended with that the new leader replaces is logged so too: the
    /// bound known at start is the log's end, not what was committed.)
    replay: Replay,
    /// The summary line, once logged.
    replay_report: Option<String>,
}

/// What a restart applies again, for its summary line.
#[derive(Default)]
struct Replay {
    /// The log's last index at start (0: nothing to replay, or reported already).
    through: u64,
    /// Commands applied again so far.
    commands: u64,
}

impl StateMachine for NodeMachine {
    fn apply(&mut self, entries: Vec<Applied>) {
        let batch: Vec<(u64, u8, &[u8])> = entries
            .iter()
            .map(|e| (e.index, e.kind, &e.data[..]))
            .collect();
        if let Err(e) = self.store.apply(&batch) {
            // A committed entry the store cannot index: every node would refuse it alike,
            // and serving past it is impossible. Stop rather than serve a broken stream.
            log::error!("cannot apply committed binlog entries: {e}; stopping");
            std::process::exit(1);
        }
        let mut commands = false;
        for e in entries.iter().filter(|e| e.kind == COMMAND_KIND) {
            commands = true;
            if self.replay.through > 0 && e.index > self.replay.through {
                // The first new command: the summary of what came before it goes first.
                self.report_replay();
            }
            let command = match Command::decode(&e.data) {
                Ok(c) => c,
                Err(err) => {
                    log::error!("entry {}: undecodable command: {err}", e.index);
                    continue;
                }
            };
            let replayed = e.index <= self.replay.through;
            let level = if replayed {
                self.replay.commands += 1;
                log::Level::Debug
            } else {
                log::Level::Info
            };
            let mut state = self.cluster.state.write().expect("cluster state lock");
            match state.apply(&command) {
                Ok(Effect::Unchanged) => {}
                Ok(effect) => {
                    log::log!(level, "entry {}: {}", e.index, describe(&effect));
                    if let Effect::Purged { to_file } = &effect {
                        self.purge(e.index, to_file, level);
                    }
                }
                // Refusals are deterministic: every node refuses the same command alike.
                Err(err) if replayed => log::debug!("entry {}: command refused: {err}", e.index),
                Err(err) => log::warn!("entry {}: command refused: {err}", e.index),
            }
        }
        if entries
            .last()
            .is_some_and(|e| self.replay.through > 0 && e.index >= self.replay.through)
        {
            self.report_replay();
        }
        let mut term_changed = false;
        if let Some(last) = entries.last() {
            self.cluster
                .last_applied_index
                .store(last.index, Ordering::SeqCst);
            let previous = self
                .cluster
                .last_applied_term
                .swap(last.term, Ordering::SeqCst);
            term_changed = previous != last.term;
        }
        // Watchers look at commands and at the applied term (a new leader is ready once an
        // entry of its term is applied). Binlog entries change neither: waking the watcher on
        // each of them costs every node a thread wake-up per transaction, on the cores the
        // dump threads need at that very moment.
        if commands || term_changed {
            self.cluster.bump();
        }
    }

    /// None while the store ends inside a transaction: the snapshot's base describes the
    /// stream where its whole content ends, and a node restored from it would get the rest
    /// of that transaction without its beginning. Transactions end (a syncer stores them
    /// whole, and a new leader abandons what a dead one left half-stored), so the snapshot
    /// only waits.
    fn snapshot_data(&mut self) -> Option<Vec<u8>> {
        let cluster = self.cluster.state().encode();
        let index = self.store.index();
        if index.has_partial_tail() {
            return None;
        }
        Some(encode_snapshot(
            &cluster,
            &index.base_entries(),
            index.origin(),
        ))
    }

    fn restore(&mut self, index: u64, term: u64, data: &[u8]) {
        if index >= self.replay.through {
            // The snapshot covers the whole log found at start: nothing is applied again.
            self.replay = Replay::default();
        }
        if data.is_empty() {
            // The bootstrap snapshot of a brand-new cluster: nothing to restore.
            return;
        }
        let Some(snapshot) = decode_snapshot(data) else {
            log::error!("snapshot at {index} is not ferrobus snapshot data; stopping");
            std::process::exit(1);
        };
        match ClusterState::decode(snapshot.cluster) {
            Ok(state) => *self.cluster.state.write().expect("cluster state lock") = state,
            Err(e) => {
                log::error!("snapshot at {index}: cluster state: {e}; stopping");
                std::process::exit(1);
            }
        }
        // A node restarting from its own snapshot still holds the binlog after the store's
        // origin in its log: index it all again. A node given the leader's snapshot holds
        // nothing before it: it continues from the snapshot's end base.
        let rebuilt = match &snapshot.origin {
            Some(origin) => self
                .store
                .rebuild_from_log(origin, index, term)
                .unwrap_or_else(|e| {
                    log::warn!("snapshot at {index}: cannot index the log again: {e}");
                    false
                }),
            None => false,
        };
        if rebuilt {
            log::info!(
                "snapshot at {index}: binlog indexed again from log entry {}",
                snapshot.origin.as_ref().map_or(0, |o| o.0 + 1)
            );
        } else if let Err(e) = self.store.restore_base(index, &snapshot.base) {
            log::error!("snapshot at {index}: binlog base: {e}; stopping");
            std::process::exit(1);
        }
        self.cluster
            .last_applied_index
            .store(index, Ordering::SeqCst);
        self.cluster.last_applied_term.store(term, Ordering::SeqCst);
        log::info!("restored the snapshot at index {index} (term {term})");
        self.cluster.bump();
    }

    fn on_recovered(&mut self, last_index: u64) {
        self.replay = Replay {
            through: last_index,
            commands: 0,
        };
    }

    fn on_conf_state(&mut self, _voters: &[u64], _learners: &[u64]) {
        // Ids become "used" when their SetMember command applies (and stay used after a
        // removal); the initial voters get theirs from the first leader's bootstrap. The
        // membership itself is read from the raft status; watchers only need waking.
        self.cluster.bump();
    }
}

impl NodeMachine {
    pub fn new(store: Arc<Store>, cluster: Arc<ClusterShared>) -> NodeMachine {
        NodeMachine {
            store,
            cluster,
            replay: Replay::default(),
            replay_report: None,
        }
    }

    /// Drops the binlog before `to_file` from the store's indexes (every node does, in log
    /// order); the log prefix it frees is compacted later by the retention thread, since
    /// this runs on the raft thread.
    fn purge(&self, at: u64, to_file: &str, level: log::Level) {
        match self.store.purge_to(to_file) {
            Some(p) => log::log!(
                level,
                "entry {at}: purged binlog files {} (the store now begins at {to_file}, \
                 purged GTID state {}); the log may be compacted to {}",
                p.files.join(", "),
                p.purged_gtids,
                p.compact_to
            ),
            None => log::log!(
                level,
                "entry {at}: purge to {to_file}: nothing stored before it here"
            ),
        }
    }

    /// One line once the log found at start is applied: how many commands it held, and
    /// the cluster state they left.
    fn report_replay(&mut self) {
        let state = self.cluster.state();
        let syncer = match state.syncer() {
            Some(args) => format!("desired for {}", args.mysql_addr),
            None => "not desired".to_string(),
        };
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        let members = state.members().count() as u64;
        let commands = self.replay.commands;
        let line = format!(
            "applied the log found at start, through entry {} ({commands} command{}; syncer \
             {syncer}, {members} member{})",
            self.replay.through,
            plural(commands),
            plural(members)
        );
        drop(state);
        log::info!("{line}");
        self.replay_report = Some(line);
        self.replay = Replay::default();
    }
}

fn describe(effect: &Effect) -> String {
    match effect {
        Effect::Syncer(Some(args)) => format!("syncer desired: {args:?}"),
        Effect::Syncer(None) => "syncer desired: stopped".into(),
        Effect::MemberAdded(m) => format!("member {} (id {:x}) added", m.name, m.id),
        Effect::MemberChanged { previous, current } => {
            format!(
                "member {} changed: {}",
                current.name,
                member_changes(previous, current)
            )
        }
        Effect::MemberRemoved(m) => format!("member {} removed", m.name),
        Effect::Purged { to_file } => format!("purge point moved to {to_file}"),
        Effect::Unchanged => "unchanged".into(),
    }
}

/// What differs between two versions of a member's entry, as `field old → new` items.
fn member_changes(previous: &MemberInfo, current: &MemberInfo) -> String {
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
    let mut changes = Vec::new();
    if previous.peer_url != current.peer_url {
        changes.push(format!(
            "peer address {} → {}",
            previous.peer_url, current.peer_url
        ));
    }
    if previous.admin_url != current.admin_url {
        changes.push(format!(
            "admin address {} → {}",
            show(&previous.admin_url),
            show(&current.admin_url)
        ));
    }
    if previous.binlog_addr != current.binlog_addr {
        changes.push(format!(
            "binlog server {} → {}",
            show(&previous.binlog_addr),
            show(&current.binlog_addr)
        ));
    }
    if changes.is_empty() {
        "nothing in its entry (a raft role change, or the same values again)".into()
    } else {
        changes.join(", ")
    }
}

/// Snapshot data: magic, the cluster state (length-prefixed), the binlog base entries at
/// the snapshot's index, then the store's origin (log index, then its entries).
fn encode_snapshot(cluster: &[u8], base: &[(u8, Vec<u8>)], origin: &Origin) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&(cluster.len() as u32).to_le_bytes());
    out.extend_from_slice(cluster);
    encode_entries(&mut out, base);
    out.extend_from_slice(&origin.0.to_le_bytes());
    encode_entries(&mut out, &origin.1);
    out
}

fn encode_entries(out: &mut Vec<u8>, entries: &[(u8, Vec<u8>)]) {
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (kind, data) in entries {
        out.push(*kind);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
}

/// The parts of snapshot data.
struct SnapshotParts<'a> {
    cluster: &'a [u8],
    base: Vec<(u8, Vec<u8>)>,
    /// None in the first format.
    origin: Option<Origin>,
}

fn decode_snapshot(data: &[u8]) -> Option<SnapshotParts<'_>> {
    let (rest, v2) = match data.strip_prefix(SNAPSHOT_MAGIC.as_slice()) {
        Some(rest) => (rest, true),
        None => (data.strip_prefix(SNAPSHOT_MAGIC_V1.as_slice())?, false),
    };
    let (cluster, rest) = take_prefixed(rest)?;
    let (base, rest) = decode_entries(rest)?;
    let (origin, rest) = if v2 {
        let at = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
        let (entries, rest) = decode_entries(&rest[8..])?;
        (Some((at, entries)), rest)
    } else {
        (None, rest)
    };
    rest.is_empty().then_some(SnapshotParts {
        cluster,
        base,
        origin,
    })
}

type Entries = Vec<(u8, Vec<u8>)>;

fn decode_entries(data: &[u8]) -> Option<(Entries, &[u8])> {
    let count = u32::from_le_bytes(data.get(..4)?.try_into().ok()?);
    let mut rest = &data[4..];
    let mut entries = Vec::new();
    for _ in 0..count {
        let (&kind, tail) = rest.split_first()?;
        let (bytes, tail) = take_prefixed(tail)?;
        entries.push((kind, bytes.to_vec()));
        rest = tail;
    }
    Some((entries, rest))
}

fn take_prefixed(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let body = data.get(4..4 + len)?;
    Some((body, &data[4 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot's base describes the stream where its whole content ends: taken inside
    /// a (chunked) transaction, a node restored from it would get the transaction's rest
    /// without its beginning, and could not go on. It waits for the transaction's end.
    #[test]
    fn a_member_change_says_what_changed() {
        let before = MemberInfo {
            name: "n2".into(),
            id: 7,
            peer_url: "10.0.0.2:9596".into(),
            admin_url: None,
            binlog_addr: None,
        };
        let after = MemberInfo {
            peer_url: "10.0.0.12:9596".into(),
            admin_url: Some("10.0.0.12:9595".into()),
            ..before.clone()
        };
        assert_eq!(
            member_changes(&before, &after),
            "peer address 10.0.0.2:9596 → 10.0.0.12:9596, admin address none → 10.0.0.12:9595"
        );
        assert!(member_changes(&before, &before).starts_with("nothing"));
    }

    #[test]
    fn no_snapshot_is_taken_inside_a_transaction() {
        use crate::store::entry::{EventsHeader, KIND_EVENTS};
        use crate::store::testdata::{dump_stream, ingest};
        let entries = ingest(&dump_stream(&["bin.000001", "bin.000002"]), 60);
        let ends_inside = |(kind, data): &(u8, Vec<u8>)| {
            *kind == KIND_EVENTS && EventsHeader::decode(data).unwrap().0.ends_inside_group()
        };
        let partial = entries
            .iter()
            .position(ends_inside)
            .expect("a chunked group");
        let whole = partial
            + entries[partial..]
                .iter()
                .position(|e| !ends_inside(e))
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = crate::storage::Log::open(dir.path()).unwrap();
        let store = Arc::new(Store::over_log(log.reader()));
        let mut machine = NodeMachine::new(Arc::clone(&store), Arc::new(ClusterShared::new()));
        let apply = |range: std::ops::RangeInclusive<usize>| {
            let batch: Vec<(u64, u8, &[u8])> = range
                .map(|i| (i as u64 + 1, entries[i].0, &entries[i].1[..]))
                .collect();
            store.apply(&batch).unwrap();
        };
        apply(0..=partial);
        assert!(machine.snapshot_data().is_none(), "inside the group");
        apply(partial + 1..=whole);
        let data = machine.snapshot_data().expect("the group ended");
        let base = decode_snapshot(&data).unwrap().base;
        let restored =
            crate::store::index::BinlogIndex::from_origin(whole as u64 + 1, &base).unwrap();
        assert_eq!(restored.resume_point(), store.index().resume_point());
    }

    #[test]
    fn commands_applied_again_after_a_restart_are_counted_and_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = crate::storage::Log::open(dir.path()).unwrap();
        let store = Arc::new(Store::over_log(log.reader()));
        let cluster = Arc::new(ClusterShared::new());
        let mut machine = NodeMachine::new(store, Arc::clone(&cluster));
        let args = crate::api::validate::syncer_args_from_json(
            br#"{"syncer_id": 9, "mysql_addr": "db:3306", "mysql_user": "repl",
                 "mysql_password": "pw"}"#,
        )
        .unwrap();
        let entry = |index: u64, command: Option<Command>| Applied {
            index,
            term: 1,
            kind: if command.is_some() { COMMAND_KIND } else { 0 },
            data: command.map(|c| c.encode()).unwrap_or_default().into(),
        };
        machine.on_recovered(3);
        machine.apply(vec![
            entry(1, Some(Command::SetSyncer(Some(args.clone())))),
            entry(2, None),
        ]);
        assert_eq!((machine.replay.through, machine.replay.commands), (3, 1));
        assert_eq!(machine.replay_report, None);
        machine.apply(vec![entry(3, Some(Command::SetSyncer(Some(args.clone()))))]);
        assert_eq!(
            machine.replay_report.as_deref(),
            Some(
                "applied the log found at start, through entry 3 (2 commands; syncer desired \
                 for db:3306, 0 members)"
            ),
            "reported once the log found at start is applied"
        );
        assert_eq!((machine.replay.through, machine.replay.commands), (0, 0));
        assert_eq!(cluster.state().syncer(), Some(&args));
        // Later commands are new: nothing is counted as replayed.
        machine.apply(vec![entry(4, Some(Command::SetSyncer(None)))]);
        assert_eq!((machine.replay.through, machine.replay.commands), (0, 0));
        assert_eq!(cluster.state().syncer(), None);

        // Old and new commands in one batch: the summary tells the state before the new.
        let mut machine = NodeMachine::new(machine.store.clone(), Arc::new(ClusterShared::new()));
        machine.on_recovered(2);
        machine.apply(vec![
            entry(1, Some(Command::SetSyncer(Some(args.clone())))),
            entry(2, None),
            entry(3, Some(Command::SetSyncer(None))),
        ]);
        assert_eq!(
            machine.replay_report.as_deref(),
            Some(
                "applied the log found at start, through entry 2 (1 command; syncer desired \
                 for db:3306, 0 members)"
            )
        );
        assert_eq!(machine.cluster.state().syncer(), None);

        // A snapshot that covers the whole log leaves nothing to apply again, or report.
        let mut machine = NodeMachine::new(machine.store.clone(), Arc::new(ClusterShared::new()));
        machine.on_recovered(5);
        machine.restore(5, 1, &[]);
        machine.apply(vec![entry(6, Some(Command::SetSyncer(None)))]);
        assert_eq!(machine.replay_report, None);
    }

    #[test]
    fn caught_up_needs_a_leader_the_known_commit_and_an_entry_of_the_term() {
        use crate::consensus::node::RaftStatus;
        let cluster = ClusterShared::new();
        let status = RaftStatus {
            leader_id: 7,
            term: 5,
            commit: 3,
            applied: 3,
            ..Default::default()
        };
        // After a restart during an election: the leader of term 5 has told a commit index
        // of 0 so far, and the replay stopped at the stale commit index 3, of term 4.
        cluster.last_applied_term.store(4, Ordering::SeqCst);
        assert!(!cluster.caught_up(&status));
        cluster.last_applied_term.store(5, Ordering::SeqCst);
        assert!(cluster.caught_up(&status));
        assert!(!cluster.caught_up(&RaftStatus {
            applied: 2,
            ..status.clone()
        }));
        assert!(!cluster.caught_up(&RaftStatus {
            leader_id: 0,
            ..status
        }));
    }

    #[test]
    fn snapshot_data_round_trips_and_refuses_damage() {
        let base = vec![(4u8, b"0-1-5".to_vec()), (1u8, vec![1, 2, 3])];
        let origin = (77u64, vec![(4u8, b"0-1-2".to_vec())]);
        let enc = encode_snapshot(b"cluster", &base, &origin);
        let parts = decode_snapshot(&enc).unwrap();
        assert_eq!(parts.cluster, b"cluster");
        assert_eq!(parts.base, base);
        assert_eq!(parts.origin, Some(origin));
        for len in 0..enc.len() {
            assert!(decode_snapshot(&enc[..len]).is_none(), "length {len}");
        }
        let mut longer = enc.clone();
        longer.push(0);
        assert!(decode_snapshot(&longer).is_none());
    }

    #[test]
    fn first_format_snapshots_are_still_read() {
        let base = vec![(4u8, b"0-1-5".to_vec())];
        let mut v1 = SNAPSHOT_MAGIC_V1.to_vec();
        v1.extend_from_slice(&7u32.to_le_bytes());
        v1.extend_from_slice(b"cluster");
        encode_entries(&mut v1, &base);
        let parts = decode_snapshot(&v1).unwrap();
        assert_eq!((parts.cluster, parts.base), (&b"cluster"[..], base));
        assert!(parts.origin.is_none());
    }
}
