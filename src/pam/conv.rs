//! The PAM conversation, done through libpam's own `pam_prompt`, which
//! handles a missing conversation, a NULL reply array and a NULL reply
//! string. Replies are copied into wiped memory and the C copy is wiped and
//! freed at once.

use std::ffi::{c_char, c_int, c_void, CStr, CString};

use zeroize::Zeroizing;

use crate::login::{Conversation, ConversationError};

const PAM_SUCCESS: c_int = 0;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;

/// Replies longer than this are cut before they reach our code; a code is
/// never that long, and the whole C string is still wiped.
const MAX_REPLY: usize = 4096;

extern "C" {
    fn pam_prompt(
        pamh: *mut c_void,
        style: c_int,
        response: *mut *mut c_char,
        fmt: *const c_char,
        ...
    ) -> c_int;
}

/// The conversation of one PAM handle.
pub struct PamConversation {
    handle: *mut c_void,
    /// PAM_SILENT: the application asked for no informational or error
    /// messages; prompts are still sent.
    silent: bool,
}

impl PamConversation {
    /// # Safety
    /// `handle` must be the live PAM handle passed to the current
    /// `pam_sm_*` call, and the value must not outlive that call.
    pub unsafe fn new(handle: *mut c_void, silent: bool) -> PamConversation {
        PamConversation { handle, silent }
    }

    fn send(
        &self,
        style: c_int,
        text: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, ConversationError> {
        let message = CString::new(text).map_err(|_| ConversationError)?;
        let mut response: *mut c_char = std::ptr::null_mut();
        // SAFETY: the handle is live (see `new`); "%s" takes exactly the one
        // C string we pass, and `response` is a valid out-pointer.
        let rc = unsafe {
            pam_prompt(
                self.handle,
                style,
                &mut response,
                c"%s".as_ptr(),
                message.as_ptr(),
            )
        };
        // SAFETY: `response` is NULL or a malloc'ed C string that we own.
        let reply = unsafe { take_response(response) };
        if rc != PAM_SUCCESS {
            return Err(ConversationError);
        }
        Ok(reply)
    }
}

/// Copies a reply into wiped memory, then wipes and frees the C string.
///
/// # Safety
/// `response` must be NULL or a NUL-terminated string from malloc that the
/// caller owns and does not use afterwards.
unsafe fn take_response(response: *mut c_char) -> Option<Zeroizing<Vec<u8>>> {
    if response.is_null() {
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated per this function's contract.
    let bytes = unsafe { CStr::from_ptr(response) }.to_bytes();
    let len = bytes.len();
    let copy = Zeroizing::new(bytes[..len.min(MAX_REPLY)].to_vec());
    // SAFETY: the string has `len` bytes before its NUL; we own it.
    unsafe {
        let slice = std::slice::from_raw_parts_mut(response.cast::<u8>(), len);
        zeroize::Zeroize::zeroize(slice);
        libc::free(response.cast());
    }
    Some(copy)
}

impl Conversation for PamConversation {
    fn ask_hidden(&self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
        // A NULL reply string is a refusal, never an empty code.
        self.send(PAM_PROMPT_ECHO_OFF, prompt)?
            .ok_or(ConversationError)
    }

    fn info(&self, text: &str) -> Result<(), ConversationError> {
        if self.silent {
            return Ok(());
        }
        self.send(PAM_TEXT_INFO, text).map(|_| ())
    }

    fn error(&self, text: &str) -> Result<(), ConversationError> {
        if self.silent {
            return Ok(());
        }
        self.send(PAM_ERROR_MSG, text).map(|_| ())
    }
}
