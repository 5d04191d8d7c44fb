//! Recovery codes: single-use codes shown once at enrollment, for a user who
//! lost their phone. Only salted SHA-256 hashes are stored; a plain code is
//! never written or logged.
//!
//! A fast hash is enough here: the record that holds the hashes also holds
//! the TOTP secret itself, so the hashes only keep the codes out of sight,
//! and online guessing is bounded by the lockout.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::secret::{fill_random, SecretError};

/// Digits in a generated recovery code (more than any TOTP code, so the two
/// are never confused).
pub const CODE_DIGITS: usize = 10;

/// Strips what people type around a code: spaces and dashes.
pub(crate) fn normalize(reply: &[u8]) -> Zeroizing<Vec<u8>> {
    let kept = reply
        .iter()
        .copied()
        .filter(|b| !matches!(b, b' ' | b'-' | b'\t' | b'\r' | b'\n'));
    Zeroizing::new(kept.map(|b| b.to_ascii_uppercase()).collect())
}

fn digest(salt: &[u8], code: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"otpgate recovery v1\0")
        .chain_update(salt)
        .chain_update(code)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The stored form of `code`: `sha256$SALT$HASH` in hex.
pub fn hash(code: &str) -> Result<String, SecretError> {
    let mut salt = [0u8; 16];
    fill_random(&mut salt)?;
    let normalized = normalize(code.as_bytes());
    Ok(format!(
        "sha256${}${}",
        hex(&salt),
        hex(&digest(&salt, &normalized))
    ))
}

/// Is `text` a well-formed stored hash?
pub fn is_valid_hash(text: &str) -> bool {
    parse_hash(text).is_some()
}

fn parse_hash(text: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut parts = text.split('$');
    let (kind, salt, sum) = (parts.next()?, parts.next()?, parts.next()?);
    if kind != "sha256" || parts.next().is_some() {
        return None;
    }
    let (salt, sum) = (unhex(salt)?, unhex(sum)?);
    (sum.len() == 32 && !salt.is_empty()).then_some((salt, sum))
}

/// The index of the stored hash that `reply` matches. Every hash is
/// compared, in constant time each.
pub fn find(hashes: &[String], reply: &[u8]) -> Option<usize> {
    let normalized = normalize(reply);
    if normalized.is_empty() || normalized.len() > 64 {
        return None;
    }
    let mut found = None;
    for (index, stored) in hashes.iter().enumerate() {
        let Some((salt, sum)) = parse_hash(stored) else {
            continue;
        };
        let equal: bool = digest(&salt, &normalized).ct_eq(sum.as_slice()).into();
        if equal && found.is_none() {
            found = Some(index);
        }
    }
    found
}

/// `count` new codes, as shown to the user (`12345-67890`), with their hashes.
pub fn generate(count: u32) -> Result<(Vec<Zeroizing<String>>, Vec<String>), SecretError> {
    let mut shown = Vec::new();
    let mut hashes = Vec::new();
    for _ in 0..count {
        let code = random_code()?;
        hashes.push(hash(&code)?);
        shown.push(code);
    }
    Ok((shown, hashes))
}

fn random_code() -> Result<Zeroizing<String>, SecretError> {
    let mut digits = Zeroizing::new(String::with_capacity(CODE_DIGITS + 1));
    while digits.len() < CODE_DIGITS + 1 {
        let mut byte = [0u8; 1];
        fill_random(&mut byte)?;
        // 250 is the largest multiple of 10 below 256: no modulo bias.
        if byte[0] < 250 {
            if digits.len() == CODE_DIGITS / 2 {
                digits.push('-');
            }
            digits.push(char::from(b'0' + byte[0] % 10));
        }
    }
    Ok(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_match_their_hashes_only() {
        let (shown, hashes) = generate(5).unwrap();
        assert_eq!(shown.len(), 5);
        for (i, code) in shown.iter().enumerate() {
            assert_eq!(code.len(), CODE_DIGITS + 1);
            assert_eq!(find(&hashes, code.as_bytes()), Some(i));
            assert!(!hashes[i].contains(code.as_str()));
        }
        assert_eq!(find(&hashes, b"00000-00000"), None);
    }

    #[test]
    fn typing_variations_are_accepted() {
        let hashes = vec![hash("46610551").unwrap()];
        assert_eq!(find(&hashes, b" 4661 0551\n"), Some(0));
        assert_eq!(find(&hashes, b"4661-0551"), Some(0));
        assert_eq!(find(&hashes, b""), None);
    }

    #[test]
    fn bad_hashes_are_skipped() {
        assert!(!is_valid_hash("md5$00$00"));
        assert!(!is_valid_hash("sha256$zz$00"));
        let hashes = vec!["nonsense".to_string(), hash("1234").unwrap()];
        assert_eq!(find(&hashes, b"1234"), Some(1));
    }
}
