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
use crate::consensus::state::{ClusterState, Command, Effect, COMMAND_KIND};
use crate::store::Store;

/// Magic of the snapshot data this machine writes.
const SNAPSHOT_MAGIC: &[u8; 4] = b"FBSN";

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
}

impl StateMachine for NodeMachine {
    fn apply(&mut self, entries: Vec<Applied>) {
        let batch: Vec<(u64, u8, &[u8])> = entries
            .iter()
            .map(|e| (e.index, e.kind, e.data.as_slice()))
            .collect();
        if let Err(e) = self.store.apply(&batch) {
            // A committed entry the store cannot index: every node would refuse it alike,
            // and serving past it is impossible. Stop rather than serve a broken stream.
            log::error!("cannot apply committed binlog entries: {e}; stopping");
            std::process::exit(1);
        }
        let mut changed = false;
        for e in entries.iter().filter(|e| e.kind == COMMAND_KIND) {
            let command = match Command::decode(&e.data) {
                Ok(c) => c,
                Err(err) => {
                    log::error!("entry {}: undecodable command: {err}", e.index);
                    continue;
                }
            };
            let mut state = self.cluster.state.write().expect("cluster state lock");
            match state.apply(&command) {
                Ok(Effect::Unchanged) => {}
                Ok(effect) => {
                    log::info!("entry {}: {}", e.index, describe(&effect));
                    changed = true;
                }
                // Refusals are deterministic: every node refuses the same command alike.
                Err(err) => log::warn!("entry {}: command refused: {err}", e.index),
            }
        }
        if let Some(last) = entries.last() {
            self.cluster
                .last_applied_index
                .store(last.index, Ordering::SeqCst);
            self.cluster
                .last_applied_term
                .store(last.term, Ordering::SeqCst);
        }
        // Watchers look at the applied term too, so wake them on every apply.
        let _ = changed;
        self.cluster.bump();
    }

    fn snapshot_data(&mut self) -> Vec<u8> {
        let cluster = self.cluster.state().encode();
        let base = self.store.index().base_entries();
        encode_snapshot(&cluster, &base)
    }

    fn restore(&mut self, index: u64, term: u64, data: &[u8]) {
        if data.is_empty() {
            // The bootstrap snapshot of a brand-new cluster: nothing to restore.
            return;
        }
        let (cluster, base) = match decode_snapshot(data) {
            Some(parts) => parts,
            None => {
                log::error!("snapshot at {index} is not ferrobus snapshot data; stopping");
                std::process::exit(1);
            }
        };
        match ClusterState::decode(cluster) {
            Ok(state) => *self.cluster.state.write().expect("cluster state lock") = state,
            Err(e) => {
                log::error!("snapshot at {index}: cluster state: {e}; stopping");
                std::process::exit(1);
            }
        }
        if let Err(e) = self.store.restore_base(index, &base) {
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

    fn on_conf_state(&mut self, _voters: &[u64], _learners: &[u64]) {
        // Ids become "used" when their SetMember command applies (and stay used after a
        // removal); the initial voters get theirs from the first leader's bootstrap. The
        // membership itself is read from the raft status; watchers only need waking.
        self.cluster.bump();
    }
}

fn describe(effect: &Effect) -> String {
    match effect {
        Effect::Syncer(Some(args)) => format!("syncer desired: {args:?}"),
        Effect::Syncer(None) => "syncer desired: stopped".into(),
        Effect::MemberAdded(m) => format!("member {} (id {:x}) added", m.name, m.id),
        Effect::MemberChanged { current, .. } => format!("member {} changed", current.name),
        Effect::MemberRemoved(m) => format!("member {} removed", m.name),
        Effect::Purged { to_file } => format!("purge point moved to {to_file}"),
        Effect::Unchanged => "unchanged".into(),
    }
}

/// Snapshot data: magic, the cluster state (length-prefixed), then the binlog base entries.
fn encode_snapshot(cluster: &[u8], base: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&(cluster.len() as u32).to_le_bytes());
    out.extend_from_slice(cluster);
    out.extend_from_slice(&(base.len() as u32).to_le_bytes());
    for (kind, data) in base {
        out.push(*kind);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

type SnapshotParts<'a> = (&'a [u8], Vec<(u8, Vec<u8>)>);

fn decode_snapshot(data: &[u8]) -> Option<SnapshotParts<'_>> {
    let rest = data.strip_prefix(SNAPSHOT_MAGIC.as_slice())?;
    let (cluster, mut rest) = take_prefixed(rest)?;
    let count = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
    rest = &rest[4..];
    let mut base = Vec::new();
    for _ in 0..count {
        let (&kind, tail) = rest.split_first()?;
        let (bytes, tail) = take_prefixed(tail)?;
        base.push((kind, bytes.to_vec()));
        rest = tail;
    }
    rest.is_empty().then_some((cluster, base))
}

fn take_prefixed(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let body = data.get(4..4 + len)?;
    Some((body, &data[4 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_data_round_trips_and_refuses_damage() {
        let base = vec![(4u8, b"0-1-5".to_vec()), (1u8, vec![1, 2, 3])];
        let enc = encode_snapshot(b"cluster", &base);
        let (cluster, decoded) = decode_snapshot(&enc).unwrap();
        assert_eq!(cluster, b"cluster");
        assert_eq!(decoded, base);
        for len in 0..enc.len() {
            assert!(decode_snapshot(&enc[..len]).is_none(), "length {len}");
        }
        let mut longer = enc.clone();
        longer.push(0);
        assert!(decode_snapshot(&longer).is_none());
    }
}
