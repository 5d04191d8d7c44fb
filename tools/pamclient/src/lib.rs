//! pamclient: a small client of the real Linux-PAM library, for otpgate's
//! integration tests and benchmark.
//!
//! A [`Session`] is one PAM transaction whose stack is read from a folder of
//! the caller's choosing (`pam_start_confdir`), so tests never touch
//! `/etc/pam.d`. The application's side of the conversation is the
//! [`Conversation`] trait; [`ScriptedConversation`] answers from a queue,
//! records every message and can misbehave on purpose ([`ConvMode`]).
//! The `pam-drive` binary wraps all of it into one command.

mod codes;
mod conversation;
mod escape;
mod ffi;
mod process;
mod session;

pub use codes::*;
pub use conversation::{
    ConvMode, Conversation, Message, MessageLog, MessageStyle, Reply, ScriptedConversation,
};
pub use escape::escape_text;
pub use process::{warm_name_service, ProcessReport};
pub use session::{Item, Session};
