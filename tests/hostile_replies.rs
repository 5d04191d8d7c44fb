//! Hostile replies to the code prompt, through the real Linux-PAM library:
//! empty, all spaces, 1 MB long, digits of other scripts, the
//! `\b\n\r\177INCORRECT` OpenSSH sends after a refused password, trailing
//! junk; and conversations that fail, return no reply array or a NULL
//! reply. Each is refused and audited without the reply in the line, each
//! wrong reply counts as a failure, and a broken conversation counts none.
//!
//! A NUL cannot travel inside a C string reply: the module sees the bytes
//! before it. The library-level case (a reply holding a NUL) is in
//! tests/properties.rs.

mod common;
#[path = "support/hostile.rs"]
mod hostile;

use std::path::Path;
use std::process::Command;

use common::{Conv, TestEnv};
use hostile::{assert_decision, code_now, enrolled, Outside, Snapshot};

/// Replies that are no code, as (what, bytes).
fn malformed_replies() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", b"".to_vec()),
        ("all spaces", b"          ".to_vec()),
        ("tabs and newlines", b"\t\n\r\n".to_vec()),
        (
            "openssh's refused password",
            b"\x08\n\r\x7fINCORRECT".to_vec(),
        ),
        ("fullwidth digits", "１２３４５６".as_bytes().to_vec()),
        ("arabic-indic digits", "٠١٢٣٤٥".as_bytes().to_vec()),
        ("superscript digits", "¹²³⁴⁵⁶".as_bytes().to_vec()),
        ("a code with junk", format!("{}x", code_now()).into_bytes()),
        ("a code twice", format!("{0}{0}", code_now()).into_bytes()),
        (
            "a signed code",
            format!("+{}", &code_now()[1..]).into_bytes(),
        ),
        ("60 KB of digits", vec![b'1'; 60 * 1024]),
        ("not UTF-8", b"\xff\xfe\xfd\xfc\xfb\xfa".to_vec()),
        ("escape sequences", b"\x1b[2J\x1b]0;x\x07".to_vec()),
    ]
}

#[test]
fn replies_that_are_no_code_are_refused_and_counted() {
    let env = enrolled("h-replies", "alice");
    env.write_config(&common::DEFAULT_CONFIG.replace("max_failures = 5", "max_failures = 100"));
    let outside = Outside::guard(&env, &[], &[]);

    for (n, (what, reply)) in malformed_replies().into_iter().enumerate() {
        outside.begin();
        let login = env.login("alice").answer_bytes(&reply).run();

        outside.assert_untouched();
        assert_eq!(login.prompts(), ["Verification code: "], "{what}");
        let head = format!(
            "result=denied reason=malformed user=alice failures={}/100",
            n + 1
        );
        assert_decision(&env, &login, "PAM_AUTH_ERR", &head, &[]);
        let line = hostile::last_decision(&env);
        assert!(
            line.ends_with(&format!("failures={}/100", n + 1)),
            "{what}: {line}"
        );
    }

    let login = env.login("alice").answer(&code_now()).run();
    assert_eq!(login.result(), "PAM_SUCCESS", "{}", login.stdout);
}

#[test]
fn a_broken_conversation_is_a_conversation_error_that_counts_no_failure() {
    let env = enrolled("h-conv", "alice");
    let outside = Outside::guard(&env, &[], &[]);

    for conv in [Conv::Error, Conv::NullArray, Conv::NullResponse] {
        let state = Snapshot::take(&env.state_dir(), &[]);
        outside.begin();

        let login = env.login("alice").conv(conv).rhost("192.0.2.1").run();

        outside.assert_untouched();
        state.assert_same_tree(&env.state_dir(), &[], "the state folder");
        let head = "result=error reason=conversation_failed user=alice rhost=192.0.2.1 \
                    detail=the\\x20application's\\x20conversation\\x20failed";
        assert_decision(&env, &login, "PAM_CONV_ERR", head, &[]);
    }

    let login = env.login("alice").answer(&code_now()).run();
    assert_eq!(login.result(), "PAM_SUCCESS");
    assert!(hostile::last_decision(&env).ends_with("failures=0/5"));
}

// ---------------------------------------------------------------------------
// A 1 MB reply: too long for pam-drive's command line (one argument may
// hold 128 KiB), so this test runs itself again as a child with nss_wrapper
// preloaded, which answers through pamclient inside its own process.

const CHILD: &str = "OTPGATE_HOSTILE_MEGABYTE_CHILD";
const TEST_NAME: &str = "a_one_megabyte_reply_is_refused_as_malformed";

#[test]
fn a_one_megabyte_reply_is_refused_as_malformed() {
    if let Some(pam_dir) = std::env::var_os(CHILD) {
        answer_one_megabyte(Path::new(&pam_dir));
        return;
    }
    let env = enrolled("h-megabyte", "alice");
    let outside = Outside::guard(&env, &[], &[]);

    let status = run_child(&env);

    outside.assert_untouched();
    assert_eq!(status, "PAM_AUTH_ERR");
    let line = hostile::last_decision(&env);
    let expected = "pam_otpgate(otpgate-test:auth): result=denied reason=malformed user=alice \
                    failures=1/5";
    assert_eq!(line, expected);
    assert!(line.len() < 200, "the reply never reaches the audit line");
}

fn run_child(env: &TestEnv) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env_clear()
        .env(CHILD, env.pam_dir())
        .env("LD_PRELOAD", common::nss_wrapper_path())
        .env("NSS_WRAPPER_PASSWD", env.dir().join("passwd"))
        .env("NSS_WRAPPER_GROUP", env.dir().join("group"))
        .output()
        .expect("running the child");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split_once("megabyte-result ").map(|(_, result)| result))
        .unwrap_or_else(|| panic!("no result in {stdout}"))
        .to_string()
}

/// In the child: one login of alice answered with 1 MiB of digits.
fn answer_one_megabyte(pam_dir: &Path) {
    let reply = vec![b'7'; 1 << 20];
    let log = pamclient::MessageLog::default();
    let conversation =
        pamclient::ScriptedConversation::new(&[reply], pamclient::ConvMode::Normal, log.clone())
            .unwrap();
    let mut session = pamclient::Session::start_confdir(
        common::DEFAULT_SERVICE,
        Some(b"alice"),
        pam_dir,
        Box::new(conversation),
    )
    .expect("pam_start_confdir");
    session.skip_fail_delay().unwrap();

    let status = session.authenticate(0);

    drop(session);
    assert_eq!(log.lock().unwrap().len(), 1, "one prompt, nothing else");
    println!("megabyte-result {}", pamclient::result_name(status));
}
