//! Real SSH logins: Debian's sshd on a loopback port, with the pam.d
//! examples for sshd as its PAM stack (through pam_wrapper) and the module
//! just built in it, and the OpenSSH client answering the prompts from an
//! expect script. The users are real throw-away accounts with real
//! passwords checked by pam_unix; see tests/support/ssh.rs.
//!
//! Each test starts its own sshd and accounts and removes them when it
//! ends, failed or not.

mod common;
#[path = "support/qr_decode.rs"]
mod qr_decode;
#[path = "support/ssh.rs"]
mod ssh;
#[path = "support/ssh_accounts.rs"]
mod ssh_accounts;

use std::fs;
use std::process::Command;

use common::{now, totp_code, TestEnv};
use ssh::{authorize_key, client_key, Client, Method, Sshd};
use ssh_accounts::Accounts;

const SECRET: &str = "KRUGS4ZANFZSAYJAORSXG5BAONSWG4TF";

/// The harness's default config for the group `group`, with `mode`.
fn write_config(env: &TestEnv, group: &str, mode: &str) {
    let text = common::DEFAULT_CONFIG
        .replace("[\"vms-admins\"]", &format!("[\"{group}\"]"))
        .replace("mode = \"admin-only\"", &format!("mode = \"{mode}\""));
    assert!(text.contains(group) && text.contains(mode), "{text}");
    env.write_config(&text);
}

fn code_now() -> String {
    totp_code(SECRET, 6, 30, "SHA1", now())
}

/// A code of the right shape that the module does not accept now.
fn wrong_code() -> String {
    let t = now();
    let accepted: Vec<String> = (0..=6)
        .map(|i| totp_code(SECRET, 6, 30, "SHA1", t - 90 + i * 30))
        .collect();
    ["123456", "654321", "111111", "999999"]
        .into_iter()
        .find(|code| !accepted.iter().any(|a| a == code))
        .unwrap()
        .to_string()
}

fn decisions(env: &TestEnv, user: &str) -> Vec<String> {
    let needle = format!("user={user}");
    env.audit_lines()
        .into_iter()
        .filter(|line| line.contains("result=") && line.contains(&needle))
        .collect()
}

#[test]
fn a_member_needs_password_and_code_and_a_code_works_once() {
    let env = TestEnv::new("ssh-pw");
    let mut accounts = Accounts::new();
    let group = accounts.add_group();
    let (member, password) = accounts.add_user(&[&group]);
    write_config(&env, &group, "admin-only");
    env.write_state(&member, &format!("secret = \"{SECRET}\"\n"));
    let mut sshd = Sshd::start(&env, Method::PasswordAndCode);
    let code = code_now();

    // Password, then a valid code: the command runs on the server.
    let good = Client::new(&env, &sshd, &member)
        .password(&password)
        .code(&code)
        .run();
    assert!(good.ran_as(&member), "{good:?}\n{:?}", sshd.log());
    assert!(good.transcript.contains("Password: "));
    assert!(good.transcript.contains("Verification code: "));

    // A wrong code: refused.
    let wrong = Client::new(&env, &sshd, &member)
        .password(&password)
        .code(&wrong_code())
        .run();
    assert!(wrong.refused(), "{wrong:?}");
    assert!(!wrong.transcript.contains("ran-as-"));

    // The code that worked, once more: refused as a replay.
    let replay = Client::new(&env, &sshd, &member)
        .password(&password)
        .code(&code)
        .run();
    assert!(replay.refused(), "{replay:?}");

    // A wrong password with the next valid code: asked for the code all
    // the same, then refused.
    let next_code = totp_code(SECRET, 6, 30, "SHA1", now() + 30);
    let bad_password = Client::new(&env, &sshd, &member)
        .password("not-the-password")
        .code(&next_code)
        .run();
    assert!(bad_password.refused(), "{bad_password:?}");
    assert!(bad_password.transcript.contains("Verification code: "));

    let lines = decisions(&env, &member);
    let reasons: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.split(' ').find(|f| f.starts_with("reason=")))
        .collect();
    assert_eq!(
        reasons,
        [
            "reason=code",
            "reason=wrong_code",
            "reason=replay",
            "reason=code"
        ],
        "{lines:?}"
    );
    assert!(lines[0].starts_with("pam_otpgate(sshd:auth): result=success"));
    assert!(lines[0].contains("rhost=127.0.0.1"), "{}", lines[0]);
}

/// `otpgate --config <env config> allow USER`, with the command just built.
fn allow(env: &TestEnv, user: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_otpgate"))
        .arg("--config")
        .arg(env.config_path())
        .args(["allow", user])
        .output()
        .expect("running otpgate allow");
    assert!(
        output.status.success(),
        "otpgate allow: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_member_without_a_secret_enrolls_over_ssh_once_allowed() {
    let env = TestEnv::new("ssh-enrol");
    let mut accounts = Accounts::new();
    let group = accounts.add_group();
    let (member, password) = accounts.add_user(&[&group]);
    write_config(&env, &group, "after-reset");
    let sshd = Sshd::start(&env, Method::PasswordAndCode);

    // Not allowed yet: refused, and nothing is saved. (The module's "ask
    // your administrator" message comes after the last prompt, and sshd
    // does not pass on messages of a failed keyboard-interactive round.)
    let early = Client::new(&env, &sshd, &member).password(&password).run();
    assert!(early.refused(), "{early:?}");
    assert!(decisions(&env, &member)
        .iter()
        .any(|line| line.contains("result=denied reason=not_enrolled")));
    assert!(!env.state_path(&member).exists());

    // Allowed: the QR code and the key arrive, the script answers with a
    // code computed from the key, and the command runs.
    allow(&env, &member);
    let dialog = Client::new(&env, &sshd, &member).password(&password).run();

    assert!(dialog.ran_as(&member), "{dialog:?}");
    let key_line = dialog
        .transcript
        .lines()
        .find_map(|line| line.trim_end().strip_prefix("Key: "))
        .unwrap_or_else(|| panic!("no key in {dialog:?}"));
    let key: String = key_line.split_whitespace().collect();
    let uri = qr_decode::decode(&dialog.transcript)
        .unwrap_or_else(|| panic!("no readable QR code in {}", dialog.transcript));
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={key}")), "{uri} / {key}");

    // The recovery codes reach the SSH client: a closing question follows
    // them, since sshd shows messages only together with a question.
    assert!(
        dialog.transcript.contains("Your recovery codes"),
        "{dialog:?}"
    );
    let shown_codes = dialog
        .transcript
        .lines()
        .filter(|line| {
            let t = line.trim();
            t.len() == 11
                && t.as_bytes()[5] == b'-'
                && t.replace('-', "").bytes().all(|b| b.is_ascii_digit())
        })
        .count();
    assert_eq!(shown_codes, 5, "{}", dialog.transcript);

    let record = fs::read_to_string(env.state_path(&member)).expect("the state file");
    assert!(record.contains(&key), "the record holds the key shown");
    assert!(decisions(&env, &member)
        .iter()
        .any(|line| line.contains("result=enrolled")));
}

#[test]
fn key_and_code_with_authentication_methods() {
    let env = TestEnv::new("ssh-key");
    let mut accounts = Accounts::new();
    let group = accounts.add_group();
    let (member, _) = accounts.add_user(&[&group]);
    let (outsider, _) = accounts.add_user(&[]);
    write_config(&env, &group, "admin-only");
    env.write_state(&member, &format!("secret = \"{SECRET}\"\n"));
    let key = client_key(env.dir());
    for user in [&member, &outsider] {
        authorize_key(&accounts, user, &key.with_extension("pub"));
    }
    let sshd = Sshd::start(&env, Method::KeyAndCode);

    // The key, then the code; no password.
    let member_login = Client::new(&env, &sshd, &member)
        .identity(&key)
        .code(&code_now())
        .run();
    assert!(member_login.ran_as(&member), "{member_login:?}");
    assert!(member_login.transcript.contains("Verification code: "));
    assert!(!member_login.transcript.contains("Password: "));

    // The key and a wrong code: refused.
    let wrong = Client::new(&env, &sshd, &member)
        .identity(&key)
        .code(&wrong_code())
        .run();
    assert!(wrong.refused(), "{wrong:?}");

    // No key: sshd never reaches the code.
    let no_key = Client::new(&env, &sshd, &member).code(&code_now()).run();
    assert!(no_key.refused(), "{no_key:?}");
    assert!(!no_key.transcript.contains("Verification code: "));

    // A non-member with the key: in, without a question.
    let outsider_login = Client::new(&env, &sshd, &outsider).identity(&key).run();
    assert!(outsider_login.ran_as(&outsider), "{outsider_login:?}");
    assert!(!outsider_login.transcript.contains("Verification code: "));
}

#[test]
fn a_non_member_logs_in_with_the_password_alone() {
    let env = TestEnv::new("ssh-out");
    let mut accounts = Accounts::new();
    let group = accounts.add_group();
    let (outsider, password) = accounts.add_user(&[]);
    write_config(&env, &group, "at-login");
    let sshd = Sshd::start(&env, Method::PasswordAndCode);

    let dialog = Client::new(&env, &sshd, &outsider)
        .password(&password)
        .run();
    assert!(dialog.ran_as(&outsider), "{dialog:?}");
    assert!(!dialog.transcript.contains("Verification code: "));

    let wrong = Client::new(&env, &sshd, &outsider)
        .password("not-the-password")
        .run();
    assert!(wrong.refused(), "{wrong:?}");
}
