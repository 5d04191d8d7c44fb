//! Property tests (proptest) of what hostile input reaches: the config,
//! record and counters parsers never panic and round-trip what they accept;
//! a cut record never yields another secret; a code for step s is accepted
//! exactly when |s - now| <= skew and s is after the last accepted step;
//! replies, user names and audit values are judged and escaped as
//! documented, NUL bytes included (which no C string could carry).

use proptest::prelude::*;

use otpgate::audit::escape;
use otpgate::config::{Config, Lockout};
use otpgate::secret::Secret;
use otpgate::store::counters::{self, Counters, FileState, Slot, SLOT_SIZE};
use otpgate::store::record::{UserRecord, MAX_STEP};
use otpgate::totp::{self, Algorithm, CodeSettings};
use otpgate::users::UserName;
use otpgate::verify::{self, Policy, Proof, Rejection, Verdict};

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![
        Just(Algorithm::SHA1),
        Just(Algorithm::SHA256),
        Just(Algorithm::SHA512)
    ]
}

// ---------------------------------------------------------------------------
// The config

/// The parts of a valid config, to render as TOML.
#[derive(Debug, Clone)]
struct ConfigParts {
    groups: Vec<String>,
    state_dir: String,
    digits: u8,
    period: u64,
    algorithm: Algorithm,
    skew: u32,
    max_failures: u32,
    lock_seconds: u64,
    mode: &'static str,
    issuer: String,
    recovery_codes: u32,
}

fn config_parts() -> impl Strategy<Value = ConfigParts> {
    (
        proptest::collection::vec("[a-z_][a-z0-9_. -]{0,30}", 1..5),
        "/[a-z0-9/._-]{0,40}",
        (6u8..=8, 15u64..=300, algorithm(), 0u32..=10),
        (1u32..=100, 1u64..=86_400 * 365),
        prop_oneof![Just("at-login"), Just("after-reset"), Just("admin-only")],
        "[A-Za-z0-9 ._-]{1,64}",
        0u32..=10,
    )
        .prop_map(
            |(groups, state_dir, code, lockout, mode, issuer, recovery_codes)| ConfigParts {
                groups,
                state_dir,
                digits: code.0,
                period: code.1,
                algorithm: code.2,
                skew: code.3,
                max_failures: lockout.0,
                lock_seconds: lockout.1,
                mode,
                issuer,
                recovery_codes,
            },
        )
}

fn quoted(text: &str) -> String {
    format!("{text:?}")
}

fn render(parts: &ConfigParts) -> String {
    let groups: Vec<String> = parts.groups.iter().map(|g| quoted(g)).collect();
    format!(
        "groups = [{}]\nstate_dir = {}\n\n[code]\ndigits = {}\nperiod = {}\n\
         algorithm = \"{}\"\nskew = {}\n\n[lockout]\nmax_failures = {}\n\
         lock_seconds = {}\n\n[enrollment]\nmode = \"{}\"\nissuer = {}\n\
         recovery_codes = {}\n",
        groups.join(", "),
        quoted(&parts.state_dir),
        parts.digits,
        parts.period,
        parts.algorithm,
        parts.skew,
        parts.max_failures,
        parts.lock_seconds,
        parts.mode,
        quoted(&parts.issuer),
        parts.recovery_codes
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_config_parser_never_panics_and_errors_stay_on_one_line(text in ".{0,400}") {
        if let Err(e) = Config::parse(&text, "p") {
            prop_assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn the_config_parser_never_panics_on_near_valid_text(
        lines in proptest::collection::vec(
            "(\\[(code|lockout|enrollment|audit|store)\\]|(groups|digits|period|skew|algorithm|max_failures|lock_seconds|mode|issuer|state_dir|socket|kind) = (-?[0-9]{1,22}|\"[^\"]{0,12}\"|\\[\"[a-z]{0,5}\"\\]|true))",
            0..12,
        )
    ) {
        let _ = Config::parse(&lines.join("\n"), "p");
    }

    #[test]
    fn a_valid_config_reads_back_what_was_written(parts in config_parts()) {
        let config = Config::parse(&render(&parts), "p").unwrap();

        prop_assert_eq!(&config.groups, &parts.groups);
        prop_assert_eq!(config.state_dir.to_str(), Some(parts.state_dir.as_str()));
        prop_assert_eq!(config.code, CodeSettings {
            digits: parts.digits,
            period: parts.period,
            algorithm: parts.algorithm,
        });
        prop_assert_eq!(config.skew, parts.skew);
        prop_assert_eq!(config.lockout, Lockout {
            max_failures: parts.max_failures,
            lock_seconds: parts.lock_seconds,
        });
        prop_assert_eq!(config.enrollment.mode.to_string(), parts.mode);
        prop_assert_eq!(&config.enrollment.issuer, &parts.issuer);
        prop_assert_eq!(config.enrollment.recovery_codes, parts.recovery_codes);
    }

    #[test]
    fn an_out_of_range_value_refuses_the_whole_config(
        parts in config_parts(),
        which in 0usize..5,
        bad in prop_oneof![0u64..6, 9u64..1000, 301u64..100_000],
    ) {
        let mut text = render(&parts);
        let (key, value) = match which {
            0 => ("digits", bad.to_string()),
            1 => ("period", (bad % 15).to_string()),
            2 => ("skew", (11 + bad).to_string()),
            3 => ("max_failures", (101 + bad).to_string()),
            _ => ("recovery_codes", (11 + bad).to_string()),
        };
        let line = text.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap().to_string();
        text = text.replace(&line, &format!("{key} = {value}"));

        prop_assert!(Config::parse(&text, "p").is_err(), "{}", text);
    }
}

// ---------------------------------------------------------------------------
// The record

fn secret_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 16..=64)
}

fn user_record() -> impl Strategy<Value = UserRecord> {
    (
        secret_bytes(),
        (6u8..=8, 1u64..=3600, algorithm()),
        proptest::collection::vec("[0-9a-f$a-z]{0,40}", 0..4),
        (0i64..=i64::MAX, proptest::option::of(0u64..=MAX_STEP)),
        (any::<u32>(), 0i64..=i64::MAX),
    )
        .prop_map(
            |(bytes, code, recovery_codes, (enrolled_at, last_step), (failures, locked_until))| {
                let secret = Secret::from_bytes(bytes, 128).unwrap();
                let settings = CodeSettings {
                    digits: code.0,
                    period: code.1,
                    algorithm: code.2,
                };
                let mut record = UserRecord::new(secret, settings, enrolled_at);
                record.recovery_codes = recovery_codes;
                record.initial = Counters {
                    last_step,
                    failures,
                    locked_until,
                    ..Counters::default()
                };
                record
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_record_parser_never_panics(text in ".{0,400}") {
        let _ = UserRecord::parse(&text);
    }

    #[test]
    fn a_record_reads_back_what_was_written(record in user_record()) {
        let text = record.to_toml();

        prop_assert_eq!(UserRecord::parse(&text).unwrap(), record);
    }

    #[test]
    fn a_record_cut_anywhere_never_yields_another_secret(record in user_record(), cut in any::<prop::sample::Index>()) {
        let text = record.to_toml();
        let at = cut.index(text.len() + 1);
        let Some(prefix) = text.get(..at) else { return Ok(()) };

        if let Ok(cut_record) = UserRecord::parse(prefix) {
            prop_assert_eq!(cut_record.secret, record.secret);
        }
    }

    #[test]
    fn a_record_error_never_holds_the_secret(record in user_record(), junk in "[a-z_]{1,12} = [^\n]{0,20}") {
        let secret = record.secret.to_base32();
        let text = format!("{}{junk}\n{junk}\n", record.to_toml().as_str());

        if let Err(e) = UserRecord::parse(&text) {
            prop_assert!(!e.0.contains(&secret[..16]), "{}", e.0);
        }
    }
}

// ---------------------------------------------------------------------------
// The counters file

fn slot() -> impl Strategy<Value = Slot> {
    (
        any::<u64>(),
        any::<[u8; 16]>(),
        proptest::option::of(0u64..u64::MAX),
        any::<u32>(),
        (any::<i64>(), any::<i64>(), any::<i64>()),
    )
        .prop_map(
            |(generation, fingerprint, last_step, failures, times)| Slot {
                generation,
                fingerprint,
                counters: Counters {
                    last_step,
                    failures,
                    locked_until: times.0,
                    last_success: times.1,
                    last_failure: times.2,
                },
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_slot_decodes_to_what_was_encoded(slot in slot()) {
        prop_assert_eq!(counters::decode(&counters::encode(&slot)), Some(slot));
    }

    #[test]
    fn any_changed_byte_of_a_slot_is_caught(slot in slot(), at in 0usize..SLOT_SIZE, flip in 1u8..=255) {
        let mut bytes = counters::encode(&slot);
        bytes[at] ^= flip;

        prop_assert_eq!(counters::decode(&bytes), None);
    }

    #[test]
    fn reading_a_counters_file_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = counters::read_file(&bytes);
    }

    #[test]
    fn the_newer_of_two_good_slots_wins(a in slot(), b in slot()) {
        prop_assume!(a.generation != b.generation);
        let file = [counters::encode(&a), counters::encode(&b)].concat();

        let newer = if b.generation > a.generation { b } else { a };
        let written_next = if b.generation > a.generation { 0 } else { 1 };
        prop_assert_eq!(
            counters::read_file(&file),
            FileState::Current { slot: newer, next_index: written_next }
        );
    }

    #[test]
    fn a_torn_newer_slot_falls_back_to_the_older(a in slot(), b in slot(), cut in 1usize..SLOT_SIZE) {
        prop_assume!(b.generation > a.generation);
        let mut file = [counters::encode(&a), counters::encode(&b)].concat();
        // b half written over zeros: its tail is lost.
        for byte in &mut file[SLOT_SIZE + cut..] {
            *byte = 0;
        }

        prop_assert_eq!(counters::read_file(&file), FileState::Current { slot: a, next_index: 1 });
    }
}

// ---------------------------------------------------------------------------
// Code verification

const LOCKOUT: Lockout = Lockout {
    max_failures: 100,
    lock_seconds: 300,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_code_is_accepted_iff_in_the_window_and_after_the_last_step(
        bytes in secret_bytes(),
        settings in (6u8..=8, 15u64..=120, algorithm()),
        now in 1_000_000_000i64..4_000_000_000,
        skew in 0u32..=3,
        offset in -5i64..=5,
        last_offset in proptest::option::of(-6i64..=6),
    ) {
        let secret = Secret::from_bytes(bytes, 128).unwrap();
        let code = CodeSettings { digits: settings.0, period: settings.1, algorithm: settings.2 };
        let record = UserRecord::new(secret.clone(), code, 0);
        let now_step = code.step_at(now) as i64;
        let step = (now_step + offset) as u64;
        let last_step = last_offset.map(|o| (now_step + o) as u64);
        let counters = Counters { last_step, ..Counters::default() };
        let policy = Policy { skew, lockout: LOCKOUT };
        let reply = format!("{:0width$}", totp::code_at_step(&secret, &code, step), width = usize::from(code.digits));

        let judged = verify::judge(&record, counters, reply.as_bytes(), now, &policy);

        // Two steps of the window may share a code; the newest one counts.
        let window = (now_step - i64::from(skew))..=(now_step + i64::from(skew));
        let matching = window
            .filter(|&s| totp::code_at_step(&secret, &code, s as u64) == totp::code_at_step(&secret, &code, step))
            .max();
        let expected = match matching {
            None => Verdict::Rejected { why: Rejection::WrongCode, failures: 1, locked_until: None },
            Some(s) if last_step.is_some_and(|l| s as u64 <= l) => {
                Verdict::Rejected { why: Rejection::Replay, failures: 1, locked_until: None }
            }
            Some(s) => Verdict::Accepted(Proof::Code { step: s as u64 }),
        };
        prop_assert_eq!(judged.verdict, expected);
        if offset.unsigned_abs() <= u64::from(skew) && !last_step.is_some_and(|l| step <= l) {
            prop_assert!(matches!(judged.verdict, Verdict::Accepted(_)));
        }
        match judged.verdict {
            Verdict::Accepted(Proof::Code { step }) => {
                prop_assert_eq!(judged.counters.last_step, Some(step));
                prop_assert_eq!(judged.counters.failures, 0);
            }
            _ => prop_assert_eq!(judged.counters.last_step, last_step),
        }
    }

    #[test]
    fn a_locked_user_is_refused_whatever_the_reply(
        bytes in secret_bytes(),
        now in 1_000_000_000i64..4_000_000_000,
        left in 1i64..100_000,
        reply in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let secret = Secret::from_bytes(bytes, 128).unwrap();
        let record = UserRecord::new(secret.clone(), CodeSettings::default(), 0);
        let counters = Counters { failures: 7, locked_until: now + left, ..Counters::default() };
        let policy = Policy { skew: 1, lockout: LOCKOUT };
        let valid = totp::code_at(&secret, &CodeSettings::default(), now);

        for reply in [reply.as_slice(), valid.as_bytes()] {
            let judged = verify::judge(&record, counters, reply, now, &policy);
            prop_assert_eq!(judged.verdict, Verdict::Locked { until: now + left, failures: 7 });
            prop_assert_eq!(judged.counters, counters);
        }
    }

    #[test]
    fn every_refusal_counts_one_failure_and_locks_at_the_limit(
        failures in 0u32..10,
        max_failures in 1u32..10,
        reply in proptest::collection::vec(any::<u8>(), 0..12),
    ) {
        let secret = Secret::from_bytes(vec![7; 20], 128).unwrap();
        let record = UserRecord::new(secret, CodeSettings::default(), 0);
        let now = 1_700_000_000;
        let counters = Counters { failures, ..Counters::default() };
        let policy = Policy { skew: 1, lockout: Lockout { max_failures, lock_seconds: 60 } };

        let judged = verify::judge(&record, counters, &reply, now, &policy);

        if let Verdict::Rejected { failures: after, locked_until, .. } = judged.verdict {
            prop_assert_eq!(after, failures + 1);
            prop_assert_eq!(locked_until.is_some(), failures + 1 >= max_failures);
        }
    }

    #[test]
    fn a_reply_is_a_code_only_if_it_is_exactly_the_digits(reply in proptest::collection::vec(any::<u8>(), 0..16), digits in 6u8..=8) {
        let trimmed = reply.trim_ascii();
        let ok = trimmed.len() == usize::from(digits) && trimmed.iter().all(u8::is_ascii_digit);

        prop_assert_eq!(totp::parse_reply(&reply, digits).is_ok(), ok);
    }

    #[test]
    fn a_nul_inside_a_valid_code_makes_it_malformed(at in 1usize..6, tail in "[0-9]{0,3}") {
        let secret = Secret::from_bytes(vec![9; 20], 128).unwrap();
        let now = 1_700_000_000;
        let code = totp::code_at(&secret, &CodeSettings::default(), now);
        let (head, rest) = code.as_bytes().split_at(at);
        let reply = [head, b"\0", rest, tail.as_bytes()].concat();

        prop_assert!(totp::parse_reply(&reply, 6).is_err());
    }
}

// ---------------------------------------------------------------------------
// User names and audit values

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn an_accepted_user_name_is_a_safe_file_name(raw in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(name) = UserName::parse(&raw) {
            let text = name.as_str();
            prop_assert!(!text.is_empty() && text.len() <= 64);
            prop_assert!(!text.starts_with('.') && !text.starts_with('-'));
            prop_assert!(text.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\'));
        }
    }

    #[test]
    fn a_user_name_with_a_nul_or_a_control_character_is_refused(
        head in "[a-z]{0,10}",
        bad in prop_oneof![Just(0u8), 1u8..0x20, Just(0x7f)],
        tail in "[a-z]{0,10}",
    ) {
        let raw = [head.as_bytes(), &[bad], tail.as_bytes()].concat();

        prop_assert!(UserName::parse(&raw).is_err());
    }

    #[test]
    fn an_escaped_value_is_one_printable_word_that_can_be_read_back(value in proptest::collection::vec(any::<u8>(), 0..64)) {
        let escaped = escape(&value);

        prop_assert!(escaped.bytes().all(|b| b.is_ascii_graphic() && b != b'='));
        prop_assert_eq!(unescape(&escaped), value);
    }
}

/// Reads back what `escape` wrote (`""` is empty, `\xNN` one byte).
fn unescape(text: &str) -> Vec<u8> {
    if text == "\"\"" {
        return Vec::new();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}
