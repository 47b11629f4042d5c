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
