//! A configured group with thousands of members, through the real libpam and
//! nss_wrapper: the group's entry no longer fits the first look-up buffer,
//! and the module must grow the buffer rather than fail the login (the
//! benchmark's 10,000-member row found that nss_wrapper reports the short
//! buffer as -1 with errno ERANGE).

#[path = "support/admin.rs"]
mod admin;
mod common;

use common::{now, totp_code, TestEnv, DEFAULT_CONFIG};

const SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// An env whose configured group `big-admins` has `count` members, alice
/// among them in the middle; carol stays outside.
fn with_big_group(name: &str, count: usize) -> TestEnv {
    let mut env = TestEnv::new(name);
    let mut members: Vec<String> = (0..count).map(|i| format!("member{i:05}")).collect();
    members.insert(count / 2, "alice".to_string());
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    env.add_group("big-admins", 3100, &refs);

    env.write_config(&DEFAULT_CONFIG.replace("vms-admins", "big-admins"));
    env.write_state("alice", &format!("secret = \"{SECRET}\"\n"));
    env
}

#[test]
fn a_member_of_a_group_of_thousands_is_asked_and_admitted() {
    let env = with_big_group("large-group-member", 10_000);
    let code = totp_code(SECRET, 6, 30, "SHA1", now());

    let login = env.login("alice").answer(&code).run();

    assert_eq!(login.result(), "PAM_SUCCESS", "{}", login.stdout);
    assert_eq!(login.prompts(), ["Verification code: "]);
}

#[test]
fn someone_outside_a_group_of_thousands_is_ignored() {
    let env = with_big_group("large-group-outsider", 10_000);

    let login = env.login("carol").run();

    // Alone in its stack, an ignoring module leaves libpam's own refusal;
    // a failed group look-up would be PAM_AUTHINFO_UNAVAIL instead.
    assert_eq!(login.result(), "PAM_PERM_DENIED", "{}", login.stdout);
    assert!(login.messages.is_empty(), "{}", login.stdout);
}

#[test]
fn status_lists_the_members_of_a_group_of_thousands() {
    let env = with_big_group("large-group-status", 5_000);

    let run = admin::otpgate(&env, &["status", "--json"]);

    assert_eq!(run.code, 0, "{}", run.stderr);
    // Every listed member is shown (these names have no account, so only
    // alice counts as a member who can log in).
    let listed = run.stdout.matches("\"user\":\"").count();
    assert_eq!(listed, 5_001, "every listed member, alice included");
    assert!(run.stdout.contains("\"user\":\"alice\""));
}
