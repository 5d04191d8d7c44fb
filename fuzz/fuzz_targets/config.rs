//! Fuzz target: the configuration parser; the checks are in
//! fuzz/oracles.rs, shared with the replay of kept inputs in `make test`.
#![no_main]

#[path = "../oracles.rs"]
mod oracles;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracles::config(data));
