//! Safe file primitives for root-owned configuration and state: folders and
//! files are opened without following links, checked for type, owner, mode,
//! link count and size before a byte is read, and replaced atomically.

use std::ffi::{CStr, CString, OsStr};
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// What is wrong with a file or folder we were asked to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Missing,
    Symlink,
    NotRegular,
    NotDirectory,
    WrongOwner { uid: u32 },
    BadMode { mode: u32 },
    HardLinked { links: u64 },
    TooLarge { size: u64, max: u64 },
    Io { errno: i32 },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing => write!(f, "does not exist"),
            Problem::Symlink => write!(f, "is a symbolic link"),
            Problem::NotRegular => write!(f, "is not a regular file"),
            Problem::NotDirectory => write!(f, "is not a directory"),
            Problem::WrongOwner { uid } => write!(f, "is owned by uid {uid}, not root"),
            Problem::BadMode { mode } => write!(f, "has unsafe mode {mode:04o}"),
            Problem::HardLinked { links } => write!(f, "has {links} hard links"),
            Problem::TooLarge { size, max } => write!(f, "is {size} bytes, over {max}"),
            Problem::Io { errno } => {
                write!(
                    f,
                    "cannot be used: {}",
                    std::io::Error::from_raw_os_error(*errno)
                )
            }
        }
    }
}

/// A problem together with the path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsError {
    pub path: String,
    pub problem: Problem,
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path, self.problem)
    }
}

impl std::error::Error for FsError {}

/// Which permission bits a trusted object may not have.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Mode bits that must be clear (0o022: not writable by group or others).
    pub forbidden_mode: u32,
    /// Largest accepted size in bytes (files only).
    pub max_size: u64,
}

/// Config files may be world-readable; nobody but root may write them.
pub const CONFIG_RULES: Rules = Rules {
    forbidden_mode: 0o022,
    max_size: 64 * 1024,
};

/// State files hold secrets: root only, 0600 at most.
pub const STATE_RULES: Rules = Rules {
    forbidden_mode: 0o077,
    max_size: 64 * 1024,
};

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn fail(path: impl fmt::Display, problem: Problem) -> FsError {
    FsError {
        path: path.to_string(),
        problem,
    }
}

fn problem_from_errno(code: i32) -> Problem {
    match code {
        libc::ENOENT => Problem::Missing,
        libc::ELOOP => Problem::Symlink,
        libc::ENOTDIR => Problem::NotDirectory,
        other => Problem::Io { errno: other },
    }
}

fn c_path(path: &Path) -> Result<CString, FsError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        fail(
            path.display(),
            Problem::Io {
                errno: libc::EINVAL,
            },
        )
    })
}

fn fstat(fd: &OwnedFd) -> Result<libc::stat, i32> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open descriptor and `st` is writable.
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) };
    if rc == 0 {
        Ok(st)
    } else {
        Err(errno())
    }
}

fn check_owner_and_mode(st: &libc::stat, rules: Rules) -> Result<(), Problem> {
    if st.st_uid != 0 {
        return Err(Problem::WrongOwner { uid: st.st_uid });
    }
    let mode = st.st_mode & 0o7777;
    if mode & rules.forbidden_mode != 0 {
        return Err(Problem::BadMode { mode });
    }
    Ok(())
}

/// Opens a folder that must be a real directory (not a link), owned by root
/// and not writable by group or others. Every folder on the way there is
/// opened in turn without following links and must be owned by root and not
/// writable by group or others (unless sticky, like /tmp), so nobody but
/// root can swap a folder above it for one of their own.
pub fn open_trusted_dir(path: &Path) -> Result<OwnedFd, FsError> {
    let mut walked = PathBuf::new();
    let mut current = open_walk_start(path, &mut walked)?;
    for component in path.components() {
        let name = match component {
            Component::Normal(name) => name,
            Component::ParentDir => OsStr::new(".."),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
        };
        check_ancestor(&current).map_err(|p| fail(walked.display(), p))?;
        walked.push(name);
        current = open_dir_at(&current, name, path, &walked)?;
    }

    let st = fstat(&current).map_err(|e| fail(path.display(), Problem::Io { errno: e }))?;
    check_owner_and_mode(
        &st,
        Rules {
            forbidden_mode: 0o022,
            max_size: 0,
        },
    )
    .map_err(|p| fail(path.display(), p))?;
    Ok(current)
}

/// The folder a walk starts from: `/` for an absolute path, the current
/// folder for a relative one.
fn open_walk_start(path: &Path, walked: &mut PathBuf) -> Result<OwnedFd, FsError> {
    let start = if path.is_absolute() { "/" } else { "." };
    walked.push(start);
    let c = c_path(Path::new(start))?;
    // SAFETY: `c` is a valid NUL-terminated path.
    let raw = unsafe { libc::open(c.as_ptr(), DIR_FLAGS) };
    if raw < 0 {
        return Err(fail(start, problem_from_errno(errno())));
    }
    // SAFETY: `raw` was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

const DIR_FLAGS: i32 = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// Opens one step of a walk; a missing folder is reported with the whole
/// path asked for, any other problem with the step where it was met.
fn open_dir_at(
    dir: &OwnedFd,
    name: &OsStr,
    asked: &Path,
    walked: &Path,
) -> Result<OwnedFd, FsError> {
    let c = CString::new(name.as_bytes()).map_err(|_| {
        fail(
            asked.display(),
            Problem::Io {
                errno: libc::EINVAL,
            },
        )
    })?;
    // SAFETY: `dir` is an open directory and `c` a valid C string.
    let raw = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), DIR_FLAGS) };
    if raw < 0 {
        return Err(match problem_from_errno(errno()) {
            Problem::Missing => fail(asked.display(), Problem::Missing),
            Problem::NotDirectory if is_symlink_at(dir, &c) => {
                fail(walked.display(), Problem::Symlink)
            }
            other => fail(walked.display(), other),
        });
    }
    // SAFETY: `raw` was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Whether `name` in `dir` is a symbolic link (O_DIRECTORY with O_NOFOLLOW
/// reports a link as "not a directory").
fn is_symlink_at(dir: &OwnedFd, name: &CStr) -> bool {
    lstat_at(dir, name).is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK)
}

/// fstatat(2) of `name` in `dir` without following a link.
fn lstat_at(dir: &OwnedFd, name: &CStr) -> Option<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is open, `name` a valid C string and `st` writable.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    (rc == 0).then_some(st)
}

/// A folder above a trusted one: owned by root, and not writable by group
/// or others unless its sticky bit keeps them from renaming what root put
/// there.
fn check_ancestor(fd: &OwnedFd) -> Result<(), Problem> {
    let st = fstat(fd).map_err(|e| Problem::Io { errno: e })?;
    if st.st_uid != 0 {
        return Err(Problem::WrongOwner { uid: st.st_uid });
    }
    let mode = st.st_mode & 0o7777;
    let sticky = mode & libc::S_ISVTX != 0;
    if mode & 0o022 != 0 && !sticky {
        return Err(Problem::BadMode { mode });
    }
    Ok(())
}

/// Opens `name` inside `dir` for reading and checks it before any read:
/// not a link, a regular file (checked before a read could block on a FIFO),
/// owned by root, mode within `rules`, one hard link, size within `rules`.
/// `Ok(None)` when the file does not exist.
pub fn open_trusted_file(
    dir: &OwnedFd,
    name: &CStr,
    shown_path: &dyn fmt::Display,
    rules: Rules,
) -> Result<Option<File>, FsError> {
    let flags =
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    // SAFETY: `dir` is an open directory and `name` a valid C string.
    let raw = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
    if raw < 0 {
        let code = errno();
        if code == libc::ENOENT {
            return Ok(None);
        }
        return Err(fail(shown_path, problem_from_errno(code)));
    }
    // SAFETY: `raw` was just returned by openat and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    check_trusted_file(&fd, rules).map_err(|p| fail(shown_path, p))?;
    Ok(Some(File::from(fd)))
}

/// Checks an open file: regular, owned by root, mode within `rules`, one
/// hard link, size within `rules`.
pub fn check_trusted_file(fd: &OwnedFd, rules: Rules) -> Result<(), Problem> {
    let st = fstat(fd).map_err(|e| Problem::Io { errno: e })?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Problem::NotRegular);
    }
    check_owner_and_mode(&st, rules)?;
    if st.st_nlink != 1 {
        return Err(Problem::HardLinked { links: nlink(&st) });
    }
    let size = st.st_size as u64;
    if size > rules.max_size {
        return Err(Problem::TooLarge {
            size,
            max: rules.max_size,
        });
    }
    Ok(())
}

/// Reads a whole checked file, refusing one that grew past the limit since
/// it was checked.
pub fn read_limited(
    file: &mut File,
    max: u64,
    shown_path: &dyn fmt::Display,
) -> Result<Vec<u8>, FsError> {
    // Room for a usual config or record up front: one read and one read
    // that finds the end, instead of a read per doubling from 32 bytes.
    let room = usize::try_from(max.saturating_add(1)).map_or(READ_ROOM, |m| m.min(READ_ROOM));
    let mut bytes = Vec::with_capacity(room);
    Read::by_ref(file)
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            fail(
                shown_path,
                Problem::Io {
                    errno: e.raw_os_error().unwrap_or(libc::EIO),
                },
            )
        })?;
    if bytes.len() as u64 > max {
        return Err(fail(
            shown_path,
            Problem::TooLarge {
                size: bytes.len() as u64,
                max,
            },
        ));
    }
    Ok(bytes)
}

/// What [`read_limited`] reserves before its first read.
const READ_ROOM: usize = 8 * 1024;

/// Reads a trusted file in a trusted folder given by path.
pub fn read_trusted(path: &Path, rules: Rules) -> Result<Vec<u8>, FsError> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| fail(path.display(), Problem::NotRegular))?;
    let dir = open_trusted_dir(parent)?;
    let c_name = CString::new(name.as_bytes()).map_err(|_| {
        fail(
            path.display(),
            Problem::Io {
                errno: libc::EINVAL,
            },
        )
    })?;
    let shown = path.display();
    let mut file = open_trusted_file(&dir, &c_name, &shown, rules)?
        .ok_or_else(|| fail(path.display(), Problem::Missing))?;
    read_limited(&mut file, rules.max_size, &shown)
}

/// Replaces `name` in `dir` with `bytes` so that a crash at any instant
/// leaves either the old or the new file: an exclusive temp file (0600),
/// fsync, rename over the old name, fsync of the folder.
pub fn replace_file(
    dir: &OwnedFd,
    name: &str,
    bytes: &[u8],
    shown_dir: &dyn fmt::Display,
) -> Result<(), FsError> {
    let temp_name = temp_name_for(name).map_err(|p| fail(shown_dir, p))?;
    let shown = format!("{shown_dir}/{name}");
    let result = write_temp_then_rename(dir, &temp_name, name, bytes);
    if result.is_err() {
        unlink_at(dir, &temp_name);
    }
    result.map_err(|p| fail(&shown, p))?;
    sync_fd(dir).map_err(|p| fail(shown_dir, p))
}

/// Temp files are named `.NAME.tmp-RANDOM`; readers never look at names
/// that start with a dot, and stale ones are cleaned by [`remove_stale_temps`].
fn temp_name_for(name: &str) -> Result<CString, Problem> {
    let mut random = [0u8; 8];
    crate::secret::fill_random(&mut random).map_err(|_| Problem::Io { errno: libc::EIO })?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    CString::new(format!(".{name}.tmp-{suffix}")).map_err(|_| Problem::Io {
        errno: libc::EINVAL,
    })
}

fn write_temp_then_rename(
    dir: &OwnedFd,
    temp: &CStr,
    name: &str,
    bytes: &[u8],
) -> Result<(), Problem> {
    let target = CString::new(name).map_err(|_| Problem::Io {
        errno: libc::EINVAL,
    })?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `dir` is an open directory and `temp` a valid C string.
    let raw = unsafe { libc::openat(dir.as_raw_fd(), temp.as_ptr(), flags, 0o600 as libc::c_uint) };
    if raw < 0 {
        return Err(problem_from_errno(errno()));
    }
    // SAFETY: `raw` was just returned by openat and is owned by nobody else.
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(raw) });

    file.write_all(bytes).map_err(|e| Problem::Io {
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    })?;
    file.sync_all().map_err(|e| Problem::Io {
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    })?;
    drop(file);

    // SAFETY: both names are valid C strings relative to the open `dir`.
    let rc = unsafe {
        libc::renameat(
            dir.as_raw_fd(),
            temp.as_ptr(),
            dir.as_raw_fd(),
            target.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(problem_from_errno(errno()));
    }
    Ok(())
}

/// fsync(2) on a descriptor (a folder after a rename, a file after a write).
pub fn sync_fd(fd: &OwnedFd) -> Result<(), Problem> {
    // SAFETY: `fd` is an open descriptor.
    if unsafe { libc::fsync(fd.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(Problem::Io { errno: errno() })
    }
}

/// Removes `name` from `dir`, ignoring a missing file.
pub fn unlink_at(dir: &OwnedFd, name: &CStr) {
    // SAFETY: `dir` is an open directory and `name` a valid C string.
    unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
}

/// Renames `from` to `to` inside one folder, then syncs the folder.
pub fn rename_in(dir: &OwnedFd, from: &str, to: &str) -> Result<(), Problem> {
    let from_c = CString::new(from).map_err(|_| Problem::Io {
        errno: libc::EINVAL,
    })?;
    let to_c = CString::new(to).map_err(|_| Problem::Io {
        errno: libc::EINVAL,
    })?;
    // SAFETY: both names are valid C strings relative to the open `dir`.
    let rc = unsafe {
        libc::renameat(
            dir.as_raw_fd(),
            from_c.as_ptr(),
            dir.as_raw_fd(),
            to_c.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(problem_from_errno(errno()));
    }
    sync_fd(dir)
}

/// Deletes temp files of `name` left by a process killed mid-write.
/// Only files older than a minute are removed, so a writer still at work
/// is never disturbed. The folder is listed through its checked
/// descriptor, never by path, so the names come from the folder that
/// passed the checks.
pub fn remove_stale_temps(dir: &OwnedFd, name: &str) {
    let prefix = format!(".{name}.tmp-");
    let Some(names) = names_in(dir) else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);

    for file_name in names {
        if file_name.to_bytes().starts_with(prefix.as_bytes())
            && older_than_a_minute(dir, &file_name, now)
        {
            unlink_at(dir, &file_name);
        }
    }
}

/// The names in an open folder, read through a duplicate of its descriptor.
fn names_in(dir: &OwnedFd) -> Option<Vec<CString>> {
    // SAFETY: duplicating an open descriptor; the copy gets close-on-exec.
    let copy = unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if copy < 0 {
        return None;
    }
    // SAFETY: `copy` is an open folder descriptor that nothing else owns;
    // on success the stream owns it.
    let stream = unsafe { libc::fdopendir(copy) };
    if stream.is_null() {
        // SAFETY: fdopendir failed, so `copy` is still ours to close.
        unsafe { libc::close(copy) };
        return None;
    }

    // The copy shares its reading position with `dir`: start at the top.
    // SAFETY: `stream` is a valid open stream.
    unsafe { libc::rewinddir(stream) };
    let mut names = Vec::new();
    loop {
        // SAFETY: `stream` is valid; the entry lives until the next call.
        let entry = unsafe { libc::readdir(stream) };
        if entry.is_null() {
            break;
        }
        // SAFETY: `d_name` is a NUL-terminated name inside the entry.
        names.push(unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_owned());
    }

    // SAFETY: closes the stream and the descriptor it owns, once.
    unsafe { libc::closedir(stream) };
    Some(names)
}

/// Whether `name` in `dir` (not followed if a link) was last changed more
/// than a minute before `now`.
fn older_than_a_minute(dir: &OwnedFd, name: &CStr, now: i64) -> bool {
    lstat_at(dir, name).is_some_and(|st| now.saturating_sub(st.st_mtime) > 60)
}

/// The link count as u64 (its C type differs between architectures).
#[allow(clippy::unnecessary_cast)]
pub fn nlink(st: &libc::stat) -> u64 {
    st.st_nlink as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// `<tmp>/outer/state`, both root-owned 0755 and 0700.
    fn layout() -> (tempfile::TempDir, PathBuf) {
        let top = tempfile::tempdir().unwrap();
        let state = top.path().join("outer/state");
        std::fs::create_dir_all(&state).unwrap();
        set_mode(&state, 0o700);
        (top, state)
    }

    #[test]
    fn a_folder_reached_through_safe_folders_opens() {
        let (_top, state) = layout();
        assert!(open_trusted_dir(&state).is_ok());
    }

    #[test]
    fn a_link_anywhere_on_the_way_is_refused_and_named() {
        let (top, state) = layout();
        let link = top.path().join("link");
        symlink(top.path().join("outer"), &link).unwrap();

        let err = open_trusted_dir(&link.join("state")).unwrap_err();

        assert_eq!(err.problem, Problem::Symlink);
        assert_eq!(err.path, link.display().to_string());
        assert!(open_trusted_dir(&state).is_ok());
    }

    #[test]
    fn a_folder_above_that_others_can_write_is_refused_unless_sticky() {
        let (top, state) = layout();
        let outer = top.path().join("outer");

        set_mode(&outer, 0o777);
        let err = open_trusted_dir(&state).unwrap_err();
        assert_eq!(err.problem, Problem::BadMode { mode: 0o777 });
        assert_eq!(err.path, outer.display().to_string());

        set_mode(&outer, 0o1777);
        assert!(open_trusted_dir(&state).is_ok());
    }

    #[test]
    fn a_folder_above_owned_by_a_user_is_refused() {
        let (top, state) = layout();
        let outer = top.path().join("outer");
        std::os::unix::fs::chown(&outer, Some(2001), None).unwrap();

        let err = open_trusted_dir(&state).unwrap_err();

        assert_eq!(err.problem, Problem::WrongOwner { uid: 2001 });
    }

    #[test]
    fn stale_temps_are_found_through_the_descriptor_not_the_path() {
        let (top, state) = layout();
        let dir = open_trusted_dir(&state).unwrap();
        let stale = ".alice.toml.tmp-0000";
        let fresh = ".alice.toml.tmp-1111";
        for name in [stale, fresh] {
            std::fs::write(state.join(name), b"x").unwrap();
        }
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
        let file = std::fs::File::options()
            .write(true)
            .open(state.join(stale))
            .unwrap();
        file.set_modified(old).unwrap();
        // The path now names another folder, holding an old temp file
        // of another name.
        let moved = top.path().join("moved");
        std::fs::rename(&state, &moved).unwrap();
        let other = ".alice.toml.tmp-2222";
        std::fs::create_dir(&state).unwrap();
        std::fs::write(state.join(other), b"y").unwrap();
        let decoy = std::fs::File::options()
            .write(true)
            .open(state.join(other))
            .unwrap();
        decoy.set_modified(old).unwrap();

        remove_stale_temps(&dir, "alice.toml");

        assert!(!moved.join(stale).exists(), "the stale temp is removed");
        assert!(moved.join(fresh).exists(), "a fresh one is kept");
        assert!(
            state.join(other).exists(),
            "the folder at the path is not read"
        );
    }

    #[test]
    fn a_missing_folder_is_named_in_full() {
        let (top, _state) = layout();
        let asked = top.path().join("nowhere/state");

        let err = open_trusted_dir(&asked).unwrap_err();

        assert_eq!(err, fail(asked.display(), Problem::Missing));
    }
}
