//! The integration-test harness: a throw-away world for one test, in which
//! the otpgate module runs inside the real Linux-PAM library.
//!
//! [`TestEnv::new`] lays out a folder under `target/test-envs/` with a config
//! file, a state folder, a PAM service folder, nss_wrapper user and group
//! files and a syslog socket whose datagrams a background thread collects.
//! [`TestEnv::login`] runs the `pam-drive` tool (tools/pamclient) against it,
//! with nss_wrapper preloaded and an otherwise empty environment, and parses
//! what it printed into a [`Login`].
//!
//! The harness knows nothing of otpgate's code: only the module's file name,
//! its `config=` argument and the config format. Integration tests use it
//! with `mod common;`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{chown, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The service file every env starts with; it runs the otpgate module.
pub const DEFAULT_SERVICE: &str = "otpgate-test";

/// The config every env starts with. `{state_dir}` and `{socket}` are
/// replaced by the env's absolute paths.
pub const DEFAULT_CONFIG: &str = r#"groups = ["vms-admins"]
state_dir = "{state_dir}"

[audit]
socket = "{socket}"

[code]
digits = 6
period = 30
algorithm = "SHA1"
skew = 1

[lockout]
max_failures = 5
lock_seconds = 300

[enrollment]
mode = "admin-only"
issuer = "otpgate"
"#;

/// Set to keep each env's folder after the test, for a look inside.
const KEEP_ENV_VAR: &str = "OTPGATE_KEEP_TEST_ENV";

/// The longest socket path `sockaddr_un` holds (108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// How long `audit_lines` waits for datagrams still on their way.
const AUDIT_SETTLE: Duration = Duration::from_millis(100);
const AUDIT_SETTLE_MAX: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// Paths of the build

/// `target/<profile>`, the folder holding this test executable's `deps/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps/", exe.display()))
}

/// The otpgate module, `target/<profile>/libotpgate.so`. Panics when it has
/// not been built.
pub fn module_path() -> PathBuf {
    let path = expected_module_path();
    assert!(
        path.is_file(),
        "the otpgate module {} does not exist: build it first (cargo build)",
        path.display()
    );
    path
}

fn expected_module_path() -> PathBuf {
    profile_dir().join("libotpgate.so")
}

/// The `pam-drive` tool, `target/<profile>/pam-drive`. When it is missing
/// or older than its sources, it is built once per test process.
pub fn pam_drive_path() -> PathBuf {
    static BUILD: Once = Once::new();
    let path = profile_dir().join("pam-drive");

    BUILD.call_once(|| {
        if needs_build(&path) {
            build_pam_drive();
        }
    });
    assert!(
        path.is_file(),
        "{} is missing after building it",
        path.display()
    );
    path
}

/// Whether the binary is missing or older than its sources
/// (tools/pamclient/src and its Cargo.toml).
fn needs_build(binary: &Path) -> bool {
    let Some(built) = modified(binary) else {
        return true;
    };
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/pamclient");
    let newest =
        newest_modification(&crate_dir.join("src")).max(modified(&crate_dir.join("Cargo.toml")));

    newest.is_some_and(|newest| newest > built)
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).ok()?.modified().ok()
}

/// The latest modification time of any file under `dir`.
fn newest_modification(dir: &Path) -> Option<SystemTime> {
    let entries = fs::read_dir(dir).ok()?;

    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                newest_modification(&path)
            } else {
                modified(&path)
            }
        })
        .max()
}

/// `cargo build -p pamclient --bin pam-drive`, in the profile of this test.
fn build_pam_drive() {
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(OsString::from))
        .unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "--quiet",
        "-p",
        "pamclient",
        "--bin",
        "pam-drive",
    ]);
    if profile_dir().ends_with("release") {
        command.arg("--release");
    }

    let status = command.status().expect("running cargo to build pam-drive");
    assert!(status.success(), "building pam-drive failed: {status}");
}

/// The nss_wrapper library to preload.
pub fn nss_wrapper_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();

    PATH.get_or_init(|| {
        let usual = PathBuf::from("/usr/lib/x86_64-linux-gnu/libnss_wrapper.so");
        if usual.is_file() {
            return usual;
        }
        dpkg_file("libnss-wrapper", "/libnss_wrapper.so")
            .expect("libnss_wrapper.so not found: install the Debian package libnss-wrapper")
    })
}

/// The first file of a Debian package whose path ends with `suffix`.
fn dpkg_file(package: &str, suffix: &str) -> Option<PathBuf> {
    let output = Command::new("dpkg").args(["-L", package]).output().ok()?;

    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find(|line| line.ends_with(suffix))
        .map(PathBuf::from)
}

// ---------------------------------------------------------------------------
// The env

/// A user of the nss_wrapper passwd file.
#[derive(Clone, Debug)]
struct UserEntry {
    name: String,
    uid: u32,
    primary_gid: u32,
}

/// A group of the nss_wrapper group file.
#[derive(Clone, Debug)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// One test's world. Its folder is removed on drop unless the environment
/// variable `OTPGATE_KEEP_TEST_ENV` is set.
pub struct TestEnv {
    dir: PathBuf,
    users: Vec<UserEntry>,
    groups: Vec<GroupEntry>,
    audit: AuditListener,
}

impl TestEnv {
    /// A fresh env in `target/test-envs/<name>-<pid>-<counter>` with the
    /// default config, the `otpgate-test` service and the users alice (2001,
    /// member of vms-admins 3001), bob (2002, vms-admins as primary group),
    /// carol (2003, member of staff 3002 only) and dave (2004, member of
    /// vms-admins). Each user also has a personal group of the same number,
    /// except bob.
    pub fn new(name: &str) -> TestEnv {
        let dir = fresh_dir(name);
        create_layout(&dir);
        let audit = AuditListener::bind(&dir.join("log.sock"));

        let mut env = TestEnv {
            dir,
            users: Vec::new(),
            groups: Vec::new(),
            audit,
        };
        env.add_default_accounts();
        env.write_config(DEFAULT_CONFIG);
        env.write_service(DEFAULT_SERVICE, "auth required {module} config={config}\n");
        env
    }

    fn add_default_accounts(&mut self) {
        self.add_group("root", 0, &[]);
        self.add_user("root", 0, 0);
        for (name, uid) in [("alice", 2001), ("carol", 2003), ("dave", 2004)] {
            self.add_group(name, uid, &[]);
            self.add_user(name, uid, uid);
        }
        self.add_user("bob", 2002, 3001);
        self.add_group("vms-admins", 3001, &["alice", "dave"]);
        self.add_group("staff", 3002, &["carol"]);
    }

    /// The env's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/etc/otpgate.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("etc/otpgate.toml")
    }

    /// `<dir>/state`, root-owned, mode 0700.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// `<dir>/pam.d`, the folder given to `pam_start_confdir`.
    pub fn pam_dir(&self) -> PathBuf {
        self.dir.join("pam.d")
    }

    /// `<dir>/log.sock`, the syslog socket the default config points at.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("log.sock")
    }

    /// `<state_dir>/<user>.toml`.
    pub fn state_path(&self, user: &str) -> PathBuf {
        self.state_dir().join(format!("{user}.toml"))
    }

    /// `<dir>/home/<user>`, the home folder in the passwd file.
    pub fn home_dir(&self, user: &str) -> PathBuf {
        self.dir.join("home").join(user)
    }

    /// Replaces the config (root-owned, 0644); `{state_dir}` and `{socket}`
    /// in `text` become the env's absolute paths.
    pub fn write_config(&self, text: &str) {
        let text = text
            .replace("{state_dir}", &self.state_dir().to_string_lossy())
            .replace("{socket}", &self.socket_path().to_string_lossy());

        write_root_file(&self.config_path(), text.as_bytes(), 0o644);
    }

    /// Writes the service file `<dir>/pam.d/<name>`; `{module}` and
    /// `{config}` in `text` become the module's and the config's absolute
    /// paths. The module need not exist until a login uses it.
    pub fn write_service(&self, name: &str, text: &str) {
        let text = text
            .replace("{module}", &expected_module_path().to_string_lossy())
            .replace("{config}", &self.config_path().to_string_lossy());

        write_root_file(&self.pam_dir().join(name), text.as_bytes(), 0o644);
    }

    /// Writes `<state_dir>/<user>.toml`, root-owned, mode 0600.
    pub fn write_state(&self, user: &str, text: &str) {
        write_root_file(&self.state_path(user), text.as_bytes(), 0o600);
    }

    /// Adds a user to the passwd file, with a home folder it owns.
    pub fn add_user(&mut self, name: &str, uid: u32, primary_gid: u32) {
        self.users.push(UserEntry {
            name: name.to_string(),
            uid,
            primary_gid,
        });

        let home = self.home_dir(name);
        fs::create_dir_all(&home).expect("creating a home folder");
        chown(&home, Some(uid), Some(primary_gid)).expect("giving the user its home folder");
        self.write_passwd();
    }

    /// Adds a group with its supplementary members to the group file.
    pub fn add_group(&mut self, name: &str, gid: u32, members: &[&str]) {
        self.groups.push(GroupEntry {
            name: name.to_string(),
            gid,
            members: members.iter().map(|member| member.to_string()).collect(),
        });

        self.write_group();
    }

    fn write_passwd(&self) {
        let lines: String = self
            .users
            .iter()
            .map(|user| {
                let home = self.home_dir(&user.name);
                let (name, uid, gid) = (&user.name, user.uid, user.primary_gid);
                format!("{name}:x:{uid}:{gid}:{name}:{}:/bin/sh\n", home.display())
            })
            .collect();

        write_root_file(&self.dir.join("passwd"), lines.as_bytes(), 0o644);
    }

    fn write_group(&self) {
        let lines: String = self
            .groups
            .iter()
            .map(|group| {
                format!(
                    "{}:x:{}:{}\n",
                    group.name,
                    group.gid,
                    group.members.join(",")
                )
            })
            .collect();

        write_root_file(&self.dir.join("group"), lines.as_bytes(), 0o644);
    }

    /// A login of `user` through the `otpgate-test` service, to configure
    /// and then `run()` or `spawn()`.
    pub fn login(&self, user: &str) -> LoginBuilder<'_> {
        LoginBuilder::new(self, Some(user.as_bytes().to_vec()))
    }

    /// A login that leaves PAM_USER unset, so a module has to ask for it.
    pub fn login_without_user(&self) -> LoginBuilder<'_> {
        LoginBuilder::new(self, None)
    }

    /// The text of every audit line received so far, after waiting for
    /// datagrams still on their way (until none came for 100 ms, 1 s at most).
    pub fn audit_lines(&self) -> Vec<String> {
        self.audit_records()
            .into_iter()
            .map(|record| record.text)
            .collect()
    }

    /// Every audit record received so far, after the same wait.
    pub fn audit_records(&self) -> Vec<AuditRecord> {
        self.audit.settle();
        self.audit.records()
    }

    /// Waits up to `timeout` for an audit line whose text satisfies `pred`
    /// and returns that text.
    pub fn wait_audit(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;

        loop {
            let found = self
                .audit
                .records()
                .into_iter()
                .find(|record| pred(&record.text));
            if found.is_some() || Instant::now() >= deadline {
                return found.map(|record| record.text);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.audit.stop();

        if std::env::var_os(KEEP_ENV_VAR).is_some() {
            eprintln!("kept test env {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A new, empty folder `target/test-envs/<name>-<pid>-<counter>`.
fn fresh_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let number = COUNTER.fetch_add(1, Ordering::SeqCst);
    let root = profile_dir()
        .parent()
        .expect("the target folder")
        .join("test-envs");
    let dir = root.join(format!("{name}-{}-{number}", std::process::id()));

    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("creating the test env folder");
    let dir = dir.canonicalize().expect("the test env's absolute path");
    assert!(
        dir.join("log.sock").as_os_str().len() <= MAX_SOCKET_PATH,
        "{} is too long for a socket path: use a shorter env name",
        dir.display()
    );
    dir
}

/// The folders of an env, root-owned, with their modes.
fn create_layout(dir: &Path) {
    for (folder, mode) in [
        ("etc", 0o755),
        ("state", 0o700),
        ("pam.d", 0o755),
        ("home", 0o755),
    ] {
        let path = dir.join(folder);
        fs::create_dir(&path).expect("creating a test env folder");
        set_root_owned(&path, mode);
    }
}

/// Writes a file afresh, root-owned with `mode`.
fn write_root_file(path: &Path, contents: &[u8], mode: u32) {
    let _ = fs::remove_file(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|error| panic!("creating {}: {error}", path.display()));

    file.write_all(contents).expect("writing a test env file");
    set_root_owned(path, mode);
}

/// Makes `path` owned by root:root with exactly `mode` (no umask).
fn set_root_owned(path: &Path, mode: u32) {
    chown(path, Some(0), Some(0)).unwrap_or_else(|error| {
        panic!(
            "chown root {}: {error} (run the tests as root)",
            path.display()
        )
    });
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("setting a file mode");
}

// ---------------------------------------------------------------------------
// The syslog listener

/// One datagram received on the env's syslog socket.
///
/// For `<85>Dec  3 16:45:01 otpgate[42]: event=deny user=alice` it holds
/// `priority: Some(85)`, `program: "otpgate"`, `text: "event=deny
/// user=alice"` and the whole datagram in `raw`. `text` is what follows the
/// first `": "` after the `<pri>` header (a BSD syslog line has no `": "`
/// before the program name); with no `": "`, `program` is empty and `text`
/// is all after the header. Bytes that are not UTF-8 become U+FFFD, and
/// trailing NULs and newlines are dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// The number between `<` and `>` at the start, if there is one.
    pub priority: Option<u32>,
    /// The word before the first `": "`, without a `[pid]` suffix.
    pub program: String,
    /// The message after the first `": "`.
    pub text: String,
    /// The whole datagram.
    pub raw: String,
}

impl AuditRecord {
    /// Parses one datagram as described on the type.
    pub fn parse(datagram: &[u8]) -> AuditRecord {
        let raw = String::from_utf8_lossy(datagram)
            .trim_end_matches(['\0', '\n'])
            .to_string();
        let (priority, rest) = split_priority(&raw);
        let (program, text) = match rest.split_once(": ") {
            Some((head, text)) => (program_name(head), text.to_string()),
            None => (String::new(), rest.to_string()),
        };

        AuditRecord {
            priority,
            program,
            text,
            raw,
        }
    }

    /// The syslog facility (priority / 8), e.g. 10 for AUTHPRIV.
    pub fn facility(&self) -> Option<u32> {
        self.priority.map(|priority| priority / 8)
    }

    /// The syslog severity (priority % 8), e.g. 6 for INFO.
    pub fn severity(&self) -> Option<u32> {
        self.priority.map(|priority| priority % 8)
    }
}

/// Splits `<85>rest` into `(Some(85), "rest")`.
fn split_priority(line: &str) -> (Option<u32>, &str) {
    let parsed = line
        .strip_prefix('<')
        .and_then(|rest| rest.split_once('>'))
        .and_then(|(number, rest)| Some((number.parse().ok()?, rest)));

    match parsed {
        Some((priority, rest)) => (Some(priority), rest),
        None => (None, line),
    }
}

/// The last word of a syslog header, without `[pid]`.
fn program_name(head: &str) -> String {
    let word = head.rsplit(' ').next().unwrap_or_default();
    word.split('[').next().unwrap_or_default().to_string()
}

/// The socket and the thread reading it.
struct AuditListener {
    records: Arc<Mutex<Vec<AuditRecord>>>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AuditListener {
    fn bind(path: &Path) -> AuditListener {
        let socket = UnixDatagram::bind(path)
            .unwrap_or_else(|error| panic!("binding {}: {error}", path.display()));
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("setting the socket's read timeout");
        let records = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));

        let thread = {
            let (records, stopping) = (records.clone(), stopping.clone());
            thread::spawn(move || receive_datagrams(&socket, &records, &stopping))
        };
        AuditListener {
            records,
            stopping,
            thread: Some(thread),
        }
    }

    fn records(&self) -> Vec<AuditRecord> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn count(&self) -> usize {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// Waits until no record arrived for [`AUDIT_SETTLE`], at most
    /// [`AUDIT_SETTLE_MAX`].
    fn settle(&self) {
        let start = Instant::now();
        let mut last_count = self.count();
        let mut last_change = Instant::now();

        while last_change.elapsed() < AUDIT_SETTLE && start.elapsed() < AUDIT_SETTLE_MAX {
            thread::sleep(Duration::from_millis(10));
            let count = self.count();
            if count != last_count {
                (last_count, last_change) = (count, Instant::now());
            }
        }
    }

    fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The listener thread: stores each datagram until told to stop.
fn receive_datagrams(
    socket: &UnixDatagram,
    records: &Mutex<Vec<AuditRecord>>,
    stopping: &AtomicBool,
) {
    let mut buffer = vec![0; 64 * 1024];

    while !stopping.load(Ordering::SeqCst) {
        match socket.recv(&mut buffer) {
            Ok(length) => {
                let record = AuditRecord::parse(&buffer[..length]);
                records
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(record);
            }
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => panic!("reading the syslog socket: {error}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Logins

/// How the scripted conversation of pam-drive behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Conv {
    /// Answers prompts from the queue (empty answers once it runs out).
    #[default]
    Normal,
    /// Returns PAM_CONV_ERR.
    Error,
    /// Returns PAM_SUCCESS with no reply array.
    NullArray,
    /// Returns PAM_SUCCESS with a reply array of NULL answers.
    NullResponse,
}

impl Conv {
    fn flag_value(self) -> &'static str {
        match self {
            Conv::Normal => "normal",
            Conv::Error => "error",
            Conv::NullArray => "null-array",
            Conv::NullResponse => "null-response",
        }
    }
}

/// A login being configured; see [`TestEnv::login`].
#[must_use = "a login does nothing until run() or spawn()"]
pub struct LoginBuilder<'a> {
    env: &'a TestEnv,
    service: String,
    user: Option<Vec<u8>>,
    items: Vec<(&'static str, Vec<u8>)>,
    answers: Vec<Vec<u8>>,
    conv: Conv,
    repeat: u32,
    report_process: bool,
    skip_fail_delay: bool,
    silent: bool,
    extra_env: BTreeMap<String, String>,
}

impl<'a> LoginBuilder<'a> {
    fn new(env: &'a TestEnv, user: Option<Vec<u8>>) -> LoginBuilder<'a> {
        LoginBuilder {
            env,
            service: DEFAULT_SERVICE.to_string(),
            user,
            items: Vec::new(),
            answers: Vec::new(),
            conv: Conv::Normal,
            repeat: 1,
            report_process: false,
            skip_fail_delay: false,
            silent: false,
            extra_env: BTreeMap::new(),
        }
    }

    /// The service file to use (default `otpgate-test`).
    pub fn service(mut self, name: &str) -> Self {
        self.service = name.to_string();
        self
    }

    /// The user name as raw bytes (no NUL: pam-drive refuses it).
    pub fn user_bytes(mut self, user: &[u8]) -> Self {
        self.user = Some(user.to_vec());
        self
    }

    /// Queues an answer for the next prompt.
    pub fn answer(self, answer: &str) -> Self {
        self.answer_bytes(answer.as_bytes())
    }

    /// Queues an answer of raw bytes for the next prompt.
    pub fn answer_bytes(mut self, answer: &[u8]) -> Self {
        self.answers.push(answer.to_vec());
        self
    }

    /// Sets PAM_RHOST.
    pub fn rhost(self, rhost: &str) -> Self {
        self.rhost_bytes(rhost.as_bytes())
    }

    /// Sets PAM_RHOST to raw bytes.
    pub fn rhost_bytes(mut self, rhost: &[u8]) -> Self {
        self.items.push(("--rhost-hex", rhost.to_vec()));
        self
    }

    /// Sets PAM_TTY.
    pub fn tty(self, tty: &str) -> Self {
        self.tty_bytes(tty.as_bytes())
    }

    /// Sets PAM_TTY to raw bytes.
    pub fn tty_bytes(mut self, tty: &[u8]) -> Self {
        self.items.push(("--tty-hex", tty.to_vec()));
        self
    }

    /// Sets PAM_RUSER.
    pub fn ruser(self, ruser: &str) -> Self {
        self.ruser_bytes(ruser.as_bytes())
    }

    /// Sets PAM_RUSER to raw bytes.
    pub fn ruser_bytes(mut self, ruser: &[u8]) -> Self {
        self.items.push(("--ruser-hex", ruser.to_vec()));
        self
    }

    /// How the conversation behaves (default [`Conv::Normal`]).
    pub fn conv(mut self, conv: Conv) -> Self {
        self.conv = conv;
        self
    }

    /// Runs `count` logins in one process, each a fresh transaction with
    /// the answers from the start.
    pub fn repeat(mut self, count: u32) -> Self {
        self.repeat = count;
        self
    }

    /// Asks for the process reports before and after the logins.
    pub fn report_process(mut self) -> Self {
        self.report_process = true;
        self
    }

    /// Records libpam's fail delays (in [`Login::delays`]) instead of
    /// sleeping them.
    pub fn skip_fail_delay(mut self) -> Self {
        self.skip_fail_delay = true;
        self
    }

    /// Passes PAM_SILENT to pam_authenticate.
    pub fn silent(mut self) -> Self {
        self.silent = true;
        self
    }

    /// Adds a variable to pam-drive's otherwise empty environment.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.extra_env.insert(key.to_string(), value.to_string());
        self
    }

    /// Runs the login and waits for it.
    pub fn run(self) -> Login {
        self.spawn().wait()
    }

    /// Starts the login and returns at once; `wait()` on the handle.
    pub fn spawn(self) -> RunningLogin {
        self.check_module();
        let mut command = self.command();
        let description = format!("{command:?}");

        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("starting pam-drive: {error}"));
        RunningLogin { child, description }
    }

    /// Fails clearly when the service uses the otpgate module and it is not
    /// built, instead of leaving PAM to report a bare PAM_ABORT.
    fn check_module(&self) {
        let service =
            fs::read_to_string(self.env.pam_dir().join(&self.service)).unwrap_or_default();
        if service.contains(&*expected_module_path().to_string_lossy()) {
            module_path();
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(pam_drive_path());
        command
            .env_clear()
            .envs(self.environment())
            .args(self.arguments());
        command
    }

    fn environment(&self) -> BTreeMap<String, String> {
        let mut environment = self.extra_env.clone();
        let files = [
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".to_string()),
            (
                "LD_PRELOAD",
                nss_wrapper_path().to_string_lossy().into_owned(),
            ),
            (
                "NSS_WRAPPER_PASSWD",
                self.env.dir.join("passwd").to_string_lossy().into_owned(),
            ),
            (
                "NSS_WRAPPER_GROUP",
                self.env.dir.join("group").to_string_lossy().into_owned(),
            ),
        ];
        environment.extend(files.map(|(key, value)| (key.to_string(), value)));
        environment
    }

    /// The command line; byte values always go as hex.
    fn arguments(&self) -> Vec<OsString> {
        let mut arguments: Vec<OsString> = vec![
            "--confdir".into(),
            self.env.pam_dir().into_os_string(),
            "--service".into(),
            self.service.clone().into(),
            "--conv".into(),
            self.conv.flag_value().into(),
            "--repeat".into(),
            self.repeat.to_string().into(),
        ];

        let user = self.user.iter().map(|user| ("--user-hex", user));
        let items = self.items.iter().map(|(flag, value)| (*flag, value));
        let answers = self.answers.iter().map(|answer| ("--answer-hex", answer));
        for (flag, value) in user.chain(items).chain(answers) {
            arguments.extend([flag.into(), OsString::from_vec(hex(value).into_bytes())]);
        }

        let switches = [
            (self.report_process, "--report-process"),
            (self.skip_fail_delay, "--skip-fail-delay"),
            (self.silent, "--silent"),
        ];
        arguments.extend(
            switches
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, flag)| flag.into()),
        );
        arguments
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A pam-drive run started by [`LoginBuilder::spawn`].
pub struct RunningLogin {
    child: Child,
    description: String,
}

impl RunningLogin {
    /// Waits for the run and parses its output. Panics, showing the command
    /// and its output, when pam-drive did not exit 0 (a crash of a module
    /// included).
    pub fn wait(self) -> Login {
        let output = self
            .child
            .wait_with_output()
            .expect("waiting for pam-drive");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();

        assert!(
            output.status.success(),
            "pam-drive failed ({}):\n{}\n--- stdout\n{stdout}--- stderr\n{stderr}",
            output.status,
            self.description
        );
        Login::parse(stdout, stderr)
    }
}

/// What one pam-drive run printed.
#[derive(Clone, Debug, Default)]
pub struct Login {
    /// `(code, name)` of each login, e.g. `(0, "PAM_SUCCESS")`.
    pub results: Vec<(i32, String)>,
    /// `(style, text)` of each message: style is `prompt-echo-off`,
    /// `prompt-echo-on`, `error` or `info`; the text is escaped as pam-drive
    /// prints it (`\`, control characters and invalid UTF-8 as `\xNN`).
    pub messages: Vec<(String, String)>,
    /// The `process` lines without the word `process`:
    /// `fds=N uid=R,E,S gid=R,E,S groups=G,.. cloexec_leaks=N`.
    pub process: Vec<String>,
    /// The fail delays libpam asked for, in microseconds (only with
    /// [`LoginBuilder::skip_fail_delay`]).
    pub delays: Vec<u32>,
    /// pam-drive's whole output, for messages in failed assertions.
    pub stdout: String,
    /// pam-drive's error output.
    pub stderr: String,
}

impl Login {
    fn parse(stdout: String, stderr: String) -> Login {
        let mut login = Login::default();
        for line in stdout.lines() {
            login.parse_line(line);
        }

        login.stdout = stdout;
        login.stderr = stderr;
        login
    }

    fn parse_line(&mut self, line: &str) {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        match kind {
            "msg" => {
                let (style, text) = rest.split_once(' ').unwrap_or((rest, ""));
                self.messages.push((style.to_string(), text.to_string()));
            }
            "result" => {
                let (code, name) = rest
                    .split_once(' ')
                    .expect("a result line has a code and a name");
                self.results.push((
                    code.parse().expect("a numeric result code"),
                    name.to_string(),
                ));
            }
            "process" => self.process.push(rest.to_string()),
            "delay" => self.delays.push(rest.parse().expect("a numeric delay")),
            _ => panic!("unexpected pam-drive line {line:?}"),
        }
    }

    /// The name of the last (or only) result, e.g. `"PAM_SUCCESS"`.
    pub fn result(&self) -> &str {
        let (_, name) = self
            .results
            .last()
            .unwrap_or_else(|| panic!("no result in {:?}", self.stdout));
        name
    }

    /// The texts of the prompts, echoed or not.
    pub fn prompts(&self) -> Vec<&str> {
        self.texts(|style| style.starts_with("prompt-"))
    }

    /// The texts of the informational messages.
    pub fn infos(&self) -> Vec<&str> {
        self.texts(|style| style == "info")
    }

    /// The texts of the error messages.
    pub fn errors(&self) -> Vec<&str> {
        self.texts(|style| style == "error")
    }

    fn texts(&self, wanted: impl Fn(&str) -> bool) -> Vec<&str> {
        self.messages
            .iter()
            .filter(|(style, _)| wanted(style))
            .map(|(_, text)| text.as_str())
            .collect()
    }

    /// The process lines parsed (before and after the logins).
    pub fn process_reports(&self) -> Vec<ProcessReport> {
        self.process
            .iter()
            .map(|line| ProcessReport::parse(line))
            .collect()
    }
}

/// One `process` line of pam-drive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessReport {
    /// How many descriptors were open.
    pub fds: usize,
    /// `real,effective,saved` user ids.
    pub uid: String,
    /// `real,effective,saved` group ids.
    pub gid: String,
    /// Sorted supplementary group ids, comma-separated.
    pub groups: String,
    /// Descriptors opened since the first report that lack FD_CLOEXEC.
    pub cloexec_leaks: usize,
}

impl ProcessReport {
    fn parse(line: &str) -> ProcessReport {
        let fields: BTreeMap<&str, &str> = line
            .split(' ')
            .filter_map(|field| field.split_once('='))
            .collect();
        let field = |name: &str| {
            *fields
                .get(name)
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        };
        let number = |name: &str| {
            field(name)
                .parse()
                .unwrap_or_else(|_| panic!("bad {name} in {line:?}"))
        };

        ProcessReport {
            fds: number("fds"),
            uid: field("uid").to_string(),
            gid: field("gid").to_string(),
            groups: field("groups").to_string(),
            cloexec_leaks: number("cloexec_leaks"),
        }
    }
}

// ---------------------------------------------------------------------------
// Codes from the reference tool

/// The TOTP code oathtool computes for a base32 secret at `unix_time`.
/// `algorithm` is `SHA1`, `SHA256` or `SHA512` (any case).
pub fn totp_code(
    secret_base32: &str,
    digits: u32,
    period: u64,
    algorithm: &str,
    unix_time: u64,
) -> String {
    let output = Command::new("oathtool")
        .arg(format!("--totp={}", algorithm.to_ascii_uppercase()))
        .arg(format!("--digits={digits}"))
        .arg(format!("--time-step-size={period}s"))
        .arg(format!("--now=@{unix_time}"))
        .arg("--base32")
        .arg(secret_base32)
        .output()
        .expect("running oathtool (install the Debian package oathtool)");

    let code = checked_stdout(output, "oathtool");
    assert_eq!(code.len(), digits as usize, "oathtool printed {code:?}");
    code
}

fn checked_stdout(output: Output, tool: &str) -> String {
    assert!(
        output.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8 output")
        .trim()
        .to_string()
}

/// The current Unix time in seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}
