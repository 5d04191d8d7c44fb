//! The C declarations of the Linux-PAM application API this client uses
//! (from `<security/pam_appl.h>` and `<security/_pam_types.h>`). Nothing
//! here is called outside `session.rs`.

use std::ffi::{c_char, c_int, c_uint, c_void};

/// The opaque `pam_handle_t`.
#[repr(C)]
pub struct PamHandle {
    _private: [u8; 0],
}

/// `struct pam_message`.
#[repr(C)]
pub struct PamMessage {
    pub msg_style: c_int,
    pub msg: *const c_char,
}

/// `struct pam_response`; the module frees `resp` and the array itself.
#[repr(C)]
pub struct PamResponse {
    pub resp: *mut c_char,
    pub resp_retcode: c_int,
}

/// The conversation callback's C signature (Linux-PAM's layout: `msg` points
/// at an array of `num_msg` pointers).
pub type ConvFn = extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

/// The PAM_FAIL_DELAY item's C signature.
pub type DelayFn = extern "C" fn(retval: c_int, usec_delay: c_uint, appdata_ptr: *mut c_void);

/// `struct pam_conv`.
#[repr(C)]
pub struct PamConv {
    pub conv: Option<ConvFn>,
    pub appdata_ptr: *mut c_void,
}

/// Item number of the tty name.
pub const PAM_TTY: c_int = 3;
/// Item number of the remote host name.
pub const PAM_RHOST: c_int = 4;
/// Item number of the remote user name.
pub const PAM_RUSER: c_int = 8;
/// Item number of the application's fail-delay function.
pub const PAM_FAIL_DELAY: c_int = 10;

#[link(name = "pam")]
extern "C" {
    pub fn pam_start_confdir(
        service_name: *const c_char,
        user: *const c_char,
        pam_conversation: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut PamHandle,
    ) -> c_int;

    pub fn pam_end(pamh: *mut PamHandle, pam_status: c_int) -> c_int;

    pub fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;

    pub fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
}
