//! Unit tests of events larger than the cursor's window, which a dump sends as it reads
//! them: byte for byte what is stored, never gathered whole, and a damaged one never
//! reaches the replica whole.

use std::path::Path;

use super::mysql_tests::{store_of, Sink};
use super::*;
use crate::binlog::event::{EventHeader, ANNOTATE_ROWS_EVENT};
use crate::limits::{CURSOR_READ_BYTES_MAX, PACKET_PAYLOAD_MAX};
use crate::store::testdata::file_events;

/// Where bin.000001 has an ANNOTATE_ROWS event (of the group 0-1-4).
const ANNOTATE_AT: u64 = 900;
/// What the grown ANNOTATE_ROWS event's statement text is padded with.
const PAD: &[u8] = b"ferrobus-stream-test-";

/// bin.000001 as a master's dump sends it, with the ANNOTATE_ROWS event at `ANNOTATE_AT`
/// grown by `extra` bytes of padding (every later log_pos moved along, CRCs recomputed),
/// and the grown event.
fn stream_with_large_event(extra: usize) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut stream = vec![event::build_rotate("bin.000001", 4, 1, true, true)];
    let mut large = Vec::new();
    let mut shift = 0u32;
    for (pos, mut ev) in file_events("bin.000001") {
        if pos == ANNOTATE_AT {
            assert_eq!(ev[4], ANNOTATE_ROWS_EVENT);
            let body_end = ev.len() - event::CHECKSUM_LEN;
            let pad: Vec<u8> = PAD.iter().copied().cycle().take(extra).collect();
            ev.splice(body_end..body_end, pad);
            shift = extra as u32;
        }
        if shift > 0 {
            let mut header = EventHeader::parse(&ev).unwrap();
            header.event_size = ev.len() as u32;
            header.log_pos += shift;
            let mut head = Vec::new();
            header.encode(&mut head);
            ev[..head.len()].copy_from_slice(&head);
            event::set_checksum(&mut ev);
        }
        if pos == ANNOTATE_AT {
            large = ev.clone();
        }
        stream.push(ev);
    }
    (stream, large)
}

/// A non-blocking dump of `store` from `start`: the bytes written and how it ended.
fn dump(store: &Store, start: DumpStart, annotate: bool) -> (Vec<u8>, Result<(), DumpError>) {
    let opts = DumpOptions {
        send_annotate_rows: annotate,
        ..DumpOptions::for_test(start)
    };
    let mut conn = PacketConn::new(Sink::default(), 1 << 24);
    let progress = DumpProgress::default();
    let result = run(&mut conn, store, &opts, &progress, &AtomicBool::new(false));
    (conn.into_inner().0, result)
}

/// The logical packets of `wire`, frames joined; the last one may be cut short.
fn packets_of(wire: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut packet = Vec::new();
    let mut at = 0;
    while at + 4 <= wire.len() {
        let len = u32::from_le_bytes([wire[at], wire[at + 1], wire[at + 2], 0]) as usize;
        let end = (at + 4 + len).min(wire.len());
        packet.extend_from_slice(&wire[at + 4..end]);
        at += 4 + len;
        if len < PACKET_PAYLOAD_MAX {
            out.push(std::mem::take(&mut packet));
        }
    }
    if !packet.is_empty() {
        out.push(packet);
    }
    out
}

fn from_the_start() -> DumpStart {
    DumpStart::FilePos {
        file: "bin.000001".into(),
        pos: 4,
    }
}

/// Events larger than the window (and than a packet's frame), in entries that cut them
/// anywhere, leave byte for byte as stored, in order with the others.
#[test]
fn large_events_leave_as_stored() {
    for extra in [CURSOR_READ_BYTES_MAX * 3 + 5, PACKET_PAYLOAD_MAX + 100] {
        let (stream, large) = stream_with_large_event(extra);
        for limit in [CURSOR_READ_BYTES_MAX / 3, crate::limits::ENTRY_PAYLOAD_MAX] {
            let (_dir, store) = store_of(&stream, limit);
            let (wire, result) = dump(&store, from_the_start(), true);
            assert!(result.is_ok(), "extra {extra} limit {limit}: {result:?}");
            let packets = packets_of(&wire);
            assert_eq!(packets.last().map(|p| p[0]), Some(0xfe), "ends with EOF");
            let events: Vec<&[u8]> = packets[..packets.len() - 1]
                .iter()
                .map(|p| &p[1..])
                .collect();
            // The artificial ROTATE, then every stored event of the file as it is.
            assert_eq!(events.len(), stream.len(), "extra {extra} limit {limit}");
            assert_eq!(
                events[1..],
                stream[1..].iter().map(Vec::as_slice).collect::<Vec<_>>()[..]
            );
            assert!(events.contains(&&large[..]));
            // Without ANNOTATE_ROWS asked for, the large one is left out like the others.
            let (wire, result) = dump(&store, from_the_start(), false);
            assert!(result.is_ok());
            let left: Vec<Vec<u8>> = packets_of(&wire)
                .into_iter()
                .map(|p| p[1..].to_vec())
                .collect();
            assert!(!left
                .iter()
                .any(|e| e.len() > 4 && e[4] == ANNOTATE_ROWS_EVENT));
            // The artificial ROTATE for the stream's, the others but ANNOTATE_ROWS, and the EOF.
            assert_eq!(left.len(), stream.len() - count_annotate(&stream) + 1);
        }
    }
}

fn count_annotate(stream: &[Vec<u8>]) -> usize {
    stream
        .iter()
        .filter(|e| e[4] == ANNOTATE_ROWS_EVENT)
        .count()
}

/// A GTID dump that starts past the large event's group skips it; one that starts before
/// sends it.
#[test]
fn a_large_event_follows_its_group_in_gtid_dumps() {
    let (stream, large) = stream_with_large_event(CURSOR_READ_BYTES_MAX * 2);
    let (_dir, store) = store_of(&stream, CURSOR_READ_BYTES_MAX / 2);
    for (state, sent) in [("0-1-3", true), ("0-1-4", false)] {
        let (wire, result) = dump(&store, DumpStart::MariaGtid(state.into()), true);
        assert!(result.is_ok(), "{state}: {result:?}");
        let events: Vec<Vec<u8>> = packets_of(&wire)
            .into_iter()
            .map(|p| p[1..].to_vec())
            .collect();
        assert_eq!(events.contains(&large), sent, "from {state}");
        // Either way the rest of the file follows: its last event is the ROTATE.
        let rotate = &events[events.len() - 2];
        assert_eq!(rotate, stream.last().unwrap(), "from {state}");
    }
}

/// Flips one byte of the large event's padding where the store keeps it on disk.
fn damage(dir: &Path) {
    let needle: Vec<u8> = PAD.iter().copied().cycle().take(PAD.len() * 40).collect();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == &needle[..]) {
            bytes[at + needle.len() / 2] ^= 0x20;
            std::fs::write(&path, bytes).unwrap();
            return;
        }
    }
    panic!("the large event's padding is not in {}", dir.display());
}

/// A large event damaged in the store: sent, the replica never gets its packet whole (the
/// connection is cut inside it); skipped, the dump ends with ERR 1236 saying why.
#[test]
fn a_damaged_large_event_never_leaves_whole() {
    let extra = CURSOR_READ_BYTES_MAX * 3;
    let (stream, large) = stream_with_large_event(extra);
    let (dir, store) = store_of(&stream, crate::limits::ENTRY_PAYLOAD_MAX);
    damage(dir.path());

    let (wire, result) = dump(&store, from_the_start(), true);
    match &result {
        Err(DumpError::Cut(m)) => assert!(m.contains("fails its CRC32 check"), "{m}"),
        other => panic!("a damaged event sent in part must cut the dump: {other:?}"),
    }
    let packets = packets_of(&wire);
    let last = packets.last().unwrap();
    assert_eq!(last[..1 + 19], [&[0u8][..], &large[..19]].concat()[..]);
    assert!(
        last.len() < 1 + large.len(),
        "the damaged event's packet is cut short ({} of {} bytes)",
        last.len(),
        1 + large.len()
    );
    let declared = u32::from_le_bytes([wire[wire.len() - last.len() - 4], 0, 0, 0]);
    assert!(declared > 0);

    let (wire, result) = dump(&store, from_the_start(), false);
    match &result {
        Err(DumpError::Refused(m)) => assert!(m.contains("fails its CRC32 check"), "{m}"),
        other => panic!("a damaged event skipped must refuse the dump: {other:?}"),
    }
    let last = packets_of(&wire).pop().unwrap();
    assert_eq!(last[0], 0xff, "ERR packet");
    assert!(String::from_utf8_lossy(&last).contains("fails its CRC32 check"));
}

/// Packets of exactly 0xFFFFFF bytes and one byte short of them (the empty trailing frame),
/// and a plain large event: the frames' sequence ids run on without a gap, and the bytes
/// counted as sent are the event packets' payload.
#[test]
fn frame_boundaries_and_bytes_sent() {
    let orig = file_events("bin.000001")
        .into_iter()
        .find(|(p, _)| *p == ANNOTATE_AT)
        .map(|(_, e)| e.len())
        .unwrap();
    // The packet is the event and its OK byte.
    for extra in [
        PACKET_PAYLOAD_MAX - 1 - orig,
        PACKET_PAYLOAD_MAX - 2 - orig,
        512 << 10,
    ] {
        let (stream, large) = stream_with_large_event(extra);
        let (_dir, store) = store_of(&stream, crate::limits::ENTRY_PAYLOAD_MAX);
        let opts = DumpOptions {
            send_annotate_rows: true,
            ..DumpOptions::for_test(from_the_start())
        };
        let mut conn = PacketConn::new(Sink::default(), 1 << 24);
        let progress = DumpProgress::default();
        run(&mut conn, &store, &opts, &progress, &AtomicBool::new(false)).unwrap();
        let wire = conn.into_inner().0;
        let packets = packets_of(&wire);
        let events: Vec<&[u8]> = packets[..packets.len() - 1]
            .iter()
            .map(|p| &p[1..])
            .collect();
        let stored: Vec<&[u8]> = stream[1..].iter().map(Vec::as_slice).collect();
        assert_eq!(events[1..], stored[..], "extra {extra}");
        assert!(events.contains(&&large[..]));
        let (mut at, mut seq) = (0, wire[3]);
        while at + 4 <= wire.len() {
            let len = u32::from_le_bytes([wire[at], wire[at + 1], wire[at + 2], 0]) as usize;
            assert_eq!(wire[at + 3], seq, "extra {extra}: frame at {at}");
            seq = seq.wrapping_add(1);
            at += 4 + len;
        }
        assert_eq!(at, wire.len(), "extra {extra}: whole frames");
        let payload: usize = packets[..packets.len() - 1].iter().map(Vec::len).sum();
        let sent = progress.bytes_sent.load(Ordering::Relaxed) as usize;
        assert_eq!(sent, payload, "extra {extra}");
    }
}
