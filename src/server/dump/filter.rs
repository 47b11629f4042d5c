//! Skipping what a GTID-mode replica already has: whole MariaDB groups up to the GTIDs of
//! its state, or the MySQL transactions in its gtid_executed. Pure: events in, decisions out.

use crate::binlog::event;
use crate::binlog::gtid::{MariaGtidList, MysqlGtidSet};
use crate::binlog::transaction::{Gtid, TransactionTracker};

/// Skips the groups a GTID-mode replica already has.
pub(super) struct GroupFilter {
    /// Per domain, the GTID to reach; groups of that domain are skipped until it has passed.
    pending: MariaGtidList,
    tracker: TransactionTracker,
    skipping: bool,
    /// The domain whose pending GTID is the group being skipped now.
    reaching: Option<u32>,
}

impl GroupFilter {
    pub(super) fn new(pending: MariaGtidList) -> GroupFilter {
        GroupFilter {
            pending,
            tracker: TransactionTracker::new(4),
            skipping: false,
            reaching: None,
        }
    }

    pub(super) fn new_file(&mut self, fde: &[u8]) {
        self.tracker = TransactionTracker::new(event::checksum_len_of_fde(fde));
        self.skipping = false;
    }

    /// Whether to skip this event (an error: the event cannot be followed).
    pub(super) fn skip(&mut self, ev: &[u8]) -> Result<bool, String> {
        let step = self.tracker.feed(ev).map_err(|e| e.to_string())?;
        if step.starts_group {
            self.skipping = match step.gtid {
                Some(Gtid::Maria(g)) => match self.pending.get(g.domain_id) {
                    Some(target) => {
                        if *target == g {
                            self.reaching = Some(g.domain_id);
                        }
                        true
                    }
                    None => false,
                },
                _ => false,
            };
        }
        let skip = self.skipping;
        if step.ends_group {
            if let Some(domain) = self.reaching.take() {
                self.pending.remove(domain);
            }
            self.skipping = false;
        }
        Ok(skip)
    }
}

/// Skips the transactions a MySQL GTID-mode replica already has (anonymous ones never), and
/// remembers where the last skipped one ended.
pub(super) struct MysqlGroupFilter {
    exclude: MysqlGtidSet,
    tracker: TransactionTracker,
    skipping: bool,
    /// End position of the last skipped event not yet told to the replica.
    skipped_to: Option<u64>,
}

impl MysqlGroupFilter {
    pub(super) fn new(exclude: MysqlGtidSet, checksum_len: usize) -> MysqlGroupFilter {
        MysqlGroupFilter {
            exclude,
            tracker: TransactionTracker::new(checksum_len),
            skipping: false,
            skipped_to: None,
        }
    }

    pub(super) fn new_file(&mut self, fde: &[u8]) {
        self.tracker = TransactionTracker::new(event::checksum_len_of_fde(fde));
        self.skipping = false;
    }

    /// Whether to skip this event, which ends at `end_pos` (an error: the event cannot be
    /// followed).
    pub(super) fn skip(&mut self, ev: &[u8], end_pos: u64) -> Result<bool, String> {
        let step = self.tracker.feed(ev).map_err(|e| e.to_string())?;
        if step.starts_group {
            self.skipping = match &step.gtid {
                Some(Gtid::Mysql { uuid, tag, gno }) => {
                    self.exclude.contains_gtid(uuid, tag.as_deref(), *gno)
                }
                _ => false,
            };
        }
        let skip = self.skipping;
        if skip {
            self.skipped_to = Some(end_pos);
        }
        if step.ends_group {
            self.skipping = false;
        }
        Ok(skip)
    }

    /// The end of the skipped events not yet told to the replica, once.
    pub(super) fn take_skipped(&mut self) -> Option<u64> {
        self.skipped_to.take()
    }
}
