//! Every file in `pam.d-examples/` loaded through the real Linux-PAM library
//! (`pam_start_confdir`, via pam-drive) and held to what its header promises:
//! a member gives the password and then a code, a non-member the password
//! alone, and a wrong password is found out only after the code.
//!
//! What the test changes in each file, and why:
//! - `pam_otpgate.so` becomes the module just built, with the test's config;
//! - `pam_unix.so` on `auth` lines becomes pam_matrix (from libpam-wrapper),
//!   which checks a password from a plain file. pam_unix cannot be used here:
//!   it reads shadow entries through `getspnam_r`, which nss_wrapper does not
//!   wrap, so it never sees the test's users. tests/ssh_login.rs runs the
//!   sshd examples with the real pam_unix against real throw-away accounts;
//! - the `@include`d common-* files are stand-ins that only permit, since only
//!   the `auth` stack is exercised (pam-drive runs `pam_authenticate`);
//! - for su's non-root caller, `pam_rootok.so` becomes `pam_deny.so`, because
//!   the test runs as root and pam_rootok would let every call through.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{now, totp_code, Login, TestEnv};

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const PASSWORD: &str = "correct horse";
const PASSWORD_PROMPT: &str = "Password: ";
const CODE_PROMPT: &str = "Verification code: ";

/// The examples whose stack is "password, then code".
const PASSWORD_THEN_CODE: [&str; 5] = ["sshd", "login", "sudo", "su", "application"];

/// The example whose stack is "code only" (sshd checked a key before).
const CODE_ONLY: &str = "sshd-publickey";

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pam.d-examples")
}

/// pam_matrix.so from the libpam-wrapper package.
fn pam_matrix_path() -> PathBuf {
    let output = Command::new("dpkg")
        .args(["-L", "libpam-wrapper"])
        .output()
        .expect("running dpkg -L libpam-wrapper");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find(|line| line.ends_with("/pam_matrix.so"))
        .map(PathBuf::from)
        .expect("pam_matrix.so not found: install the Debian package libpam-wrapper")
}

/// The example file with the substitutions described at the top.
fn adapted_example(name: &str, passdb: &Path, caller_is_root: bool) -> String {
    let text = fs::read_to_string(examples_dir().join(name))
        .unwrap_or_else(|error| panic!("reading pam.d-examples/{name}: {error}"));
    let matrix = format!(
        "{} passdb={}",
        pam_matrix_path().display(),
        passdb.display()
    );

    text.lines()
        .map(|line| adapt_line(line, &matrix, caller_is_root))
        .map(|line| line + "\n")
        .collect()
}

fn adapt_line(line: &str, matrix: &str, caller_is_root: bool) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let is_auth = words.first() == Some(&"auth");
    let Some(position) = words.iter().position(|word| word.ends_with(".so")) else {
        return line.to_string();
    };

    let replacement = match words[position] {
        "pam_otpgate.so" => "{module} config={config}".to_string(),
        "pam_unix.so" if is_auth => matrix.to_string(),
        "pam_rootok.so" if !caller_is_root => "pam_deny.so".to_string(),
        _ => return line.to_string(),
    };
    let mut adapted: Vec<String> = words[..position].iter().map(|w| w.to_string()).collect();
    adapted.push(replacement);
    if words[position] == "pam_otpgate.so" {
        adapted.extend(words[position + 1..].iter().map(|w| w.to_string()));
    }
    adapted.join(" ")
}

/// An env with the example installed as its service, stand-ins for the
/// included files, alice and dave enrolled, and everyone's password in the
/// pam_matrix file.
fn env_for(example: &str, caller_is_root: bool) -> TestEnv {
    let env = TestEnv::new(&format!("ex-{example}"));
    let passdb = env.dir().join("passdb");

    let users = ["alice", "bob", "carol", "dave"];
    let lines: String = users
        .iter()
        .map(|user| format!("{user}:{PASSWORD}:{example}\n"))
        .collect();
    fs::write(&passdb, lines).expect("writing the pam_matrix password file");

    for (name, text) in [
        ("common-account", "account required pam_permit.so\n"),
        ("common-session", "session required pam_permit.so\n"),
        (
            "common-session-noninteractive",
            "session required pam_permit.so\n",
        ),
        ("common-password", "password required pam_deny.so\n"),
    ] {
        env.write_service(name, text);
    }
    env.write_service(example, &adapted_example(example, &passdb, caller_is_root));
    for user in ["alice", "dave"] {
        env.write_state(user, &format!("secret = \"{SECRET}\"\n"));
    }
    env
}

fn code_now() -> String {
    totp_code(SECRET, 6, 30, "SHA1", now())
}

/// A six-digit code that matches no step the module accepts now.
fn wrong_code() -> String {
    let t = now();
    let accepted: BTreeSet<String> = (0..=6)
        .map(|i| totp_code(SECRET, 6, 30, "SHA1", t - 90 + i * 30))
        .collect();
    ["314159", "271828", "161803", "141421"]
        .into_iter()
        .map(String::from)
        .find(|code| !accepted.contains(code))
        .expect("four codes cannot all be in a window of seven")
}

fn login(env: &TestEnv, service: &str, user: &str, answers: &[&str]) -> Login {
    let mut builder = env.login(user).service(service).skip_fail_delay();
    for answer in answers {
        builder = builder.answer(answer);
    }
    builder.run()
}

fn last_decision(env: &TestEnv, user: &str) -> String {
    let needle = format!("user={user}");
    env.audit_lines()
        .into_iter()
        .rfind(|line| line.contains("result=") && line.contains(&needle))
        .unwrap_or_else(|| panic!("no audit line for {user}"))
}

#[test]
fn every_example_file_is_exercised_here() {
    let found: BTreeSet<String> = fs::read_dir(examples_dir())
        .expect("reading pam.d-examples/")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let tested: BTreeSet<String> = PASSWORD_THEN_CODE
        .iter()
        .chain([&CODE_ONLY])
        .map(|name| name.to_string())
        .collect();

    assert_eq!(found, tested, "a file in pam.d-examples/ that no test runs");
}

#[test]
fn every_example_names_where_it_goes_and_uses_the_module_by_its_installed_name() {
    for name in PASSWORD_THEN_CODE.iter().chain([&CODE_ONLY]) {
        let text = fs::read_to_string(examples_dir().join(name)).unwrap();
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("# /etc/pam.d/"),
            "{name}: the first line should say where the file goes: {first:?}"
        );
        assert!(
            text.contains("Trade-off:"),
            "{name}: the header should state its trade-off"
        );
        let module_lines: Vec<&str> = text
            .lines()
            .filter(|line| line.contains("pam_otpgate.so") && !line.starts_with('#'))
            .collect();
        assert_eq!(module_lines.len(), 1, "{name}: {module_lines:?}");
        assert!(
            module_lines[0].starts_with("auth") && module_lines[0].contains(" required "),
            "{name}: {:?}",
            module_lines[0]
        );
    }
}

/// The promises of a "password, then code" example.
fn check_password_then_code(example: &str) {
    let env = env_for(example, false);
    let both = [PASSWORD_PROMPT, CODE_PROMPT];

    // A member: the password, then the code.
    let member = login(&env, example, "alice", &[PASSWORD, &code_now()]);
    assert_eq!(
        member.result(),
        "PAM_SUCCESS",
        "{example}: {}",
        member.stdout
    );
    assert_eq!(member.prompts(), both, "{example}");

    // A member with a wrong code.
    let wrong = login(&env, example, "alice", &[PASSWORD, &wrong_code()]);
    assert_eq!(
        wrong.result(),
        "PAM_AUTH_ERR",
        "{example}: {}",
        wrong.stdout
    );
    assert_eq!(wrong.prompts(), both, "{example}");

    // A member with a wrong password is still asked for the code, hears of
    // no failure before it, and is refused although the code was right.
    let bad_password = login(&env, example, "dave", &["wrong horse", &code_now()]);
    assert_eq!(
        bad_password.result(),
        "PAM_AUTH_ERR",
        "{example}: {}",
        bad_password.stdout
    );
    assert_eq!(bad_password.prompts(), both, "{example}");
    assert!(
        bad_password.errors().is_empty(),
        "{example}: {:?}",
        bad_password.messages
    );
    assert!(
        last_decision(&env, "dave").contains("result=success reason=code"),
        "{example}: the code itself was accepted"
    );

    // A non-member: the password alone, right or wrong.
    let outsider = login(&env, example, "carol", &[PASSWORD]);
    assert_eq!(
        outsider.result(),
        "PAM_SUCCESS",
        "{example}: {}",
        outsider.stdout
    );
    assert_eq!(outsider.prompts(), [PASSWORD_PROMPT], "{example}");
    let outsider_wrong = login(&env, example, "carol", &["wrong horse"]);
    assert_eq!(outsider_wrong.result(), "PAM_AUTH_ERR", "{example}");
    assert_eq!(outsider_wrong.prompts(), [PASSWORD_PROMPT], "{example}");
}

#[test]
fn sshd_asks_the_password_then_the_code() {
    check_password_then_code("sshd");
}

#[test]
fn login_asks_the_password_then_the_code_and_delays_failures() {
    check_password_then_code("login");

    let env = env_for("login", false);
    let failed = login(&env, "login", "carol", &["wrong horse"]);
    assert_eq!(failed.result(), "PAM_AUTH_ERR");
    // libpam spreads the delay at random, up to half of it either way.
    let longest = failed.delays.iter().max().copied().unwrap_or(0);
    assert!(
        (1_500_000..=4_500_000).contains(&longest),
        "pam_faildelay's 3 s: {:?}",
        failed.delays
    );
}

#[test]
fn sudo_asks_the_password_then_the_code() {
    check_password_then_code("sudo");
}

#[test]
fn su_asks_the_target_password_then_the_target_code() {
    check_password_then_code("su");
}

#[test]
fn su_from_root_asks_nothing() {
    let env = env_for("su", true);
    let from_root = login(&env, "su", "alice", &[]);
    assert_eq!(from_root.result(), "PAM_SUCCESS", "{}", from_root.stdout);
    assert!(from_root.prompts().is_empty(), "{:?}", from_root.messages);
}

#[test]
fn an_application_service_asks_the_password_then_the_code() {
    check_password_then_code("application");
}

#[test]
fn sshd_publickey_asks_members_for_the_code_alone() {
    let env = env_for(CODE_ONLY, false);

    let member = login(&env, CODE_ONLY, "alice", &[&code_now()]);
    assert_eq!(member.result(), "PAM_SUCCESS", "{}", member.stdout);
    assert_eq!(member.prompts(), [CODE_PROMPT]);

    let wrong = login(&env, CODE_ONLY, "dave", &[&wrong_code()]);
    assert_eq!(wrong.result(), "PAM_AUTH_ERR", "{}", wrong.stdout);
    assert_eq!(wrong.prompts(), [CODE_PROMPT]);

    let outsider = login(&env, CODE_ONLY, "carol", &[]);
    assert_eq!(outsider.result(), "PAM_SUCCESS", "{}", outsider.stdout);
    assert!(outsider.messages.is_empty(), "{:?}", outsider.messages);

    let stranger = login(&env, CODE_ONLY, "mallory", &[]);
    assert_ne!(stranger.result(), "PAM_SUCCESS", "{}", stranger.stdout);
}

#[test]
fn sshd_publickey_refuses_a_member_without_a_secret_who_may_not_enroll() {
    let env = env_for(CODE_ONLY, false);

    let login = login(&env, CODE_ONLY, "bob", &[]);

    assert_eq!(login.result(), "PAM_AUTH_ERR", "{}", login.stdout);
    assert!(last_decision(&env, "bob").contains("reason=not_enrolled"));
}
