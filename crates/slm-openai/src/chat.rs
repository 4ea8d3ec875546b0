//! A conversation with a remote server (`slm chat --url`): the history as messages, each
//! answer streamed through `/chat/completions` and appended to it. The server applies its
//! model's chat template and keeps to its context.

use crate::client::Client;
use crate::types::{ChatMessage, ChatRequest, Sampling};
use slm_core::Result;

/// What one answer was.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteReply {
    pub text: String,
    /// "stop", "length", ... as the server said; `None` when the stream ended without one.
    pub finish_reason: Option<String>,
    /// The answer was stopped by the caller (Ctrl-C).
    pub interrupted: bool,
}

pub struct RemoteChat {
    client: Client,
    /// The `model` field sent ("" lets the server choose).
    pub model: String,
    pub sampling: Sampling,
    system: Option<String>,
    history: Vec<ChatMessage>,
}

impl RemoteChat {
    pub fn new(client: Client, model: String, sampling: Sampling, system: Option<String>) -> Self {
        Self {
            client,
            model,
            sampling,
            system,
            history: Vec::new(),
        }
    }

    pub fn reset(&mut self) {
        self.history.clear();
    }

    pub fn history(&self) -> &[ChatMessage] {
        &self.history
    }

    /// Sends `message`, streaming the answer's text to `on_text`; `stop` is polled at every
    /// chunk (true ends the answer: the connection is dropped, the text so far is kept).
    pub fn send(
        &mut self,
        message: &str,
        on_text: &mut dyn FnMut(&str) -> Result<()>,
        stop: &dyn Fn() -> bool,
    ) -> Result<RemoteReply> {
        let mut messages = Vec::with_capacity(self.history.len() + 2);
        if let Some(s) = &self.system {
            messages.push(ChatMessage::new("system", s));
        }
        messages.extend(self.history.iter().cloned());
        messages.push(ChatMessage::new("user", message));
        let req = ChatRequest {
            model: self.model.clone(),
            messages,
            sampling: self.sampling.clone(),
            ..Default::default()
        };
        let mut text = String::new();
        let mut finish_reason = None;
        let mut interrupted = false;
        self.client.chat_stream(&req, &mut |chunk| {
            for c in &chunk.choices {
                if let Some(t) = &c.delta.content {
                    on_text(t)?;
                    text.push_str(t);
                }
                if c.finish_reason.is_some() {
                    finish_reason = c.finish_reason.clone();
                }
            }
            interrupted = stop();
            Ok(!interrupted)
        })?;
        self.history.push(ChatMessage::new("user", message));
        self.history.push(ChatMessage::new("assistant", &text));
        Ok(RemoteReply {
            text,
            finish_reason,
            interrupted,
        })
    }
}
