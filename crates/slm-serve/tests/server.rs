//! `slm serve` on a tiny random model with a trained tokenizer (no shared data needed):
//! continuous batching gives every request the tokens it gets alone; the routes answer as
//! OpenAI's do (streams, logprobs, n, usage); bad input, a full queue, vanished clients,
//! timeouts and shutdown are each answered with the right status or a clean end, and the
//! server keeps serving.

use slm_data::chat::ChatTemplate;
use slm_data::tokenizer::{self, Tokenizer};
use slm_infer::decode::{Decoder, KvType, WeightType};
use slm_infer::{generate_with, GenerateOptions, SamplerConfig};
use slm_model::Llama;
use slm_serve::engine::{self, EngineConfig, Event, GenParams, Job};
use slm_serve::metrics::Metrics;
use slm_serve::ServeOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

fn tokenizer(dir: &std::path::Path) -> Arc<dyn Tokenizer> {
    let text = "Once upon a time there was a little robot who liked to count the stars. \
                Every night it climbed the hill and counted one, two, three, four, five. \
                The robot's friend, a small owl, asked why. Because stars are friends too.";
    let docs = std::iter::repeat_n(text, 20);
    let tok = tokenizer::train::train_bpe(
        docs,
        &tokenizer::train::BpeTrainOptions {
            vocab_size: 320,
            min_frequency: 1,
            special_tokens: vec![
                "<|endoftext|>".into(),
                "<|im_start|>".into(),
                "<|im_end|>".into(),
            ],
        },
    )
    .unwrap();
    let path = dir.join("tokenizer.json");
    tokenizer::train::save(&tok, &path).unwrap();
    Arc::from(tokenizer::load_tokenizer_file(&path).unwrap())
}

fn model(vocab: usize, context: usize) -> Llama {
    let mut c = slm_model::preset("260k").unwrap();
    c.vocab_size = vocab;
    c.hidden_size = 64;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 16;
    c.intermediate_size = 96;
    c.max_position_embeddings = context;
    Llama::random(c, 7, &candle_core::Device::Cpu).unwrap()
}

fn greedy_params(max_tokens: usize) -> GenParams {
    GenParams {
        max_tokens,
        sampler: SamplerConfig::greedy(),
        stop: vec![],
        n: 1,
        logprobs: true,
        top_logprobs: 0,
    }
}

/// Requests arriving while others decode, with fewer slots than requests and prompts longer
/// than a prefill chunk, each get exactly the text (and log-probabilities) they get alone.
#[test]
fn batched_decoding_equals_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let llama = model(tok.vocab_size(), 96);
    let decoder = Decoder::new(&llama, WeightType::F32).unwrap();
    let prompts: Vec<Vec<u32>> = (0..6)
        .map(|i| {
            (0..3 + 9 * i)
                .map(|j| ((j * 31 + i * 7) % 300) as u32 + 3)
                .collect()
        })
        .collect();
    let alone: Vec<(String, Vec<f32>)> = prompts
        .iter()
        .map(|p| {
            let mut st = decoder.new_state();
            let g = generate_with(
                &decoder,
                &mut st,
                tok.as_ref(),
                p.clone(),
                &GenerateOptions {
                    max_tokens: 24,
                    sampler: SamplerConfig::greedy(),
                    stop_at_eos: false,
                    logprobs: true,
                    ..Default::default()
                },
                &mut |_| Ok(()),
            )
            .unwrap();
            (g.text, g.logprobs)
        })
        .collect();

    let cfg = EngineConfig {
        max_batch: 3,
        prefill_chunk: 7,
        kv: KvType::F32,
        stop_tokens: vec![],
    };
    let metrics = Metrics::default();
    let abort = AtomicBool::new(false);
    let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(16);
    let results = std::thread::scope(|s| {
        s.spawn(|| engine::run(&decoder, tok.as_ref(), &cfg, rx, &metrics, &abort));
        let mut receivers = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            let (tx, mut erx) = tokio::sync::mpsc::unbounded_channel();
            jobs.send(Job {
                prompt: p.clone(),
                params: greedy_params(24),
                events: tx,
                deadline: Instant::now() + Duration::from_secs(60),
            })
            .unwrap();
            if i == 1 {
                // Let the first two start decoding before the rest arrive.
                while erx.blocking_recv() != Some(Event::Prefilled) {}
            }
            receivers.push(erx);
        }
        drop(jobs);
        receivers
            .into_iter()
            .map(|mut erx| {
                let (mut text, mut lps) = (String::new(), Vec::new());
                while let Some(e) = erx.blocking_recv() {
                    match e {
                        Event::Token {
                            text: t, logprob, ..
                        } => {
                            text.push_str(&t);
                            lps.push(logprob.unwrap().logprob);
                        }
                        Event::Done { text: t, .. } => text.push_str(&t),
                        Event::Failed { message, .. } => panic!("{message}"),
                        Event::Prefilled => {}
                    }
                }
                (text, lps)
            })
            .collect::<Vec<_>>()
    });
    for (i, ((bt, bl), (at, al))) in results.iter().zip(&alone).enumerate() {
        assert_eq!(bt, at, "request {i}: batched text differs from alone");
        assert_eq!(bl.len(), al.len());
        let worst = bl
            .iter()
            .zip(al)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "request {i}: logprob differs by {worst}");
    }
    // The requests shared steps: some step decoded more than one sequence.
    assert!(metrics.batch_size.count() > 0);
    assert!(metrics.render().contains("slm_batch_size_bucket{le=\"2\"}"));
}

/// A server on a free loopback port; shut down when dropped.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<slm_core::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(tune: impl FnOnce(&mut ServeOptions)) -> Self {
        Self::with_context(64, tune)
    }

    fn with_context(context: usize, tune: impl FnOnce(&mut ServeOptions)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tok = tokenizer(dir.path());
        let llama = model(tok.vocab_size(), context);
        let decoder = Decoder::new(&llama, WeightType::F32).unwrap();
        let template = ChatTemplate::new(TEMPLATE, "test").unwrap();
        let mut opts = ServeOptions {
            host: "127.0.0.1".into(),
            port: 0,
            api_key: None,
            max_batch: 4,
            queue: 8,
            prefill_chunk: 16,
            timeout: Duration::from_secs(60),
            drain: Duration::from_secs(10),
            max_body: 1 << 20,
            kv: KvType::F32,
            model_name: "tiny".into(),
            defaults: SamplerConfig::greedy(),
            stop_tokens: vec![tok.token_to_id("<|im_end|>").unwrap()],
        };
        tune(&mut opts);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            slm_serve::serve(
                decoder,
                tok,
                Some(template),
                opts,
                async move {
                    let _ = stopped.await;
                },
                move |a| ready_tx.send(a).unwrap(),
            )
        });
        let addr = ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn shutdown(&mut self) -> slm_core::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.thread
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or(Ok(()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// POST `body` (raw bytes); (status, headers' Retry-After, body text).
fn post(url: &str, body: &[u8], key: Option<&str>) -> (u16, Option<String>, String) {
    let mut req = ureq::post(url).set("Content-Type", "application/json");
    if let Some(k) = key {
        req = req.set("Authorization", &format!("Bearer {k}"));
    }
    match req.send_bytes(body) {
        Ok(r) => (r.status(), None, r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (
            code,
            r.header("retry-after").map(str::to_string),
            r.into_string().unwrap(),
        ),
        Err(e) => panic!("{url}: {e}"),
    }
}

/// POST a body the server may refuse before reading it: written from a second thread while
/// this one reads the status line.
fn post_unread_body(addr: SocketAddr, path: &str, body: &[u8]) -> u16 {
    let conn = TcpStream::connect(addr).unwrap();
    let mut writer = conn.try_clone().unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let body = body.to_vec();
    let sender = std::thread::spawn(move || {
        // The server may close the connection mid-body: a write error is expected then.
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&body);
    });
    let mut status_line = String::new();
    BufReader::new(conn).read_line(&mut status_line).unwrap();
    sender.join().unwrap();
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {status_line:?}"))
}

fn get(url: &str, key: Option<&str>) -> (u16, String) {
    let mut req = ureq::get(url);
    if let Some(k) = key {
        req = req.set("Authorization", &format!("Bearer {k}"));
    }
    match req.call() {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("{url}: {e}"),
    }
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// The `data:` payloads of an SSE body.
fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .collect()
}

#[test]
fn routes_answer_as_openai_does() {
    let s = Server::start(|_| {});
    let (code, body) = get(&s.url("/v1/models"), None);
    assert_eq!(
        (code, json(&body)["data"][0]["id"].as_str()),
        (200, Some("tiny"))
    );
    assert_eq!(get(&s.url("/health"), None).0, 200);

    // Chat, whole.
    let chat = br#"{"messages":[{"role":"system","content":"Count."},{"role":"user","content":"one, two"}],"max_tokens":12,"temperature":0,"logprobs":true,"top_logprobs":3}"#;
    let (code, _, body) = post(&s.url("/v1/chat/completions"), chat, None);
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["object"], "chat.completion");
    let choice = &v["choices"][0];
    let content = choice["message"]["content"].as_str().unwrap().to_string();
    let lps = choice["logprobs"]["content"].as_array().unwrap();
    assert_eq!(
        lps.len() as u64,
        v["usage"]["completion_tokens"].as_u64().unwrap()
    );
    assert!(lps
        .iter()
        .all(|l| l["top_logprobs"].as_array().unwrap().len() == 3));
    // Greedy: the chosen token is the most likely one.
    assert!(lps
        .iter()
        .all(|l| l["logprob"].as_f64() == l["top_logprobs"][0]["logprob"].as_f64()));
    assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));

    // The same request streamed gives the same text, a role chunk first, usage, [DONE].
    let mut streamed = json(std::str::from_utf8(chat).unwrap());
    streamed["stream"] = true.into();
    streamed["stream_options"] = serde_json::json!({"include_usage": true});
    let (code, _, body) = post(
        &s.url("/v1/chat/completions"),
        streamed.to_string().as_bytes(),
        None,
    );
    assert_eq!(code, 200);
    let events = sse_data(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<serde_json::Value> =
        events[..events.len() - 1].iter().map(|e| json(e)).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, content);
    assert_eq!(chunks.last().unwrap()["usage"], v["usage"]);
    assert!(chunks.last().unwrap()["choices"]
        .as_array()
        .unwrap()
        .is_empty());

    // Completions with n = 2 and a seed: two choices, repeatable.
    let comp = br#"{"prompt":"Once upon a time","max_tokens":10,"temperature":1.0,"seed":3,"n":2,"logprobs":2}"#;
    let (code, _, a) = post(&s.url("/v1/completions"), comp, None);
    assert_eq!(code, 200, "{a}");
    let (_, _, b) = post(&s.url("/v1/completions"), comp, None);
    let (a, b) = (json(&a), json(&b));
    assert_eq!(a["choices"], b["choices"], "same seed, same choices");
    assert_eq!(a["choices"].as_array().unwrap().len(), 2);
    let lp = &a["choices"][0]["logprobs"];
    assert_eq!(
        lp["tokens"].as_array().unwrap().len(),
        lp["text_offset"].as_array().unwrap().len()
    );

    // max_tokens 10^9 ends at the context with "length".
    let (code, _, body) = post(
        &s.url("/v1/completions"),
        br#"{"prompt":[5,6,7],"max_tokens":1000000000,"temperature":0}"#,
        None,
    );
    assert_eq!(code, 200);
    let v = json(&body);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["total_tokens"], 64);

    // Bad input: each a 4xx with OpenAI's error body, and the server still serves.
    let long = format!(r#"{{"prompt":"{}"}}"#, "stars ".repeat(200));
    let huge = format!(r#"{{"prompt":"{}"}}"#, "x".repeat(2 << 20));
    for (path, body, want) in [
        ("/v1/chat/completions", &b"{not json"[..], 400),
        ("/v1/chat/completions", br#"{"messages":3}"#, 400),
        ("/v1/chat/completions", br#"{"messages":[{"role":"user","content":"a"}],"temperature":"hot"}"#, 400),
        ("/v1/chat/completions", br#"{"messages":[{"role":"user","content":"a"}],"response_format":{"type":"json_object"}}"#, 400),
        ("/v1/chat/completions", br#"{"messages":[{"role":"user","content":"a"}],"n":9}"#, 400),
        ("/v1/completions", long.as_bytes(), 400),
        ("/v1/completions", br#"{"prompt":[99999]}"#, 400),
        ("/v1/embeddings", br#"{}"#, 404),
    ] {
        let (code, _, text) = post(&s.url(path), body, None);
        assert_eq!(code, want, "{path} {}: {text}", String::from_utf8_lossy(&body[..body.len().min(80)]));
        assert!(json(&text)["error"]["message"].as_str().is_some(), "{text}");
    }
    // A body past the limit: 413, answered before the body is read through (the client keeps
    // writing while it reads the answer; a client that only reads after writing everything
    // may find the connection closed under it).
    assert_eq!(
        post_unread_body(s.addr, "/v1/completions", huge.as_bytes()),
        413
    );
    assert_eq!(
        post(
            &s.url("/v1/completions"),
            br#"{"prompt":"a","max_tokens":2}"#,
            None
        )
        .0,
        200
    );
    let (_, metrics) = get(&s.url("/metrics"), None);
    assert!(
        metrics.contains("slm_requests_total{route=\"/v1/completions\",status=\"400\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("slm_time_to_first_token_seconds_count"));
}

#[test]
fn api_key_guards_every_route_but_health() {
    let s = Server::start(|o| o.api_key = Some("sekret".into()));
    assert_eq!(get(&s.url("/health"), None).0, 200);
    assert_eq!(get(&s.url("/v1/models"), None).0, 401);
    assert_eq!(get(&s.url("/metrics"), Some("wrong")).0, 401);
    assert_eq!(get(&s.url("/v1/models"), Some("sekret")).0, 200);
    let body = br#"{"prompt":"a","max_tokens":2}"#;
    assert_eq!(post(&s.url("/v1/completions"), body, None).0, 401);
    assert_eq!(post(&s.url("/v1/completions"), body, Some("sekret")).0, 200);
}

/// A burst far larger than slots + queue: every answer is 200 or 429 with Retry-After,
/// nothing else, and the server serves afterwards.
#[test]
fn a_burst_past_the_queue_gets_429_and_the_server_keeps_serving() {
    let s = Server::start(|o| {
        o.max_batch = 2;
        o.queue = 2;
    });
    let url = s.url("/v1/completions");
    let codes: Vec<(u16, Option<String>)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..60)
            .map(|_| {
                sc.spawn(|| {
                    let (c, ra, _) = post(&url, br#"{"prompt":"a b c","max_tokens":20}"#, None);
                    (c, ra)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = codes.iter().filter(|c| c.0 == 200).count();
    let busy = codes.iter().filter(|c| c.0 == 429).count();
    assert_eq!(ok + busy, codes.len(), "{codes:?}");
    assert!(ok >= 4 && busy > 0, "{ok} answered, {busy} told to retry");
    assert!(codes
        .iter()
        .filter(|c| c.0 == 429)
        .all(|c| c.1.as_deref() == Some("1")));
    assert_eq!(post(&url, br#"{"prompt":"a","max_tokens":2}"#, None).0, 200);
    let (_, m) = get(&s.url("/metrics"), None);
    assert!(
        m.contains(&format!("slm_rejected_queue_full_total {busy}")),
        "{m}"
    );
}

/// Requests arriving together while slots are free are all taken, however short the queue:
/// the queue bounds the waiting, not the slots (the engine admits only between its steps).
#[test]
fn a_burst_no_larger_than_the_free_slots_is_all_served() {
    let s = Server::start(|o| {
        o.max_batch = 8;
        o.queue = 1;
    });
    let url = s.url("/v1/completions");
    let codes: Vec<u16> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|_| sc.spawn(|| post(&url, br#"{"prompt":"a b c","max_tokens":16}"#, None).0))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(codes.iter().all(|&c| c == 200), "{codes:?}");
}

/// Context for the tests that need a request to run long: 65,536 positions take the tiny
/// model tens of seconds (attention grows with the position), whatever the CPU.
const LONG_CONTEXT: usize = 1 << 16;

/// A client that goes away mid-stream frees its slot: with one slot, the next request is
/// answered long before the first (65,535 tokens) would have finished.
#[test]
fn a_vanished_client_frees_its_slot() {
    let s = Server::with_context(LONG_CONTEXT, |o| {
        o.max_batch = 1;
        // Sampled at temperature 1, the random model may say <|im_end|>: nothing stops it here.
        o.stop_tokens.clear();
        o.timeout = Duration::from_secs(600);
    });
    let mut conn = TcpStream::connect(s.addr).unwrap();
    let body = r#"{"prompt":[5],"max_tokens":1000000,"stream":true,"temperature":1.0}"#;
    write!(
        conn,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut seen = 0;
    let mut line = String::new();
    while seen < 2 {
        line.clear();
        reader.read_line(&mut line).unwrap();
        seen += line.starts_with("data: ") as usize;
    }
    drop(reader);
    conn.shutdown(std::net::Shutdown::Both).unwrap();
    drop(conn);
    let t = Instant::now();
    let (code, _, _) = post(
        &s.url("/v1/completions"),
        br#"{"prompt":"a","max_tokens":3}"#,
        None,
    );
    assert_eq!(code, 200);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    let (_, m) = get(&s.url("/metrics"), None);
    assert!(m.contains("slm_cancelled_total 1"), "{m}");
}

#[test]
fn a_request_past_the_timeout_gets_504() {
    let s = Server::with_context(LONG_CONTEXT, |o| o.timeout = Duration::from_millis(1));
    let (code, _, body) = post(
        &s.url("/v1/completions"),
        br#"{"prompt":"a","max_tokens":100000}"#,
        None,
    );
    assert_eq!(code, 504, "{body}");
    assert!(body.contains("--timeout"));
}

/// Shutdown: the request in flight finishes, new ones are refused, `serve` returns.
#[test]
fn shutdown_lets_the_request_in_flight_finish() {
    let mut s = Server::start(|o| o.drain = Duration::from_secs(20));
    let mut conn = TcpStream::connect(s.addr).unwrap();
    let body = r#"{"prompt":[5],"max_tokens":60,"stream":true,"temperature":0}"#;
    write!(
        conn,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    while !line.starts_with("data: ") {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    let addr = s.addr;
    let stopper = std::thread::spawn(move || s.shutdown());
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("\"finish_reason\":\"length\""), "{rest}");
    assert!(rest.contains("data: [DONE]"), "{rest}");
    stopper.join().unwrap().unwrap();
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening after shutdown"
    );
}
