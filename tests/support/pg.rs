//! A throw-away PostgreSQL server for one test: initdb and pg_ctl from
//! Debian's postgresql package, run as the unprivileged `postgres` user,
//! listening on a free loopback port (TLS only, client certificates) and on
//! a private socket folder (trust, for the test's own set-up). The CA, the
//! server's and the clients' certificates are made with the openssl
//! command. Everything lives in `/tmp/otpgate-pg/<name>-<pid>-<n>` and is
//! stopped and removed on drop, also when the test panics; folders left by
//! a killed test run are cleaned up by the next one.
//!
//! Include it with `#[path = "support/pg.rs"] mod pg;`.

#![allow(dead_code)]

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The database the tests use.
pub const DATABASE: &str = "otpgate";
/// The roles `otpgate db init` creates, named in the client certificates.
pub const SERVER_ROLE: &str = "otpgate_server";
pub const ADMIN_ROLE: &str = "otpgate_admin";

/// A running server and its files.
pub struct Cluster {
    dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    uid: u32,
    gid: u32,
    durable: bool,
}

impl Cluster {
    /// A new, empty, running server with the database `otpgate`, without
    /// fsync (tests).
    pub fn start(name: &str) -> Cluster {
        Cluster::start_with(name, false)
    }

    /// The same; `durable` keeps fsync on, as a real server has it
    /// (latency measurements).
    pub fn start_with(name: &str, durable: bool) -> Cluster {
        let bin = postgres_bin();
        let (uid, gid) = postgres_ids();
        let dir = fresh_dir(name);
        let mut cluster = Cluster {
            dir,
            port: 0,
            bin,
            uid,
            gid,
            durable,
        };
        cluster.make_certificates();
        cluster.init();
        cluster.start_on_free_port();
        cluster.psql(&format!("CREATE DATABASE {DATABASE}"));
        cluster
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The socket folder (trust, superuser `postgres`).
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// The test CA's certificate, which signed the server's.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    /// Another CA's certificate, which signed nothing of this server.
    pub fn wrong_ca_file(&self) -> PathBuf {
        self.dir.join("tls/other-ca.pem")
    }

    /// The client certificate and key of a role.
    pub fn client_files(&self, role: &str) -> (PathBuf, PathBuf) {
        let tls = self.dir.join("tls");
        (
            tls.join(format!("{role}.pem")),
            tls.join(format!("{role}.key")),
        )
    }

    /// The `[store]` section for `role` over TLS to `host` (a name or an
    /// address of this machine), with `ca` as the CA file.
    pub fn store_section(&self, role: &str, host: &str, ca: &Path, extra: &str) -> String {
        let (cert, key) = self.client_files(role);
        format!(
            "[store]\nkind = \"postgres\"\n\n[store.postgres]\nhosts = [\"{host}\"]\n\
             port = {}\ndatabase = \"{DATABASE}\"\nuser = \"{role}\"\nsslmode = \"verify-full\"\n\
             ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n{extra}",
            self.port,
            ca.display(),
            cert.display(),
            key.display()
        )
    }

    /// The `[store]` section of the superuser over the socket folder.
    pub fn superuser_section(&self) -> String {
        format!(
            "[store]\nkind = \"postgres\"\n\n[store.postgres]\nhosts = [\"{}\"]\nport = {}\n\
             database = \"{DATABASE}\"\nuser = \"postgres\"\nsslmode = \"disable\"\n",
            self.socket_dir().display(),
            self.port
        )
    }

    /// Runs SQL as the superuser through the socket and returns psql's
    /// unaligned output; panics when psql fails.
    pub fn psql(&self, sql: &str) -> String {
        let output = self.psql_as("postgres", sql);
        assert!(
            output.status.success(),
            "psql failed on {sql:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Runs SQL as `role` over TLS with its client certificate.
    pub fn psql_tls(&self, role: &str, sql: &str) -> Output {
        let (cert, key) = self.client_files(role);
        let conninfo = format!(
            "host=127.0.0.1 port={} dbname={DATABASE} user={role} sslmode=verify-full \
             sslrootcert={} sslcert={} sslkey={}",
            self.port,
            self.ca_file().display(),
            cert.display(),
            key.display()
        );
        Command::new(self.bin.join("psql"))
            .env_clear()
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &conninfo,
                "-c",
                sql,
            ])
            .output()
            .expect("running psql")
    }

    fn psql_as(&self, role: &str, sql: &str) -> Output {
        let database = if sql.starts_with("CREATE DATABASE") {
            "postgres"
        } else {
            DATABASE
        };
        Command::new(self.bin.join("psql"))
            .env_clear()
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", &self.socket_dir().to_string_lossy()])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                role,
                "-d",
                database,
                "-c",
                sql,
            ])
            .output()
            .expect("running psql")
    }

    /// Stops the server at once (as a crash or a failover would).
    pub fn stop(&self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
    }

    /// Starts the stopped server again on the same port.
    pub fn restart(&self) {
        let output = self.pg_ctl(&["start", "-w", "-t", "60", "-l"]);
        assert!(output.status.success(), "{}", self.log());
    }

    /// The server's log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("pg/postgres.log")).unwrap_or_default()
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        let mut command = Command::new(self.bin.join("pg_ctl"));
        command.args(["-D", &self.data_dir().to_string_lossy()]);
        command.args(args);
        if args.last() == Some(&"-l") {
            command.arg(self.dir.join("pg/postgres.log"));
        }
        self.as_postgres(&mut command)
            .stdin(Stdio::null())
            .output()
            .expect("running pg_ctl")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("pg/data")
    }

    fn as_postgres<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir(self.dir.join("pg"))
            .uid(self.uid)
            .gid(self.gid)
    }

    fn init(&self) {
        let output = self
            .as_postgres(&mut Command::new(self.bin.join("initdb")))
            .args(["-D", &self.data_dir().to_string_lossy()])
            .args(["-U", "postgres", "-E", "UTF8", "--no-sync", "--no-locale"])
            .args(["--auth-local=trust", "--auth-host=reject"])
            .output()
            .expect("running initdb");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let hba = "local all all trust\nhostssl all all 127.0.0.1/32 cert\n\
                   host all all 127.0.0.1/32 reject\n";
        self.write_postgres_file(&self.data_dir().join("pg_hba.conf"), hba, 0o600);
    }

    fn start_on_free_port(&mut self) {
        for _ in 0..5 {
            self.port = free_port();
            self.write_settings();
            if self
                .pg_ctl(&["start", "-w", "-t", "60", "-l"])
                .status
                .success()
            {
                return;
            }
        }
        panic!("PostgreSQL did not start:\n{}", self.log());
    }

    fn write_settings(&self) {
        let tls = self.dir.join("tls");
        let settings = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n\
             fsync = {}\nshared_buffers = 16MB\nmax_connections = 60\n\
             log_min_messages = warning\n",
            self.port,
            self.socket_dir().display(),
            tls.join("server.pem").display(),
            tls.join("server.key").display(),
            tls.join("ca.pem").display(),
            if self.durable { "on" } else { "off" },
        );
        let conf = self.data_dir().join("postgresql.auto.conf");
        self.write_postgres_file(&conf, &settings, 0o600);
    }

    fn write_postgres_file(&self, path: &Path, text: &str, mode: u32) {
        fs::write(path, text).expect("writing a server file");
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        chown(path, Some(self.uid), Some(self.gid)).unwrap();
    }

    /// A CA, a server certificate for localhost and 127.0.0.1, a client
    /// certificate per role, and a second CA that signed none of them.
    fn make_certificates(&self) {
        let tls = self.dir.join("tls");
        fs::create_dir(&tls).unwrap();
        fs::set_permissions(&tls, fs::Permissions::from_mode(0o755)).unwrap();
        make_ca(&tls, "ca", "otpgate test CA");
        make_ca(&tls, "other-ca", "some other CA");
        sign(
            &tls,
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        );
        for role in [SERVER_ROLE, ADMIN_ROLE, "postgres"] {
            sign(&tls, role, role, "extendedKeyUsage=clientAuth");
        }
        // The server reads its key as postgres; clients' keys stay root's.
        chown(tls.join("server.key"), Some(self.uid), Some(self.gid)).unwrap();
        fs::create_dir(self.socket_dir()).unwrap();
        chown(self.socket_dir(), Some(self.uid), Some(self.gid)).unwrap();
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o755)).unwrap();
        let own = self.dir.join("pg");
        fs::create_dir(&own).unwrap();
        chown(&own, Some(self.uid), Some(self.gid)).unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("OTPGATE_KEEP_TEST_ENV").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running openssl (install the Debian package openssl)");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn make_key(dir: &Path, name: &str) {
    let key = format!("{name}.key");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &key,
        ],
    );
    fs::set_permissions(dir.join(&key), fs::Permissions::from_mode(0o600)).unwrap();
}

fn make_ca(dir: &Path, name: &str, subject: &str) {
    make_key(dir, name);
    let subject = format!("/CN={subject}");
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    openssl(
        dir,
        &[
            "req", "-new", "-x509", "-days", "2", "-key", &key, "-out", &pem, "-subj", &subject,
        ],
    );
}

fn sign(dir: &Path, name: &str, common_name: &str, extension: &str) {
    make_key(dir, name);
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    let subject = format!("/CN={common_name}");
    openssl(
        dir,
        &["req", "-new", "-key", &key, "-out", &csr, "-subj", &subject],
    );
    let extfile = format!("{name}.ext");
    fs::write(dir.join(&extfile), format!("{extension}\n")).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            &extfile,
        ],
    );
    fs::set_permissions(dir.join(&pem), fs::Permissions::from_mode(0o644)).unwrap();
}

/// Debian's versioned folder of the server programs.
fn postgres_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .expect("/usr/lib/postgresql: install the Debian package postgresql")
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    found.sort();
    found.pop().expect("no PostgreSQL server programs found")
}

/// The `postgres` system user the package creates.
fn postgres_ids() -> (u32, u32) {
    let output = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .unwrap();
    let group = Command::new("id")
        .args(["-g", "postgres"])
        .output()
        .unwrap();
    let number = |o: Output| String::from_utf8_lossy(&o.stdout).trim().parse().ok();
    match (number(output), number(group)) {
        (Some(uid), Some(gid)) => (uid, gid),
        _ => panic!("no postgres user: install the Debian package postgresql"),
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().unwrap().port()
}

/// A new folder `/tmp/otpgate-pg/<name>-<pid>-<n>`, after removing the
/// folders of test processes that no longer run. Not under target/: the
/// postgres user must reach it wherever the checkout is (a home folder may
/// be closed to others), and a socket path must stay under 108 bytes.
fn fresh_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let root = std::env::temp_dir().join("otpgate-pg");
    fs::create_dir_all(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    remove_abandoned(&root);

    let number = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = root.join(format!("{name}-{}-{number}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).unwrap();
    dir
}

/// Stops and removes clusters whose test process is gone.
fn remove_abandoned(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid: Option<u32> = name.rsplit('-').nth(1).and_then(|p| p.parse().ok());
        let alive = pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if alive {
            continue;
        }
        let data = entry.path().join("pg/data");
        if data.join("postmaster.pid").exists() {
            let _ = Command::new(postgres_bin().join("pg_ctl"))
                .args(["-D", &data.to_string_lossy(), "stop", "-m", "immediate"])
                .uid(postgres_ids().0)
                .gid(postgres_ids().1)
                .output();
        }
        let _ = fs::remove_dir_all(entry.path());
    }
}
