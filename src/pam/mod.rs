//! The PAM boundary: the `pam_sm_*` entry points, reading PAM items, the one
//! mapping from an outcome to a PAM code, and the audit line. Panics stop
//! here and become PAM_SERVICE_ERR; the host process lives on.

pub mod conv;

use std::ffi::{c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use pamsm::{pam_module, Pam, PamError, PamFlags, PamLibExt, PamServiceModule};

use crate::audit::{Sink, Syslog};
use crate::login::{self, Environment, Failure, Outcome, Report, Request, SystemClock};
use crate::users::SystemDirectory;

const PAM_TTY: c_int = 3;

/// The PAM code for an outcome. The only place where results become PAM
/// codes; anything that is not a verified code is a refusal or an error.
pub fn pam_code(outcome: &Outcome) -> PamError {
    match outcome {
        Outcome::Success(_) | Outcome::Enrolled => PamError::SUCCESS,
        Outcome::NotMember => PamError::IGNORE,
        Outcome::Denied(_) => PamError::AUTH_ERR,
        Outcome::Locked { .. } => PamError::MAXTRIES,
        Outcome::UnknownUser | Outcome::BadUserName => PamError::USER_UNKNOWN,
        Outcome::Failed(Failure::Arguments(_) | Failure::Config(_) | Failure::Panic) => {
            PamError::SERVICE_ERR
        }
        Outcome::Failed(Failure::Lookup(_) | Failure::Store(_)) => PamError::AUTHINFO_UNAVAIL,
        Outcome::Failed(Failure::Conversation) => PamError::CONV_ERR,
    }
}

struct OtpGate;

impl PamServiceModule for OtpGate {
    fn authenticate(pamh: Pam, flags: PamFlags, args: Vec<String>) -> PamError {
        let caught = catch_unwind(AssertUnwindSafe(|| authenticate(&pamh, flags, &args)));
        caught.unwrap_or_else(|_| report_panic(&pamh, &args))
    }

    /// Nothing to set: a second factor gives no credentials. Succeeds so that
    /// applications calling pam_setcred after authentication go on.
    fn setcred(_: Pam, _: PamFlags, _: Vec<String>) -> PamError {
        PamError::SUCCESS
    }
}

pam_module!(OtpGate);

fn authenticate(pamh: &Pam, flags: PamFlags, args: &[String]) -> PamError {
    let request = read_request(pamh);
    // SAFETY: `pamh` is the live handle of this call and the conversation
    // does not outlive it.
    let conversation =
        unsafe { conv::PamConversation::new(raw_handle(pamh), flags.contains(PamFlags::SILENT)) };
    let env = Environment {
        conversation: &conversation,
        clock: &SystemClock,
        directory: &SystemDirectory,
        store: None,
    };

    let report = login::authenticate(args, &request, &env);
    send_audit(&report, &request);
    pam_code(&report.outcome)
}

fn report_panic(pamh: &Pam, args: &[String]) -> PamError {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let request = read_request(pamh);
        let report = login_report_for_panic(args);
        send_audit(&report, &request);
    }));
    PamError::SERVICE_ERR
}

fn login_report_for_panic(args: &[String]) -> Report {
    let (arguments, _) = login::parse_arguments(args);
    let mut report = Report::new(Outcome::Failed(Failure::Panic));
    report.audit_socket = crate::config::Config::load(&arguments.config)
        .ok()
        .map(|c| c.audit.socket);
    report
}

fn send_audit(report: &Report, request: &Request) {
    let socket = report
        .audit_socket
        .clone()
        .unwrap_or_else(|| "/dev/log".into());
    let service = String::from_utf8_lossy(&request.service).into_owned();
    let sink = Syslog::new(&socket, &service);
    let prefix = format!(
        "pam_otpgate({}:auth)",
        crate::audit::escape(&request.service)
    );
    if let Some((level, line)) = login::missing_groups_line(report) {
        sink.send(level, &prefix, &line);
    }
    if let Some((level, line)) = login::audit_line(report, request) {
        sink.send(level, &prefix, &line);
    }
}

fn read_request(pamh: &Pam) -> Request {
    let owned =
        |item: Result<Option<&CStr>, PamError>| item.ok().flatten().map(|c| c.to_bytes().to_vec());
    let user = pamh.get_user(None);
    let user_prompt_failed = matches!(user, Err(PamError::CONV_ERR | PamError::CONV_AGAIN));
    Request {
        service: owned(pamh.get_service()).unwrap_or_default(),
        user: owned(user),
        user_prompt_failed,
        rhost: owned(pamh.get_rhost()),
        tty: tty(pamh),
        ruser: owned(pamh.get_ruser()),
    }
}

fn raw_handle(pamh: &Pam) -> *mut c_void {
    // SAFETY: `Pam` is `#[repr(transparent)]` over libpam's handle pointer,
    // so its bytes are that pointer.
    unsafe { *(pamh as *const Pam).cast::<*mut c_void>() }
}

fn tty(pamh: &Pam) -> Option<Vec<u8>> {
    extern "C" {
        fn pam_get_item(pamh: *const c_void, item_type: c_int, item: *mut *const c_void) -> c_int;
    }
    let mut item: *const c_void = std::ptr::null();
    // SAFETY: the handle is live and `item` a valid out-pointer.
    let rc = unsafe { pam_get_item(raw_handle(pamh), PAM_TTY, &mut item) };
    if rc != 0 || item.is_null() {
        return None;
    }
    // SAFETY: PAM_TTY is a NUL-terminated string owned by libpam for the
    // life of the handle; we copy it at once.
    Some(unsafe { CStr::from_ptr(item.cast()) }.to_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use crate::login::Denial;
    use crate::store::StoreError;
    use crate::users::LookupError;
    use crate::verify::{Proof, Rejection};

    #[test]
    fn every_outcome_maps_to_its_pam_code() {
        let config_error = ConfigError::Parse {
            path: "p".into(),
            message: "m".into(),
        };
        let cases = [
            (Outcome::NotMember, PamError::IGNORE),
            (Outcome::Success(Proof::Code { step: 1 }), PamError::SUCCESS),
            (
                Outcome::Success(Proof::RecoveryCode { left: 1 }),
                PamError::SUCCESS,
            ),
            (Outcome::Enrolled, PamError::SUCCESS),
            (
                Outcome::Denied(Denial::Code(Rejection::WrongCode)),
                PamError::AUTH_ERR,
            ),
            (
                Outcome::Denied(Denial::Code(Rejection::Replay)),
                PamError::AUTH_ERR,
            ),
            (
                Outcome::Denied(Denial::Code(Rejection::Malformed)),
                PamError::AUTH_ERR,
            ),
            (Outcome::Denied(Denial::NotEnrolled), PamError::AUTH_ERR),
            (
                Outcome::Denied(Denial::EnrollmentFailed),
                PamError::AUTH_ERR,
            ),
            (Outcome::Locked { until: 1 }, PamError::MAXTRIES),
            (Outcome::UnknownUser, PamError::USER_UNKNOWN),
            (Outcome::BadUserName, PamError::USER_UNKNOWN),
            (
                Outcome::Failed(Failure::Arguments(vec!["x".into()])),
                PamError::SERVICE_ERR,
            ),
            (
                Outcome::Failed(Failure::Config(config_error)),
                PamError::SERVICE_ERR,
            ),
            (Outcome::Failed(Failure::Panic), PamError::SERVICE_ERR),
            (
                Outcome::Failed(Failure::Lookup(LookupError {
                    what: "u".into(),
                    errno: 5,
                })),
                PamError::AUTHINFO_UNAVAIL,
            ),
            (
                Outcome::Failed(Failure::Store(StoreError::Exists)),
                PamError::AUTHINFO_UNAVAIL,
            ),
            (Outcome::Failed(Failure::Conversation), PamError::CONV_ERR),
        ];
        for (outcome, code) in cases {
            assert_eq!(pam_code(&outcome) as i32, code as i32, "{outcome:?}");
        }
    }

    #[test]
    fn only_success_and_enrollment_are_pam_success() {
        let failures = [
            Failure::Panic,
            Failure::Conversation,
            Failure::Store(StoreError::Unavailable("x".into())),
        ];
        for failure in failures {
            let code = pam_code(&Outcome::Failed(failure)) as i32;
            assert_ne!(code, PamError::SUCCESS as i32);
            assert_ne!(code, PamError::IGNORE as i32);
        }
    }
}
