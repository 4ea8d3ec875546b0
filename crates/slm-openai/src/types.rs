//! The OpenAI API's JSON bodies as far as `slm` speaks them: chat and text completion requests,
//! their responses and stream chunks, token log-probabilities, usage and errors.
//!
//! One set of types serves both sides: `slm serve` parses requests with them and writes the
//! responses; the client (`crate::client`) writes requests and parses responses from any
//! OpenAI-compatible server (vLLM, SGLang, llama.cpp's `llama-server`, Ollama, `slm serve`).
//! Fields users rely on are typed; fields a request may carry that `slm` does not act on are
//! kept in `extra` so the server can refuse the ones that would change the answer
//! ([`ChatRequest::unsupported`]) instead of ignoring them silently.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `stop`: one string or a list of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    One(String),
    Many(Vec<String>),
}

impl StopField {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopField::One(s) => vec![s],
            StopField::Many(v) => v,
        }
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with no choices and the request's usage before `[DONE]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
}

/// One message of a conversation. `content` is a string, a list of content parts (only
/// `{"type": "text"}` parts are understood) or null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Value,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.to_string(),
            content: Value::String(content.to_string()),
        }
    }

    /// The message's text: the string, or the text parts joined; an error names a part kind
    /// that is not text.
    pub fn text(&self) -> Result<String, String> {
        match &self.content {
            Value::Null => Ok(String::new()),
            Value::String(s) => Ok(s.clone()),
            Value::Array(parts) => {
                let mut out = String::new();
                for p in parts {
                    match (p.get("type").and_then(Value::as_str), p.get("text")) {
                        (Some("text"), Some(Value::String(t))) => out.push_str(t),
                        (kind, _) => {
                            return Err(format!(
                                "content part of type {} is not supported (only text)",
                                kind.unwrap_or("(none)")
                            ))
                        }
                    }
                }
                Ok(out)
            }
            other => Err(format!(
                "message content must be a string or a list of text parts, got {}",
                json_kind(other)
            )),
        }
    }
}

pub use slm_core::json_kind;

/// Fields of the request that `slm` reads but that are the same for chat and completions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Not in OpenAI's API; vLLM, llama.cpp and Ollama take it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i64>,
    /// Not in OpenAI's API; vLLM and llama.cpp take it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: String,
    pub messages: Vec<ChatMessage>,
    /// The newer name of `max_tokens`; wins when both are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(flatten)]
    pub sampling: Sampling,
    /// Return the log-probability of each generated token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// With `logprobs`: also the `top_logprobs` most likely tokens at each position (0–20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// Every other field, kept so the server can refuse what it would otherwise ignore.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `prompt` of a text completion: a string, a list holding one string, or token ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PromptField {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    #[serde(default)]
    pub model: String,
    pub prompt: PromptField,
    #[serde(flatten)]
    pub sampling: Sampling,
    /// The number of most likely tokens to return at each position (0–20); the sampled
    /// token's log-probability is always included when this is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<bool>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Request fields other servers honour that `slm serve` does not: refused with a 400 when
/// present with a value that would change the answer.
const UNSUPPORTED: &[&str] = &[
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "logit_bias",
    "suffix",
    "best_of",
    "presence_penalty",
    "frequency_penalty",
    "grammar",
    "guided_json",
    "guided_regex",
    "guided_choice",
    "json_schema",
];

/// The first field in `extra` that is unsupported and not at its neutral value.
fn unsupported_in(extra: &BTreeMap<String, Value>) -> Option<String> {
    extra.iter().find_map(|(k, v)| {
        let neutral = match v {
            Value::Null => true,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            Value::String(s) => k == "tool_choice" && s == "none",
            Value::Bool(_) => false,
        };
        (UNSUPPORTED.contains(&k.as_str()) && !neutral).then(|| k.clone())
    })
}

impl ChatRequest {
    /// The most tokens to generate, by either name.
    pub fn max_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.sampling.max_tokens)
    }

    /// A field the request sets that `slm serve` would not honour, with why.
    pub fn unsupported(&self) -> Option<(String, String)> {
        if let Some(rf) = &self.response_format {
            let kind = rf.get("type").and_then(Value::as_str);
            if kind != Some("text") {
                return Some((
                    "response_format".into(),
                    format!(
                        "response_format {} is not supported: slm serve writes free text only",
                        kind.unwrap_or("(no type)")
                    ),
                ));
            }
        }
        unsupported_in(&self.extra).map(|k| (k.clone(), format!("`{k}` is not supported")))
    }
}

impl CompletionRequest {
    /// A field the request sets that `slm serve` would not honour, with why.
    pub fn unsupported(&self) -> Option<(String, String)> {
        if self.echo == Some(true) {
            return Some(("echo".into(), "`echo` is not supported".into()));
        }
        unsupported_in(&self.extra).map(|k| (k.clone(), format!("`{k}` is not supported")))
    }
}

/// Token counts of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// One candidate token and its log-probability (chat format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    /// The token's UTF-8 bytes (a token may hold part of a character).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
}

/// A generated token with its log-probability and the most likely alternatives (chat format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    #[serde(default)]
    pub top_logprobs: Vec<TopLogprob>,
}

/// `choices[i].logprobs` of a chat completion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChoiceLogprobs {
    #[serde(default)]
    pub content: Option<Vec<TokenLogprob>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    #[serde(default)]
    pub logprobs: Option<ChoiceLogprobs>,
    /// "stop" (end of turn, EOS or a stop string) or "length" (`max_tokens` or the context).
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The response of a chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    #[serde(default)]
    pub logprobs: Option<ChoiceLogprobs>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// One server-sent event of a streamed chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// `choices[i].logprobs` of a text completion (the legacy format).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f32>,
    /// One map per position: token → log-probability.
    pub top_logprobs: Vec<BTreeMap<String, f32>>,
    pub text_offset: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionChoice {
    pub index: u32,
    pub text: String,
    #[serde(default)]
    pub logprobs: Option<CompletionLogprobs>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The response (or, with `stream`, each chunk) of a text completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionResponse {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// `GET /v1/models` entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelInfo>,
}

/// The body of an error response: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_request_reads_what_clients_send() {
        let r: ChatRequest = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"system","content":"Be brief."},
                {"role":"user","content":[{"type":"text","text":"Hi "},{"type":"text","text":"there"}]}],
                "max_completion_tokens":5,"max_tokens":9,"temperature":0,"stop":"\n",
                "stream":true,"stream_options":{"include_usage":true},"logprobs":true,
                "top_logprobs":3,"user":"u1","presence_penalty":0}"#,
        )
        .unwrap();
        assert_eq!(r.max_tokens(), Some(5));
        assert_eq!(r.messages[1].text().unwrap(), "Hi there");
        assert_eq!(r.sampling.stop.clone().unwrap().into_vec(), vec!["\n"]);
        assert_eq!(
            r.sampling.stream_options.clone().unwrap().include_usage,
            Some(true)
        );
        // `user` is harmless and a zero penalty is neutral: nothing to refuse.
        assert_eq!(r.unsupported(), None);
        let with_tools: ChatRequest = serde_json::from_str(
            r#"{"messages":[],"tools":[{"type":"function"}],"response_format":{"type":"text"}}"#,
        )
        .unwrap();
        assert_eq!(with_tools.unsupported().unwrap().0, "tools");
        let json_mode: ChatRequest =
            serde_json::from_str(r#"{"messages":[],"response_format":{"type":"json_object"}}"#)
                .unwrap();
        assert!(json_mode.unsupported().unwrap().1.contains("json_object"));
        let image = ChatMessage {
            role: "user".into(),
            content: serde_json::json!([{"type": "image_url"}]),
        };
        assert!(image.text().unwrap_err().contains("image_url"));
    }

    #[test]
    fn completion_prompts_of_every_form() {
        for (body, want) in [
            (r#"{"prompt":"a"}"#, PromptField::Text("a".into())),
            (r#"{"prompt":["a"]}"#, PromptField::Texts(vec!["a".into()])),
            (r#"{"prompt":[1,2]}"#, PromptField::Tokens(vec![1, 2])),
        ] {
            let r: CompletionRequest = serde_json::from_str(body).unwrap();
            assert_eq!(r.prompt, want);
        }
        assert!(serde_json::from_str::<CompletionRequest>(r#"{"prompt":{"x":1}}"#).is_err());
    }
}
