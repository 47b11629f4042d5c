//! A named background thread of the daemon that runs until it is told to stop: the stop
//! flag it polls, and a `stop` that sets it and joins the thread. Nothing else.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

pub struct Worker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Worker {
    /// Runs `body` on a new thread called `name`; `body` returns once the flag it is given
    /// is set.
    pub fn spawn(name: &str, body: impl FnOnce(&AtomicBool) + Send + 'static) -> Worker {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = thread::Builder::new()
            .name(name.into())
            .spawn(move || body(&s))
            .unwrap_or_else(|e| panic!("spawn the {name} thread: {e}"));
        Worker { stop, thread }
    }

    /// Sets the stop flag and waits for the thread to end.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}
