//! The host process, through the real Linux-PAM library: a panic forced
//! inside the module (the test build's `test_panic` argument) is a
//! PAM_SERVICE_ERR and the process goes on; after every kind of call the
//! open descriptors, user and group ids and supplementary groups are as
//! before, every descriptor the module opens is close-on-exec, and a
//! hostile environment (HOME, TZ, *_proxy, LD_*, locale, TMPDIR, Rust's
//! own variables) changes nothing.

mod common;
#[path = "support/hostile.rs"]
mod hostile;

use std::ffi::OsString;
use std::fs;

use common::{Login, TestEnv};
use hostile::{
    assert_decision, code_at_offset, code_now, decoy_dir, enrolled, record, wrapped_login,
    write_file, wrong_code, Outside,
};

/// Gives the env's PAM folder the `other` service libpam looks for. Without
/// it libpam writes "no default config other" to syslog, and glibc keeps
/// that /dev/log socket open for the rest of the process (when a syslog
/// daemon listens): a descriptor of libpam's, not the module's, that would
/// blur the counts below.
fn quiet_libpam(env: &TestEnv) {
    env.write_service("other", "auth required pam_deny.so\n");
}

/// A service whose only module line carries `test_panic`.
fn panicking_service(env: &TestEnv) {
    quiet_libpam(env);
    env.write_service(
        "panic",
        "auth required {module} config={config} test_panic\n",
    );
    env.write_service(
        "panic-stack",
        "auth required {module} config={config} test_panic\nauth required pam_permit.so\n",
    );
}

#[test]
fn a_panic_inside_the_module_is_a_service_error_and_the_process_lives_on() {
    let env = enrolled("h-panic", "alice");
    panicking_service(&env);
    let outside = Outside::guard(&env, &[], &[]);

    let login = env
        .login("alice")
        .service("panic")
        .answer(&code_now())
        .rhost("192.0.2.8")
        .repeat(3)
        .report_process()
        .run();

    outside.assert_untouched();
    let results: Vec<&str> = login.results.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(results, ["PAM_SERVICE_ERR"; 3], "{}", login.stderr);
    assert!(login.messages.is_empty());
    assert_same_process(&login);
    let lines = hostile::decisions(&env);
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in lines {
        assert_eq!(
            line,
            "pam_otpgate(panic:auth): result=error reason=internal_error user=alice \
             rhost=192.0.2.8 detail=a\\x20bug\\x20in\\x20pam_otpgate\\x20was\\x20caught"
        );
    }
    let stack = env.login("alice").service("panic-stack").run();
    assert_eq!(
        stack.result(),
        "PAM_SERVICE_ERR",
        "pam_permit after it changes nothing"
    );
}

/// Asserts the reports before and after the logins show the same
/// descriptors, ids and groups, and no descriptor without close-on-exec.
fn assert_same_process(login: &Login) {
    let reports = login.process_reports();
    assert_eq!(reports.len(), 2, "{}", login.stdout);
    let (before, after) = (&reports[0], &reports[1]);
    assert_eq!(
        after.fds, before.fds,
        "descriptors leaked: {}",
        login.stdout
    );
    assert_eq!(after.uid, before.uid);
    assert_eq!(after.gid, before.gid);
    assert_eq!(after.groups, before.groups);
    assert_eq!(after.cloexec_leaks, 0);
}

/// Runs pam-drive with `args` and its process reports, with /dev/log out
/// of sight: libpam logs some events itself (a failed conversation, for
/// one) through glibc's syslog, which keeps its socket open for the rest of
/// the process; hiding /dev/log keeps that descriptor of libpam's out of
/// the count, so what is counted is the module's. Returns the last result
/// and the two `process` lines.
fn reported(env: &TestEnv, args: &[&str]) -> (String, Vec<String>) {
    let mut all = args.to_vec();
    all.push("--report-process");
    let login = hostile::wrapped_drive(env, &hostile::private_dev(None), &all);
    assert!(login.status.success(), "{}{}", login.stdout, login.stderr);
    let reports = login
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("process "))
        .map(str::to_string)
        .collect();
    (login.result.unwrap_or_default(), reports)
}

#[test]
fn every_kind_of_call_leaves_descriptors_ids_and_groups_as_they_were() {
    let env = enrolled("h-process", "alice");
    let hash = otpgate::recovery::hash("5555-6666").unwrap();
    env.write_state(
        "alice",
        &format!("{}recovery_codes = [\"{hash}\"]\n", record()),
    );
    panicking_service(&env);
    env.write_state("dave", "secret = \"short\"\n");
    write_file(&env.state_path("bob"), record().as_bytes(), 0o644);
    let (code, wrong, later) = (code_now(), wrong_code(), code_at_offset(1));
    let service = common::DEFAULT_SERVICE;
    let runs: Vec<(&str, Vec<&str>)> = vec![
        (
            "success",
            vec!["--service", service, "--user", "alice", "--answer", &code],
        ),
        (
            "recovery code",
            vec![
                "--service",
                service,
                "--user",
                "alice",
                "--answer",
                "5555-6666",
            ],
        ),
        (
            "conversation error",
            vec!["--service", service, "--user", "alice", "--conv", "error"],
        ),
        (
            "wrong codes",
            vec![
                "--service",
                service,
                "--user",
                "alice",
                "--answer",
                &wrong,
                "--repeat",
                "6",
            ],
        ),
        (
            "locked",
            vec!["--service", service, "--user", "alice", "--answer", &later],
        ),
        (
            "non-member",
            vec!["--service", service, "--user", "carol", "--repeat", "3"],
        ),
        (
            "unknown user",
            vec!["--service", service, "--user", "mallory"],
        ),
        ("bad name", vec!["--service", service, "--user", "../x"]),
        (
            "corrupt state",
            vec!["--service", service, "--user", "dave", "--answer", &code],
        ),
        (
            "unsafe state",
            vec!["--service", service, "--user", "bob", "--answer", &code],
        ),
        ("panic", vec!["--service", "panic", "--user", "alice"]),
    ];

    let mut results = Vec::new();
    for (what, args) in &runs {
        let (result, reports) = reported(&env, args);
        assert_eq!(reports.len(), 2, "{what}");
        assert_eq!(reports[0], reports[1], "{what}: the process changed");
        assert!(
            reports[1].ends_with(" cloexec_leaks=0"),
            "{what}: {}",
            reports[1]
        );
        results.push(result);
    }

    assert_eq!(
        results,
        [
            "PAM_SUCCESS",
            "PAM_SUCCESS",
            "PAM_CONV_ERR",
            "PAM_MAXTRIES",
            "PAM_MAXTRIES",
            "PAM_PERM_DENIED",
            "PAM_USER_UNKNOWN",
            "PAM_USER_UNKNOWN",
            "PAM_AUTHINFO_UNAVAIL",
            "PAM_AUTHINFO_UNAVAIL",
            "PAM_SERVICE_ERR",
        ]
    );
}

#[test]
fn every_descriptor_the_module_opens_is_close_on_exec() {
    let env = enrolled("h-cloexec", "alice");
    let trace = env.dir().join("trace.txt");
    let wrapper: Vec<OsString> = [
        "strace",
        "-qq",
        "-y",
        "-o",
        trace.to_str().unwrap(),
        "-e",
        "trace=open,openat,socket,socketpair,pipe,pipe2,dup,dup2,dup3,fcntl,accept,accept4,inotify_init,inotify_init1,eventfd2,memfd_create",
        "--",
    ]
    .iter()
    .map(Into::into)
    .collect();

    let login = wrapped_login(&env, &wrapper, "alice", &[&code_now()]);

    assert_eq!(
        login.result.as_deref(),
        Some("PAM_SUCCESS"),
        "{}",
        login.stdout
    );
    let text = fs::read_to_string(&trace).unwrap();
    // The module's descriptors: what it opens in the env (config, state;
    // libpam and nss_wrapper open pam.d, passwd and group themselves) and
    // its AF_UNIX syslog socket (libpam's own audit socket is NETLINK).
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&*env.dir().to_string_lossy()) || l.starts_with("socket(AF_UNIX"))
        .filter(|l| !l.contains("/pam.d/") && !l.contains("/passwd") && !l.contains("/group"))
        .filter(|l| !l.contains("= -1 "))
        .collect();
    assert!(
        ours.iter().any(|l| l.contains("alice.counters")),
        "the trace shows the module's opens: {text}"
    );
    assert!(
        ours.iter().any(|l| l.starts_with("socket(AF_UNIX")),
        "{text}"
    );
    for line in &ours {
        assert!(line.contains("CLOEXEC"), "without close-on-exec: {line}");
    }
}

/// The variables a user can set before `sudo` or `su` runs the module.
fn hostile_environment(env: &TestEnv) -> Vec<(&'static str, String)> {
    let decoys = decoy_dir(env);
    let home = decoys.join("home");
    if !home.exists() {
        fs::create_dir(&home).unwrap();
        write_file(
            &home.join(".google_authenticator"),
            b"JBSWY3DPEHPK3PXP\n",
            0o600,
        );
        write_file(
            &home.join(".otpgate.toml"),
            b"groups = [\"nobody\"]\n",
            0o600,
        );
    }
    let home = home.to_string_lossy().into_owned();
    let proxy = "http://127.0.0.1:9".to_string();
    vec![
        ("HOME", home.clone()),
        ("TMPDIR", home.clone()),
        ("XDG_CONFIG_HOME", home.clone()),
        ("OTPGATE_CONFIG", format!("{home}/.otpgate.toml")),
        ("TZ", "EVIL-14:30".to_string()),
        ("LANG", "tr_TR.UTF-8".to_string()),
        ("LC_ALL", "tr_TR.UTF-8".to_string()),
        ("http_proxy", proxy.clone()),
        ("https_proxy", proxy.clone()),
        ("HTTPS_PROXY", proxy.clone()),
        ("ALL_PROXY", proxy.clone()),
        ("no_proxy", "*".to_string()),
        (
            "LD_LIBRARY_PATH",
            "/nonexistent/otpgate-test-lib".to_string(),
        ),
        ("LD_BIND_NOW", "1".to_string()),
        ("MALLOC_PERTURB_", "165".to_string()),
        ("RUST_BACKTRACE", "full".to_string()),
        ("RUST_LOG", "trace".to_string()),
        ("RUST_MIN_STACK", "1".to_string()),
        ("IFS", "\n".to_string()),
        ("SHELL", "/bin/false".to_string()),
    ]
}

#[test]
fn a_hostile_environment_changes_nothing() {
    let env = enrolled("h-environ", "alice");
    quiet_libpam(&env);
    env.write_state("bob", &record());
    let variables = hostile_environment(&env);
    let outside = Outside::guard(&env, &[], &[]);
    let with_env = |user: &str| {
        let mut login = env.login(user).rhost("192.0.2.77").skip_fail_delay();
        for (key, value) in &variables {
            login = login.env(key, value);
        }
        login
    };

    let code = code_now();
    let success = with_env("alice").answer(&code).report_process().run();
    assert_decision(
        &env,
        &success,
        "PAM_SUCCESS",
        "result=success reason=code user=alice rhost=192.0.2.77 failures=0/5",
        &[],
    );
    assert_same_process(&success);
    let replay = with_env("alice").answer(&code).run();
    assert_decision(
        &env,
        &replay,
        "PAM_AUTH_ERR",
        "result=denied reason=replay user=alice rhost=192.0.2.77 failures=1/5",
        &[],
    );
    let wrong = with_env("bob").answer(&wrong_code()).run();
    assert_decision(
        &env,
        &wrong,
        "PAM_AUTH_ERR",
        "result=denied reason=wrong_code user=bob",
        &[],
    );
    let outsider = with_env("carol").run();
    assert_eq!(outsider.result(), "PAM_PERM_DENIED");
    assert!(outsider.messages.is_empty());

    outside.assert_untouched();
    for login in [&success, &replay, &wrong, &outsider] {
        assert!(!login.stderr.contains("panicked"), "{}", login.stderr);
    }
}
