//! Durable storage: the segmented append-only log of entries (later the Raft log) that
//! holds the binlog, with one writer and many concurrent readers.
//!
//! - `record`: the on-disk format, pure.
//! - `seglog`: the log itself ([`Log`] writer, [`LogReader`] handles), files and recovery.
//! - `error`: [`StorageError`].
//! - `latency`: lock-free latency histograms (how long the log's syncs take).
//!
//! This module must not interpret entry data: `kind` and `data` are opaque here.

pub mod error;
pub mod latency;
pub mod record;
pub mod seglog;

pub use error::StorageError;
pub use latency::{LatencyHistogram, LatencySnapshot};
pub use record::Entry;
pub use seglog::{DataRange, Log, LogOptions, LogReader, Recovery, SyncJob};
