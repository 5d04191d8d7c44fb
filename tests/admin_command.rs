//! The `otpgate` command, run as a program against a test env: each
//! subcommand's exit code, output, the files it leaves and its log line,
//! and every failure case the command promises a clear message for.

mod common;

#[path = "support/admin.rs"]
mod admin;
#[path = "support/qr_decode.rs"]
mod qr_decode;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use admin::{command, otpgate, run, use_mode};
use common::{now, totp_code, TestEnv};
use otpgate::store::files::FileStore;
use otpgate::store::Store;
use otpgate::users::UserName;

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/google-authenticator"
);

/// A 160-bit secret (RFC 6238's SHA1 seed) and an 80-bit one.
const LONG_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const SHORT_SECRET: &str = "JBSWY3DPEHPK3PXP";

fn code_now(key: &str) -> String {
    totp_code(key, 6, 30, "SHA1", now())
}

fn login_with(env: &TestEnv, user: &str, answer: &str) -> String {
    env.login(user).answer(answer).run().result().to_string()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn store(env: &TestEnv) -> FileStore {
    FileStore::new(&env.state_dir())
}

fn user(name: &str) -> UserName {
    UserName::parse(name.as_bytes()).unwrap()
}

/// The one log line of the command (program `otpgate`).
fn command_lines(env: &TestEnv) -> Vec<String> {
    env.audit_records()
        .into_iter()
        .filter(|r| r.program == "otpgate")
        .map(|r| r.text)
        .collect()
}

fn assert_fails(run: &admin::Run, message: &str) {
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.starts_with("otpgate: "), "{run:?}");
    assert!(run.stderr.contains(message), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
}

// enroll

#[test]
fn enroll_prints_a_working_secret_and_saves_it() {
    let env = TestEnv::new("adm-enroll");

    let run = otpgate(&env, &["enroll", "alice"]);

    assert_eq!(run.code, 0, "{run:?}");
    let (key, uri) = (run.key(), run.uri());
    assert!(uri.starts_with("otpauth://totp/otpgate:alice%40"), "{uri}");
    assert!(uri.contains(&format!(
        "secret={key}&issuer=otpgate&algorithm=SHA1&digits=6&period=30"
    )));
    assert_eq!(
        qr_decode::decode(&run.stdout).as_deref(),
        Some(uri.as_str())
    );
    assert_eq!(run.recovery_codes().len(), 5);
    assert_eq!(mode_of(&env.state_path("alice")), 0o600);

    assert_eq!(login_with(&env, "alice", &code_now(&key)), "PAM_SUCCESS");
    let lines = command_lines(&env);
    assert!(lines[0].starts_with("otpgate: command=enroll user=alice result=done secret=generated"));
    assert!(lines[0].ends_with("uid=0"), "{lines:?}");
    assert!(!lines[0].contains(&key));
}

#[test]
fn enroll_with_a_known_secret_on_the_line_or_on_stdin() {
    let env = TestEnv::new("adm-known");

    let given = otpgate(&env, &["enroll", "alice", "--secret", LONG_SECRET]);
    let piped = run(
        command(&env).args(["enroll", "dave", "--secret", "-"]),
        Some(&format!("{}\n", LONG_SECRET.to_lowercase())),
    );

    assert_eq!((given.code, piped.code), (0, 0), "{given:?} {piped:?}");
    assert_eq!(given.key(), LONG_SECRET);
    assert_eq!(piped.key(), LONG_SECRET);
    assert_eq!(
        login_with(&env, "dave", &code_now(LONG_SECRET)),
        "PAM_SUCCESS"
    );
    assert!(command_lines(&env)[0].contains("secret=given"));
}

#[test]
fn enroll_refuses_what_it_cannot_do_and_writes_nothing() {
    let env = TestEnv::new("adm-refuse");

    assert_fails(
        &otpgate(&env, &["enroll", "nobody"]),
        "no such user: nobody",
    );
    assert_fails(
        &otpgate(&env, &["enroll", "carol"]),
        "carol is not a member",
    );
    assert_fails(
        &otpgate(&env, &["enroll", "alice", "--secret", "not base32!"]),
        "not valid base32",
    );
    assert_fails(
        &otpgate(&env, &["enroll", "alice", "--secret", SHORT_SECRET]),
        "80 bits; at least 128",
    );

    assert!(files_in(&env.state_dir()).is_empty());
}

#[test]
fn enroll_keeps_an_existing_secret_unless_forced() {
    let env = TestEnv::new("adm-force");
    let first = otpgate(&env, &["enroll", "alice"]);

    let again = otpgate(&env, &["enroll", "alice", "--secret", LONG_SECRET]);
    assert_fails(&again, "alice already has a secret; add --force");
    assert_eq!(
        login_with(&env, "alice", &code_now(&first.key())),
        "PAM_SUCCESS"
    );

    let forced = otpgate(
        &env,
        &["enroll", "alice", "--secret", LONG_SECRET, "--force"],
    );
    assert_eq!(forced.code, 0, "{forced:?}");
    let next = totp_code(LONG_SECRET, 6, 30, "SHA1", now() + 30);
    assert_eq!(login_with(&env, "alice", &next), "PAM_SUCCESS");
    let lines = command_lines(&env);
    assert!(
        lines[1].contains("result=failed error=alice\\x20already"),
        "{lines:?}"
    );
}

#[test]
fn bad_usage_exits_2() {
    let env = TestEnv::new("adm-usage");

    for args in [
        &[][..],
        &["enroll"],
        &["enroll", "../etc"],
        &["frobnicate"],
        &["status", "--yaml"],
    ] {
        let run = otpgate(&env, args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(!run.stderr.is_empty());
    }
    assert_eq!(otpgate(&env, &["--help"]).code, 0);
}

#[test]
fn a_broken_config_is_one_clear_line() {
    let env = TestEnv::new("adm-config");
    env.write_config("groups = [");

    let run = otpgate(&env, &["status"]);

    assert_fails(&run, "otpgate.toml");
}

#[test]
fn sudo_user_is_logged_escaped() {
    let env = TestEnv::new("adm-sudo");

    let run = run(
        command(&env)
            .env("SUDO_USER", "bob\nresult=x")
            .args(["enroll", "alice"]),
        None,
    );

    assert_eq!(run.code, 0);
    let lines = command_lines(&env);
    assert!(
        lines[0].contains("sudo_user=bob\\x0aresult\\x3dx uid=0"),
        "{lines:?}"
    );
}

// reset and allow

#[test]
fn reset_keeps_a_backup_and_with_after_reset_allows_one_enrollment() {
    let env = TestEnv::new("adm-reset");
    use_mode(&env, "after-reset");
    otpgate(&env, &["enroll", "alice"]);

    let run = otpgate(&env, &["reset", "alice"]);

    assert_eq!(run.code, 0, "{run:?}");
    let backup = run
        .stdout
        .split("kept in ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap()
        .to_string();
    assert!(Path::new(&backup).is_file(), "{backup}");
    assert!(!env.state_path("alice").exists());
    assert!(env.state_dir().join("alice.allow").is_file());
    assert!(run.stdout.contains("new secret at their next login"));
    assert!(command_lines(&env)[1].contains("command=reset user=alice result=done backup="));
}

#[test]
fn reset_in_admin_only_mode_does_not_allow() {
    let env = TestEnv::new("adm-reset-ao");
    otpgate(&env, &["enroll", "alice"]);

    let run = otpgate(&env, &["reset", "alice"]);

    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("otpgate enroll alice"));
    assert!(!env.state_dir().join("alice.allow").exists());
}

#[test]
fn reset_without_a_secret_fails() {
    let env = TestEnv::new("adm-reset-no");

    assert_fails(
        &otpgate(&env, &["reset", "alice"]),
        "alice has no secret to reset",
    );
    assert_fails(&otpgate(&env, &["reset", "nobody"]), "nobody has no secret");
}

#[test]
fn allow_marks_members_without_a_secret_only() {
    let env = TestEnv::new("adm-allow");
    use_mode(&env, "after-reset");
    otpgate(&env, &["enroll", "dave"]);

    let allowed = otpgate(&env, &["allow", "alice"]);

    assert_eq!(allowed.code, 0, "{allowed:?}");
    let marker = env.state_dir().join("alice.allow");
    assert_eq!(
        (fs::metadata(&marker).unwrap().len(), mode_of(&marker)),
        (0, 0o600)
    );
    assert_fails(
        &otpgate(&env, &["allow", "dave"]),
        "dave already has a secret",
    );
    assert_fails(&otpgate(&env, &["allow", "carol"]), "not a member");
    assert_fails(&otpgate(&env, &["allow", "nobody"]), "no such user");
}

// unlock and recovery codes

#[test]
fn unlock_clears_a_lockout() {
    let env = TestEnv::new("adm-unlock");
    let key = otpgate(&env, &["enroll", "alice"]).key();
    for _ in 0..5 {
        env.login("alice").answer("000000").skip_fail_delay().run();
    }
    assert_eq!(login_with(&env, "alice", &code_now(&key)), "PAM_MAXTRIES");

    let run = otpgate(&env, &["unlock", "alice"]);

    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(login_with(&env, "alice", &code_now(&key)), "PAM_SUCCESS");
    assert_fails(&otpgate(&env, &["unlock", "dave"]), "dave has no secret");
}

#[test]
fn new_recovery_codes_replace_the_old_ones() {
    let env = TestEnv::new("adm-codes");
    let old = otpgate(&env, &["enroll", "alice"]).recovery_codes();

    let run = otpgate(&env, &["recovery-codes", "alice"]);

    assert_eq!(run.code, 0, "{run:?}");
    let new = run.recovery_codes();
    assert_eq!(new.len(), 5);
    assert_eq!(login_with(&env, "alice", &old[0]), "PAM_AUTH_ERR");
    assert_eq!(login_with(&env, "alice", &new[0]), "PAM_SUCCESS");
    assert_fails(
        &otpgate(&env, &["recovery-codes", "dave"]),
        "dave has no secret",
    );
}

// status

fn status_json(env: &TestEnv, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["status", "--json"];
    all.extend_from_slice(args);
    let run = otpgate(env, &all);
    assert_eq!(run.code, 0, "{run:?}");
    serde_json::from_str(&run.stdout).expect("status --json prints JSON")
}

#[test]
fn status_lists_members_and_users_with_state() {
    let env = TestEnv::new("adm-status");
    let key = otpgate(&env, &["enroll", "alice"]).key();
    env.login("alice").answer(&code_now(&key)).run();
    env.login("alice").answer("000000").skip_fail_delay().run();

    let document = status_json(&env, &[]);

    assert_eq!(document["version"], 1);
    let users = document["users"].as_array().unwrap();
    let names: Vec<&str> = users.iter().map(|u| u["user"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "bob", "dave"]);
    let alice = &users[0];
    assert_eq!(alice["member"], true);
    assert_eq!(alice["enrolled"], true);
    assert_eq!(alice["failures"], 1);
    assert_eq!(alice["recovery_codes_left"], 5);
    assert_eq!(alice["locked_until"], serde_json::Value::Null);
    assert!(alice["last_success"].as_i64().unwrap() >= now() as i64 - 60);
    assert_eq!(users[1]["enrolled"], false);
    assert_eq!(users[1]["recovery_codes_left"], serde_json::Value::Null);
}

#[test]
fn status_of_one_user_and_the_table() {
    let mut env = TestEnv::new("adm-status1");
    otpgate(&env, &["enroll", "dave"]);
    env.add_user("erin", 2005, 2005);
    store(&env).allow(&user("erin")).unwrap();

    let carol = status_json(&env, &["carol"]);
    let table = otpgate(&env, &["status"]);

    assert_eq!(carol["users"][0]["member"], false);
    assert_eq!(carol["users"][0]["account"], true);
    assert_eq!(table.code, 0);
    let header = table.stdout.lines().next().unwrap();
    assert!(
        header.starts_with("USER") && header.contains("LAST LOGIN"),
        "{header}"
    );
    let erin = table
        .stdout
        .lines()
        .find(|l| l.starts_with("erin"))
        .unwrap();
    assert!(erin.contains("may enroll at next login"), "{erin}");
    assert_fails(
        &otpgate(&env, &["status", "nobody"]),
        "no such user: nobody",
    );
}

// check-config

#[test]
fn check_config_passes_a_sound_setup() {
    let env = TestEnv::new("adm-check");
    otpgate(&env, &["enroll", "alice"]);

    let run = otpgate(&env, &["check-config"]);

    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("no problems found"));
}

#[test]
fn check_config_names_each_problem_with_its_fix() {
    let env = TestEnv::new("adm-check-bad");
    otpgate(&env, &["enroll", "alice"]);
    let text = common::DEFAULT_CONFIG.replace("[\"vms-admins\"]", "[\"vms-admins\", \"ghosts\"]");
    env.write_config(&text);
    fs::set_permissions(env.state_path("alice"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(env.state_dir(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(env.state_dir().join("notes.txt"), "").unwrap();

    let run = otpgate(&env, &["check-config"]);

    assert_fails(&run, "4 problems found");
    let out = &run.stdout;
    assert!(out.contains("group ghosts does not exist"), "{out}");
    assert!(out.contains(&format!(
        "fix: chmod 0600 {}",
        env.state_path("alice").display()
    )));
    assert!(out.contains(&format!("fix: chmod 0700 {}", env.state_dir().display())));
    assert!(out.contains("notes.txt is not an otpgate file"));
}

#[test]
fn check_config_reports_an_unusable_config() {
    let env = TestEnv::new("adm-check-cfg");
    fs::set_permissions(env.config_path(), fs::Permissions::from_mode(0o666)).unwrap();

    let run = otpgate(&env, &["check-config"]);

    assert_fails(&run, "1 problem found");
    let fix = format!("fix: chmod 0644 {}", env.config_path().display());
    assert!(run.stdout.contains(&fix), "{run:?}");
}

// import-google-authenticator

fn copy_into_home(env: &TestEnv, fixture: &str) -> std::path::PathBuf {
    let path = env.home_dir("alice").join(".google_authenticator");
    fs::copy(Path::new(DATA).join(fixture), &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    path
}

#[test]
fn import_carries_the_secret_used_step_and_scratch_codes() {
    let env = TestEnv::new("adm-import");
    let path = copy_into_home(&env, "totp-after-login");
    let before = fs::read(&path).unwrap();
    let path_text = path.to_str().unwrap();

    let run = otpgate(&env, &["import-google-authenticator", "alice", path_text]);

    assert_eq!(run.code, 0, "{run:?}");
    assert!(run
        .stdout
        .contains("Imported alice: a 128-bit secret, 30-second steps, 5 recovery"));
    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "the original is untouched"
    );
    assert_eq!(mode_of(&path), 0o400);
    let (record, counters) = store(&env).load(&user("alice")).unwrap().unwrap();
    assert_eq!(counters.last_step, Some(59_877_131));
    assert_eq!(record.recovery_codes.len(), 5);

    let key = "KT54XCITFNNRTGVZOD475KJLOE";
    assert_eq!(login_with(&env, "alice", &code_now(key)), "PAM_SUCCESS");
    assert_eq!(login_with(&env, "alice", "46610551"), "PAM_SUCCESS");
    assert_eq!(login_with(&env, "alice", "46610551"), "PAM_AUTH_ERR");
}

#[test]
fn import_keeps_the_step_size_and_notes_a_wider_window() {
    let env = TestEnv::new("adm-import60");
    let path = copy_into_home(&env, "totp-step60-window17");

    let run = otpgate(
        &env,
        &[
            "import-google-authenticator",
            "alice",
            path.to_str().unwrap(),
        ],
    );

    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("60-second steps"));
    assert!(
        run.stdout.contains("accepted 8 steps either side"),
        "{run:?}"
    );
    let code = totp_code("YYUUS34X2ILPFCY3E35OYV4VME", 6, 60, "SHA1", now());
    assert_eq!(login_with(&env, "alice", &code), "PAM_SUCCESS");
}

#[test]
fn import_refuses_hotp_unreadable_files_and_existing_secrets() {
    let env = TestEnv::new("adm-import-no");
    let hotp = copy_into_home(&env, "hotp-counter");
    let missing = env.home_dir("alice").join("nothing-here");
    let folder = env.home_dir("alice");

    let import = |user: &str, path: &Path| {
        otpgate(
            &env,
            &["import-google-authenticator", user, path.to_str().unwrap()],
        )
    };

    assert_fails(
        &import("alice", &hotp),
        "HOTP (counter-based) secrets are not supported",
    );
    assert_fails(&import("alice", &missing), "cannot read");
    assert_fails(&import("alice", &folder), "cannot read");
    assert_fails(&import("carol", &hotp), "not a member");
    assert!(files_in(&env.state_dir()).is_empty());

    otpgate(&env, &["enroll", "alice"]);
    let fine = copy_into_home(&env, "totp-default");
    assert_fails(&import("alice", &fine), "already has a secret; add --force");
}

#[test]
fn short_secrets_are_imported_only_on_request_and_flagged() {
    let env = TestEnv::new("adm-import-short");
    let path = env.home_dir("alice").join(".google_authenticator");
    fs::write(&path, format!("{SHORT_SECRET}\n\" TOTP_AUTH\n")).unwrap();
    let path_text = path.to_str().unwrap();

    let refused = otpgate(&env, &["import-google-authenticator", "alice", path_text]);
    let accepted = otpgate(
        &env,
        &[
            "import-google-authenticator",
            "alice",
            path_text,
            "--allow-short-secret",
        ],
    );

    assert_fails(&refused, "the secret has 80 bits");
    assert_eq!(accepted.code, 0, "{accepted:?}");
    assert!(accepted.stdout.contains("enroll alice again soon"));
    assert_eq!(
        status_json(&env, &["alice"])["users"][0]["short_secret"],
        true
    );
    assert_eq!(
        login_with(&env, "alice", &code_now(SHORT_SECRET)),
        "PAM_SUCCESS"
    );
}

#[test]
fn import_warns_about_a_used_step_in_the_future() {
    let env = TestEnv::new("adm-import-future");
    let path = env.home_dir("alice").join(".google_authenticator");
    let future = now() / 30 + 1000;
    let text = format!("KT54XCITFNNRTGVZOD475KJLOE\n\" DISALLOW_REUSE {future}\n\" TOTP_AUTH\n");
    fs::write(&path, text).unwrap();

    let run = otpgate(
        &env,
        &[
            "import-google-authenticator",
            "alice",
            path.to_str().unwrap(),
        ],
    );

    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("marks a step in the future"), "{run:?}");
    let (_, counters) = store(&env).load(&user("alice")).unwrap().unwrap();
    assert_eq!(counters.last_step, Some(future));
}
