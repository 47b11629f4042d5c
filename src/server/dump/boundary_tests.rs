//! Unit tests of the event-boundary check of a file-and-position start.

use super::mysql_tests::store_of;
use super::*;
use crate::store::testdata::{dump_stream, file_events};

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
        let (_dir, store) = store_of(&dump_stream(&["bin.000001"]), limit);
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

/// After the stored ROTATE at a file's end, heartbeats name the file it rotates to (the
/// replica is there already), even while nothing of that file is stored yet.
#[test]
fn heartbeats_after_a_real_rotate_name_the_next_file() {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Records what the dump writes; reads nothing.
    #[derive(Default, Clone)]
    struct Wire(Arc<Mutex<Vec<u8>>>);
    impl std::io::Read for Wire {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Ok(0)
        }
    }
    impl std::io::Write for Wire {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    // bin.000001 ends with ROTATE → bin.000002:4; nothing of bin.000002 is stored.
    let (_dir, store) = store_of(&dump_stream(&["bin.000001"]), 4096);
    let store = Arc::new(store);
    let stop = Arc::new(AtomicBool::new(false));
    let wire = Wire::default();
    let dump = {
        let (store, stop, wire) = (store.clone(), stop.clone(), wire.clone());
        std::thread::spawn(move || {
            let opts = DumpOptions {
                non_blocking: false,
                heartbeat_period: Duration::from_millis(20),
                ..DumpOptions::for_test(DumpStart::FilePos {
                    file: "bin.000001".into(),
                    pos: 4,
                })
            };
            let mut conn = crate::net::conn::PacketConn::new(wire, 1 << 24);
            let _ = run(&mut conn, &store, &opts, &DumpProgress::default(), &stop);
        })
    };
    // Until a heartbeat went out after the whole file.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let heartbeat = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no heartbeat after the file"
        );
        let out = wire.0.lock().unwrap().clone();
        let mut at = 0;
        let mut rotated = false;
        let mut found = None;
        while at + 4 <= out.len() {
            let len = u32::from_le_bytes([out[at], out[at + 1], out[at + 2], 0]) as usize;
            let ev = &out[at + 5..at + 4 + len];
            at += 4 + len;
            if ev[4] == event::ROTATE_EVENT && ev[17] & 0x20 == 0 {
                rotated = true;
            }
            if rotated && ev[4] == event::HEARTBEAT_LOG_EVENT {
                found = Some(event::Heartbeat::parse(ev, event::CHECKSUM_LEN).unwrap());
                break;
            }
        }
        if let Some(hb) = found {
            break hb;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    dump.join().unwrap();
    assert_eq!(
        (heartbeat.log_file.as_str(), u64::from(heartbeat.log_pos)),
        ("bin.000002", 4)
    );
}

/// Every stored MariaDB group's end is a start for a GTID dump, also where the group's last
/// event was cut across two entries (its end then lies at the end of an entry in which no
/// event begins): such replicas were refused with "not the start of an event".
#[test]
fn a_gtid_start_at_any_group_end_is_served() {
    use crate::binlog::gtid::MariaGtid;
    use std::sync::atomic::AtomicBool;

    /// Swallows what the dump writes.
    struct Wire;
    impl std::io::Read for Wire {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Ok(0)
        }
    }
    impl std::io::Write for Wire {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let mut tried_mid_event_ends = 0;
    for limit in (60..260).step_by(7) {
        let (_dir, store) = store_of(&dump_stream(&["bin.000001", "bin.000002"]), limit);
        for seq in 1..=18u64 {
            let gtid = MariaGtid {
                domain_id: 0,
                server_id: 1,
                seq_no: seq,
            };
            let Some(group) = store.index().maria_group(&gtid).copied() else {
                continue;
            };
            let meta = store.index().entry_meta(group.end.entry).copied();
            if meta.is_some_and(|m| m.first_event_offset.is_none()) {
                tried_mid_event_ends += 1;
            }
            let opts = DumpOptions::for_test(DumpStart::MariaGtid(format!("{gtid},2-1-2")));
            let mut conn = crate::net::conn::PacketConn::new(Wire, 1 << 24);
            let outcome = run(
                &mut conn,
                &store,
                &opts,
                &DumpProgress::default(),
                &AtomicBool::new(false),
            );
            assert!(outcome.is_ok(), "limit {limit}, {gtid}: {outcome:?}");
        }
    }
    assert!(
        tried_mid_event_ends > 0,
        "the layout under test never came up"
    );
}
