//! What each fuzz target checks, shared with the replay of the kept inputs
//! in `make test` (tests/hostile_fuzz_regressions.rs): every parser returns
//! without panicking on any bytes, and what it accepts is consistent.
//!
//! - config: errors stay on one line; an accepted config's values lie in
//!   their documented ranges.
//! - state: the bytes read as a record and as a counters file; an accepted
//!   record survives a write and a read unchanged (its starting counters
//!   also through the counters file), a trusted counters slot is exactly
//!   what encoding it gives.
//! - import: an accepted google-authenticator file holds values inside the
//!   ranges google-authenticator-libpam itself accepts.

#![allow(dead_code)]

use otpgate::config::{Config, MAX_FAILURES_LIMIT};
use otpgate::import;
use otpgate::store::counters::{self, FileState, Slot, SLOT_SIZE};
use otpgate::store::record::UserRecord;

pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    match Config::parse(text, "/fuzz/otpgate.toml") {
        Ok(config) => config_in_range(&config),
        Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error: {e}"),
    }
}

fn config_in_range(config: &Config) {
    assert!(!config.groups.is_empty());
    assert!(config.groups.iter().all(|g| !g.is_empty()));
    assert!((6..=8).contains(&config.code.digits));
    assert!((15..=300).contains(&config.code.period));
    assert!(config.skew <= 10);
    assert!((1..=MAX_FAILURES_LIMIT).contains(&config.lockout.max_failures));
    assert!(config.state_dir.is_absolute());
    assert!(config.audit.socket.is_absolute());
}

pub fn state(data: &[u8]) {
    counters_file(data);

    if let Ok(text) = std::str::from_utf8(data) {
        record(text);
    }
}

fn record(text: &str) {
    let Ok(record) = UserRecord::parse(text) else {
        return;
    };

    let written = record.to_toml();
    let again = UserRecord::parse(&written).expect("a written record parses");
    assert_eq!(again, record, "the record changed on a round trip");

    // The record's starting counters must also survive the counters file.
    let slot = Slot {
        generation: 1,
        fingerprint: counters::fingerprint(&record.secret),
        counters: record.initial,
    };
    assert_eq!(counters::decode(&counters::encode(&slot)), Some(slot));
}

fn counters_file(data: &[u8]) {
    if let FileState::Current { slot, next_index } = counters::read_file(data) {
        let used = 1 - next_index;
        let stored = &data[used * SLOT_SIZE..(used + 1) * SLOT_SIZE];
        assert_eq!(&counters::encode(&slot)[..], stored);
    }
}

pub fn google_authenticator(data: &[u8]) {
    let Ok(file) = import::parse(data) else {
        return;
    };

    assert!(file.secret_bits() >= import::MIN_SECRET_BITS);
    assert!((1..=100).contains(&file.window_size));
    assert!((1..=60).contains(&file.step_seconds));
    for code in &file.scratch_codes {
        assert!(code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit()));
    }
    if let Some((attempts, seconds)) = file.rate_limit {
        assert!((1..=100).contains(&attempts) && (1..=3600).contains(&seconds));
    }
}
