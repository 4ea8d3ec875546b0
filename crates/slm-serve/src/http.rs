//! The HTTP side (axum on tokio): routes, the bearer-key check, request → engine job, and
//! engine events → JSON responses or server-sent events.
//!
//! Every error is OpenAI's `{"error": {"message", "type", "param", "code"}}` with the
//! status that says what went wrong: 400 malformed or unsupported, 401 missing key, 404 no
//! such route, 413 body too large, 429 queue full (with `Retry-After`), 503 shutting down,
//! 504 past `--timeout`.

use crate::engine::{Event, Finish, Job};
use crate::metrics::Metrics;
use crate::request::{self, ApiError, Limits, Plan};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use serde_json::json;
use slm_data::chat::ChatTemplate;
use slm_data::tokenizer::Tokenizer;
use slm_openai::{
    AssistantMessage, ChatChoice, ChatChunk, ChatResponse, ChoiceLogprobs, ChunkChoice,
    CompletionChoice, CompletionLogprobs, CompletionResponse, Delta, ErrorBody, ErrorDetail,
    ModelInfo, ModelList, TokenLogprob, Usage,
};
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// What every handler shares.
pub struct AppState {
    pub tokenizer: Arc<dyn Tokenizer>,
    pub template: Option<ChatTemplate>,
    pub model_name: String,
    pub limits: Limits,
    pub jobs: SyncSender<Job>,
    pub metrics: Arc<Metrics>,
    pub api_key: Option<String>,
    pub timeout: Duration,
    /// Requests that may wait for a slot while every slot is busy (`--queue`); with free slots
    /// as many more are taken, since the engine admits them at its next step.
    pub queue: usize,
    /// Set once shutdown began: new generation requests get 503.
    pub draining: Arc<AtomicBool>,
    pub created: u64,
    next_id: AtomicU64,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tokenizer: Arc<dyn Tokenizer>,
        template: Option<ChatTemplate>,
        model_name: String,
        limits: Limits,
        jobs: SyncSender<Job>,
        metrics: Arc<Metrics>,
        api_key: Option<String>,
        timeout: Duration,
        queue: usize,
        draining: Arc<AtomicBool>,
    ) -> Self {
        Self {
            tokenizer,
            template,
            model_name,
            limits,
            jobs,
            metrics,
            api_key,
            timeout,
            queue,
            draining,
            created: unix_now(),
            next_id: AtomicU64::new(1),
        }
    }

    fn id(&self, prefix: &str) -> String {
        format!(
            "{prefix}-{:x}{:06x}",
            self.created,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind().to_string(),
                message: self.message,
                param: self.param,
                code: None,
            },
        };
        let mut r = (status, Json(body)).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// The routes, with the key check and per-route request counts.
pub fn router(state: Arc<AppState>, max_body: usize) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

/// Checks the bearer key (every route but `/health`) and counts the answer's status.
async fn gate(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let route = match path.as_str() {
        "/health" | "/v1/models" | "/v1/chat/completions" | "/v1/completions" | "/metrics" => {
            path.clone()
        }
        _ => "other".to_string(),
    };
    let response = match &s.api_key {
        Some(key) if path != "/health" && !authorized(req.headers(), key) => ApiError::new(
            401,
            "missing or wrong API key: send `Authorization: Bearer KEY`",
        )
        .into_response(),
        _ => next.run(req).await,
    };
    s.metrics.count_request(&route, response.status().as_u16());
    response
}

fn authorized(headers: &HeaderMap, key: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), key.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health(State(s): State<Arc<AppState>>) -> Response {
    if s.draining.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting down"})),
        )
            .into_response()
    } else {
        Json(json!({"status": "ok"})).into_response()
    }
}

async fn models(State(s): State<Arc<AppState>>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".into(),
        data: vec![ModelInfo {
            id: s.model_name.clone(),
            object: "model".into(),
            created: s.created,
            owned_by: "slm".into(),
        }],
    })
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        404,
        format!(
            "no route {} {}: try GET /v1/models, POST /v1/chat/completions, POST /v1/completions",
            req.method(),
            req.uri().path()
        ),
    )
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        let status = e.status().as_u16();
        ApiError::new(
            if status == 413 { 413 } else { 400 },
            format!("reading the request body: {}", e.body_text()),
        )
    })
}

/// Which API a request came through (chunks and responses differ).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Completion,
}

async fn chat(State(s): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let arrived = Instant::now();
    let body = match body_bytes(body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let state = s.clone();
    // Rendering and tokenising a long prompt is CPU work: off the async workers.
    let plan = tokio::task::spawn_blocking(move || {
        let r = request::parse_chat(&body)?;
        request::plan_chat(
            &r,
            state.template.as_ref(),
            state.tokenizer.as_ref(),
            &state.limits,
        )
    })
    .await;
    respond(s, plan, Api::Chat, arrived).await
}

async fn completions(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let arrived = Instant::now();
    let body = match body_bytes(body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let state = s.clone();
    let plan = tokio::task::spawn_blocking(move || {
        let r = request::parse_completion(&body)?;
        request::plan_completion(&r, state.tokenizer.as_ref(), &state.limits)
    })
    .await;
    respond(s, plan, Api::Completion, arrived).await
}

async fn respond(
    s: Arc<AppState>,
    plan: Result<Result<Plan, ApiError>, tokio::task::JoinError>,
    api: Api,
    arrived: Instant,
) -> Response {
    let plan = match plan {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return e.into_response(),
        Err(e) => return ApiError::new(500, format!("request task failed: {e}")).into_response(),
    };
    if s.draining.load(Ordering::SeqCst) {
        return ApiError::new(503, "the server is shutting down").into_response();
    }
    let (tx, rx) = unbounded_channel();
    let prompt_tokens = plan.prompt.len();
    let job = Job {
        prompt: plan.prompt,
        params: plan.params.clone(),
        events: tx,
        deadline: arrived + s.timeout,
    };
    // Counted before the send: the engine may admit (and count down) at once. The engine takes
    // jobs only between steps, so requests arriving together while slots are free all wait in
    // the channel for a moment: they count against the free slots first, then the queue.
    let waiting = s.metrics.queue_depth.fetch_add(1, Ordering::Relaxed).max(0) as usize;
    let active = s.metrics.active.load(Ordering::Relaxed).max(0) as usize;
    let free_slots = s.limits.max_n.saturating_sub(active);
    let full = |s: &AppState| {
        s.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
        s.metrics.rejected_full.fetch_add(1, Ordering::Relaxed);
        ApiError::new(429, "the server's queue is full: retry shortly").into_response()
    };
    if waiting >= s.queue + free_slots {
        return full(&s);
    }
    match s.jobs.try_send(job) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => return full(&s),
        Err(TrySendError::Disconnected(_)) => {
            s.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            return ApiError::new(503, "the server is shutting down").into_response();
        }
    }
    let reply = Reply {
        id: s.id(match api {
            Api::Chat => "chatcmpl",
            Api::Completion => "cmpl",
        }),
        created: unix_now(),
        model: s.model_name.clone(),
        api,
        n: plan.params.n,
        logprobs: plan.params.logprobs,
        prompt_tokens,
        arrived,
        metrics: s.metrics.clone(),
    };
    if plan.stream {
        stream_response(reply, rx, plan.include_usage).into_response()
    } else {
        whole_response(reply, rx).await
    }
}

/// What a response needs besides the events.
struct Reply {
    id: String,
    created: u64,
    model: String,
    api: Api,
    n: usize,
    logprobs: bool,
    prompt_tokens: usize,
    arrived: Instant,
    metrics: Arc<Metrics>,
}

/// One choice's text and log-probabilities as they accumulate.
#[derive(Default)]
struct Choice {
    text: String,
    logprobs: Vec<TokenLogprob>,
    /// Byte offset in `text` of each token (completions' `text_offset`).
    offsets: Vec<usize>,
    finish: Option<Finish>,
    tokens: usize,
}

impl Reply {
    fn usage(&self, completion: usize) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens as u64,
            completion_tokens: completion as u64,
            total_tokens: (self.prompt_tokens + completion) as u64,
        }
    }

    fn completion_logprobs(lps: &[TokenLogprob], offsets: &[usize]) -> CompletionLogprobs {
        CompletionLogprobs {
            tokens: lps.iter().map(|l| l.token.clone()).collect(),
            token_logprobs: lps.iter().map(|l| l.logprob).collect(),
            top_logprobs: lps
                .iter()
                .map(|l| {
                    l.top_logprobs
                        .iter()
                        .map(|t| (t.token.clone(), t.logprob))
                        .collect::<BTreeMap<_, _>>()
                })
                .collect(),
            text_offset: offsets.to_vec(),
        }
    }
}

/// Waits for every choice, then answers with one JSON body.
async fn whole_response(reply: Reply, mut rx: UnboundedReceiver<Event>) -> Response {
    let mut choices: Vec<Choice> = (0..reply.n).map(|_| Choice::default()).collect();
    let mut done = 0;
    let mut first = true;
    while done < reply.n {
        let Some(event) = rx.recv().await else {
            return ApiError::new(500, "the engine stopped before the answer was complete")
                .into_response();
        };
        match event {
            Event::Prefilled => {}
            Event::Token {
                index,
                text,
                logprob,
            } => {
                if first {
                    reply
                        .metrics
                        .first_token_seconds
                        .observe(reply.arrived.elapsed().as_secs_f64());
                    first = false;
                }
                if let Some(c) = choices.get_mut(index) {
                    if let Some(lp) = logprob {
                        c.offsets.push(c.text.len());
                        c.logprobs.push(lp);
                    }
                    c.text.push_str(&text);
                }
            }
            Event::Done {
                index,
                text,
                finish,
                tokens,
            } => {
                if let Some(c) = choices.get_mut(index) {
                    c.text.push_str(&text);
                    c.finish = Some(finish);
                    c.tokens = tokens;
                }
                done += 1;
            }
            Event::Failed { status, message } => {
                return ApiError::new(status, message).into_response();
            }
        }
    }
    let completion: usize = choices.iter().map(|c| c.tokens).sum();
    let usage = Some(reply.usage(completion));
    reply
        .metrics
        .request_seconds
        .observe(reply.arrived.elapsed().as_secs_f64());
    match reply.api {
        Api::Chat => Json(ChatResponse {
            id: reply.id.clone(),
            object: "chat.completion".into(),
            created: reply.created,
            model: reply.model.clone(),
            choices: choices
                .into_iter()
                .enumerate()
                .map(|(i, c)| ChatChoice {
                    index: i as u32,
                    message: AssistantMessage {
                        role: "assistant".into(),
                        content: Some(c.text),
                    },
                    logprobs: reply.logprobs.then_some(ChoiceLogprobs {
                        content: Some(c.logprobs),
                    }),
                    finish_reason: c.finish.map(|f| f.name().to_string()),
                })
                .collect(),
            usage,
        })
        .into_response(),
        Api::Completion => Json(CompletionResponse {
            id: reply.id.clone(),
            object: "text_completion".into(),
            created: reply.created,
            model: reply.model.clone(),
            choices: choices
                .into_iter()
                .enumerate()
                .map(|(i, c)| CompletionChoice {
                    index: i as u32,
                    logprobs: reply
                        .logprobs
                        .then(|| Reply::completion_logprobs(&c.logprobs, &c.offsets)),
                    text: c.text,
                    finish_reason: c.finish.map(|f| f.name().to_string()),
                })
                .collect(),
            usage,
        })
        .into_response(),
    }
}

/// The state of one streamed response.
struct Streaming {
    reply: Reply,
    rx: UnboundedReceiver<Event>,
    include_usage: bool,
    /// Events ready to send.
    out: VecDeque<SseEvent>,
    done: usize,
    completion: usize,
    /// Text bytes sent so far per choice (completions' `text_offset`).
    sent: Vec<usize>,
    first: bool,
    ended: bool,
}

impl Streaming {
    fn data(&mut self, v: &impl serde::Serialize) {
        match SseEvent::default().json_data(v) {
            Ok(e) => self.out.push_back(e),
            Err(e) => self
                .out
                .push_back(SseEvent::default().data(format!("{{\"error\":\"{e}\"}}"))),
        }
    }

    fn chunk(
        &mut self,
        index: usize,
        text: Option<String>,
        lp: Option<TokenLogprob>,
        finish: Option<Finish>,
    ) {
        let r = &self.reply;
        match r.api {
            Api::Chat => {
                let c = ChatChunk {
                    id: r.id.clone(),
                    object: "chat.completion.chunk".into(),
                    created: r.created,
                    model: r.model.clone(),
                    choices: vec![ChunkChoice {
                        index: index as u32,
                        delta: Delta {
                            role: None,
                            content: text,
                        },
                        logprobs: lp.map(|l| ChoiceLogprobs {
                            content: Some(vec![l]),
                        }),
                        finish_reason: finish.map(|f| f.name().to_string()),
                    }],
                    usage: None,
                };
                self.data(&c);
            }
            Api::Completion => {
                let text = text.unwrap_or_default();
                let offset = self.sent.get(index).copied().unwrap_or(0);
                if let Some(s) = self.sent.get_mut(index) {
                    *s += text.len();
                }
                let c = CompletionResponse {
                    id: r.id.clone(),
                    object: "text_completion".into(),
                    created: r.created,
                    model: r.model.clone(),
                    choices: vec![CompletionChoice {
                        index: index as u32,
                        text,
                        logprobs: lp.map(|l| Reply::completion_logprobs(&[l], &[offset])),
                        finish_reason: finish.map(|f| f.name().to_string()),
                    }],
                    usage: None,
                };
                self.data(&c);
            }
        }
    }

    /// Turns the next engine event into SSE events; false when the stream is over.
    async fn pump(&mut self) -> bool {
        if self.ended {
            return false;
        }
        let Some(event) = self.rx.recv().await else {
            self.fail(500, "the engine stopped before the answer was complete");
            return true;
        };
        match event {
            Event::Prefilled => {}
            Event::Token {
                index,
                text,
                logprob,
            } => {
                if self.first {
                    self.reply
                        .metrics
                        .first_token_seconds
                        .observe(self.reply.arrived.elapsed().as_secs_f64());
                    self.first = false;
                }
                if !text.is_empty() || logprob.is_some() {
                    self.chunk(index, Some(text), logprob, None);
                }
            }
            Event::Done {
                index,
                text,
                finish,
                tokens,
            } => {
                if !text.is_empty() {
                    self.chunk(index, Some(text), None, None);
                }
                let empty = match self.reply.api {
                    Api::Chat => None,
                    Api::Completion => Some(String::new()),
                };
                self.chunk(index, empty, None, Some(finish));
                self.completion += tokens;
                self.done += 1;
                if self.done == self.reply.n {
                    if self.include_usage {
                        let usage = self.reply.usage(self.completion);
                        let r = &self.reply;
                        let last = json!({
                            "id": r.id, "created": r.created, "model": r.model,
                            "object": match r.api { Api::Chat => "chat.completion.chunk", Api::Completion => "text_completion" },
                            "choices": [], "usage": usage,
                        });
                        self.data(&last);
                    }
                    self.out.push_back(SseEvent::default().data("[DONE]"));
                    self.reply
                        .metrics
                        .request_seconds
                        .observe(self.reply.arrived.elapsed().as_secs_f64());
                    self.ended = true;
                }
            }
            Event::Failed { status, message } => self.fail(status, &message),
        }
        true
    }

    fn fail(&mut self, status: u16, message: &str) {
        let e = ApiError::new(status, message);
        let body = ErrorBody {
            error: ErrorDetail {
                kind: e.kind().into(),
                message: e.message.clone(),
                param: None,
                code: Some(status.to_string()),
            },
        };
        self.data(&body);
        self.ended = true;
    }
}

/// Streams the answer as server-sent events: a first chunk with the assistant role (chat),
/// one chunk per piece of text, a chunk with `finish_reason` per choice, the usage when
/// asked, then `data: [DONE]`. An error mid-stream is sent as `data: {"error": ...}` and
/// ends the stream.
fn stream_response(
    reply: Reply,
    rx: UnboundedReceiver<Event>,
    include_usage: bool,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let sent = vec![0; reply.n];
    let mut st = Streaming {
        reply,
        rx,
        include_usage,
        out: VecDeque::new(),
        done: 0,
        completion: 0,
        sent,
        first: true,
        ended: false,
    };
    if st.reply.api == Api::Chat {
        for i in 0..st.reply.n {
            let r = &st.reply;
            let c = ChatChunk {
                id: r.id.clone(),
                object: "chat.completion.chunk".into(),
                created: r.created,
                model: r.model.clone(),
                choices: vec![ChunkChoice {
                    index: i as u32,
                    delta: Delta {
                        role: Some("assistant".into()),
                        content: Some(String::new()),
                    },
                    logprobs: None,
                    finish_reason: None,
                }],
                usage: None,
            };
            st.data(&c);
        }
    }
    let events = stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.out.pop_front() {
                return Some((Ok(e), st));
            }
            if !st.pump().await {
                return None;
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
