//! A PAM transaction of the real Linux-PAM library behind a safe type: start,
//! set items, authenticate, and end on drop. The two callbacks libpam calls
//! back into (the conversation and the fail delay) live here too, so every
//! `unsafe` block of the PAM boundary is in this file.

use std::ffi::{c_int, c_uint, c_void, CStr, CString};
use std::mem::size_of;
use std::os::unix::ffi::OsStrExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::ptr::{self, NonNull};

use crate::codes::{PAM_BAD_ITEM, PAM_BUF_ERR, PAM_CONV_ERR, PAM_MAX_NUM_MSG, PAM_SUCCESS};
use crate::conversation::{Conversation, Message, MessageStyle, Reply};
use crate::ffi::{self, PamConv, PamHandle, PamMessage, PamResponse};

/// The string items an application may set before authenticating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    /// PAM_RHOST, the remote host name.
    Rhost,
    /// PAM_TTY, the terminal name.
    Tty,
    /// PAM_RUSER, the remote user name.
    Ruser,
}

impl Item {
    fn raw(self) -> c_int {
        match self {
            Item::Rhost => ffi::PAM_RHOST,
            Item::Tty => ffi::PAM_TTY,
            Item::Ruser => ffi::PAM_RUSER,
        }
    }
}

/// What the callbacks reach through `appdata_ptr`. It stays at one heap
/// address from `pam_start_confdir` until after `pam_end`.
struct CallbackState {
    pam_conv: PamConv,
    conversation: Box<dyn Conversation>,
    fail_delays: Vec<u32>,
}

/// One PAM transaction (one `pam_start_confdir` .. `pam_end`).
pub struct Session {
    handle: NonNull<PamHandle>,
    state: NonNull<CallbackState>,
    last_status: c_int,
}

impl Session {
    /// Starts a transaction for `service`, whose stack is read from the file
    /// of that name in `confdir`. `user` may be `None`, in which case a module
    /// asks for it through the conversation.
    ///
    /// Returns the code `pam_start_confdir` gave on failure, or PAM_BAD_ITEM
    /// when the service, user or folder holds a NUL byte. With Linux-PAM
    /// 1.5.2, a service file that is missing (with no `other` file beside it)
    /// already fails here, with PAM_ABORT; a module path that does not exist
    /// only shows at `authenticate`, as PAM_MODULE_UNKNOWN.
    pub fn start_confdir(
        service: &str,
        user: Option<&[u8]>,
        confdir: &Path,
        conversation: Box<dyn Conversation>,
    ) -> Result<Session, i32> {
        // Turn every argument into a C string first, so a NUL byte fails early.
        let service = c_string(service.as_bytes())?;
        let user = user.map(c_string).transpose()?;
        let confdir = c_string(confdir.as_os_str().as_bytes())?;
        let user_ptr = user.as_ref().map_or(ptr::null(), |user| user.as_ptr());

        // The callback state gets its address before libpam sees it.
        let state = CallbackState::leak(conversation);

        let mut handle = ptr::null_mut();
        // SAFETY: the strings are valid C strings living across the call, the
        // pam_conv struct lives in `state` (live, not borrowed elsewhere)
        // until after pam_end, and `handle` is a valid place for libpam to
        // write the new handle into.
        let status = unsafe {
            ffi::pam_start_confdir(
                service.as_ptr(),
                user_ptr,
                &state.as_ref().pam_conv,
                confdir.as_ptr(),
                &mut handle,
            )
        };

        Session::from_start(status, handle, state)
    }

    /// The session for a successful start, or the start's error after
    /// freeing the callback state (libpam frees its own handle on failure).
    fn from_start(
        status: c_int,
        handle: *mut PamHandle,
        state: NonNull<CallbackState>,
    ) -> Result<Session, i32> {
        match NonNull::new(handle) {
            Some(handle) if status == PAM_SUCCESS => Ok(Session {
                handle,
                state,
                last_status: PAM_SUCCESS,
            }),
            _ => {
                // SAFETY: libpam failed to start, so nothing refers to the state.
                unsafe { CallbackState::free(state) };
                Err(if status == PAM_SUCCESS {
                    PAM_BUF_ERR
                } else {
                    status
                })
            }
        }
    }

    /// Sets a string item. The value may hold any bytes but NUL, which gives
    /// PAM_BAD_ITEM; otherwise returns what `pam_set_item` returned.
    pub fn set_item_str(&mut self, item: Item, value: &[u8]) -> Result<(), i32> {
        let value = c_string(value)?;

        // SAFETY: the handle is live and libpam copies the string it is given.
        let status =
            unsafe { ffi::pam_set_item(self.handle.as_ptr(), item.raw(), value.as_ptr().cast()) };

        status_to_result(status)
    }

    /// Installs a PAM_FAIL_DELAY function that records each delay libpam
    /// would have slept for (see [`Session::fail_delays`]) instead of sleeping.
    pub fn skip_fail_delay(&mut self) -> Result<(), i32> {
        let delay: ffi::DelayFn = record_delay;

        // SAFETY: the handle is live; PAM_FAIL_DELAY takes a function pointer
        // of exactly this signature, which stays valid for the whole program.
        let status = unsafe {
            ffi::pam_set_item(
                self.handle.as_ptr(),
                ffi::PAM_FAIL_DELAY,
                delay as *const c_void,
            )
        };

        status_to_result(status)
    }

    /// The delays in microseconds libpam asked for since
    /// [`Session::skip_fail_delay`], one per call of the delay function.
    pub fn fail_delays(&self) -> Vec<u32> {
        // SAFETY: callbacks only run inside `authenticate`, which needs
        // `&mut self`, so none is touching the state now.
        unsafe { self.state.as_ref() }.fail_delays.clone()
    }

    /// Runs `pam_authenticate` with `flags` and returns its code.
    pub fn authenticate(&mut self, flags: i32) -> i32 {
        // SAFETY: the handle is live; libpam calls back into the state, which
        // lives at least as long as the handle.
        let status = unsafe { ffi::pam_authenticate(self.handle.as_ptr(), flags) };

        self.last_status = status;
        status
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: the handle is live and is never used again after pam_end.
        unsafe { ffi::pam_end(self.handle.as_ptr(), self.last_status) };

        // SAFETY: pam_end is done, so libpam no longer holds the state.
        unsafe { CallbackState::free(self.state) };
    }
}

impl CallbackState {
    /// Puts a new state on the heap, pointing its `appdata_ptr` at itself.
    fn leak(conversation: Box<dyn Conversation>) -> NonNull<CallbackState> {
        let state = Box::new(CallbackState {
            pam_conv: PamConv {
                conv: Some(converse),
                appdata_ptr: ptr::null_mut(),
            },
            conversation,
            fail_delays: Vec::new(),
        });
        let state = NonNull::from(Box::leak(state));

        // SAFETY: the state was just leaked and nothing else refers to it yet.
        unsafe { (*state.as_ptr()).pam_conv.appdata_ptr = state.as_ptr().cast() };
        state
    }

    /// Frees a state made by [`CallbackState::leak`].
    ///
    /// # Safety
    /// Nothing may use the state afterwards, libpam included.
    unsafe fn free(state: NonNull<CallbackState>) {
        // SAFETY: the state came from Box::leak and the caller vouches it is
        // no longer in use.
        drop(unsafe { Box::from_raw(state.as_ptr()) });
    }
}

/// A C string of `bytes`, or PAM_BAD_ITEM when they hold a NUL.
fn c_string(bytes: &[u8]) -> Result<CString, i32> {
    CString::new(bytes).map_err(|_| PAM_BAD_ITEM)
}

fn status_to_result(status: c_int) -> Result<(), i32> {
    match status {
        PAM_SUCCESS => Ok(()),
        error => Err(error),
    }
}

/// The conversation callback handed to libpam. A panic in the application's
/// conversation is caught here and becomes PAM_CONV_ERR.
extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int {
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: libpam calls this with the arguments of the conversation
        // contract, which is what converse_checked asks for; it checks every
        // pointer for NULL itself.
        unsafe { converse_checked(num_msg, msg, resp, appdata_ptr) }
    }));
    outcome.unwrap_or(PAM_CONV_ERR)
}

/// The conversation: reads the messages, asks the application, writes the
/// reply.
///
/// # Safety
/// `msg` must be NULL or point at `num_msg` pointers, each NULL or pointing
/// at a valid `pam_message`; `resp` must be NULL or writable; `appdata_ptr`
/// must be NULL or the state of a live [`Session`] whose conversation no one
/// else is using.
unsafe fn converse_checked(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int {
    // Refuse a call without a place for the reply or without our state.
    if resp.is_null() || appdata_ptr.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: `resp` is not NULL and the caller vouches it is writable.
    unsafe { *resp = ptr::null_mut() };

    // Copy the messages out of libpam's memory.
    // SAFETY: the caller vouches for `msg` and `num_msg`.
    let Some(messages) = (unsafe { read_messages(num_msg, msg) }) else {
        return PAM_CONV_ERR;
    };

    // Ask the application.
    let state = appdata_ptr.cast::<CallbackState>();
    // SAFETY: the caller vouches `state` is a live session's state whose
    // conversation is not borrowed elsewhere.
    let conversation = unsafe { &mut (*state).conversation };
    let reply = conversation.converse(&messages);

    // SAFETY: `resp` is writable, as above.
    unsafe { write_reply(reply, messages.len(), resp) }
}

/// The messages of one conversation call, or `None` when the call is
/// malformed (a count out of range, a NULL array or a NULL message).
///
/// # Safety
/// `msg` must be NULL or point at `num_msg` pointers, each NULL or pointing
/// at a valid `pam_message`.
unsafe fn read_messages(num_msg: c_int, msg: *mut *const PamMessage) -> Option<Vec<Message>> {
    if msg.is_null() || !(1..=PAM_MAX_NUM_MSG).contains(&num_msg) {
        return None;
    }
    let count = usize::try_from(num_msg).ok()?;

    (0..count)
        .map(|index| {
            // SAFETY: `index` is below the array's length `num_msg`.
            let entry = unsafe { *msg.add(index) };
            // SAFETY: the caller vouches each entry is NULL or valid.
            unsafe { read_message(entry) }
        })
        .collect()
}

/// One message, or `None` for a NULL pointer. A NULL text reads as empty.
///
/// # Safety
/// `entry` must be NULL or point at a valid `pam_message`.
unsafe fn read_message(entry: *const PamMessage) -> Option<Message> {
    // SAFETY: the caller vouches `entry` is NULL or valid.
    let message = unsafe { entry.as_ref() }?;
    let text = if message.msg.is_null() {
        Vec::new()
    } else {
        // SAFETY: a non-NULL `msg` of a valid message is a C string.
        unsafe { CStr::from_ptr(message.msg) }.to_bytes().to_vec()
    };

    Some(Message {
        style: MessageStyle::from_raw(message.msg_style),
        text,
    })
}

/// Turns the application's reply into what libpam expects and returns the
/// callback's code.
///
/// # Safety
/// `resp` must be writable.
unsafe fn write_reply(reply: Reply, count: usize, resp: *mut *mut PamResponse) -> c_int {
    let answers = match reply {
        Reply::Error => return PAM_CONV_ERR,
        Reply::NullArray => return PAM_SUCCESS,
        Reply::NullResponses => vec![None; count],
        Reply::Answers(answers) if answers.len() == count => answers,
        Reply::Answers(_) => return PAM_CONV_ERR,
    };

    let Some(array) = allocate_responses(&answers) else {
        return PAM_BUF_ERR;
    };
    // SAFETY: the caller vouches `resp` is writable.
    unsafe { *resp = array };
    PAM_SUCCESS
}

/// A calloc'ed response array holding a strdup'ed copy of each answer (NULL
/// where there is none), which the module frees; `None` when out of memory.
fn allocate_responses(answers: &[Option<CString>]) -> Option<*mut PamResponse> {
    // SAFETY: calloc has no preconditions; all-zero bytes are a valid
    // PamResponse (NULL answer, code 0).
    let array = unsafe { libc::calloc(answers.len().max(1), size_of::<PamResponse>()) };
    let array = array.cast::<PamResponse>();
    if array.is_null() {
        return None;
    }

    for (index, answer) in answers.iter().enumerate() {
        let Some(answer) = answer else { continue };
        // SAFETY: `answer` is a valid C string; strdup returns a malloc'ed
        // copy or NULL.
        let copy = unsafe { libc::strdup(answer.as_ptr()) };
        if copy.is_null() {
            // SAFETY: `array` holds `answers.len()` entries, each NULL or
            // malloc'ed by the loop above.
            unsafe { free_responses(array, answers.len()) };
            return None;
        }
        // SAFETY: `index` is below the array's length.
        unsafe { (*array.add(index)).resp = copy };
    }
    Some(array)
}

/// Frees a response array and its answers.
///
/// # Safety
/// `array` must be a malloc'ed array of `count` responses, each answer NULL
/// or malloc'ed, none used afterwards.
unsafe fn free_responses(array: *mut PamResponse, count: usize) {
    for index in 0..count {
        // SAFETY: `index` is below `count`; the answer is NULL or malloc'ed.
        unsafe { libc::free((*array.add(index)).resp.cast()) };
    }
    // SAFETY: the array itself is malloc'ed and no longer used.
    unsafe { libc::free(array.cast()) };
}

/// The PAM_FAIL_DELAY function: records the delay instead of sleeping.
extern "C" fn record_delay(_retval: c_int, usec_delay: c_uint, appdata_ptr: *mut c_void) {
    let state = appdata_ptr.cast::<CallbackState>();
    if state.is_null() {
        return;
    }

    let _ = panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: libpam passes the conversation's appdata_ptr, which is the
        // live session's state; the conversation callback is not running
        // while libpam applies the delay.
        let delays = unsafe { &mut (*state).fail_delays };
        delays.push(usec_delay);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{ConvMode, MessageLog, ScriptedConversation};

    /// Calls the callback the way libpam does, with a fresh state.
    fn call_converse(mode: ConvMode, messages: &[(i32, &CStr)]) -> (c_int, Vec<Option<Vec<u8>>>) {
        let conversation = ScriptedConversation::new(&["answer"], mode, MessageLog::default());
        let state = CallbackState::leak(Box::new(conversation.unwrap()));
        let structs: Vec<PamMessage> = messages
            .iter()
            .map(|(style, text)| PamMessage {
                msg_style: *style,
                msg: text.as_ptr(),
            })
            .collect();
        let mut pointers: Vec<*const PamMessage> = structs.iter().map(ptr::from_ref).collect();
        let mut resp = ptr::null_mut();

        let count = c_int::try_from(pointers.len()).unwrap();
        let status = converse(
            count,
            pointers.as_mut_ptr(),
            &mut resp,
            state.as_ptr().cast(),
        );

        // SAFETY: the call is over; the reply, if any, is ours to read and free.
        let answers = unsafe { take_reply(resp, pointers.len()) };
        // SAFETY: nothing refers to the state any more.
        unsafe { CallbackState::free(state) };
        (status, answers)
    }

    /// Reads and frees a reply array (NULL gives an empty list).
    ///
    /// # Safety
    /// `resp` must be NULL or a reply array of `count` entries made by
    /// `allocate_responses`.
    unsafe fn take_reply(resp: *mut PamResponse, count: usize) -> Vec<Option<Vec<u8>>> {
        if resp.is_null() {
            return Vec::new();
        }
        let answers = (0..count)
            .map(|index| {
                // SAFETY: `index` is below `count`.
                let answer = unsafe { (*resp.add(index)).resp };
                // SAFETY: a non-NULL answer is a C string.
                (!answer.is_null()).then(|| unsafe { CStr::from_ptr(answer) }.to_bytes().to_vec())
            })
            .collect();
        // SAFETY: the array came from allocate_responses.
        unsafe { free_responses(resp, count) };
        answers
    }

    #[test]
    fn normal_mode_answers_prompts_only() {
        let (status, answers) = call_converse(ConvMode::Normal, &[(4, c"hi"), (1, c"Code: ")]);

        assert_eq!(status, PAM_SUCCESS);
        assert_eq!(answers, vec![None, Some(b"answer".to_vec())]);
    }

    #[test]
    fn hostile_modes_reach_libpam_as_described() {
        let prompt = [(1, c"Code: ")];

        assert_eq!(
            call_converse(ConvMode::Error, &prompt),
            (PAM_CONV_ERR, vec![])
        );
        assert_eq!(
            call_converse(ConvMode::NullArray, &prompt),
            (PAM_SUCCESS, vec![])
        );
        assert_eq!(
            call_converse(ConvMode::NullResponse, &prompt),
            (PAM_SUCCESS, vec![None])
        );
    }

    #[test]
    fn malformed_calls_are_refused() {
        let state = CallbackState::leak(Box::new(
            ScriptedConversation::new::<&str>(&[], ConvMode::Normal, MessageLog::default())
                .unwrap(),
        ));
        let mut resp = ptr::null_mut();
        let mut null_entry: *const PamMessage = ptr::null();

        let no_messages = converse(0, &mut null_entry, &mut resp, state.as_ptr().cast());
        let null_message = converse(1, &mut null_entry, &mut resp, state.as_ptr().cast());
        let no_state = converse(1, &mut null_entry, &mut resp, ptr::null_mut());

        assert_eq!([no_messages, null_message, no_state], [PAM_CONV_ERR; 3]);
        assert!(resp.is_null());
        // SAFETY: the calls are over and nothing refers to the state.
        unsafe { CallbackState::free(state) };
    }

    struct Panicking;

    impl Conversation for Panicking {
        fn converse(&mut self, _messages: &[Message]) -> Reply {
            panic!("the application's conversation panicked");
        }
    }

    #[test]
    fn a_panicking_conversation_gives_conv_err() {
        let state = CallbackState::leak(Box::new(Panicking));
        let message = PamMessage {
            msg_style: 1,
            msg: c"Code: ".as_ptr(),
        };
        let mut entry: *const PamMessage = &message;
        let mut resp = ptr::null_mut();

        let status = converse(1, &mut entry, &mut resp, state.as_ptr().cast());

        assert_eq!(status, PAM_CONV_ERR);
        assert!(resp.is_null());
        // SAFETY: the call is over and nothing refers to the state.
        unsafe { CallbackState::free(state) };
    }
}
