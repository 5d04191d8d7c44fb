//! Shared pieces of the hostile-input suite (tests/hostile_*.rs): the test
//! secret and its codes, an inotify watch on paths a login must never open,
//! a snapshot of a folder tree to prove that nothing in it changed, decoy
//! files that would let a login in if they were ever followed, and the
//! decision line of the audit trail.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::common::{now, totp_code, Login, TestEnv};

/// A 160-bit secret (RFC 6238's SHA1 seed, in base32).
pub const SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// The record text of an enrollment with [`SECRET`].
pub fn record() -> String {
    format!("secret = \"{SECRET}\"\n")
}

/// An env in which `user` is enrolled with [`SECRET`].
pub fn enrolled(name: &str, user: &str) -> TestEnv {
    let env = TestEnv::new(name);
    env.write_state(user, &record());
    env
}

/// The code of [`SECRET`] for the step `offset` steps from now.
pub fn code_at_offset(offset: i64) -> String {
    let time = now() as i64 + offset * 30;
    totp_code(SECRET, 6, 30, "SHA1", time as u64)
}

/// The code of [`SECRET`] for now.
pub fn code_now() -> String {
    code_at_offset(0)
}

/// A well-formed code that matches no step in the accepted window.
pub fn wrong_code() -> String {
    let window: Vec<String> = (-2..=2).map(code_at_offset).collect();
    (0..)
        .map(|n| format!("{:06}", 100_000 + n))
        .find(|c| !window.contains(c))
        .expect("a code outside the window")
}

/// Sets a path's permission bits exactly.
pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
}

/// Writes a root-owned file with `mode`, replacing what was there.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) {
    let _ = fs::remove_file(path);
    fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    set_mode(path, mode);
}

/// `<env>/decoy`, a root-owned folder of files that hold a valid record
/// for [`SECRET`]: a login that followed a link into it would succeed, so a
/// refusal proves the link was not followed.
pub fn decoy_dir(env: &TestEnv) -> PathBuf {
    let dir = env.dir().join("decoy");
    if !dir.exists() {
        fs::create_dir(&dir).expect("creating the decoy folder");
        set_mode(&dir, 0o700);
        write_file(&dir.join("shadow"), record().as_bytes(), 0o600);
    }
    dir
}

// ---------------------------------------------------------------------------
// The audit trail

/// Every audit line with a decision (`result=`) in this env.
pub fn decisions(env: &TestEnv) -> Vec<String> {
    env.audit_lines()
        .into_iter()
        .filter(|l| l.contains("result="))
        .collect()
}

/// The last decision line, checked to be one printable line.
pub fn last_decision(env: &TestEnv) -> String {
    let line = decisions(env)
        .pop()
        .unwrap_or_else(|| panic!("no decision line in {:?}", env.audit_lines()));
    assert_one_printable_line(&line);
    line
}

/// Asserts the text holds only printable ASCII: no newline, no escape
/// sequence, nothing a terminal or a log parser would take as structure.
pub fn assert_one_printable_line(line: &str) {
    assert!(
        line.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "not one printable line: {line:?}"
    );
}

/// Asserts the login ended with `result` and the audit trail's last
/// decision starts with `pam_otpgate(otpgate-test:auth): <head>` and holds
/// every fragment of `more`.
pub fn assert_decision(env: &TestEnv, login: &Login, result: &str, head: &str, more: &[&str]) {
    assert_eq!(login.result(), result, "{}{}", login.stdout, login.stderr);
    let line = last_decision(env);
    let expected = format!("pam_otpgate(otpgate-test:auth): {head}");
    assert!(line.starts_with(&expected), "{line}\n  expected {expected}");
    for fragment in more {
        assert!(line.contains(fragment), "{line}\n  lacks {fragment}");
    }
}

// ---------------------------------------------------------------------------
// Watching paths

/// An inotify watch on files and folders (for a folder: on what is inside
/// too) that records opens, reads, writes and any change of names or
/// attributes.
pub struct Watch {
    fd: i32,
    paths: HashMap<i32, PathBuf>,
}

const WATCHED: u32 = libc::IN_OPEN
    | libc::IN_ACCESS
    | libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_MOVE_SELF;

impl Watch {
    /// Watches each path, without following a final symbolic link.
    pub fn new(paths: &[&Path]) -> Watch {
        // SAFETY: plain syscall; the descriptor is owned by the new value.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1");
        let mut watch = Watch {
            fd,
            paths: HashMap::new(),
        };
        for path in paths {
            watch.add(path);
        }
        watch
    }

    fn add(&mut self, path: &Path) {
        let c = CString::new(path.as_os_str().as_bytes()).expect("a path without NUL");
        let mask = WATCHED | libc::IN_DONT_FOLLOW;
        // SAFETY: `fd` is an inotify descriptor and `c` a valid C string.
        let wd = unsafe { libc::inotify_add_watch(self.fd, c.as_ptr(), mask) };
        assert!(wd >= 0, "watching {}", path.display());
        self.paths.insert(wd, path.to_path_buf());
    }

    /// The events so far, as `path[/name] EVENT` strings.
    pub fn events(&self) -> Vec<String> {
        let mut events = Vec::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: reading into a buffer of its own length.
            let n = unsafe { libc::read(self.fd, buffer.as_mut_ptr().cast(), buffer.len()) };
            if n <= 0 {
                return events;
            }
            events.extend(self.decode(&buffer[..n as usize]));
        }
    }

    fn decode(&self, mut bytes: &[u8]) -> Vec<String> {
        let header = std::mem::size_of::<libc::inotify_event>();
        let mut events = Vec::new();
        while bytes.len() >= header {
            // SAFETY: the kernel wrote a whole event header here; it may be
            // unaligned in the byte buffer, so it is read unaligned.
            let event: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
            let name_bytes = &bytes[header..header + event.len as usize];
            let name = String::from_utf8_lossy(name_bytes)
                .trim_end_matches('\0')
                .to_string();
            let path = self.paths.get(&event.wd).cloned().unwrap_or_default();
            events.push(format!(
                "{}/{name} {}",
                path.display(),
                mask_names(event.mask)
            ));
            bytes = &bytes[header + event.len as usize..];
        }
        events
    }

    /// Events other than opening, for paths a login may open to check but
    /// never read (a hard link's shared inode).
    pub fn reads_or_changes(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|e| !e.ends_with(" OPEN") && !e.ends_with(" CLOSE_NOWRITE"))
            .collect()
    }

    /// Asserts nothing at all happened to the watched paths.
    pub fn assert_untouched(&self) {
        let events = self.events();
        assert!(events.is_empty(), "touched: {events:?}");
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // SAFETY: closing the descriptor this value owns.
        unsafe { libc::close(self.fd) };
    }
}

fn mask_names(mask: u32) -> String {
    let names = [
        (libc::IN_OPEN, "OPEN"),
        (libc::IN_ACCESS, "ACCESS"),
        (libc::IN_MODIFY, "MODIFY"),
        (libc::IN_ATTRIB, "ATTRIB"),
        (libc::IN_CLOSE_WRITE, "CLOSE_WRITE"),
        (libc::IN_CLOSE_NOWRITE, "CLOSE_NOWRITE"),
        (libc::IN_CREATE, "CREATE"),
        (libc::IN_DELETE, "DELETE"),
        (libc::IN_DELETE_SELF, "DELETE_SELF"),
        (libc::IN_MOVED_FROM, "MOVED_FROM"),
        (libc::IN_MOVED_TO, "MOVED_TO"),
        (libc::IN_MOVE_SELF, "MOVE_SELF"),
    ];
    let found: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| mask & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    found.join("|")
}

// ---------------------------------------------------------------------------
// Snapshots

/// What a path is and holds, as far as a change would show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    inode: u64,
    size: u64,
    mtime_ns: i128,
    /// The content of a regular file or the target of a link.
    content: Vec<u8>,
}

/// Every path under a root (links not followed, sockets by metadata only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    entries: BTreeMap<PathBuf, Entry>,
}

impl Snapshot {
    /// Takes the tree under `root`, leaving out the paths in `skip` and
    /// what is under them.
    pub fn take(root: &Path, skip: &[&Path]) -> Snapshot {
        let mut entries = BTreeMap::new();
        collect(root, skip, &mut entries);
        Snapshot { entries }
    }

    /// A few single files (e.g. /etc/shadow), by path.
    pub fn of_files(paths: &[&Path]) -> Snapshot {
        let mut entries = BTreeMap::new();
        for path in paths {
            if let Some(entry) = entry_of(path) {
                entries.insert(path.to_path_buf(), entry);
            }
        }
        Snapshot { entries }
    }

    /// Asserts the tree is as it was when `self` was taken.
    pub fn assert_unchanged(&self, what: &str) {
        let roots: Vec<&Path> = self.entries.keys().map(PathBuf::as_path).collect();
        let mut now = BTreeMap::new();
        for path in roots {
            if let Some(entry) = entry_of(path) {
                now.insert(path.to_path_buf(), entry);
            }
        }
        let changed: Vec<String> = self
            .entries
            .iter()
            .filter(|(path, entry)| now.get(*path) != Some(entry))
            .map(|(path, _)| path.display().to_string())
            .collect();
        assert!(changed.is_empty(), "{what}: changed or gone: {changed:?}");
    }

    /// Asserts no path was added, removed or changed under `root` (taken
    /// with the same `skip`).
    pub fn assert_same_tree(&self, root: &Path, skip: &[&Path], what: &str) {
        let now = Snapshot::take(root, skip);
        let added: Vec<_> = now
            .entries
            .keys()
            .filter(|p| !self.entries.contains_key(*p))
            .collect();
        assert!(added.is_empty(), "{what}: new paths {added:?}");
        self.assert_unchanged(what);
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.entries.keys().cloned().collect()
    }
}

fn collect(path: &Path, skip: &[&Path], entries: &mut BTreeMap<PathBuf, Entry>) {
    if skip.contains(&path) {
        return;
    }
    let Some(entry) = entry_of(path) else {
        return;
    };
    let is_dir = entry.kind == libc::S_IFDIR;
    entries.insert(path.to_path_buf(), entry);
    if is_dir {
        let mut children: Vec<PathBuf> = fs::read_dir(path)
            .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
            .unwrap_or_default();
        children.sort();
        for child in children {
            collect(&child, skip, entries);
        }
    }
}

fn entry_of(path: &Path) -> Option<Entry> {
    let meta = fs::symlink_metadata(path).ok()?;
    let kind = meta.mode() & libc::S_IFMT;
    let content = match kind {
        libc::S_IFREG => fs::read(path).unwrap_or_default(),
        libc::S_IFLNK => fs::read_link(path)
            .map(|t| t.as_os_str().as_bytes().to_vec())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    // A folder is what it holds, which its children's entries show; its
    // times also move when a temp file comes and goes, which is no change.
    let is_dir = kind == libc::S_IFDIR;
    let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    Some(Entry {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        inode: meta.ino(),
        size: if is_dir { 0 } else { meta.size() },
        mtime_ns: if is_dir { 0 } else { mtime_ns },
        content,
    })
}

// ---------------------------------------------------------------------------
// The outside of a login

/// Everything a login must leave alone: the env outside its state folder
/// (config, service files, passwd and group, homes, decoys) plus any extra
/// files, snapshotted; and the homes, the decoys and the extra watched
/// paths under inotify. Config, service, passwd and group are opened by
/// every login, so they are only snapshotted, not watched.
pub struct Outside {
    root: PathBuf,
    skip: Vec<PathBuf>,
    tree: std::cell::RefCell<Snapshot>,
    extra: Snapshot,
    watch: Watch,
}

impl Outside {
    /// Starts guarding `env`; `watched` are extra paths that must not even
    /// be opened (e.g. another user's state file), `extra` files outside
    /// the env that must not change (e.g. /etc/shadow).
    pub fn guard(env: &TestEnv, watched: &[&Path], extra: &[&Path]) -> Outside {
        let decoys = decoy_dir(env);
        let homes = env.dir().join("home");
        let skip = vec![env.state_dir(), env.socket_path()];
        let skip_refs: Vec<&Path> = skip.iter().map(PathBuf::as_path).collect();
        let tree = Snapshot::take(env.dir(), &skip_refs);
        let extra = Snapshot::of_files(extra);

        let mut paths: Vec<&Path> = vec![&decoys, &homes];
        let home_dirs: Vec<PathBuf> = fs::read_dir(&homes)
            .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
            .unwrap_or_default();
        paths.extend(home_dirs.iter().map(PathBuf::as_path));
        paths.extend(watched);
        Outside {
            root: env.dir().to_path_buf(),
            skip,
            tree: std::cell::RefCell::new(tree),
            extra,
            watch: Watch::new(&paths),
        }
    }

    /// Starts a new round: takes the tree afresh (after the test's own
    /// changes) and forgets what the watch saw so far (the test's reads).
    pub fn begin(&self) {
        let skip: Vec<&Path> = self.skip.iter().map(PathBuf::as_path).collect();
        *self.tree.borrow_mut() = Snapshot::take(&self.root, &skip);
        self.watch.events();
    }

    /// Asserts nothing outside the state folder was opened or changed
    /// since the last [`Outside::begin`].
    pub fn assert_untouched(&self) {
        self.watch.assert_untouched();
        self.assert_unchanged();
    }

    /// Asserts nothing outside was changed, and the watched paths were at
    /// most opened, never read or written, since the last begin (for hard
    /// links, whose inode a login must open to count its links).
    pub fn assert_not_read(&self) {
        let events = self.watch.reads_or_changes();
        assert!(events.is_empty(), "read or changed: {events:?}");
        self.assert_unchanged();
    }

    /// Asserts nothing outside the state folder changed since the last
    /// [`Outside::begin`] (or the guard's start).
    pub fn assert_unchanged(&self) {
        let skip: Vec<&Path> = self.skip.iter().map(PathBuf::as_path).collect();
        self.tree
            .borrow()
            .assert_same_tree(&self.root, &skip, "outside the state folder");
        self.extra.assert_unchanged("outside the env");
    }
}

// ---------------------------------------------------------------------------
// pam-drive under a wrapper (unshare, strace)

/// What a login run by [`wrapped_login`] printed.
pub struct RawLogin {
    /// The name of the last result, e.g. `PAM_SERVICE_ERR`; `None` when
    /// pam-drive printed none (it was killed).
    pub result: Option<String>,
    /// The `msg` lines pam-drive printed (what the user was shown).
    pub messages: Vec<String>,
    pub stdout: String,
    pub stderr: String,
    pub status: std::process::ExitStatus,
}

/// Runs pam-drive for one login of `user` answering `answers`, as the
/// harness does (nss_wrapper, an otherwise empty environment), but as the
/// last arguments of `wrapper` (e.g. `strace ... --`).
pub fn wrapped_login(
    env: &TestEnv,
    wrapper: &[std::ffi::OsString],
    user: &str,
    answers: &[&str],
) -> RawLogin {
    let mut args = vec!["--service", crate::common::DEFAULT_SERVICE, "--user", user];
    for answer in answers {
        args.extend(["--answer", answer]);
    }
    wrapped_drive(env, wrapper, &args)
}

/// Runs pam-drive with the env's PAM folder, `--skip-fail-delay` and
/// `args` (service, user, answers, other flags), under `wrapper`.
pub fn wrapped_drive(env: &TestEnv, wrapper: &[std::ffi::OsString], args: &[&str]) -> RawLogin {
    let (program, rest) = wrapper.split_first().expect("a wrapper program");
    let output = std::process::Command::new(program)
        .args(rest)
        .arg(crate::common::pam_drive_path())
        .arg("--confdir")
        .arg(env.pam_dir())
        .arg("--skip-fail-delay")
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LD_PRELOAD", crate::common::nss_wrapper_path())
        .env("NSS_WRAPPER_PASSWD", env.dir().join("passwd"))
        .env("NSS_WRAPPER_GROUP", env.dir().join("group"))
        .output()
        .expect("running pam-drive under a wrapper");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let result = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("result "))
        .filter_map(|l| l.split_once(' ').map(|(_, name)| name.to_string()))
        .next_back();
    let messages = stdout
        .lines()
        .filter(|l| l.starts_with("msg "))
        .map(str::to_string)
        .collect();
    RawLogin {
        result,
        messages,
        stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        status: output.status,
    }
}

/// A wrapper that runs pam-drive in a private mount namespace whose /dev is
/// a fresh tmpfs holding `null` and, when `log` is given, a `log` link to
/// that socket; without it there is no /dev/log at all.
pub fn private_dev(log: Option<&Path>) -> Vec<std::ffi::OsString> {
    let link = match log {
        Some(_) => "ln -s \"$1\" /dev/log && ",
        None => "",
    };
    let script = format!(
        "mount -t tmpfs -o size=16k,mode=755 otpgate-test-dev /dev \
         && mknod -m 666 /dev/null c 1 3 && {link}shift && exec \"$@\""
    );
    let mut wrapper: Vec<std::ffi::OsString> =
        ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
            .iter()
            .map(Into::into)
            .collect();
    wrapper.push(script.into());
    wrapper.push("sh".into());
    wrapper.push(log.map_or_else(|| "-".into(), |p| p.as_os_str().to_os_string()));
    wrapper
}

/// Runs one login of `user` answering `answer`, in a private mount
/// namespace whose /dev is a fresh tmpfs holding only `null` and a `log`
/// link to the env's syslog socket. A module that cannot read its config
/// knows no other socket than /dev/log, so this is how its audit line is
/// seen without touching the machine's own /dev/log.
pub fn login_with_dev_log(env: &TestEnv, user: &str, answer: &str) -> RawLogin {
    let wrapper = private_dev(Some(&env.socket_path()));
    let login = wrapped_login(env, &wrapper, user, &[answer]);
    assert!(login.status.success(), "{}{}", login.stdout, login.stderr);
    login
}
