//! Enrollment at first login, through the real libpam: a live conversation
//! reads the URI the module shows, answers with oathtool's code and logs in
//! again with the new secret; the QR code is decoded back to that URI;
//! abandoned, failed and concurrent first logins leave no file or exactly
//! one consistent secret.

mod common;

#[path = "support/live_login.rs"]
mod live_login;
#[path = "support/qr_decode.rs"]
mod qr_decode;

use std::fs;
use std::path::Path;

use common::{totp_code, Conv, TestEnv, DEFAULT_CONFIG};
use live_login::UriSettings;
use otpgate::secret::Secret;
use otpgate::store::files::FileStore;
use otpgate::store::Store;
use otpgate::users::UserName;

const SETUP_PROMPT: &str = "Code from your app to finish setup: ";
const SAVED_CODES_PROMPT: &str = "Press Enter once you have saved your recovery codes: ";

/// The child process of every live login (see tests/support/live_login.rs).
#[test]
fn live_login_child() {
    live_login::child_main();
}

fn env_with_mode(name: &str, mode: &str) -> TestEnv {
    let env = TestEnv::new(name);
    env.write_config(
        &DEFAULT_CONFIG.replace("mode = \"admin-only\"", &format!("mode = \"{mode}\"")),
    );
    env
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn saved_secret(env: &TestEnv, user: &str) -> Option<Secret> {
    let user = UserName::parse(user.as_bytes()).unwrap();
    let loaded = FileStore::new(&env.state_dir()).load(&user).unwrap();
    loaded.map(|(record, _)| record.secret)
}

fn last_step(env: &TestEnv, user: &str) -> Option<u64> {
    let user = UserName::parse(user.as_bytes()).unwrap();
    let (_, counters) = FileStore::new(&env.state_dir()).load(&user).unwrap()?;
    counters.last_step
}

fn decision_lines(env: &TestEnv) -> Vec<String> {
    env.audit_lines()
        .into_iter()
        .filter(|line| line.contains("result="))
        .collect()
}

#[test]
fn a_first_login_enrolls_and_the_next_login_uses_the_new_secret() {
    let env = env_with_mode("enroll", "at-login");

    let first = live_login::run(&env, "alice");

    // The login showed the setup and finished it.
    assert_eq!(first.result, "PAM_SUCCESS", "{first:?}");
    assert_eq!(first.prompts(), [SETUP_PROMPT, SAVED_CODES_PROMPT]);
    let infos = first.infos();
    assert!(infos[0].contains("authenticator app"), "{infos:?}");
    let uri = first.info_after("URI: ");
    let key = first.info_after("Key: ");
    let settings = UriSettings::parse(&uri);
    assert_eq!(key.replace(' ', ""), settings.secret);
    assert!(key.split(' ').all(|group| group.len() == 4), "{key}");
    assert_eq!(qr_decode::decode(infos[1]).as_deref(), Some(uri.as_str()));

    // Exactly that secret was saved, with the setup code's step used.
    let secret = Secret::from_base32(&settings.secret, 128).unwrap();
    assert_eq!(saved_secret(&env, "alice"), Some(secret));
    let used = last_step(&env, "alice").expect("the setup code's step is recorded");
    assert!(decision_lines(&env)
        .iter()
        .any(|l| l.contains("result=enrolled reason=enrollment user=alice")));

    // The setup code cannot be used again; the next code logs in.
    let replay = totp_code(&settings.secret, 6, 30, "SHA1", used * 30);
    let next = totp_code(&settings.secret, 6, 30, "SHA1", (used + 1) * 30);
    assert_eq!(
        env.login("alice").answer(&replay).run().result(),
        "PAM_AUTH_ERR"
    );
    let again = env.login("alice").answer(&next).run();
    assert_eq!(again.result(), "PAM_SUCCESS", "{:?}", again.stdout);
    assert_eq!(again.prompts(), ["Verification code: "]);
}

#[test]
fn the_uri_carries_issuer_account_and_code_settings() {
    let env = TestEnv::new("enroll-uri");
    let config = DEFAULT_CONFIG
        .replace("mode = \"admin-only\"", "mode = \"at-login\"")
        .replace("issuer = \"otpgate\"", "issuer = \"ACME VMs\"")
        .replace("digits = 6", "digits = 8")
        .replace("period = 30", "period = 60")
        .replace("algorithm = \"SHA1\"", "algorithm = \"SHA256\"");
    env.write_config(&config);

    let login = live_login::run(&env, "bob");

    assert_eq!(login.result, "PAM_SUCCESS", "{login:?}");
    let settings = UriSettings::parse(&login.info_after("URI: "));
    let host = otpgate::otpauth::host_name();
    assert_eq!(settings.label, format!("ACME%20VMs:bob%40{host}"));
    assert_eq!(settings.issuer, "ACME%20VMs");
    assert_eq!(
        (
            settings.algorithm.as_str(),
            settings.digits,
            settings.period
        ),
        ("SHA256", 8, 60)
    );
    assert_eq!(login.answers[0].len(), 8);
}

#[test]
fn the_recovery_codes_shown_at_enrollment_work_once() {
    let env = env_with_mode("enroll-codes", "at-login");

    let first = live_login::run(&env, "dave");

    let shown = first
        .infos()
        .into_iter()
        .find(|text| text.starts_with("Your recovery codes"))
        .expect("the recovery codes are shown")
        .to_string();
    let codes: Vec<&str> = shown.lines().skip(1).map(str::trim).collect();
    assert_eq!(codes.len(), 5);
    assert!(!env
        .audit_lines()
        .iter()
        .any(|l| codes.iter().any(|c| l.contains(c))));
    let used = env.login("dave").answer(codes[2]).run();
    assert_eq!(used.result(), "PAM_SUCCESS");
    assert_eq!(used.infos(), ["Recovery code accepted; 4 left."]);
    assert_eq!(
        env.login("dave").answer(codes[2]).run().result(),
        "PAM_AUTH_ERR"
    );
}

#[test]
fn abandoned_enrollments_leave_nothing() {
    let env = env_with_mode("enroll-abandon", "at-login");

    let broken = env.login("alice").conv(Conv::Error).run();
    let null = env.login("alice").conv(Conv::NullResponse).run();
    let cancelled = env.login("alice").run();

    assert_eq!(broken.result(), "PAM_CONV_ERR");
    assert_eq!(null.result(), "PAM_CONV_ERR");
    assert_eq!(cancelled.result(), "PAM_AUTH_ERR");
    assert_eq!(cancelled.prompts(), [SETUP_PROMPT]);
    assert!(cancelled.errors()[0].contains("nothing was saved"));
    assert!(files_in(&env.state_dir()).is_empty());
}

#[test]
fn three_wrong_codes_fail_the_enrollment_and_leave_nothing() {
    let env = env_with_mode("enroll-wrong", "at-login");

    let login = env
        .login("alice")
        .answer("000000")
        .answer("12345")
        .answer("999999")
        .answer("never asked")
        .run();

    assert_eq!(login.result(), "PAM_AUTH_ERR");
    assert_eq!(login.prompts(), [SETUP_PROMPT; 3]);
    let errors = login.errors();
    assert!(errors[0].contains("2 tries left") && errors[1].contains("1 try left"));
    assert!(errors[2].contains("log in again to start over"));
    assert!(files_in(&env.state_dir()).is_empty());
    assert!(decision_lines(&env)
        .iter()
        .any(|l| l.contains("result=denied reason=enrollment_failed user=alice")));
}

#[test]
fn two_concurrent_first_logins_leave_one_consistent_secret() {
    let env = env_with_mode("enroll-race", "at-login");
    let barrier = env.dir().join("barrier");
    fs::create_dir(&barrier).unwrap();

    let first = live_login::start(&env, "alice", Some((&barrier, 2)));
    let second = live_login::start(&env, "alice", Some((&barrier, 2)));
    let logins = [first.wait(), second.wait()];

    let results: Vec<&str> = logins.iter().map(|l| l.result.as_str()).collect();
    let winner = results
        .iter()
        .position(|r| *r == "PAM_SUCCESS")
        .expect("one login wins");
    let loser = &logins[1 - winner];
    assert_eq!(loser.result, "PAM_AUTH_ERR", "{results:?}");
    assert!(loser
        .errors()
        .iter()
        .any(|e| e.contains("finished setup first")));

    let toml: Vec<String> = files_in(&env.state_dir())
        .into_iter()
        .filter(|name| name.ends_with(".toml"))
        .collect();
    assert_eq!(toml, ["alice.toml"]);
    let winning = UriSettings::parse(&logins[winner].info_after("URI: ")).secret;
    let winning = Secret::from_base32(&winning, 128).unwrap();
    assert_eq!(saved_secret(&env, "alice"), Some(winning));
}

#[test]
fn after_reset_enrolls_only_allowed_members_once() {
    let env = env_with_mode("enroll-reset", "after-reset");

    let refused = env.login("dave").answer("123456").run();
    FileStore::new(&env.state_dir())
        .allow(&UserName::parse(b"dave").unwrap())
        .unwrap();
    let allowed = live_login::run(&env, "dave");

    assert_eq!(refused.result(), "PAM_AUTH_ERR");
    assert!(refused.prompts().is_empty());
    assert!(refused.errors()[0].contains("Ask your administrator"));
    assert_eq!(allowed.result, "PAM_SUCCESS", "{allowed:?}");
    assert_eq!(files_in(&env.state_dir()), ["dave.counters", "dave.toml"]);
}

#[test]
fn admin_only_never_enrolls_at_login() {
    let env = TestEnv::new("enroll-admin");

    let login = env.login("alice").answer("123456").run();

    assert_eq!(login.result(), "PAM_AUTH_ERR");
    assert!(login.prompts().is_empty());
    assert!(files_in(&env.state_dir()).is_empty());
}
