//! `make demo`: shows pam_otpgate doing its job through the real Linux-PAM
//! library. It lays out a private PAM service folder, config and state
//! folder, takes its users from nss_wrapper, listens on its own syslog
//! socket, and runs logins with the pam-drive tool: a member with a valid
//! code, the same code again, a wrong code, and a user outside the groups,
//! printing what each login showed and the audit lines it produced. Last, a
//! member without a secret logs in for the first time and is enrolled: that
//! login runs in a child of this program (nss_wrapper must be preloaded at
//! start) whose conversation plays the person at the terminal, reading the
//! key from the screen and typing the code their app would show.
//!
//! Usage: otpgate-demo PATH/TO/libotpgate.so (as root: the module trusts
//! only root-owned config and state).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use otpgate::secret::Secret;
use pamclient::{Conversation, Message, MessageStyle, Reply, Session};

const SERVICE: &str = "vms-login";

/// The demo's private world, removed at the end.
struct World {
    dir: PathBuf,
    module: PathBuf,
    syslog: UnixDatagram,
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--enrolling-user") {
        return enrolling_user();
    }
    let Some(module) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: otpgate-demo PATH/TO/libotpgate.so");
        return ExitCode::from(2);
    };
    match run(&module) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otpgate-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(module: &Path) -> Result<(), String> {
    let world = World::create(module)?;
    let secret = Secret::generate().map_err(|e| e.to_string())?;
    let key = secret.to_base32();
    world.enroll("alice", &key)?;
    intro(&world);

    let code = oathtool(&key, 0)?;
    world.scene(
        "alice (member of vms-admins) types the current code from her app",
        "alice",
        Some(&code),
    )?;
    world.scene(
        "alice types the same code again (a replay)",
        "alice",
        Some(&code),
    )?;
    let wrong = wrong_code(&key)?;
    world.scene("alice types a wrong code", "alice", Some(&wrong))?;
    world.scene(
        "carol (not in vms-admins) logs in: not asked for a code",
        "carol",
        None,
    )?;
    world.first_login("dave")?;

    println!("The state folder now holds:");
    for entry in fs::read_dir(world.dir.join("state"))
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let meta = entry.metadata().map_err(|e| e.to_string())?;
        println!(
            "  {:o}  {}",
            meta.permissions().mode() & 0o7777,
            entry.file_name().to_string_lossy()
        );
    }
    fs::remove_dir_all(&world.dir).map_err(|e| e.to_string())?;
    Ok(())
}

fn intro(world: &World) {
    println!("otpgate demo: logins through the real Linux-PAM library (pam_start_confdir)");
    println!("  module:  {}", world.module.display());
    println!(
        "  stack:   {}",
        world.dir.join("pam.d").join(SERVICE).display()
    );
    for line in stack_text(&world.module, &world.dir).lines() {
        println!("           {line}");
    }
    println!(
        "  users:   alice (in vms-admins, enrolled), dave (in vms-admins, no secret yet),\n           \
         carol (not in vms-admins), all from nss_wrapper"
    );
    println!("  codes:   computed by oathtool, the reference implementation");
    println!();
}

/// The service file: a stand-in for the password module, then otpgate.
fn stack_text(module: &Path, dir: &Path) -> String {
    format!(
        "auth requisite pam_permit.so   # stands in for pam_unix (the password)\n\
         auth required  {} config={} debug\n",
        module.display(),
        dir.join("otpgate.toml").display()
    )
}

impl World {
    fn create(module: &Path) -> Result<World, String> {
        let module = fs::canonicalize(module).map_err(|e| format!("{}: {e}", module.display()))?;
        let dir = std::env::current_dir()
            .map_err(|e| e.to_string())?
            .join("target")
            .join(format!("demo-{}", std::process::id()));
        let err = |e: std::io::Error| format!("{}: {e}", dir.display());
        fs::create_dir_all(dir.join("pam.d")).map_err(err)?;
        fs::create_dir_all(dir.join("state")).map_err(err)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(err)?;
        fs::set_permissions(dir.join("state"), fs::Permissions::from_mode(0o700)).map_err(err)?;

        let config = format!(
            "groups = [\"vms-admins\"]\nstate_dir = \"{}\"\n\n[audit]\nsocket = \"{}\"\n\n[enrollment]\nmode = \"at-login\"\n",
            dir.join("state").display(),
            dir.join("log.sock").display()
        );
        write(&dir.join("otpgate.toml"), &config, 0o644)?;
        write(
            &dir.join("pam.d").join(SERVICE),
            &stack_text(&module, &dir),
            0o644,
        )?;
        write(&dir.join("passwd"), "root:x:0:0:root:/root:/bin/sh\nalice:x:2001:2001:Alice:/home/alice:/bin/sh\ncarol:x:2003:2003:Carol:/home/carol:/bin/sh\ndave:x:2004:2004:Dave:/home/dave:/bin/sh\n", 0o644)?;
        write(
            &dir.join("group"),
            "root:x:0:\nalice:x:2001:\ncarol:x:2003:\ndave:x:2004:\nvms-admins:x:3001:alice,dave\n",
            0o644,
        )?;

        let syslog = UnixDatagram::bind(dir.join("log.sock")).map_err(err)?;
        syslog
            .set_read_timeout(Some(Duration::from_millis(300)))
            .map_err(err)?;
        Ok(World {
            dir,
            module,
            syslog,
        })
    }

    /// What an administrator does by hand: a record holding only the secret.
    fn enroll(&self, user: &str, key: &str) -> Result<(), String> {
        write(
            &self.dir.join("state").join(format!("{user}.toml")),
            &format!("secret = \"{key}\"\n"),
            0o600,
        )
    }

    /// A command with nss_wrapper preloaded and an otherwise empty environment.
    fn with_users(&self, program: &Path) -> Result<Command, String> {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("LD_PRELOAD", nss_wrapper()?)
            .env("NSS_WRAPPER_PASSWD", self.dir.join("passwd"))
            .env("NSS_WRAPPER_GROUP", self.dir.join("group"));
        Ok(command)
    }

    /// `user`'s first login: enrollment in the login itself.
    fn first_login(&self, user: &str) -> Result<(), String> {
        println!("== {user} (member of vms-admins, no secret yet) logs in for the first time");
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let status = self
            .with_users(&exe)?
            .args([
                "--enrolling-user",
                &self.dir.join("pam.d").to_string_lossy(),
                SERVICE,
                user,
            ])
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("the enrolling login failed: {status}"));
        }
        for line in self.audit_lines() {
            println!("   syslog  {line}");
        }
        println!();
        Ok(())
    }

    fn scene(&self, title: &str, user: &str, code: Option<&str>) -> Result<(), String> {
        println!("== {title}");
        let mut command = self.with_users(&pam_drive()?)?;
        command
            .args([
                "--confdir",
                &self.dir.join("pam.d").to_string_lossy(),
                "--service",
                SERVICE,
            ])
            .args([
                "--user",
                user,
                "--rhost",
                "192.0.2.10",
                "--tty",
                "ssh",
                "--skip-fail-delay",
            ]);
        if let Some(code) = code {
            command.args(["--answer", code]);
        }
        let output = command.output().map_err(|e| format!("pam-drive: {e}"))?;
        let transcript = String::from_utf8_lossy(&output.stdout);
        for line in transcript.lines() {
            show_event(line, code.is_some());
        }
        for line in self.audit_lines() {
            println!("   syslog  {line}");
        }
        println!();
        Ok(())
    }

    fn audit_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = self.syslog.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
            lines.push(
                text.split_once("]: ")
                    .map_or(text.clone(), |(_, t)| t.to_string()),
            );
        }
        lines
    }
}

/// Prints one pam-drive line in words; the typed code itself is not shown.
fn show_event(line: &str, answered: bool) {
    if let Some(rest) = line.strip_prefix("msg prompt-echo-off ") {
        let typed = if answered { "(types the code)" } else { "" };
        println!("   prompt  {rest} {typed}");
    } else if let Some(rest) = line.strip_prefix("msg ") {
        println!("   message {rest}");
    } else if let Some(rest) = line.strip_prefix("result ") {
        let name = rest.split_once(' ').map_or(rest, |(_, n)| n);
        println!("   PAM     {name}");
    }
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn pam_drive() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name("pam-drive");
    path.exists()
        .then_some(path)
        .ok_or_else(|| "pam-drive not built: run cargo build --workspace".to_string())
}

fn nss_wrapper() -> Result<String, String> {
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so",
        "/usr/lib/aarch64-linux-gnu/libnss_wrapper.so",
        "/usr/lib64/libnss_wrapper.so",
    ];
    candidates
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string())
        .ok_or_else(|| "libnss_wrapper.so not found: install libnss-wrapper".to_string())
}

/// The code oathtool computes `offset` steps from now.
fn oathtool(key: &str, offset: i64) -> Result<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let output = Command::new("oathtool")
        .args([
            "--totp",
            "--base32",
            &format!("--now=@{}", now + offset * 30),
            key,
        ])
        .output()
        .map_err(|e| format!("oathtool: {e} (install the oathtool package)"))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// A code that is valid for no step near now.
fn wrong_code(key: &str) -> Result<String, String> {
    let near: Vec<String> = (-2..=2)
        .map(|o| oathtool(key, o))
        .collect::<Result<_, _>>()?;
    Ok((0..)
        .map(|n| format!("{:06}", 314_159 + n))
        .find(|c| !near.contains(c))
        .unwrap_or_default())
}

/// The child of [`World::first_login`]: one login through libpam whose
/// conversation shows every message and answers the setup prompt with the
/// code for the key it was shown.
fn enrolling_user() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, _, confdir, service, user] = args.as_slice() else {
        return ExitCode::from(2);
    };
    let person = Box::new(Person { key: None });
    let Ok(mut session) =
        Session::start_confdir(service, Some(user.as_bytes()), Path::new(confdir), person)
    else {
        eprintln!("otpgate-demo: pam_start_confdir failed");
        return ExitCode::FAILURE;
    };
    let _ = session.set_item_str(pamclient::Item::Rhost, b"192.0.2.11");
    let _ = session.set_item_str(pamclient::Item::Tty, b"ssh");
    let code = session.authenticate(0);
    println!("   PAM     {}", pamclient::result_name(code));
    ExitCode::SUCCESS
}

/// Someone at a terminal with an authenticator app.
struct Person {
    key: Option<String>,
}

impl Conversation for Person {
    fn converse(&mut self, messages: &[Message]) -> Reply {
        let mut answers = Vec::new();
        for message in messages {
            let text = String::from_utf8_lossy(&message.text).into_owned();
            answers.push(self.respond(message.style, &text));
        }
        Reply::Answers(answers)
    }
}

impl Person {
    fn respond(&mut self, style: MessageStyle, text: &str) -> Option<std::ffi::CString> {
        match style {
            MessageStyle::PromptEchoOff if text.starts_with("Press Enter") => {
                println!("   prompt  {text}(presses Enter)");
                std::ffi::CString::new("").ok()
            }
            MessageStyle::PromptEchoOff | MessageStyle::PromptEchoOn => {
                println!("   prompt  {text}(types the code the app shows)");
                let code = self
                    .key
                    .as_deref()
                    .and_then(|k| oathtool(k, 0).ok())
                    .unwrap_or_default();
                std::ffi::CString::new(code).ok()
            }
            _ => {
                for line in text.lines() {
                    println!("   screen  {line}");
                }
                if let Some(key) = text.strip_prefix("Key: ") {
                    self.key = Some(key.split_whitespace().collect());
                }
                None
            }
        }
    }
}
