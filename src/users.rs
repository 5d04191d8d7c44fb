//! Who the user is: the checks a user name must pass before it names a file,
//! and the account and group look-ups through NSS (files, LDAP, SSSD...).

use std::ffi::CString;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Longest user name we accept (Linux allows 32; some NSS sources more).
pub const MAX_USER_NAME: usize = 64;

/// A user name that is safe to use as a file name and in a log line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserName(String);

/// Why a user name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadUserName;

impl UserName {
    /// Accepts 1 to [`MAX_USER_NAME`] bytes of printable ASCII without `/`,
    /// without a leading dot or dash, without white space.
    pub fn parse(raw: &[u8]) -> Result<UserName, BadUserName> {
        if raw.is_empty() || raw.len() > MAX_USER_NAME {
            return Err(BadUserName);
        }
        if raw[0] == b'.' || raw[0] == b'-' {
            return Err(BadUserName);
        }
        let allowed = |b: &u8| b.is_ascii_graphic() && !matches!(b, b'/' | b'\\' | b':');
        if !raw.iter().all(allowed) {
            return Err(BadUserName);
        }
        // Checked to be ASCII above, so this cannot fail.
        let text = std::str::from_utf8(raw).map_err(|_| BadUserName)?;
        Ok(UserName(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A system account as NSS knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

/// The account and group database, behind a trait so the login logic can be
/// tested with a fake.
pub trait Directory {
    /// The account named `user`, `Ok(None)` when it does not exist.
    fn account(&self, user: &UserName) -> Result<Option<Account>, LookupError>;
    /// All group ids of `user`: the primary `gid` and every supplementary one.
    fn group_ids(&self, user: &UserName, gid: u32) -> Result<Vec<u32>, LookupError>;
    /// The id of the group named `group`, `Ok(None)` when it does not exist.
    fn group_id(&self, group: &str) -> Result<Option<u32>, LookupError>;
}

/// NSS failed for a reason other than "not found".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupError {
    pub what: String,
    pub errno: i32,
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cause = std::io::Error::from_raw_os_error(self.errno);
        write!(f, "looking up {} failed: {cause}", self.what)
    }
}

/// The real directory: getpwnam_r, getgrouplist and getgrnam_r.
pub struct SystemDirectory;

const BUFFER_START: usize = 4096;
const BUFFER_MAX: usize = 1 << 22;

/// A group's entry holds its member list: 64 KiB fit about 4,000 members in
/// the first call. The buffer is scratch space the C function writes before
/// anything reads it, so it is never zeroed and a large start is free.
const GROUP_BUFFER_START: usize = 64 * 1024;

/// The buffer size the last group look-up needed, so a process that stays
/// up (the module is never unloaded) asks once, not once per doubling, for
/// a group larger than the start: each failed call makes NSS read and size
/// the whole member list again. A size is a fact about the groups, not
/// about any login, so it may outlive one.
static GROUP_BUFFER_SIZE: AtomicUsize = AtomicUsize::new(GROUP_BUFFER_START);

impl Directory for SystemDirectory {
    fn account(&self, user: &UserName) -> Result<Option<Account>, LookupError> {
        let name = CString::new(user.as_str()).map_err(|_| lookup_error("user", libc::EINVAL))?;
        let mut buffer = vec![0u8; BUFFER_START];
        loop {
            // SAFETY: an all-zero passwd is a valid value of this C struct.
            let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            // SAFETY: every pointer is valid for the call; buffer has its length.
            let rc = lookup_status(unsafe {
                libc::getpwnam_r(
                    name.as_ptr(),
                    &mut pwd,
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    &mut result,
                )
            });
            match rc {
                0 if result.is_null() => return Ok(None),
                0 => {
                    return Ok(Some(Account {
                        uid: pwd.pw_uid,
                        gid: pwd.pw_gid,
                    }))
                }
                libc::ERANGE if buffer.len() < BUFFER_MAX => buffer.resize(buffer.len() * 2, 0),
                libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
                other => return Err(lookup_error("user", other)),
            }
        }
    }

    fn group_ids(&self, user: &UserName, gid: u32) -> Result<Vec<u32>, LookupError> {
        let name = CString::new(user.as_str()).map_err(|_| lookup_error("groups", libc::EINVAL))?;
        let mut count: libc::c_int = 64;
        loop {
            let mut groups = vec![0 as libc::gid_t; count as usize];
            let asked = count;
            // SAFETY: `groups` holds `count` entries; getgrouplist updates count.
            let rc =
                unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
            if rc >= 0 {
                groups.truncate(count as usize);
                return Ok(groups);
            }
            if count <= asked {
                count = asked * 2;
            }
            if count as usize > 1 << 20 {
                return Err(lookup_error("groups", libc::ERANGE));
            }
        }
    }

    fn group_id(&self, group: &str) -> Result<Option<u32>, LookupError> {
        let name = CString::new(group).map_err(|_| lookup_error("group", libc::EINVAL))?;
        let mut size = GROUP_BUFFER_SIZE.load(Ordering::Relaxed);
        loop {
            let mut buffer: Vec<u8> = Vec::with_capacity(size);
            // SAFETY: an all-zero group is a valid value of this C struct.
            let mut grp: libc::group = unsafe { std::mem::zeroed() };
            let mut result: *mut libc::group = std::ptr::null_mut();
            // SAFETY: every pointer is valid for the call; `buffer` has
            // `size` bytes allocated, which getgrnam_r only writes (its
            // strings and member list), and we read nothing from it.
            let rc = lookup_status(unsafe {
                libc::getgrnam_r(
                    name.as_ptr(),
                    &mut grp,
                    buffer.as_mut_ptr().cast(),
                    size,
                    &mut result,
                )
            });
            match rc {
                0 if result.is_null() => return Ok(None),
                0 => {
                    GROUP_BUFFER_SIZE.store(size, Ordering::Relaxed);
                    return Ok(Some(grp.gr_gid));
                }
                libc::ERANGE if size < BUFFER_MAX => size *= 2,
                libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
                other => return Err(lookup_error("group", other)),
            }
        }
    }
}

/// The error number of a `get*_r` call. POSIX has it returned, but some
/// implementations return -1 and leave it in errno: nss_wrapper (which the
/// tests and the benchmark preload) does so for a buffer too small for a
/// large group, and would otherwise turn every big group into an error.
pub(crate) fn lookup_status(rc: libc::c_int) -> libc::c_int {
    if rc != -1 {
        return rc;
    }
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn lookup_error(what: &str, errno: i32) -> LookupError {
    LookupError {
        what: what.to_string(),
        errno,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for name in ["alice", "bob.smith", "svc_vms-1", "a", "user@example.com"] {
            assert!(UserName::parse(name.as_bytes()).is_ok(), "{name}");
        }
    }

    #[test]
    fn dangerous_names_are_refused() {
        let long = "a".repeat(300);
        let bad: [&[u8]; 12] = [
            b"",
            b".",
            b"..",
            b".hidden",
            b"-rf",
            b"a/b",
            b"../etc/shadow",
            b"a\nb",
            b"a\x1bb",
            b"a b",
            "\u{e9}t\u{e9}".as_bytes(),
            long.as_bytes(),
        ];
        for name in bad {
            assert_eq!(UserName::parse(name), Err(BadUserName), "{name:?}");
        }
    }

    #[test]
    fn a_status_of_minus_one_is_read_from_errno() {
        // SAFETY: errno is this thread's own variable.
        unsafe { *libc::__errno_location() = libc::ERANGE };
        assert_eq!(lookup_status(-1), libc::ERANGE);
        assert_eq!(lookup_status(libc::ERANGE), libc::ERANGE);
        assert_eq!(lookup_status(0), 0);
    }

    #[test]
    fn root_exists_in_the_system_directory() {
        let root = UserName::parse(b"root").unwrap();
        let account = SystemDirectory.account(&root).unwrap().unwrap();
        assert_eq!(account.uid, 0);
        assert!(SystemDirectory
            .group_ids(&root, account.gid)
            .unwrap()
            .contains(&0));
        assert_eq!(SystemDirectory.group_id("root").unwrap(), Some(0));
        assert_eq!(
            SystemDirectory.group_id("no-such-group-otpgate").unwrap(),
            None
        );
    }
}
