//! Continuous batching: one thread owns the decode engine and every sequence's KV cache, and
//! loops over steps. Each step
//!
//! 1. takes new requests from the bounded queue while slots are free (a request asking for
//!    `n` choices needs `n` slots),
//! 2. drops sequences whose client went away (their event channel is closed) or whose
//!    deadline passed,
//! 3. prefills waiting prompts up to `prefill_chunk` tokens in all while sequences decode (a
//!    long prompt takes several steps, so it never stalls them for long; with none decoding
//!    it is prefilled whole),
//! 4. runs **one** batched decoding step for every decoding sequence
//!    (`Decoder::forward_batch`: each weight matrix read once for the whole batch), samples
//!    each sequence's next token, and sends it to its client; finished sequences leave and
//!    their slot goes to the next request at the next step.
//!
//! A request with `n` > 1 is prefilled once; its KV cache is copied to the other choices'
//! slots (`Decoder::copy_prefix`) and each choice samples with its own seed.

use crate::metrics::Metrics;
use slm_core::{Error, Result};
use slm_data::tokenizer::{StreamDecoder, Tokenizer};
use slm_infer::decode::{BatchScratch, Decoder, KvType, RunState};
use slm_infer::stop::StopMatcher;
use slm_infer::{Sampler, SamplerConfig};
use slm_openai::{TokenLogprob, TopLogprob};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// How one request's text is generated (validated by the HTTP side).
#[derive(Debug, Clone)]
pub struct GenParams {
    /// Most tokens per choice (the context may end a choice earlier).
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    pub stop: Vec<String>,
    /// Choices: independent samples of the same prompt.
    pub n: usize,
    /// Send each token's log-probability (and `top_logprobs` alternatives).
    pub logprobs: bool,
    pub top_logprobs: usize,
}

/// Why a choice ended, as OpenAI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// End of turn, EOS or a stop string.
    Stop,
    /// `max_tokens`, or the context is full.
    Length,
}

impl Finish {
    pub fn name(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// What the engine tells a request's handler.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The prompt is in the cache (sent once per request, before any token).
    Prefilled,
    /// A token of choice `index`: the text it completes (empty while a character or a
    /// possible stop string is incomplete) and, when asked, its log-probability.
    Token {
        index: usize,
        text: String,
        logprob: Option<TokenLogprob>,
    },
    /// Choice `index` ended; `text` is what was still held back.
    Done {
        index: usize,
        text: String,
        finish: Finish,
        tokens: usize,
    },
    /// The request failed (HTTP status to report, message).
    Failed { status: u16, message: String },
}

/// A request for the engine.
#[derive(Debug)]
pub struct Job {
    pub prompt: Vec<u32>,
    pub params: GenParams,
    pub events: UnboundedSender<Event>,
    pub deadline: Instant,
}

/// The engine's fixed settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Sequences decoded together at most (slots).
    pub max_batch: usize,
    /// Prompt tokens prefilled per step, over all waiting prompts.
    pub prefill_chunk: usize,
    pub kv: KvType,
    /// Tokens that end a choice (EOS, the template's end of turn).
    pub stop_tokens: Vec<u32>,
}

/// A prompt being prefilled into its first slot.
struct Prefilling {
    job: Arc<JobInfo>,
    prompt: Vec<u32>,
    state: RunState,
    done: usize,
}

/// What the sequences of one request share.
struct JobInfo {
    params: GenParams,
    events: UnboundedSender<Event>,
    deadline: Instant,
}

/// One choice being decoded.
struct Sequence<'t> {
    job: Arc<JobInfo>,
    index: usize,
    /// Prompt and generated tokens (the repetition penalty reads them; the length is the
    /// next position + 1).
    history: Vec<u32>,
    generated: usize,
    /// The token sampled last, to be fed at position `history.len() - 1`.
    next: u32,
    sampler: Sampler,
    stops: StopMatcher,
    text: StreamDecoder<'t>,
    last_token_at: Instant,
}

/// Runs the batching loop until every sender of `jobs` is gone (or `abort` is set, which
/// fails what is in flight). `ctx` is the decoder's context.
pub fn run(
    decoder: &Decoder,
    tokenizer: &dyn Tokenizer,
    cfg: &EngineConfig,
    jobs: Receiver<Job>,
    metrics: &Metrics,
    abort: &AtomicBool,
) {
    let mut engine = Engine {
        decoder,
        tokenizer,
        cfg,
        metrics,
        pool: Vec::new(),
        prefilling: VecDeque::new(),
        seqs: Vec::new(),
        states: Vec::new(),
        scratch: BatchScratch::default(),
        held: None,
    };
    engine.run(jobs, abort);
}

struct Engine<'a> {
    decoder: &'a Decoder,
    tokenizer: &'a dyn Tokenizer,
    cfg: &'a EngineConfig,
    metrics: &'a Metrics,
    /// Free run states (KV caches), reused.
    pool: Vec<RunState>,
    prefilling: VecDeque<Prefilling>,
    /// Decoding sequences; `states[i]` is the cache of `seqs[i]` (forward_batch takes the
    /// states as one slice).
    seqs: Vec<Sequence<'a>>,
    states: Vec<RunState>,
    scratch: BatchScratch,
    /// A job taken from the queue that needs more free slots than there are.
    held: Option<Job>,
}

impl<'a> Engine<'a> {
    fn slots_used(&self) -> usize {
        self.seqs.len()
            + self
                .prefilling
                .iter()
                .map(|p| p.job.params.n)
                .sum::<usize>()
    }

    fn idle(&self) -> bool {
        self.seqs.is_empty() && self.prefilling.is_empty() && self.held.is_none()
    }

    fn run(&mut self, jobs: Receiver<Job>, abort: &AtomicBool) {
        let mut open = true;
        while open || !self.idle() {
            if abort.load(Ordering::SeqCst) {
                self.fail_all(503, "the server is shutting down");
                while let Ok(job) = jobs.try_recv() {
                    self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                    let _ = job.events.send(Event::Failed {
                        status: 503,
                        message: "the server is shutting down".into(),
                    });
                }
                return;
            }
            // 1. Admit. When idle, wait (briefly, so `abort` is seen) for the next job.
            if self.idle() && open {
                match jobs.recv_timeout(Duration::from_millis(100)) {
                    Ok(job) => self.held = Some(job),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
            }
            loop {
                let job = match self.held.take() {
                    Some(j) => j,
                    None if open => match jobs.try_recv() {
                        Ok(j) => j,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    },
                    None => break,
                };
                if self.slots_used() + job.params.n > self.cfg.max_batch {
                    self.held = Some(job);
                    break;
                }
                self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                self.admit(job);
            }
            // 2. Cancelled and timed-out requests leave.
            self.drop_gone();
            // 3. Prefill, 4. decode.
            self.prefill_step();
            self.decode_step();
            self.metrics
                .active
                .store(self.slots_used() as i64, Ordering::Relaxed);
        }
    }

    fn take_state(&mut self) -> RunState {
        self.pool
            .pop()
            .unwrap_or_else(|| self.decoder.new_state_with(self.cfg.kv))
    }

    fn admit(&mut self, job: Job) {
        let info = Arc::new(JobInfo {
            params: job.params,
            events: job.events,
            deadline: job.deadline,
        });
        if info.events.is_closed() {
            self.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let state = self.take_state();
        self.prefilling.push_back(Prefilling {
            job: info,
            prompt: job.prompt,
            state,
            done: 0,
        });
    }

    fn drop_gone(&mut self) {
        let now = Instant::now();
        let gone = |job: &JobInfo| job.events.is_closed() || now > job.deadline;
        let mut i = 0;
        while i < self.prefilling.len() {
            if gone(&self.prefilling[i].job) {
                if let Some(p) = self.prefilling.remove(i) {
                    self.end_job(&p.job, now);
                    self.pool.push(p.state);
                }
            } else {
                i += 1;
            }
        }
        let mut i = 0;
        while i < self.seqs.len() {
            if gone(&self.seqs[i].job) {
                let job = self.seqs[i].job.clone();
                self.remove_seq(i);
                self.end_job(&job, now);
            } else {
                i += 1;
            }
        }
    }

    /// Tells a sequence's request that it ran out of time, or counts it cancelled when its
    /// client went away.
    fn end_job(&self, job: &JobInfo, now: Instant) {
        if job.events.is_closed() {
            self.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
        } else if now > job.deadline {
            let _ = job.events.send(Event::Failed {
                status: 504,
                message: "the request ran past the server's --timeout".into(),
            });
        }
    }

    fn remove_seq(&mut self, i: usize) {
        self.seqs.swap_remove(i);
        let state = self.states.swap_remove(i);
        self.pool.push(state);
    }

    fn fail_all(&mut self, status: u16, message: &str) {
        let fail = |job: &JobInfo| {
            let _ = job.events.send(Event::Failed {
                status,
                message: message.to_string(),
            });
        };
        for p in self.prefilling.drain(..) {
            fail(&p.job);
            self.pool.push(p.state);
        }
        for s in self.seqs.drain(..) {
            fail(&s.job);
        }
        self.pool.append(&mut self.states);
        if let Some(job) = self.held.take() {
            self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            let _ = job.events.send(Event::Failed {
                status,
                message: message.to_string(),
            });
        }
    }

    /// Prefills up to `prefill_chunk` prompt tokens, oldest prompt first; a finished prompt
    /// becomes its request's decoding sequences.
    fn prefill_step(&mut self) {
        // The chunk bounds how long decoding sequences wait for a step; with none decoding,
        // nobody waits, so a prompt is prefilled whole.
        let mut budget = if self.seqs.is_empty() {
            usize::MAX
        } else {
            self.cfg.prefill_chunk.max(1)
        };
        while budget > 0 {
            let Some(p) = self.prefilling.front_mut() else {
                break;
            };
            let take = budget.min(p.prompt.len() - p.done);
            let chunk = &p.prompt[p.done..p.done + take];
            if let Err(e) = self.decoder.prefill(&mut p.state, chunk, p.done) {
                let _ = p.job.events.send(Event::Failed {
                    status: 500,
                    message: format!("prefill failed: {e}"),
                });
                if let Some(p) = self.prefilling.pop_front() {
                    self.pool.push(p.state);
                }
                continue;
            }
            p.done += take;
            budget -= take;
            if p.done == p.prompt.len() {
                if let Some(p) = self.prefilling.pop_front() {
                    self.metrics
                        .prompt_tokens
                        .fetch_add(p.prompt.len() as u64, Ordering::Relaxed);
                    let _ = p.job.events.send(Event::Prefilled);
                    self.start_choices(p);
                }
            }
        }
    }

    /// Starts the `n` choices of a prefilled prompt: the first keeps the prefilled state,
    /// the others get a copy of its cache; each samples its first token from the prompt's
    /// last logits.
    fn start_choices(&mut self, p: Prefilling) {
        let Prefilling {
            job, prompt, state, ..
        } = p;
        let logits = state.logits().to_vec();
        let mut states = vec![state];
        for _ in 1..job.params.n {
            let mut s = self.take_state();
            if let Err(e) = self.decoder.copy_prefix(&states[0], &mut s, prompt.len()) {
                let _ = job.events.send(Event::Failed {
                    status: 500,
                    message: format!("copying the prompt's cache: {e}"),
                });
                self.pool.push(s);
                self.pool.append(&mut states);
                return;
            }
            states.push(s);
        }
        for (index, state) in states.into_iter().enumerate() {
            let sampler = match Sampler::new(SamplerConfig {
                seed: job
                    .params
                    .sampler
                    .seed
                    .wrapping_add(index as u64 * 0x9E37_79B9),
                ..job.params.sampler.clone()
            }) {
                Ok(s) => s,
                Err(e) => {
                    let _ = job.events.send(Event::Failed {
                        status: 400,
                        message: e.to_string(),
                    });
                    self.pool.push(state);
                    continue;
                }
            };
            let mut text = StreamDecoder::new(self.tokenizer);
            for &t in &prompt {
                let _ = text.push(t); // prime, so spacing after the prompt is right
            }
            let mut seq = Sequence {
                job: job.clone(),
                index,
                history: prompt.clone(),
                generated: 0,
                next: 0,
                sampler,
                stops: StopMatcher::new(job.params.stop.clone()),
                text,
                last_token_at: Instant::now(),
            };
            match accept(&self.ctx(), &mut seq, &logits) {
                Ok(None) => {
                    self.seqs.push(seq);
                    self.states.push(state);
                }
                Ok(Some(_)) => self.pool.push(state),
                Err(e) => {
                    let _ = job.events.send(Event::Failed {
                        status: 500,
                        message: e.to_string(),
                    });
                    self.pool.push(state);
                }
            }
        }
    }

    /// One batched step over every decoding sequence.
    fn decode_step(&mut self) {
        if self.seqs.is_empty() {
            return;
        }
        let tokens: Vec<u32> = self.seqs.iter().map(|s| s.next).collect();
        let positions: Vec<usize> = self.seqs.iter().map(|s| s.history.len() - 1).collect();
        self.metrics.batch_size.observe(self.seqs.len() as f64);
        if let Err(e) =
            self.decoder
                .forward_batch(&mut self.scratch, &mut self.states, &tokens, &positions)
        {
            self.fail_all(500, &format!("decoding step failed: {e}"));
            return;
        }
        let ctx = self.ctx();
        let mut i = 0;
        while i < self.seqs.len() {
            match accept(&ctx, &mut self.seqs[i], self.states[i].logits()) {
                Ok(None) => i += 1,
                Ok(Some(_)) => self.remove_seq(i),
                Err(e) => {
                    let _ = self.seqs[i].job.events.send(Event::Failed {
                        status: 500,
                        message: e.to_string(),
                    });
                    self.remove_seq(i);
                }
            }
        }
    }

    fn ctx(&self) -> StepCtx<'a> {
        StepCtx {
            tokenizer: self.tokenizer,
            cfg: self.cfg,
            metrics: self.metrics,
            context: self.decoder.config().max_position_embeddings,
        }
    }
}

/// What sampling a token needs from the engine (references only, so a sequence can be
/// borrowed mutably beside it).
#[derive(Clone, Copy)]
struct StepCtx<'a> {
    tokenizer: &'a dyn Tokenizer,
    cfg: &'a EngineConfig,
    metrics: &'a Metrics,
    context: usize,
}

/// Samples the sequence's next token from `logits`, sends it, and says whether (and why)
/// the choice ended.
fn accept(ctx: &StepCtx, seq: &mut Sequence, logits: &[f32]) -> Result<Option<Finish>> {
    let now = Instant::now();
    if seq.generated > 0 {
        ctx.metrics
            .inter_token_seconds
            .observe((now - seq.last_token_at).as_secs_f64());
    }
    seq.last_token_at = now;
    let params = &seq.job.params;
    let token = seq.sampler.sample(logits, &seq.history)?;
    if ctx.cfg.stop_tokens.contains(&token) {
        return Ok(Some(finish(seq, Finish::Stop)));
    }
    let logprob = if params.logprobs {
        Some(token_logprob(
            ctx.tokenizer,
            logits,
            token,
            params.top_logprobs,
        )?)
    } else {
        None
    };
    seq.history.push(token);
    seq.generated += 1;
    ctx.metrics
        .completion_tokens
        .fetch_add(1, Ordering::Relaxed);
    let mut text = String::new();
    let mut stopped = false;
    if let Some(piece) = seq.text.push(token)? {
        stopped = seq.stops.emit(&piece, &mut |_| Ok(()), &mut text)?;
    }
    let _ = seq.job.events.send(Event::Token {
        index: seq.index,
        text,
        logprob,
    });
    if stopped {
        let _ = seq.job.events.send(Event::Done {
            index: seq.index,
            text: String::new(),
            finish: Finish::Stop,
            tokens: seq.generated,
        });
        return Ok(Some(Finish::Stop));
    }
    if seq.generated >= params.max_tokens || seq.history.len() >= ctx.context {
        return Ok(Some(finish(seq, Finish::Length)));
    }
    seq.next = token;
    Ok(None)
}

/// Ends a choice that did not stop on a stop string: releases the text held back.
fn finish(seq: &mut Sequence, finish: Finish) -> Finish {
    let rest = seq.text.finish().ok().flatten().unwrap_or_default();
    let mut text = match seq.stops.push(&rest) {
        slm_infer::stop::StopCheck::Stop(s) => s,
        slm_infer::stop::StopCheck::Continue(s) => s,
    };
    text.push_str(&seq.stops.finish());
    let _ = seq.job.events.send(Event::Done {
        index: seq.index,
        text,
        finish,
        tokens: seq.generated,
    });
    finish
}

/// The log-probability of `token` under `logits` (softmax at temperature 1, before any
/// sampling filter, as vLLM reports them) with the `top` most likely tokens.
pub fn token_logprob(
    tokenizer: &dyn Tokenizer,
    logits: &[f32],
    token: u32,
    top: usize,
) -> Result<TokenLogprob> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let lse = max
        + logits
            .iter()
            .map(|&v| (v as f64 - max).exp())
            .sum::<f64>()
            .ln();
    let lp = |id: u32| -> Result<f32> {
        logits
            .get(id as usize)
            .map(|&v| (v as f64 - lse) as f32)
            .ok_or_else(|| Error::msg(format!("token {id} outside the logits")))
    };
    // The token's raw bytes, which put a character split across tokens back together as
    // OpenAI's `bytes` do, and its text (U+FFFD for such a part). BOS/EOS and control tokens,
    // which stand for no text, are reported by their piece (`<|im_end|>`), as vLLM and
    // llama.cpp's server do.
    let piece = |id: u32| -> Result<(String, Vec<u8>)> {
        let bytes = match tokenizer.token_bytes(id) {
            Some(b) if b.is_empty() => tokenizer.id_to_piece(id).unwrap_or_default().into_bytes(),
            Some(b) => b,
            None => tokenizer.decode(&[id])?.into_bytes(),
        };
        Ok((String::from_utf8_lossy(&bytes).into_owned(), bytes))
    };
    // The `top` largest logits, best first (a small sorted list: top ≤ 20).
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (i, &v) in logits.iter().enumerate() {
            if best.len() < top || v > best[best.len() - 1].0 {
                let at = best.partition_point(|&(b, _)| b >= v);
                best.insert(at, (v, i as u32));
                best.truncate(top);
            }
        }
    }
    let mut top_logprobs = Vec::with_capacity(best.len());
    for &(_, id) in &best {
        let (token, bytes) = piece(id)?;
        top_logprobs.push(TopLogprob {
            token,
            logprob: lp(id)?,
            bytes: Some(bytes),
        });
    }
    let (text, bytes) = piece(token)?;
    Ok(TokenLogprob {
        token: text,
        logprob: lp(token)?,
        bytes: Some(bytes),
        top_logprobs,
    })
}
