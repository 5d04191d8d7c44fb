//! Logins under valgrind's memcheck, through the real Linux-PAM library
//! with the module of this build: a member with a valid code, a wrong code,
//! a user outside the groups and a recovery code (which rewrites the
//! record). No invalid read or write, no use of uninitialised memory, no
//! error of any other kind and no block definitely lost, in the whole
//! process. (About 2.4 KB in 5 blocks that libpam and glibc keep for the
//! life of the process stay "still reachable".)

mod common;
#[path = "support/hostile.rs"]
mod hostile;

use std::ffi::OsString;
use std::fs;

use common::TestEnv;
use hostile::{code_now, enrolled, wrapped_login, wrong_code};

/// Runs one login under memcheck; returns its result and the log.
fn memcheck(env: &TestEnv, user: &str, answers: &[&str], name: &str) -> (Option<String>, String) {
    let log = env.dir().join(format!("valgrind-{name}.log"));
    let wrapper: Vec<OsString> = [
        "valgrind",
        "--tool=memcheck",
        "--leak-check=full",
        "--show-leak-kinds=definite",
        "--errors-for-leak-kinds=definite",
        "--keep-debuginfo=yes",
        "--num-callers=40",
        "--child-silent-after-fork=yes",
        &format!("--log-file={}", log.display()),
        "--",
    ]
    .iter()
    .map(Into::into)
    .collect();

    let login = wrapped_login(env, &wrapper, user, answers);

    let text = fs::read_to_string(&log).unwrap();
    assert!(
        login.status.success(),
        "{}{}\n{text}",
        login.stdout,
        login.stderr
    );
    (login.result, text)
}

/// The error records of a memcheck log (each from its first line to the
/// blank line after its stack).
fn records(log: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in log.lines() {
        let body = line.split_once("== ").map_or("", |(_, b)| b);
        if body.is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        current.push_str(body);
        current.push('\n');
    }
    out.push(current);
    out
}

fn assert_clean(log: &str, what: &str) {
    let bad = [
        "Invalid read",
        "Invalid write",
        "Invalid free",
        "Mismatched free",
        "uninitialised",
        "Syscall param",
        "Source and destination overlap",
    ];
    for record in records(log) {
        for kind in bad {
            assert!(!record.contains(kind), "{what}: {record}");
        }
        let ours = record.contains("libotpgate") || record.contains("otpgate::");
        assert!(
            !(record.contains("definitely lost") && ours),
            "{what}: {record}"
        );
    }
    // Stricter than the records above: nothing definitely lost at all, and
    // no error of any kind, in the whole process.
    assert!(log.contains("ERROR SUMMARY: 0 errors"), "{what}: {log}");
    assert!(
        log.contains("definitely lost: 0 bytes in 0 blocks"),
        "{what}: {log}"
    );
}

#[test]
fn logins_under_memcheck_read_and_write_only_their_own_memory() {
    let env = enrolled("h-valgrind", "alice");
    let hash = otpgate::recovery::hash("5555-6666").unwrap();
    let text = format!("{}recovery_codes = [\"{hash}\"]\n", hostile::record());
    env.write_state("alice", &text);

    let (success, success_log) = memcheck(&env, "alice", &[&code_now()], "success");
    let (wrong, wrong_log) = memcheck(&env, "alice", &[&wrong_code()], "wrong");
    let (outsider, outsider_log) = memcheck(&env, "carol", &[], "outsider");
    // A recovery code rewrites the record: temp file, rename, stale temps.
    let (recovery, recovery_log) = memcheck(&env, "alice", &["5555-6666"], "recovery");

    assert_eq!(success.as_deref(), Some("PAM_SUCCESS"));
    assert_eq!(wrong.as_deref(), Some("PAM_AUTH_ERR"));
    assert_eq!(outsider.as_deref(), Some("PAM_PERM_DENIED"));
    assert_eq!(recovery.as_deref(), Some("PAM_SUCCESS"));
    assert_clean(&success_log, "success");
    assert_clean(&wrong_log, "wrong code");
    assert_clean(&outsider_log, "non-member");
    assert_clean(&recovery_log, "recovery code");
}
