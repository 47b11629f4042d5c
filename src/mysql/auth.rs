//! Password proofs of the two plugins MySQL clients and servers speak, pure.
//!
//! - `mysql_native_password`: the client sends SHA1(password) XOR SHA1(nonce +
//!   SHA1(SHA1(password))); an empty password sends an empty response.
//! - `caching_sha2_password`: the client first sends SHA256(password) XOR
//!   SHA256(SHA256(SHA256(password)) + nonce) (the "fast" proof, which a server can check
//!   against its in-memory cache of SHA256(SHA256(password))). When the server has no
//!   cache entry it asks for the full authentication: without TLS, the client sends
//!   (password + NUL) XOR nonce (the nonce repeated), encrypted with the server's RSA public
//!   key using RSA_PKCS1_OAEP_PADDING, that is OAEP with SHA-1 and MGF1-SHA-1, as
//!   libmysqlclient, PyMySQL and the `mysql` crate all do.
//!
//! Also turns caller-supplied entropy into a greeting nonce.
//!
//! Pure: randomness comes in as an argument (`net` reads /dev/urandom; RSA padding takes a
//! caller's RNG); no I/O. The RSA arithmetic is the RustCrypto `rsa` crate's, not ours.

use std::fmt;

use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::rand_core::CryptoRngCore;
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha1::{Digest, Sha1};
use sha2::Sha256;

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
    // A response of another length differs (constant_time_eq checks lengths first).
    constant_time_eq(&scramble_native(expected_password, nonce), response)
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

/// Length of a caching_sha2_password scramble (a SHA-256 digest).
pub const SHA2_SCRAMBLE_LEN: usize = 32;

/// Bytes OAEP with SHA-1 adds to a message: two digests and two marker bytes. A password
/// (with its NUL) must be shorter than the key size by this much.
const OAEP_SHA1_OVERHEAD: usize = 2 * 20 + 2;

/// Why an RSA step of caching_sha2_password's full authentication failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// The bytes offered as a public key are not a PEM RSA public key (SPKI or PKCS#1).
    BadPublicKey(String),
    /// The bytes offered as a private key are not a PEM RSA private key (PKCS#8 or PKCS#1).
    BadPrivateKey(String),
    /// The password does not fit in one RSA block of this key.
    PasswordTooLong { len: usize, max: usize },
    /// The encryption itself failed.
    Encrypt(String),
    /// The ciphertext is not an OAEP block made with our public key.
    Decrypt,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::BadPublicKey(why) => write!(f, "not a PEM RSA public key: {why}"),
            AuthError::BadPrivateKey(why) => write!(f, "not a PEM RSA private key: {why}"),
            AuthError::PasswordTooLong { len, max } => write!(
                f,
                "a password of {len} bytes does not fit in one RSA block of this key (at most \
                 {max} bytes)"
            ),
            AuthError::Encrypt(why) => write!(f, "RSA encryption failed: {why}"),
            AuthError::Decrypt => write!(
                f,
                "the encrypted password is not an RSA-OAEP block made with this server's \
                 public key"
            ),
        }
    }
}

impl std::error::Error for AuthError {}

/// SHA256(SHA256(password)): what a caching_sha2_password server caches per account.
pub fn sha2_double_digest(password: &[u8]) -> [u8; SHA2_SCRAMBLE_LEN] {
    let stage1: [u8; SHA2_SCRAMBLE_LEN] = Sha256::digest(password).into();
    Sha256::digest(stage1).into()
}

/// SHA256(double_digest + nonce): the mask both sides compute.
fn sha2_mask(double_digest: &[u8; SHA2_SCRAMBLE_LEN], nonce: &[u8]) -> [u8; SHA2_SCRAMBLE_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(double_digest);
    hasher.update(nonce);
    hasher.finalize().into()
}

/// The caching_sha2_password fast proof for `password` and `nonce`:
/// SHA256(password) XOR SHA256(SHA256(SHA256(password)) + nonce).
pub fn scramble_caching_sha2(
    password: &[u8],
    nonce: &[u8; SCRAMBLE_LEN],
) -> [u8; SHA2_SCRAMBLE_LEN] {
    let stage1: [u8; SHA2_SCRAMBLE_LEN] = Sha256::digest(password).into();
    let mask = sha2_mask(&sha2_double_digest(password), nonce);
    let mut out = [0; SHA2_SCRAMBLE_LEN];
    for (o, (a, b)) in out.iter_mut().zip(stage1.iter().zip(mask.iter())) {
        *o = a ^ b;
    }
    out
}

/// The first auth response a caching_sha2_password client sends: empty for an empty
/// password (as PyMySQL and the `mysql` crate do), the fast proof otherwise.
pub fn caching_sha2_auth_response(password: &[u8], nonce: &[u8; SCRAMBLE_LEN]) -> Vec<u8> {
    if password.is_empty() {
        Vec::new()
    } else {
        scramble_caching_sha2(password, nonce).to_vec()
    }
}

/// Whether a fast proof matches a cached SHA256(SHA256(password)), the way a MySQL server
/// checks it: unmask the proof to get a candidate SHA256(password), hash it again, and
/// compare with the cache. Constant-time compare.
pub fn verify_caching_sha2_cached(
    double_digest: &[u8; SHA2_SCRAMBLE_LEN],
    nonce: &[u8; SCRAMBLE_LEN],
    response: &[u8],
) -> bool {
    if response.len() != SHA2_SCRAMBLE_LEN {
        return false;
    }
    let mask = sha2_mask(double_digest, nonce);
    let mut candidate = [0; SHA2_SCRAMBLE_LEN];
    for (c, (a, b)) in candidate.iter_mut().zip(response.iter().zip(mask.iter())) {
        *c = a ^ b;
    }
    let rehashed: [u8; SHA2_SCRAMBLE_LEN] = Sha256::digest(candidate).into();
    constant_time_eq(&rehashed, double_digest)
}

/// Whether a caching_sha2_password client with an empty password answered as one: an empty
/// response, or the single NUL libmysqlclient sends.
pub fn is_empty_sha2_response(response: &[u8]) -> bool {
    response.is_empty() || response == [0]
}

/// (password + NUL) XOR nonce, the nonce repeated as often as needed: what the full
/// authentication encrypts, so that a captured ciphertext is useless with another nonce.
pub fn xor_password_with_nonce(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(password.len() + 1);
    out.extend_from_slice(password);
    out.push(0);
    if nonce.is_empty() {
        return out;
    }
    for (o, n) in out.iter_mut().zip(nonce.iter().cycle()) {
        *o ^= n;
    }
    out
}

/// Parses the public key a server sends on request: a PEM "PUBLIC KEY" (SubjectPublicKeyInfo,
/// what MySQL sends) or "RSA PUBLIC KEY" (PKCS#1).
pub fn parse_public_key_pem(pem: &[u8]) -> Result<RsaPublicKey, AuthError> {
    let text = std::str::from_utf8(pem)
        .map_err(|_| AuthError::BadPublicKey("not text".into()))?
        .trim_matches(|c: char| c.is_whitespace() || c == '\0');
    if !text.starts_with("-----BEGIN") {
        return Err(AuthError::BadPublicKey("no -----BEGIN line".into()));
    }
    RsaPublicKey::from_public_key_pem(text)
        .or_else(|spki| RsaPublicKey::from_pkcs1_pem(text).map_err(|_| spki))
        .map_err(|e| AuthError::BadPublicKey(e.to_string()))
}

/// Parses a PEM RSA private key: "PRIVATE KEY" (PKCS#8) or "RSA PRIVATE KEY" (PKCS#1, what
/// MySQL's `private_key.pem` holds). Encrypted keys are not supported.
pub fn parse_private_key_pem(pem: &str) -> Result<RsaPrivateKey, AuthError> {
    let text = pem.trim();
    RsaPrivateKey::from_pkcs8_pem(text)
        .or_else(|pkcs8| RsaPrivateKey::from_pkcs1_pem(text).map_err(|_| pkcs8))
        .map_err(|e| AuthError::BadPrivateKey(e.to_string()))
}

/// The PEM a server sends when a client asks for its public key (SubjectPublicKeyInfo,
/// "-----BEGIN PUBLIC KEY-----", LF line ends, as MySQL sends it).
pub fn public_key_pem(key: &RsaPrivateKey) -> Result<String, AuthError> {
    RsaPublicKey::from(key)
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| AuthError::BadPublicKey(e.to_string()))
}

/// The full-authentication payload of a client without TLS: (password + NUL) XOR nonce,
/// RSA-OAEP (SHA-1) encrypted with the server's public key.
pub fn encrypt_password(
    password: &[u8],
    nonce: &[u8],
    key: &RsaPublicKey,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, AuthError> {
    let max = key.size().saturating_sub(OAEP_SHA1_OVERHEAD);
    let len = password.len() + 1;
    if len > max {
        return Err(AuthError::PasswordTooLong { len, max });
    }
    let message = xor_password_with_nonce(password, nonce);
    key.encrypt(rng, Oaep::new::<Sha1>(), &message)
        .map_err(|e| AuthError::Encrypt(e.to_string()))
}

/// The server side of [`encrypt_password`]: the password the client sent (without its NUL).
/// Decrypts with blinding (hence the RNG), so that timing says less about the key.
pub fn decrypt_password(
    ciphertext: &[u8],
    nonce: &[u8],
    key: &RsaPrivateKey,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, AuthError> {
    let message = key
        .decrypt_blinded(rng, Oaep::new::<Sha1>(), ciphertext)
        .map_err(|_| AuthError::Decrypt)?;
    let mut password = xor_password_with_nonce(&message, nonce);
    // XOR-ing twice gives back password + NUL, and our own appended NUL after it.
    password.truncate(message.len());
    if password.last() == Some(&0) {
        password.pop();
    }
    Ok(password)
}

/// Whether `a` equals `b`, compared without stopping at the first difference, so the time
/// says nothing about where they differ (only whether the lengths do).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A 2048-bit RSA key made once with `openssl genrsa -traditional 2048` for tests only
/// (generating one in a debug build takes seconds).
#[cfg(test)]
pub(crate) const TEST_PRIVATE_KEY_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEA6J+YMISJdS3YITrOyPWLuTl5ZBjV+NuSj4isdojONoloIYg+
d/O3p+JdWOH1WCuJGF094EUDNKQ7ZAD/ob6/qOn4ZMVK/+uylbUSgB0MHBC6mG3s
UGHEz9VgZQRQypDbxKcPAC984ZvNwPLxr5QMefP9TF7K7WbJfDJfKIALLYTDk3sM
UO89Rq1wP1rct4dBRF1MLvrzY9/6uGwxgfoZEf/WseFeYXeTJP+pgGWlJS/w8mFx
J8gpyplS1UHdgwoV+/kxPNtT0wm7WLdhxsMilSFPCcR8C66AgiFl/2gtNGtz4fG+
g/q5UABU8o6Fw+sX70qZdAMOOVuojQJAepUq6QIDAQABAoH/G7/aVBa2dmtkDhyT
Uz5GHeYMCzOIyP+PyvH5Az6JqakJTM9WVZZatKw4dnWRp3zFGPuQUlfpMV5mBhHJ
p+RAqflmgMZDU38szoejwQcYfmf2n0wHbnudr/ImtPnigfjFyHSbaS8tVAsuRSTd
YRSDLWuLLkJH8s7Z/x4qipaUSJ568DrIfQyBKSrj6TulnEdYgVuFeaS4uo8QxCrJ
qt299Mz8lRJhUnRe7jQOgTOPK3CfE7UgJOLHVEF56MHTrh8d+mGpCRLfcgZk5X6/
WN4FOqL8i0H/QQ1VKg9HHhDQ1gCICSOkuGi/erPN3giOt60vGa/kNJgwo9SNCuC8
s2PVAoGBAPk7/Td9gSBHLzLmnPGesaj24kxdrxtMuspJS82rr4Xuez+d0lgfGu1n
an25gOmIbTm2CSE3qvIvyHcJ66HMHfa0/+ANVRCpejLNEk28835gJ1lJGy0+c/Q0
GxasKJsHaFnbJs0+acvutKBhSZZfIeOWZ3vnoulbpJF1VT1l6Bb/AoGBAO7wK7Ek
zFFoIE9jUMcCPmz5j2kJ8yRJBqwYs+1Iv7oHG/Xh6pVVzX0cuBmW8mIX7mGnNbpK
S6YBDnXRHmkOaFcwGBOnwlsu7mE5Y7XszI9o28e+nQi8shUhd1G1m7KY7+bEjnAx
Ipp8eQwA5c6pHJHI4T/7FUCQKjSIJsyT7uYXAoGBAJ2MgmEVgQ66cOeoSAWk34GD
r0G+5vZG5r0A4F4+7VGok1h/l3wFDayM9xBKt2boysL0g4jv+6vk8L/vEXjR4w8V
E7q6Ms+5knmSkMN7ciCs/7K9N+S92ebBGW6XnYOCh0Bl/H05uv8jAiNv3Gil8nI/
nWMB5kXFnJ4moZ+ST8hZAoGBAIUeCTmH5szz1gxkqHw3I9BSuTMr9+ofRThcCuIH
xck+bLVwR+ErDHDHr0mSbzd3XbfKEITZH4w8ynGZL/gXrsnkYYWR0RY771L7RjH0
24KKSOffql1Tw2NCYdeD9lpqGj3XBAQ9W6n17vphBac9UE1oPRYILK7ropfhwrv3
LwHBAoGANiO5ObgQnPVbX2Vv59SI/ydwecB5GLWRK3kO3uTG7wRbwtlBEM+8Pyw6
9dElO5KF/+184lrerughHl283/JPYugiqe2IQ7i8xlhd39f4GASj9PamFSBAJBoQ
pQ6vfmiEnjY5VPJyNmEexfQKqXa8IfCsC+2wMDKVl7ycRpQViII=
-----END RSA PRIVATE KEY-----
";

/// Its public half, as `openssl rsa -pubout` prints it.
#[cfg(test)]
pub(crate) const TEST_PUBLIC_KEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA6J+YMISJdS3YITrOyPWL
uTl5ZBjV+NuSj4isdojONoloIYg+d/O3p+JdWOH1WCuJGF094EUDNKQ7ZAD/ob6/
qOn4ZMVK/+uylbUSgB0MHBC6mG3sUGHEz9VgZQRQypDbxKcPAC984ZvNwPLxr5QM
efP9TF7K7WbJfDJfKIALLYTDk3sMUO89Rq1wP1rct4dBRF1MLvrzY9/6uGwxgfoZ
Ef/WseFeYXeTJP+pgGWlJS/w8mFxJ8gpyplS1UHdgwoV+/kxPNtT0wm7WLdhxsMi
lSFPCcR8C66AgiFl/2gtNGtz4fG+g/q5UABU8o6Fw+sX70qZdAMOOVuojQJAepUq
6QIDAQAB
-----END PUBLIC KEY-----
";

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

    /// caching_sha2_password proof for "secret" and NONCE, computed independently with
    /// Python's hashlib: sha256(s1) with s1 = sha256(pw), then s1 XOR sha256(s2 + nonce).
    const SHA2_RESPONSE: &str = "9f0c41f960165f9817761839a3e57664044a0b0282e805e7c56b83874933fa1c";

    /// ("secret" + NUL) XOR NONCE, encrypted with TEST_PUBLIC_KEY_PEM by OpenSSL 3.0:
    /// `openssl pkeyutl -encrypt -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1
    /// -pkeyopt rsa_mgf1_md:sha1` (RSA_PKCS1_OAEP_PADDING, what libmysqlclient uses).
    const OPENSSL_OAEP_SHA1: &str = "6e14584284594cb876f1b43285aeeada7b2c68786cc3eb7729ecc741f398175ee594874f09a275b4d7dbc0603349efe7af04a2bbbb208ae3caa3dc909891de3688756bcc632347451e0463763bea51c38c8b9cde8c20d669a13da796974eea2af1cf5a9e62a5c0b364da7f206033f42d223e871f96bed3dbe7a03b3a432814ec7faf29a47b05935fee95bce86faff2da7da643b8381f28325ffd3400e675591837ee6594d919ff11863405ef2a9ba65e41b550f81f83c2f490fb227f81aed4e32d4780cfe513ac9d862df5c74ccbcaf4841315920b366d207eb7d629f667d60a2ab55227fb6d17a145773ea8c835ddc583a232ceb0eeed6641d1bd86ee6028bb";
    /// The same with rsa_oaep_md:sha256: what a server must NOT accept as the MySQL padding.
    const OPENSSL_OAEP_SHA256: &str = "633d4e306acafdb05d5c6a2fb6cc07d718bb895aed0944b9f0e4c77306a99bebc44f2ea8e13582e1d27c0088f65e2e1c1c603621d3c96674e600db8a8795777fa8660017c3f949125dd69b17a8359a2dd736bf21afb842973e2a81036b6dd1fd0ab4d7763cd216994698a99f7a6696f73fa86c5c939c7a751c098cb7a84bb1c54b8e88b6276461ac2d1c42d57c7c43c041033b269ac9e920c39d036b39583216e0e54a5e63b456e00edb20c1f9a490aebd992d1db4d14070cc493a1da9224eef3745d0bef7a977193acb9d90709a9bdb2e8e2232e20527c35975da0a2e79169b01f6f448f622cd3ed95bd5a4065cf71e7b2d0e7bc21e12f442ad59b665f07ea6";

    #[test]
    fn sha2_scramble_matches_independent_computation() {
        assert_eq!(
            scramble_caching_sha2(b"secret", NONCE).to_vec(),
            hex(SHA2_RESPONSE)
        );
        let cached = sha2_double_digest(b"secret");
        assert!(verify_caching_sha2_cached(
            &cached,
            NONCE,
            &hex(SHA2_RESPONSE)
        ));
        // Another password, another nonce, a flipped bit, a short proof: all refused.
        assert!(!verify_caching_sha2_cached(
            &sha2_double_digest(b"Secret"),
            NONCE,
            &hex(SHA2_RESPONSE)
        ));
        assert!(!verify_caching_sha2_cached(
            &cached,
            b"abcdefghijklmnopqrst",
            &hex(SHA2_RESPONSE)
        ));
        let mut flipped = hex(SHA2_RESPONSE);
        flipped[0] ^= 0x80;
        assert!(!verify_caching_sha2_cached(&cached, NONCE, &flipped));
        assert!(!verify_caching_sha2_cached(
            &cached,
            NONCE,
            &hex(SHA2_RESPONSE)[..31]
        ));
        // The native proof of the same password is something else entirely.
        assert!(!verify_caching_sha2_cached(&cached, NONCE, &hex(RESPONSE)));
    }

    #[test]
    fn sha2_empty_password() {
        assert!(caching_sha2_auth_response(b"", NONCE).is_empty());
        assert!(is_empty_sha2_response(&[]));
        assert!(is_empty_sha2_response(&[0]));
        assert!(!is_empty_sha2_response(&hex(SHA2_RESPONSE)));
    }

    #[test]
    fn xor_with_nonce_cycles_and_appends_nul() {
        // Frozen from Python: bytes(c ^ nonce[i % 20] for i, c in enumerate(pw + b"\0")).
        assert_eq!(
            xor_password_with_nonce(b"secret", NONCE),
            hex("0317093224164a")
        );
        assert_eq!(
            xor_password_with_nonce(b"a-password-longer-than-the-twenty-byte-nonce", NONCE),
            hex("115f1a2132113d4445177036440b5a2514483319111c47342907675f4016332e52485f3912006a1f1f1c092541")
        );
        assert_eq!(xor_password_with_nonce(b"pw", b""), b"pw\0");
    }

    #[test]
    fn decrypts_what_openssl_encrypted_with_sha1_oaep_only() {
        let key = parse_private_key_pem(TEST_PRIVATE_KEY_PEM).unwrap();
        let mut rng = rsa::rand_core::OsRng;
        let password = decrypt_password(&hex(OPENSSL_OAEP_SHA1), NONCE, &key, &mut rng).unwrap();
        assert_eq!(password, b"secret");
        // The nonce matters: another one gives another (wrong) password.
        let other = decrypt_password(
            &hex(OPENSSL_OAEP_SHA1),
            b"abcdefghijklmnopqrst",
            &key,
            &mut rng,
        )
        .unwrap();
        assert_ne!(other, b"secret");
        assert_eq!(
            decrypt_password(&hex(OPENSSL_OAEP_SHA256), NONCE, &key, &mut rng),
            Err(AuthError::Decrypt)
        );
        assert_eq!(
            decrypt_password(&[1, 2, 3], NONCE, &key, &mut rng),
            Err(AuthError::Decrypt)
        );
    }

    #[test]
    fn oaep_round_trip_through_the_served_pem() {
        let key = parse_private_key_pem(TEST_PRIVATE_KEY_PEM).unwrap();
        let pem = public_key_pem(&key).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        // What we serve is what OpenSSL derives from the same key.
        assert_eq!(pem.trim(), TEST_PUBLIC_KEY_PEM.trim());
        // A server may end the key with a NUL; a client must not mind.
        let mut sent = pem.clone().into_bytes();
        sent.push(0);
        let public = parse_public_key_pem(&sent).unwrap();
        let mut rng = rsa::rand_core::OsRng;
        let ciphertext = encrypt_password(b"secret", NONCE, &public, &mut rng).unwrap();
        assert_eq!(ciphertext.len(), 256);
        assert_eq!(
            decrypt_password(&ciphertext, NONCE, &key, &mut rng).unwrap(),
            b"secret"
        );
        // Empty password: just the NUL travels.
        let ciphertext = encrypt_password(b"", NONCE, &public, &mut rng).unwrap();
        assert_eq!(
            decrypt_password(&ciphertext, NONCE, &key, &mut rng).unwrap(),
            b""
        );
        // 2048-bit key, SHA-1 OAEP: 256 - 42 = 214 bytes, the NUL included.
        assert!(encrypt_password(&[b'x'; 213], NONCE, &public, &mut rng).is_ok());
        assert_eq!(
            encrypt_password(&[b'x'; 214], NONCE, &public, &mut rng),
            Err(AuthError::PasswordTooLong { len: 215, max: 214 })
        );
    }

    #[test]
    fn bad_pem_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\xff\xfe",
            b"hello",
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ] {
            assert!(matches!(
                parse_public_key_pem(bad),
                Err(AuthError::BadPublicKey(_))
            ));
        }
        assert!(parse_public_key_pem(TEST_PUBLIC_KEY_PEM.as_bytes()).is_ok());
        assert!(matches!(
            parse_private_key_pem("nope"),
            Err(AuthError::BadPrivateKey(_))
        ));
        assert!(matches!(
            parse_private_key_pem(TEST_PUBLIC_KEY_PEM),
            Err(AuthError::BadPrivateKey(_))
        ));
    }
}
