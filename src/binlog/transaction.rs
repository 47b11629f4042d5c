//! Finds transaction boundaries in a stream of binlog events, so that the syncer stores and
//! the server streams whole transactions ("groups") only.
//!
//! Feed every event, in order, to [`TransactionTracker::feed`] (or, for a type
//! [`TransactionTracker::classifies_by_type`] accepts, its header to
//! [`TransactionTracker::feed_header`], so that a large one need not be held); each
//! [`Step`] says whether
//! the event starts a group, ends one, or both (an event that is a group of its own, such as
//! a FORMAT_DESCRIPTION or a lone DDL statement without a GTID). The rules:
//!
//! - MariaDB: a GTID event (162) starts a group. With FL_STANDALONE (DDL, XA COMMIT/ROLLBACK)
//!   the group ends at its first statement (QUERY); otherwise at XID, a QUERY `COMMIT` or
//!   `ROLLBACK`, or XA_PREPARE (38) for the prepared part of an XA transaction.
//! - MySQL: GTID (33), ANONYMOUS_GTID (34) or GTID_TAGGED (42) starts a group. `BEGIN` (or
//!   `XA START`) opens a transaction that ends at XID, `COMMIT`, `ROLLBACK`, XA_PREPARE, or
//!   `XA COMMIT … ONE PHASE`/`XA ROLLBACK` after `XA START`; so does `CREATE TABLE …
//!   START TRANSACTION` (a row-based CREATE TABLE … SELECT since MySQL 8.0.21). Any other
//!   statement right after the GTID (DDL, `XA COMMIT`) is the whole group; so is a
//!   TRANSACTION_PAYLOAD (40).
//! - Without a GTID (old servers): `BEGIN` starts a group ended as above; INTVAR, RAND or
//!   USER_VAR start a group that the next statement ends; a lone statement is its own group.
//! - Everything else outside a group (FDE, ROTATE, STOP, GTID_LIST, BINLOG_CHECKPOINT,
//!   PREVIOUS_GTIDS, HEARTBEAT, INCIDENT, …) is a group of its own. A HEARTBEAT inside a
//!   group neither starts nor ends anything.
//!
//! QUERY_COMPRESSED (165) statements are not decompressed: MariaDB never compresses a
//! statement shorter than 10 bytes, so a compressed one is never `BEGIN`/`COMMIT`/`ROLLBACK`.
//! The tracker only parses; it never holds event bytes, and it does no I/O.

use std::fmt;

use super::event::{
    self, ChecksumAlg, EventHeader, FormatDescription, MariaGtidEvent, MysqlGtidEvent, QueryEvent,
    QueryKind,
};
use super::gtid::{format_uuid, MariaGtid};
use super::{BinlogError, Result};

/// The GTID that names a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Gtid {
    Maria(MariaGtid),
    Mysql {
        uuid: [u8; 16],
        tag: Option<String>,
        gno: u64,
    },
    /// MySQL with gtid_mode OFF: ANONYMOUS_GTID_LOG_EVENT.
    Anonymous,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::Maria(gtid) => write!(f, "{gtid}"),
            Gtid::Mysql {
                uuid,
                tag: Some(tag),
                gno,
            } => write!(f, "{}:{tag}:{gno}", format_uuid(uuid)),
            Gtid::Mysql {
                uuid,
                tag: None,
                gno,
            } => write!(f, "{}:{gno}", format_uuid(uuid)),
            Gtid::Anonymous => f.write_str("ANONYMOUS"),
        }
    }
}

/// What one event means for group boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The event is the first of a group.
    pub starts_group: bool,
    /// The event is the last of a group (a group of one event both starts and ends).
    pub ends_group: bool,
    /// The group's GTID, on the event that carries it.
    pub gtid: Option<Gtid>,
}

impl Step {
    const SINGLE: Step = Step {
        starts_group: true,
        ends_group: true,
        gtid: None,
    };
    const INSIDE: Step = Step {
        starts_group: false,
        ends_group: false,
        gtid: None,
    };
    const END: Step = Step {
        starts_group: false,
        ends_group: true,
        gtid: None,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Outside,
    /// After a MariaDB GTID with FL_STANDALONE: ends at the first statement.
    MariaStandalone,
    /// After a MySQL GTID, before its first statement.
    AfterMysqlGtid,
    /// Inside BEGIN … (or a MariaDB non-standalone GTID, which implies BEGIN). `xa` when it
    /// began with XA START.
    Transaction {
        xa: bool,
    },
    /// After INTVAR/RAND/USER_VAR without a GTID: ends at the next statement.
    StatementPrefix,
}

/// Tracks group boundaries over a stream of whole events.
#[derive(Debug, Clone)]
pub struct TransactionTracker {
    checksum_len: usize,
    state: State,
    group_gtid: Option<Gtid>,
}

impl TransactionTracker {
    /// `checksum_len` is 4 when events end with a CRC32 and 0 when they do not; every
    /// FORMAT_DESCRIPTION event fed replaces it with what that FDE announces.
    pub fn new(checksum_len: usize) -> TransactionTracker {
        TransactionTracker {
            checksum_len,
            state: State::Outside,
            group_gtid: None,
        }
    }

    /// Whether the last event fed left a group open.
    pub fn in_group(&self) -> bool {
        self.state != State::Outside
    }

    /// The GTID of the open group, if it has one.
    pub fn group_gtid(&self) -> Option<&Gtid> {
        self.group_gtid.as_ref()
    }

    pub fn checksum_len(&self) -> usize {
        self.checksum_len
    }

    /// Overrides the checksum length (for a stream whose CRCs were stripped although its
    /// FDE says CRC32).
    pub fn set_checksum_len(&mut self, checksum_len: usize) {
        self.checksum_len = checksum_len;
    }

    /// Forgets any open group (after a reconnect, say).
    pub fn reset(&mut self) {
        self.state = State::Outside;
        self.group_gtid = None;
    }

    /// Classifies the next event (header, body and checksum). On an error the event was
    /// not consumed; after an `UnexpectedEvent` error the tracker has reset itself, and
    /// feeding the same event again classifies it as the start of a fresh group.
    pub fn feed(&mut self, event: &[u8]) -> Result<Step> {
        let header = event::parse_whole(event)?;
        match header.type_code {
            event::FORMAT_DESCRIPTION_EVENT => self.on_format_description(event),
            event::GTID_EVENT
            | event::GTID_LOG_EVENT
            | event::ANONYMOUS_GTID_LOG_EVENT
            | event::GTID_TAGGED_LOG_EVENT => self.on_gtid(&header, event),
            event::QUERY_EVENT => {
                let kind = QueryEvent::parse(event, self.checksum_len)?.kind();
                Ok(self.on_statement(kind))
            }
            event::QUERY_COMPRESSED_EVENT => {
                QueryEvent::parse(event, self.checksum_len)?;
                Ok(self.on_statement(QueryKind::Other))
            }
            event::HEARTBEAT_LOG_EVENT | event::HEARTBEAT_LOG_EVENT_V2 => Ok(self.on_neutral()),
            event::ROTATE_EVENT
            | event::STOP_EVENT
            | event::GTID_LIST_EVENT
            | event::BINLOG_CHECKPOINT_EVENT
            | event::PREVIOUS_GTIDS_LOG_EVENT
            | event::INCIDENT_EVENT
            | event::START_ENCRYPTION_EVENT => self.on_between_groups(header.type_code),
            type_code => Ok(self.by_type(type_code)),
        }
    }

    /// Whether events of this type are classified by their type code alone, never by
    /// their content: such an event may be fed by its header (`feed_header`), so that a
    /// large one need not be held whole.
    pub fn classifies_by_type(type_code: u8) -> bool {
        !matches!(
            type_code,
            event::FORMAT_DESCRIPTION_EVENT
                | event::GTID_EVENT
                | event::GTID_LOG_EVENT
                | event::ANONYMOUS_GTID_LOG_EVENT
                | event::GTID_TAGGED_LOG_EVENT
                | event::QUERY_EVENT
                | event::QUERY_COMPRESSED_EVENT
                | event::HEARTBEAT_LOG_EVENT
                | event::HEARTBEAT_LOG_EVENT_V2
                | event::ROTATE_EVENT
                | event::STOP_EVENT
                | event::GTID_LIST_EVENT
                | event::BINLOG_CHECKPOINT_EVENT
                | event::PREVIOUS_GTIDS_LOG_EVENT
                | event::INCIDENT_EVENT
                | event::START_ENCRYPTION_EVENT
        )
    }

    /// As `feed`, for an event of `len` bytes of which `head` holds the first (a header
    /// at least); only for types `classifies_by_type` accepts (others are an error, and
    /// the tracker is unchanged).
    pub fn feed_header(&mut self, head: &[u8], len: usize) -> Result<Step> {
        let header = event::EventHeader::parse(head)?;
        if header.event_size as usize != len || len < event::HEADER_LEN {
            return Err(BinlogError::BadEventSize {
                event_size: header.event_size,
                available: len,
            });
        }
        if !Self::classifies_by_type(header.type_code) {
            return Err(BinlogError::UnexpectedEvent {
                type_code: header.type_code,
                reason: "this type is classified by its content: feed it whole",
            });
        }
        Ok(self.by_type(header.type_code))
    }

    /// The step of an event classified by its type code alone.
    fn by_type(&mut self, type_code: u8) -> Step {
        match type_code {
            event::XID_EVENT | event::XA_PREPARE_LOG_EVENT | event::TRANSACTION_PAYLOAD_EVENT => {
                self.on_terminator()
            }
            event::INTVAR_EVENT | event::RAND_EVENT | event::USER_VAR_EVENT => {
                self.on_statement_prefix()
            }
            _ => self.on_other(),
        }
    }

    fn unexpected(&mut self, type_code: u8, reason: &'static str) -> Result<Step> {
        self.reset();
        Err(BinlogError::UnexpectedEvent { type_code, reason })
    }

    fn end_group(&mut self) -> Step {
        self.reset();
        Step::END
    }

    fn on_format_description(&mut self, event: &[u8]) -> Result<Step> {
        if self.in_group() {
            return self.unexpected(
                event::FORMAT_DESCRIPTION_EVENT,
                "inside a transaction group",
            );
        }
        let fde = FormatDescription::parse(event)?;
        self.checksum_len = match fde.checksum_alg {
            ChecksumAlg::Crc32 => event::CHECKSUM_LEN,
            ChecksumAlg::Off | ChecksumAlg::Undefined => 0,
        };
        Ok(Step::SINGLE)
    }

    fn on_gtid(&mut self, header: &EventHeader, event: &[u8]) -> Result<Step> {
        if self.in_group() {
            return self.unexpected(header.type_code, "the previous group did not end");
        }
        let (gtid, state) = if header.type_code == event::GTID_EVENT {
            let parsed = MariaGtidEvent::parse(event, self.checksum_len)?;
            let state = if parsed.is_standalone() {
                State::MariaStandalone
            } else {
                State::Transaction { xa: false }
            };
            (Gtid::Maria(parsed.gtid), state)
        } else {
            (
                self.mysql_gtid(header.type_code, event)?,
                State::AfterMysqlGtid,
            )
        };
        self.state = state;
        self.group_gtid = Some(gtid.clone());
        Ok(Step {
            starts_group: true,
            ends_group: false,
            gtid: Some(gtid),
        })
    }

    fn mysql_gtid(&self, type_code: u8, event: &[u8]) -> Result<Gtid> {
        let parsed = MysqlGtidEvent::parse(event, self.checksum_len)?;
        if type_code == event::ANONYMOUS_GTID_LOG_EVENT {
            return Ok(Gtid::Anonymous);
        }
        let gno = u64::try_from(parsed.gno)
            .ok()
            .filter(|&gno| gno >= 1)
            .ok_or_else(|| BinlogError::Malformed {
                what: "MySQL GTID event",
                detail: format!("gno {}", parsed.gno),
            })?;
        Ok(Gtid::Mysql {
            uuid: parsed.uuid,
            tag: parsed.tag,
            gno,
        })
    }

    fn on_statement(&mut self, kind: QueryKind) -> Step {
        match (self.state, kind) {
            (State::Outside, QueryKind::Begin) => self.open(State::Transaction { xa: false }),
            (State::Outside, QueryKind::XaStart) => self.open(State::Transaction { xa: true }),
            (State::Outside, _) => Step::SINGLE,
            // MySQL 8.0.21+: a row-based CREATE TABLE … SELECT is one transaction, opened
            // by the CREATE and ended by the XID after its rows.
            (State::AfterMysqlGtid, QueryKind::Begin | QueryKind::CreateStartTransaction) => {
                self.state = State::Transaction { xa: false };
                Step::INSIDE
            }
            (State::AfterMysqlGtid, QueryKind::XaStart) => {
                self.state = State::Transaction { xa: true };
                Step::INSIDE
            }
            (State::AfterMysqlGtid | State::MariaStandalone | State::StatementPrefix, _) => {
                self.end_group()
            }
            (State::Transaction { .. }, QueryKind::Commit | QueryKind::Rollback) => {
                self.end_group()
            }
            (
                State::Transaction { xa: true },
                QueryKind::XaCommit | QueryKind::XaRollback | QueryKind::XaPrepare,
            ) => self.end_group(),
            (State::Transaction { .. }, _) => Step::INSIDE,
        }
    }

    fn open(&mut self, state: State) -> Step {
        self.state = state;
        self.group_gtid = None;
        Step {
            starts_group: true,
            ends_group: false,
            gtid: None,
        }
    }

    /// XID, XA_PREPARE or TRANSACTION_PAYLOAD: the end of whatever group is open.
    fn on_terminator(&mut self) -> Step {
        if self.in_group() {
            self.end_group()
        } else {
            Step::SINGLE
        }
    }

    fn on_statement_prefix(&mut self) -> Step {
        if self.in_group() {
            Step::INSIDE
        } else {
            self.open(State::StatementPrefix)
        }
    }

    fn on_neutral(&mut self) -> Step {
        if self.in_group() {
            Step::INSIDE
        } else {
            Step::SINGLE
        }
    }

    fn on_between_groups(&mut self, type_code: u8) -> Result<Step> {
        if self.in_group() {
            return self.unexpected(type_code, "inside a transaction group");
        }
        Ok(Step::SINGLE)
    }

    /// Row events, TABLE_MAP, ANNOTATE_ROWS and the rest: part of the open group, or a
    /// group of their own when none is open.
    fn on_other(&mut self) -> Step {
        self.on_neutral()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::event::{build_event, build_heartbeat, build_rotate, CHECKSUM_LEN};
    use crate::binlog::test_data::{events_of, mariadb_file, mariadb_files, mysql_files};

    /// One group: its GTID (if any) and the type codes of its events.
    #[derive(Debug)]
    struct Group {
        gtid: Option<Gtid>,
        types: Vec<u8>,
    }

    /// Events classified by type are classified the same from their header alone (by a
    /// second tracker fed the same events, headers only where it may); the others are
    /// refused that way and change nothing.
    #[test]
    fn headers_classify_like_whole_events() {
        let mut files: Vec<Vec<u8>> = mariadb_files().into_iter().map(|(_, f)| f).collect();
        files.extend(mysql_files().into_iter().map(|(_, f)| f));
        let mut by_header = 0;
        for file in &files {
            let mut whole = TransactionTracker::new(0);
            let mut heads = TransactionTracker::new(0);
            for event in events_of(file) {
                let type_code = event[event::TYPE_CODE_OFFSET];
                let want = whole.feed(event).unwrap();
                let got = if TransactionTracker::classifies_by_type(type_code) {
                    by_header += 1;
                    heads
                        .feed_header(&event[..event::HEADER_LEN], event.len())
                        .unwrap()
                } else {
                    let before = heads.clone();
                    assert!(heads.feed_header(event, event.len()).is_err());
                    assert_eq!(format!("{before:?}"), format!("{heads:?}"));
                    heads.feed(event).unwrap()
                };
                assert_eq!(got, want, "type {type_code}");
            }
        }
        assert!(by_header > 100, "{by_header} events by header");
        // A length that is not the header's is refused.
        let ev = build_event(event::XID_EVENT, 0, 1, 0, 0, &[0; 8], true);
        assert!(TransactionTracker::new(4)
            .feed_header(&ev, ev.len() + 1)
            .is_err());
    }

    /// Feeds a whole file, checking that starts and ends pair up, and returns its groups.
    fn groups_of(file: &[u8]) -> Vec<Group> {
        let mut tracker = TransactionTracker::new(0);
        let mut groups = Vec::new();
        let mut open: Option<Group> = None;
        for event in events_of(file) {
            let step = tracker.feed(event).unwrap();
            let type_code = event[event::TYPE_CODE_OFFSET];
            if step.starts_group {
                assert!(open.is_none(), "group started inside a group");
                open = Some(Group {
                    gtid: step.gtid.clone(),
                    types: Vec::new(),
                });
            }
            let group = open.as_mut().expect("event outside any group");
            group.types.push(type_code);
            if step.ends_group {
                groups.push(open.take().unwrap());
            }
            assert_eq!(tracker.in_group(), open.is_some());
        }
        assert!(open.is_none(), "file ends inside a group: {open:?}");
        groups
    }

    fn gtid_groups(groups: &[Group]) -> Vec<&Group> {
        groups.iter().filter(|g| g.gtid.is_some()).collect()
    }

    #[test]
    fn mysql_fixtures_group_counts() {
        let expected = [
            ("binlog-invisible-columns.000001", 5),
            ("kingbus-5.7-mysql_bin.000011", 11),
            ("kingbus-5.7-mysql_bin.000012", 10),
            ("kingbus-5.7-mysql_bin.000013", 10),
            ("mysql-5.7.21-bin.checksum-crc32", 60),
            ("mysql-enum-string-set.000001", 5),
            ("mysql_type_bit.000001", 3),
            ("transaction_compression.000001", 1),
        ];
        let files = mysql_files();
        assert_eq!(files.len(), expected.len());
        for ((name, bytes), (expected_name, count)) in files.iter().zip(expected) {
            assert_eq!(name, expected_name);
            let groups = groups_of(bytes);
            let gtids = gtid_groups(&groups);
            assert_eq!(gtids.len(), count, "{name}");
            for group in &gtids {
                // Every GTID group ends with a terminator or a statement.
                let last = *group.types.last().unwrap();
                assert!(
                    matches!(
                        last,
                        event::XID_EVENT
                            | event::QUERY_EVENT
                            | event::TRANSACTION_PAYLOAD_EVENT
                            | event::XA_PREPARE_LOG_EVENT
                    ),
                    "{name}: {group:?}"
                );
            }
            // Events that are not part of a GTID group stand alone.
            for group in groups.iter().filter(|g| g.gtid.is_none()) {
                assert_eq!(group.types.len(), 1, "{name}: {group:?}");
            }
        }
    }

    #[test]
    fn mysql_gtids_are_reported() {
        let files = mysql_files();
        let (_, kingbus) = files
            .iter()
            .find(|(name, _)| name == "kingbus-5.7-mysql_bin.000011")
            .unwrap();
        let groups = groups_of(kingbus);
        let gnos: Vec<u64> = gtid_groups(&groups)
            .iter()
            .map(|g| match g.gtid {
                Some(Gtid::Mysql { gno, tag: None, .. }) => gno,
                ref other => panic!("{other:?}"),
            })
            .collect();
        assert!(gnos.windows(2).all(|w| w[1] == w[0] + 1));
        let (_, anonymous) = files
            .iter()
            .find(|(name, _)| name == "mysql-5.7.21-bin.checksum-crc32")
            .unwrap();
        assert!(gtid_groups(&groups_of(anonymous))
            .iter()
            .all(|g| g.gtid == Some(Gtid::Anonymous)));
        // The compressed transaction (gtid_mode OFF) is ANONYMOUS_GTID + TRANSACTION_PAYLOAD.
        let (_, compressed) = files
            .iter()
            .find(|(name, _)| name == "transaction_compression.000001")
            .unwrap();
        let groups = groups_of(compressed);
        let payload = gtid_groups(&groups)[0];
        assert_eq!(
            payload.types,
            vec![
                event::ANONYMOUS_GTID_LOG_EVENT,
                event::TRANSACTION_PAYLOAD_EVENT
            ]
        );
    }

    #[test]
    fn mariadb_files_group_counts() {
        let expected = [
            ("bin.000001", 17),
            ("bin.000002", 3),
            ("bin.000003", 0),
            ("bin.000004", 2),
            ("bin.000005", 1),
            ("bin.000006", 10),
            ("bin.000007", 2),
            ("bin.000007-open", 2),
            ("bin.000008", 2),
            ("bin.000010", 4),
        ];
        let files = mariadb_files();
        assert_eq!(files.len(), expected.len());
        for ((name, bytes), (expected_name, count)) in files.iter().zip(expected) {
            assert_eq!(name, expected_name);
            let groups = groups_of(bytes);
            assert_eq!(gtid_groups(&groups).len(), count, "{name}");
            for group in groups.iter().filter(|g| g.gtid.is_none()) {
                assert_eq!(group.types.len(), 1, "{name}: {group:?}");
            }
        }
    }

    fn group_by_gtid<'a>(groups: &'a [Group], text: &str) -> &'a Group {
        let gtid = Gtid::Maria(MariaGtid::parse(text).unwrap());
        groups
            .iter()
            .find(|g| g.gtid.as_ref() == Some(&gtid))
            .unwrap_or_else(|| panic!("no group {text}"))
    }

    #[test]
    fn mariadb_group_shapes() {
        use event::*;
        let groups = groups_of(&mariadb_file("bin.000001"));
        // DDL: standalone GTID + QUERY.
        assert_eq!(
            group_by_gtid(&groups, "0-1-1").types,
            vec![GTID_EVENT, QUERY_EVENT]
        );
        // InnoDB DML in row format ends at XID.
        assert_eq!(
            group_by_gtid(&groups, "0-1-4").types,
            vec![
                GTID_EVENT,
                ANNOTATE_ROWS_EVENT,
                TABLE_MAP_EVENT,
                WRITE_ROWS_EVENT_V1,
                XID_EVENT
            ]
        );
        // MyISAM ends at a COMMIT query; statement format with INTVAR and USER_VAR.
        assert_eq!(
            group_by_gtid(&groups, "0-1-9").types,
            vec![
                GTID_EVENT,
                INTVAR_EVENT,
                USER_VAR_EVENT,
                QUERY_EVENT,
                QUERY_EVENT
            ]
        );
        // XA: the prepared part ends at XA_PREPARE, the commit is standalone.
        assert_eq!(
            *group_by_gtid(&groups, "0-1-10").types.last().unwrap(),
            XA_PREPARE_LOG_EVENT
        );
        assert_eq!(
            group_by_gtid(&groups, "0-1-11").types,
            vec![GTID_EVENT, QUERY_EVENT]
        );
        assert_eq!(
            group_by_gtid(&groups, "0-1-13").types,
            vec![GTID_EVENT, QUERY_EVENT]
        );
        assert_eq!(
            group_by_gtid(&groups, "2-1-2").types,
            vec![GTID_EVENT, QUERY_EVENT]
        );
        // Statement-format mixed transaction rolled back: ends at a ROLLBACK query.
        let groups = groups_of(&mariadb_file("bin.000008"));
        assert_eq!(
            group_by_gtid(&groups, "0-1-34").types,
            vec![
                GTID_EVENT,
                INTVAR_EVENT,
                QUERY_EVENT,
                INTVAR_EVENT,
                QUERY_EVENT,
                QUERY_EVENT
            ]
        );
        assert!(group_by_gtid(&groups, "5-7-1000")
            .types
            .ends_with(&[XID_EVENT]));
        // CREATE TABLE … SELECT in row format: a DDL GTID that is not standalone.
        let groups = groups_of(&mariadb_file("bin.000010"));
        assert_eq!(
            group_by_gtid(&groups, "0-1-35").types,
            vec![
                GTID_EVENT,
                QUERY_EVENT,
                ANNOTATE_ROWS_EVENT,
                TABLE_MAP_EVENT,
                WRITE_ROWS_EVENT_V1,
                XID_EVENT
            ]
        );
        assert_eq!(group_by_gtid(&groups, "0-1-36").types.len(), 6);
        assert_eq!(
            group_by_gtid(&groups, "0-1-37").types,
            vec![GTID_EVENT, QUERY_EVENT]
        );
        // Compressed query and rows events.
        let groups = groups_of(&mariadb_file("bin.000002"));
        assert_eq!(
            group_by_gtid(&groups, "0-1-18").types,
            vec![GTID_EVENT, QUERY_COMPRESSED_EVENT]
        );
        assert!(group_by_gtid(&groups, "0-1-16")
            .types
            .contains(&WRITE_ROWS_COMPRESSED_EVENT_V1));
    }

    #[test]
    fn checksum_len_follows_the_fde() {
        // bin.000004 has no CRCs; the tracker starts out assuming 4 and learns from the FDE.
        let file = mariadb_file("bin.000004");
        let mut tracker = TransactionTracker::new(CHECKSUM_LEN);
        let mut ends = 0;
        for event in events_of(&file) {
            let step = tracker.feed(event).unwrap();
            assert_eq!(tracker.checksum_len(), 0);
            ends += usize::from(step.ends_group);
        }
        // FDE, GTID_LIST, 2 checkpoints, 2 transactions, ROTATE.
        assert_eq!(ends, 7);
        let file = mariadb_file("bin.000005");
        for event in events_of(&file) {
            tracker.feed(event).unwrap();
            assert_eq!(tracker.checksum_len(), CHECKSUM_LEN);
        }
    }

    // ---- synthetic streams ----

    fn query(text: &str) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&7u32.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.push(1);
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(b"d\0");
        body.extend_from_slice(text.as_bytes());
        build_event(event::QUERY_EVENT, 1, 1, 0, 0, &body, true)
    }

    fn simple(type_code: u8, body_len: usize) -> Vec<u8> {
        build_event(type_code, 1, 1, 0, 0, &vec![0; body_len], true)
    }

    fn mysql_gtid(gno: i64) -> Vec<u8> {
        let mut body = vec![0u8];
        body.extend_from_slice(&[0xab; 16]);
        body.extend_from_slice(&gno.to_le_bytes());
        body.push(2);
        body.extend_from_slice(&[0; 16]);
        build_event(event::GTID_LOG_EVENT, 1, 1, 0, 0, &body, true)
    }

    fn maria_gtid(seq_no: u64, flags2: u8) -> Vec<u8> {
        let mut body = seq_no.to_le_bytes().to_vec();
        body.extend_from_slice(&0u32.to_le_bytes());
        body.push(flags2);
        body.extend_from_slice(&[0; 6]);
        build_event(event::GTID_EVENT, 1, 1, 0, 0, &body, true)
    }

    /// (starts, ends) per event.
    fn steps(events: &[Vec<u8>]) -> Vec<(bool, bool)> {
        let mut tracker = TransactionTracker::new(CHECKSUM_LEN);
        events
            .iter()
            .map(|e| {
                let step = tracker.feed(e).unwrap();
                (step.starts_group, step.ends_group)
            })
            .collect()
    }

    const S: (bool, bool) = (true, false);
    const I: (bool, bool) = (false, false);
    const E: (bool, bool) = (false, true);
    const SE: (bool, bool) = (true, true);

    #[test]
    fn old_style_without_gtids() {
        let events = vec![
            query("BEGIN"),
            simple(event::TABLE_MAP_EVENT, 10),
            simple(event::WRITE_ROWS_EVENT, 10),
            simple(event::XID_EVENT, 8),
            query("CREATE TABLE t (a INT)"),
            simple(event::INTVAR_EVENT, 9),
            query("INSERT INTO t VALUES (NULL)"),
            query("BEGIN"),
            query("INSERT INTO m VALUES (1)"),
            query("COMMIT"),
            simple(event::STOP_EVENT, 0),
        ];
        assert_eq!(steps(&events), vec![S, I, I, E, SE, S, E, S, I, E, SE]);
    }

    #[test]
    fn mysql_xa_and_ddl() {
        let events = vec![
            mysql_gtid(1),
            query("XA START X'31',X'',1"),
            simple(event::TABLE_MAP_EVENT, 10),
            simple(event::WRITE_ROWS_EVENT, 10),
            query("XA END X'31',X'',1"),
            simple(event::XA_PREPARE_LOG_EVENT, 20),
            mysql_gtid(2),
            query("XA COMMIT X'31',X'',1"),
            mysql_gtid(3),
            query("XA START X'32',X'',1"),
            query("XA END X'32',X'',1"),
            query("XA COMMIT X'32',X'',1 ONE PHASE"),
            mysql_gtid(4),
            query("DROP TABLE t"),
            mysql_gtid(5),
            simple(event::TRANSACTION_PAYLOAD_EVENT, 30),
            mysql_gtid(6),
            query("BEGIN"),
            query("INSERT INTO m VALUES (1)"),
            query("ROLLBACK"),
        ];
        assert_eq!(
            steps(&events),
            vec![S, I, I, I, I, E, S, E, S, I, I, E, S, E, S, E, S, I, I, E]
        );
    }

    /// MySQL 8.0.21+ logs a row-based CREATE TABLE … SELECT as one transaction: the CREATE
    /// (with a START TRANSACTION clause), the rows, the XID. A plain CREATE stays a group of
    /// its own.
    #[test]
    fn mysql_create_table_select_is_one_transaction() {
        let events = vec![
            mysql_gtid(1),
            query("CREATE TABLE `t2` (\n  `a` int DEFAULT NULL\n) START TRANSACTION"),
            simple(event::TABLE_MAP_EVENT, 10),
            simple(event::WRITE_ROWS_EVENT, 10),
            simple(event::XID_EVENT, 8),
            mysql_gtid(2),
            query("CREATE TABLE t3 (a INT)"),
            mysql_gtid(3),
            query("BEGIN"),
            simple(event::XID_EVENT, 8),
        ];
        assert_eq!(steps(&events), vec![S, I, I, I, E, S, E, S, I, E]);
    }

    #[test]
    fn maria_standalone_and_savepoints() {
        let events = vec![
            maria_gtid(1, event::FL_STANDALONE | event::FL_DDL),
            simple(event::ANNOTATE_ROWS_EVENT, 5),
            query("CREATE TABLE t (a INT)"),
            maria_gtid(2, event::FL_TRANSACTIONAL),
            query("SAVEPOINT a"),
            simple(event::WRITE_ROWS_EVENT, 10),
            query("ROLLBACK TO SAVEPOINT a"),
            simple(event::XID_EVENT, 8),
        ];
        assert_eq!(steps(&events), vec![S, I, E, S, I, I, I, E]);
    }

    #[test]
    fn heartbeats_inside_a_group_are_neutral() {
        let events = vec![
            build_rotate("bin.000001", 4, 1, true, true),
            build_heartbeat("bin.000001", 100, 1, true),
            maria_gtid(3, event::FL_TRANSACTIONAL),
            build_heartbeat("bin.000001", 150, 1, true),
            simple(event::XID_EVENT, 8),
        ];
        assert_eq!(steps(&events), vec![SE, SE, S, I, E]);
    }

    #[test]
    fn gtid_reported_and_remembered() {
        let mut tracker = TransactionTracker::new(CHECKSUM_LEN);
        let step = tracker.feed(&mysql_gtid(42)).unwrap();
        let expected = Gtid::Mysql {
            uuid: [0xab; 16],
            tag: None,
            gno: 42,
        };
        assert_eq!(step.gtid.as_ref(), Some(&expected));
        assert_eq!(tracker.group_gtid(), Some(&expected));
        assert_eq!(
            expected.to_string(),
            "abababab-abab-abab-abab-abababababab:42"
        );
        let step = tracker.feed(&query("CREATE TABLE t (a INT)")).unwrap();
        assert!(step.ends_group && step.gtid.is_none());
        assert_eq!(tracker.group_gtid(), None);
        assert!(tracker.feed(&mysql_gtid(0)).is_err());
        assert!(tracker.feed(&mysql_gtid(-5)).is_err());
    }

    #[test]
    fn unterminated_group_is_reported_and_reset() {
        let mut tracker = TransactionTracker::new(CHECKSUM_LEN);
        tracker
            .feed(&maria_gtid(1, event::FL_TRANSACTIONAL))
            .unwrap();
        tracker.feed(&simple(event::WRITE_ROWS_EVENT, 10)).unwrap();
        let next = maria_gtid(2, event::FL_TRANSACTIONAL);
        let err = tracker.feed(&next).unwrap_err();
        assert!(matches!(
            err,
            BinlogError::UnexpectedEvent {
                type_code: event::GTID_EVENT,
                ..
            }
        ));
        assert!(!tracker.in_group());
        // Re-feeding the event starts the new group.
        let step = tracker.feed(&next).unwrap();
        assert!(step.starts_group);
        // A ROTATE inside a group is an error too.
        let err = tracker
            .feed(&build_rotate("bin.000002", 4, 1, false, true))
            .unwrap_err();
        assert!(err.to_string().contains("ROTATE_EVENT"), "{err}");
    }

    #[test]
    fn bad_events_are_errors() {
        let mut tracker = TransactionTracker::new(CHECKSUM_LEN);
        assert!(tracker.feed(&[0; 10]).is_err());
        let mut wrong_size = query("BEGIN");
        wrong_size.push(0);
        assert!(matches!(
            tracker.feed(&wrong_size),
            Err(BinlogError::BadEventSize { .. })
        ));
        let short_query = build_event(event::QUERY_EVENT, 1, 1, 0, 0, &[1, 2, 3], true);
        assert!(tracker.feed(&short_query).is_err());
        assert!(!tracker.in_group());
    }
}
