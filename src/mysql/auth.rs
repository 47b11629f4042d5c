//! `mysql_native_password`: the client proves it knows the password by sending
//! SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password))); an empty password sends an empty
//! response. Also turns caller-supplied entropy into a greeting nonce.
//!
//! Pure: randomness comes in as an argument (`net` reads /dev/urandom); no I/O.

use sha1::{Digest, Sha1};

use super::handshake::SCRAMBLE_LEN;

/// The client's response to `nonce` for `password`.
pub fn scramble_native(password: &[u8], nonce: &[u8; SCRAMBLE_LEN]) -> [u8; SCRAMBLE_LEN] {
    if password.is_empty() {
        return [0; SCRAMBLE_LEN];
    }
    let stage1: [u8; SCRAMBLE_LEN] = Sha1::digest(password).into();
    let stage2: [u8; SCRAMBLE_LEN] = Sha1::digest(stage1).into();
    let mut hasher = Sha1::new();
    hasher.update(nonce);
    hasher.update(stage2);
    let mask: [u8; SCRAMBLE_LEN] = hasher.finalize().into();
    let mut out = [0; SCRAMBLE_LEN];
    for (o, (a, b)) in out.iter_mut().zip(stage1.iter().zip(mask.iter())) {
        *o = a ^ b;
    }
    out
}

/// The auth response bytes a client sends: empty for an empty password.
pub fn native_auth_response(password: &[u8], nonce: &[u8; SCRAMBLE_LEN]) -> Vec<u8> {
    if password.is_empty() {
        Vec::new()
    } else {
        scramble_native(password, nonce).to_vec()
    }
}

/// Whether `response` proves knowledge of `expected_password` for `nonce`. The compare
/// does not stop at the first differing byte, so its time says nothing about where the
/// mismatch is.
pub fn verify_native(
    expected_password: &[u8],
    nonce: &[u8; SCRAMBLE_LEN],
    response: &[u8],
) -> bool {
    if expected_password.is_empty() {
        return response.is_empty();
    }
    if response.len() != SCRAMBLE_LEN {
        return false;
    }
    let expected = scramble_native(expected_password, nonce);
    let diff = expected
        .iter()
        .zip(response)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    diff == 0
}

/// Turns random bytes into a nonce of printable ASCII (no NUL, which would end the
/// greeting's auth data early, and no space), as MySQL servers do.
pub fn nonce_from_entropy(entropy: &[u8; SCRAMBLE_LEN]) -> [u8; SCRAMBLE_LEN] {
    const FIRST: u8 = b'!';
    const SPAN: u8 = b'~' - b'!' + 1;
    let mut out = [0; SCRAMBLE_LEN];
    for (o, e) in out.iter_mut().zip(entropy) {
        *o = FIRST + e % SPAN;
    }
    out
}

/// The nonce from a greeting's auth plugin data, when it is the 20 bytes
/// mysql_native_password needs.
pub fn nonce_from_slice(data: &[u8]) -> Option<[u8; SCRAMBLE_LEN]> {
    data.get(..SCRAMBLE_LEN)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::mysql::test_hex as hex;

    /// Captured from the mariadb 10.11 CLI logging in with password "secret" to a
    /// MariaDB 10.11 server that sent this nonce.
    const NONCE: &[u8; 20] = b"prj@AbJ+7s]Z+e=@feGq";
    const RESPONSE: &str = "8a3ba21b466c1b05a8cecbcd50d7e9c266d386a6";

    #[test]
    fn matches_captured_client_response() {
        assert_eq!(scramble_native(b"secret", NONCE).to_vec(), hex(RESPONSE));
        assert!(verify_native(b"secret", NONCE, &hex(RESPONSE)));
    }

    #[test]
    fn rejects_wrong_password_and_bad_lengths() {
        let response = hex(RESPONSE);
        assert!(!verify_native(b"Secret", NONCE, &response));
        assert!(!verify_native(b"secret", NONCE, &response[..19]));
        assert!(!verify_native(b"secret", NONCE, &[]));
        let mut flipped = response.clone();
        flipped[19] ^= 1;
        assert!(!verify_native(b"secret", NONCE, &flipped));
    }

    #[test]
    fn empty_password_means_empty_response() {
        assert!(native_auth_response(b"", NONCE).is_empty());
        assert!(verify_native(b"", NONCE, &[]));
        assert!(!verify_native(b"", NONCE, &hex(RESPONSE)));
    }

    #[test]
    fn nonce_is_printable() {
        for fill in [0u8, 0x20, 0x7f, 0xff] {
            let nonce = nonce_from_entropy(&[fill; SCRAMBLE_LEN]);
            assert!(nonce.iter().all(|b| (b'!'..=b'~').contains(b)));
        }
        assert_eq!(nonce_from_slice(b"short"), None);
        assert_eq!(nonce_from_slice(NONCE), Some(*NONCE));
    }
}
