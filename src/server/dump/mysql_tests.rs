//! Unit tests of MySQL-flavoured dumps: GTID-set starts, refusals, streaming.

use super::*;
use crate::binlog::event::{build_heartbeat_v2, EventHeader, MysqlGtidEvent};
use crate::binlog::gtid::{format_uuid, MysqlGtidSet};
use crate::store::index::mysql_testdata::*;
use crate::store::index::BinlogIndex;
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
                file: "mysql_bin.000013".into(),
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
pub(super) struct Sink(pub(super) Vec<u8>);

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
        heartbeat_v2,
        ..DumpOptions::for_test(start)
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

/// The events of a dump that ended with EOF: every packet but the last, each an event
/// packet (OK byte first), without that byte.
fn event_payloads(packets: &[Vec<u8>]) -> Vec<&[u8]> {
    packets[..packets.len() - 1]
        .iter()
        .map(|p| {
            assert_eq!(p[0], 0, "an event packet");
            &p[1..]
        })
        .collect()
}

/// A store in a temp dir holding `stream` ingested into entries of at most `limit` bytes.
pub(super) fn store_of(stream: &[Vec<u8>], limit: usize) -> (tempfile::TempDir, Store) {
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
        let events = event_payloads(&packets);
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
    let events = event_payloads(&packets);
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
    let events = event_payloads(&packets);
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
    let events = event_payloads(&packets);
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
        let events = event_payloads(&packets);
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
        let events = event_payloads(&packets);
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

/// The filter of a MySQL GTID dump skips exactly the transactions in the replica's set, and
/// tells once where the skipped ones ended (the heartbeat that moves the replica past them).
#[test]
fn mysql_filter_skips_the_replica_s_transactions_and_tells_where_they_ended() {
    let name = KINGBUS[1];
    let events = kingbus_events(name);
    let gtids = kingbus_gtids(name);
    let mut exclude = MysqlGtidSet::new();
    for (gno, _) in &gtids[..3] {
        exclude.add(kingbus_uuid(), None, *gno).unwrap();
    }
    let mut filter = GroupFilter::mysql(exclude, event::CHECKSUM_LEN);
    filter.new_file(&events[0].1);
    let mut skipped_end = None;
    let (first, fourth) = (gtids[0].1, gtids[3].1);
    for (pos, ev) in &events {
        let end = pos + ev.len() as u64;
        let skip = filter.skip(ev, end).unwrap();
        assert_eq!(skip, (first..fourth).contains(pos), "{name}:{pos}");
        if skip {
            skipped_end = Some(end);
        } else if *pos >= fourth {
            break;
        }
    }
    assert_eq!(skipped_end, Some(fourth));
    assert_eq!(filter.take_skipped(), Some(fourth));
    assert_eq!(filter.take_skipped(), None);
}
