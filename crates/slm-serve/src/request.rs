//! From a request body to what the engine runs: parse the JSON (a clear 400 for malformed
//! bodies and wrong types), refuse what `slm serve` would not honour, check the ranges, and
//! turn messages or a prompt into token ids within the context.

use crate::engine::GenParams;
use slm_data::chat::{ChatTemplate, Message};
use slm_data::tokenizer::Tokenizer;
use slm_infer::SamplerConfig;
use slm_openai::{ChatRequest, CompletionRequest, PromptField, Sampling};

/// An error answered to the client: HTTP status, message and the offending parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
}

impl ApiError {
    pub fn bad(message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            status: 400,
            message: message.into(),
            param: param.map(str::to_string),
        }
    }

    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
        }
    }

    /// OpenAI's error type name for the status.
    pub fn kind(&self) -> &'static str {
        match self.status {
            400 | 404 | 413 | 422 => "invalid_request_error",
            401 => "authentication_error",
            429 => "rate_limit_error",
            503 => "service_unavailable",
            504 => "timeout",
            _ => "server_error",
        }
    }
}

/// What the server knows that requests are checked against.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Context of every sequence (prompt + generated tokens).
    pub context: usize,
    /// Most choices per request (the engine's slots).
    pub max_n: usize,
    pub vocab_size: usize,
    /// Sampling defaults where a request says nothing (the model's generation_config.json
    /// over OpenAI's temperature 1, top_p 1).
    pub defaults: SamplerConfig,
}

/// Most stop strings and top log-probabilities a request may ask for.
pub const MAX_STOPS: usize = 16;
pub const MAX_TOP_LOGPROBS: usize = 20;

/// A checked request: the prompt's tokens and how to continue it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub prompt: Vec<u32>,
    pub params: GenParams,
    pub stream: bool,
    pub include_usage: bool,
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("the request body is not valid: {e}"), None))
}

/// Parses a chat completion body (no tokenisation yet).
pub fn parse_chat(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let r: ChatRequest = parse_json(body)?;
    if let Some((param, why)) = r.unsupported() {
        return Err(ApiError::bad(why, Some(&param)));
    }
    Ok(r)
}

/// Parses a text completion body (no tokenisation yet).
pub fn parse_completion(body: &[u8]) -> Result<CompletionRequest, ApiError> {
    let r: CompletionRequest = parse_json(body)?;
    if let Some((param, why)) = r.unsupported() {
        return Err(ApiError::bad(why, Some(&param)));
    }
    Ok(r)
}

/// The conversation as template messages; roles other than system/user/assistant and
/// non-text content are refused.
pub fn chat_messages(r: &ChatRequest) -> Result<Vec<Message>, ApiError> {
    if r.messages.is_empty() {
        return Err(ApiError::bad("`messages` is empty", Some("messages")));
    }
    r.messages
        .iter()
        .map(|m| {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                other => {
                    return Err(ApiError::bad(
                        format!(
                            "message role `{other}` is not supported (system, user, assistant)"
                        ),
                        Some("messages"),
                    ))
                }
            };
            let text = m.text().map_err(|e| ApiError::bad(e, Some("messages")))?;
            Ok(Message::new(role, text))
        })
        .collect()
}

/// Renders and tokenises a chat request and checks its settings.
pub fn plan_chat(
    r: &ChatRequest,
    template: Option<&ChatTemplate>,
    tokenizer: &dyn Tokenizer,
    limits: &Limits,
) -> Result<Plan, ApiError> {
    let Some(template) = template else {
        return Err(ApiError::bad(
            "this model has no chat template: use /v1/completions, or start the server with \
             --chat-template FILE",
            Some("messages"),
        ));
    };
    if r.top_logprobs.is_some() && r.logprobs != Some(true) {
        return Err(ApiError::bad(
            "`top_logprobs` needs `logprobs: true`",
            Some("top_logprobs"),
        ));
    }
    let messages = chat_messages(r)?;
    let text = template
        .render(&messages, true)
        .map_err(|e| ApiError::bad(format!("the chat template failed: {e}"), Some("messages")))?;
    // As transformers: the template writes every special token itself.
    let prompt = tokenizer
        .encode(&text, false)
        .map_err(|e| ApiError::new(500, format!("tokenising the prompt: {e}")))?;
    let logprobs = r.logprobs == Some(true);
    let top = r.top_logprobs.unwrap_or(0) as usize;
    plan(prompt, &r.sampling, r.max_tokens(), logprobs, top, limits)
}

/// Tokenises a text completion request and checks its settings.
pub fn plan_completion(
    r: &CompletionRequest,
    tokenizer: &dyn Tokenizer,
    limits: &Limits,
) -> Result<Plan, ApiError> {
    let prompt = match &r.prompt {
        PromptField::Text(t) => encode(tokenizer, t)?,
        PromptField::Texts(v) if v.len() == 1 => encode(tokenizer, &v[0])?,
        PromptField::Texts(v) => {
            return Err(ApiError::bad(
                format!(
                    "`prompt` holds {} prompts: send one request per prompt",
                    v.len()
                ),
                Some("prompt"),
            ))
        }
        PromptField::Tokens(ids) => {
            if let Some(bad) = ids.iter().find(|&&t| t as usize >= limits.vocab_size) {
                return Err(ApiError::bad(
                    format!(
                        "token {bad} is outside the vocabulary of {}",
                        limits.vocab_size
                    ),
                    Some("prompt"),
                ));
            }
            ids.clone()
        }
    };
    let (logprobs, top) = match r.logprobs {
        Some(k) => (true, k as usize),
        None => (false, 0),
    };
    plan(
        prompt,
        &r.sampling,
        r.sampling.max_tokens,
        logprobs,
        top,
        limits,
    )
}

fn encode(tokenizer: &dyn Tokenizer, text: &str) -> Result<Vec<u32>, ApiError> {
    tokenizer
        .encode(text, tokenizer.adds_bos())
        .map_err(|e| ApiError::new(500, format!("tokenising the prompt: {e}")))
}

fn plan(
    prompt: Vec<u32>,
    s: &Sampling,
    max_tokens: Option<u64>,
    logprobs: bool,
    top_logprobs: usize,
    limits: &Limits,
) -> Result<Plan, ApiError> {
    if prompt.is_empty() {
        return Err(ApiError::bad("the prompt is empty", Some("prompt")));
    }
    if prompt.len() >= limits.context {
        return Err(ApiError::bad(
            format!(
                "the prompt is {} tokens; the server's context is {} (--ctx), with room for at \
                 least one generated token",
                prompt.len(),
                limits.context
            ),
            Some("messages"),
        ));
    }
    let room = limits.context - prompt.len();
    let max_tokens = match max_tokens {
        Some(0) => {
            return Err(ApiError::bad(
                "`max_tokens` must be ≥ 1",
                Some("max_tokens"),
            ))
        }
        Some(m) => (m.min(room as u64)) as usize,
        None => room,
    };
    let n = s.n.unwrap_or(1) as usize;
    if n == 0 || n > limits.max_n {
        return Err(ApiError::bad(
            format!(
                "`n` must be between 1 and {} (--max-batch), got {n}",
                limits.max_n
            ),
            Some("n"),
        ));
    }
    if top_logprobs > MAX_TOP_LOGPROBS {
        return Err(ApiError::bad(
            format!("top log-probabilities must be 0–{MAX_TOP_LOGPROBS}, got {top_logprobs}"),
            Some("top_logprobs"),
        ));
    }
    let d = &limits.defaults;
    let temperature = s.temperature.unwrap_or(d.temperature);
    if !(temperature.is_finite() && (0.0..=2.0).contains(&temperature)) {
        return Err(ApiError::bad(
            format!("`temperature` must be in [0, 2], got {temperature}"),
            Some("temperature"),
        ));
    }
    let top_p = s.top_p.unwrap_or(d.top_p);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::bad(
            format!("`top_p` must be in (0, 1], got {top_p}"),
            Some("top_p"),
        ));
    }
    let top_k = match s.top_k {
        None => d.top_k,
        Some(k) if k <= 0 => 0, // -1 and 0 mean off (vLLM, llama.cpp)
        Some(k) => k as usize,
    };
    let repetition_penalty = s.repetition_penalty.unwrap_or(d.repetition_penalty);
    if !(repetition_penalty > 0.0 && repetition_penalty.is_finite()) {
        return Err(ApiError::bad(
            format!("`repetition_penalty` must be > 0, got {repetition_penalty}"),
            Some("repetition_penalty"),
        ));
    }
    let stop = s.stop.clone().map(|s| s.into_vec()).unwrap_or_default();
    if stop.len() > MAX_STOPS {
        return Err(ApiError::bad(
            format!("at most {MAX_STOPS} stop strings, got {}", stop.len()),
            Some("stop"),
        ));
    }
    let seed = s.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let stream = s.stream.unwrap_or(false);
    Ok(Plan {
        prompt,
        params: GenParams {
            max_tokens,
            sampler: SamplerConfig {
                temperature,
                top_k,
                top_p,
                repetition_penalty,
                seed,
            },
            stop,
            n,
            logprobs,
            top_logprobs,
        },
        stream,
        include_usage: stream
            && s.stream_options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            context: 64,
            max_n: 4,
            vocab_size: 100,
            defaults: SamplerConfig {
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
                repetition_penalty: 1.0,
                seed: 0,
            },
        }
    }

    fn sampling(json: &str) -> Sampling {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn settings_are_checked_and_clamped() {
        let l = limits();
        let p = plan(
            vec![1; 10],
            &sampling(r#"{"max_tokens":1000000000}"#),
            Some(1_000_000_000),
            false,
            0,
            &l,
        )
        .unwrap();
        assert_eq!(
            p.params.max_tokens, 54,
            "clamped to the room left in the context"
        );
        let p = plan(
            vec![1; 10],
            &sampling(r#"{"top_k":-1,"seed":5,"n":2}"#),
            None,
            true,
            3,
            &l,
        )
        .unwrap();
        assert_eq!(
            (p.params.sampler.top_k, p.params.sampler.seed, p.params.n),
            (0, 5, 2)
        );
        for (json, param) in [
            (r#"{"n":5}"#, "n"),
            (r#"{"n":0}"#, "n"),
            (r#"{"temperature":-1}"#, "temperature"),
            (r#"{"temperature":3}"#, "temperature"),
            (r#"{"top_p":0}"#, "top_p"),
            (r#"{"repetition_penalty":0}"#, "repetition_penalty"),
        ] {
            let e = plan(vec![1; 10], &sampling(json), None, false, 0, &l).unwrap_err();
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some(param)),
                "{json}: {e:?}"
            );
        }
        let e = plan(vec![1; 64], &sampling("{}"), None, false, 0, &l).unwrap_err();
        assert!(e.message.contains("64 tokens"), "{e:?}");
        assert_eq!(
            plan(vec![1], &sampling("{}"), Some(0), false, 0, &l)
                .unwrap_err()
                .param
                .as_deref(),
            Some("max_tokens")
        );
        assert!(plan(vec![1], &sampling("{}"), None, true, 21, &l).is_err());
        let p = plan(
            vec![1],
            &sampling(r#"{"stream":true,"stream_options":{"include_usage":true}}"#),
            None,
            false,
            0,
            &l,
        )
        .unwrap();
        assert!(p.stream && p.include_usage);
    }

    #[test]
    fn malformed_and_unsupported_bodies_are_400() {
        for body in [
            &b"{"[..],
            b"[]",
            b"{\"messages\": 3}",
            b"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"temperature\": \"hot\"}",
            b"{\"messages\": [], \"tools\": [{\"type\": \"function\"}]}",
            b"{\"messages\": [], \"response_format\": {\"type\": \"json_object\"}}",
            b"\xff\xfe",
        ] {
            let e = parse_chat(body).unwrap_err();
            assert_eq!(e.status, 400, "{}", String::from_utf8_lossy(body));
        }
        let e = parse_completion(b"{\"prompt\": \"a\", \"echo\": true}").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("echo"));
        let r = parse_chat(br#"{"messages":[{"role":"tool","content":"x"}]}"#).unwrap();
        assert!(chat_messages(&r).unwrap_err().message.contains("tool"));
    }
}
