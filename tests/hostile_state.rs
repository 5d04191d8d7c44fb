//! Hostile state folders and files, through the real Linux-PAM library: a
//! state file or a folder above it replaced by a symbolic link, a hard link,
//! a FIFO, a device or a folder, owned by a user, readable or writable by
//! others; a state folder others can write. Each login is refused before a
//! prompt with PAM_AUTHINFO_UNAVAIL and an audit line naming the problem,
//! the state folder is left as it was and nothing outside it is opened or
//! changed.

mod common;
#[path = "support/hostile.rs"]
mod hostile;

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{chown, symlink};
use std::path::Path;
use std::time::{Duration, Instant};

use common::TestEnv;
use hostile::{
    assert_decision, code_now, decoy_dir, enrolled, record, set_mode, write_file, Outside, Snapshot,
};

const RHOST: &str = "203.0.113.9";

/// What a refused login may do to the watched paths outside.
#[derive(Clone, Copy, PartialEq)]
enum Touch {
    /// Not even open them.
    Nothing,
    /// Open them to look (a hard link shares its target's inode), but
    /// never read or write a byte.
    OpenOnly,
}

/// Logs alice in with a valid code and asserts the refusal: the result,
/// no prompt, quickly, the audit line, the state folder unchanged and the
/// outside untouched.
fn assert_refused(env: &TestEnv, outside: &Outside, touch: Touch, reason: &str, detail: &[&str]) {
    let state = env.state_dir();
    let before = Snapshot::take(&state, &[]);
    outside.begin();
    let started = Instant::now();

    let login = env.login("alice").answer(&code_now()).rhost(RHOST).run();

    assert!(started.elapsed() < Duration::from_secs(5), "answered late");
    match touch {
        Touch::Nothing => outside.assert_untouched(),
        Touch::OpenOnly => outside.assert_not_read(),
    }
    assert!(login.prompts().is_empty(), "{:?}", login.messages);
    let head = format!("result=error reason={reason} user=alice rhost={RHOST} detail=");
    assert_decision(env, &login, "PAM_AUTHINFO_UNAVAIL", &head, detail);
    before.assert_same_tree(&state, &[], "the state folder");
}

fn mknod(path: &Path, kind: u32, device: libc::dev_t) {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid C path; mknod only creates a node.
    let rc = unsafe { libc::mknod(c.as_ptr(), kind | 0o600, device) };
    assert_eq!(rc, 0, "mknod {}", path.display());
}

#[test]
fn a_state_file_linked_to_a_file_elsewhere_is_refused_unread() {
    let env = TestEnv::new("h-link-out");
    let decoy = decoy_dir(&env).join("shadow");
    symlink(&decoy, env.state_path("alice")).unwrap();
    let outside = Outside::guard(&env, &[&decoy], &[]);

    assert_refused(
        &env,
        &outside,
        Touch::Nothing,
        "state_unsafe",
        &["symbolic\\x20link"],
    );
}

#[test]
fn a_state_file_linked_to_etc_shadow_is_refused_and_shadow_untouched() {
    let env = TestEnv::new("h-link-shadow");
    symlink("/etc/shadow", env.state_path("alice")).unwrap();
    let shadow = Path::new("/etc/shadow");
    let outside = Outside::guard(&env, &[], &[shadow]);

    assert_refused(
        &env,
        &outside,
        Touch::Nothing,
        "state_unsafe",
        &["symbolic\\x20link"],
    );
}

#[test]
fn a_state_file_linked_to_another_users_file_is_refused_unread() {
    let env = enrolled("h-link-bob", "bob");
    let bob = env.state_path("bob");
    symlink("bob.toml", env.state_path("alice")).unwrap();
    let outside = Outside::guard(&env, &[&bob], &[]);

    assert_refused(
        &env,
        &outside,
        Touch::Nothing,
        "state_unsafe",
        &["alice.toml", "symbolic\\x20link"],
    );
}

#[test]
fn a_counters_file_linked_elsewhere_is_refused_unread() {
    let env = enrolled("h-link-cnt", "alice");
    let decoy = decoy_dir(&env).join("shadow");
    symlink(&decoy, env.state_dir().join("alice.counters")).unwrap();
    let outside = Outside::guard(&env, &[&decoy], &[]);

    assert_refused(
        &env,
        &outside,
        Touch::Nothing,
        "state_unsafe",
        &["alice.counters", "symbolic\\x20link"],
    );
}

#[test]
fn a_hard_linked_state_file_is_refused_unread() {
    let env = TestEnv::new("h-hardlink");
    let decoy = decoy_dir(&env).join("shadow");
    fs::hard_link(&decoy, env.state_path("alice")).unwrap();
    // The link shares the decoy's inode: checking it means opening it, but
    // not a byte may be read.
    let outside = Outside::guard(&env, &[&decoy], &[]);

    assert_refused(
        &env,
        &outside,
        Touch::OpenOnly,
        "state_unsafe",
        &["has\\x202\\x20hard\\x20links"],
    );
}

#[test]
fn a_state_file_hard_linked_to_another_users_file_is_refused() {
    let env = enrolled("h-hardlink-bob", "bob");
    fs::hard_link(env.state_path("bob"), env.state_path("alice")).unwrap();
    let bob = env.state_path("bob");
    let outside = Outside::guard(&env, &[&bob], &[]);

    assert_refused(
        &env,
        &outside,
        Touch::OpenOnly,
        "state_unsafe",
        &["hard\\x20links"],
    );
}

#[test]
fn a_hard_linked_counters_file_is_refused() {
    let env = enrolled("h-hardlink-cnt", "alice");
    let decoy = decoy_dir(&env).join("counters");
    write_file(&decoy, &[0u8; 256], 0o600);
    fs::hard_link(&decoy, env.state_dir().join("alice.counters")).unwrap();
    let outside = Outside::guard(&env, &[&decoy], &[]);

    assert_refused(
        &env,
        &outside,
        Touch::OpenOnly,
        "state_unsafe",
        &["alice.counters", "hard\\x20links"],
    );
}

#[test]
fn a_fifo_a_device_or_a_folder_as_state_file_is_refused_at_once() {
    let env = TestEnv::new("h-types");
    let path = env.state_path("alice");
    let outside = Outside::guard(&env, &[], &[]);
    let makers: [(&str, &dyn Fn()); 4] = [
        ("fifo", &|| mknod(&path, libc::S_IFIFO, 0)),
        ("char device", &|| {
            mknod(&path, libc::S_IFCHR, libc::makedev(1, 5))
        }),
        ("block device", &|| {
            mknod(&path, libc::S_IFBLK, libc::makedev(7, 250))
        }),
        ("folder", &|| fs::create_dir(&path).unwrap()),
    ];

    for (what, make) in makers {
        make();
        assert!(!path.is_file(), "{what}");
        assert_refused(
            &env,
            &outside,
            Touch::Nothing,
            "state_unsafe",
            &["not\\x20a\\x20regular\\x20file"],
        );
        let _ = fs::remove_file(&path).or_else(|_| fs::remove_dir(&path));
    }
    outside.assert_unchanged();
}

#[test]
fn a_fifo_as_counters_file_is_refused_at_once() {
    let env = enrolled("h-fifo-cnt", "alice");
    mknod(&env.state_dir().join("alice.counters"), libc::S_IFIFO, 0);
    let outside = Outside::guard(&env, &[], &[]);

    assert_refused(
        &env,
        &outside,
        Touch::Nothing,
        "state_unsafe",
        &["alice.counters", "regular"],
    );
}

#[test]
fn a_state_file_owned_by_a_user_or_open_to_others_is_refused() {
    let env = enrolled("h-owner-mode", "alice");
    let path = env.state_path("alice");
    let outside = Outside::guard(&env, &[], &[]);

    chown(&path, Some(2001), None).unwrap();
    assert_refused(
        &env,
        &outside,
        Touch::Nothing,
        "state_unsafe",
        &["owned\\x20by\\x20uid\\x202001"],
    );
    chown(&path, Some(0), None).unwrap();

    for mode in [0o644, 0o660, 0o604, 0o640, 0o610, 0o601] {
        set_mode(&path, mode);
        let shown = format!("unsafe\\x20mode\\x20{mode:04o}");
        assert_refused(&env, &outside, Touch::Nothing, "state_unsafe", &[&shown]);
    }
    set_mode(&path, 0o400);
    let login = env.login("alice").answer(&code_now()).run();
    assert_eq!(
        login.result(),
        "PAM_SUCCESS",
        "a read-only 0400 file is fine"
    );
}

#[test]
fn a_counters_file_open_to_others_is_refused() {
    let env = enrolled("h-cnt-mode", "alice");
    let counters = env.state_dir().join("alice.counters");
    write_file(&counters, &[0u8; 256], 0o644);
    let outside = Outside::guard(&env, &[], &[]);

    assert_refused(
        &env,
        &outside,
        Touch::Nothing,
        "state_unsafe",
        &["alice.counters", "0644"],
    );

    chown(&counters, Some(2001), None).unwrap();
    set_mode(&counters, 0o600);
    assert_refused(
        &env,
        &outside,
        Touch::Nothing,
        "state_unsafe",
        &["alice.counters", "uid\\x202001"],
    );
}

#[test]
fn a_state_folder_others_can_write_or_a_user_owns_is_refused() {
    let env = enrolled("h-dir-mode", "alice");
    let dir = env.state_dir();
    let outside = Outside::guard(&env, &[], &[]);

    for mode in [0o777, 0o770, 0o720, 0o702, 0o1777] {
        set_mode(&dir, mode);
        assert_refused(
            &env,
            &outside,
            Touch::Nothing,
            "state_unsafe",
            &[&format!("mode\\x20{mode:04o}")],
        );
    }
    set_mode(&dir, 0o700);
    chown(&dir, Some(2001), None).unwrap();
    assert_refused(
        &env,
        &outside,
        Touch::Nothing,
        "state_unsafe",
        &["uid\\x202001"],
    );
    chown(&dir, Some(0), None).unwrap();
}

#[test]
fn a_state_folder_that_is_a_link_is_refused() {
    let env = TestEnv::new("h-dir-link");
    let real = env.dir().join("real-state");
    fs::create_dir(&real).unwrap();
    set_mode(&real, 0o700);
    write_file(&real.join("alice.toml"), record().as_bytes(), 0o600);
    fs::remove_dir(env.state_dir()).unwrap();
    symlink(&real, env.state_dir()).unwrap();
    let outside = Outside::guard(&env, &[&real], &[]);

    assert_refused(
        &env,
        &outside,
        Touch::Nothing,
        "state_unsafe",
        &["symbolic\\x20link"],
    );
}

/// Points the config's state_dir at `<env>/<relative>`.
fn state_dir_at(env: &TestEnv, relative: &str) {
    let config = common::DEFAULT_CONFIG.replace(
        "state_dir = \"{state_dir}\"",
        &format!("state_dir = \"{}/{relative}\"", env.dir().display()),
    );
    env.write_config(&config);
}

/// `<env>/up/state` holding alice's record, with `up` as given.
fn nested_state(env: &TestEnv, up_mode: u32) -> std::path::PathBuf {
    let up = env.dir().join("up");
    fs::create_dir_all(up.join("state")).unwrap();
    set_mode(&up, up_mode);
    set_mode(&up.join("state"), 0o700);
    write_file(&up.join("state/alice.toml"), record().as_bytes(), 0o600);
    up
}

#[test]
fn a_folder_above_the_state_folder_that_is_a_link_is_refused() {
    let env = TestEnv::new("h-up-link");
    let up = nested_state(&env, 0o755);
    symlink(&up, env.dir().join("via")).unwrap();
    state_dir_at(&env, "via/state");
    let outside = Outside::guard(&env, &[&up.join("state")], &[]);

    let login = env.login("alice").answer(&code_now()).rhost(RHOST).run();

    assert!(login.prompts().is_empty());
    let via = env.dir().join("via").display().to_string();
    assert_decision(
        &env,
        &login,
        "PAM_AUTHINFO_UNAVAIL",
        &format!("result=error reason=state_unsafe user=alice rhost={RHOST} detail="),
        &[&format!("{via}\\x20is\\x20a\\x20symbolic\\x20link")],
    );
    outside.assert_untouched();

    state_dir_at(&env, "up/state");
    let direct = env.login("alice").answer(&code_now()).run();
    assert_eq!(direct.result(), "PAM_SUCCESS", "{}", direct.stdout);
}

#[test]
fn a_folder_above_the_state_folder_that_others_can_write_is_refused() {
    let env = TestEnv::new("h-up-mode");
    let up = nested_state(&env, 0o777);
    state_dir_at(&env, "up/state");
    let outside = Outside::guard(&env, &[&up.join("state")], &[]);

    let login = env.login("alice").answer(&code_now()).rhost(RHOST).run();

    assert!(login.prompts().is_empty());
    let shown = up.display().to_string();
    assert_decision(
        &env,
        &login,
        "PAM_AUTHINFO_UNAVAIL",
        "result=error reason=state_unsafe user=alice",
        &[&format!("{shown}\\x20has\\x20unsafe\\x20mode\\x200777")],
    );
    outside.assert_untouched();

    // With the sticky bit (like /tmp) nobody else can rename `state`.
    set_mode(&up, 0o1777);
    let sticky = env.login("alice").answer(&code_now()).run();
    assert_eq!(sticky.result(), "PAM_SUCCESS", "{}", sticky.stdout);
}

#[test]
fn a_folder_above_the_state_folder_owned_by_a_user_is_refused() {
    let env = TestEnv::new("h-up-owner");
    let up = nested_state(&env, 0o755);
    chown(&up, Some(2001), None).unwrap();
    state_dir_at(&env, "up/state");
    let outside = Outside::guard(&env, &[&up.join("state")], &[]);

    let login = env.login("alice").answer(&code_now()).run();

    assert_decision(
        &env,
        &login,
        "PAM_AUTHINFO_UNAVAIL",
        "result=error reason=state_unsafe user=alice",
        &["owned\\x20by\\x20uid\\x202001"],
    );
    outside.assert_untouched();
}

#[test]
fn the_watch_sees_what_a_login_opens() {
    let env = enrolled("h-watch", "alice");
    let etc = env.dir().join("etc");
    let state = env.state_dir();
    let watch = hostile::Watch::new(&[&etc, &state]);

    let login = env.login("alice").answer(&code_now()).run();

    assert_eq!(login.result(), "PAM_SUCCESS");
    let events = watch.events();
    let opened = |name: &str| {
        events
            .iter()
            .any(|e| e.contains(name) && e.contains("OPEN"))
    };
    assert!(opened("/otpgate.toml "), "{events:?}");
    assert!(opened("/alice.toml "), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e.contains("alice.counters") && e.contains("MODIFY")),
        "{events:?}"
    );
}
