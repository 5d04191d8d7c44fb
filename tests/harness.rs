//! Tests of the integration-test harness itself, with stock Linux-PAM modules
//! only, so they pass whether or not the otpgate module builds: the env
//! layout, pam-drive through real libpam, nss_wrapper, the syslog listener
//! and the oathtool reference codes.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use common::{totp_code, AuditRecord, Conv, TestEnv};

const IN_VMS_ADMINS: &str = "auth required pam_succeed_if.so user ingroup vms-admins\n";

/// Owner uid, gid and permission bits of a path.
fn owner_and_mode(path: &std::path::Path) -> (u32, u32, u32) {
    let metadata = fs::symlink_metadata(path).unwrap();
    (metadata.uid(), metadata.gid(), metadata.mode() & 0o7777)
}

#[test]
fn the_layout_is_root_owned_with_the_documented_modes() {
    let env = TestEnv::new("layout");
    env.write_state("alice", "version = 1\n");

    assert_eq!(owner_and_mode(&env.dir().join("etc")), (0, 0, 0o755));
    assert_eq!(owner_and_mode(&env.config_path()), (0, 0, 0o644));
    assert_eq!(owner_and_mode(&env.state_dir()), (0, 0, 0o700));
    assert_eq!(owner_and_mode(&env.state_path("alice")), (0, 0, 0o600));
    assert_eq!(
        fs::read_to_string(env.state_path("alice")).unwrap(),
        "version = 1\n"
    );
}

#[test]
fn the_default_config_and_service_point_into_the_env() {
    let env = TestEnv::new("defaults");

    let config = fs::read_to_string(env.config_path()).unwrap();
    let service = fs::read_to_string(env.pam_dir().join("otpgate-test")).unwrap();

    let state_line = format!("state_dir = \"{}\"\n", env.state_dir().display());
    let socket_line = format!("socket = \"{}\"\n", env.socket_path().display());
    assert!(
        config.starts_with("groups = [\"vms-admins\"]\n"),
        "{config}"
    );
    assert!(config.contains(&state_line), "{config}");
    assert!(config.contains(&socket_line), "{config}");
    assert!(config.contains("mode = \"admin-only\"\n"), "{config}");
    assert!(service.starts_with("auth required /"), "{service}");
    assert!(service.contains("/libotpgate.so config="), "{service}");
    assert!(service.ends_with(&format!("config={}\n", env.config_path().display())));
}

#[test]
fn the_folder_goes_away_on_drop() {
    let env = TestEnv::new("drop");
    let dir = env.dir().to_path_buf();
    assert!(dir.is_dir());

    drop(env);

    let kept = std::env::var_os("OTPGATE_KEEP_TEST_ENV").is_some();
    assert_eq!(dir.exists(), kept);
}

#[test]
fn permit_and_deny_run_through_libpam() {
    let env = TestEnv::new("permit-deny");
    env.write_service("permit", "auth required pam_permit.so\n");
    env.write_service("deny", "auth required pam_deny.so\n");

    let permit = env.login("alice").service("permit").run();
    let deny = env.login("alice").service("deny").run();

    assert_eq!(permit.result(), "PAM_SUCCESS");
    assert_eq!(permit.results, [(0, "PAM_SUCCESS".to_string())]);
    assert_eq!(deny.result(), "PAM_AUTH_ERR");
}

/// Whether the machine's own NSS knows the group (it must not, for the
/// nss_wrapper test to prove anything).
fn host_knows_group(name: &str) -> bool {
    let status = Command::new("getent")
        .args(["group", name])
        .output()
        .unwrap()
        .status;
    status.success()
}

#[test]
fn group_membership_comes_from_nss_wrapper() {
    assert!(
        !host_knows_group("vms-admins"),
        "the host itself has a vms-admins group"
    );
    let env = TestEnv::new("nss");
    env.write_service("admins", IN_VMS_ADMINS);

    let result_of = |user: &str| env.login(user).service("admins").run().result().to_string();

    assert_eq!(result_of("alice"), "PAM_SUCCESS", "supplementary member");
    assert_eq!(result_of("bob"), "PAM_SUCCESS", "primary group");
    assert_eq!(result_of("dave"), "PAM_SUCCESS", "supplementary member");
    assert_eq!(result_of("carol"), "PAM_AUTH_ERR", "member of staff only");
}

#[test]
fn added_users_and_groups_are_seen() {
    let mut env = TestEnv::new("nss-add");
    env.add_group("ops", 3003, &["erin"]);
    env.add_user("erin", 2005, 2005);
    env.add_user("frank", 2006, 3003);
    env.write_service("ops", "auth required pam_succeed_if.so user ingroup ops\n");

    assert_eq!(
        env.login("erin").service("ops").run().result(),
        "PAM_SUCCESS"
    );
    assert_eq!(
        env.login("frank").service("ops").run().result(),
        "PAM_SUCCESS"
    );
    assert_eq!(
        env.login("alice").service("ops").run().result(),
        "PAM_AUTH_ERR"
    );
}

#[test]
fn hostile_bytes_reach_the_stack_and_come_back_escaped() {
    let env = TestEnv::new("bytes");
    let stack = "auth optional pam_echo.so u=%u H=%H t=%t\nauth required pam_permit.so\n";
    env.write_service("echo", stack);

    let login = env
        .login("ignored")
        .user_bytes(b"al\nice\xff")
        .rhost_bytes(b"\x1b[2J10.1.2.3")
        .tty("pts/1")
        .service("echo")
        .run();

    assert_eq!(
        login.infos(),
        ["u=al\\x0aice\\xff H=\\x1b[2J10.1.2.3 t=pts/1"]
    );
    assert_eq!(login.result(), "PAM_SUCCESS");
}

#[test]
fn prompts_answers_and_conversation_modes() {
    let env = TestEnv::new("conv");
    env.write_service("stress", "auth required pam_stress.so\n");

    let answered = env
        .login_without_user()
        .answer("alice")
        .answer("pw")
        .service("stress")
        .run();
    let refused = env.login("alice").service("stress").conv(Conv::Error).run();

    assert_eq!(answered.prompts(), ["username: ", "STRESS Password: "]);
    assert_eq!(answered.messages[0].0, "prompt-echo-on");
    assert_eq!(answered.result(), "PAM_SUCCESS");
    assert_eq!(refused.result(), "PAM_CONV_ERR");
}

#[test]
fn sixteen_parallel_logins() {
    let env = TestEnv::new("parallel");
    env.write_service("permit", "auth required pam_permit.so\n");

    let running: Vec<_> = (0..16)
        .map(|_| env.login("bob").service("permit").spawn())
        .collect();
    let results: Vec<_> = running
        .into_iter()
        .map(|login| login.wait().result().to_string())
        .collect();

    assert_eq!(results, vec!["PAM_SUCCESS"; 16]);
}

#[test]
fn repeated_logins_with_process_reports() {
    let env = TestEnv::new("repeat");
    env.write_service("admins", IN_VMS_ADMINS);

    let login = env
        .login("alice")
        .service("admins")
        .repeat(3)
        .report_process()
        .run();

    let reports = login.process_reports();
    assert_eq!(login.results.len(), 3);
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0], reports[1]);
    assert_eq!(reports[1].cloexec_leaks, 0);
    assert_eq!(reports[1].uid, "0,0,0");
}

#[test]
fn fail_delays_are_recorded_instead_of_slept() {
    let env = TestEnv::new("delay");
    env.write_service(
        "slow",
        "auth required pam_faildelay.so delay=5000000\nauth required pam_deny.so\n",
    );

    let started = std::time::Instant::now();
    let login = env.login("carol").service("slow").skip_fail_delay().run();

    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(login.delays.len(), 1, "{}", login.stdout);
    assert_eq!(login.result(), "PAM_AUTH_ERR");
}

#[test]
fn the_syslog_listener_collects_datagrams() {
    let env = TestEnv::new("syslog");
    let sender = UnixDatagram::unbound().unwrap();
    let datagram = b"<86>Dec  3 16:45:01 otpgate[42]: event=test user=alice\n";

    sender.send_to(datagram, env.socket_path()).unwrap();
    sender
        .send_to(b"no header at all", env.socket_path())
        .unwrap();

    let found = env.wait_audit(
        |text| text.starts_with("event=test"),
        Duration::from_secs(2),
    );
    let records = env.audit_records();
    assert_eq!(found.as_deref(), Some("event=test user=alice"));
    assert_eq!(
        env.audit_lines(),
        ["event=test user=alice", "no header at all"]
    );
    assert_eq!(records[0].priority, Some(86));
    assert_eq!(
        (records[0].facility(), records[0].severity()),
        (Some(10), Some(6))
    );
    assert_eq!(records[0].program, "otpgate");
    assert_eq!(records[1], AuditRecord::parse(b"no header at all"));
    assert_eq!(records[1].priority, None);
}

#[test]
fn audit_records_parse_rfc3164_lines_with_a_hostname() {
    let record = AuditRecord::parse(b"<85>Dec 13 06:05:01 vm otpgate[7]: a: b\0");

    assert_eq!(record.priority, Some(85));
    assert_eq!(record.program, "otpgate");
    assert_eq!(record.text, "a: b");
}

/// RFC 6238 appendix B: the seeds are the ASCII digits "1234567890"
/// repeated to 20, 32 and 64 bytes; at T = 59 s the 8-digit codes are
/// 94287082, 46119246 and 90693936.
#[test]
fn totp_codes_match_rfc_6238_appendix_b() {
    let sha1 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let sha256 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA====";
    let sha512 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNA=";

    assert_eq!(totp_code(sha1, 8, 30, "SHA1", 59), "94287082");
    assert_eq!(totp_code(sha256, 8, 30, "sha256", 59), "46119246");
    assert_eq!(totp_code(sha512, 8, 30, "SHA512", 59), "90693936");
    assert_eq!(totp_code(sha1, 8, 30, "SHA1", 1_111_111_109), "07081804");
}

#[test]
fn totp_codes_follow_digits_and_period() {
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    // With a 60 s step, T = 59 is step 0: RFC 4226's first HOTP value.
    assert_eq!(totp_code(secret, 6, 60, "SHA1", 59), "755224");
    assert_eq!(totp_code(secret, 6, 30, "SHA1", 59), "287082");
    assert!(common::now() > 1_700_000_000);
}
