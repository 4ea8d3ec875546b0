//! slm-serve: `slm serve`, an OpenAI-compatible HTTP server over the decode engine.
//!
//! - `engine`: continuous batching on one thread (slots, chunked prefill, one batched decode
//!   step for all sequences, cancellation, deadlines);
//! - `request`: request bodies → checked plans (prompt tokens, sampling, limits);
//! - `http`: routes (`/v1/models`, `/v1/chat/completions`, `/v1/completions`, `/health`,
//!   `/metrics`), the bearer key, JSON and server-sent-event responses;
//! - `metrics`: the Prometheus counters and histograms.
//!
//! [`serve`] binds, runs until `shutdown` resolves (Ctrl-C / SIGTERM in the CLI), then stops
//! taking requests (503), lets those in flight finish for up to `drain` and fails the rest.

pub mod engine;
pub mod http;
pub mod metrics;
pub mod request;

use engine::{EngineConfig, Job};
use metrics::Metrics;
use request::Limits;
use slm_core::{Error, Result};
use slm_data::chat::ChatTemplate;
use slm_data::tokenizer::Tokenizer;
use slm_infer::decode::{Decoder, KvType};
use slm_infer::SamplerConfig;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `slm serve`'s settings.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub host: String,
    /// 0 picks a free port (the address is passed to `on_ready`).
    pub port: u16,
    pub api_key: Option<String>,
    /// Sequences decoded together (slots).
    pub max_batch: usize,
    /// Requests waiting for a slot before new ones get 429.
    pub queue: usize,
    /// Prompt tokens prefilled per engine step.
    pub prefill_chunk: usize,
    /// A request still running this long after it arrived is ended (504).
    pub timeout: Duration,
    /// After shutdown begins, how long requests in flight may take to finish.
    pub drain: Duration,
    /// Largest request body accepted (413 above).
    pub max_body: usize,
    pub kv: KvType,
    /// The name `/v1/models` reports.
    pub model_name: String,
    /// Sampling where a request says nothing.
    pub defaults: SamplerConfig,
    /// Tokens that end a choice (EOS and the template's end-of-turn tokens).
    pub stop_tokens: Vec<u32>,
}

/// Serves `decoder` until `shutdown` resolves. `on_ready` gets the bound address once the
/// server accepts connections.
pub fn serve(
    decoder: Decoder,
    tokenizer: Arc<dyn Tokenizer>,
    template: Option<ChatTemplate>,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    if opts.max_batch == 0 || opts.queue == 0 {
        return Err(Error::invalid("--max-batch and --queue must be at least 1"));
    }
    let metrics = Arc::new(Metrics::default());
    let abort = Arc::new(AtomicBool::new(false));
    let draining = Arc::new(AtomicBool::new(false));
    // Room for a full queue plus a burst as large as the free slots (see `http::generate`).
    let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(opts.queue + opts.max_batch);
    let limits = Limits {
        context: decoder.config().max_position_embeddings,
        max_n: opts.max_batch,
        vocab_size: decoder.config().vocab_size,
        defaults: opts.defaults.clone(),
    };
    let cfg = EngineConfig {
        max_batch: opts.max_batch,
        prefill_chunk: opts.prefill_chunk,
        kv: opts.kv,
        stop_tokens: opts.stop_tokens.clone(),
    };
    let engine = {
        let (tokenizer, metrics, abort) = (tokenizer.clone(), metrics.clone(), abort.clone());
        std::thread::Builder::new()
            .name("slm-engine".into())
            .spawn(move || engine::run(&decoder, tokenizer.as_ref(), &cfg, rx, &metrics, &abort))
            .map_err(|e| Error::msg(format!("starting the engine thread: {e}")))?
    };
    let state = Arc::new(http::AppState::new(
        tokenizer,
        template,
        opts.model_name.clone(),
        limits,
        jobs,
        metrics,
        opts.api_key.clone(),
        opts.timeout,
        opts.queue,
        draining.clone(),
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::msg(format!("starting the async runtime: {e}")))?;
    let abort_after = abort.clone();
    let served = runtime.block_on(async move {
        let addr = format!("{}:{}", opts.host, opts.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| Error::msg(format!("cannot listen on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::msg(format!("reading the bound address: {e}")))?;
        on_ready(local);
        let app = http::router(state, opts.max_body);
        let (begun_tx, begun_rx) = tokio::sync::oneshot::channel::<()>();
        let graceful = {
            let draining = draining.clone();
            async move {
                shutdown.await;
                draining.store(true, Ordering::SeqCst);
                let _ = begun_tx.send(());
            }
        };
        let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
        // After shutdown begins: `drain` for requests in flight, then the engine fails the
        // rest (their streams end with an error event), then a last second for those
        // answers to leave.
        let deadline = {
            let abort = abort_after;
            let drain = opts.drain;
            async move {
                if begun_rx.await.is_err() {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(drain).await;
                abort.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        tokio::select! {
            r = server => r.map_err(|e| Error::msg(format!("the server failed: {e}"))),
            _ = deadline => Ok(()),
        }
    });
    // The router (and with it the job sender) is gone: the engine ends once idle.
    if served.is_err() {
        abort.store(true, Ordering::SeqCst);
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    let _ = engine.join();
    served
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM: the shutdown signal of `slm serve`.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
