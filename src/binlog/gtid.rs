//! Global transaction ids of both flavours, as values with their text and binary forms.
//!
//! - MariaDB: a [`MariaGtid`] is `domain-server-seq` (`0-1-5`); a [`MariaGtidList`] holds one
//!   GTID per replication domain (a replica's `gtid_slave_pos`, a master's `gtid_binlog_pos`).
//! - MySQL: a [`MysqlGtidSet`] maps a source id (uuid, and since MySQL 8.3 an optional tag)
//!   to sorted, disjoint, non-adjacent intervals of transaction numbers, written
//!   `uuid:1-5:7,uuid2:tag:1-3`, and encoded in binary for COM_BINLOG_DUMP_GTID and the
//!   PREVIOUS_GTIDS event.
//!
//! Pure values: no I/O. Bad text or bytes give [`BinlogError`], never a panic.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::event::{put_varint_u64, varint_u64};
use super::reader::Reader;
use super::{BinlogError, Result};

fn text_error(text: &str, reason: &'static str) -> BinlogError {
    BinlogError::GtidText {
        text: text.to_string(),
        reason,
    }
}

// ======================= MariaDB =======================

/// A MariaDB GTID: `domain_id-server_id-seq_no`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MariaGtid {
    pub domain_id: u32,
    pub server_id: u32,
    pub seq_no: u64,
}

impl MariaGtid {
    /// Parses `0-1-5` (surrounding whitespace allowed).
    pub fn parse(text: &str) -> Result<MariaGtid> {
        let mut parts = text.trim().split('-');
        let mut next = |reason| {
            parts
                .next()
                .map(str::trim)
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| text_error(text, reason))
        };
        let domain = next("domain id is not a number")?;
        let server = next("server id is not a number")?;
        let seq = next("sequence number is not a number")?;
        if parts.next().is_some() {
            return Err(text_error(text, "more than three parts"));
        }
        Ok(MariaGtid {
            domain_id: domain
                .parse()
                .map_err(|_| text_error(text, "domain id out of range"))?,
            server_id: server
                .parse()
                .map_err(|_| text_error(text, "server id out of range"))?,
            seq_no: seq
                .parse()
                .map_err(|_| text_error(text, "sequence number out of range"))?,
        })
    }
}

impl fmt::Display for MariaGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain_id, self.server_id, self.seq_no)
    }
}

impl FromStr for MariaGtid {
    type Err = BinlogError;
    fn from_str(text: &str) -> Result<MariaGtid> {
        MariaGtid::parse(text)
    }
}

/// A MariaDB GTID position: at most one GTID per domain, kept sorted by domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MariaGtidList {
    by_domain: BTreeMap<u32, MariaGtid>,
}

impl MariaGtidList {
    pub fn new() -> MariaGtidList {
        MariaGtidList::default()
    }

    /// Parses `0-1-5,1-2-9`. The empty string is the empty list; whitespace around items
    /// is allowed; two GTIDs of one domain are an error.
    pub fn parse(text: &str) -> Result<MariaGtidList> {
        let mut list = MariaGtidList::new();
        if text.trim().is_empty() {
            return Ok(list);
        }
        for item in text.split(',') {
            let gtid = MariaGtid::parse(item)?;
            if list.by_domain.insert(gtid.domain_id, gtid).is_some() {
                return Err(text_error(text, "two GTIDs for one domain"));
            }
        }
        Ok(list)
    }

    /// Builds a list from GTIDs; for a repeated domain the highest seq_no wins (a
    /// GTID_LIST event lists one GTID per domain *and server*).
    pub fn from_gtids<I: IntoIterator<Item = MariaGtid>>(gtids: I) -> MariaGtidList {
        let mut list = MariaGtidList::new();
        for gtid in gtids {
            match list.by_domain.get(&gtid.domain_id) {
                Some(existing) if existing.seq_no >= gtid.seq_no => {}
                _ => {
                    list.by_domain.insert(gtid.domain_id, gtid);
                }
            }
        }
        list
    }

    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_domain.len()
    }

    /// The GTIDs, sorted by domain.
    pub fn iter(&self) -> impl Iterator<Item = &MariaGtid> + '_ {
        self.by_domain.values()
    }

    pub fn get(&self, domain_id: u32) -> Option<&MariaGtid> {
        self.by_domain.get(&domain_id)
    }

    /// Sets the domain's GTID to `gtid` (what applying or logging it does).
    pub fn update(&mut self, gtid: MariaGtid) {
        self.by_domain.insert(gtid.domain_id, gtid);
    }

    /// Removes a domain's entry.
    pub fn remove(&mut self, domain_id: u32) -> Option<MariaGtid> {
        self.by_domain.remove(&domain_id)
    }

    /// Whether this position has reached `gtid`: same domain, seq_no at least as high.
    pub fn contains(&self, gtid: &MariaGtid) -> bool {
        self.get(gtid.domain_id)
            .is_some_and(|own| own.seq_no >= gtid.seq_no)
    }

    /// Per domain, the GTID with the larger seq_no (self's on a tie).
    pub fn union(&self, other: &MariaGtidList) -> MariaGtidList {
        let mut out = self.clone();
        for gtid in other.iter() {
            if !out.contains(gtid) {
                out.update(*gtid);
            }
        }
        out
    }

    /// The GTIDs of self that `other` does not contain.
    pub fn subtract(&self, other: &MariaGtidList) -> MariaGtidList {
        MariaGtidList {
            by_domain: self
                .by_domain
                .iter()
                .filter(|(_, gtid)| !other.contains(gtid))
                .map(|(domain, gtid)| (*domain, *gtid))
                .collect(),
        }
    }

    /// Appends the list as a GTID_LIST event body (count with flags 0, then 16 bytes each).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        for gtid in self.iter() {
            out.extend_from_slice(&gtid.domain_id.to_le_bytes());
            out.extend_from_slice(&gtid.server_id.to_le_bytes());
            out.extend_from_slice(&gtid.seq_no.to_le_bytes());
        }
    }

    /// Decodes a GTID_LIST event body (flags ignored). Where the event lists a domain more
    /// than once (one entry per server), the highest seq_no is kept.
    pub fn decode_body(body: &[u8]) -> Result<MariaGtidList> {
        let event = super::event::GtidListEvent::decode_body(body)?;
        Ok(MariaGtidList::from_gtids(event.gtids))
    }
}

impl fmt::Display for MariaGtidList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, gtid) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{gtid}")?;
        }
        Ok(())
    }
}

impl FromStr for MariaGtidList {
    type Err = BinlogError;
    fn from_str(text: &str) -> Result<MariaGtidList> {
        MariaGtidList::parse(text)
    }
}

// ======================= MySQL =======================

/// Longest MySQL GTID tag.
pub const TAG_LEN_MAX: usize = 32;
/// One past the largest transaction number MySQL allows (GNO_END = INT64_MAX).
pub const GNO_END: u64 = i64::MAX as u64;

/// A MySQL transaction source id: uuid plus (MySQL 8.3+) an optional lowercase tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tsid {
    pub uuid: [u8; 16],
    pub tag: Option<String>,
}

/// Formats a uuid as MySQL does: lowercase, 8-4-4-4-12.
pub fn format_uuid(uuid: &[u8; 16]) -> String {
    let mut out = String::with_capacity(36);
    for (i, byte) in uuid.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// A name-based UUID of `name`, formatted: the first 16 bytes of its SHA-1 with the version
/// 5 and RFC 4122 variant bits set (no namespace: the name itself says what it is for).
/// The same name always gives the same UUID, so one derived from stable ids survives
/// restarts.
pub fn name_based_uuid(name: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(name);
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&digest[..16]);
    uuid[6] = (uuid[6] & 0x0f) | 0x50;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    format_uuid(&uuid)
}

/// Parses a uuid with dashes (8-4-4-4-12) or as 32 bare hex digits, any case.
pub fn parse_uuid(text: &str) -> Result<[u8; 16]> {
    let text = text.trim();
    let dashed = text.len() == 36
        && text
            .char_indices()
            .all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) == (c == '-'));
    let hex: Vec<u8> = text.bytes().filter(|&b| b != b'-').collect();
    if !(dashed || text.len() == 32) || hex.len() != 32 {
        return Err(text_error(text, "not a uuid"));
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let digits = std::str::from_utf8(pair).map_err(|_| text_error(text, "not a uuid"))?;
        out[i] = u8::from_str_radix(digits, 16).map_err(|_| text_error(text, "not a uuid"))?;
    }
    Ok(out)
}

/// Validates and lowercases a MySQL tag: 1 to 32 characters, a letter or `_` first, then
/// letters, digits or `_`.
pub fn normalize_tag(text: &str) -> Result<String> {
    let tag = text.trim();
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok || !rest_ok || tag.len() > TAG_LEN_MAX {
        return Err(text_error(text, "not a valid tag"));
    }
    Ok(tag.to_ascii_lowercase())
}

/// A MySQL GTID set: per source id, sorted disjoint non-adjacent intervals `[start, end)`
/// of transaction numbers (1 <= start < end <= GNO_END). Sources without intervals are not
/// stored, so two equal sets compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MysqlGtidSet {
    sets: BTreeMap<Tsid, Vec<(u64, u64)>>,
}

/// Format marker in the high byte of n_sids for the tagged binary encoding.
const ENCODING_TAGGED: u8 = 1;
const ENCODING_UNTAGGED: u8 = 0;

impl MysqlGtidSet {
    pub fn new() -> MysqlGtidSet {
        MysqlGtidSet::default()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Every source id with its intervals `[start, end)`, in MySQL's order (uuid, then tag,
    /// untagged first).
    pub fn iter(&self) -> impl Iterator<Item = (&Tsid, &[(u64, u64)])> + '_ {
        self.sets.iter().map(|(tsid, ivs)| (tsid, ivs.as_slice()))
    }

    /// Adds one transaction. `tag` is validated and lowercased; gno must be in 1..GNO_END.
    pub fn add(&mut self, uuid: [u8; 16], tag: Option<&str>, gno: u64) -> Result<()> {
        self.add_interval(uuid, tag, gno, gno.saturating_add(1))
    }

    /// Adds the transactions `start..end` (end exclusive).
    pub fn add_interval(
        &mut self,
        uuid: [u8; 16],
        tag: Option<&str>,
        start: u64,
        end: u64,
    ) -> Result<()> {
        if start < 1 || end <= start || end > GNO_END {
            return Err(BinlogError::Malformed {
                what: "GTID interval",
                detail: format!("{start}..{end}"),
            });
        }
        let tag = tag.map(normalize_tag).transpose()?;
        self.insert_interval(Tsid { uuid, tag }, start, end);
        Ok(())
    }

    fn insert_interval(&mut self, tsid: Tsid, start: u64, end: u64) {
        let intervals = self.sets.entry(tsid).or_default();
        // Merge with every interval that overlaps or touches [start, end).
        let first = intervals.partition_point(|&(_, e)| e < start);
        let mut last = first;
        let (mut new_start, mut new_end) = (start, end);
        while last < intervals.len() && intervals[last].0 <= end {
            new_start = new_start.min(intervals[last].0);
            new_end = new_end.max(intervals[last].1);
            last += 1;
        }
        intervals.splice(first..last, [(new_start, new_end)]);
    }

    fn remove_interval(&mut self, tsid: &Tsid, start: u64, end: u64) {
        let Some(intervals) = self.sets.get_mut(tsid) else {
            return;
        };
        let mut kept = Vec::with_capacity(intervals.len() + 1);
        for &(s, e) in intervals.iter() {
            if e <= start || s >= end {
                kept.push((s, e));
                continue;
            }
            if s < start {
                kept.push((s, start));
            }
            if e > end {
                kept.push((end, e));
            }
        }
        if kept.is_empty() {
            self.sets.remove(tsid);
        } else {
            *intervals = kept;
        }
    }

    /// Whether the set holds transaction `gno` of (uuid, tag). Tags compare
    /// case-insensitively.
    pub fn contains_gtid(&self, uuid: &[u8; 16], tag: Option<&str>, gno: u64) -> bool {
        let tsid = Tsid {
            uuid: *uuid,
            tag: tag.map(str::to_ascii_lowercase),
        };
        self.sets.get(&tsid).is_some_and(|intervals| {
            let i = intervals.partition_point(|&(_, e)| e <= gno);
            intervals.get(i).is_some_and(|&(s, _)| s <= gno)
        })
    }

    /// Whether every transaction of self is in `other`.
    pub fn is_subset(&self, other: &MysqlGtidSet) -> bool {
        self.subtract(other).is_empty()
    }

    /// Every transaction in self or `other`.
    pub fn union(&self, other: &MysqlGtidSet) -> MysqlGtidSet {
        let mut out = self.clone();
        for (tsid, intervals) in &other.sets {
            for &(start, end) in intervals {
                out.insert_interval(tsid.clone(), start, end);
            }
        }
        out
    }

    /// The transactions of self that are not in `other`.
    pub fn subtract(&self, other: &MysqlGtidSet) -> MysqlGtidSet {
        let mut out = self.clone();
        for (tsid, intervals) in &other.sets {
            for &(start, end) in intervals {
                out.remove_interval(tsid, start, end);
            }
        }
        out
    }

    /// The transactions in both.
    pub fn intersection(&self, other: &MysqlGtidSet) -> MysqlGtidSet {
        self.subtract(&self.subtract(other))
    }

    /// Parses MySQL's text form: `uuid:1-5:7,uuid2:tag:1-3:othertag:4`. Whitespace
    /// (including newlines) around items is allowed, uuids may be any case, tags are
    /// lowercased. The empty string is the empty set.
    pub fn parse(text: &str) -> Result<MysqlGtidSet> {
        let mut set = MysqlGtidSet::new();
        for item in text.split(',') {
            if item.trim().is_empty() {
                continue;
            }
            set.parse_uuid_set(item)?;
        }
        Ok(set)
    }

    fn parse_uuid_set(&mut self, item: &str) -> Result<()> {
        let mut parts = item.split(':');
        let uuid = parse_uuid(parts.next().unwrap_or(""))?;
        let mut tag: Option<String> = None;
        // A uuid or a tag must be followed by at least one interval.
        let mut pending = true;
        for part in parts {
            let part = part.trim();
            if part.starts_with(|c: char| c.is_ascii_digit()) {
                let (start, end) =
                    parse_interval(part).ok_or_else(|| text_error(item, "bad interval"))?;
                self.insert_interval(
                    Tsid {
                        uuid,
                        tag: tag.clone(),
                    },
                    start,
                    end,
                );
                pending = false;
            } else {
                if pending && tag.is_some() {
                    return Err(text_error(item, "tag without intervals"));
                }
                tag = Some(normalize_tag(part)?);
                pending = true;
            }
        }
        if pending {
            return Err(text_error(item, "no interval"));
        }
        Ok(())
    }

    /// The text form on one line: `uuid:1-5:7:tag:1-3,uuid2:1-9`.
    pub fn format(&self) -> String {
        self.format_with(",")
    }

    /// The text form exactly as MySQL shows it (`@@gtid_executed`, SHOW MASTER STATUS):
    /// source uuids separated by `,\n`.
    pub fn format_mysql(&self) -> String {
        self.format_with(",\n")
    }

    fn format_with(&self, separator: &str) -> String {
        let mut out = String::new();
        let mut previous_uuid: Option<[u8; 16]> = None;
        for (tsid, intervals) in &self.sets {
            if previous_uuid != Some(tsid.uuid) {
                if previous_uuid.is_some() {
                    out.push_str(separator);
                }
                out.push_str(&format_uuid(&tsid.uuid));
                previous_uuid = Some(tsid.uuid);
            }
            if let Some(tag) = &tsid.tag {
                out.push(':');
                out.push_str(tag);
            }
            for &(start, end) in intervals {
                if end - start == 1 {
                    out.push_str(&format!(":{start}"));
                } else {
                    out.push_str(&format!(":{start}-{}", end - 1));
                }
            }
        }
        out
    }

    /// Whether the binary encoding must use the tagged format.
    fn has_tags(&self) -> bool {
        self.sets.keys().any(|tsid| tsid.tag.is_some())
    }

    /// Binary form (COM_BINLOG_DUMP_GTID data, PREVIOUS_GTIDS body), as MySQL's
    /// `Gtid_set::encode`: n_sids u64, then per source uuid\[16\], n_intervals u64 and
    /// (start, end) i64 pairs with end exclusive. When any source is tagged, the MySQL 8.3+
    /// tagged format is used: n_sids becomes `1 << 56 | n_sids << 8 | 1`, and every uuid is
    /// followed by its tag as a serialization varint length plus bytes (empty = untagged).
    pub fn encode(&self) -> Vec<u8> {
        let tagged = self.has_tags();
        let mut out = Vec::new();
        let n_sids = self.sets.len() as u64;
        let header = if tagged {
            (u64::from(ENCODING_TAGGED) << 56) | (n_sids << 8) | u64::from(ENCODING_TAGGED)
        } else {
            n_sids
        };
        out.extend_from_slice(&header.to_le_bytes());
        for (tsid, intervals) in &self.sets {
            out.extend_from_slice(&tsid.uuid);
            if tagged {
                let tag = tsid.tag.as_deref().unwrap_or("");
                put_varint_u64(&mut out, tag.len() as u64);
                out.extend_from_slice(tag.as_bytes());
            }
            out.extend_from_slice(&(intervals.len() as u64).to_le_bytes());
            for &(start, end) in intervals {
                out.extend_from_slice(&start.to_le_bytes());
                out.extend_from_slice(&end.to_le_bytes());
            }
        }
        out
    }

    /// Decodes the binary form; every byte must belong to it.
    pub fn decode(bytes: &[u8]) -> Result<MysqlGtidSet> {
        let (set, used) = Self::decode_prefix(bytes)?;
        if used != bytes.len() {
            return Err(BinlogError::Malformed {
                what: "GTID set encoding",
                detail: format!("{} trailing bytes", bytes.len() - used),
            });
        }
        Ok(set)
    }

    /// Decodes the binary form at the start of `bytes`; returns the set and its length.
    /// Intervals must be increasing, non-empty and apart, as MySQL checks.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(MysqlGtidSet, usize)> {
        let malformed = |detail: String| BinlogError::Malformed {
            what: "GTID set encoding",
            detail,
        };
        let mut r = Reader::new(bytes, "GTID set encoding");
        let header = r.u64()?;
        let (tagged, n_sids) = match (header >> 56) as u8 {
            ENCODING_UNTAGGED => (false, header & 0x00ff_ffff_ffff_ffff),
            ENCODING_TAGGED => (true, (header & 0x00ff_ffff_ffff_ff00) >> 8),
            other => return Err(malformed(format!("unknown format {other}"))),
        };
        // Each source takes at least 24 bytes: refuse counts the input cannot hold.
        if n_sids > (r.remaining() / 24) as u64 {
            return Err(malformed(format!(
                "{n_sids} sources in {} bytes",
                r.remaining()
            )));
        }
        let mut set = MysqlGtidSet::new();
        for _ in 0..n_sids {
            let uuid: [u8; 16] = r.array()?;
            let tag = if tagged { decode_tag(&mut r)? } else { None };
            let n_intervals = r.u64()?;
            if n_intervals > (r.remaining() / 16) as u64 {
                return Err(malformed(format!(
                    "{n_intervals} intervals in {} bytes",
                    r.remaining()
                )));
            }
            let tsid = Tsid { uuid, tag };
            let mut last = 0u64;
            for _ in 0..n_intervals {
                let (start, end) = (r.i64()?, r.i64()?);
                if start < 1 || (start as u64) <= last || end <= start {
                    return Err(malformed(format!("interval {start}..{end} after {last}")));
                }
                last = end as u64;
                set.insert_interval(tsid.clone(), start as u64, end as u64);
            }
        }
        Ok((set, r.position()))
    }
}

fn decode_tag(r: &mut Reader<'_>) -> Result<Option<String>> {
    let len = varint_u64(r)?;
    if len > TAG_LEN_MAX as u64 {
        return Err(BinlogError::Malformed {
            what: "GTID set encoding",
            detail: format!("tag of {len} bytes"),
        });
    }
    let bytes = r.bytes(len as usize)?;
    if bytes.is_empty() {
        return Ok(None);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| BinlogError::Malformed {
        what: "GTID set encoding",
        detail: "tag is not ASCII".to_string(),
    })?;
    Ok(Some(normalize_tag(text)?))
}

/// `n` or `n-m` (inclusive) as `[start, end)`, within 1..GNO_END.
fn parse_interval(text: &str) -> Option<(u64, u64)> {
    let (start, last) = match text.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?),
        None => {
            let n = text.trim().parse::<u64>().ok()?;
            (n, n)
        }
    };
    if start < 1 || last < start || last >= GNO_END {
        return None;
    }
    Some((start, last + 1))
}

impl fmt::Display for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format())
    }
}

impl FromStr for MysqlGtidSet {
    type Err = BinlogError;
    fn from_str(text: &str) -> Result<MysqlGtidSet> {
        MysqlGtidSet::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const U2: &str = "5b2b6bd1-2f7e-11e8-a98c-0242ac110002";

    fn uuid(text: &str) -> [u8; 16] {
        parse_uuid(text).unwrap()
    }

    #[test]
    fn maria_gtid_text() {
        let gtid = MariaGtid::parse(" 0-1-5 ").unwrap();
        assert_eq!(
            gtid,
            MariaGtid {
                domain_id: 0,
                server_id: 1,
                seq_no: 5
            }
        );
        assert_eq!(gtid.to_string(), "0-1-5");
        assert_eq!(
            "4294967295-4294967295-18446744073709551615"
                .parse::<MariaGtid>()
                .unwrap()
                .seq_no,
            u64::MAX
        );
        for bad in [
            "",
            "0-1",
            "0-1-2-3",
            "a-1-2",
            "0--2",
            "-1-1-1",
            "0-1-18446744073709551616",
            "4294967296-1-1",
            "0-1-+5",
        ] {
            assert!(MariaGtid::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn maria_list_text() {
        let list = MariaGtidList::parse("1-2-9, 0-1-5").unwrap();
        assert_eq!(list.to_string(), "0-1-5,1-2-9");
        assert_eq!(list.get(1).unwrap().seq_no, 9);
        assert_eq!(list.get(3), None);
        assert!(MariaGtidList::parse("").unwrap().is_empty());
        assert!(MariaGtidList::parse("  ").unwrap().is_empty());
        assert!(MariaGtidList::parse("0-1-5,0-2-6").is_err());
        assert!(MariaGtidList::parse("0-1-5,").is_err());
    }

    #[test]
    fn maria_list_operations() {
        let mut list = MariaGtidList::parse("0-1-5,1-2-9").unwrap();
        assert!(list.contains(&MariaGtid::parse("0-7-5").unwrap()));
        assert!(list.contains(&MariaGtid::parse("0-1-4").unwrap()));
        assert!(!list.contains(&MariaGtid::parse("0-1-6").unwrap()));
        assert!(!list.contains(&MariaGtid::parse("2-1-1").unwrap()));
        list.update(MariaGtid::parse("0-3-2").unwrap());
        assert_eq!(list.to_string(), "0-3-2,1-2-9");

        let a = MariaGtidList::parse("0-1-5,1-2-9").unwrap();
        let b = MariaGtidList::parse("0-1-7,2-1-1,1-1-3").unwrap();
        assert_eq!(a.union(&b).to_string(), "0-1-7,1-2-9,2-1-1");
        assert_eq!(a.subtract(&b).to_string(), "1-2-9");
        assert_eq!(b.subtract(&a).to_string(), "0-1-7,2-1-1");
    }

    #[test]
    fn maria_list_body() {
        let list = MariaGtidList::parse("0-1-15,2-1-2").unwrap();
        let mut body = Vec::new();
        list.encode_body(&mut body);
        assert_eq!(body.len(), 4 + 32);
        assert_eq!(MariaGtidList::decode_body(&body).unwrap(), list);
        // A GTID_LIST event with two servers in one domain keeps the highest.
        let event = super::super::event::GtidListEvent {
            flags: 0,
            gtids: vec![
                MariaGtid::parse("0-2-20").unwrap(),
                MariaGtid::parse("0-1-15").unwrap(),
            ],
        };
        let mut body = Vec::new();
        event.encode_body(&mut body);
        assert_eq!(
            MariaGtidList::decode_body(&body).unwrap().to_string(),
            "0-2-20"
        );
        assert!(MariaGtidList::decode_body(&body[..20]).is_err());
    }

    #[test]
    fn uuid_forms() {
        let u = uuid(U1);
        assert_eq!(format_uuid(&u), U1);
        assert_eq!(uuid(&U1.to_uppercase()), u);
        assert_eq!(uuid(&U1.replace('-', "")), u);
        for bad in [
            "",
            "3e11fa47-71ca-11e1-9e33-c80aa942956",
            "3e11fa4771ca-11e1-9e33-c80aa9429562x",
            "g e11fa47-71ca-11e1-9e33-c80aa9429562",
            "3e11fa47+71ca-11e1-9e33-c80aa9429562",
        ] {
            assert!(parse_uuid(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mysql_set_text() {
        let text = format!("{U2}:1-3:5, \n{U1}:7:1-5");
        let set = MysqlGtidSet::parse(&text).unwrap();
        assert_eq!(set.format(), format!("{U1}:1-5:7,{U2}:1-3:5"));
        assert_eq!(set.format_mysql(), format!("{U1}:1-5:7,\n{U2}:1-3:5"));
        assert_eq!(MysqlGtidSet::parse(&set.format_mysql()).unwrap(), set);
        assert!(set.contains_gtid(&uuid(U1), None, 3));
        assert!(!set.contains_gtid(&uuid(U1), None, 6));
        assert!(set.contains_gtid(&uuid(U1), None, 7));
        assert!(!set.contains_gtid(&uuid(U1), Some("x"), 7));
        // Adjacent and overlapping intervals merge.
        let merged = MysqlGtidSet::parse(&format!("{U1}:1-3:4-6:5:10-12:9")).unwrap();
        assert_eq!(merged.format(), format!("{U1}:1-6:9-12"));
        assert!(MysqlGtidSet::parse("").unwrap().is_empty());
        assert!(MysqlGtidSet::parse(" \n").unwrap().is_empty());
    }

    #[test]
    fn mysql_tagged_text() {
        let set = MysqlGtidSet::parse(&format!("{U1}:Blue:1-3:5,{U1}:1-2,{U1}:red:9")).unwrap();
        assert_eq!(set.format(), format!("{U1}:1-2:blue:1-3:5:red:9"));
        assert!(set.contains_gtid(&uuid(U1), Some("BLUE"), 5));
        assert!(!set.contains_gtid(&uuid(U1), None, 5));
        assert_eq!(MysqlGtidSet::parse(&set.format()).unwrap(), set);
        for bad in [
            U1.to_string(),
            format!("{U1}:"),
            format!("{U1}:tag"),
            format!("{U1}:a:b:1"),
            format!("{U1}:0"),
            format!("{U1}:5-3"),
            format!("{U1}:1-x"),
            format!("{U1}:9223372036854775807"),
            format!("{U1}:1tag:1"),
            format!("{U1}:{}:1", "t".repeat(33)),
            "nonsense:1".to_string(),
        ] {
            assert!(MysqlGtidSet::parse(&bad).is_err(), "{bad}");
        }
        // The largest allowed transaction number.
        let max = MysqlGtidSet::parse(&format!("{U1}:9223372036854775806")).unwrap();
        assert!(max.contains_gtid(&uuid(U1), None, GNO_END - 1));
    }

    #[test]
    fn mysql_set_operations() {
        let a = MysqlGtidSet::parse(&format!("{U1}:1-10,{U2}:1-3")).unwrap();
        let b = MysqlGtidSet::parse(&format!("{U1}:4-6,{U2}:1-3")).unwrap();
        assert_eq!(a.subtract(&b).format(), format!("{U1}:1-3:7-10"));
        assert!(b.is_subset(&a));
        assert!(!a.is_subset(&b));
        assert_eq!(b.union(&a), a);
        assert_eq!(a.intersection(&b), b);
        let mut c = MysqlGtidSet::new();
        c.add(uuid(U1), None, 11).unwrap();
        c.add(uuid(U1), Some("T"), 1).unwrap();
        assert_eq!(a.union(&c).format(), format!("{U1}:1-11:t:1,{U2}:1-3"));
        assert!(c.add(uuid(U1), None, 0).is_err());
        assert!(c.add(uuid(U1), None, GNO_END).is_err());
        assert!(c.add(uuid(U1), Some("-"), 1).is_err());
    }

    #[test]
    fn mysql_binary_untagged() {
        let set = MysqlGtidSet::parse(&format!("{U1}:1-5:7")).unwrap();
        let bytes = set.encode();
        let mut expected = 1u64.to_le_bytes().to_vec();
        expected.extend_from_slice(&uuid(U1));
        expected.extend_from_slice(&2u64.to_le_bytes());
        for v in [1u64, 6, 7, 8] {
            expected.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(bytes, expected);
        assert_eq!(MysqlGtidSet::decode(&bytes).unwrap(), set);
        assert_eq!(MysqlGtidSet::new().encode(), vec![0; 8]);
        // Malformed encodings.
        assert!(MysqlGtidSet::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(MysqlGtidSet::decode(&extra).is_err());
        assert_eq!(MysqlGtidSet::decode_prefix(&extra).unwrap().1, bytes.len());
        let mut backwards = bytes.clone();
        backwards[8 + 16 + 8 + 16..8 + 16 + 8 + 24].copy_from_slice(&3u64.to_le_bytes());
        assert!(MysqlGtidSet::decode(&backwards).is_err());
        let mut huge = bytes.clone();
        huge[..8].copy_from_slice(
            &u32::MAX
                .to_le_bytes()
                .iter()
                .chain(&[0; 4])
                .copied()
                .collect::<Vec<u8>>(),
        );
        assert!(MysqlGtidSet::decode(&huge).is_err());
        let mut unknown_format = bytes;
        unknown_format[7] = 5;
        assert!(MysqlGtidSet::decode(&unknown_format).is_err());
    }

    #[test]
    fn mysql_binary_tagged() {
        let set = MysqlGtidSet::parse(&format!("{U1}:1-2:blue:3,{U2}:4")).unwrap();
        let bytes = set.encode();
        // n_sids = 3 in the tagged layout: format byte at both ends.
        assert_eq!(bytes[..8], [1, 3, 0, 0, 0, 0, 0, 1]);
        // First source: untagged, so an empty tag (varint 0 = one zero byte).
        assert_eq!(bytes[8..24], uuid(U1));
        assert_eq!(bytes[24], 0);
        // Second source: tag "blue" = varint 4 (4 << 1) then the bytes.
        let second = 8 + 16 + 1 + 8 + 16;
        assert_eq!(bytes[second + 16], 8);
        assert_eq!(&bytes[second + 17..second + 21], b"blue");
        assert_eq!(MysqlGtidSet::decode(&bytes).unwrap(), set);
    }

    #[test]
    fn kingbus_previous_gtids_round_trip() {
        use super::super::event::{event_body, PREVIOUS_GTIDS_LOG_EVENT, TYPE_CODE_OFFSET};
        use super::super::test_data::{events_of, mysql_file};
        for name in [
            "kingbus-5.7-mysql_bin.000012",
            "mysql-enum-string-set.000001",
        ] {
            let file = mysql_file(name);
            let event = events_of(&file)
                .into_iter()
                .find(|e| e[TYPE_CODE_OFFSET] == PREVIOUS_GTIDS_LOG_EVENT)
                .unwrap();
            let body = event_body(event, 4).unwrap();
            let set = MysqlGtidSet::decode(body).unwrap();
            assert_eq!(set.encode(), body, "{name}");
            assert_eq!(MysqlGtidSet::parse(&set.format()).unwrap(), set);
        }
    }

    // ---- property tests ----

    fn uuid_pool() -> Vec<[u8; 16]> {
        vec![uuid(U1), uuid(U2), [0xff; 16]]
    }

    fn arb_set() -> impl Strategy<Value = MysqlGtidSet> {
        let tag = prop_oneof![Just(None), Just(Some("a")), Just(Some("blue_2"))];
        prop::collection::vec((0usize..3, tag, 1u64..60, 1u64..6), 0..12).prop_map(|items| {
            let pool = uuid_pool();
            let mut set = MysqlGtidSet::new();
            for (u, tag, start, len) in items {
                set.add_interval(pool[u], tag, start, start + len).unwrap();
            }
            set
        })
    }

    fn arb_gtid() -> impl Strategy<Value = ([u8; 16], Option<&'static str>, u64)> {
        let tag = prop_oneof![Just(None), Just(Some("a")), Just(Some("blue_2"))];
        (0usize..3, tag, 1u64..70).prop_map(|(u, tag, gno)| (uuid_pool()[u], tag, gno))
    }

    fn arb_maria() -> impl Strategy<Value = MariaGtidList> {
        prop::collection::vec((0u32..5, any::<u32>(), any::<u64>()), 0..6).prop_map(|items| {
            MariaGtidList::from_gtids(items.into_iter().map(|(d, s, n)| MariaGtid {
                domain_id: d,
                server_id: s,
                seq_no: n,
            }))
        })
    }

    proptest! {
        #[test]
        fn text_round_trip(a in arb_set()) {
            prop_assert_eq!(MysqlGtidSet::parse(&a.format()).unwrap(), a.clone());
            prop_assert_eq!(MysqlGtidSet::parse(&a.format_mysql()).unwrap(), a.clone());
            prop_assert_eq!(MysqlGtidSet::parse(&a.format().to_uppercase()).unwrap(), a);
        }

        #[test]
        fn binary_round_trip(a in arb_set()) {
            prop_assert_eq!(MysqlGtidSet::decode(&a.encode()).unwrap(), a);
        }

        #[test]
        fn union_laws(a in arb_set(), b in arb_set(), g in arb_gtid()) {
            let u = a.union(&b);
            prop_assert!(a.is_subset(&u));
            prop_assert!(b.is_subset(&u));
            prop_assert_eq!(&u, &b.union(&a));
            prop_assert_eq!(
                u.contains_gtid(&g.0, g.1, g.2),
                a.contains_gtid(&g.0, g.1, g.2) || b.contains_gtid(&g.0, g.1, g.2)
            );
        }

        #[test]
        fn subtract_laws(a in arb_set(), b in arb_set(), g in arb_gtid()) {
            let d = a.subtract(&b);
            prop_assert!(d.is_subset(&a));
            prop_assert_eq!(
                d.contains_gtid(&g.0, g.1, g.2),
                a.contains_gtid(&g.0, g.1, g.2) && !b.contains_gtid(&g.0, g.1, g.2)
            );
            prop_assert!(d.intersection(&b).is_empty());
            prop_assert_eq!(d.union(&a.intersection(&b)), a.clone());
            prop_assert_eq!(a.is_subset(&b), d.is_empty());
            prop_assert!(a.subtract(&a).is_empty());
        }

        #[test]
        fn add_then_contains(mut a in arb_set(), g in arb_gtid()) {
            a.add(g.0, g.1, g.2).unwrap();
            prop_assert!(a.contains_gtid(&g.0, g.1, g.2));
        }

        #[test]
        fn intervals_stay_canonical(a in arb_set(), b in arb_set()) {
            for set in [a.union(&b), a.subtract(&b)] {
                for (_, intervals) in set.iter() {
                    prop_assert!(!intervals.is_empty());
                    for w in intervals.windows(2) {
                        prop_assert!(w[0].1 < w[1].0);
                    }
                    for &(s, e) in intervals {
                        prop_assert!(1 <= s && s < e);
                    }
                }
            }
        }

        #[test]
        fn maria_round_trips(a in arb_maria()) {
            prop_assert_eq!(MariaGtidList::parse(&a.to_string()).unwrap(), a.clone());
            let mut body = Vec::new();
            a.encode_body(&mut body);
            prop_assert_eq!(MariaGtidList::decode_body(&body).unwrap(), a);
        }

        #[test]
        fn maria_laws(a in arb_maria(), b in arb_maria()) {
            let u = a.union(&b);
            for g in a.iter().chain(b.iter()) {
                prop_assert!(u.contains(g));
            }
            let d = a.subtract(&b);
            for g in d.iter() {
                prop_assert!(!b.contains(g));
                prop_assert!(a.contains(g));
            }
            prop_assert!(a.subtract(&a).is_empty());
        }

        #[test]
        fn decode_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
            let _ = MysqlGtidSet::decode(&bytes);
            let _ = MariaGtidList::decode_body(&bytes);
        }

        #[test]
        fn parse_garbage_never_panics(text in "[0-9a-fA-F:,\\- \n]{0,80}") {
            let _ = MysqlGtidSet::parse(&text);
            let _ = MariaGtidList::parse(&text);
        }
    }
}
