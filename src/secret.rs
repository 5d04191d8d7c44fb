//! The shared secret behind a user's codes: random generation, base32 text
//! form, and memory that is wiped when the secret is dropped.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// RFC 4226 asks for at least 128 bits; shorter secrets are refused.
pub const MIN_SECRET_BITS: usize = 128;

/// Secrets we generate are 160 bits, the RFC 4226 recommendation and what
/// authenticator apps expect for SHA1.
pub const NEW_SECRET_BYTES: usize = 20;

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretError {
    /// Not valid base32 text.
    BadBase32,
    /// Fewer bits than [`MIN_SECRET_BITS`] (or than an explicit minimum).
    TooShort { bits: usize, min: usize },
    /// The operating system's random source failed.
    Random,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::BadBase32 => write!(f, "the secret is not valid base32"),
            SecretError::TooShort { bits, min } => {
                write!(f, "the secret has {bits} bits; at least {min} are required")
            }
            SecretError::Random => write!(f, "the system random source failed"),
        }
    }
}

impl std::error::Error for SecretError {}

/// A TOTP secret. Its bytes are wiped on drop and never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps raw secret bytes, refusing fewer than `min_bits`.
    pub fn from_bytes(bytes: Vec<u8>, min_bits: usize) -> Result<Secret, SecretError> {
        let secret = Secret(Zeroizing::new(bytes));
        let bits = secret.bits();
        if bits < min_bits {
            return Err(SecretError::TooShort {
                bits,
                min: min_bits,
            });
        }
        Ok(secret)
    }

    /// Parses base32 text (case-insensitive; spaces, dashes and padding ignored).
    pub fn from_base32(text: &str, min_bits: usize) -> Result<Secret, SecretError> {
        let bytes = base32_decode(text).ok_or(SecretError::BadBase32)?;
        Secret::from_bytes(bytes.to_vec(), min_bits)
    }

    /// A new random secret of [`NEW_SECRET_BYTES`] from the kernel's CSPRNG.
    pub fn generate() -> Result<Secret, SecretError> {
        let mut bytes = Zeroizing::new(vec![0u8; NEW_SECRET_BYTES]);
        fill_random(&mut bytes)?;
        Ok(Secret(bytes))
    }

    /// The secret as unpadded upper-case base32, as authenticator apps take it.
    pub fn to_base32(&self) -> Zeroizing<String> {
        base32_encode(&self.0)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn bits(&self) -> usize {
        self.0.len() * 8
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bits, redacted)", self.bits())
    }
}

/// Fills `buf` from getrandom(2), which blocks only until the kernel's pool
/// is first initialised.
pub fn fill_random(buf: &mut [u8]) -> Result<(), SecretError> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a valid writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(SecretError::Random);
        }
        filled += n as usize;
    }
    Ok(())
}

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding.
pub fn base32_encode(bytes: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(5) * 8));
    let mut buffer: u64 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u64::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    buffer.zeroize();
    out
}

/// RFC 4648 base32, tolerant of case, spaces, dashes and trailing padding.
/// Returns `None` for any other character or an impossible length.
pub fn base32_decode(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() * 5 / 8));
    let mut buffer: u64 = 0;
    let mut bits = 0;
    let mut symbols = 0usize;
    let trimmed = text.trim_end_matches(['=', ' ', '\n']);
    for c in trimmed.bytes() {
        if c == b' ' || c == b'-' {
            continue;
        }
        let value = ALPHABET.iter().position(|&a| a == c.to_ascii_uppercase())?;
        buffer = (buffer << 5) | value as u64;
        bits += 5;
        symbols += 1;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    // Lengths of 1, 3 or 6 symbols modulo 8 cannot come from whole bytes.
    if matches!(symbols % 8, 1 | 3 | 6) || symbols == 0 {
        return None;
    }
    buffer.zeroize();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_round_trips_rfc4648_vectors() {
        // RFC 4648 section 10, without padding.
        let vectors: [(&[u8], &str); 6] = [
            (b"f", "MY"),
            (b"fo", "MZXQ"),
            (b"foo", "MZXW6"),
            (b"foob", "MZXW6YQ"),
            (b"fooba", "MZXW6YTB"),
            (b"foobar", "MZXW6YTBOI"),
        ];
        for (bytes, text) in vectors {
            assert_eq!(base32_encode(bytes).as_str(), text);
            assert_eq!(base32_decode(text).unwrap().as_slice(), bytes);
        }
    }

    #[test]
    fn base32_decode_is_lenient_on_case_spacing_and_padding() {
        assert_eq!(
            base32_decode("mzxw 6ytb-oi======").unwrap().as_slice(),
            b"foobar"
        );
    }

    #[test]
    fn base32_decode_refuses_bad_text() {
        assert!(base32_decode("MZXW1").is_none());
        assert!(base32_decode("").is_none());
        assert!(base32_decode("M").is_none());
        assert!(base32_decode("MZ!W").is_none());
    }

    #[test]
    fn short_secrets_are_refused() {
        let err = Secret::from_base32("JBSWY3DPEHPK3PXP", MIN_SECRET_BITS).unwrap_err();
        assert_eq!(err, SecretError::TooShort { bits: 80, min: 128 });
    }

    #[test]
    fn generated_secrets_are_160_bits_and_differ() {
        let a = Secret::generate().unwrap();
        let b = Secret::generate().unwrap();
        assert_eq!(a.bits(), 160);
        assert_ne!(a, b);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = Secret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 128).unwrap();
        let shown = format!("{secret:?}");
        assert!(!shown.contains("GEZD"));
        assert!(!shown.contains("49"));
    }
}
