//! A full and a read-only state folder, through the real Linux-PAM library:
//! each test mounts a small tmpfs of its own as the state folder (and
//! unmounts it in a guard). A state write that cannot be made refuses the
//! login with PAM_AUTHINFO_UNAVAIL and `reason=state_io_error`, leaves the
//! old state as it was and no temp file behind; logins work again once
//! there is room. Counters already on disk are updated in place, so a full
//! disk does not stop users who have logged in before.

mod common;
#[path = "support/hostile.rs"]
mod hostile;

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use common::TestEnv;
use hostile::{assert_decision, code_at_offset, code_now, record, write_file, wrong_code, Outside};
use otpgate::store::counters::{self, FileState};

/// A tmpfs mounted over a folder, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, options: &str) -> Tmpfs {
        let target = c(path);
        let data = CString::new(options).unwrap();
        // SAFETY: valid C strings; a new tmpfs is mounted on a test folder.
        let rc = unsafe {
            libc::mount(
                c"otpgate-test".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    fn remount(&self, flags: libc::c_ulong) {
        let target = c(&self.path);
        // SAFETY: valid C string; remounts the tmpfs this value mounted.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV | flags,
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "remount: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = c(&self.path);
        // SAFETY: valid C string; a lazy unmount of what we mounted.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

fn c(path: &Path) -> CString {
    CString::new(path.to_str().unwrap()).unwrap()
}

/// Mounts a 64 KiB tmpfs (root, 0700) as the env's state folder.
fn small_state_folder(env: &TestEnv) -> Tmpfs {
    Tmpfs::mount(&env.state_dir(), "size=64k,mode=0700,uid=0,gid=0")
}

/// Fills the file system of `dir` with `<dir>/.filler` until it is full.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join(".filler");
    let mut file = fs::File::create(&path).unwrap();
    let chunk = [0x5a_u8; 4096];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    let _ = file.sync_all();
    path
}

/// A recovery code hash, as the store keeps it.
fn recovery_record(code: &str) -> String {
    let hash = otpgate::recovery::hash(code).unwrap();
    format!("{}recovery_codes = [\"{hash}\"]\n", record())
}

/// What the state folder means: the names in it, the record's bytes and
/// the counters as the module reads them (a file of zeros reads as no
/// counters, like an empty one).
#[derive(Debug, PartialEq)]
struct StateView {
    names: Vec<String>,
    record: Vec<u8>,
    counters: Option<FileState>,
}

impl StateView {
    fn of(env: &TestEnv) -> StateView {
        let dir = env.state_dir();
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let counters = fs::read(dir.join("alice.counters"))
            .ok()
            .map(|bytes| counters::read_file(&bytes));
        StateView {
            names,
            record: fs::read(env.state_path("alice")).unwrap(),
            counters,
        }
    }
}

/// Asserts a login refused for want of room or write access: the result,
/// the audit line, the state as it was (no temp file left) and nothing
/// outside touched.
fn assert_io_refusal(env: &TestEnv, outside: &Outside, answer: &str, errno_text: &str) {
    let state = StateView::of(env);
    outside.begin();

    let login = env.login("alice").answer(answer).rhost("192.0.2.55").run();

    outside.assert_untouched();
    let head = "result=error reason=state_io_error user=alice rhost=192.0.2.55 detail=";
    assert_decision(env, &login, "PAM_AUTHINFO_UNAVAIL", head, &[errno_text]);
    assert_eq!(StateView::of(env), state, "the state folder");
}

#[test]
fn a_full_disk_refuses_a_first_login_and_keeps_the_state() {
    let env = TestEnv::new("h-full-first");
    let _tmpfs = small_state_folder(&env);
    env.write_state("alice", &record());
    // The counters file exists but holds nothing yet, as after a crash
    // right after it was created.
    write_file(&env.state_dir().join("alice.counters"), b"", 0o600);
    let filler = fill(&env.state_dir());
    let outside = Outside::guard(&env, &[], &[]);
    let code = code_now();

    assert_io_refusal(&env, &outside, &code, "No\\x20space\\x20left");
    assert_io_refusal(&env, &outside, &wrong_code(), "No\\x20space\\x20left");

    fs::remove_file(filler).unwrap();
    let login = env.login("alice").answer(&code).run();
    assert_eq!(
        login.result(),
        "PAM_SUCCESS",
        "the refused code was never used"
    );
}

#[test]
fn a_full_disk_keeps_an_unused_recovery_code_and_leaves_no_temp_file() {
    let env = TestEnv::new("h-full-recovery");
    let _tmpfs = small_state_folder(&env);
    env.write_state("alice", &recovery_record("2468-1357"));
    let first = env.login("alice").answer(&code_at_offset(-1)).run();
    assert_eq!(first.result(), "PAM_SUCCESS", "{}", first.stdout);
    let filler = fill(&env.state_dir());
    let outside = Outside::guard(&env, &[], &[]);

    assert_io_refusal(&env, &outside, "2468-1357", "No\\x20space\\x20left");

    fs::remove_file(filler).unwrap();
    let login = env.login("alice").answer("2468 1357").run();
    assert_eq!(login.result(), "PAM_SUCCESS", "{}", login.stdout);
    let again = env.login("alice").answer("24681357").run();
    assert_eq!(
        again.result(),
        "PAM_AUTH_ERR",
        "a recovery code serves once"
    );
}

#[test]
fn on_a_full_disk_counters_on_disk_are_still_updated_in_place() {
    let env = TestEnv::new("h-full-inplace");
    let _tmpfs = small_state_folder(&env);
    env.write_state("alice", &record());
    let first = env.login("alice").answer(&code_at_offset(-1)).run();
    assert_eq!(first.result(), "PAM_SUCCESS", "{}", first.stdout);
    fill(&env.state_dir());
    let code = code_now();

    let login = env.login("alice").answer(&code).run();
    let replay = env.login("alice").answer(&code).run();

    assert_eq!(login.result(), "PAM_SUCCESS", "{}", login.stdout);
    assert_decision(
        &env,
        &replay,
        "PAM_AUTH_ERR",
        "result=denied reason=replay user=alice failures=1/5",
        &[],
    );
}

#[test]
fn a_read_only_state_folder_refuses_and_keeps_the_state() {
    let env = TestEnv::new("h-readonly");
    let tmpfs = small_state_folder(&env);
    env.write_state("alice", &recovery_record("1111-2222"));
    let first = env.login("alice").answer(&code_at_offset(-1)).run();
    assert_eq!(first.result(), "PAM_SUCCESS", "{}", first.stdout);
    tmpfs.remount(libc::MS_RDONLY);
    let outside = Outside::guard(&env, &[], &[]);
    let code = code_now();

    for answer in [code.as_str(), "1111-2222", "000000"] {
        assert_io_refusal(&env, &outside, answer, "Read-only\\x20file\\x20system");
    }
    let carol = env.login("carol").run();
    assert_eq!(
        carol.result(),
        "PAM_PERM_DENIED",
        "a non-member is still ignored"
    );

    tmpfs.remount(0);
    let login = env.login("alice").answer(&code).run();
    assert_eq!(login.result(), "PAM_SUCCESS", "{}", login.stdout);
    assert_eq!(
        env.login("alice").answer("1111-2222").run().result(),
        "PAM_SUCCESS"
    );
}
