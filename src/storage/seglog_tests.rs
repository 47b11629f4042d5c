//! Tests of the segmented log: round trips, rollover, recovery from torn tails and refusal
//! of corruption, truncation, compaction, concurrent readers, and a model-based property
//! test. They use real files in temporary directories and must not depend on timing.

use super::*;
use std::sync::atomic::AtomicBool;

fn entry(index: u64, term: u64, len: usize) -> Entry {
    let data = (0..len)
        .map(|i| {
            (i as u64)
                .wrapping_mul(31)
                .wrapping_add(index.wrapping_mul(7).wrapping_add(term)) as u8
        })
        .collect::<Vec<u8>>();
    Entry {
        index,
        term,
        kind: (index % 5) as u8,
        data: data.into(),
    }
}

fn entries(first: u64, count: u64, term: u64, len: usize) -> Vec<Entry> {
    (first..first + count)
        .map(|i| entry(i, term, len + (i as usize % 7)))
        .collect()
}

/// Small segments, no preallocation: file images hold exactly the records.
fn small() -> LogOptions {
    LogOptions {
        segment_bytes_max: 300,
        preallocate_bytes: 0,
    }
}

fn open_small(dir: &Path) -> (Log, Recovery) {
    Log::open_with(dir, small()).unwrap()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

fn assert_reads(reader: &LogReader, expected: &[Entry]) {
    for e in expected {
        assert_eq!(&reader.read(e.index).unwrap(), e);
        assert_eq!(reader.term(e.index).unwrap(), e.term);
    }
}

#[test]
fn empty_dir_is_empty_log() {
    let dir = tempfile::tempdir().unwrap();
    let (log, rec) = Log::open(dir.path()).unwrap();
    assert_eq!(rec.segments, 0);
    assert_eq!((rec.first_index, rec.last_index), (1, 0));
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!((log.first_index(), log.last_index()), (1, 0));
    let r = log.reader();
    assert_eq!((r.first_index(), r.last_index()), (1, 0));
    assert!(matches!(r.read(1), Err(StorageError::OutOfRange { .. })));
}

#[test]
fn append_sync_reopen_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let es = entries(1, 20, 3, 100);
    {
        let (mut log, _) = Log::open(dir.path()).unwrap();
        log.append(&es[..10]).unwrap();
        log.append(&es[10..]).unwrap();
        log.sync().unwrap();
        assert_reads(&log.reader(), &es);
        assert_eq!(log.entries(1, 21, u64::MAX).unwrap(), es);
    }
    let (log, rec) = Log::open(dir.path()).unwrap();
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(rec.segment, None);
    assert_eq!((rec.first_index, rec.last_index), (1, 20));
    assert_eq!(log.last_index(), 20);
    let r = log.reader();
    assert_eq!(r.last_index(), 20);
    assert_reads(&r, &es);
    assert!(matches!(
        r.read(21),
        Err(StorageError::OutOfRange {
            index: 21,
            last_index: 20
        })
    ));
    assert_eq!(
        segment_files(dir.path()),
        vec![dir.path().join("00000000000000000001.seg")]
    );
}

#[test]
fn readers_see_entries_only_after_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path()).unwrap();
    let r = log.reader();
    log.append(&entries(1, 3, 1, 10)).unwrap();
    assert_eq!(log.last_index(), 3);
    assert_eq!(log.synced_index(), 0);
    assert_eq!(r.last_index(), 0);
    assert!(matches!(r.read(1), Err(StorageError::OutOfRange { .. })));
    assert!(r.term(1).is_err());
    assert_eq!(log.read(3).unwrap(), entry(3, 1, 10 + 3));
    log.sync().unwrap();
    assert_eq!(r.last_index(), 3);
    assert_eq!(r.read(3).unwrap(), entry(3, 1, 13));
}

#[test]
fn a_sync_job_run_on_another_thread_publishes_only_what_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open_with(dir.path(), small()).unwrap();
    let r = log.reader();
    assert!(log.begin_sync().unwrap().is_none(), "nothing written yet");
    let first = entries(1, 12, 1, 40);
    log.append(&first).unwrap();
    let job = log.begin_sync().unwrap().unwrap();
    assert_eq!(job.upto(), 12);
    // Appending goes on while the job runs; what would cut or sync the log waits for it.
    log.append(&entries(13, 3, 1, 40)).unwrap();
    assert!(matches!(log.sync(), Err(StorageError::SyncInFlight)));
    assert!(matches!(
        log.truncate_suffix(5),
        Err(StorageError::SyncInFlight)
    ));
    assert!(matches!(
        log.drop_prefix(3),
        Err(StorageError::SyncInFlight)
    ));
    assert!(matches!(log.reset_to(40), Err(StorageError::SyncInFlight)));
    assert!(matches!(log.begin_sync(), Err(StorageError::SyncInFlight)));
    let outcome = std::thread::spawn(move || (job.upto(), job.run()))
        .join()
        .unwrap();
    assert_eq!(r.last_index(), 0, "nothing is visible before finish_sync");
    log.finish_sync(outcome.0, outcome.1).unwrap();
    assert_eq!(r.last_index(), 12);
    assert_reads(&r, &first);
    assert!(matches!(r.read(13), Err(StorageError::OutOfRange { .. })));
    // The next job covers the entries appended meanwhile, and the log is usable again.
    let job = log.begin_sync().unwrap().unwrap();
    assert_eq!(job.upto(), 15);
    let result = job.run();
    log.finish_sync(15, result).unwrap();
    assert_eq!(r.last_index(), 15);
    log.truncate_suffix(14).unwrap();
    assert_eq!(r.last_index(), 13);
    drop(log);
    let (log, rec) = Log::open_with(dir.path(), small()).unwrap();
    assert_eq!((rec.first_index, rec.last_index), (1, 13));
    assert_eq!(log.read(13).unwrap(), entry(13, 1, 40 + 13 % 7));
}

#[test]
fn a_failed_sync_job_poisons_the_writer_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path()).unwrap();
    let r = log.reader();
    log.append(&entries(1, 3, 1, 10)).unwrap();
    let job = log.begin_sync().unwrap().unwrap();
    let failed = Err(StorageError::SyncFailed {
        path: dir.path().to_path_buf(),
        source: std::io::Error::other("injected"),
    });
    drop(job);
    assert!(matches!(
        log.finish_sync(3, failed),
        Err(StorageError::SyncFailed { .. })
    ));
    assert_eq!(r.last_index(), 0);
    assert!(matches!(
        log.append(&entries(4, 1, 1, 10)),
        Err(StorageError::Poisoned)
    ));
    assert!(matches!(log.sync(), Err(StorageError::Poisoned)));
}

#[test]
fn refuses_non_contiguous_and_oversized_batches_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path()).unwrap();
    log.append(&[]).unwrap();
    assert!(matches!(
        log.append(&[entry(2, 1, 1)]),
        Err(StorageError::NotContiguous {
            expected: 1,
            got: 2
        })
    ));
    assert!(matches!(
        log.append(&[entry(1, 1, 1), entry(3, 1, 1)]),
        Err(StorageError::NotContiguous {
            expected: 2,
            got: 3
        })
    ));
    let big = Entry {
        index: 1,
        term: 1,
        kind: 0,
        data: vec![0; ENTRY_PAYLOAD_MAX + 1].into(),
    };
    assert!(matches!(
        log.append(&[big]),
        Err(StorageError::EntryTooLarge { index: 1, .. })
    ));
    assert_eq!(log.last_index(), 0);
    // Refused batches do not poison the writer.
    log.append(&[entry(1, 1, 1)]).unwrap();
    log.sync().unwrap();
    assert_eq!(log.reader().read(1).unwrap(), entry(1, 1, 1));
}

#[test]
fn rolls_over_several_segments() {
    let dir = tempfile::tempdir().unwrap();
    let es = entries(1, 60, 2, 40);
    {
        let (mut log, _) = open_small(dir.path());
        for chunk in es.chunks(7) {
            log.append(chunk).unwrap();
        }
        // One record bigger than the segment limit gets a segment of its own.
        log.append(&[entry(61, 2, 1000)]).unwrap();
        log.append(&[entry(62, 2, 5)]).unwrap();
        log.sync().unwrap();
        assert_reads(&log.reader(), &es);
    }
    let files = segment_files(dir.path());
    assert!(files.len() >= 10, "only {} segments", files.len());
    let mut next = 1u64;
    for f in &files {
        let bytes = fs::read(f).unwrap();
        let first = decode_header(&bytes).unwrap();
        assert_eq!(first, next, "segments are contiguous");
        assert_eq!(
            f.file_name().unwrap().to_str().unwrap(),
            segment_name(first)
        );
        let (locs, tail) = scan_records(&bytes, first, f, false).unwrap();
        assert_eq!(tail, None);
        assert!(
            bytes.len() as u64 <= 300 || locs.len() == 1,
            "{f:?} too big"
        );
        next += locs.len() as u64;
    }
    assert_eq!(next, 63);
    let (log, rec) = open_small(dir.path());
    assert_eq!(rec.segments, files.len());
    assert_eq!(rec.last_index, 62);
    assert_reads(&log.reader(), &es);
    assert_eq!(log.reader().read(61).unwrap(), entry(61, 2, 1000));
}

#[test]
fn disk_overhead_is_small_for_binlog_sized_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path()).unwrap();
    let mut data_bytes = 0u64;
    for i in 1..=200u64 {
        let e = entry(i, 1, 4096);
        data_bytes += e.data.len() as u64;
        log.append(&[e]).unwrap();
    }
    log.sync().unwrap();
    let file_bytes = |dir: &Path| -> u64 {
        segment_files(dir)
            .iter()
            .map(|f| fs::metadata(f).unwrap().len())
            .sum()
    };
    // The active segment may end in preallocated zeros; reopening cuts them.
    let on_disk = file_bytes(dir.path());
    assert!(on_disk >= log.disk_bytes());
    assert!(on_disk <= log.disk_bytes() + LOG_PREALLOCATE_BYTES);
    drop(log);
    let (log, rec) = Log::open(dir.path()).unwrap();
    assert_eq!(rec.truncated_bytes, 0);
    let on_disk = file_bytes(dir.path());
    assert_eq!(on_disk, log.disk_bytes());
    assert_eq!(on_disk, data_bytes + 200 * 25 + 24);
    assert!(on_disk * 100 <= data_bytes * 105);
}

/// Large data is written from where it is (after the buffered records, in one vectored
/// write), small data through the buffer: mixed in one batch, across segment rolls and with
/// preallocation, every entry reads back the same, before and after reopening, and the
/// files hold exactly the records.
#[test]
fn large_entries_written_in_place_mix_with_buffered_ones() {
    // Small preallocation, and the default (larger than some of the in-place writes).
    for preallocate_bytes in [4096, LOG_PREALLOCATE_BYTES] {
        large_entries_mixed_with(preallocate_bytes);
    }
}

fn large_entries_mixed_with(preallocate_bytes: u64) {
    let dir = tempfile::tempdir().unwrap();
    let big = LOG_WRITE_IN_PLACE_BYTES_MIN;
    let options = || LogOptions {
        segment_bytes_max: 3 * big as u64,
        preallocate_bytes,
    };
    let sizes = [10, big, 20, big - 1, big + 7, 0, 2 * big, 30, 40, big];
    let es: Vec<Entry> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| entry(i as u64 + 1, 2, len))
        .collect();
    {
        let (mut log, _) = Log::open_with(dir.path(), options()).unwrap();
        log.append(&es[..4]).unwrap();
        log.append(&es[4..5]).unwrap();
        log.append(&es[5..]).unwrap();
        log.sync().unwrap();
        assert_reads(&log.reader(), &es);
        // A small append after the large ones gets preallocated space behind it.
        let small_one = entry(11, 2, 10);
        log.append(std::slice::from_ref(&small_one)).unwrap();
        log.sync().unwrap();
        assert_reads(&log.reader(), &[small_one]);
    }
    let files = segment_files(dir.path());
    assert!(files.len() > 2, "rolled over: {files:?}");
    let last = files.last().unwrap();
    let image = fs::read(last).unwrap();
    let end = last_record_offset(&image, last);
    assert!(
        image.len() as u64 >= end + preallocate_bytes,
        "the active segment is preallocated"
    );
    let mut records = 0;
    for f in &files {
        let bytes = fs::read(f).unwrap();
        let first = decode_header(&bytes).unwrap();
        let (locs, _) = scan_records(&bytes, first, f, false).unwrap();
        records += locs.len();
    }
    assert_eq!(records, es.len() + 1);
    let (log, rec) = Log::open_with(dir.path(), options()).unwrap();
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(rec.last_index, 11);
    assert_reads(&log.reader(), &es);
    assert_eq!(log.entries(1, 11, u64::MAX).unwrap(), es);
}

fn with_prealloc(bytes: u64) -> LogOptions {
    LogOptions {
        segment_bytes_max: 300,
        preallocate_bytes: bytes,
    }
}

/// Small appends are followed by zeros in the active segment; a sealed segment is cut back
/// to its records; reopening cuts the zeros without calling them torn, and appends go on.
#[test]
fn preallocated_space_is_cut_at_roll_and_at_open_without_a_torn_report() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open_with(dir.path(), with_prealloc(4096)).unwrap();
    let es = entries(1, 30, 1, 30);
    for e in &es {
        log.append(std::slice::from_ref(e)).unwrap();
        log.sync().unwrap();
    }
    let files = segment_files(dir.path());
    assert!(files.len() > 2);
    let (last, sealed) = files.split_last().unwrap();
    for f in sealed {
        let bytes = fs::read(f).unwrap();
        let first = decode_header(&bytes).unwrap();
        let (locs, tail) = scan_records(&bytes, first, f, false).unwrap();
        assert_eq!(tail, None, "{f:?} keeps no preallocated tail");
        let l = locs.last().unwrap();
        assert_eq!(bytes.len() as u64, l.offset + u64::from(l.len));
    }
    let image = fs::read(last).unwrap();
    let end = last_record_offset(&image, last) as usize;
    assert!(
        image.len() >= end + 4096,
        "the active segment is preallocated"
    );
    drop(log);
    let (mut log, rec) = Log::open_with(dir.path(), with_prealloc(4096)).unwrap();
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(rec.segment, None);
    assert_eq!(rec.last_index, 30);
    assert_reads(&log.reader(), &es);
    let more = entries(31, 5, 1, 30);
    log.append(&more).unwrap();
    log.sync().unwrap();
    drop(log);
    let (log, rec) = Log::open_with(dir.path(), small()).unwrap();
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(rec.last_index, 35);
    assert_reads(&log.reader(), &[es, more].concat());
}

/// A crash between cutting a segment back and creating the next one cannot happen to leave
/// zeros in a sealed segment, but if a sealed segment ends in zeros it still opens; and a
/// torn record followed by zeros is still a torn tail.
#[test]
fn zeros_after_a_sealed_segment_open_and_a_torn_record_before_zeros_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let es = build(dir.path(), 20);
    let files = segment_files(dir.path());
    let first = files.first().unwrap();
    let mut image = fs::read(first).unwrap();
    image.extend_from_slice(&[0u8; 777]);
    fs::write(first, &image).unwrap();
    let last = files.last().unwrap();
    let mut image = fs::read(last).unwrap();
    let start = last_record_offset(&image, last) as usize;
    let record_len = image.len() - start;
    image.truncate(start + record_len / 2);
    image.extend_from_slice(&[0u8; 500]);
    fs::write(last, &image).unwrap();
    let (log, rec) = open_small(dir.path());
    assert_eq!(rec.truncated_at_offset, start as u64);
    assert_eq!(rec.truncated_bytes, (image.len() - start) as u64);
    assert_eq!(rec.last_index, 19);
    assert_reads(&log.reader(), &es[..19]);
    assert_eq!(
        fs::metadata(first).unwrap().len() as usize,
        fs::read(first).unwrap().len()
    );
    let bytes = fs::read(first).unwrap();
    let (_, tail) = scan_records(&bytes, 1, first, false).unwrap();
    assert_eq!(tail, None, "the zeros of the sealed segment were cut");
}

/// Builds a synced log of `count` entries in small segments; returns them.
fn build(dir: &Path, count: u64) -> Vec<Entry> {
    let es = entries(1, count, 1, 30);
    let (mut log, _) = open_small(dir);
    log.append(&es).unwrap();
    log.sync().unwrap();
    es
}

/// Offset of the last record in a segment image.
fn last_record_offset(bytes: &[u8], path: &Path) -> u64 {
    let first = decode_header(bytes).unwrap();
    let (locs, _) = scan_records(bytes, first, path, true).unwrap();
    locs.last().unwrap().offset
}

#[test]
fn torn_tail_at_every_offset_of_last_record_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let es = build(dir.path(), 20);
    let files = segment_files(dir.path());
    assert!(files.len() > 2);
    let last = files.last().unwrap().clone();
    let image = fs::read(&last).unwrap();
    let start = last_record_offset(&image, &last);
    for cut in start..image.len() as u64 {
        fs::write(&last, &image[..cut as usize]).unwrap();
        let (mut log, rec) = open_small(dir.path());
        let expect_cut = cut - start;
        assert_eq!(rec.truncated_bytes, expect_cut, "cut at {cut}");
        if expect_cut > 0 {
            assert_eq!(rec.segment.as_deref(), Some(last.as_path()));
            assert_eq!(rec.truncated_at_offset, start);
        }
        assert_eq!(rec.last_index, 19);
        assert_eq!(fs::metadata(&last).unwrap().len(), start);
        assert_reads(&log.reader(), &es[..19]);
        // The log goes on from there.
        log.append(&es[19..]).unwrap();
        log.sync().unwrap();
        assert_eq!(log.reader().read(20).unwrap(), es[19]);
    }
}

#[test]
fn garbage_last_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let es = build(dir.path(), 20);
    let last = segment_files(dir.path()).pop().unwrap();
    let mut image = fs::read(&last).unwrap();
    let start = last_record_offset(&image, &last) as usize;
    // A write that reached its full length but not its content (zeros), then a flip.
    for b in &mut image[start + 12..] {
        *b = 0;
    }
    fs::write(&last, &image).unwrap();
    let (log, rec) = open_small(dir.path());
    assert_eq!(rec.truncated_at_offset, start as u64);
    assert_eq!(rec.truncated_bytes, (image.len() - start) as u64);
    assert_eq!(rec.last_index, 19);
    assert_reads(&log.reader(), &es[..19]);
}

fn assert_corrupt(dir: &Path) -> (PathBuf, u64) {
    match Log::open_with(dir, small()) {
        Err(StorageError::Corrupt {
            segment, offset, ..
        }) => (segment, offset),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

fn flip(path: &Path, offset: usize) {
    let mut image = fs::read(path).unwrap();
    image[offset] ^= 0x40;
    fs::write(path, &image).unwrap();
}

#[test]
fn flipped_byte_in_sealed_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 20);
    let files = segment_files(dir.path());
    let sealed = &files[1];
    let image = fs::read(sealed).unwrap();
    let image_len = image.len();
    // Every byte of the sealed segment's last record, header included.
    for offset in (0..SEGMENT_HEADER_LEN).chain(image_len - 40..image_len) {
        flip(sealed, offset);
        let (segment, _) = assert_corrupt(dir.path());
        assert_eq!(&segment, sealed);
        flip(sealed, offset);
    }
    open_small(dir.path());
}

#[test]
fn flipped_byte_mid_last_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 20);
    let last = segment_files(dir.path()).pop().unwrap();
    let image = fs::read(&last).unwrap();
    let start = last_record_offset(&image, &last) as usize;
    assert!(
        start > SEGMENT_HEADER_LEN,
        "need two records in the last segment"
    );
    // Any byte of a record that is followed by the (valid) last record.
    for offset in SEGMENT_HEADER_LEN..start {
        flip(&last, offset);
        let (segment, at) = assert_corrupt(dir.path());
        assert_eq!(segment, last);
        assert!(at < start as u64);
        flip(&last, offset);
    }
    let (_, rec) = open_small(dir.path());
    assert_eq!(rec.truncated_bytes, 0);
}

#[test]
fn gap_between_segments_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 20);
    let files = segment_files(dir.path());
    fs::remove_file(&files[1]).unwrap();
    let (segment, offset) = assert_corrupt(dir.path());
    assert_eq!((segment, offset), (files[2].clone(), 0));
}

#[test]
fn header_index_must_match_name() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 3);
    let file = segment_files(dir.path()).pop().unwrap();
    let renamed = dir.path().join(segment_name(2));
    fs::rename(&file, &renamed).unwrap();
    assert_eq!(assert_corrupt(dir.path()), (renamed, 0));
}

#[test]
fn leftover_temp_segment_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let es = build(dir.path(), 3);
    let temp = dir.path().join("00000000000000000004.seg.tmp");
    fs::write(&temp, b"FBUS").unwrap();
    let (log, rec) = open_small(dir.path());
    assert!(!temp.exists());
    assert_eq!(rec.last_index, 3);
    assert_reads(&log.reader(), &es);
}

#[test]
fn truncate_suffix_then_append_new_terms() {
    let dir = tempfile::tempdir().unwrap();
    let es = build(dir.path(), 30);
    let (mut log, _) = open_small(dir.path());
    let r = log.reader();
    let before = segment_files(dir.path()).len();
    log.truncate_suffix(12).unwrap();
    assert!(segment_files(dir.path()).len() < before);
    assert_eq!((log.last_index(), r.last_index()), (11, 11));
    assert!(matches!(r.read(12), Err(StorageError::OutOfRange { .. })));
    assert!(matches!(r.term(30), Err(StorageError::OutOfRange { .. })));
    let mut model = es[..11].to_vec();
    let new = entries(12, 10, 5, 50);
    assert!(matches!(
        log.append(&new[1..]),
        Err(StorageError::NotContiguous { expected: 12, .. })
    ));
    log.append(&new).unwrap();
    log.sync().unwrap();
    model.extend(new);
    assert_reads(&r, &model);
    drop(log);
    let (log, rec) = open_small(dir.path());
    assert_eq!(rec.last_index, 21);
    assert_reads(&log.reader(), &model);
}

#[test]
fn truncate_suffix_edges() {
    let dir = tempfile::tempdir().unwrap();
    let es = build(dir.path(), 30);
    let (mut log, _) = open_small(dir.path());
    log.truncate_suffix(31).unwrap();
    log.truncate_suffix(100).unwrap();
    assert_eq!(log.last_index(), 30);
    // At a segment boundary: the segment starting there stays, empty.
    let second = decode_header(&fs::read(&segment_files(dir.path())[1]).unwrap()).unwrap();
    log.truncate_suffix(second).unwrap();
    assert_eq!(log.last_index(), second - 1);
    assert_reads(&log.reader(), &es[..second as usize - 1]);
    // Everything: the log is empty and continues at 1.
    log.truncate_suffix(1).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (1, 0));
    assert_eq!(log.reader().last_index(), 0);
    drop(log);
    let (mut log, rec) = open_small(dir.path());
    assert_eq!((rec.first_index, rec.last_index), (1, 0));
    log.append(&entries(1, 2, 9, 3)).unwrap();
    log.sync().unwrap();
    assert_eq!(log.reader().read(2).unwrap().term, 9);
}

#[test]
fn drop_prefix_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let es = build(dir.path(), 30);
    let (mut log, _) = open_small(dir.path());
    let r = log.reader();
    let files = segment_files(dir.path());
    let third = decode_header(&fs::read(&files[2]).unwrap()).unwrap();
    // Entries of the third segment are not all below `third + 1`: it stays.
    log.drop_prefix(third + 1).unwrap();
    assert_eq!(log.first_index(), third);
    assert_eq!(r.first_index(), third);
    assert_eq!(segment_files(dir.path()), files[2..].to_vec());
    assert!(matches!(
        r.read(1),
        Err(StorageError::Compacted { index: 1 })
    ));
    assert!(matches!(
        r.read(third - 1),
        Err(StorageError::Compacted { .. })
    ));
    assert_reads(&r, &es[third as usize - 1..]);
    // The active segment is never dropped.
    log.drop_prefix(u64::MAX).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    let first = log.first_index();
    assert_eq!(log.last_index(), 30);
    drop(log);
    let (mut log, rec) = open_small(dir.path());
    assert_eq!((rec.first_index, rec.last_index), (first, 30));
    assert_reads(&log.reader(), &es[first as usize - 1..]);
    assert!(matches!(
        log.truncate_suffix(first - 1),
        Err(StorageError::Compacted { .. })
    ));
}

#[test]
fn reset_to_starts_after_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 30);
    let (mut log, _) = open_small(dir.path());
    let r = log.reader();
    log.reset_to(1000).unwrap();
    assert_eq!((r.first_index(), r.last_index()), (1000, 999));
    assert!(matches!(
        r.read(5),
        Err(StorageError::Compacted { index: 5 })
    ));
    assert!(matches!(
        log.append(&entries(31, 1, 1, 1)),
        Err(StorageError::NotContiguous { expected: 1000, .. })
    ));
    let new = entries(1000, 5, 7, 20);
    log.append(&new).unwrap();
    log.sync().unwrap();
    assert_reads(&r, &new);
    drop(log);
    let (log, rec) = open_small(dir.path());
    assert_eq!((rec.first_index, rec.last_index), (1000, 1004));
    assert_reads(&log.reader(), &new);
}

#[test]
fn concurrent_readers_never_see_torn_or_unsynced_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open_small(dir.path());
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let r = log.reader();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut reads = 0u64;
                loop {
                    let finished = done.load(Ordering::SeqCst);
                    let last = r.last_index();
                    for i in r.first_index().max(last.saturating_sub(20))..=last {
                        if i == 0 {
                            continue;
                        }
                        let e = match r.read(i) {
                            // drop_prefix ran since first_index was read: legitimately gone.
                            Err(StorageError::Compacted { .. }) if i < r.first_index() => continue,
                            read => read.unwrap(),
                        };
                        assert_eq!(e, entry(i, 1 + i / 50, 20 + (i as usize % 90)));
                        reads += 1;
                    }
                    if finished {
                        return reads;
                    }
                }
            })
        })
        .collect();
    let mut next = 1u64;
    for batch in 0..100u64 {
        let n = 1 + batch % 5;
        let es: Vec<Entry> = (next..next + n)
            .map(|i| entry(i, 1 + i / 50, 20 + (i as usize % 90)))
            .collect();
        log.append(&es).unwrap();
        log.sync().unwrap();
        next += n;
        if batch % 10 == 9 {
            log.drop_prefix(next.saturating_sub(100)).unwrap();
        }
    }
    done.store(true, Ordering::SeqCst);
    for h in readers {
        assert!(h.join().unwrap() > 0);
    }
}

/// Rewrites the tail of a 10-entry log (truncate from 5, append 5..=11 in a new term, sync)
/// 58 times while `check(reader, index)` reads indexes 1..=12 in a loop on another thread.
fn race_reads_with_tail_rewrites(check: impl Fn(&LogReader, u64) + Send + 'static) {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open_small(dir.path());
    log.append(&entries(1, 10, 1, 30)).unwrap();
    log.sync().unwrap();
    let r = log.reader();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let h = std::thread::spawn(move || {
        while !d.load(Ordering::SeqCst) {
            for i in 1..=12 {
                check(&r, i);
            }
        }
    });
    for round in 2..60u64 {
        log.truncate_suffix(5).unwrap();
        log.append(&entries(5, 7, round, 30)).unwrap();
        log.sync().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    h.join().unwrap();
}

#[test]
fn concurrent_reader_during_truncation_gets_old_entry_or_error() {
    race_reads_with_tail_rewrites(|r, i| match r.read(i) {
        Ok(e) => {
            assert_eq!(e.index, i);
            // Term 1 (old) or a term written by a finished truncate+append.
            assert!(e.term >= 1);
            let expect = entry(i, e.term, 30 + (i as usize % 7));
            assert_eq!(e, expect);
        }
        Err(StorageError::OutOfRange { .. }) => {}
        Err(e) => panic!("unexpected {e}"),
    });
}

#[test]
fn errors_display_context() {
    let e = StorageError::io("/x/y.seg", "write", io_error());
    assert_eq!(e.to_string(), "write /x/y.seg: boom");
    let e = StorageError::SyncFailed {
        path: "/x".into(),
        source: io_error(),
    };
    assert!(e.to_string().contains("fsync /x failed"));
    let e = StorageError::corrupt("/s", 44, "bad".into());
    assert_eq!(e.to_string(), "corrupt log segment /s at offset 44: bad");
}

fn io_error() -> std::io::Error {
    std::io::Error::other("boom")
}

#[test]
fn handles_are_send_and_sync() {
    fn is<T: Send + Sync>() {}
    is::<LogReader>();
    is::<Log>();
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Append { count: u64, len: usize },
        Sync,
        Truncate { back: u64 },
        Drop { ahead: u64 },
        Reopen,
        Reset { gap: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (1u64..6, 0usize..120).prop_map(|(count, len)| Op::Append { count, len }),
            3 => Just(Op::Sync),
            2 => (0u64..15).prop_map(|back| Op::Truncate { back }),
            1 => (0u64..30).prop_map(|ahead| Op::Drop { ahead }),
            2 => Just(Op::Reopen),
            1 => (1u64..5).prop_map(|gap| Op::Reset { gap }),
        ]
    }

    /// The model: entries from `first` on, and how many are synced.
    struct Model {
        first: u64,
        entries: Vec<Entry>,
        synced: u64,
        term: u64,
    }

    impl Model {
        fn next(&self) -> u64 {
            self.first + self.entries.len() as u64
        }
    }

    fn check(log: &Log, m: &Model) {
        assert_eq!(log.first_index(), m.first);
        assert_eq!(log.last_index(), m.next() - 1);
        assert_eq!(log.synced_index(), m.synced);
        let r = log.reader();
        assert_eq!(r.last_index(), m.synced);
        for e in &m.entries {
            assert_eq!(&log.read(e.index).unwrap(), e);
            if e.index <= m.synced {
                assert_eq!(&r.read(e.index).unwrap(), e);
                assert_eq!(r.term(e.index).unwrap(), e.term);
            } else {
                assert!(matches!(
                    r.read(e.index),
                    Err(StorageError::OutOfRange { .. })
                ));
            }
        }
        if m.first > 1 {
            assert!(matches!(
                r.read(m.first - 1),
                Err(StorageError::Compacted { .. })
            ));
        }
        assert!(log.read(m.next()).is_err());
    }

    fn run(ops: Vec<Op>) {
        let dir = tempfile::tempdir().unwrap();
        let opts = LogOptions {
            segment_bytes_max: 400,
            preallocate_bytes: 128,
        };
        let (mut log, _) = Log::open_with(dir.path(), opts.clone()).unwrap();
        let mut m = Model {
            first: 1,
            entries: Vec::new(),
            synced: 0,
            term: 1,
        };
        for op in ops {
            match op {
                Op::Append { count, len } => {
                    let es: Vec<Entry> = (m.next()..m.next() + count)
                        .map(|i| entry(i, m.term, len))
                        .collect();
                    log.append(&es).unwrap();
                    m.entries.extend(es);
                }
                Op::Sync => {
                    log.sync().unwrap();
                    m.synced = m.next() - 1;
                }
                Op::Truncate { back } => {
                    let from = m.next().saturating_sub(back).max(m.first);
                    log.truncate_suffix(from).unwrap();
                    if from < m.next() {
                        // A real truncation syncs what is left; past the end is a no-op.
                        m.entries.truncate((from - m.first) as usize);
                        m.synced = m.next() - 1;
                        m.term += 1;
                    }
                }
                Op::Drop { ahead } => {
                    let before = m.first + ahead;
                    log.drop_prefix(before).unwrap();
                    let first = log.first_index();
                    assert!(first >= m.first);
                    assert!(first <= before.max(m.first));
                    // Only whole segments go, and the active one stays.
                    assert!(first <= m.next());
                    m.entries.drain(..(first - m.first) as usize);
                    m.first = first;
                }
                Op::Reopen => {
                    drop(log);
                    let (l, rec) = Log::open_with(dir.path(), opts.clone()).unwrap();
                    log = l;
                    assert_eq!(rec.truncated_bytes, 0);
                    // Written data survives a process restart (it is in the page cache),
                    // and open makes it durable.
                    m.synced = m.next() - 1;
                }
                Op::Reset { gap } => {
                    let next = m.next() + gap;
                    log.reset_to(next).unwrap();
                    m.first = next;
                    m.entries.clear();
                    m.synced = next - 1;
                }
            }
            check(&log, &m);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever a segment holds, open returns (Ok or a typed error) and never panics.
        #[test]
        fn open_never_panics_on_damaged_segments(
            first in prop_oneof![Just(1u64), Just(u64::MAX), Just(0u64), any::<u64>()],
            tail in proptest::collection::vec(any::<u8>(), 0..200),
            records in 0u64..4,
            cut in any::<proptest::sample::Index>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut image = encode_header(first).to_vec();
            for i in 0..records {
                crate::storage::record::encode_record_into(
                    &mut image,
                    &entry(first.wrapping_add(i), 1, 10),
                );
            }
            image.extend_from_slice(&tail);
            let cut = cut.index(image.len() + 1);
            let path = dir.path().join(segment_name(first));
            fs::write(&path, &image[..cut]).unwrap();
            if let Ok((log, rec)) = Log::open(dir.path()) {
                prop_assert!(rec.last_index + 1 >= rec.first_index);
                for i in log.first_index()..=log.last_index() {
                    prop_assert_eq!(log.read(i).unwrap().index, i);
                }
            }
        }

        #[test]
        fn random_ops_match_model(ops in proptest::collection::vec(op(), 1..40)) {
            run(ops);
        }
    }
}

#[test]
fn read_data_range_reads_parts_of_an_entry() {
    let dir = tempfile::tempdir().unwrap();
    let es = build(dir.path(), 30);
    let (mut log, _) = open_small(dir.path());
    let r = log.reader();
    for e in &es {
        let len = e.data.len();
        assert_eq!(r.data_len(e.index).unwrap(), len);
        for (offset, buf_len) in [(0, len), (0, 3), (5, 4), (len - 1, 10), (0, len + 9)] {
            let mut buf = vec![0xEE; buf_len];
            let got = r.read_data_range(e.index, offset, &mut buf).unwrap();
            let n = buf_len.min(len - offset);
            let want = DataRange {
                kind: e.kind,
                data_len: len,
                read: n,
            };
            assert_eq!(got, want, "entry {} at {offset}", e.index);
            assert_eq!(buf[..n], e.data[offset..offset + n]);
            assert!(buf[n..].iter().all(|&b| b == 0xEE), "nothing past the data");
        }
        // At or past the end, and into an empty buffer: nothing read.
        for (offset, buf_len) in [(len, 8), (len + 100, 8), (2, 0)] {
            let got = r.read_data_range(e.index, offset, &mut vec![0; buf_len]);
            assert_eq!(got.unwrap().read, 0);
        }
    }
    // Out of range: past the last entry, and written but not yet synced.
    let mut buf = [0u8; 8];
    assert!(matches!(
        r.read_data_range(31, 0, &mut buf),
        Err(StorageError::OutOfRange { index: 31, .. })
    ));
    assert!(matches!(
        r.data_len(31),
        Err(StorageError::OutOfRange { .. })
    ));
    log.append(&entries(31, 1, 1, 30)).unwrap();
    assert!(matches!(
        r.read_data_range(31, 0, &mut buf),
        Err(StorageError::OutOfRange { index: 31, .. })
    ));
    log.sync().unwrap();
    assert_eq!(r.read_data_range(31, 0, &mut buf).unwrap().read, 8);
    // Compacted.
    let files = segment_files(dir.path());
    let second = decode_header(&fs::read(&files[1]).unwrap()).unwrap();
    log.drop_prefix(second).unwrap();
    assert!(matches!(
        r.read_data_range(1, 0, &mut buf),
        Err(StorageError::Compacted { index: 1 })
    ));
    assert!(matches!(
        r.data_len(1),
        Err(StorageError::Compacted { index: 1 })
    ));
    log.reset_to(1000).unwrap();
    assert!(matches!(
        r.read_data_range(31, 0, &mut buf),
        Err(StorageError::Compacted { index: 31 })
    ));
}

#[test]
fn read_data_range_checks_the_record_index_not_its_crc() {
    let dir = tempfile::tempdir().unwrap();
    let es = build(dir.path(), 3);
    let files = segment_files(dir.path());
    let (log, _) = open_small(dir.path());
    let r = log.reader();
    let first = SEGMENT_HEADER_LEN;
    // A flipped data byte: the whole read refuses it, the range read (whose caller checks
    // its own checksums) returns it as stored.
    flip(&files[0], first + RECORD_OVERHEAD);
    assert!(matches!(r.read(1), Err(StorageError::Corrupt { .. })));
    let mut buf = vec![0u8; es[0].data.len()];
    r.read_data_range(1, 0, &mut buf).unwrap();
    assert_eq!(buf[0], es[0].data[0] ^ 0x40);
    assert_eq!(buf[1..], es[0].data[1..]);
    // A record whose header names another index is refused.
    flip(&files[0], first + RECORD_PREFIX_LEN);
    assert!(matches!(
        r.read_data_range(1, 0, &mut buf),
        Err(StorageError::Corrupt { .. })
    ));
}

#[test]
fn read_data_range_during_truncation_gets_old_bytes_or_error() {
    race_reads_with_tail_rewrites(|r, i| {
        let mut buf = [0u8; 64];
        match r.read_data_range(i, 3, &mut buf) {
            Ok(got) => {
                let want = (1..60)
                    .map(|term| entry(i, term, 30 + (i as usize % 7)))
                    .find(|e| e.data[3..] == buf[..got.read]);
                let e = want.expect("bytes of some written version of the entry");
                assert_eq!((got.kind, got.data_len), (e.kind, e.data.len()));
            }
            Err(StorageError::OutOfRange { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    });
}

/// The vectored write loop goes on after short and interrupted writes, never hands the
/// writer more than IOV_COUNT_MAX slices, and puts every byte at its offset.
#[test]
fn vectored_writes_resume_after_short_and_interrupted_writes() {
    let parts: Vec<Vec<u8>> = (0..2_000u32)
        .map(|i| (0..(i % 7)).map(|j| (i + j) as u8).collect())
        .collect();
    let want: Vec<u8> = parts.concat();
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let base = 100u64;
    let mut file = vec![0u8; base as usize + want.len()];
    let mut calls = 0;
    write_all_vectored(&mut slices, base, |bufs, at| {
        calls += 1;
        assert!(bufs.len() <= IOV_COUNT_MAX);
        if calls % 3 == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        // At most 5 bytes, possibly ending inside a slice.
        let mut n = 0;
        for b in bufs.iter().flat_map(|s| s.iter()).take(5) {
            file[at as usize + n] = *b;
            n += 1;
        }
        Ok(n)
    })
    .unwrap();
    assert_eq!(&file[base as usize..], &want[..]);
    assert!(file[..base as usize].iter().all(|&b| b == 0));
    // A writer that takes nothing is an error, not a loop.
    let mut slices = [IoSlice::new(b"abc")];
    let err = write_all_vectored(&mut slices, 0, |_, _| Ok(0)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WriteZero);
}

/// The pair read fills both buffers from contiguous bytes, at any split, and reports the end
/// of the file as `read_exact_at` does.
#[test]
fn a_pair_read_fills_both_buffers_or_fails_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    fs::write(&path, &bytes).unwrap();
    let file = File::open(&path).unwrap();
    for (offset, len1, len2) in [(0, 24, 100), (7, 1, 9_000), (9_990, 4, 6), (100, 0, 50)] {
        let (mut a, mut b) = (vec![0u8; len1], vec![0u8; len2]);
        read_exact_pair_at(&file, &mut a, &mut b, offset as u64).unwrap();
        assert_eq!(a, &bytes[offset..offset + len1]);
        assert_eq!(b, &bytes[offset + len1..offset + len1 + len2]);
    }
    let (mut a, mut b) = (vec![0u8; 4], vec![0u8; 10]);
    let error = read_exact_pair_at(&file, &mut a, &mut b, 9_990).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
}
