//! The application side of the PAM conversation, in safe Rust: the messages
//! a module sends, the replies an application can give (including the broken
//! ones hostile tests need), and a scripted conversation that answers from a
//! queue and records every message.

use std::collections::VecDeque;
use std::ffi::{CString, NulError};
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::codes::{PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON, PAM_TEXT_INFO};

/// The kind of a conversation message (`msg_style` in C).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageStyle {
    /// A prompt whose answer is not echoed (PAM_PROMPT_ECHO_OFF).
    PromptEchoOff,
    /// A prompt whose answer is echoed (PAM_PROMPT_ECHO_ON).
    PromptEchoOn,
    /// An error to show the user (PAM_ERROR_MSG).
    Error,
    /// Information to show the user (PAM_TEXT_INFO).
    Info,
    /// Any other style, such as Linux-PAM's radio or binary prompts.
    Other(i32),
}

impl MessageStyle {
    /// The style for a C `msg_style` value.
    pub fn from_raw(style: i32) -> MessageStyle {
        match style {
            PAM_PROMPT_ECHO_OFF => MessageStyle::PromptEchoOff,
            PAM_PROMPT_ECHO_ON => MessageStyle::PromptEchoOn,
            PAM_ERROR_MSG => MessageStyle::Error,
            PAM_TEXT_INFO => MessageStyle::Info,
            other => MessageStyle::Other(other),
        }
    }

    /// Whether the module expects an answer to this message.
    pub fn is_prompt(self) -> bool {
        matches!(
            self,
            MessageStyle::PromptEchoOff | MessageStyle::PromptEchoOn
        )
    }
}

impl fmt::Display for MessageStyle {
    /// Writes `prompt-echo-off`, `prompt-echo-on`, `error`, `info` or
    /// `other-<number>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageStyle::PromptEchoOff => f.write_str("prompt-echo-off"),
            MessageStyle::PromptEchoOn => f.write_str("prompt-echo-on"),
            MessageStyle::Error => f.write_str("error"),
            MessageStyle::Info => f.write_str("info"),
            MessageStyle::Other(style) => write!(f, "other-{style}"),
        }
    }
}

/// One message a module sent through the conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// What kind of message it is.
    pub style: MessageStyle,
    /// The text as the module sent it, without the final NUL (a NULL text
    /// pointer is recorded as empty).
    pub text: Vec<u8>,
}

/// What the application hands back to the module for one conversation call.
#[derive(Debug)]
pub enum Reply {
    /// One entry per message, in order: `Some` for an answer, `None` where
    /// the message needs none. The library turns each answer into a
    /// malloc'ed C string the module frees.
    Answers(Vec<Option<CString>>),
    /// The callback returns PAM_CONV_ERR and no reply array.
    Error,
    /// The callback returns PAM_SUCCESS but leaves the reply array NULL.
    NullArray,
    /// The callback returns PAM_SUCCESS with a reply array whose every
    /// `resp` field is NULL.
    NullResponses,
}

/// The application's side of the conversation.
///
/// The library calls it from inside `pam_authenticate`; a panic in it is
/// caught and becomes PAM_CONV_ERR.
pub trait Conversation {
    /// Answers one batch of messages from a module.
    fn converse(&mut self, messages: &[Message]) -> Reply;
}

/// How a [`ScriptedConversation`] behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConvMode {
    /// Answer prompts from the queue.
    #[default]
    Normal,
    /// Fail every call with PAM_CONV_ERR.
    Error,
    /// Claim success but return no reply array.
    NullArray,
    /// Claim success with a reply array of NULL answers.
    NullResponse,
}

/// Every message a conversation saw, shared with whoever reads it afterwards.
pub type MessageLog = Arc<Mutex<Vec<Message>>>;

/// A conversation that answers prompts from a queue of byte strings, in
/// order, and records every message it is shown into a shared log.
///
/// When the queue runs out, prompts get an empty answer. Messages that are
/// not prompts take no answer from the queue.
pub struct ScriptedConversation {
    answers: VecDeque<CString>,
    mode: ConvMode,
    log: MessageLog,
}

impl ScriptedConversation {
    /// A conversation answering with `answers`, behaving as `mode` says and
    /// recording into `log`.
    ///
    /// Fails when an answer holds a NUL byte, which a C string cannot carry.
    pub fn new<A: AsRef<[u8]>>(
        answers: &[A],
        mode: ConvMode,
        log: MessageLog,
    ) -> Result<ScriptedConversation, NulError> {
        let answers = answers
            .iter()
            .map(|answer| CString::new(answer.as_ref()))
            .collect::<Result<VecDeque<_>, _>>()?;
        Ok(ScriptedConversation { answers, mode, log })
    }

    /// Appends the messages to the shared log.
    fn record(&self, messages: &[Message]) {
        let mut log = self
            .log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        log.extend_from_slice(messages);
    }

    /// The next queued answer, or an empty one when the queue is empty.
    fn next_answer(&mut self) -> CString {
        self.answers.pop_front().unwrap_or_default()
    }

    /// One answer per message: queued answers for prompts, none otherwise.
    fn answer_all(&mut self, messages: &[Message]) -> Reply {
        let answers = messages
            .iter()
            .map(|message| message.style.is_prompt().then(|| self.next_answer()))
            .collect();
        Reply::Answers(answers)
    }
}

impl Conversation for ScriptedConversation {
    fn converse(&mut self, messages: &[Message]) -> Reply {
        self.record(messages);

        match self.mode {
            ConvMode::Normal => self.answer_all(messages),
            ConvMode::Error => Reply::Error,
            ConvMode::NullArray => Reply::NullArray,
            ConvMode::NullResponse => Reply::NullResponses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(style: MessageStyle, text: &str) -> Message {
        Message {
            style,
            text: text.as_bytes().to_vec(),
        }
    }

    fn answers_of(reply: Reply) -> Vec<Option<Vec<u8>>> {
        match reply {
            Reply::Answers(answers) => answers
                .into_iter()
                .map(|answer| answer.map(CString::into_bytes))
                .collect(),
            other => panic!("expected answers, got {other:?}"),
        }
    }

    #[test]
    fn prompts_take_answers_in_order_and_then_empty_ones() {
        let log = MessageLog::default();
        let answers: [&[u8]; 2] = [b"first", b"\xff\x01second"];
        let mut conversation = ScriptedConversation::new(&answers, ConvMode::Normal, log).unwrap();
        let batch = [
            message(MessageStyle::Info, "hello"),
            message(MessageStyle::PromptEchoOff, "Code: "),
        ];

        let first = answers_of(conversation.converse(&batch));
        let second = answers_of(conversation.converse(&batch[1..]));
        let third = answers_of(conversation.converse(&batch[1..]));

        assert_eq!(first, vec![None, Some(b"first".to_vec())]);
        assert_eq!(second, vec![Some(b"\xff\x01second".to_vec())]);
        assert_eq!(third, vec![Some(Vec::new())]);
    }

    #[test]
    fn every_mode_records_the_messages() {
        let modes = [
            ConvMode::Normal,
            ConvMode::Error,
            ConvMode::NullArray,
            ConvMode::NullResponse,
        ];
        for mode in modes {
            let log = MessageLog::default();
            let mut conversation =
                ScriptedConversation::new::<&str>(&[], mode, log.clone()).unwrap();

            conversation.converse(&[message(MessageStyle::Error, "oops")]);

            assert_eq!(
                log.lock().unwrap().as_slice(),
                &[message(MessageStyle::Error, "oops")]
            );
        }
    }

    #[test]
    fn hostile_modes_give_their_reply() {
        let log = MessageLog::default();
        let prompt = [message(MessageStyle::PromptEchoOn, "login: ")];
        let reply_for = |mode| {
            let mut conversation = ScriptedConversation::new(&["x"], mode, log.clone()).unwrap();
            conversation.converse(&prompt)
        };

        assert!(matches!(reply_for(ConvMode::Error), Reply::Error));
        assert!(matches!(reply_for(ConvMode::NullArray), Reply::NullArray));
        assert!(matches!(
            reply_for(ConvMode::NullResponse),
            Reply::NullResponses
        ));
    }

    #[test]
    fn answers_with_nul_are_refused() {
        let result = ScriptedConversation::new(&["a\0b"], ConvMode::Normal, MessageLog::default());

        assert!(result.is_err());
    }

    #[test]
    fn styles_have_their_labels() {
        assert_eq!(MessageStyle::from_raw(1).to_string(), "prompt-echo-off");
        assert_eq!(MessageStyle::from_raw(2).to_string(), "prompt-echo-on");
        assert_eq!(MessageStyle::from_raw(3).to_string(), "error");
        assert_eq!(MessageStyle::from_raw(4).to_string(), "info");
        assert_eq!(MessageStyle::from_raw(7).to_string(), "other-7");
    }
}
