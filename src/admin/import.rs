//! `otpgate import-google-authenticator USER FILE`: moves a user's
//! `~/.google_authenticator` into otpgate's store, leaving the file as it
//! was.
//!
//! What is carried over: the secret, the step size, the steps already used
//! (`DISALLOW_REUSE`; the newest becomes the starting `last_step`, so none
//! of them can be replayed) and the scratch codes, which become recovery
//! codes (stored as hashes). What is not: the window size and the rate
//! limit. The site's `[code] skew` and `[lockout]` apply to every user, so
//! one imported file cannot widen the window the administrator chose; the
//! command says when the file's window was wider.
//!
//! The file usually sits in the user's home, where the user controls it:
//! it is opened without following a link and without blocking, and must be
//! a regular file of at most 64 KiB before a byte is read.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use super::{exists_error, secret_error, Admin, AdminError, Done};
use crate::import::{self, GoogleAuthenticatorFile, MAX_FILE_BYTES};
use crate::recovery;
use crate::secret::{Secret, MIN_SECRET_BITS};
use crate::store::record::{UserRecord, SHORT_SECRET_BITS};
use crate::totp::{Algorithm, CodeSettings};
use crate::users::UserName;

/// google-authenticator always makes 6-digit codes.
const GOOGLE_DIGITS: u8 = 6;

impl Admin<'_> {
    /// Imports `path` for `user`. A secret under 128 bits needs
    /// `allow_short_secret`; an existing secret needs `force`.
    pub fn import_google_authenticator(
        &self,
        user: &UserName,
        path: &Path,
        allow_short_secret: bool,
        force: bool,
        out: &mut dyn Write,
    ) -> Result<Done, AdminError> {
        self.require_member(user)?;

        // Read and parse, refusing HOTP files and short secrets.
        let bytes = read_file(path)?;
        let file =
            import::parse(&bytes).map_err(|e| AdminError(format!("{}: {e}", path.display())))?;
        let record = record_from(&file, allow_short_secret, self.clock.now(), path)?;

        // Save with the newest used step as already used.
        let used_step = file.used_steps.iter().copied().max();
        self.store
            .enroll(user, &record, used_step, force)
            .map_err(|e| exists_error(e, user))?;

        self.report_import(out, user, &file, &record);
        Ok(Done {
            details: vec![
                ("source", "google-authenticator".to_string()),
                ("secret_bits", record.secret.bits().to_string()),
                ("recovery_codes", record.recovery_codes.len().to_string()),
                ("replace", force.to_string()),
            ],
        })
    }

    fn report_import(
        &self,
        out: &mut dyn Write,
        user: &UserName,
        file: &GoogleAuthenticatorFile,
        record: &UserRecord,
    ) {
        let _ = writeln!(
            out,
            "Imported {user}: a {}-bit secret, {}-second steps, {} recovery codes from the \
             scratch codes, {} used steps kept.",
            record.secret.bits(),
            record.code.period,
            record.recovery_codes.len(),
            file.used_steps.len()
        );
        if file.skew() > self.config.skew {
            let _ = writeln!(
                out,
                "Note: the file accepted {} steps either side of now; otpgate uses the \
                 configured skew of {}.",
                file.skew(),
                self.config.skew
            );
        }
        let newest_usable = record.code.step_at(self.clock.now()) + u64::from(self.config.skew);
        if file.used_steps.iter().any(|&step| step > newest_usable) {
            let _ = writeln!(
                out,
                "Warning: the file marks a step in the future as used (was the old server's \
                 clock ahead?); {user}'s codes are refused until that time passes."
            );
        }
        if record.short_secret {
            let _ = writeln!(
                out,
                "Warning: the secret is only {} bits; enroll {user} again soon (otpgate status \
                 flags short_secret).",
                record.secret.bits()
            );
        }
    }
}

/// The record an imported file gives.
fn record_from(
    file: &GoogleAuthenticatorFile,
    allow_short_secret: bool,
    now: i64,
    path: &Path,
) -> Result<UserRecord, AdminError> {
    let bits = file.secret_bits();
    if bits < MIN_SECRET_BITS && !allow_short_secret {
        return Err(AdminError(format!(
            "{}: the secret has {bits} bits, fewer than the {MIN_SECRET_BITS} otpgate \
             requires; import it with --allow-short-secret and enroll the user again soon",
            path.display()
        )));
    }

    let secret =
        Secret::from_bytes(file.secret.to_vec(), SHORT_SECRET_BITS).map_err(secret_error)?;
    let code = CodeSettings {
        digits: GOOGLE_DIGITS,
        period: file.step_seconds,
        algorithm: Algorithm::SHA1,
    };
    let mut record = UserRecord::new(secret, code, now);
    record.short_secret = bits < MIN_SECRET_BITS;
    record.recovery_codes = file
        .scratch_codes
        .iter()
        .map(|c| recovery::hash(c))
        .collect::<Result<_, _>>()
        .map_err(secret_error)?;
    Ok(record)
}

/// Reads the file with the checks the module comment lists.
fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, AdminError> {
    let shown = path.display();
    let cannot = |e: std::io::Error| AdminError(format!("cannot read {shown}: {e}"));
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(cannot)?;

    let metadata = file.metadata().map_err(cannot)?;
    let kind = metadata.file_type();
    if !kind.is_file() || kind.is_fifo() {
        return Err(AdminError(format!(
            "cannot read {shown}: not a regular file"
        )));
    }
    if metadata.len() > MAX_FILE_BYTES as u64 {
        return Err(AdminError(format!(
            "cannot read {shown}: larger than {MAX_FILE_BYTES} bytes"
        )));
    }

    let mut bytes = Zeroizing::new(Vec::new());
    Read::by_ref(&mut file)
        .take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD_FILE: &[u8] = b"JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n12345678\n";

    #[test]
    fn short_secrets_need_the_flag_and_are_marked() {
        let file = import::parse(OLD_FILE).unwrap();
        let path = Path::new("f");

        let refused = record_from(&file, false, 1, path).unwrap_err();
        let record = record_from(&file, true, 1, path).unwrap();

        assert!(refused.0.contains("80 bits") && refused.0.contains("--allow-short-secret"));
        assert!(record.short_secret);
        assert_eq!(record.recovery_codes.len(), 1);
        assert_eq!(recovery::find(&record.recovery_codes, b"12345678"), Some(0));
    }

    #[test]
    fn the_step_size_is_kept() {
        let text = b"KT54XCITFNNRTGVZOD475KJLOE\n\" STEP_SIZE 60\n\" TOTP_AUTH\n";
        let file = import::parse(text).unwrap();

        let record = record_from(&file, false, 1, Path::new("f")).unwrap();

        assert_eq!(record.code.period, 60);
        assert!(!record.short_secret);
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid path string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);

        let error = read_file(&fifo).unwrap_err();

        assert!(error.0.contains("not a regular file"), "{error}");
    }
}
