//! Hostile contents, through the real Linux-PAM library: state files that
//! are empty, cut mid-write, 10 MB, not UTF-8, with a short secret, bad
//! base32, a negative or huge step or duplicated keys; counters files of the
//! wrong size or damaged; and configs with the same faults plus unknown
//! keys, an empty group list and unsafe files. A state fault refuses the
//! login with PAM_AUTHINFO_UNAVAIL, a config fault with PAM_SERVICE_ERR,
//! both before any prompt, with an audit line naming the fault, nothing
//! changed and nothing outside the state folder opened.

mod common;
#[path = "support/hostile.rs"]
mod hostile;

use std::fs;
use std::os::unix::fs::{chown, symlink};
use std::path::Path;

use common::TestEnv;
use hostile::{
    assert_decision, assert_one_printable_line, code_now, decoy_dir, enrolled, login_with_dev_log,
    record, set_mode, write_file, Outside, Snapshot, SECRET,
};

const RHOST: &str = "198.51.100.7";

/// Writes `bytes` as alice's record and asserts a login with a valid code
/// is refused as `reason` with every `detail` fragment in the audit line.
fn assert_state_refused(
    env: &TestEnv,
    outside: &Outside,
    bytes: &[u8],
    reason: &str,
    detail: &[&str],
) {
    write_file(&env.state_path("alice"), bytes, 0o600);
    let before = Snapshot::take(&env.state_dir(), &[]);
    outside.begin();

    let login = env.login("alice").answer(&code_now()).rhost(RHOST).run();

    outside.assert_untouched();
    assert!(login.prompts().is_empty(), "{:?}", login.messages);
    let head = format!("result=error reason={reason} user=alice rhost={RHOST} detail=");
    assert_decision(env, &login, "PAM_AUTHINFO_UNAVAIL", &head, detail);
    before.assert_same_tree(&env.state_dir(), &[], "the state folder");
}

#[test]
fn broken_state_files_are_refused_whole() {
    let env = TestEnv::new("h-state-text");
    let outside = Outside::guard(&env, &[], &[]);
    let full = format!(
        "secret = \"{SECRET}\"\ndigits = 6\nrecovery_codes = [\"sha256$00$00\"]\nlast_step = 5\n"
    );
    let cut_in_secret = &full[..20];
    let cut_in_key = &full[..full.find("igits").unwrap()];
    let cut_in_value = &full[..full.find("= 6").unwrap() + 1];
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "empty",
            vec![],
            "state_corrupt",
            "missing\\x20field\\x20`secret`",
        ),
        (
            "cut in the secret",
            cut_in_secret.into(),
            "state_corrupt",
            "alice.toml",
        ),
        (
            "cut in a key",
            cut_in_key.into(),
            "state_corrupt",
            "alice.toml",
        ),
        (
            "cut in a value",
            cut_in_value.into(),
            "state_corrupt",
            "alice.toml",
        ),
        (
            "10 MB",
            format!("{}# {}\n", record(), "x".repeat(10 << 20)).into(),
            "state_unsafe",
            "bytes,\\x20over\\x2065536",
        ),
        (
            "not UTF-8",
            [record().as_bytes(), b"# \xff\xfe\n"].concat(),
            "state_corrupt",
            "not\\x20UTF-8",
        ),
        (
            "an 80-bit secret",
            b"secret = \"JBSWY3DPEHPK3PXP\"\n".to_vec(),
            "state_corrupt",
            "80\\x20bits",
        ),
        (
            "bad base32",
            b"secret = \"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ1\"\n".to_vec(),
            "state_corrupt",
            "base32",
        ),
        (
            "a negative step",
            format!("{}last_step = -1\n", record()).into(),
            "state_corrupt",
            "alice.toml",
        ),
        (
            "a step past u64",
            format!("{}last_step = 99999999999999999999\n", record()).into(),
            "state_corrupt",
            "alice.toml",
        ),
        (
            "the step that means none",
            format!("{}last_step = 18446744073709551615\n", record()).into(),
            "state_corrupt",
            "beyond\\x20any\\x20time",
        ),
        (
            "a duplicated key",
            format!("{}secret = \"{SECRET}\"\n", record()).into(),
            "state_corrupt",
            "duplicate",
        ),
        (
            "an unknown key",
            format!("{}shell = \"/bin/sh\"\n", record()).into(),
            "state_corrupt",
            "unknown\\x20field",
        ),
        (
            "a NUL byte",
            [record().as_bytes(), b"\0"].concat(),
            "state_corrupt",
            "alice.toml",
        ),
    ];

    for (what, bytes, reason, detail) in cases {
        println!("case: {what}");
        assert_state_refused(&env, &outside, &bytes, reason, &[detail]);
        let line = hostile::last_decision(&env);
        assert!(!line.contains(&SECRET[..12]), "{what}: secret in {line}");
    }
    outside.assert_unchanged();
}

/// alice's counters file with `bytes`.
fn write_counters(env: &TestEnv, bytes: &[u8]) {
    write_file(&env.state_dir().join("alice.counters"), bytes, 0o600);
}

/// A counters file as the module leaves it after two successes of alice,
/// for the steps before and of now (both slots hold counters), and the
/// code of the first.
fn real_counters(env: &TestEnv) -> (Vec<u8>, String) {
    let codes = [hostile::code_at_offset(-1), code_now()];
    for code in &codes {
        let login = env.login("alice").answer(code).run();
        assert_eq!(login.result(), "PAM_SUCCESS", "{}", login.stdout);
    }
    let bytes = fs::read(env.state_dir().join("alice.counters")).unwrap();
    (bytes, codes[0].clone())
}

#[test]
fn broken_counters_files_are_refused_and_a_torn_slot_falls_back() {
    let env = enrolled("h-cnt-text", "alice");
    let (good, first_code) = real_counters(&env);
    let outside = Outside::guard(&env, &[], &[]);
    let mut both_damaged = good.clone();
    both_damaged[3] ^= 1;
    both_damaged[131] ^= 1;
    let cases: [(&str, Vec<u8>); 3] = [
        ("too short", good[..100].to_vec()),
        ("both slots damaged", both_damaged),
        ("not ours at all", vec![0x41; 256]),
    ];

    for (what, bytes) in cases {
        println!("case: {what}");
        write_counters(&env, &bytes);
        outside.begin();
        let login = env.login("alice").answer(&code_now()).run();
        outside.assert_untouched();
        assert_decision(
            &env,
            &login,
            "PAM_AUTHINFO_UNAVAIL",
            "result=error reason=state_corrupt user=alice detail=",
            &["alice.counters"],
        );
    }

    // The newer slot torn: the older one is the state after the first
    // login, which still knows that login's step was used.
    let mut torn = good.clone();
    let newer = if counters_generation(&good, 0) > counters_generation(&good, 128) {
        0
    } else {
        128
    };
    torn[newer + 40] ^= 0xff;
    write_counters(&env, &torn);
    let replay = env.login("alice").answer(&first_code).run();
    assert_decision(
        &env,
        &replay,
        "PAM_AUTH_ERR",
        "result=denied reason=replay user=alice failures=1/5",
        &[],
    );
    outside.assert_unchanged();
}

fn counters_generation(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap())
}

// ---------------------------------------------------------------------------
// Configs

/// A valid config that points at `<env>/decoy/state`, where alice is
/// enrolled: a login that used it would succeed.
fn decoy_config(env: &TestEnv) -> std::path::PathBuf {
    let dir = decoy_dir(env);
    let state = dir.join("state");
    if !state.exists() {
        fs::create_dir(&state).unwrap();
        set_mode(&state, 0o700);
        write_file(&state.join("alice.toml"), record().as_bytes(), 0o600);
    }
    let text = common::DEFAULT_CONFIG
        .replace("{state_dir}", &state.to_string_lossy())
        .replace("{socket}", &env.socket_path().to_string_lossy());
    let path = dir.join("otpgate.toml");
    write_file(&path, text.as_bytes(), 0o644);
    path
}

/// Asserts a login with a valid code is refused as a bad config, before
/// any prompt, with an audit line on /dev/log naming the fault.
fn assert_config_refused(env: &TestEnv, outside: &Outside, detail: &[&str]) {
    let state = Snapshot::take(&env.state_dir(), &[]);
    outside.begin();

    let login = login_with_dev_log(env, "alice", &code_now());

    outside.assert_untouched();
    assert_eq!(
        login.result.as_deref(),
        Some("PAM_SERVICE_ERR"),
        "{}",
        login.stdout
    );
    assert!(login.messages.is_empty(), "{:?}", login.messages);
    let line = hostile::last_decision(env);
    assert_one_printable_line(&line);
    let head = "pam_otpgate(otpgate-test:auth): result=error reason=bad_config user=alice detail=";
    assert!(line.starts_with(head), "{line}");
    for fragment in detail {
        assert!(line.contains(fragment), "{line}\n  lacks {fragment}");
    }
    state.assert_same_tree(&env.state_dir(), &[], "the state folder");
}

#[test]
fn broken_configs_are_a_service_error_audited_on_dev_log() {
    let env = enrolled("h-config-text", "alice");
    let path = env.config_path();
    let good = fs::read_to_string(&path).unwrap();
    let with = |from: &str, to: &str| {
        assert!(good.contains(from), "{from}");
        good.replacen(from, to, 1).into_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "missing\\x20field\\x20`groups`"),
        (
            "cut mid-write",
            good.as_bytes()[..14].to_vec(),
            "otpgate.toml",
        ),
        (
            "10 MB",
            format!("{good}# {}\n", "x".repeat(10 << 20)).into(),
            "bytes,\\x20over\\x2065536",
        ),
        (
            "not UTF-8",
            [good.as_bytes(), b"# \xff\n"].concat(),
            "not\\x20valid\\x20UTF-8",
        ),
        (
            "an empty group list",
            with("[\"vms-admins\"]", "[]"),
            "at\\x20least\\x20one",
        ),
        (
            "an empty group name",
            with("[\"vms-admins\"]", "[\"\"]"),
            "group\\x20name",
        ),
        (
            "a group with a newline",
            with("[\"vms-admins\"]", "[\"vms\\nadmins\"]"),
            "control\\x20characters",
        ),
        (
            "groups as a string",
            with("[\"vms-admins\"]", "\"vms-admins\""),
            "invalid\\x20type",
        ),
        (
            "an unknown key",
            with("[code]\n", "[code]\nwindow = 3\n"),
            "unknown\\x20field",
        ),
        (
            "an unknown section",
            [good.as_bytes(), b"[extra]\nx = 1\n"].concat(),
            "unknown\\x20field",
        ),
        (
            "a duplicated key",
            with("digits = 6\n", "digits = 6\ndigits = 8\n"),
            "duplicate",
        ),
        (
            "a duplicated section",
            [good.as_bytes(), b"[code]\ndigits = 8\n"].concat(),
            "otpgate.toml",
        ),
        ("9 digits", with("digits = 6", "digits = 9"), "digits"),
        ("a negative skew", with("skew = 1", "skew = -1"), "skew"),
        (
            "a huge skew",
            with("skew = 1", "skew = 99999999999999999999"),
            "skew",
        ),
        ("a period of 0", with("period = 30", "period = 0"), "period"),
        (
            "no lockout",
            with("max_failures = 5", "max_failures = 0"),
            "max_failures",
        ),
        (
            "101 failures",
            with("max_failures = 5", "max_failures = 101"),
            "100",
        ),
        (
            "a lock of 0 s",
            with("lock_seconds = 300", "lock_seconds = 0"),
            "lock_seconds",
        ),
        (
            "an unknown algorithm",
            with("\"SHA1\"", "\"MD5\""),
            "unknown\\x20variant",
        ),
        (
            "a relative state_dir",
            with("state_dir = \"/", "state_dir = \""),
            "absolute",
        ),
        (
            "a NUL byte",
            [good.as_bytes(), b"\0"].concat(),
            "otpgate.toml",
        ),
    ];
    let outside = Outside::guard(&env, &[], &[]);

    for (what, bytes, detail) in cases {
        println!("case: {what}");
        write_file(&path, &bytes, 0o644);
        assert_config_refused(&env, &outside, &[detail]);
    }
    write_file(&path, good.as_bytes(), 0o644);
    let login = env.login("alice").answer(&code_now()).run();
    assert_eq!(login.result(), "PAM_SUCCESS", "{}", login.stdout);
}

fn mknod(path: &Path, kind: u32, device: libc::dev_t) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid C path; mknod only creates a node.
    assert_eq!(unsafe { libc::mknod(c.as_ptr(), kind | 0o644, device) }, 0);
}

#[test]
fn unsafe_config_files_and_folders_are_a_service_error() {
    let env = enrolled("h-config-file", "alice");
    let path = env.config_path();
    let etc = env.dir().join("etc");
    let decoy = decoy_config(&env);
    let decoys = decoy_dir(&env);
    let outside = Outside::guard(&env, &[&decoys], &[]);
    let good = fs::read(&path).unwrap();
    let restore = || {
        let _ = fs::remove_file(&path).or_else(|_| fs::remove_dir(&path));
        write_file(&path, &good, 0o644);
    };

    let _ = fs::remove_file(&path);
    symlink(&decoy, &path).unwrap();
    assert_config_refused(&env, &outside, &["symbolic\\x20link"]);

    let _ = fs::remove_file(&path);
    mknod(&path, libc::S_IFIFO, 0);
    assert_config_refused(&env, &outside, &["not\\x20a\\x20regular\\x20file"]);
    let _ = fs::remove_file(&path);
    mknod(&path, libc::S_IFCHR, libc::makedev(1, 5));
    assert_config_refused(&env, &outside, &["not\\x20a\\x20regular\\x20file"]);
    let _ = fs::remove_file(&path);
    fs::create_dir(&path).unwrap();
    assert_config_refused(&env, &outside, &["not\\x20a\\x20regular\\x20file"]);

    restore();
    for mode in [0o666, 0o664, 0o646, 0o620] {
        set_mode(&path, mode);
        assert_config_refused(&env, &outside, &[&format!("mode\\x20{mode:04o}")]);
    }
    set_mode(&path, 0o644);
    chown(&path, Some(2001), None).unwrap();
    assert_config_refused(&env, &outside, &["uid\\x202001"]);
    restore();

    set_mode(&etc, 0o777);
    assert_config_refused(&env, &outside, &["mode\\x200777"]);
    set_mode(&etc, 0o755);

    fs::rename(&etc, env.dir().join("etc.real")).unwrap();
    symlink("etc.real", &etc).unwrap();
    assert_config_refused(&env, &outside, &["symbolic\\x20link"]);
    fs::remove_file(&etc).unwrap();
    fs::rename(env.dir().join("etc.real"), &etc).unwrap();

    assert_eq!(
        env.login("alice").answer(&code_now()).run().result(),
        "PAM_SUCCESS"
    );
}

#[test]
fn a_hard_linked_config_is_a_service_error() {
    let env = enrolled("h-config-hard", "alice");
    let decoy = decoy_config(&env);
    fs::remove_file(env.config_path()).unwrap();
    fs::hard_link(&decoy, env.config_path()).unwrap();
    let outside = Outside::guard(&env, &[], &[]);

    assert_config_refused(&env, &outside, &["2\\x20hard\\x20links"]);
}
