//! raft-rs's log lines, through ferrobus's logger: raft-rs logs with `slog`, ferrobus with
//! `log` (target `raft`). A line keeps its key-value context (`key=value` after the
//! message), and values under the keys that hold a raft id are written in hex, as ferrobus's
//! own lines, the API and `ctl` write ids.
//!
//! Formatting only: no I/O besides handing the line to `log`.

use std::fmt::{self, Write as _};

/// Keys under which raft-rs logs a raft id (as a `u64`).
const RAFT_ID_KEYS: [&str; 6] = ["from", "to", "vote", "id", "leader_id", "lead"];

/// The logger to give raft-rs for node `id` (the id itself is not repeated on each line:
/// a process runs one node).
pub fn raft_logger(id: u64) -> slog::Logger {
    slog::Logger::root(LogDrain, slog::o!("raft_id" => id))
}

struct LogDrain;

impl slog::Drain for LogDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        let level = match record.level() {
            slog::Level::Critical | slog::Level::Error => log::Level::Error,
            slog::Level::Warning => log::Level::Warn,
            slog::Level::Info => log::Level::Info,
            slog::Level::Debug => log::Level::Debug,
            slog::Level::Trace => log::Level::Trace,
        };
        if log::log_enabled!(target: "raft", level) {
            log::log!(target: "raft", level, "{}", line(record));
        }
        Ok(())
    }
}

/// The message, then the record's own key-values in the order raft-rs wrote them (a key's
/// blanks become `_`: raft-rs has keys such as `last index`).
fn line(record: &slog::Record) -> String {
    let mut pairs = KeyValues(Vec::new());
    // A `KeyValues` never fails to serialize.
    let _ = slog::KV::serialize(&record.kv(), record, &mut pairs);
    let mut out = record.msg().to_string();
    // slog hands them over last first.
    for (key, value) in pairs.0.iter().rev() {
        let _ = write!(out, " {}={value}", key.replace(' ', "_"));
    }
    out
}

/// A record's key-value pairs, each value formatted.
struct KeyValues(Vec<(&'static str, String)>);

impl KeyValues {
    fn push(&mut self, key: &'static str, value: fmt::Arguments) {
        self.0.push((key, value.to_string()));
    }
}

impl slog::Serializer for KeyValues {
    fn emit_arguments(&mut self, key: slog::Key, value: &fmt::Arguments) -> slog::Result {
        self.push(key, *value);
        Ok(())
    }

    fn emit_u64(&mut self, key: slog::Key, value: u64) -> slog::Result {
        if RAFT_ID_KEYS.contains(&key) {
            self.push(key, format_args!("{value:x}"));
        } else {
            self.push(key, format_args!("{value}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What raft-rs's macros build: a static record with key-values.
    fn render(kv: impl slog::KV + Sync) -> String {
        static RS: slog::RecordStatic = slog::record_static!(slog::Level::Info, "");
        line(&slog::Record::new(
            &RS,
            &format_args!("received votes response"),
            slog::BorrowedKV(&kv),
        ))
    }

    #[test]
    fn ids_are_hex_and_other_values_as_given() {
        let text = render(slog::o!("from" => 0x2824fb30bb22f7e_u64, "term" => 12_u64,
            "type" => "MsgRequestVote", "last index" => 0_usize));
        assert_eq!(
            text,
            "received votes response from=2824fb30bb22f7e term=12 type=MsgRequestVote \
             last_index=0"
        );
    }

    #[test]
    fn a_message_without_key_values_is_left_alone() {
        assert_eq!(render(slog::o!()), "received votes response");
    }
}
