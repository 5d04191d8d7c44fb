//! The per-user record file `<user>.toml`: the secret, the code settings it
//! was enrolled with, recovery code hashes, and optional starting counters
//! for files written by hand or by an import. Specified in docs/state-file.md.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::secret::{Secret, MIN_SECRET_BITS};
use crate::store::counters::Counters;
use crate::totp::{Algorithm, CodeSettings};

/// Imported google-authenticator secrets of older versions are 80 bits.
pub const SHORT_SECRET_BITS: usize = 80;

/// The largest time step a record may name: the step of the last second
/// an i64 Unix time holds, at one second per step. Larger values could not
/// come from a clock, and u64::MAX is how the counters file writes "none".
pub const MAX_STEP: u64 = i64::MAX as u64;

/// One user's enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub secret: Secret,
    pub code: CodeSettings,
    /// Salted hashes of unused recovery codes.
    pub recovery_codes: Vec<String>,
    /// Unix time of enrollment (0 when unknown, as in hand-written files).
    pub enrolled_at: i64,
    /// The secret is under 128 bits and was imported on purpose.
    pub short_secret: bool,
    /// Counters to start from when no counters exist yet for this secret.
    pub initial: Counters,
}

/// Why a record file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError(pub String);

// The file as written: only `secret` is required.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    secret: Zeroizing<String>,
    #[serde(default = "default_digits")]
    digits: u8,
    #[serde(default = "default_period")]
    period: u64,
    #[serde(default)]
    algorithm: Algorithm,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    recovery_codes: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    enrolled_at: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    short_secret: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_step: Option<u64>,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    failures: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    locked_until: i64,
}

fn default_digits() -> u8 {
    6
}

fn default_period() -> u64 {
    30
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

impl UserRecord {
    /// A new record for a fresh enrollment.
    pub fn new(secret: Secret, code: CodeSettings, enrolled_at: i64) -> UserRecord {
        UserRecord {
            secret,
            code,
            recovery_codes: Vec::new(),
            enrolled_at,
            short_secret: false,
            initial: Counters::default(),
        }
    }

    /// Parses and validates a record file's text.
    pub fn parse(text: &str) -> Result<UserRecord, RecordError> {
        let raw: RawRecord = toml::from_str(text).map_err(|e| {
            RecordError(e.message().split_whitespace().collect::<Vec<_>>().join(" "))
        })?;
        let min_bits = if raw.short_secret {
            SHORT_SECRET_BITS
        } else {
            MIN_SECRET_BITS
        };
        let secret =
            Secret::from_base32(&raw.secret, min_bits).map_err(|e| RecordError(e.to_string()))?;
        let code = CodeSettings {
            digits: raw.digits,
            period: raw.period,
            algorithm: raw.algorithm,
        };
        validate_code(&code)?;
        if raw.locked_until < 0 || raw.enrolled_at < 0 {
            return Err(RecordError("negative time".to_string()));
        }
        if raw.last_step.is_some_and(|step| step > MAX_STEP) {
            return Err(RecordError("last_step is beyond any time".to_string()));
        }
        Ok(UserRecord {
            secret,
            code,
            recovery_codes: raw.recovery_codes,
            enrolled_at: raw.enrolled_at,
            short_secret: raw.short_secret,
            initial: Counters {
                last_step: raw.last_step,
                failures: raw.failures,
                locked_until: raw.locked_until,
                ..Counters::default()
            },
        })
    }

    /// The file text for this record.
    pub fn to_toml(&self) -> Zeroizing<String> {
        let raw = RawRecord {
            secret: self.secret.to_base32(),
            digits: self.code.digits,
            period: self.code.period,
            algorithm: self.code.algorithm,
            recovery_codes: self.recovery_codes.clone(),
            enrolled_at: self.enrolled_at,
            short_secret: self.short_secret,
            last_step: self.initial.last_step,
            failures: self.initial.failures,
            locked_until: self.initial.locked_until,
        };
        let body = toml::to_string(&raw).unwrap_or_default();
        Zeroizing::new(format!(
            "# otpgate state: see docs/state-file.md. Root only.\n{body}"
        ))
    }
}

fn validate_code(code: &CodeSettings) -> Result<(), RecordError> {
    if !(6..=8).contains(&code.digits) {
        return Err(RecordError(format!("digits {} is not 6 to 8", code.digits)));
    }
    if !(1..=3600).contains(&code.period) {
        return Err(RecordError(format!(
            "period {} is not 1 to 3600",
            code.period
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn a_file_with_only_the_secret_is_valid() {
        let record = UserRecord::parse(&format!("secret = \"{SECRET}\"\n")).unwrap();
        assert_eq!(record.code, CodeSettings::default());
        assert_eq!(record.initial, Counters::default());
    }

    #[test]
    fn records_round_trip() {
        let mut record = UserRecord::new(
            Secret::generate().unwrap(),
            CodeSettings::default(),
            1_700_000_000,
        );
        record.recovery_codes = vec!["h1".into(), "h2".into()];
        record.initial.last_step = Some(5);
        assert_eq!(UserRecord::parse(&record.to_toml()).unwrap(), record);
    }

    #[test]
    fn bad_records_are_refused() {
        let cases = [
            String::new(),
            "secret = \"JBSWY3DPEHPK3PXP\"".to_string(),
            "secret = \"not base32!\"".to_string(),
            format!("secret = \"{SECRET}\"\nlast_step = -1"),
            format!("secret = \"{SECRET}\"\nlast_step = 99999999999999999999999"),
            format!("secret = \"{SECRET}\"\nlast_step = 18446744073709551615"),
            format!("secret = \"{SECRET}\"\nlast_step = 9223372036854775808"),
            format!("secret = \"{SECRET}\"\nsecret = \"{SECRET}\""),
            format!("secret = \"{SECRET}\"\ndigits = 9"),
            format!("secret = \"{SECRET}\"\nunknown = 1"),
        ];
        for text in cases {
            assert!(UserRecord::parse(&text).is_err(), "{text}");
        }
    }

    #[test]
    fn the_largest_step_a_clock_can_give_is_kept_through_the_counters() {
        let text = format!("secret = \"{SECRET}\"\nlast_step = {MAX_STEP}");
        let record = UserRecord::parse(&text).unwrap();
        let slot = crate::store::counters::Slot {
            generation: 1,
            fingerprint: [0; 16],
            counters: record.initial,
        };
        let decoded = crate::store::counters::decode(&crate::store::counters::encode(&slot));
        assert_eq!(decoded.unwrap().counters.last_step, Some(MAX_STEP));
    }

    #[test]
    fn short_secrets_need_the_flag() {
        let text = "secret = \"JBSWY3DPEHPK3PXP\"\nshort_secret = true";
        assert_eq!(UserRecord::parse(text).unwrap().secret.bits(), 80);
    }

    #[test]
    fn errors_never_contain_the_secret() {
        let text = format!("secret = \"{SECRET}\"\nsecret = \"{SECRET}\"");
        assert!(!UserRecord::parse(&text).unwrap_err().0.contains(SECRET));
    }
}
