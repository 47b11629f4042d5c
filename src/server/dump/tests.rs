//! Unit tests of start resolution and the MariaDB group filter.

use super::*;
use crate::binlog::gtid::{MariaGtid, MariaGtidList};
use crate::binlog::transaction::{Gtid, TransactionTracker};
use crate::store::index::{BinlogIndex, Loc};
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
    // A domain the store has nothing of is another master's, as MariaDB takes it: the
    // others are served as if it were not named, and its GTID stays to skip up to.
    let s = by_gtid(&index, "0-1-7,2-1-1,9-3-55").unwrap();
    assert_eq!(s.loc, by_gtid(&index, "0-1-7,2-1-1").unwrap().loc);
    assert_eq!(s.pending.get(9), Some(&gtid("9-3-55")));
    assert_eq!(
        by_gtid(&index, "9-3-55").unwrap().loc,
        index.first_loc().unwrap()
    );
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
    let mut filter = GroupFilter::maria(state.clone(), 4);
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
            assert_eq!(filter.skip(ev, 0), Ok(want), "{name}: {current:?}");
            assert_eq!(
                filter.take_skipped(),
                None,
                "only a MySQL dump tells skipped ends"
            );
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
