//! Fuzz target: the google-authenticator import parser; the checks are in
//! fuzz/oracles.rs, shared with the replay of kept inputs in `make test`.
#![no_main]

#[path = "../oracles.rs"]
mod oracles;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracles::google_authenticator(data));
