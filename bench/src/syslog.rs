//! A stand-in syslog daemon: when nothing listens on /dev/log, the
//! benchmark binds it and reads every datagram, so each module's log lines
//! cost what they cost on a real server (without a listener, syslog(3)
//! falls back to writing /dev/console and libraries differ in how long they
//! spend failing). The lines are counted, never stored or printed.

use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The system's log socket, or ours while the benchmark runs.
pub struct Listener {
    path: PathBuf,
    owned: Option<Owned>,
}

struct Owned {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Uses the socket at `path` when something answers there; otherwise
    /// binds it (removing a dead socket file) and drains it in a thread.
    pub fn ensure(path: &Path) -> io::Result<Listener> {
        if someone_listens(path) {
            return Ok(Listener {
                path: path.to_path_buf(),
                owned: None,
            });
        }
        remove_dead_socket(path)?;

        let socket = UnixDatagram::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;

        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, received) = (stop.clone(), received.clone());
            std::thread::spawn(move || drain(&socket, &stop, &received))
        };
        Ok(Listener {
            path: path.to_path_buf(),
            owned: Some(Owned {
                stop,
                received,
                thread: Some(thread),
            }),
        })
    }

    /// Who listens, for the report.
    pub fn describe(&self) -> String {
        match &self.owned {
            None => format!("the system's syslog daemon on {}", self.path.display()),
            Some(owned) => format!(
                "the benchmark's own reader on {} ({} lines read)",
                self.path.display(),
                owned.received.load(Ordering::Relaxed)
            ),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let Some(owned) = &mut self.owned else {
            return;
        };
        owned.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = owned.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn someone_listens(path: &Path) -> bool {
    UnixDatagram::unbound()
        .and_then(|socket| socket.connect(path))
        .is_ok()
}

/// Removes a socket file nobody answers on; refuses to touch anything else.
fn remove_dead_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::other(format!(
            "{} exists and is not a socket",
            path.display()
        ))),
    }
}

fn drain(socket: &UnixDatagram, stop: &AtomicBool, received: &AtomicU64) {
    let mut buffer = vec![0u8; 8192];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv(&mut buffer) {
            Ok(_) => {
                received.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
