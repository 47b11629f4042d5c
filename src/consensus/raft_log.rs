//! raft-rs's log lines, through ferrobus's logger: raft-rs logs with `slog`, ferrobus with
//! `log` (target `raft`). A line keeps its key-value context (`key=value` after the
//! message), and values under the keys that hold a raft id are written in hex, as ferrobus's
//! own lines, the API and `ctl` write ids. Values that hold whole messages or entries (raft-rs
//! logs every message it sends at debug level) are left out: they carry the binlog itself
//! and the syncer's settings, the master's password among them; any other value is cut at
//! `RAFT_LOG_VALUE_CHARS_MAX` characters.
//!
//! Formatting only: no I/O besides handing the line to `log`.

use std::fmt::{self, Write as _};

/// Keys under which raft-rs (0.7) logs a raft id as a `u64` (slog makes a key of a named
/// format argument too, as in "vote for {vote}").
const RAFT_ID_KEYS: [&str; 6] = [
    "from",
    "to",
    "id",
    "vote",
    "lead_transferee",
    "last_lead_transferee",
];

/// Keys under which raft-rs (0.7) logs a whole message (`msg`) or entries (`ents`): left
/// out of the line (see the module doc).
const CONTENT_KEYS: [&str; 2] = ["msg", "ents"];

/// Longest value written for one key (a Debug-formatted configuration is about 200).
const RAFT_LOG_VALUE_CHARS_MAX: usize = 400;

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
        let text = if CONTENT_KEYS.contains(&key) {
            "(left out)".to_string()
        } else {
            let text = value.to_string();
            match text.char_indices().nth(RAFT_LOG_VALUE_CHARS_MAX) {
                Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()),
                None => text,
            }
        };
        self.0.push((key, text));
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
        let text = render(slog::o!("vote" => 0x2a_u64, "lead_transferee" => 0x2b_u64));
        assert_eq!(text, "received votes response vote=2a lead_transferee=2b");
    }

    #[test]
    fn messages_and_entries_are_left_out_and_long_values_cut() {
        let secret = "mysql_password: \"s3cret\"";
        let text = render(slog::o!("msg" => format!("Message {{ {secret} }}"),
            "ents" => format!("[Entry {{ {secret} }}]"), "config" => "x".repeat(1000)));
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("msg=(left out) ents=(left out)"), "{text}");
        let expected = format!(
            "config={}… (1000 bytes)",
            "x".repeat(RAFT_LOG_VALUE_CHARS_MAX)
        );
        assert!(text.ends_with(&expected), "{text}");
    }

    #[test]
    fn a_message_without_key_values_is_left_alone() {
        assert_eq!(render(slog::o!()), "received votes response");
    }
}
