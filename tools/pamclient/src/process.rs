//! A snapshot of the process state a PAM module could disturb: open
//! descriptors, user and group ids, supplementary groups. Tests compare the
//! snapshot before and after authenticating to catch leaks and privilege
//! changes left behind.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io;

/// The process state at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessReport {
    /// The descriptors open, not counting the one used to list them.
    pub fds: BTreeSet<i32>,
    /// Real, effective and saved user id.
    pub uid: [u32; 3],
    /// Real, effective and saved group id.
    pub gid: [u32; 3],
    /// Supplementary group ids, sorted.
    pub groups: Vec<u32>,
    /// Descriptors not open at the baseline that lack FD_CLOEXEC.
    pub cloexec_leaks: BTreeSet<i32>,
}

impl ProcessReport {
    /// Takes a snapshot, counting as leaks the descriptors absent from
    /// `baseline` that lack FD_CLOEXEC.
    pub fn take(baseline: &BTreeSet<i32>) -> io::Result<ProcessReport> {
        let fds = open_fds()?;
        let cloexec_leaks = fds
            .difference(baseline)
            .copied()
            .filter(|&fd| !has_cloexec(fd))
            .collect();

        Ok(ProcessReport {
            fds,
            uid: user_ids()?,
            gid: group_ids()?,
            groups: supplementary_groups()?,
            cloexec_leaks,
        })
    }
}

impl ProcessReport {
    /// Takes the first snapshot, which later ones are compared with; it
    /// counts no leaks by definition.
    pub fn take_baseline() -> io::Result<ProcessReport> {
        let mut report = ProcessReport::take(&BTreeSet::new())?;
        report.cloexec_leaks.clear();
        Ok(report)
    }
}

/// Looks up root's user and group entries once, so that the name service
/// opens what it keeps open for the life of the process (nss_wrapper keeps
/// its passwd and group files open) before the first snapshot is taken and
/// is not counted as growth later.
pub fn warm_name_service() {
    // SAFETY: both take a valid C string and return NULL or a pointer to
    // static storage, which is ignored; no other thread calls them now.
    unsafe {
        libc::getpwnam(c"root".as_ptr());
        libc::getgrnam(c"root".as_ptr());
    }
}

impl fmt::Display for ProcessReport {
    /// `fds=N uid=R,E,S gid=R,E,S groups=G1,G2 cloexec_leaks=N`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fds={} uid={} gid={} groups={} cloexec_leaks={}",
            self.fds.len(),
            join(&self.uid),
            join(&self.gid),
            join(&self.groups),
            self.cloexec_leaks.len()
        )
    }
}

fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// The open descriptors: the entries of /proc/self/fd that are still open
/// once the listing's own descriptor is closed.
fn open_fds() -> io::Result<BTreeSet<i32>> {
    let listed: Vec<i32> = fs::read_dir("/proc/self/fd")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();

    Ok(listed
        .into_iter()
        .filter(|&fd| fd_flags(fd).is_some())
        .collect())
}

/// The descriptor flags, or `None` when the descriptor is not open.
fn fd_flags(fd: i32) -> Option<i32> {
    // SAFETY: F_GETFD only reads the flags and fails harmlessly on a closed
    // descriptor.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    (flags >= 0).then_some(flags)
}

fn has_cloexec(fd: i32) -> bool {
    fd_flags(fd).is_some_and(|flags| flags & libc::FD_CLOEXEC != 0)
}

fn user_ids() -> io::Result<[u32; 3]> {
    let mut ids = [0; 3];
    let [real, effective, saved] = &mut ids;

    // SAFETY: the three pointers are valid, distinct places for a uid_t.
    let status = unsafe { libc::getresuid(real, effective, saved) };

    status_to_io(status).map(|()| ids)
}

fn group_ids() -> io::Result<[u32; 3]> {
    let mut ids = [0; 3];
    let [real, effective, saved] = &mut ids;

    // SAFETY: the three pointers are valid, distinct places for a gid_t.
    let status = unsafe { libc::getresgid(real, effective, saved) };

    status_to_io(status).map(|()| ids)
}

fn supplementary_groups() -> io::Result<Vec<u32>> {
    // SAFETY: with a size of 0, getgroups only returns the count.
    let count = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let mut groups = vec![0; usize::try_from(count).map_err(|_| io::Error::last_os_error())?];

    // SAFETY: the buffer holds `count` gid_t values.
    let filled = unsafe { libc::getgroups(count, groups.as_mut_ptr()) };

    groups.truncate(usize::try_from(filled).map_err(|_| io::Error::last_os_error())?);
    groups.sort_unstable();
    Ok(groups)
}

fn status_to_io(status: i32) -> io::Result<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_new_descriptor_without_cloexec_is_a_leak() {
        let baseline = ProcessReport::take(&BTreeSet::new()).unwrap().fds;
        let file = fs::File::open("/dev/null").unwrap();
        let fd = file.as_raw_fd();

        let with_cloexec = ProcessReport::take(&baseline).unwrap();
        // SAFETY: `fd` is open for as long as `file` lives; clearing the
        // flags changes nothing else.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
        let without_cloexec = ProcessReport::take(&baseline).unwrap();

        assert!(with_cloexec.fds.contains(&fd));
        assert!(!with_cloexec.cloexec_leaks.contains(&fd));
        assert!(without_cloexec.cloexec_leaks.contains(&fd));
    }

    #[test]
    fn the_line_has_the_documented_shape() {
        let report = ProcessReport {
            fds: BTreeSet::from([0, 1, 2]),
            uid: [0, 0, 0],
            gid: [1, 2, 3],
            groups: vec![4, 27],
            cloexec_leaks: BTreeSet::new(),
        };

        assert_eq!(
            report.to_string(),
            "fds=3 uid=0,0,0 gid=1,2,3 groups=4,27 cloexec_leaks=0"
        );
    }
}
