//! Recovery codes through the real libpam: accepted at the code prompt
//! once, refused the second time, counted down in the message and the
//! audit line, stored only as hashes, and bound by the lockout like codes.

mod common;

use std::fs;

use common::{now, totp_code, TestEnv};
use otpgate::recovery;
use otpgate::secret::Secret;
use otpgate::store::record::UserRecord;
use otpgate::totp::CodeSettings;

const SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// An env where alice is enrolled with three recovery codes, returned as
/// shown to her.
fn enrolled_with_codes(name: &str) -> (TestEnv, Vec<String>) {
    let env = TestEnv::new(name);
    let (shown, hashes) = recovery::generate(3).unwrap();
    let secret = Secret::from_base32(SECRET, 128).unwrap();
    let mut record = UserRecord::new(secret, CodeSettings::default(), 1_700_000_000);
    record.recovery_codes = hashes;
    env.write_state("alice", &record.to_toml());
    let codes = shown.iter().map(|code| code.to_string()).collect();
    (env, codes)
}

fn decision_lines(env: &TestEnv) -> Vec<String> {
    env.audit_lines()
        .into_iter()
        .filter(|line| line.contains("result="))
        .collect()
}

#[test]
fn a_recovery_code_works_once_and_the_count_goes_down() {
    let (env, codes) = enrolled_with_codes("rc-once");

    let first = env.login("alice").answer(&codes[1]).run();
    let second = env.login("alice").answer(&codes[1]).run();
    let other = env.login("alice").answer(&codes[0]).run();

    assert_eq!(first.result(), "PAM_SUCCESS");
    assert_eq!(first.infos(), ["Recovery code accepted; 2 left."]);
    assert_eq!(second.result(), "PAM_AUTH_ERR");
    assert_eq!(other.result(), "PAM_SUCCESS");
    assert_eq!(other.infos(), ["Recovery code accepted; 1 left."]);

    let lines = decision_lines(&env);
    assert!(lines[0].contains("result=success reason=recovery_code user=alice"));
    assert!(lines[0].contains("recovery_codes_left=2"), "{lines:?}");
    assert!(lines[1].contains("result=denied"), "{lines:?}");
    assert!(lines[2].contains("recovery_codes_left=1"), "{lines:?}");
}

#[test]
fn codes_are_stored_as_hashes_and_never_logged() {
    let (env, codes) = enrolled_with_codes("rc-hidden");

    env.login("alice").answer(&codes[0]).run();
    env.login("alice").answer(&codes[0]).run();

    let state = fs::read_to_string(env.state_path("alice")).unwrap();
    let digits = |code: &str| code.replace('-', "");
    for code in &codes {
        assert!(!state.contains(code.as_str()) && !state.contains(&digits(code)));
    }
    assert_eq!(state.matches("sha256$").count(), 2, "{state}");
    let audit = env.audit_lines().join("\n");
    assert!(!audit.contains(&codes[0]) && !audit.contains(&digits(&codes[0])));
}

#[test]
fn spaces_and_dashes_in_a_typed_code_do_not_matter() {
    let (env, codes) = enrolled_with_codes("rc-typing");
    let typed = format!(" {} ", codes[2].replace('-', " "));

    assert_eq!(
        env.login("alice").answer(&typed).run().result(),
        "PAM_SUCCESS"
    );
}

#[test]
fn a_locked_account_refuses_recovery_codes_without_using_them() {
    let (env, codes) = enrolled_with_codes("rc-lock");
    for _ in 0..5 {
        env.login("alice")
            .answer("00000-00000")
            .skip_fail_delay()
            .run();
    }

    let locked = env.login("alice").answer(&codes[0]).run();

    assert_eq!(locked.result(), "PAM_MAXTRIES");
    assert!(decision_lines(&env)[4].contains("failures=5/5"));
    let state = fs::read_to_string(env.state_path("alice")).unwrap();
    assert_eq!(
        state.matches("sha256$").count(),
        3,
        "the code was not used up"
    );
}

#[test]
fn a_valid_totp_code_is_not_taken_for_a_recovery_code() {
    let (env, _) = enrolled_with_codes("rc-totp");
    let code = totp_code(SECRET, 6, 30, "SHA1", now());

    let login = env.login("alice").answer(&code).run();

    assert_eq!(login.result(), "PAM_SUCCESS");
    assert!(login.infos().is_empty());
    let state = fs::read_to_string(env.state_path("alice")).unwrap();
    assert_eq!(state.matches("sha256$").count(), 3);
}
