//! A blocking client for OpenAI-compatible servers, as remote teachers and `slm chat --url`
//! use them: JSON requests with a bearer key, server-sent-event streams, retries with
//! exponential backoff (and the server's `Retry-After`) on 429, 5xx and dropped connections,
//! and an optional request-rate limit shared by every thread that holds the client.
//!
//! A request is retried only before any of its answer has been read, so a retried stream
//! never repeats text.

use crate::types::{
    ChatChunk, ChatRequest, ChatResponse, CompletionRequest, CompletionResponse, ErrorBody,
    ModelList,
};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use slm_core::{Error, Result};
use std::io::{BufRead, BufReader};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How failed requests are tried again.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts after the first (0 = never retry).
    pub retries: u32,
    /// The first wait; each retry doubles it (with ±25% jitter), up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `attempt` (1-based): the server's `Retry-After` when it gave
    /// one (capped at `max_delay`), else the backoff with jitter.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d.min(self.max_delay);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let jitter = rand::thread_rng().gen_range(0.75..1.25);
        exp.min(self.max_delay).mul_f64(jitter)
    }
}

/// At most `per_sec` requests per second across all threads (evenly spaced).
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    pub fn new(per_sec: f64) -> Result<Self> {
        if !(per_sec > 0.0 && per_sec.is_finite()) {
            return Err(Error::invalid(format!(
                "the request rate must be > 0 per second, got {per_sec}"
            )));
        }
        Ok(Self {
            interval: Duration::from_secs_f64(1.0 / per_sec),
            next: Mutex::new(Instant::now()),
        })
    }

    /// Waits for this caller's turn.
    pub fn acquire(&self) {
        let wait = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + self.interval;
            at - now
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// Why a request failed, and whether trying again may help.
#[derive(Debug)]
struct Failure {
    message: String,
    retryable: bool,
    retry_after: Option<Duration>,
}

/// A connection to one OpenAI-compatible endpoint.
#[derive(Debug)]
pub struct Client {
    /// The API root, ending in `/v1` unless the user gave another path.
    base: String,
    api_key: Option<String>,
    agent: ureq::Agent,
    pub retry: RetryPolicy,
    limiter: Option<RateLimiter>,
}

/// `url` as an API root: `http://host:port` gets `/v1`; a URL with a path keeps it.
pub fn api_root(url: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            Error::invalid(format!(
                "`{url}` is not an http:// or https:// URL (e.g. http://127.0.0.1:8080/v1)"
            ))
        })?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(Error::invalid(format!("`{url}` has no host")));
    }
    Ok(if rest.contains('/') {
        url.to_string()
    } else {
        format!("{url}/v1")
    })
}

impl Client {
    /// A client for the server at `url` (see [`api_root`]); `timeout` bounds the wait for
    /// each read (a whole non-streamed answer must arrive within it).
    pub fn new(url: &str, api_key: Option<String>, timeout: Duration) -> Result<Self> {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(timeout)
            .timeout_write(Duration::from_secs(60))
            .build();
        Ok(Self {
            base: api_root(url)?,
            api_key: api_key.filter(|k| !k.is_empty()),
            agent,
            retry: RetryPolicy::default(),
            limiter: None,
        })
    }

    /// Limits this client to `per_sec` requests per second (all threads together).
    pub fn with_rate_limit(mut self, per_sec: f64) -> Result<Self> {
        self.limiter = Some(RateLimiter::new(per_sec)?);
        Ok(self)
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /models`.
    pub fn models(&self) -> Result<ModelList> {
        self.with_retries(|| {
            let r = self.request("GET", "models").call();
            Self::json(r)
        })
    }

    /// `POST /chat/completions` without streaming.
    pub fn chat(&self, req: &ChatRequest) -> Result<ChatResponse> {
        let mut req = req.clone();
        req.sampling.stream = None;
        self.post("chat/completions", &req)
    }

    /// `POST /completions` without streaming.
    pub fn completion(&self, req: &CompletionRequest) -> Result<CompletionResponse> {
        let mut req = req.clone();
        req.sampling.stream = None;
        self.post("completions", &req)
    }

    /// `POST /chat/completions` with `stream: true`; `on_chunk` sees each chunk in order
    /// and returns false to stop reading (the connection is then dropped, which a server
    /// takes as a cancel).
    pub fn chat_stream(
        &self,
        req: &ChatRequest,
        on_chunk: &mut dyn FnMut(&ChatChunk) -> Result<bool>,
    ) -> Result<()> {
        let mut req = req.clone();
        req.sampling.stream = Some(true);
        let body = serde_json::to_string(&req)?;
        let response = self.with_retries(|| {
            let r = self
                .request("POST", "chat/completions")
                .set("Content-Type", "application/json")
                .set("Accept", "text/event-stream")
                .send_string(&body);
            Self::ok(r)
        })?;
        let reader = BufReader::new(response.into_reader());
        for line in reader.lines() {
            let line = line.map_err(|e| Error::msg(format!("reading the stream: {e}")))?;
            let Some(data) = line.strip_prefix("data:") else {
                continue; // blank separators, comments, `event:` lines
            };
            let data = data.trim();
            if data == "[DONE]" {
                return Ok(());
            }
            let value: serde_json::Value = serde_json::from_str(data)
                .map_err(|e| Error::msg(format!("a stream event is not JSON ({e}): {data}")))?;
            if let Some(err) = value.get("error") {
                return Err(Error::msg(format!("the server ended the stream: {err}")));
            }
            let chunk: ChatChunk = serde_json::from_value(value).map_err(|e| {
                Error::msg(format!("a stream event is not a chat chunk ({e}): {data}"))
            })?;
            if !on_chunk(&chunk)? {
                return Ok(());
            }
        }
        Ok(())
    }

    fn post<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B) -> Result<R> {
        let body = serde_json::to_string(body)?;
        self.with_retries(|| {
            let r = self
                .request("POST", path)
                .set("Content-Type", "application/json")
                .send_string(&body);
            Self::json(r)
        })
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let r = self.agent.request(method, &format!("{}/{path}", self.base));
        match &self.api_key {
            Some(k) => r.set("Authorization", &format!("Bearer {k}")),
            None => r,
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent.
    fn with_retries<T>(
        &self,
        mut attempt: impl FnMut() -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        let mut tries = 0u32;
        loop {
            if let Some(l) = &self.limiter {
                l.acquire();
            }
            match attempt() {
                Ok(v) => return Ok(v),
                Err(f) if f.retryable && tries < self.retry.retries => {
                    tries += 1;
                    std::thread::sleep(self.retry.delay(tries, f.retry_after));
                }
                Err(f) => {
                    let after = if tries > 0 {
                        format!(" (after {} attempts)", tries + 1)
                    } else {
                        String::new()
                    };
                    return Err(Error::msg(format!("{}: {}{after}", self.base, f.message)));
                }
            }
        }
    }

    /// The response when its status is 2xx; otherwise why not.
    fn ok(
        r: std::result::Result<ureq::Response, ureq::Error>,
    ) -> std::result::Result<ureq::Response, Failure> {
        match r {
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(code, resp)) => {
                let retry_after = resp
                    .header("retry-after")
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64);
                let body = resp.into_string().unwrap_or_default();
                let message = match serde_json::from_str::<ErrorBody>(&body) {
                    Ok(e) => e.error.message,
                    Err(_) => body.chars().take(300).collect(),
                };
                Err(Failure {
                    message: format!("HTTP {code}: {message}"),
                    retryable: code == 429 || code == 408 || code >= 500,
                    retry_after,
                })
            }
            Err(ureq::Error::Transport(t)) => Err(Failure {
                message: t.to_string(),
                retryable: true,
                retry_after: None,
            }),
        }
    }

    fn json<R: DeserializeOwned>(
        r: std::result::Result<ureq::Response, ureq::Error>,
    ) -> std::result::Result<R, Failure> {
        let resp = Self::ok(r)?;
        let text = resp.into_string().map_err(|e| Failure {
            message: format!("reading the answer: {e}"),
            retryable: true,
            retry_after: None,
        })?;
        serde_json::from_str(&text).map_err(|e| Failure {
            message: format!(
                "the answer is not the expected JSON ({e}): {}",
                text.chars().take(300).collect::<String>()
            ),
            retryable: false,
            retry_after: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_roots() {
        assert_eq!(
            api_root("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080/v1"
        );
        assert_eq!(api_root("http://h:1/v1/").unwrap(), "http://h:1/v1");
        assert_eq!(
            api_root("https://openrouter.ai/api/v1").unwrap(),
            "https://openrouter.ai/api/v1"
        );
        assert!(api_root("127.0.0.1:8080").is_err());
        assert!(api_root("http://").is_err());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let d1 = p.delay(1, None).as_secs_f64();
        let d3 = p.delay(3, None).as_secs_f64();
        assert!((0.075..=0.125).contains(&d1), "{d1}");
        assert!((0.3..=0.5).contains(&d3), "{d3}");
        assert!(p.delay(30, None) <= Duration::from_secs_f64(1.25));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn rate_limiter_spaces_requests() {
        let l = RateLimiter::new(50.0).unwrap();
        let t = Instant::now();
        for _ in 0..6 {
            l.acquire();
        }
        // The first goes at once, the next five 20 ms apart.
        assert!(
            t.elapsed() >= Duration::from_millis(95),
            "{:?}",
            t.elapsed()
        );
        assert!(RateLimiter::new(0.0).is_err());
    }
}
