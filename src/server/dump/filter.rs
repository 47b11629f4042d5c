//! Skipping what a GTID-mode replica already has: whole MariaDB groups up to the GTIDs of
//! its state, or the MySQL transactions in its gtid_executed. Pure: events in, decisions out.

use crate::binlog::event;
use crate::binlog::gtid::{MariaGtidList, MysqlGtidSet};
use crate::binlog::transaction::{Gtid, Step, TransactionTracker};

/// Which groups a [`GroupFilter`] skips.
enum Rule {
    /// MariaDB: per domain, the GTID to reach; groups of that domain are skipped until it
    /// has passed.
    Maria {
        pending: MariaGtidList,
        /// The domain whose pending GTID is the group being skipped now.
        reaching: Option<u32>,
    },
    /// MySQL: the transactions in the replica's gtid_executed (anonymous ones never).
    Mysql {
        exclude: MysqlGtidSet,
        /// End position of the last skipped event not yet told to the replica.
        skipped_to: Option<u64>,
    },
}

/// Skips the groups a GTID-mode replica already has, following transactions with the same
/// tracker the store indexed with.
pub(super) struct GroupFilter {
    rule: Rule,
    tracker: TransactionTracker,
    skipping: bool,
}

impl GroupFilter {
    /// For a MariaDB replica whose state still needs `pending` reached.
    pub(super) fn maria(pending: MariaGtidList, checksum_len: usize) -> GroupFilter {
        GroupFilter::with(
            Rule::Maria {
                pending,
                reaching: None,
            },
            checksum_len,
        )
    }

    /// For a MySQL replica with gtid_executed `exclude`.
    pub(super) fn mysql(exclude: MysqlGtidSet, checksum_len: usize) -> GroupFilter {
        GroupFilter::with(
            Rule::Mysql {
                exclude,
                skipped_to: None,
            },
            checksum_len,
        )
    }

    fn with(rule: Rule, checksum_len: usize) -> GroupFilter {
        GroupFilter {
            rule,
            tracker: TransactionTracker::new(checksum_len),
            skipping: false,
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
        Ok(self.decide(step, end_pos))
    }

    /// The same for an event of `len` bytes known by its first bytes `head` (one
    /// streamed in pieces; only of a type `TransactionTracker::classifies_by_type` accepts).
    pub(super) fn skip_head(
        &mut self,
        head: &[u8],
        len: usize,
        end_pos: u64,
    ) -> Result<bool, String> {
        let step = self
            .tracker
            .feed_header(head, len)
            .map_err(|e| e.to_string())?;
        Ok(self.decide(step, end_pos))
    }

    fn decide(&mut self, step: Step, end_pos: u64) -> bool {
        if step.starts_group {
            self.skipping = match (&mut self.rule, &step.gtid) {
                (Rule::Maria { pending, reaching }, Some(Gtid::Maria(g))) => {
                    match pending.get(g.domain_id) {
                        Some(target) => {
                            if *target == *g {
                                *reaching = Some(g.domain_id);
                            }
                            true
                        }
                        None => false,
                    }
                }
                (Rule::Mysql { exclude, .. }, Some(Gtid::Mysql { uuid, tag, gno })) => {
                    exclude.contains_gtid(uuid, tag.as_deref(), *gno)
                }
                _ => false,
            };
        }
        let skip = self.skipping;
        match &mut self.rule {
            Rule::Mysql { skipped_to, .. } if skip => *skipped_to = Some(end_pos),
            Rule::Maria { pending, reaching } if step.ends_group => {
                if let Some(domain) = reaching.take() {
                    pending.remove(domain);
                }
            }
            _ => {}
        }
        if step.ends_group {
            self.skipping = false;
        }
        skip
    }

    /// MySQL: the end of the skipped events not yet told to the replica, once (a MySQL
    /// source moves the replica's position past them with a heartbeat). Never for MariaDB.
    pub(super) fn take_skipped(&mut self) -> Option<u64> {
        match &mut self.rule {
            Rule::Mysql { skipped_to, .. } => skipped_to.take(),
            Rule::Maria { .. } => None,
        }
    }
}
