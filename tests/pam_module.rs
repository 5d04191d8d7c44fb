//! The module's contract, through the real Linux-PAM library: every row of
//! the results table (who is asked, what PAM returns, what the audit trail
//! says), codes cross-checked with oathtool, replay, lockout and its release,
//! parallel logins with one code, and unsafe state files.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{now, totp_code, Conv, TestEnv};
use otpgate::store::counters::{self, FileState, Slot};

const SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const AUTHPRIV: u32 = 10;

/// The default config with another lockout threshold.
fn with_max_failures(env: &TestEnv, max: u32) {
    env.write_config(
        &common::DEFAULT_CONFIG.replace("max_failures = 5", &format!("max_failures = {max}")),
    );
}

fn enrolled(name: &str, user: &str) -> TestEnv {
    let env = TestEnv::new(name);
    env.write_state(user, &format!("secret = \"{SECRET}\"\n"));
    env
}

fn code_now() -> String {
    totp_code(SECRET, 6, 30, "SHA1", now())
}

/// A well-formed code that matches no step in the accepted window.
fn wrong_code() -> String {
    let t = now();
    let window: Vec<String> = (0..5)
        .map(|i| totp_code(SECRET, 6, 30, "SHA1", t - 60 + i * 30))
        .collect();
    (0..)
        .map(|n| format!("{:06}", 100_000 + n))
        .find(|c| !window.contains(c))
        .unwrap()
}

/// The one audit line that starts with `result=`, for this env.
fn decision_line(env: &TestEnv) -> String {
    let lines: Vec<String> = env
        .audit_lines()
        .into_iter()
        .filter(|l| l.contains("result="))
        .collect();
    assert_eq!(lines.len(), 1, "one decision line expected: {lines:?}");
    lines[0].clone()
}

fn last_decision(env: &TestEnv) -> String {
    env.audit_lines()
        .into_iter()
        .rfind(|l| l.contains("result="))
        .expect("an audit line")
}

#[test]
fn a_member_with_a_valid_code_gets_in_and_the_decision_is_audited() {
    let env = enrolled("valid", "alice");

    let login = env
        .login("alice")
        .answer(&code_now())
        .rhost("10.1.2.3")
        .tty("pts/1")
        .run();

    assert_eq!(login.result(), "PAM_SUCCESS", "{}", login.stdout);
    assert_eq!(login.prompts(), ["Verification code: "]);
    assert_eq!(login.messages[0].0, "prompt-echo-off");
    let records = env.audit_records();
    let record = records.iter().find(|r| r.text.contains("result=")).unwrap();
    assert_eq!(record.facility(), Some(AUTHPRIV));
    assert_eq!(
        record.text,
        "pam_otpgate(otpgate-test:auth): result=success reason=code user=alice \
         rhost=10.1.2.3 tty=pts/1 failures=0/5"
    );
}

#[test]
fn a_member_by_primary_group_is_asked_too() {
    let env = enrolled("primary", "bob");
    let login = env.login("bob").answer(&code_now()).run();
    assert_eq!(login.result(), "PAM_SUCCESS", "{}", login.stdout);
    assert_eq!(login.prompts().len(), 1);
}

#[test]
fn the_same_code_twice_is_a_replay() {
    let env = enrolled("replay", "alice");
    let code = code_now();

    assert_eq!(
        env.login("alice").answer(&code).run().result(),
        "PAM_SUCCESS"
    );
    let again = env.login("alice").answer(&code).rhost("10.9.9.9").run();

    assert_eq!(again.result(), "PAM_AUTH_ERR");
    assert!(last_decision(&env).contains("result=denied reason=replay user=alice rhost=10.9.9.9"));
    assert!(last_decision(&env).ends_with("failures=1/5"));
}

#[test]
fn a_wrong_or_malformed_code_is_refused() {
    let env = enrolled("wrong", "alice");
    with_max_failures(&env, 100);

    let wrong = env.login("alice").answer(&wrong_code()).run();
    assert_eq!(wrong.result(), "PAM_AUTH_ERR");
    assert!(last_decision(&env).contains("result=denied reason=wrong_code user=alice"));

    for reply in ["12345", "1234567", "12a456", "", "   "] {
        let login = env.login("alice").answer(reply).run();
        assert_eq!(login.result(), "PAM_AUTH_ERR", "{reply:?}");
        assert!(
            last_decision(&env).contains("reason=malformed"),
            "{reply:?}"
        );
    }
}

#[test]
fn surrounding_white_space_is_trimmed() {
    let env = enrolled("trim", "alice");
    let login = env
        .login("alice")
        .answer(&format!("  {} \t", code_now()))
        .run();
    assert_eq!(login.result(), "PAM_SUCCESS");
}

#[test]
fn a_user_outside_the_groups_is_not_asked() {
    let env = enrolled("outsider", "alice");
    env.write_service(
        "stack",
        "auth required {module} config={config}\nauth required pam_permit.so\n",
    );

    // PAM_IGNORE leaves the decision to the rest of the stack: after it,
    // pam_permit decides alone; a member is still refused without a code.
    let carol = env.login("carol").service("stack").run();
    assert_eq!(carol.result(), "PAM_SUCCESS");
    assert!(carol.messages.is_empty());
    let alice = env.login("alice").service("stack").run();
    assert_eq!(alice.result(), "PAM_AUTH_ERR");

    // Alone in its stack, an ignoring module leaves libpam with no decision,
    // which libpam turns into PAM_PERM_DENIED: never a success.
    let alone = env.login("carol").run();
    assert_eq!(alone.result(), "PAM_PERM_DENIED");
    assert!(alone.messages.is_empty());
    assert_eq!(
        env.audit_lines()
            .iter()
            .filter(|l| l.contains("user=carol"))
            .count(),
        0,
        "no line for a non-member without debug"
    );
}

#[test]
fn with_debug_a_user_outside_the_groups_is_audited_as_ignored() {
    let env = TestEnv::new("debug");
    env.write_service(
        "dbg",
        "auth required {module} config={config} debug\nauth required pam_permit.so\n",
    );

    let login = env.login("carol").service("dbg").run();

    assert_eq!(login.result(), "PAM_SUCCESS");
    assert!(login.messages.is_empty());
    assert_eq!(
        decision_line(&env),
        "pam_otpgate(dbg:auth): result=ignored reason=not_member user=carol"
    );
}

#[test]
fn an_unknown_user_is_refused_without_a_prompt() {
    let env = TestEnv::new("unknown");
    let login = env.login("mallory").run();
    assert_eq!(login.result(), "PAM_USER_UNKNOWN");
    assert!(login.messages.is_empty());
    assert!(decision_line(&env).contains("result=denied reason=unknown_user user=mallory"));
}

#[test]
fn a_member_without_a_secret_is_told_to_ask_the_administrator() {
    let env = TestEnv::new("unenrolled");

    let login = env.login("dave").run();

    assert_eq!(login.result(), "PAM_AUTH_ERR");
    assert!(login.prompts().is_empty());
    assert!(
        login.errors()[0].contains("administrator"),
        "{:?}",
        login.errors()
    );
    assert!(decision_line(&env).contains("result=denied reason=not_enrolled user=dave"));
    assert!(!env.state_path("dave").exists());
}

#[test]
fn codes_follow_the_enrolled_settings() {
    let env = TestEnv::new("sha256");
    env.write_state(
        "alice",
        &format!("secret = \"{SECRET}\"\ndigits = 8\nalgorithm = \"SHA256\"\nperiod = 60\n"),
    );
    let code = totp_code(SECRET, 8, 60, "SHA256", now());

    assert_eq!(
        env.login("alice").answer(&code).run().result(),
        "PAM_SUCCESS"
    );
    let sha1 = totp_code(SECRET, 8, 60, "SHA1", now());
    assert_eq!(
        env.login("alice").answer(&sha1).run().result(),
        "PAM_AUTH_ERR"
    );
}

/// Rewrites the counters so the lock ends in the past, as if lock_seconds had
/// passed (the test moves the lock time instead of sleeping).
fn expire_lock(env: &TestEnv, user: &str) {
    let path = env.state_dir().join(format!("{user}.counters"));
    let bytes = fs::read(&path).unwrap();
    let FileState::Current { slot, next_index } = counters::read_file(&bytes) else {
        panic!("no counters in {}", path.display());
    };
    let mut counters = slot.counters;
    counters.locked_until = now() as i64 - 1;
    let moved = Slot {
        generation: slot.generation + 1,
        counters,
        ..slot
    };
    let mut out = bytes.clone();
    let at = next_index * counters::SLOT_SIZE;
    out[at..at + counters::SLOT_SIZE].copy_from_slice(&counters::encode(&moved));
    fs::write(&path, out).unwrap();
}

#[test]
fn max_failures_lock_the_user_out_until_lock_seconds_pass() {
    let env = enrolled("lockout", "alice");
    let wrong = wrong_code();

    for n in 1..=5 {
        let login = env.login("alice").answer(&wrong).skip_fail_delay().run();
        assert_eq!(login.result(), "PAM_AUTH_ERR");
        assert!(last_decision(&env).ends_with(&format!("failures={n}/5")));
    }

    let locked = env
        .login("alice")
        .answer(&code_now())
        .skip_fail_delay()
        .run();
    assert_eq!(locked.result(), "PAM_MAXTRIES");
    assert!(locked.prompts().is_empty(), "no code is asked while locked");
    assert!(
        locked.errors()[0].contains("Try again in"),
        "{:?}",
        locked.errors()
    );
    assert!(last_decision(&env).contains("result=locked reason=locked_out user=alice"));

    expire_lock(&env, "alice");
    let released = env.login("alice").answer(&code_now()).run();
    assert_eq!(released.result(), "PAM_SUCCESS", "{}", released.stdout);
}

#[test]
fn sixteen_parallel_logins_with_one_code_give_one_success() {
    let env = enrolled("parallel", "alice");
    with_max_failures(&env, 100);
    let code = code_now();

    let running: Vec<_> = (0..16)
        .map(|_| env.login("alice").answer(&code).skip_fail_delay().spawn())
        .collect();
    let results: Vec<String> = running
        .into_iter()
        .map(|r| r.wait().result().to_string())
        .collect();

    let successes = results.iter().filter(|r| *r == "PAM_SUCCESS").count();
    assert_eq!(successes, 1, "{results:?}");
    assert!(results
        .iter()
        .all(|r| r == "PAM_SUCCESS" || r == "PAM_AUTH_ERR"));
    let replays = env
        .audit_lines()
        .iter()
        .filter(|l| l.contains("reason=replay"))
        .count();
    assert_eq!(replays, 15);
}

#[test]
fn a_conversation_that_fails_is_a_conversation_error() {
    let env = enrolled("conv", "alice");
    for conv in [Conv::Error, Conv::NullArray, Conv::NullResponse] {
        let login = env.login("alice").conv(conv).run();
        assert_eq!(login.result(), "PAM_CONV_ERR", "{conv:?}");
        assert!(last_decision(&env).contains("result=error reason=conversation_failed"));
    }
}

#[test]
fn unknown_module_arguments_are_a_service_error_named_in_the_log() {
    let env = enrolled("args", "alice");
    env.write_service(
        "bad",
        "auth required {module} config={config} nullok try_first_pass\n",
    );

    let login = env.login("alice").service("bad").run();

    assert_eq!(login.result(), "PAM_SERVICE_ERR");
    assert!(login.messages.is_empty());
    assert!(decision_line(&env).contains("reason=bad_arguments"));
    assert!(decision_line(&env).contains("nullok\\x20try_first_pass"));
}

#[test]
fn an_invalid_or_unsafe_config_is_a_service_error() {
    let env = enrolled("config", "alice");
    let path = env.config_path();
    let cases: [(&str, &dyn Fn()); 4] = [
        ("not toml", &|| fs::write(&path, "groups = [").unwrap()),
        ("unknown key", &|| {
            fs::write(&path, "groups = [\"vms-admins\"]\nfoo = 1\n").unwrap()
        }),
        ("empty groups", &|| {
            fs::write(&path, "groups = []\n").unwrap()
        }),
        ("group-writable", &|| {
            fs::write(&path, "groups = [\"vms-admins\"]\n").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o664)).unwrap();
        }),
    ];
    for (what, break_config) in cases {
        break_config();
        let login = env.login("alice").answer(&code_now()).run();
        assert_eq!(login.result(), "PAM_SERVICE_ERR", "{what}");
        assert!(login.messages.is_empty(), "{what}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    }

    let real = env.dir().join("real.toml");
    fs::rename(&path, &real).unwrap();
    symlink(&real, &path).unwrap();
    assert_eq!(env.login("alice").run().result(), "PAM_SERVICE_ERR");
}

#[test]
fn a_configured_group_that_does_not_exist_is_logged_and_skipped() {
    let env = enrolled("missing-group", "alice");
    env.write_config(&common::DEFAULT_CONFIG.replace(
        "groups = [\"vms-admins\"]",
        "groups = [\"no-such-group\", \"vms-admins\"]",
    ));

    let login = env.login("alice").answer(&code_now()).run();

    assert_eq!(login.result(), "PAM_SUCCESS");
    let lines = env.audit_lines();
    let warnings: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("missing_groups"))
        .collect();
    assert_eq!(warnings.len(), 1, "{lines:?}");
    assert!(warnings[0].contains("groups=no-such-group"));
}

/// Asserts a login is refused as unavailable, quickly, with the state reason.
fn assert_unavailable(env: &TestEnv, reason: &str) {
    let started = Instant::now();
    let login = env.login("alice").answer(&code_now()).run();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered in under a second"
    );
    assert_eq!(login.result(), "PAM_AUTHINFO_UNAVAIL", "{}", login.stdout);
    assert!(login.prompts().is_empty());
    let line = last_decision(env);
    assert!(
        line.contains(&format!("result=error reason={reason} user=alice")),
        "{line}"
    );
}

#[test]
fn a_state_file_that_is_a_symlink_is_refused_and_its_target_never_opened() {
    let env = TestEnv::new("symlink");
    let target = env.dir().join("target.toml");
    fs::write(&target, format!("secret = \"{SECRET}\"\n")).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
    let before = fs::read(&target).unwrap();
    symlink(&target, env.state_path("alice")).unwrap();

    let watch = OpenWatch::new(&target);
    assert_unavailable(&env, "state_unsafe");

    assert!(!watch.was_opened(), "the symlink target was opened");
    assert_eq!(fs::read(&target).unwrap(), before);
    assert!(last_decision(&env).contains("symbolic\\x20link"));
}

#[test]
fn unsafe_state_files_are_refused() {
    let env = enrolled("unsafe", "alice");
    let path = env.state_path("alice");
    let good = format!("secret = \"{SECRET}\"\n");

    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    assert_unavailable(&env, "state_unsafe");

    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&path, Some(2001), None).unwrap();
    assert_unavailable(&env, "state_unsafe");

    env.write_state("alice", "");
    assert_unavailable(&env, "state_corrupt");

    env.write_state("alice", &"x".repeat(10 * 1024 * 1024));
    assert_unavailable(&env, "state_unsafe");

    env.write_state("alice", &good);
    assert_eq!(
        env.login("alice").answer(&code_now()).run().result(),
        "PAM_SUCCESS"
    );
}

#[test]
fn a_fifo_as_state_file_is_refused_at_once() {
    let env = TestEnv::new("fifo");
    let path = std::ffi::CString::new(env.state_path("alice").to_str().unwrap()).unwrap();
    // SAFETY: a valid C path; mkfifo only creates a node.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    assert_unavailable(&env, "state_unsafe");
}

/// Watches one file with inotify and tells whether anyone opened it.
struct OpenWatch {
    fd: i32,
}

impl OpenWatch {
    fn new(path: &Path) -> OpenWatch {
        // SAFETY: plain syscalls on a path we own.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0);
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: `fd` is an inotify descriptor and `c` a valid path.
        let wd =
            unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_OPEN | libc::IN_MODIFY) };
        assert!(wd >= 0);
        OpenWatch { fd }
    }

    fn was_opened(&self) -> bool {
        let mut buf = [0u8; 4096];
        // SAFETY: reading into a buffer of its own length.
        let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
        n > 0
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        // SAFETY: closing the descriptor this value owns.
        unsafe { libc::close(self.fd) };
    }
}

#[test]
fn with_pam_silent_only_the_prompt_is_sent() {
    let env = TestEnv::new("silent");

    // Not enrolled: the "ask your administrator" message is held back.
    let unenrolled = env.login("dave").silent().run();
    assert_eq!(unenrolled.result(), "PAM_AUTH_ERR");
    assert!(unenrolled.messages.is_empty(), "{:?}", unenrolled.messages);

    // Locked: no message either, and still no code is asked.
    env.write_state("alice", &format!("secret = \"{SECRET}\"\n"));
    with_max_failures(&env, 1);
    let wrong = env.login("alice").answer(&wrong_code()).silent().run();
    assert_eq!(wrong.prompts(), ["Verification code: "]);
    assert_eq!(wrong.messages.len(), 1, "{:?}", wrong.messages);
    let locked = env.login("alice").answer(&code_now()).silent().run();
    assert_eq!(locked.result(), "PAM_MAXTRIES");
    assert!(locked.messages.is_empty(), "{:?}", locked.messages);
}
