//! The primitives MySQL messages are built from: fixed-width little-endian integers,
//! length-encoded integers and strings, NUL-terminated strings.
//!
//! [`Reader`] is a cursor over a borrowed payload that never panics: reading past the end
//! returns [`ProtocolError::Truncated`]. The `put_*` functions append to a `Vec<u8>`.
//! This module knows nothing about any particular message and does no I/O.

use super::ProtocolError;

/// First byte of a length-encoded integer that means SQL NULL in a text row.
pub const LENENC_NULL: u8 = 0xfb;

/// A cursor over one payload.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next byte without consuming it.
    pub fn peek_u8(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Consumes exactly `n` bytes.
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or(ProtocolError::Truncated { what })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// Skips exactly `n` bytes.
    pub fn skip(&mut self, n: usize, what: &'static str) -> Result<(), ProtocolError> {
        self.bytes(n, what).map(|_| ())
    }

    /// Consumes everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    fn uint_le(&mut self, n: usize, what: &'static str) -> Result<u64, ProtocolError> {
        let b = self.bytes(n, what)?;
        Ok(b.iter()
            .rev()
            .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte)))
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, ProtocolError> {
        Ok(self.bytes(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, ProtocolError> {
        self.uint_le(2, what).map(|v| v as u16)
    }

    pub fn u24(&mut self, what: &'static str) -> Result<u32, ProtocolError> {
        self.uint_le(3, what).map(|v| v as u32)
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, ProtocolError> {
        self.uint_le(4, what).map(|v| v as u32)
    }

    pub fn u48(&mut self, what: &'static str) -> Result<u64, ProtocolError> {
        self.uint_le(6, what)
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, ProtocolError> {
        self.uint_le(8, what)
    }

    /// A length-encoded integer, or `None` for the NULL marker 0xFB.
    pub fn lenenc_int_or_null(&mut self, what: &'static str) -> Result<Option<u64>, ProtocolError> {
        match self.u8(what)? {
            b @ 0..=0xfa => Ok(Some(u64::from(b))),
            LENENC_NULL => Ok(None),
            0xfc => self.uint_le(2, what).map(Some),
            0xfd => self.uint_le(3, what).map(Some),
            0xfe => self.uint_le(8, what).map(Some),
            // 0xFF starts an ERR packet and is never a valid length.
            _ => Err(ProtocolError::Malformed { what }),
        }
    }

    /// A length-encoded integer; NULL is malformed here.
    pub fn lenenc_int(&mut self, what: &'static str) -> Result<u64, ProtocolError> {
        self.lenenc_int_or_null(what)?
            .ok_or(ProtocolError::Malformed { what })
    }

    /// A length-encoded string's bytes.
    pub fn lenenc_bytes(&mut self, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        let len = self.lenenc_int(what)?;
        let len = usize::try_from(len).map_err(|_| ProtocolError::Truncated { what })?;
        self.bytes(len, what)
    }

    /// A length-encoded string's bytes, or `None` for NULL (text rows).
    pub fn lenenc_bytes_or_null(
        &mut self,
        what: &'static str,
    ) -> Result<Option<&'a [u8]>, ProtocolError> {
        match self.lenenc_int_or_null(what)? {
            None => Ok(None),
            Some(len) => {
                let len = usize::try_from(len).map_err(|_| ProtocolError::Truncated { what })?;
                self.bytes(len, what).map(Some)
            }
        }
    }

    /// A length-encoded string, decoded as UTF-8 with invalid sequences replaced (names and
    /// messages are informational; lossy is better than refusing the packet).
    pub fn lenenc_str(&mut self, what: &'static str) -> Result<String, ProtocolError> {
        self.lenenc_bytes(what).map(lossy)
    }

    /// Bytes up to (not including) a NUL, which is consumed.
    pub fn nul_bytes(&mut self, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        let rest = &self.buf[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(ProtocolError::Truncated { what })?;
        self.pos += len + 1;
        Ok(&rest[..len])
    }

    /// A NUL-terminated string (lossy UTF-8).
    pub fn nul_str(&mut self, what: &'static str) -> Result<String, ProtocolError> {
        self.nul_bytes(what).map(lossy)
    }

    /// Bytes up to a NUL or the end of input, whichever comes first (some peers omit the
    /// final NUL of the last field).
    pub fn nul_or_eof_bytes(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        match rest.iter().position(|&b| b == 0) {
            Some(len) => {
                self.pos += len + 1;
                &rest[..len]
            }
            None => self.rest(),
        }
    }
}

/// Bytes as text, invalid UTF-8 replaced.
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// The low 24 bits of `v`.
pub fn put_u24(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes()[..3]);
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// The low 48 bits of `v`.
pub fn put_u48(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes()[..6]);
}

pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A length-encoded integer in its shortest form.
pub fn put_lenenc_int(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0xfa => out.push(v as u8),
        0xfb..=0xffff => {
            out.push(0xfc);
            put_u16(out, v as u16);
        }
        0x1_0000..=0xff_ffff => {
            out.push(0xfd);
            put_u24(out, v as u32);
        }
        _ => {
            out.push(0xfe);
            put_u64(out, v);
        }
    }
}

/// A length-encoded string.
pub fn put_lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    put_lenenc_int(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// The NULL marker of a text row.
pub fn put_lenenc_null(out: &mut Vec<u8>) {
    out.push(LENENC_NULL);
}

/// A NUL-terminated string. The caller guarantees `s` holds no NUL.
pub fn put_nul_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_ints_round_trip() {
        let mut out = Vec::new();
        put_u8(&mut out, 0xab);
        put_u16(&mut out, 0x1234);
        put_u24(&mut out, 0x56_789a);
        put_u32(&mut out, 0xdead_beef);
        put_u48(&mut out, 0x0102_0304_0506);
        put_u64(&mut out, u64::MAX - 1);
        assert_eq!(out.len(), 1 + 2 + 3 + 4 + 6 + 8);
        let mut r = Reader::new(&out);
        assert_eq!(r.u8("a").unwrap(), 0xab);
        assert_eq!(r.u16("b").unwrap(), 0x1234);
        assert_eq!(r.u24("c").unwrap(), 0x56_789a);
        assert_eq!(r.u32("d").unwrap(), 0xdead_beef);
        assert_eq!(r.u48("e").unwrap(), 0x0102_0304_0506);
        assert_eq!(r.u64("f").unwrap(), u64::MAX - 1);
        assert!(r.is_empty());
        assert_eq!(r.u8("g"), Err(ProtocolError::Truncated { what: "g" }));
    }

    #[test]
    fn lenenc_int_boundaries() {
        for (v, len) in [
            (0u64, 1usize),
            (250, 1),
            (251, 3),
            (0xffff, 3),
            (0x1_0000, 4),
            (0xff_ffff, 4),
            (0x100_0000, 9),
            (u64::MAX, 9),
        ] {
            let mut out = Vec::new();
            put_lenenc_int(&mut out, v);
            assert_eq!(out.len(), len, "{v}");
            let mut r = Reader::new(&out);
            assert_eq!(r.lenenc_int("v").unwrap(), v);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn lenenc_null_and_err_marker() {
        let mut r = Reader::new(&[0xfb]);
        assert_eq!(r.lenenc_int_or_null("v").unwrap(), None);
        let mut r = Reader::new(&[0xfb]);
        assert!(matches!(
            r.lenenc_int("v"),
            Err(ProtocolError::Malformed { .. })
        ));
        let mut r = Reader::new(&[0xff]);
        assert!(matches!(
            r.lenenc_int("v"),
            Err(ProtocolError::Malformed { .. })
        ));
    }

    #[test]
    fn truncated_inputs_are_errors() {
        assert!(Reader::new(&[0xfc, 1]).lenenc_int("v").is_err());
        assert!(Reader::new(&[3, b'a', b'b']).lenenc_bytes("s").is_err());
        assert!(Reader::new(b"abc").nul_str("s").is_err());
        assert!(Reader::new(&[1, 2, 3]).u32("x").is_err());
        // A huge declared length must not overflow or allocate.
        let mut huge = vec![0xfe];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(Reader::new(&huge).lenenc_bytes("s").is_err());
    }

    #[test]
    fn strings_round_trip() {
        let mut out = Vec::new();
        put_lenenc_str(&mut out, b"hello");
        put_nul_str(&mut out, b"mysql_native_password");
        put_lenenc_null(&mut out);
        out.extend_from_slice(b"tail");
        let mut r = Reader::new(&out);
        assert_eq!(r.lenenc_str("a").unwrap(), "hello");
        assert_eq!(r.nul_str("b").unwrap(), "mysql_native_password");
        assert_eq!(r.lenenc_bytes_or_null("c").unwrap(), None);
        assert_eq!(r.nul_or_eof_bytes(), b"tail");
        assert!(r.is_empty());
    }
}
