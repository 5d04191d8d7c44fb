//! What the numbers were measured on: the processor, the kernel, the
//! filesystem under the state folders (which must be a real disk, not
//! tmpfs), the versions of the modules compared, and the load average.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

/// Filesystems that keep files in memory: fsync costs nothing there, so a
/// benchmark of durable state on them would mislead.
const MEMORY_FILESYSTEMS: [(i64, &str); 2] = [(0x0102_1994, "tmpfs"), (0x8584_58f6, "ramfs")];

const KNOWN_FILESYSTEMS: [(i64, &str); 4] = [
    (0xef53, "ext4"),
    (0x5846_5342, "xfs"),
    (0x9123_683e, "btrfs"),
    (0x2fc1_2fc1, "zfs"),
];

/// The filesystem type holding `path`, by statfs(2) magic number.
pub fn filesystem(path: &Path) -> Result<String, String> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut info: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid C string and `info` is writable.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut info) } != 0 {
        return Err(format!(
            "statfs {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    #[allow(clippy::unnecessary_cast)]
    let magic = info.f_type as i64;

    if let Some((_, name)) = MEMORY_FILESYSTEMS.iter().find(|(m, _)| *m == magic) {
        return Err(format!(
            "{} is on {name}: state must live on a real disk (set OTPGATE_BENCH_DIR)",
            path.display()
        ));
    }
    let name = KNOWN_FILESYSTEMS
        .iter()
        .find(|(m, _)| *m == magic)
        .map_or_else(|| format!("magic {magic:#x}"), |(_, name)| name.to_string());
    Ok(format!("{name}{}", mount_details(path)))
}

/// ` on /dev/vda mounted at / (rw,relatime)`, from /proc/self/mounts: the
/// entry with the longest mount point that holds `path`.
fn mount_details(path: &Path) -> String {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return String::new();
    };
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (fields.len() >= 4 && path.starts_with(fields[1])).then_some(fields)
        })
        .max_by_key(|fields| fields[1].len())
        .map(|f| format!(" on {} mounted at {} ({})", f[0], f[1], f[3]))
        .unwrap_or_default()
}

/// The processor's model name and the number of CPUs online.
pub fn processor() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cpus} CPUs")
}

/// The running kernel's release.
pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// The 1-minute load average: how busy the machine was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split(' ').next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

/// `package version` for each Debian package, as dpkg knows it.
pub fn package_versions(packages: &[&str]) -> String {
    let versions: Vec<String> = packages
        .iter()
        .map(|package| {
            let version = Command::new("dpkg-query")
                .args(["-W", "-f=${Version}", package])
                .output()
                .ok()
                .filter(|out| out.status.success())
                .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
                .unwrap_or_else(|| "not installed".to_string());
            format!("{package} {version}")
        })
        .collect();
    versions.join(", ")
}

/// The commit of the otpgate source the benchmark was built from.
pub fn source_commit() -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}
