//! Hostile user names and PAM items, through the real Linux-PAM library:
//! names with `/`, `..`, a leading dot or dash, newlines, control and
//! escape characters, bytes that are not UTF-8, or 300 bytes long are
//! refused before any file is opened; rhost, tty and ruser values with
//! newlines and terminal escape sequences leave the audit line one line.
//!
//! A name with a NUL byte cannot be tested through PAM: PAM_USER is a C
//! string, so libpam (pam_start, pam_set_item) sees only the bytes before
//! the NUL. What the module is handed is therefore always a name without
//! NUL; the library-level refusal of a NUL is a property in
//! tests/properties.rs.

mod common;
#[path = "support/hostile.rs"]
mod hostile;

use common::{Conv, TestEnv};
use hostile::{
    assert_decision, assert_one_printable_line, code_now, decoy_dir, enrolled, record, write_file,
    wrong_code, Outside, Snapshot,
};

/// Names that must be refused, with how the audit line shows them.
const BAD_NAMES: [(&[u8], &str); 16] = [
    (b"../decoy/shadow", "../decoy/shadow"),
    (b"a/b", "a/b"),
    (b"..", ".."),
    (b".", "."),
    (b".alice", ".alice"),
    (b"-alice", "-alice"),
    (b"alice\n", "alice\\x0a"),
    (b"alice\nresult=success", "alice\\x0aresult\\x3dsuccess"),
    (b"al\x1b[2Jice", "al\\x1b[2Jice"),
    (b"al\tice", "al\\x09ice"),
    (b"alice ", "alice\\x20"),
    (b"\x7f", "\\x7f"),
    (b"al\xffice", "al\\xffice"),
    (b"alice:x", "alice:x"),
    (b"al\\ice", "al\\x5cice"),
    ("ålice".as_bytes(), "\\xc3\\xa5lice"),
];

#[test]
fn hostile_user_names_are_refused_before_any_file_is_opened() {
    let env = enrolled("h-names", "alice");
    let decoys = decoy_dir(&env);
    write_file(&decoys.join("shadow.toml"), record().as_bytes(), 0o600);
    write_file(&env.dir().join("alice.toml"), record().as_bytes(), 0o600);
    let outside = Outside::guard(&env, &[&decoys], &[]);
    let long = vec![b'a'; 300];
    // The audit line keeps 256 bytes of a value and says how long it was.
    let shown_long = format!("{}...[300-bytes]", "a".repeat(256));
    let mut cases: Vec<(&[u8], &str)> = BAD_NAMES.to_vec();
    cases.push((&long, &shown_long));

    for (name, shown) in cases {
        let state = Snapshot::take(&env.state_dir(), &[]);
        outside.begin();

        let login = env
            .login("alice")
            .user_bytes(name)
            .answer(&code_now())
            .run();

        outside.assert_untouched();
        state.assert_same_tree(&env.state_dir(), &[], "the state folder");
        assert!(login.messages.is_empty(), "{shown}: {:?}", login.messages);
        let head = format!("result=denied reason=bad_user_name user={shown}");
        assert_decision(&env, &login, "PAM_USER_UNKNOWN", &head, &[]);
        assert!(hostile::last_decision(&env).ends_with(shown), "{shown}");
    }
    assert!(!env.state_dir().join("alice.counters").exists());
}

#[test]
fn the_longest_accepted_name_is_looked_up_not_refused() {
    let env = TestEnv::new("h-name-64");
    let longest = "b".repeat(64);

    let login = env.login(&longest).answer(&code_now()).run();

    let head = format!("result=denied reason=unknown_user user={longest}");
    assert_decision(&env, &login, "PAM_USER_UNKNOWN", &head, &[]);
    let too_long = "b".repeat(65);
    let login = env.login(&too_long).answer(&code_now()).run();
    let head = format!("result=denied reason=bad_user_name user={too_long}");
    assert_decision(&env, &login, "PAM_USER_UNKNOWN", &head, &[]);
}

/// Values for rhost, tty and ruser that try to forge a second audit line,
/// a field, or drive the terminal that shows the log.
const HOSTILE_ITEMS: [(&[u8], &str); 5] = [
    (
        b"10.0.0.1\nJan  1 00:00:00 host sshd[1]: result=success user=root",
        "10.0.0.1\\x0aJan\\x20\\x201\\x2000:00:00\\x20host\\x20sshd[1]:\\x20result\\x3dsuccess\\x20user\\x3droot",
    ),
    (b"pts/1\r\x1b[2K\x1b[1A", "pts/1\\x0d\\x1b[2K\\x1b[1A"),
    (b"\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),
    (b"a=b \"c\" \\d", "a\\x3db\\x20\\x22c\\x22\\x20\\x5cd"),
    (b"\xc0\x80\xff\xfe", "\\xc0\\x80\\xff\\xfe"),
];

#[test]
fn hostile_rhost_tty_and_ruser_stay_escaped_on_one_line() {
    let env = enrolled("h-items", "alice");
    let outside = Outside::guard(&env, &[], &[]);

    for (n, (value, shown)) in HOSTILE_ITEMS.iter().enumerate() {
        let answer = if n == 0 { code_now() } else { wrong_code() };
        outside.begin();
        let login = env
            .login("alice")
            .rhost_bytes(value)
            .tty_bytes(value)
            .ruser_bytes(value)
            .answer(&answer)
            .run();

        outside.assert_untouched();
        let line = hostile::last_decision(&env);
        assert_eq!(line.matches("result=").count(), 1, "{line}");
        let items = format!("user=alice rhost={shown} tty={shown} ruser={shown} failures={n}/5");
        let (result, head) = match n {
            0 => ("PAM_SUCCESS", format!("result=success reason=code {items}")),
            _ => (
                "PAM_AUTH_ERR",
                format!("result=denied reason=wrong_code {items}"),
            ),
        };
        assert_decision(&env, &login, result, &head, &[]);
    }
    for record in env.audit_records() {
        assert_one_printable_line(&record.raw);
    }
}

#[test]
fn a_huge_hostile_name_still_gets_its_audit_line() {
    let env = TestEnv::new("h-name-huge");
    // 60,000 control bytes: 240,000 bytes once escaped, more than a syslog
    // datagram may hold, so the line was lost before values were capped.
    let name = vec![0x01u8; 60_000];

    let login = env.login("alice").user_bytes(&name).run();

    let shown = format!("{}...[60000-bytes]", "\\x01".repeat(256));
    let head = format!("result=denied reason=bad_user_name user={shown}");
    assert_decision(&env, &login, "PAM_USER_UNKNOWN", &head, &[]);
    assert!(hostile::last_decision(&env).ends_with(&shown));
}

#[test]
fn a_user_name_typed_at_the_modules_own_prompt_is_checked_the_same_way() {
    let env = enrolled("h-name-prompt", "alice");
    let outside = Outside::guard(&env, &[], &[]);

    let typed = env
        .login_without_user()
        .answer("../decoy/shadow")
        .answer(&code_now())
        .run();
    let good = env
        .login_without_user()
        .answer("alice")
        .answer(&code_now())
        .run();

    outside.assert_unchanged();
    assert_eq!(
        typed.prompts().len(),
        1,
        "only the name was asked: {:?}",
        typed.messages
    );
    assert_eq!(typed.result(), "PAM_USER_UNKNOWN");
    assert!(decisions_contain(
        &env,
        "reason=bad_user_name user=../decoy/shadow"
    ));
    assert_eq!(good.result(), "PAM_SUCCESS", "{}", good.stdout);
    assert_eq!(good.prompts().len(), 2);
}

#[test]
fn a_broken_conversation_at_the_name_prompt_is_a_refusal() {
    let env = enrolled("h-name-conv", "alice");

    for conv in [Conv::Error, Conv::NullArray, Conv::NullResponse] {
        let login = env.login_without_user().conv(conv).run();

        // libpam's pam_get_user fails in the conversation: no user to
        // judge, and the application is told its conversation failed.
        let head = "result=error reason=conversation_failed";
        assert_decision(&env, &login, "PAM_CONV_ERR", head, &[]);
        let line = hostile::last_decision(&env);
        assert!(
            line.contains(head) && !line.contains("user="),
            "{conv:?}: {line}"
        );
    }
}

fn decisions_contain(env: &TestEnv, fragment: &str) -> bool {
    hostile::decisions(env).iter().any(|l| l.contains(fragment))
}

#[test]
fn every_byte_pam_set_item_accepts_in_a_name_is_refused_and_escaped() {
    let env = TestEnv::new("h-name-bytes");
    // Every byte but NUL, which would end the C string.
    let name: Vec<u8> = (1u8..=255).collect();
    let shown: String = name
        .iter()
        .map(|&b| match b {
            b'"' | b'=' | b'\\' => format!("\\x{b:02x}"),
            b if b.is_ascii_graphic() => (b as char).to_string(),
            b => format!("\\x{b:02x}"),
        })
        .collect();

    let login = env.login("alice").user_bytes(&name).run();

    let head = format!("result=denied reason=bad_user_name user={shown}");
    assert_decision(&env, &login, "PAM_USER_UNKNOWN", &head, &[]);
}
