//! Time-based one-time codes (RFC 6238): the code for a time step, and the
//! search of the steps around now for the one a reply matches.
//!
//! The HMAC comes from totp-rs; the truncation to digits and the matching are
//! ours so that every candidate step is compared in constant time and the
//! matched step is returned for replay protection.

use std::fmt;

use serde::{Deserialize, Serialize};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::secret::Secret;

/// The HMAC behind the codes. Most apps only honour SHA1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Algorithm {
    #[default]
    SHA1,
    SHA256,
    SHA512,
}

impl Algorithm {
    fn to_totp_rs(self) -> totp_rs::Algorithm {
        match self {
            Algorithm::SHA1 => totp_rs::Algorithm::SHA1,
            Algorithm::SHA256 => totp_rs::Algorithm::SHA256,
            Algorithm::SHA512 => totp_rs::Algorithm::SHA512,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Algorithm::SHA1 => "SHA1",
            Algorithm::SHA256 => "SHA256",
            Algorithm::SHA512 => "SHA512",
        };
        f.write_str(name)
    }
}

/// How codes are made: the settings a secret was enrolled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeSettings {
    pub digits: u8,
    pub period: u64,
    pub algorithm: Algorithm,
}

impl Default for CodeSettings {
    fn default() -> Self {
        CodeSettings {
            digits: 6,
            period: 30,
            algorithm: Algorithm::SHA1,
        }
    }
}

impl CodeSettings {
    /// The time step that contains `unix_time` (0 before the epoch).
    pub fn step_at(&self, unix_time: i64) -> u64 {
        u64::try_from(unix_time).unwrap_or(0) / self.period.max(1)
    }
}

/// Why a reply could not even be compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Parses a reply: surrounding white space trimmed, then exactly `digits`
/// ASCII digits.
pub fn parse_reply(reply: &[u8], digits: u8) -> Result<u32, Malformed> {
    let trimmed = reply.trim_ascii();
    if trimmed.len() != usize::from(digits) || !trimmed.iter().all(u8::is_ascii_digit) {
        return Err(Malformed);
    }
    let value = trimmed
        .iter()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    Ok(value)
}

/// The code for one time step (RFC 4226 dynamic truncation).
pub fn code_at_step(secret: &Secret, settings: &CodeSettings, step: u64) -> u32 {
    let totp = totp_rs::Builder::new()
        .with_algorithm(settings.algorithm.to_totp_rs())
        .with_digits(settings.digits)
        .with_step_duration(1)
        .with_secret(secret.as_bytes().to_vec())
        .build_noncompliant();
    let mac = totp.sign(step);
    truncate(mac.as_ref(), settings.digits)
}

fn truncate(mac: &[u8], digits: u8) -> u32 {
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let word = u32::from_be_bytes([
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    (word & 0x7fff_ffff) % 10u32.pow(u32::from(digits))
}

/// The code shown at `unix_time`, formatted with leading zeros.
pub fn code_at(secret: &Secret, settings: &CodeSettings, unix_time: i64) -> String {
    let code = code_at_step(secret, settings, settings.step_at(unix_time));
    format!("{:0width$}", code, width = usize::from(settings.digits))
}

/// Finds the step within `skew` steps of `now` whose code equals `code`.
///
/// Every candidate is computed and compared, matched or not, so the time
/// taken does not tell which step matched. When two steps share a code the
/// newest wins, so a replay check against it stays strict.
pub fn matching_step(
    secret: &Secret,
    settings: &CodeSettings,
    code: u32,
    now: i64,
    skew: u32,
) -> Option<u64> {
    let current = settings.step_at(now);
    let first = current.saturating_sub(u64::from(skew));
    let last = current.saturating_add(u64::from(skew));
    let mut found = subtle::Choice::from(0);
    let mut step_found = 0u64;
    for step in first..=last {
        let candidate = code_at_step(secret, settings, step);
        let equal = candidate.ct_eq(&code);
        step_found.conditional_assign(&step, equal);
        found |= equal;
    }
    bool::from(found).then_some(step_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 appendix B: the seeds are the ASCII strings below (20, 32 and
    // 64 bytes for SHA1, SHA256 and SHA512), 8 digits, 30-second steps.
    const SEED_SHA1: &[u8] = b"12345678901234567890";
    const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
    const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    const RFC6238_VECTORS: [(i64, u32, u32, u32); 6] = [
        (59, 94287082, 46119246, 90693936),
        (1111111109, 7081804, 68084774, 25091201),
        (1111111111, 14050471, 67062674, 99943326),
        (1234567890, 89005924, 91819424, 93441116),
        (2000000000, 69279037, 90698825, 38618901),
        (20000000000, 65353130, 77737706, 47863826),
    ];

    fn settings(algorithm: Algorithm) -> CodeSettings {
        CodeSettings {
            digits: 8,
            period: 30,
            algorithm,
        }
    }

    fn secret(seed: &[u8]) -> Secret {
        Secret::from_bytes(seed.to_vec(), 128).unwrap()
    }

    #[test]
    fn rfc6238_appendix_b_vectors() {
        for (time, sha1, sha256, sha512) in RFC6238_VECTORS {
            for (seed, algorithm, expected) in [
                (SEED_SHA1, Algorithm::SHA1, sha1),
                (SEED_SHA256, Algorithm::SHA256, sha256),
                (SEED_SHA512, Algorithm::SHA512, sha512),
            ] {
                let s = settings(algorithm);
                let code = code_at_step(&secret(seed), &s, s.step_at(time));
                assert_eq!(code, expected, "{algorithm} at {time}");
            }
        }
    }

    #[test]
    fn code_at_keeps_leading_zeros() {
        let s = settings(Algorithm::SHA1);
        assert_eq!(code_at(&secret(SEED_SHA1), &s, 1111111109), "07081804");
    }

    #[test]
    fn matching_step_accepts_within_skew_only() {
        let s = CodeSettings::default();
        let secret = secret(SEED_SHA1);
        let now = 1_700_000_000;
        let step = s.step_at(now);
        for offset in [-1i64, 0, 1] {
            let target = (step as i64 + offset) as u64;
            let code = code_at_step(&secret, &s, target);
            assert_eq!(matching_step(&secret, &s, code, now, 1), Some(target));
        }
        let far = code_at_step(&secret, &s, step + 2);
        if far != code_at_step(&secret, &s, step) {
            assert_eq!(matching_step(&secret, &s, far, now, 1), None);
        }
        let previous = code_at_step(&secret, &s, step - 1);
        if previous != code_at_step(&secret, &s, step) {
            assert_eq!(matching_step(&secret, &s, previous, now, 0), None);
        }
    }

    #[test]
    fn parse_reply_trims_and_checks_length_and_digits() {
        assert_eq!(parse_reply(b" 012345\n", 6), Ok(12345));
        assert_eq!(parse_reply(b"12345", 6), Err(Malformed));
        assert_eq!(parse_reply(b"1234567", 6), Err(Malformed));
        assert_eq!(parse_reply(b"12a456", 6), Err(Malformed));
        assert_eq!(parse_reply("１２３４５６".as_bytes(), 6), Err(Malformed));
        assert_eq!(parse_reply(b"", 6), Err(Malformed));
        assert_eq!(parse_reply(b"123\x00456", 6), Err(Malformed));
    }
}
