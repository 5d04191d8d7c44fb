//! A login killed (SIGKILL) at every point of a state write, with strace's
//! fault injection: a first run traces the login and lists each system
//! call that touches the state folder (by path, or by a descriptor strace
//! shows as a path); then, for each of them, the login runs again from the
//! same state with strace killing it just before that call. Afterwards the
//! record is byte for byte the old or the new one, the counters read as the
//! old or the new ones, logins still work, and a temp file left behind is
//! never read and is cleaned by the next write of the record. Nothing
//! outside the state folder is opened or changed by a killed login. The
//! otpgate command's writes get the same treatment: an enrollment killed
//! anywhere leaves the allowance or the new secret (never both), new
//! recovery codes killed anywhere leave the old set or the new one.

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
use std::os::unix::process::ExitStatusExt;

use otpgate::store::counters::{self, Counters, FileState};
use otpgate::store::record::UserRecord;

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
    let login = wrapped_login(env, &trace_wrapper(&trace), "alice", answers);
    assert_eq!(
        login.result.as_deref(),
        Some("PAM_SUCCESS"),
        "{}",
        login.stdout
    );
    points_in(env, &trace)
}

/// strace writing the state-writing calls, with paths, to `trace`.
fn trace_wrapper(trace: &Path) -> Vec<OsString> {
    let trace_arg = trace.to_string_lossy().into_owned();
    strace(&["-y", "-s", "0", "-o", &trace_arg, "-e", WRITE_CALLS])
}

/// The calls of a trace that touch the state folder, numbered per call
/// name as strace's `when=` counts them; removes the trace.
fn points_in(env: &TestEnv, trace: &Path) -> Vec<Point> {
    let dir = env.state_dir().to_string_lossy().into_owned();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut points = Vec::new();
    for line in fs::read_to_string(trace).unwrap().lines() {
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

/// strace killing the traced process on entry to `point`'s call.
fn kill_wrapper(point: &Point) -> Vec<OsString> {
    let inject = format!("inject={}:signal=SIGKILL:when={}", point.call, point.index);
    let trace = format!("trace={}", point.call);
    strace(&["-o", "/dev/null", "-e", &trace, "-e", &inject])
}

/// Runs the login with SIGKILL delivered on entry to `point`'s call.
fn killed_login(env: &TestEnv, point: &Point, answers: &[&str]) -> RawLogin {
    wrapped_login(env, &kill_wrapper(point), "alice", answers)
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

// ---------------------------------------------------------------------------
// The otpgate command's writes: an enrollment and new recovery codes

/// Runs `otpgate --config CONFIG ARGS` under `wrapper`.
fn admin(env: &TestEnv, wrapper: &[OsString], args: &[&str]) -> std::process::Output {
    let (program, rest) = wrapper.split_first().unwrap();
    std::process::Command::new(program)
        .args(rest)
        .arg(env!("CARGO_BIN_EXE_otpgate"))
        .arg("--config")
        .arg(env.config_path())
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LD_PRELOAD", common::nss_wrapper_path())
        .env("NSS_WRAPPER_PASSWD", env.dir().join("passwd"))
        .env("NSS_WRAPPER_GROUP", env.dir().join("group"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running otpgate")
}

/// Traces the command once from `before`, then kills it before each call
/// that touches the state folder, restoring `before` each time and handing
/// what was left to `check`. Returns how many runs were killed, of how many.
fn sweep_admin(
    env: &TestEnv,
    before: &Files,
    args: &[&str],
    check: impl Fn(&Files, &Point),
) -> (usize, usize) {
    let trace = env.dir().join("trace.txt");
    restore(&env.state_dir(), before);
    let traced = admin(env, &trace_wrapper(&trace), args);
    assert!(
        traced.status.success(),
        "{}",
        String::from_utf8_lossy(&traced.stderr)
    );
    let points = points_in(env, &trace);
    assert!(
        points.iter().any(|p| p.call.starts_with("rename")),
        "{points:#?}"
    );
    let outside = Outside::guard(env, &[], &[]);

    let mut killed = 0;
    for point in &points {
        restore(&env.state_dir(), before);
        outside.begin();

        let run = admin(env, &kill_wrapper(point), args);

        outside.assert_untouched();
        if run.status.signal() == Some(libc::SIGKILL) || run.status.code() == Some(137) {
            killed += 1;
        }
        check(&files_of(&env.state_dir()), point);
    }
    (killed, points.len())
}

/// Whatever a kill left: only alice's files and temp files, a record that
/// parses if there is one, counters that are not corrupt.
fn check_files(left: &Files, point: &Point) -> Option<UserRecord> {
    for name in left.keys() {
        let known = ["alice.toml", "alice.counters", "alice.allow"].contains(&name.as_str());
        assert!(
            known || name.starts_with(".alice.toml.tmp-"),
            "{name} after {}",
            point.line
        );
    }
    if let Some(bytes) = left.get("alice.counters") {
        assert_ne!(
            counters::read_file(bytes),
            FileState::Corrupt,
            "{}",
            point.line
        );
    }
    let record = left.get("alice.toml")?;
    let text = std::str::from_utf8(record).unwrap();
    Some(UserRecord::parse(text).unwrap_or_else(|e| panic!("{e:?} after {}", point.line)))
}

/// A login of alice with a code of `record`'s secret succeeds.
fn assert_login_works(env: &TestEnv, record: &UserRecord, point: &Point) {
    let secret = record.secret.to_base32();
    let code = common::totp_code(&secret, 6, 30, "SHA1", common::now() + 30);
    let login = env.login("alice").answer(&code).run();
    assert_eq!(
        login.result(),
        "PAM_SUCCESS",
        "after {}: {}",
        point.line,
        login.stdout
    );
}

#[test]
fn an_enrollment_killed_anywhere_leaves_the_allowance_or_the_secret_never_both() {
    strace_works();
    let env = TestEnv::new("h-kill-enroll");
    let before: Files = [("alice.allow".to_string(), Vec::new())].into();

    let (killed, points) = sweep_admin(&env, &before, &["enroll", "alice"], |left, point| {
        let record = check_files(left, point);
        assert!(
            !(record.is_some() && left.contains_key("alice.allow")),
            "both the allowance and a secret after {}",
            point.line
        );
        match record {
            Some(record) => assert_login_works(&env, &record, point),
            None => {
                let login = env.login("alice").answer("123456").run();
                assert_eq!(login.result(), "PAM_AUTH_ERR", "after {}", point.line);
                let line = hostile::last_decision(&env);
                assert!(line.contains("reason=not_enrolled"), "{line}");
            }
        }
    });

    assert_eq!(killed, points, "every point is reached");
}

#[test]
fn new_recovery_codes_killed_anywhere_leave_the_old_or_the_new_set() {
    strace_works();
    let env = TestEnv::new("h-kill-codes");
    let hash = otpgate::recovery::hash("1357-2468").unwrap();
    env.write_state(
        "alice",
        &format!("{}recovery_codes = [\"{hash}\"]\n", record()),
    );
    let first = env.login("alice").answer(&code_at_offset(-1)).run();
    assert_eq!(first.result(), "PAM_SUCCESS", "{}", first.stdout);
    let before = files_of(&env.state_dir());
    let old = UserRecord::parse(std::str::from_utf8(&before["alice.toml"]).unwrap()).unwrap();

    let (killed, points) = sweep_admin(
        &env,
        &before,
        &["recovery-codes", "alice"],
        |left, point| {
            let record = check_files(left, point).expect("the record stays");
            assert_eq!(record.secret, old.secret, "after {}", point.line);
            let codes = &record.recovery_codes;
            assert!(
                *codes == old.recovery_codes || (codes.len() == 5 && !codes.contains(&hash)),
                "after {}: {codes:?}",
                point.line
            );
            assert_login_works(&env, &record, point);
        },
    );

    assert_eq!(killed, points, "every point is reached");
}
