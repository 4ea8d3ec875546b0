//! slm-openai: the OpenAI API as `slm` speaks it — the JSON bodies (`types`: requests,
//! responses, stream chunks, log-probabilities, errors), shared by `slm serve` and by the
//! blocking client (`client`: retries, backoff, rate limit, server-sent events) that remote
//! teachers and `slm chat --url` use.

pub mod chat;
pub mod client;
pub mod types;

pub use chat::{RemoteChat, RemoteReply};
pub use client::{api_root, Client, RateLimiter, RetryPolicy};
pub use types::*;
