//! The native binlog file format: the 4-byte magic `\xfebin`, then whole events back to
//! back, each at the position its predecessor's log_pos names.
//!
//! [`BinlogFileReader`] is a thin reader over any `impl Read` (a file opened by the caller,
//! a byte slice in tests): it yields `(position, event bytes)` and checks what can be
//! checked without interpreting events: the magic, event sizes against the header length
//! and [`EVENT_BYTES_MAX`], truncation, and every event's CRC32 once a FORMAT_DESCRIPTION
//! event says the file is checksummed. It never opens, seeks or writes files itself.

use std::fmt;
use std::io::{self, Read, Write};

use super::event::{self, ChecksumAlg, EventHeader, FormatDescription, HEADER_LEN};
use super::BinlogError;
use crate::limits::EVENT_BYTES_MAX;

/// The first four bytes of every binlog file.
pub const MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];

/// Position of the first event in a binlog file.
pub const FIRST_EVENT_POSITION: u64 = MAGIC.len() as u64;

/// Whether `name` can be a binlog file name: what a master writes in a ROTATE and what a
/// file of that name on disk may be called. Not empty, at most BINLOG_FILE_NAME_MAX bytes,
/// no directory part (`/`, `\`, `.`, `..`) and no control character: a name from the
/// network must never lead a path outside the folder it is written to.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= crate::limits::BINLOG_FILE_NAME_MAX
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

/// A binlog file name's parts as a master numbers its files: the base, the digits after
/// the last dot, and their value (`mysql-bin.000009` → `("mysql-bin", "000009", 9)`). None
/// when the name does not end in `.DIGITS`.
pub fn numbered_name(name: &str) -> Option<(&str, &str, u64)> {
    let (base, digits) = name.rsplit_once('.')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((base, digits, digits.parse().ok()?))
}

/// Writes the magic that starts a binlog file.
pub fn write_file_header<W: Write>(out: &mut W) -> io::Result<()> {
    out.write_all(&MAGIC)
}

/// Why a binlog file could not be read. Positions are byte offsets in the file.
#[derive(Debug)]
pub enum FileError {
    Io(io::Error),
    /// The file does not start with [`MAGIC`] (`found` holds what it starts with).
    BadMagic {
        found: Vec<u8>,
    },
    /// The file ends inside the event that starts at `position`.
    TruncatedEvent {
        position: u64,
        needed: u64,
        available: u64,
    },
    /// The event at `position` declares a size below the header length or above
    /// [`EVENT_BYTES_MAX`].
    BadEventSize {
        position: u64,
        event_size: u32,
    },
    /// The event at `position` fails its CRC32.
    ChecksumMismatch {
        position: u64,
        stored: u32,
        computed: u32,
    },
    /// The FORMAT_DESCRIPTION event at `position` cannot be decoded.
    BadFormatDescription {
        position: u64,
        error: BinlogError,
    },
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Io(error) => write!(f, "reading binlog file: {error}"),
            FileError::BadMagic { found } => {
                write!(f, "not a binlog file: starts with {found:02x?}")
            }
            FileError::TruncatedEvent {
                position,
                needed,
                available,
            } => write!(
                f,
                "binlog file truncated in the event at {position}: {needed} bytes needed, \
                 {available} present"
            ),
            FileError::BadEventSize {
                position,
                event_size,
            } => write!(f, "event at {position} has bad event_size {event_size}"),
            FileError::ChecksumMismatch {
                position,
                stored,
                computed,
            } => write!(
                f,
                "event at {position} fails its CRC32: stored {stored:#010x}, computed \
                 {computed:#010x}"
            ),
            FileError::BadFormatDescription { position, error } => {
                write!(f, "format description event at {position}: {error}")
            }
        }
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FileError::Io(error) => Some(error),
            FileError::BadFormatDescription { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<io::Error> for FileError {
    fn from(error: io::Error) -> FileError {
        FileError::Io(error)
    }
}

/// Reads the events of a binlog file in order. After the first error it yields nothing
/// more.
pub struct BinlogFileReader<R: Read> {
    inner: R,
    position: u64,
    magic_checked: bool,
    finished: bool,
    format_description: Option<FormatDescription>,
}

impl<R: Read> BinlogFileReader<R> {
    /// Wraps a reader positioned at the start of a binlog file (the magic is read first).
    pub fn new(inner: R) -> BinlogFileReader<R> {
        BinlogFileReader {
            inner,
            position: 0,
            magic_checked: false,
            finished: false,
            format_description: None,
        }
    }

    /// Byte offset of the next event.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The last FORMAT_DESCRIPTION event read, if any.
    pub fn format_description(&self) -> Option<&FormatDescription> {
        self.format_description.as_ref()
    }

    /// The checksum the file's events carry, as far as the FDEs read so far say.
    pub fn checksum_alg(&self) -> ChecksumAlg {
        self.format_description
            .as_ref()
            .map_or(ChecksumAlg::Undefined, |fde| fde.checksum_alg)
    }

    /// The next event and its position, `None` at a clean end of file.
    pub fn next_event(&mut self) -> Result<Option<(u64, Vec<u8>)>, FileError> {
        if self.finished {
            return Ok(None);
        }
        let result = self.read_event();
        if !matches!(result, Ok(Some(_))) {
            self.finished = true;
        }
        result
    }

    fn read_event(&mut self) -> Result<Option<(u64, Vec<u8>)>, FileError> {
        if !self.magic_checked {
            self.check_magic()?;
        }
        let position = self.position;
        let mut event = Vec::with_capacity(HEADER_LEN);
        let got = read_up_to(&mut self.inner, HEADER_LEN as u64, &mut event)?;
        if got == 0 {
            return Ok(None);
        }
        if got < HEADER_LEN {
            return Err(FileError::TruncatedEvent {
                position,
                needed: HEADER_LEN as u64,
                available: got as u64,
            });
        }
        // Cannot fail with HEADER_LEN bytes in hand; mapped rather than unwrapped.
        let header = EventHeader::parse(&event).map_err(|_| FileError::TruncatedEvent {
            position,
            needed: HEADER_LEN as u64,
            available: got as u64,
        })?;
        let event_size = header.event_size as usize;
        if !(HEADER_LEN..=EVENT_BYTES_MAX).contains(&event_size) {
            return Err(FileError::BadEventSize {
                position,
                event_size: header.event_size,
            });
        }
        let rest = (event_size - HEADER_LEN) as u64;
        let got = read_up_to(&mut self.inner, rest, &mut event)?;
        if (got as u64) < rest {
            return Err(FileError::TruncatedEvent {
                position,
                needed: event_size as u64,
                available: (HEADER_LEN + got) as u64,
            });
        }
        if header.type_code == event::FORMAT_DESCRIPTION_EVENT {
            let fde = FormatDescription::parse(&event)
                .map_err(|error| FileError::BadFormatDescription { position, error })?;
            self.format_description = Some(fde);
        }
        if self.checksum_alg() == ChecksumAlg::Crc32 {
            event::check_checksum(&event).map_err(|error| match error {
                BinlogError::ChecksumMismatch { stored, computed } => FileError::ChecksumMismatch {
                    position,
                    stored,
                    computed,
                },
                // Too short to hold a checksum at all.
                _ => FileError::BadEventSize {
                    position,
                    event_size: header.event_size,
                },
            })?;
        }
        self.position += event_size as u64;
        Ok(Some((position, event)))
    }

    fn check_magic(&mut self) -> Result<(), FileError> {
        let mut found = Vec::with_capacity(MAGIC.len());
        read_up_to(&mut self.inner, MAGIC.len() as u64, &mut found)?;
        if found != MAGIC {
            return Err(FileError::BadMagic { found });
        }
        self.magic_checked = true;
        self.position = FIRST_EVENT_POSITION;
        Ok(())
    }
}

impl<R: Read> Iterator for BinlogFileReader<R> {
    type Item = Result<(u64, Vec<u8>), FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}

/// Appends up to `limit` bytes to `out`, stopping early only at end of input; returns how
/// many were read. The buffer grows as data arrives, so a lying event_size cannot make us
/// allocate more than the input holds.
pub(crate) fn read_up_to<R: Read>(
    reader: &mut R,
    limit: u64,
    out: &mut Vec<u8>,
) -> io::Result<usize> {
    reader.by_ref().take(limit).read_to_end(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_names_split_at_the_last_dot() {
        assert_eq!(
            numbered_name("mysql-bin.000009"),
            Some(("mysql-bin", "000009", 9))
        );
        assert_eq!(numbered_name("a.b.12"), Some(("a.b", "12", 12)));
        for bad in [
            "mysql-bin",
            "mysql-bin.",
            "mysql-bin.00a1",
            "x.+1",
            "x.99999999999999999999",
        ] {
            assert_eq!(numbered_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn plain_file_names() {
        for ok in ["mysql-bin.000001", "binlog.000001", "a", "mysql_bin.000011"] {
            assert!(is_plain_file_name(ok), "{ok}");
        }
        let long = "x".repeat(crate::limits::BINLOG_FILE_NAME_MAX + 1);
        for bad in [
            "", ".", "..", "../etc/x", "/abs", "a/b", "a\\b", "a\nb", "a\0", &long,
        ] {
            assert!(!is_plain_file_name(bad), "{bad:?}");
        }
    }
    use crate::binlog::event::{CHECKSUM_LEN, EVENT_SIZE_OFFSET, LOG_POS_OFFSET};
    use crate::binlog::test_data::{mariadb_files, mysql_files};

    fn all_files() -> Vec<(String, Vec<u8>)> {
        let mut files = mysql_files();
        files.extend(mariadb_files());
        files
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, FileError> {
        BinlogFileReader::new(bytes).collect()
    }

    #[test]
    fn every_fixture_reads_back_identically() {
        let mut checksummed = 0;
        for (name, bytes) in all_files() {
            let mut reader = BinlogFileReader::new(bytes.as_slice());
            let mut rebuilt = Vec::new();
            write_file_header(&mut rebuilt).unwrap();
            let mut count = 0;
            while let Some((position, event)) = reader.next_event().unwrap() {
                assert_eq!(position, rebuilt.len() as u64, "{name}");
                let header = EventHeader::parse(&event).unwrap();
                if header.log_pos != 0 {
                    assert_eq!(
                        u64::from(header.log_pos),
                        position + event.len() as u64,
                        "{name} at {position}"
                    );
                }
                if reader.checksum_alg() == ChecksumAlg::Crc32 {
                    assert!(event::verify_checksum(&event), "{name} at {position}");
                    checksummed += 1;
                }
                rebuilt.extend_from_slice(&event);
                count += 1;
            }
            assert!(count >= 3, "{name}");
            assert_eq!(reader.position(), bytes.len() as u64, "{name}");
            assert_eq!(rebuilt, bytes, "{name}");
            assert!(reader.format_description().is_some(), "{name}");
            // Nothing more after the end.
            assert!(reader.next_event().unwrap().is_none());
        }
        assert!(checksummed > 500);
    }

    #[test]
    fn file_without_checksums() {
        let (_, bytes) = mariadb_files()
            .into_iter()
            .find(|(name, _)| name == "bin.000004")
            .unwrap();
        let mut reader = BinlogFileReader::new(bytes.as_slice());
        let events: Vec<_> = reader.by_ref().collect::<Result<_, _>>().unwrap();
        assert_eq!(reader.checksum_alg(), ChecksumAlg::Off);
        // Not checksummed: a corrupted body byte goes unnoticed by the reader.
        let mut corrupt = bytes.clone();
        let (position, _) = &events[4];
        corrupt[*position as usize + HEADER_LEN] ^= 0xff;
        assert!(read_all(&corrupt).is_ok());
    }

    fn kingbus() -> Vec<u8> {
        mysql_files()
            .into_iter()
            .find(|(name, _)| name == "kingbus-5.7-mysql_bin.000011")
            .unwrap()
            .1
    }

    #[test]
    fn bad_magic() {
        let mut bytes = kingbus();
        bytes[1] = b'B';
        assert!(matches!(
            read_all(&bytes),
            Err(FileError::BadMagic { found }) if found == [0xfe, b'B', b'i', b'n']
        ));
        assert!(matches!(
            read_all(&[0xfe, b'b']),
            Err(FileError::BadMagic { found }) if found.len() == 2
        ));
        assert!(matches!(read_all(&[]), Err(FileError::BadMagic { .. })));
        // The magic alone is an empty binlog.
        assert!(read_all(&MAGIC).unwrap().is_empty());
    }

    #[test]
    fn truncation_reports_the_event_position() {
        let bytes = kingbus();
        let events = read_all(&bytes).unwrap();
        let (second, second_event) = &events[1];
        let second = *second as usize;
        // Cut inside the header and inside the body of the second event.
        for cut in [
            second + 1,
            second + HEADER_LEN - 1,
            second + second_event.len() - 1,
        ] {
            let mut reader = BinlogFileReader::new(&bytes[..cut]);
            assert!(reader.next_event().unwrap().is_some());
            match reader.next_event() {
                Err(FileError::TruncatedEvent {
                    position,
                    available,
                    ..
                }) => {
                    assert_eq!(position, second as u64);
                    assert_eq!(available, (cut - second) as u64);
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
            assert!(reader.next_event().unwrap().is_none());
        }
        // A cut exactly between events is a clean end.
        assert_eq!(read_all(&bytes[..second]).unwrap().len(), 1);
    }

    #[test]
    fn bad_event_sizes() {
        let bytes = kingbus();
        let events = read_all(&bytes).unwrap();
        let position = events[2].0 as usize;
        for bad_size in [0u32, 18, (EVENT_BYTES_MAX + 1) as u32, u32::MAX] {
            let mut corrupt = bytes.clone();
            corrupt[position + EVENT_SIZE_OFFSET..position + EVENT_SIZE_OFFSET + 4]
                .copy_from_slice(&bad_size.to_le_bytes());
            match read_all(&corrupt) {
                Err(FileError::BadEventSize {
                    position: at,
                    event_size,
                }) => {
                    assert_eq!(at, position as u64);
                    assert_eq!(event_size, bad_size);
                }
                other => panic!("{bad_size}: {other:?}"),
            }
        }
        // A size within bounds but past the end of the file is a truncation, and does
        // not allocate the claimed size up front.
        let mut corrupt = bytes.clone();
        corrupt[position + EVENT_SIZE_OFFSET..position + EVENT_SIZE_OFFSET + 4]
            .copy_from_slice(&(EVENT_BYTES_MAX as u32).to_le_bytes());
        assert!(matches!(
            read_all(&corrupt),
            Err(FileError::TruncatedEvent { position: at, .. }) if at == position as u64
        ));
    }

    #[test]
    fn checksum_failures_name_the_event() {
        let bytes = kingbus();
        let events = read_all(&bytes).unwrap();
        for (position, event) in events.iter().take(5) {
            let mut corrupt = bytes.clone();
            // Flip a byte of the log_pos, then one of the CRC itself.
            for offset in [LOG_POS_OFFSET, event.len() - CHECKSUM_LEN] {
                let mut corrupt_one = corrupt.clone();
                corrupt_one[*position as usize + offset] ^= 0x40;
                match read_all(&corrupt_one) {
                    Err(FileError::ChecksumMismatch { position: at, .. }) => {
                        assert_eq!(at, *position)
                    }
                    other => panic!("{position}+{offset}: {other:?}"),
                }
            }
            corrupt[*position as usize + event.len() - 1] ^= 1;
            let err = read_all(&corrupt).unwrap_err();
            assert!(err.to_string().contains(&position.to_string()), "{err}");
        }
    }

    /// A reader that hands out one byte per call, like a slow pipe.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&byte, rest)), Some(slot)) => {
                    *slot = byte;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn short_reads_are_fine() {
        let bytes = kingbus();
        let events: Vec<_> = BinlogFileReader::new(Trickle(&bytes))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(events, read_all(&bytes).unwrap());
    }

    #[test]
    fn io_errors_pass_through() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let err = BinlogFileReader::new(Failing).next_event().unwrap_err();
        assert!(matches!(err, FileError::Io(_)));
        assert!(err.to_string().contains("disk on fire"));
    }
}
