//! A login killed (SIGKILL) at every point of a state write, with strace's
//! fault injection: a first run traces the login and lists each system
//! call that touches the state folder (by path, or by a descriptor strace
//! shows as a path); then, for each of them, the login runs again from the
//! same state with strace killing it just before that call. Afterwards the
//! record is byte for byte the old or the new one, the counters read as the
//! old or the new ones, logins still work, and a temp file left behind is
//! never read and is cleaned by the next write of the record. Nothing
//! outside the state folder is opened or changed by a killed login.

mod common;
#[path = "support/hostile.rs"]
mod hostile;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::TestEnv;
use hostile::{code_at_offset, code_now, record, wrapped_login, write_file, Outside, RawLogin};
use otpgate::store::counters::{self, Counters, FileState};

/// The calls by which a login creates, writes, renames, syncs, locks or
/// removes state files.
const WRITE_CALLS: &str =
    "openat,write,pwrite64,ftruncate,fsync,fdatasync,rename,renameat,renameat2,unlinkat,flock,close";

/// The state folder's files, by name, as bytes.
type Files = BTreeMap<String, Vec<u8>>;

fn files_of(dir: &Path) -> Files {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, fs::read(e.path()).unwrap_or_default())
        })
        .collect()
}

fn restore(dir: &Path, files: &Files) {
    for entry in fs::read_dir(dir).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for (name, bytes) in files {
        write_file(&dir.join(name), bytes, 0o600);
    }
}

fn strace(args: &[&str]) -> Vec<OsString> {
    let mut wrapper: Vec<OsString> = vec!["strace".into(), "-qq".into()];
    wrapper.extend(args.iter().map(Into::into));
    wrapper.push("--".into());
    wrapper
}

/// One kill point: the `index`th call (from 1) of `call` in the login.
#[derive(Debug, Clone)]
struct Point {
    call: String,
    index: usize,
    line: String,
}

/// Traces one login and returns every call that touches `dir`.
fn state_calls(env: &TestEnv, answers: &[&str]) -> Vec<Point> {
    let trace = env.dir().join("trace.txt");
    let trace_arg = trace.to_string_lossy().into_owned();
    let wrapper = strace(&["-y", "-s", "0", "-o", &trace_arg, "-e", WRITE_CALLS]);
    let login = wrapped_login(env, &wrapper, "alice", answers);
    assert_eq!(
        login.result.as_deref(),
        Some("PAM_SUCCESS"),
        "{}",
        login.stdout
    );

    let dir = env.state_dir().to_string_lossy().into_owned();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut points = Vec::new();
    for line in fs::read_to_string(&trace).unwrap().lines() {
        let Some((call, _)) = line.split_once('(') else {
            continue;
        };
        let index = seen.entry(call.to_string()).or_default();
        *index += 1;
        if line.contains(&dir) {
            points.push(Point {
                call: call.to_string(),
                index: *index,
                line: line.to_string(),
            });
        }
    }
    fs::remove_file(trace).unwrap();
    points
}

/// Runs the login with SIGKILL delivered on entry to `point`'s call.
fn killed_login(env: &TestEnv, point: &Point, answers: &[&str]) -> RawLogin {
    let inject = format!("inject={}:signal=SIGKILL:when={}", point.call, point.index);
    let wrapper = strace(&[
        "-o",
        "/dev/null",
        "-e",
        &format!("trace={}", point.call),
        "-e",
        &inject,
    ]);
    wrapped_login(env, &wrapper, "alice", answers)
}

/// The counters as the module reads them, without the times of the last
/// success and failure (they differ from run to run).
fn counters_of(files: &Files) -> Option<Counters> {
    let bytes = files.get("alice.counters")?;
    match counters::read_file(bytes) {
        FileState::Fresh => None,
        FileState::Current { slot, .. } => Some(Counters {
            last_success: 0,
            last_failure: 0,
            ..slot.counters
        }),
        FileState::Corrupt => panic!("corrupt counters after a kill"),
    }
}

/// What a scenario starts from and ends in when nothing is killed.
struct Scenario {
    before: Files,
    after: Files,
    answers: Vec<String>,
}

impl Scenario {
    /// Runs the scenario's login once in full and records both states.
    fn record(env: &TestEnv, answers: Vec<String>) -> (Scenario, Vec<Point>) {
        let before = files_of(&env.state_dir());
        let refs: Vec<&str> = answers.iter().map(String::as_str).collect();
        let points = state_calls(env, &refs);
        let after = files_of(&env.state_dir());
        restore(&env.state_dir(), &before);
        (
            Scenario {
                before,
                after,
                answers,
            },
            points,
        )
    }

    /// Kills the login at every point and checks what it left.
    fn kill_everywhere(&self, env: &TestEnv, points: &[Point]) -> usize {
        let refs: Vec<&str> = self.answers.iter().map(String::as_str).collect();
        let outside = Outside::guard(env, &[], &[]);
        let mut killed = 0;
        for point in points {
            restore(&env.state_dir(), &self.before);
            outside.begin();

            let login = killed_login(env, point, &refs);

            outside.assert_untouched();
            if login.result.is_none() {
                killed += 1;
            }
            self.check_left(env, point);
        }
        killed
    }

    /// The record is the old or the new one, the counters the old or the
    /// new ones, and a login with a fresh code succeeds.
    fn check_left(&self, env: &TestEnv, point: &Point) {
        let left = files_of(&env.state_dir());
        let record = left.get("alice.toml");
        assert!(
            record == self.before.get("alice.toml") || record == self.after.get("alice.toml"),
            "killed before {}: the record is neither old nor new",
            point.line
        );
        let counters = counters_of(&left);
        assert!(
            counters == counters_of(&self.before) || counters == counters_of(&self.after),
            "killed before {}: counters {counters:?}",
            point.line
        );
        let strays: Vec<&String> = left.keys().filter(|n| n.starts_with('.')).collect();
        assert!(
            strays.iter().all(|n| n.starts_with(".alice.toml.tmp-")),
            "{strays:?}"
        );

        let login = env.login("alice").answer(&code_at_offset(1)).run();
        assert_eq!(
            login.result(),
            "PAM_SUCCESS",
            "after a kill before {}: {}",
            point.line,
            login.stdout
        );
    }
}

fn strace_works() {
    let status = std::process::Command::new("strace")
        .args(["-qq", "-o", "/dev/null", "true"])
        .status()
        .expect("strace (Debian package strace) is needed");
    assert!(status.success(), "strace cannot trace here");
}

#[test]
fn a_login_killed_while_using_a_recovery_code_leaves_old_or_new_state() {
    strace_works();
    let env = TestEnv::new("h-kill-recovery");
    let hash = otpgate::recovery::hash("1357-2468").unwrap();
    env.write_state(
        "alice",
        &format!("{}recovery_codes = [\"{hash}\"]\n", record()),
    );
    let first = env.login("alice").answer(&code_at_offset(-1)).run();
    assert_eq!(first.result(), "PAM_SUCCESS", "{}", first.stdout);
    // A failure to clear, so the recovery code also has counters to write.
    let wrong = env.login("alice").answer(&hostile::wrong_code()).run();
    assert_eq!(wrong.result(), "PAM_AUTH_ERR", "{}", wrong.stdout);

    let (scenario, points) = Scenario::record(&env, vec!["1357-2468".to_string()]);

    let calls: Vec<&str> = points.iter().map(|p| p.call.as_str()).collect();
    for needed in [
        "openat",
        "write",
        "fsync",
        "rename",
        "pwrite64",
        "fdatasync",
    ] {
        assert!(
            calls.iter().any(|c| c.starts_with(needed)),
            "no {needed} on the state folder in {points:#?}"
        );
    }
    assert_ne!(
        scenario.before.get("alice.toml"),
        scenario.after.get("alice.toml")
    );
    let killed = scenario.kill_everywhere(&env, &points);
    // The login is the same each time, so every point is reached.
    assert_eq!(killed, points.len(), "{points:#?}");
}

#[test]
fn a_first_login_killed_while_creating_the_counters_leaves_none_or_new() {
    strace_works();
    let env = TestEnv::new("h-kill-first");
    env.write_state("alice", &record());

    let (scenario, points) = Scenario::record(&env, vec![code_now()]);

    let calls: Vec<&str> = points.iter().map(|p| p.call.as_str()).collect();
    for needed in [
        "openat",
        "ftruncate",
        "pwrite64",
        "fdatasync",
        "fsync",
        "flock",
    ] {
        assert!(calls.contains(&needed), "no {needed} in {points:#?}");
    }
    assert!(!scenario.before.contains_key("alice.counters"));
    let killed = scenario.kill_everywhere(&env, &points);
    // The login is the same each time, so every point is reached.
    assert_eq!(killed, points.len(), "{points:#?}");
}

#[test]
fn a_stray_temp_file_is_never_read_and_the_next_record_write_cleans_it() {
    let env = TestEnv::new("h-kill-stray");
    let hash = otpgate::recovery::hash("1111-2222").unwrap();
    env.write_state(
        "alice",
        &format!("{}recovery_codes = [\"{hash}\"]\n", record()),
    );
    let stray = env.state_dir().join(".alice.toml.tmp-0123456789abcdef");
    write_file(
        &stray,
        b"secret = \"JBSWY3DPEHPK3PXP\"\nshort_secret = true\n",
        0o600,
    );
    let fresh = env.state_dir().join(".alice.toml.tmp-fedcba9876543210");
    write_file(&fresh, b"garbage", 0o600);
    let watch = hostile::Watch::new(&[&stray]);

    let login = env.login("alice").answer(&code_now()).run();
    assert_eq!(login.result(), "PAM_SUCCESS", "{}", login.stdout);
    watch.assert_untouched();

    let old = SystemTime::now() - Duration::from_secs(120);
    fs::File::options()
        .write(true)
        .open(&stray)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let login = env.login("alice").answer("1111-2222").run();
    assert_eq!(login.result(), "PAM_SUCCESS", "{}", login.stdout);

    assert!(!stray.exists(), "the stale temp file is gone");
    assert!(
        fresh.exists(),
        "a temp file under a minute old may be a writer at work"
    );
}
