//! `SyncThread`: the thread that runs the raft log's fdatasyncs for the raft thread (the
//! node's [`SyncWorker`]), so that the raft thread keeps taking acknowledgements, sending
//! appends and writing the next entries while the disk syncs the previous ones.
//!
//! Jobs run one at a time, in the order given; after each, the outcome is queued for the
//! driver and the raft thread is woken. Dropping the handle lets the running job finish and
//! joins the thread.
//!
//! This module must not touch raft, the log's writer or the state files: it only runs
//! `SyncJob::run`, whose outcome the driver applies on the raft thread.

use std::io;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::{self, JoinHandle};

use crate::consensus::driver::{SyncOutcome as Outcome, SyncWorker};
use crate::storage::{StorageError, SyncJob};

/// The sync thread of one raft node.
pub struct SyncThread {
    jobs: Option<Sender<SyncJob>>,
    done: Receiver<Outcome>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SyncThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncThread").finish_non_exhaustive()
    }
}

impl SyncThread {
    /// Starts the thread `name`; `wake` is called after each job (it must not block: the
    /// raft thread may be busy, and then it looks for outcomes before it waits again).
    pub fn start(name: String, wake: Box<dyn Fn() + Send>) -> io::Result<SyncThread> {
        let (jobs, job_rx) = mpsc::channel::<SyncJob>();
        let (done_tx, done) = mpsc::channel();
        let thread = thread::Builder::new().name(name).spawn(move || {
            for job in job_rx {
                let outcome = job.run();
                if done_tx.send((job.upto(), outcome)).is_err() {
                    return;
                }
                wake();
            }
        })?;
        Ok(SyncThread {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }
}

/// What the driver gets when the thread is gone (it panicked): durability is unknown.
fn thread_gone() -> Outcome {
    let source = io::Error::other("the raft log's sync thread stopped");
    let path = PathBuf::from("(raft log sync thread)");
    (0, Err(StorageError::SyncFailed { path, source }))
}

impl SyncWorker for SyncThread {
    fn submit(&mut self, job: SyncJob) {
        // A send fails only when the thread is gone; `finished` then says so.
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    fn wait(&mut self) -> Outcome {
        self.done.recv().unwrap_or_else(|_| thread_gone())
    }

    fn poll(&mut self) -> Option<Outcome> {
        match self.done.try_recv() {
            Ok(outcome) => Some(outcome),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(thread_gone()),
        }
    }
}

impl Drop for SyncThread {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::storage::{Entry, Log};

    #[test]
    fn runs_jobs_in_order_wakes_after_each_and_readers_see_them_once_finished() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path()).unwrap();
        let reader = log.reader();
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&wakes);
        let wake = Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let mut worker = SyncThread::start("test-sync".into(), wake).unwrap();
        for round in 1..=3u64 {
            let entry = Entry {
                index: round,
                term: 1,
                kind: 1,
                data: vec![round as u8; 100].into(),
            };
            log.append(&[entry]).unwrap();
            worker.submit(log.begin_sync().unwrap().unwrap());
            let (upto, outcome) = worker.wait();
            assert_eq!(upto, round);
            assert_eq!(
                reader.last_index(),
                round - 1,
                "not visible before finish_sync"
            );
            log.finish_sync(upto, outcome).unwrap();
            assert_eq!(reader.last_index(), round);
        }
        assert!(worker.poll().is_none());
        drop(worker);
        assert_eq!(wakes.load(Ordering::SeqCst), 3);
    }
}
