//! Learner promotion. `POST /members` adds a member as a raft learner: it receives the log
//! (entries, or a snapshot when the leader has compacted them away) but does not vote, so
//! a node still catching up never counts against the quorum, and a one-node cluster can
//! grow. The leader promotes a learner to voter once it has caught up: the leader streams
//! entries to it, its log matches the leader's up to at most `LEARNER_CATCH_UP_ENTRIES`
//! before the commit index, the leader heard from it within `PEER_ACTIVE_WINDOW_MS`, and
//! the active voters with it are a quorum of the larger configuration.
//!
//! The rule is [`ready_learner`] (pure); the thread around it looks every
//! `LEARNER_CHECK_INTERVAL_MS` and has the node propose the promotion, under the lock of
//! the node's membership changes like any API call (so one that waits for its commit, up
//! to `PROPOSE_TIMEOUT_MS`, holds those and the thread's stop that long). After a failed
//! proposal it waits `LEARNER_PROMOTE_RETRY_MS` before the next.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::consensus::node::RaftStatus;
use crate::consensus::state::check_quorum_after_add;
use crate::limits::{
    LEARNER_CATCH_UP_ENTRIES, LEARNER_CHECK_INTERVAL_MS, LEARNER_PROMOTE_RETRY_MS,
    PEER_ACTIVE_WINDOW_MS,
};

use super::worker::Worker;
use super::Node;

/// A learner ready to vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadyLearner {
    pub id: u64,
    /// The last index known to be in its log.
    pub matched: u64,
    /// The leader's commit index then.
    pub commit: u64,
}

/// The learner the leader should promote now, if any (the lowest id of those ready): one
/// `is_member` knows (a guard: a learner without a member table entry is never promoted),
/// caught up, heard from
/// recently, and whose promotion keeps a quorum of active voters. `None` off the leader.
pub fn ready_learner(
    status: &RaftStatus,
    now: Instant,
    is_member: impl Fn(u64) -> bool,
) -> Option<ReadyLearner> {
    if !status.is_leader() {
        return None;
    }
    let window = Duration::from_millis(PEER_ACTIVE_WINDOW_MS);
    status.peers.iter().find_map(|(progress, heard)| {
        let id = progress.id;
        let caught_up = progress.state == "replicate"
            && progress.matched + LEARNER_CATCH_UP_ENTRIES >= status.commit;
        let active = heard.is_some_and(|t| now.saturating_duration_since(t) < window);
        if !status.learners.contains(&id) || !is_member(id) || !caught_up || !active {
            return None;
        }
        let mut voting = status.active_voters.clone();
        voting.push(id);
        check_quorum_after_add(&status.voters, &voting, id).ok()?;
        Some(ReadyLearner {
            id,
            matched: progress.matched,
            commit: status.commit,
        })
    })
}

/// The promotion thread (every node runs one; it acts only while its node leads).
pub struct PromoteThread(Worker);

impl PromoteThread {
    pub fn start(node: Arc<Node>) -> PromoteThread {
        PromoteThread(Worker::spawn("promote", move |stop| run(&node, stop)))
    }

    pub fn stop(self) {
        self.0.stop();
    }
}

fn run(node: &Node, stop: &AtomicBool) {
    let mut next_try = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(LEARNER_CHECK_INTERVAL_MS));
        let status = node.raft.status();
        if Instant::now() < next_try || !status.is_leader() || status.learners.is_empty() {
            continue;
        }
        if !node.promote_ready_learner() {
            next_try = Instant::now() + Duration::from_millis(LEARNER_PROMOTE_RETRY_MS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::driver::PeerProgress;
    use crate::consensus::driver::Role;

    /// Leader 1 of voters `voters` (all active) with learner 4 at `matched`, in `state`,
    /// last heard `heard_ago` ago; commit index 1000.
    fn status(
        voters: &[u64],
        matched: u64,
        state: &'static str,
        heard_ago: Option<Duration>,
    ) -> (RaftStatus, Instant) {
        let now = Instant::now() + Duration::from_secs(60);
        let progress = PeerProgress {
            id: 4,
            matched,
            next: matched + 1,
            state,
        };
        let status = RaftStatus {
            id: 1,
            leader_id: 1,
            term: 3,
            commit: 1000,
            applied: 1000,
            voters: voters.to_vec(),
            learners: vec![4],
            running: true,
            active_voters: voters.to_vec(),
            leading_since: Some(now),
            role: Role::Leader,
            first_index: 1,
            last_index: 1000,
            persisted: 1000,
            peers: vec![(progress, heard_ago.map(|ago| now - ago))],
        };
        (status, now)
    }

    const RECENT: Option<Duration> = Some(Duration::from_millis(100));

    #[test]
    fn a_caught_up_active_learner_is_promoted() {
        let (s, now) = status(&[1, 2, 3], 1000, "replicate", RECENT);
        let ready = ready_learner(&s, now, |_| true);
        assert_eq!(
            ready,
            Some(ReadyLearner {
                id: 4,
                matched: 1000,
                commit: 1000
            })
        );
        // A little behind a moving commit index is caught up too.
        let (s, now) = status(
            &[1, 2, 3],
            1000 - LEARNER_CATCH_UP_ENTRIES,
            "replicate",
            RECENT,
        );
        assert!(ready_learner(&s, now, |_| true).is_some());
        // A one-node cluster grows: the learner and the leader make a quorum of two.
        let (s, now) = status(&[1], 1000, "replicate", RECENT);
        assert_eq!(ready_learner(&s, now, |_| true).map(|r| r.id), Some(4));
    }

    #[test]
    fn a_learner_behind_idle_or_unknown_waits() {
        let behind = 999 - LEARNER_CATCH_UP_ENTRIES;
        let (s, now) = status(&[1, 2, 3], behind, "replicate", RECENT);
        assert_eq!(ready_learner(&s, now, |_| true), None, "behind");
        for state in ["probe", "snapshot"] {
            let (s, now) = status(&[1, 2, 3], 1000, state, RECENT);
            assert_eq!(ready_learner(&s, now, |_| true), None, "{state}");
        }
        let stale = Some(Duration::from_millis(PEER_ACTIVE_WINDOW_MS + 1));
        for heard in [None, stale] {
            let (s, now) = status(&[1, 2, 3], 1000, "replicate", heard);
            assert_eq!(ready_learner(&s, now, |_| true), None, "heard {heard:?}");
        }
        // Not in the member table.
        let (s, now) = status(&[1, 2, 3], 1000, "replicate", RECENT);
        assert_eq!(ready_learner(&s, now, |id| id != 4), None, "not a member");
        // Off the leader.
        let (mut s, now) = status(&[1, 2, 3], 1000, "replicate", RECENT);
        s.role = Role::Follower;
        assert_eq!(ready_learner(&s, now, |_| true), None, "follower");
        // A voter's progress is not a learner's.
        let (mut s, now) = status(&[1, 2, 3], 1000, "replicate", RECENT);
        s.learners.clear();
        assert_eq!(ready_learner(&s, now, |_| true), None, "no learner");
    }

    #[test]
    fn a_promotion_that_would_break_the_quorum_waits() {
        // Voters 1, 2, 3 with only 1 active: 1 and 4 are 2 of 4, not a quorum.
        let (mut s, now) = status(&[1, 2, 3], 1000, "replicate", RECENT);
        s.active_voters = vec![1];
        assert_eq!(ready_learner(&s, now, |_| true), None);
        // With 2 active, 3 of 4 are: promoted.
        s.active_voters = vec![1, 2];
        assert!(ready_learner(&s, now, |_| true).is_some());
    }
}
