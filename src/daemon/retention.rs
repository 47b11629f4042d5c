//! Binlog retention and purge: `PUT /binlog/purge` checks a purge and proposes it through
//! raft; a thread on every node compacts the raft log a purge freed (the state machine runs
//! on the raft thread and must not call the raft handle), and on the leader checks every
//! `check_interval_seconds` whether `[retention]` (`max_bytes`, `max_age_seconds`) asks for
//! a purge, and proposes it.
//!
//! It never purges the file the syncer writes (the last one), nor a file a dump of this
//! node is reading. Dumps on other nodes are not known here: one that still reads a purged
//! file ends with ERR 1236 once its node compacts the file away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::api::ApiError;
use crate::clock::unix_now;
use crate::config::Retention;
use crate::consensus::node::{CompactError, RaftHandle};
use crate::consensus::state::Command;
use crate::limits::PROPOSE_TIMEOUT_MS;
use crate::store::index::FileMeta;
use crate::store::Store;

use super::worker::Worker;
use super::Node;

/// How often the thread looks for a compaction to do (and at the stop flag).
const POLL_INTERVAL_MS: u64 = 200;

/// The retention thread.
pub struct RetentionThread(Worker);

impl RetentionThread {
    pub fn start(node: Arc<Node>, config: Retention) -> RetentionThread {
        if config.max_bytes.is_some() || config.max_age_seconds.is_some() {
            log::info!(
                "retention: keeping at most {} bytes and {} seconds of binlog, checked every \
                 {} s on the leader",
                config
                    .max_bytes
                    .map_or("unlimited".to_string(), |b| b.to_string()),
                config
                    .max_age_seconds
                    .map_or("unlimited".to_string(), |s| s.to_string()),
                config.check_interval_seconds
            );
        }
        RetentionThread(Worker::spawn("retention", move |stop| {
            run(&node, &config, stop)
        }))
    }

    pub fn stop(self) {
        self.0.stop();
    }
}

fn run(node: &Node, config: &Retention, stop: &AtomicBool) {
    let enforced = config.max_bytes.is_some() || config.max_age_seconds.is_some();
    let interval = Duration::from_secs(config.check_interval_seconds.max(1));
    let mut next_check = Instant::now() + interval;
    while !stop.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        compact_pending(&node.store, &node.raft);
        if !enforced || Instant::now() < next_check {
            continue;
        }
        next_check = Instant::now() + interval;
        if node.raft.status().is_leader() {
            enforce(node, config);
        }
    }
}

/// One retention check on the leader: proposes the purge the limits ask for, if any.
fn enforce(node: &Node, config: &Retention) {
    let read = files_read(node);
    let target = {
        let index = node.store.index();
        let files = index.files();
        let reading = earliest_read_file(&read, files);
        plan(files, config, unix_now(), reading).map(|i| {
            let kept: u64 = files[i..].iter().map(|f| f.bytes).sum();
            (files[i].name.clone(), files[..i].len(), kept)
        })
    };
    let Some((to_file, count, kept)) = target else {
        return;
    };
    log::info!(
        "retention: purging {count} binlog file(s) before {to_file} ({kept} bytes of binlog \
         kept)"
    );
    let command = Command::Purge {
        to_file: to_file.clone(),
    };
    match super::leader::propose_command(&node.raft, &command) {
        Ok(_) => compact_pending(&node.store, &node.raft),
        Err(e) => log::warn!("retention: purge to {to_file} not committed: {e}"),
    }
}

/// Which file to purge to (every file before it goes), or None: the smallest purge that
/// brings the stored bytes within `max_bytes` and drops every file whose last event is
/// older than `max_age_seconds`. Never the last file (the syncer writes it), never past
/// `reading` (the earliest file a local dump reads).
pub fn plan(
    files: &[FileMeta],
    config: &Retention,
    now_secs: u64,
    reading: Option<usize>,
) -> Option<usize> {
    let limit = files
        .len()
        .checked_sub(1)?
        .min(reading.unwrap_or(usize::MAX));
    let mut to = 0;
    if let Some(max_bytes) = config.max_bytes {
        let mut kept: u64 = files.iter().map(|f| f.bytes).sum();
        while to < files.len() && kept > max_bytes {
            kept -= files[to].bytes;
            to += 1;
        }
    }
    if let Some(max_age) = config.max_age_seconds {
        let oldest_kept = now_secs.saturating_sub(max_age);
        let old = files
            .iter()
            .take_while(|f| f.last_event_time != 0 && u64::from(f.last_event_time) < oldest_kept)
            .count();
        to = to.max(old);
    }
    let to = to.min(limit);
    (to > 0).then_some(to)
}

/// The files the dumps of this node's binlog server read now. Taken before the store's
/// index lock, never under it: the server's lock is held elsewhere while other locks are
/// taken (starting a server looks at the syncer slot), and the raft thread needs the index
/// lock to apply.
fn files_read(node: &Node) -> Vec<String> {
    let server = node.server.lock().expect("server lock");
    server
        .as_ref()
        .map(|s| s.slaves().into_iter().map(|slave| slave.file).collect())
        .unwrap_or_default()
}

/// The earliest stored file of `read` (see `files_read`), by position in `files`.
fn earliest_read_file(read: &[String], files: &[FileMeta]) -> Option<usize> {
    read.iter()
        .filter_map(|name| files.iter().position(|f| f.name == *name))
        .min()
}

/// Compacts the raft log up to what the last purge freed, if anything. Never called from
/// the raft thread (it waits for the raft thread).
pub fn compact_pending(store: &Store, raft: &RaftHandle) {
    let Some(index) = store.take_compaction() else {
        return;
    };
    let result = raft
        .compact(index)
        .recv_timeout(Duration::from_millis(PROPOSE_TIMEOUT_MS));
    match result {
        Ok(Ok(to)) => log::info!("purge: raft log compacted to entry {to}"),
        Ok(Err(CompactError::Shutdown)) => {}
        Ok(Err(CompactError::InsideTransaction)) => {
            log::debug!("purge: compaction to {index} waits for the open transaction to end");
            store.want_compaction(index);
        }
        Ok(Err(e)) => {
            log::warn!("purge: cannot compact the raft log to {index} yet: {e}");
            store.want_compaction(index);
        }
        Err(_) => {
            log::warn!("purge: no answer from the raft thread about compacting to {index}");
            store.want_compaction(index);
        }
    }
}

/// `PUT /binlog/purge` on the leader: checks `to_file`, then proposes the purge and waits
/// until it is applied (and the log compacted) here.
pub(super) fn purge(node: &Node, to_file: String) -> Result<(), ApiError> {
    // Serialized with the other admin changes of this node.
    let _guard = node.changes.lock().expect("changes lock");
    let read = files_read(node);
    {
        let index = node.store.index();
        let files = index.files();
        let (Some(first), Some(last)) = (files.first(), files.last()) else {
            return Err(ApiError::not_found(format!(
                "{to_file} is not stored: ferrobus has not stored any binlog yet"
            )));
        };
        let Some(i) = index.file_index(&to_file) else {
            let before = crate::consensus::state::binlog_file_order(&to_file, &first.name)
                == Some(std::cmp::Ordering::Less);
            return Err(if before {
                ApiError::conflict(format!(
                    "{to_file} is already purged: the first stored binlog file is {}",
                    first.name
                ))
            } else {
                ApiError::not_found(format!(
                    "{to_file} is not stored (ferrobus has {} .. {})",
                    first.name, last.name
                ))
            });
        };
        if i + 1 == files.len() {
            return Err(ApiError::conflict(format!(
                "{to_file} is the current binlog file (the syncer writes it); purge to an \
                 older file"
            )));
        }
        if i == 0 {
            // Nothing before it: already purged to there.
            return Ok(());
        }
        if let Some(r) = earliest_read_file(&read, files).filter(|r| *r < i) {
            return Err(ApiError::conflict(format!(
                "a replica of this node's binlog server is reading {}, before {to_file}; \
                 purge to {} at most",
                files[r].name, files[r].name
            )));
        }
    }
    node.propose(&Command::Purge {
        to_file: to_file.clone(),
    })?;
    compact_pending(&node.store, &node.raft);
    log::info!("binlog purged to {to_file} through the API");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, bytes: u64, time: u32) -> FileMeta {
        FileMeta {
            name: name.into(),
            start_pos: 4,
            fde: Vec::new(),
            file_start_entry: 1,
            end_pos: 4 + bytes,
            events: 1,
            bytes,
            last_event_time: time,
            previous_gtids: None,
            first_mysql_gtid: None,
        }
    }

    fn config(max_bytes: Option<u64>, max_age_seconds: Option<u64>) -> Retention {
        Retention {
            max_bytes,
            max_age_seconds,
            check_interval_seconds: 1,
        }
    }

    #[test]
    fn bytes_limit_purges_the_fewest_oldest_files() {
        let files = [
            file("b.1", 100, 10),
            file("b.2", 100, 20),
            file("b.3", 100, 30),
            file("b.4", 100, 40),
        ];
        assert_eq!(plan(&files, &config(Some(400), None), 0, None), None);
        assert_eq!(plan(&files, &config(Some(399), None), 0, None), Some(1));
        assert_eq!(plan(&files, &config(Some(200), None), 0, None), Some(2));
        assert_eq!(plan(&files, &config(Some(150), None), 0, None), Some(3));
        // Never the last file, even when it alone is over the limit.
        assert_eq!(plan(&files, &config(Some(0), None), 0, None), Some(3));
        // Never past a file a dump reads.
        assert_eq!(plan(&files, &config(Some(0), None), 0, Some(1)), Some(1));
        assert_eq!(plan(&files, &config(Some(0), None), 0, Some(0)), None);
        assert_eq!(plan(&files[..1], &config(Some(0), None), 0, None), None);
        assert_eq!(plan(&[], &config(Some(0), None), 0, None), None);
    }

    #[test]
    fn age_limit_purges_files_whose_last_event_is_old() {
        let files = [
            file("b.1", 100, 10),
            file("b.2", 100, 20),
            file("b.3", 100, 30),
            file("b.4", 100, 40),
        ];
        assert_eq!(plan(&files, &config(None, Some(100)), 50, None), None);
        // Older than 35 - 10 = 25: b.1 and b.2.
        assert_eq!(plan(&files, &config(None, Some(10)), 35, None), Some(2));
        assert_eq!(plan(&files, &config(None, Some(0)), 1000, None), Some(3));
        // The larger of the two limits' purges.
        assert_eq!(
            plan(&files, &config(Some(350), Some(10)), 35, None),
            Some(2)
        );
        assert_eq!(
            plan(&files, &config(Some(150), Some(10)), 35, None),
            Some(3)
        );
        // A file without a timestamp stops the age purge.
        let files = [file("b.1", 1, 0), file("b.2", 1, 5), file("b.3", 1, 5)];
        assert_eq!(plan(&files, &config(None, Some(1)), 100, None), None);
        assert_eq!(plan(&[], &config(None, Some(1)), 100, None), None);
    }
}
