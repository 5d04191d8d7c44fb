//! The parent's side of every measurement: starting workers with
//! nss_wrapper preloaded and a clean environment, letting them take turns
//! block by block or releasing them together, timing fresh processes, and
//! running the C program's load loop.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::worker::{Done, Job};

/// What a child process's environment holds: nss_wrapper and its files.
#[derive(Clone, Debug)]
pub struct NssEnv {
    pub nss_wrapper: PathBuf,
    pub passwd: PathBuf,
    pub group: PathBuf,
}

impl NssEnv {
    /// A command with an otherwise empty environment, as the tests use.
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LD_PRELOAD", &self.nss_wrapper)
            .env("NSS_WRAPPER_PASSWD", &self.passwd)
            .env("NSS_WRAPPER_GROUP", &self.group);
        command
    }
}

/// libnss_wrapper.so, from its usual place or from dpkg's file list.
pub fn find_nss_wrapper() -> Result<PathBuf, String> {
    let usual = Path::new("/usr/lib/x86_64-linux-gnu/libnss_wrapper.so");
    if usual.is_file() {
        return Ok(usual.to_path_buf());
    }
    let listed = Command::new("dpkg")
        .args(["-L", "libnss-wrapper"])
        .output()
        .map_err(|e| format!("dpkg -L libnss-wrapper: {e}"))?;
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .find(|line| line.ends_with("/libnss_wrapper.so"))
        .map(PathBuf::from)
        .ok_or_else(|| "libnss_wrapper.so not found: install libnss-wrapper".to_string())
}

/// A started worker, waiting for its next block.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn start(env: &NssEnv, job: &Job) -> Result<Worker, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = env
            .command(&exe)
            .args(job.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting a worker: {e}"))?;
        let stdin = child.stdin.take().ok_or("worker stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("worker stdout")?);
        let mut worker = Worker {
            child,
            stdin,
            stdout,
        };

        let line = worker.read_line()?;
        if line.trim() != "ready" {
            return Err(format!("worker for {} said {line:?}", job.service));
        }
        Ok(worker)
    }

    /// Asks for the next `count` logins.
    fn go(&mut self, count: usize) -> Result<(), String> {
        writeln!(self.stdin, "go {count}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("releasing a worker: {e}"))
    }

    fn report(&mut self) -> Result<Done, String> {
        Done::parse(&self.read_line()?)
    }

    /// Closes the worker's input and waits for it to end.
    fn finish(self) -> Result<(), String> {
        let Worker {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        let status = child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("worker failed: {status}"));
        }
        Ok(())
    }

    fn read_line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        let read = self
            .stdout
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if read == 0 {
            let status = self.child.wait().map_err(|e| e.to_string())?;
            return Err(format!("worker ended early: {status}"));
        }
        Ok(line)
    }
}

/// One worker per job, all started first, then taking turns `block` logins
/// at a time until every user has logged in; each report is what that
/// worker's own clock summed over its PAM transactions.
pub fn alternate(env: &NssEnv, jobs: &[Job], block: usize) -> Result<Vec<Done>, String> {
    let mut workers = jobs
        .iter()
        .map(|job| Worker::start(env, job))
        .collect::<Result<Vec<_>, _>>()?;
    let mut totals = vec![Done::default(); jobs.len()];

    let longest = jobs.iter().map(|job| job.users.len()).max().unwrap_or(0);
    for first in (0..longest).step_by(block.max(1)) {
        for ((worker, job), total) in workers.iter_mut().zip(jobs).zip(&mut totals) {
            let count = job.users.len().saturating_sub(first).min(block);
            if count > 0 {
                worker.go(count)?;
                total.merge(&worker.report()?);
            }
        }
    }

    for worker in workers {
        worker.finish()?;
    }
    Ok(totals)
}

/// Several workers released together, each for all its users; the time is
/// the wall time from the release of the first to the report of the last.
pub fn parallel(env: &NssEnv, jobs: &[Job]) -> Result<(Duration, Vec<Done>), String> {
    let mut workers = jobs
        .iter()
        .map(|job| Worker::start(env, job))
        .collect::<Result<Vec<_>, _>>()?;

    let started = Instant::now();
    for (worker, job) in workers.iter_mut().zip(jobs) {
        worker.go(job.users.len())?;
    }
    let reports = workers
        .iter_mut()
        .map(Worker::report)
        .collect::<Result<Vec<_>, _>>()?;
    let took = started.elapsed();

    for worker in workers {
        worker.finish()?;
    }
    Ok((took, reports))
}

/// The C program that logs in once per process (see fresh-login.c).
pub struct FreshLogin {
    pub program: PathBuf,
    pub confdir: PathBuf,
}

impl FreshLogin {
    /// Starts the program for one login and waits for it: the time covers
    /// exec, loading libpam and the module, the login and the exit.
    pub fn once(
        &self,
        env: &NssEnv,
        service: &str,
        user: &str,
        code: &str,
    ) -> Result<(Duration, i32), String> {
        let mut command = env.command(&self.program);
        command
            .arg(&self.confdir)
            .args([service, user, code])
            .stdin(Stdio::null())
            .stdout(Stdio::null());

        let started = Instant::now();
        let status = command
            .status()
            .map_err(|e| format!("{}: {e}", self.program.display()))?;
        let took = started.elapsed();

        let code = status
            .code()
            .ok_or_else(|| format!("fresh-login was killed: {status}"))?;
        Ok((took, code))
    }

    /// Microseconds per dlopen + dlclose of `module` in a C process that
    /// links libpam, as a PAM application does.
    pub fn load_cost(&self, module: &Path, count: u32) -> Result<f64, String> {
        let output = Command::new(&self.program)
            .arg("--load")
            .arg(module)
            .arg(count.to_string())
            .output()
            .map_err(|e| format!("{}: {e}", self.program.display()))?;
        if !output.status.success() {
            return Err(format!(
                "load loop of {} failed: {}",
                module.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .map_err(|_| "load loop printed no number".to_string())
    }
}
