//! Real OpenSSH for integration tests: Debian's sshd on a loopback port
//! with its PAM stack read from a private folder (pam_wrapper), and the
//! OpenSSH client driven by an expect script.
//!
//! The users are real throw-away accounts (tests/support/ssh_accounts.rs),
//! since sshd's privilege separation and pam_unix see only the real name
//! service and shadow file.
//!
//! Include it with `#[path = "support/ssh.rs"] mod ssh;` after `mod common;`
//! and `#[path = "support/ssh_accounts.rs"] mod ssh_accounts;`.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{module_path, TestEnv};
use crate::ssh_accounts::{run, Accounts};

/// How long sshd may take to listen, and to stop.
const START_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// sshd

/// Which sshd configuration and pam.d example a server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `pam.d-examples/sshd`: password, then code, by keyboard-interactive.
    PasswordAndCode,
    /// `pam.d-examples/sshd-publickey`: a key, then the code.
    KeyAndCode,
}

impl Method {
    fn example(self) -> &'static str {
        match self {
            Method::PasswordAndCode => "sshd",
            Method::KeyAndCode => "sshd-publickey",
        }
    }

    /// The lines the example's header asks for in sshd_config.
    fn config_lines(self) -> &'static str {
        match self {
            Method::PasswordAndCode => {
                "UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\n\
                 PubkeyAuthentication no\nAuthenticationMethods keyboard-interactive\n"
            }
            Method::KeyAndCode => {
                "UsePAM yes\nPubkeyAuthentication yes\nKbdInteractiveAuthentication yes\n\
                 PasswordAuthentication no\nAuthenticationMethods publickey,keyboard-interactive\n"
            }
        }
    }
}

/// Debian's sshd on 127.0.0.1, stopped (with every process it started) on
/// drop.
pub struct Sshd {
    child: Child,
    pub port: u16,
    log: mpsc::Receiver<String>,
    log_lines: Vec<String>,
}

impl Sshd {
    /// Starts sshd for `method` with the env's config and the module just
    /// built; its PAM stack is the matching pam.d example, read by
    /// pam_wrapper from `<env>/sshd-pam/`.
    pub fn start(env: &TestEnv, method: Method) -> Sshd {
        let folder = env.dir().join(format!("sshd-{}", method.example()));
        fs::create_dir_all(&folder).expect("creating the sshd folder");
        let pam_dir = write_pam_dir(env, &folder, method);
        let host_key = write_host_key(&folder);
        fs::create_dir_all("/run/sshd").expect("creating sshd's privilege separation folder");

        // Another process may take the free port between the look and the
        // bind: try a few.
        let mut last_log = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let config = folder.join("sshd_config");
            write_sshd_config(&config, port, &host_key, method);
            let mut sshd = spawn_sshd(&config, &pam_dir, port);
            if sshd.wait_until_listening() {
                return sshd;
            }
            last_log = sshd.log();
        }
        panic!("sshd did not start:\n{}", last_log.join("\n"));
    }

    fn wait_until_listening(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        let wanted = format!("Server listening on 127.0.0.1 port {}", self.port);
        while Instant::now() < deadline {
            if self.log().iter().any(|line| line.contains(&wanted)) {
                return true;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// What sshd wrote to its error output so far.
    pub fn log(&mut self) -> Vec<String> {
        self.log_lines.extend(self.log.try_iter());
        self.log_lines.clone()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // sshd is the leader of its own process group, which holds the
        // processes of each connection too.
        let group = format!("-{}", self.child.id());
        let kill = |signal: &str| {
            let _ = Command::new("kill")
                .args([signal, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        kill("-TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            thread::sleep(Duration::from_millis(20));
        }
        kill("-KILL");
        let _ = self.child.wait();
        remove_stale_pam_wrapper_dirs();
    }
}

/// The pam.d example with the test's module and config, and stand-ins for
/// the files it includes (pam_unix for account and session, as Debian's
/// defaults have it; no password changes).
fn write_pam_dir(env: &TestEnv, folder: &Path, method: Method) -> PathBuf {
    let pam_dir = folder.join("pam.d");
    fs::create_dir_all(&pam_dir).expect("creating the sshd pam.d folder");

    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pam.d-examples")
        .join(method.example());
    let text = fs::read_to_string(&example).expect("reading the pam.d example");
    let module = format!(
        "{} config={}",
        module_path().display(),
        env.config_path().display()
    );
    let stack = text.replace("pam_otpgate.so", &module);

    let files = [
        ("sshd", stack.as_str()),
        ("common-account", "account required pam_unix.so\n"),
        ("common-session", "session required pam_unix.so\n"),
        ("common-password", "password required pam_deny.so\n"),
        (
            "other",
            "auth required pam_deny.so\naccount required pam_deny.so\n",
        ),
    ];
    for (name, contents) in files {
        fs::write(pam_dir.join(name), contents).expect("writing a pam.d file");
    }
    pam_dir
}

fn write_host_key(folder: &Path) -> PathBuf {
    let key = folder.join("host_ed25519");
    let _ = fs::remove_file(&key);
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key));
    key
}

fn write_sshd_config(path: &Path, port: u16, host_key: &Path, method: Method) {
    let text = format!(
        "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nPidFile none\n\
         {}PermitRootLogin no\nUseDNS no\nPrintMotd no\nPrintLastLog no\n\
         AuthorizedKeysFile .ssh/authorized_keys\nLoginGraceTime 60\nMaxAuthTries 6\n\
         LogLevel VERBOSE\n",
        host_key.display(),
        method.config_lines()
    );
    fs::write(path, text).expect("writing sshd_config");
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free loopback port");
    listener.local_addr().expect("the bound address").port()
}

/// pam_wrapper.so from the libpam-wrapper package.
fn pam_wrapper_path() -> PathBuf {
    let output = run(Command::new("dpkg").args(["-L", "libpam-wrapper"]));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find(|line| line.ends_with("/libpam_wrapper.so"))
        .map(PathBuf::from)
        .expect("libpam_wrapper.so not found: install the Debian package libpam-wrapper")
}

/// `sshd -D -e -f CONFIG` in its own process group, with libpam's service
/// folder redirected by pam_wrapper and its error output read by a thread.
fn spawn_sshd(config: &Path, pam_dir: &Path, port: u16) -> Sshd {
    let mut child = Command::new("/usr/sbin/sshd")
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(config)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LD_PRELOAD", pam_wrapper_path())
        .env("PAM_WRAPPER", "1")
        .env("PAM_WRAPPER_SERVICE_DIR", pam_dir)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting /usr/sbin/sshd (install openssh-server)");

    let stderr = child.stderr.take().expect("sshd's error output");
    let (sender, log) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    Sshd {
        child,
        port,
        log,
        log_lines: Vec::new(),
    }
}

/// pam_wrapper copies the service folder to `/tmp/pam.X` in each process
/// and removes it at exit; processes stopped by a signal leave theirs. Each
/// holds a `pid` file: remove those whose process is gone.
fn remove_stale_pam_wrapper_dirs() {
    let Ok(entries) = fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("pam.") && name.len() == 5) {
            continue;
        }
        let pid = fs::read_to_string(entry.path().join("pid")).unwrap_or_default();
        let alive = pid
            .trim()
            .parse::<u32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !pid.is_empty() && !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

// ---------------------------------------------------------------------------
// The client

/// The expect script that answers the prompts. Arguments: the ssh command
/// line. Environment: DIALOG_PASSWORD answers "Password:", DIALOG_CODES
/// (space-separated) answer "Verification code:" in turn, and the setup
/// prompt is answered with the code oathtool computes from the "Key:" line
/// shown before it. Exits with ssh's status, or 97 to 99 when the dialog
/// went wrong.
const DIALOG: &str = r#"
log_user 1
set timeout 30
set password $env(DIALOG_PASSWORD)
set codes $env(DIALOG_CODES)
set key ""
spawn -noecho {*}$argv
expect {
    -re {Password: $} {
        send -- "$password\r"
        exp_continue
    }
    -re {Verification code: $} {
        if {[llength $codes] == 0} { puts "\nDIALOG: no code left to give"; exit 97 }
        send -- "[lindex $codes 0]\r"
        set codes [lrange $codes 1 end]
        exp_continue
    }
    -re {Key: ([A-Z2-7 ]+)\r?\n} {
        set key [string map {" " ""} $expect_out(1,string)]
        exp_continue
    }
    -re {Press Enter [^\r\n]*: $} {
        send -- "\r"
        exp_continue
    }
    -re {finish setup: $} {
        if {$key eq ""} { puts "\nDIALOG: a setup prompt without a key"; exit 98 }
        send -- "[exec oathtool --totp --base32 $key]\r"
        exp_continue
    }
    timeout { puts "\nDIALOG: timed out"; exit 99 }
    eof
}
lassign [wait] pid spawn_id os_error status
exit $status
"#;

/// One login with the OpenSSH client.
pub struct Client<'a> {
    env: &'a TestEnv,
    port: u16,
    user: String,
    password: String,
    codes: Vec<String>,
    identity: Option<PathBuf>,
}

/// What a login printed and how ssh exited.
#[derive(Debug)]
pub struct Dialog {
    /// ssh's exit status: the remote command's, or 255 when refused.
    pub status: i32,
    /// Everything the terminal showed.
    pub transcript: String,
}

impl Dialog {
    /// Whether the remote command (`echo ran-as-$(id -un)`) ran as `user`.
    pub fn ran_as(&self, user: &str) -> bool {
        self.status == 0 && self.transcript.contains(&format!("ran-as-{user}"))
    }

    /// Whether sshd refused the login.
    pub fn refused(&self) -> bool {
        self.status == 255 && self.transcript.contains("Permission denied")
    }
}

impl<'a> Client<'a> {
    pub fn new(env: &'a TestEnv, sshd: &Sshd, user: &str) -> Client<'a> {
        Client {
            env,
            port: sshd.port,
            user: user.to_string(),
            password: String::new(),
            codes: Vec::new(),
            identity: None,
        }
    }

    pub fn password(mut self, password: &str) -> Self {
        self.password = password.to_string();
        self
    }

    pub fn code(mut self, code: &str) -> Self {
        self.codes.push(code.to_string());
        self
    }

    /// Offers this private key (public key authentication).
    pub fn identity(mut self, key: &Path) -> Self {
        self.identity = Some(key.to_path_buf());
        self
    }

    /// Runs `echo ran-as-$(id -un)` on the server through the dialog.
    pub fn run(self) -> Dialog {
        let script = self.env.dir().join("dialog.exp");
        if !script.exists() {
            fs::write(&script, DIALOG).expect("writing the expect script");
        }
        let home = self.env.dir().join("client-home");
        fs::create_dir_all(&home).expect("creating the client's home");

        let mut command = Command::new("expect");
        command
            .arg("-f")
            .arg(&script)
            .arg("--")
            .args(self.ssh_arguments())
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &home)
            .env("LC_ALL", "C.UTF-8")
            .env("TERM", "dumb")
            .env("DIALOG_PASSWORD", &self.password)
            .env("DIALOG_CODES", self.codes.join(" "))
            .stdin(Stdio::null());
        let output = command.output().expect("running expect");

        Dialog {
            status: output.status.code().unwrap_or(-1),
            transcript: String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        }
    }

    fn ssh_arguments(&self) -> Vec<String> {
        let mut arguments: Vec<String> = [
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "NumberOfPasswordPrompts=1",
        ]
        .map(String::from)
        .to_vec();
        match &self.identity {
            Some(key) => arguments.extend([
                "-o".to_string(),
                "IdentitiesOnly=yes".to_string(),
                "-i".to_string(),
                key.display().to_string(),
            ]),
            None => arguments.extend(["-o", "PubkeyAuthentication=no"].map(String::from)),
        }
        arguments.extend([
            "-p".to_string(),
            self.port.to_string(),
            format!("{}@127.0.0.1", self.user),
            "echo ran-as-$(id -un)".to_string(),
        ]);
        arguments
    }
}

/// A fresh ed25519 key pair in `folder`; returns the private key's path.
pub fn client_key(folder: &Path) -> PathBuf {
    let key = folder.join("client_ed25519");
    let _ = fs::remove_file(&key);
    let _ = fs::remove_file(key.with_extension("pub"));
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key));
    key
}

/// Puts `public_key` into `<home>/.ssh/authorized_keys`, owned by `user`.
pub fn authorize_key(accounts: &Accounts, user: &str, public_key: &Path) {
    let ssh_dir = accounts.home(user).join(".ssh");
    fs::create_dir_all(&ssh_dir).expect("creating ~/.ssh");
    fs::copy(public_key, ssh_dir.join("authorized_keys")).expect("writing authorized_keys");
    run(Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:{user}"))
        .arg(&ssh_dir));
    run(Command::new("chmod").arg("700").arg(&ssh_dir));
}
