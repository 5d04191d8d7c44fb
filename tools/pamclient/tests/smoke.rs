//! Smoke tests of `pam-drive` against stock Linux-PAM modules: pam_permit and
//! pam_deny for the results, pam_stress (which prompts for a password, and
//! for the user name when none is set) for the conversation, and pam_echo
//! (which expands `%u`, `%H`, `%t`, `%U`) to see the items and the escaping.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh folder of service files under Cargo's scratch folder.
fn confdir(services: &[(&str, &str)]) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let number = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("pamclient-smoke-{}-{number}", std::process::id()));

    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    for (name, text) in services {
        fs::write(dir.join(name), text).unwrap();
    }
    dir
}

/// Runs pam-drive against `dir` with `args` after `--confdir DIR`.
fn drive(dir: &PathBuf, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pam-drive"))
        .arg("--confdir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

/// The output lines of a run that must have exited 0.
fn lines(output: Output) -> Vec<String> {
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{:?}\n{stdout}\n{stderr}",
        output.status
    );
    stdout.lines().map(str::to_string).collect()
}

#[test]
fn permit_and_deny_give_their_results() {
    let dir = confdir(&[
        ("permit", "auth required pam_permit.so\n"),
        ("deny", "auth required pam_deny.so\n"),
    ]);

    let permit = lines(drive(&dir, &["--service", "permit", "--user", "alice"]));
    let deny = lines(drive(&dir, &["--service", "deny", "--user", "alice"]));

    assert_eq!(permit, ["result 0 PAM_SUCCESS"]);
    assert_eq!(deny, ["result 7 PAM_AUTH_ERR"]);
}

#[test]
fn prompts_are_shown_and_answered_in_order() {
    let stack = "auth required pam_stress.so\nauth optional pam_echo.so user=%u\n";
    let dir = confdir(&[("stress", stack)]);

    let output = lines(drive(
        &dir,
        &["--service", "stress", "--answer", "eve", "--answer", "pw"],
    ));

    assert_eq!(
        output,
        [
            "msg prompt-echo-on username: ",
            "msg prompt-echo-off STRESS Password: ",
            "msg info user=eve",
            "result 0 PAM_SUCCESS",
        ]
    );
}

#[test]
fn each_repeat_starts_the_answers_afresh() {
    let stack = "auth required pam_stress.so\nauth optional pam_echo.so user=%u\n";
    let dir = confdir(&[("stress", stack)]);

    let output = lines(drive(
        &dir,
        &["--service", "stress", "--answer", "eve", "--repeat", "2"],
    ));

    let users: Vec<_> = output
        .iter()
        .filter(|line| line.starts_with("msg info"))
        .collect();
    let results: Vec<_> = output
        .iter()
        .filter(|line| line.starts_with("result"))
        .collect();
    assert_eq!(users, ["msg info user=eve", "msg info user=eve"]);
    assert_eq!(results, ["result 0 PAM_SUCCESS", "result 0 PAM_SUCCESS"]);
}

#[test]
fn a_failing_conversation_reaches_the_module() {
    let dir = confdir(&[("stress", "auth required pam_stress.so\n")]);

    for mode in ["error", "null-array"] {
        let args = ["--service", "stress", "--user", "eve", "--conv", mode];
        let output = lines(drive(&dir, &args));

        assert_eq!(
            output,
            [
                "msg prompt-echo-off STRESS Password: ",
                "result 19 PAM_CONV_ERR"
            ],
            "mode {mode}"
        );
    }
}

#[test]
fn items_reach_the_module_and_hostile_bytes_are_escaped() {
    let dir = confdir(&[(
        "echo",
        "auth optional pam_echo.so u=%u H=%H t=%t U=%U\nauth required pam_permit.so\n",
    )]);
    // user "a\nb", rhost "\x1b[31mred", tty "pts/1", ruser "back\slash"
    let args = [
        "--service",
        "echo",
        "--user-hex",
        "610a62",
        "--rhost-hex",
        "1b5b33316d726564",
        "--tty",
        "pts/1",
        "--ruser",
        "back\\slash",
    ];

    let output = lines(drive(&dir, &args));

    assert_eq!(
        output,
        [
            "msg info u=a\\x0ab H=\\x1b[31mred t=pts/1 U=back\\x5cslash",
            "result 0 PAM_SUCCESS",
        ]
    );
}

#[test]
fn the_process_report_brackets_the_logins() {
    let dir = confdir(&[("permit", "auth required pam_permit.so\n")]);
    let args = [
        "--service",
        "permit",
        "--user",
        "alice",
        "--repeat",
        "3",
        "--report-process",
    ];

    let output = lines(drive(&dir, &args));

    let reports: Vec<_> = output
        .iter()
        .filter(|line| line.starts_with("process "))
        .collect();
    assert_eq!(output.len(), 5);
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0], reports[1]);
    assert!(reports[1].ends_with(" cloexec_leaks=0"), "{}", reports[1]);
}

#[test]
fn skipped_fail_delays_are_reported() {
    let dir = confdir(&[(
        "delay",
        "auth required pam_faildelay.so delay=3000000\nauth required pam_deny.so\n",
    )]);

    let output = lines(drive(
        &dir,
        &["--service", "delay", "--user", "eve", "--skip-fail-delay"],
    ));

    assert_eq!(output.len(), 2, "{output:?}");
    assert!(output[0].starts_with("delay "), "{output:?}");
    assert_eq!(output[1], "result 7 PAM_AUTH_ERR");
}

#[test]
fn bad_usage_exits_2_and_a_missing_service_exits_1() {
    let dir = confdir(&[]);

    let usage = drive(&dir, &["--service", "x", "--conv", "rude"]);
    let missing = drive(&dir, &["--service", "absent", "--user", "eve"]);

    assert_eq!(usage.status.code(), Some(2));
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("PAM_ABORT"));
}
