//! Who belongs to the configured groups, for `otpgate status`: the listed
//! members of each group (getgrnam_r) and every account whose primary
//! group it is (an enumeration with getpwent_r). The login path never
//! enumerates; it asks about one user at a time through `users::Directory`.

use std::collections::BTreeSet;
use std::ffi::{CStr, CString};

use crate::users::{lookup_status, LookupError};

const BUFFER_START: usize = 4096;
const BUFFER_MAX: usize = 1 << 22;

/// The names of all members of any of `groups`, sorted. Groups that do not
/// exist are skipped. Directories that do not allow enumeration (some LDAP
/// set-ups) only give the listed members.
pub fn members_of(groups: &[String]) -> Result<Vec<String>, LookupError> {
    let mut names = BTreeSet::new();
    let mut gids = Vec::new();

    // Listed (supplementary) members.
    for group in groups {
        if let Some((gid, members)) = group_entry(group)? {
            gids.push(gid);
            names.extend(members);
        }
    }

    // Accounts whose primary group is one of them.
    names.extend(accounts_with_primary_group(&gids));
    Ok(names.into_iter().collect())
}

/// The gid and listed members of `group`; `None` when it does not exist.
fn group_entry(group: &str) -> Result<Option<(u32, Vec<String>)>, LookupError> {
    let name = CString::new(group).map_err(|_| lookup_error(libc::EINVAL))?;
    let mut buffer = vec![0u8; BUFFER_START];
    loop {
        // SAFETY: an all-zero group is a valid value of this C struct.
        let mut entry: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; the buffer has its length.
        let rc = lookup_status(unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                &mut result,
            )
        });
        match rc {
            0 if result.is_null() => return Ok(None),
            // SAFETY: on success gr_mem points into `buffer`, which is alive.
            0 => return Ok(Some((entry.gr_gid, unsafe { listed_members(&entry) }))),
            libc::ERANGE if buffer.len() < BUFFER_MAX => buffer.resize(buffer.len() * 2, 0),
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            other => return Err(lookup_error(other)),
        }
    }
}

/// The names in a group entry's NULL-terminated `gr_mem` array.
///
/// # Safety
/// `entry` must come from a successful getgrnam_r whose buffer is alive.
unsafe fn listed_members(entry: &libc::group) -> Vec<String> {
    let mut names = Vec::new();
    let mut at = entry.gr_mem;
    while !at.is_null() {
        // SAFETY: `at` walks the array getgrnam_r filled, which ends with a
        // NULL pointer; each entry is a NUL-terminated string.
        let member = unsafe { *at };
        if member.is_null() {
            break;
        }
        // SAFETY: see above.
        let text = unsafe { CStr::from_ptr(member) };
        names.push(text.to_string_lossy().into_owned());
        // SAFETY: the array did not end yet, so the next slot exists.
        at = unsafe { at.add(1) };
    }
    names
}

/// Every account whose primary gid is in `gids`. The enumeration uses the
/// process-wide passwd cursor; the command is single-threaded.
fn accounts_with_primary_group(gids: &[u32]) -> Vec<String> {
    let mut names = Vec::new();
    if gids.is_empty() {
        return names;
    }
    let mut buffer = vec![0u8; BUFFER_START];

    // SAFETY: rewinds the passwd enumeration; no other thread uses it.
    unsafe { libc::setpwent() };
    loop {
        // SAFETY: an all-zero passwd is a valid value of this C struct.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; the buffer has its length.
        let rc = lookup_status(unsafe {
            libc::getpwent_r(
                &mut entry,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                &mut result,
            )
        });
        if rc == libc::ERANGE && buffer.len() < BUFFER_MAX {
            let doubled = buffer.len() * 2;
            buffer.resize(doubled, 0);
            continue;
        }
        if rc != 0 || result.is_null() {
            break;
        }
        if gids.contains(&entry.pw_gid) && !entry.pw_name.is_null() {
            // SAFETY: pw_name points into `buffer`, NUL-terminated.
            let name = unsafe { CStr::from_ptr(entry.pw_name) };
            names.push(name.to_string_lossy().into_owned());
        }
    }
    // SAFETY: ends the enumeration started above.
    unsafe { libc::endpwent() };
    names
}

fn lookup_error(errno: i32) -> LookupError {
    LookupError {
        what: "group members".to_string(),
        errno,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_a_member_of_the_root_group() {
        let members = members_of(&["root".to_string()]).unwrap();
        assert!(members.contains(&"root".to_string()), "{members:?}");
    }

    #[test]
    fn missing_groups_have_no_members() {
        assert!(members_of(&["no-such-group-otpgate".to_string()])
            .unwrap()
            .is_empty());
    }
}
