//! Replays every input kept from fuzzing (fuzz/regressions/<target>/, the
//! findings, and fuzz/seeds/<target>/, the starting corpus) through the same
//! checks the fuzz targets make (fuzz/oracles.rs), so a fixed finding stays
//! fixed in `make test` without cargo-fuzz or a nightly compiler.

#[path = "../fuzz/oracles.rs"]
mod oracles;

use std::fs;
use std::path::Path;

/// A fuzz target's name and its checks.
type Target = (&'static str, fn(&[u8]));

/// Runs `check` on every file of `fuzz/<kind>/<target>/`; returns how many.
fn replay(kind: &str, target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == ".keep") {
            continue;
        }
        let bytes = fs::read(&path).unwrap();
        let caught = std::panic::catch_unwind(|| check(&bytes));
        assert!(caught.is_ok(), "{} fails its check again", path.display());
        count += 1;
    }
    count
}

#[test]
fn every_kept_fuzz_input_still_passes_its_target_checks() {
    let targets: [Target; 3] = [
        ("config", oracles::config),
        ("state", oracles::state),
        ("import", oracles::google_authenticator),
    ];

    for (target, check) in targets {
        let seeds = replay("seeds", target, check);
        let regressions = replay("regressions", target, check);
        assert!(seeds > 0, "no seeds for {target}");
        println!("{target}: {seeds} seeds, {regressions} regressions");
    }
}
