"""Load test for an OpenAI-compatible server: `slm serve` or llama.cpp's server (llama-cpp-python).

Loopback only: this script starts the server itself on 127.0.0.1 (a free port), talks to nothing
else, bounds every level in requests and time, and kills the server when it ends (also on an
error or Ctrl-C).

For each client count C in --clients: C concurrent clients each send N streaming chat completions
back to back (temperature 0, fixed seed, a fixed set of varied short prompts, max_tokens M).
Per request it measures the time to the first non-empty content chunk (TTFT), the gaps between
content chunks (ITL) and the completion tokens (the usage chunk when the server sends one
with stream_options.include_usage, otherwise the number of content chunks). Per level: the
aggregate tokens/s (all completion tokens / wall time of the level), TTFT and ITL percentiles,
the server's peak RSS (VmHWM, since the server started, and the highest VmRSS sampled every
0.2 s during the level) and the errors.

Usage (from the repository root):
  tools/reference/.venv/bin/python tools/serve/load.py --server slm \
      --model /work/shared/data/models/SmolLM2-135M-Instruct.Q4_1.gguf --clients 1,8,32,64
  tools/reference/.venv/bin/python tools/serve/load.py --server llamacpp \
      --model /work/shared/data/models/SmolLM2-135M-Instruct.Q4_1.gguf --clients 1,8,32,64

Only the standard library is used (http.client and threads), so any Python 3.8+ runs it.
The helpers here (ServerProcess, http_json, stream_chat) are reused by faults.py.
"""
import argparse
import atexit
import ctypes
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"  # the only address any request from these tools goes to

PROMPTS = [
    "Name three colours.",
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain what a CPU does in one sentence.",
    "Give me two tips for sleeping better.",
    "What is 12 times 7?",
    "Describe a cat to someone who has never seen one.",
    "List four fruits that are yellow.",
    "Why is the sky blue?",
    "Suggest a name for a small bakery.",
    "Translate 'good morning' into Spanish.",
    "What do bees make?",
    "Tell me a fun fact about octopuses.",
    "How many legs does a spider have?",
    "Write one sentence about autumn.",
    "What is the opposite of 'ancient'?",
]

# --------------------------------------------------------------------------------------------
# Server processes


_LIVE = []  # servers started by this process, killed at exit whatever happens


def _kill_all():
    for s in list(_LIVE):
        try:
            s.kill()
        except Exception:
            pass


atexit.register(_kill_all)


def install_signal_handlers():
    """Ctrl-C / SIGTERM / SIGHUP to this script: unwind (finally blocks and atexit kill servers)."""
    def handler(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, handler)


def _die_with_parent():
    # In the child, before exec: SIGKILL it if this script dies (even by SIGKILL).
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server process on 127.0.0.1 that this script started and will kill."""

    def __init__(self, kind, model, slm_bin="target/release/slm", wtype="q4_0", threads=2,
                 extra=(), ctx=None, ready_timeout=180.0, env=None):
        self.kind = kind
        self.port = None
        self.stderr_file = tempfile.NamedTemporaryFile(
            prefix=f"{kind}-serve-", suffix=".stderr", delete=False)
        if kind == "slm":
            cmd = [slm_bin, "--threads", str(threads), "serve", "-m", model, "--type", wtype,
                   "--host", HOST, "--port", "0"]
            if ctx:
                cmd += ["--ctx", str(ctx)]
        elif kind == "llamacpp":
            self.port = free_port()
            py = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference",
                              ".venv", "bin", "python")
            py = os.path.normpath(py) if os.path.exists(py) else sys.executable
            # llama_cpp_server.py: `python -m llama_cpp.server`, kept from crashing on AMX CPUs
            # (tools/reference/llamacpp_compat.py).
            wrapper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference",
                                   "llama_cpp_server.py")
            cmd = [py, os.path.normpath(wrapper), "--model", model, "--host", HOST,
                   "--port", str(self.port), "--n_threads", str(threads),
                   "--n_threads_batch", str(threads), "--n_ctx", str(ctx or 2048),
                   "--verbose", "False"]
        else:
            raise ValueError(f"unknown server kind {kind!r}")
        cmd += list(extra)
        self.cmd = cmd
        self.started = time.time()
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr_file,
            preexec_fn=_die_with_parent, env=env)
        _LIVE.append(self)
        self.stdout_lines = []
        try:
            self._wait_ready(ready_timeout)
        except BaseException:
            self.kill()
            raise

    @property
    def pid(self):
        return self.proc.pid

    def _wait_ready(self, timeout):
        deadline = time.time() + timeout
        if self.kind == "slm":
            # Read stdout until the `listening on http://127.0.0.1:PORT` line.
            got = {}

            def reader():
                for raw in self.proc.stdout:
                    line = raw.decode("utf-8", "replace").rstrip("\n")
                    self.stdout_lines.append(line)
                    if "listening on http://" in line and "port" not in got:
                        addr = line.split("listening on http://", 1)[1].split()[0].rstrip("/")
                        host, _, port = addr.rpartition(":")
                        got["host"], got["port"] = host, int(port)
            threading.Thread(target=reader, daemon=True).start()
            while time.time() < deadline and "port" not in got:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"slm exited with {self.proc.returncode} before listening:\n"
                                       + self.stderr_tail())
                time.sleep(0.05)
            if "port" not in got:
                raise RuntimeError("slm did not print its listening line in time")
            if got["host"] != HOST:
                raise RuntimeError(f"server listens on {got['host']}, not {HOST}: refusing")
            self.port = got["port"]
        else:
            threading.Thread(target=lambda: [self.stdout_lines.append(l.decode("utf-8", "replace"))
                                             for l in self.proc.stdout], daemon=True).start()
        # Both: wait for an HTTP answer.
        path = "/health" if self.kind == "slm" else "/v1/models"
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}:\n"
                                   + self.stderr_tail())
            try:
                st, _, _ = http_json(self.port, "GET", path, timeout=5)
                if st == 200 or (st == 401 and self.kind == "llamacpp"):  # 401: --api_key set
                    self.ready_s = time.time() - self.started
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.kind} not ready within {timeout} s")

    def health(self, api_key=None):
        """GET /health (slm) or /v1/models (llama-cpp-python has no /health): the status or an error."""
        path = "/health" if self.kind == "slm" else "/v1/models"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            st, _, _ = http_json(self.port, "GET", path, headers=headers, timeout=10)
            return st
        except OSError as e:
            return f"{type(e).__name__}: {e}"

    def model_id(self, api_key=None):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        st, _, body = http_json(self.port, "GET", "/v1/models", headers=headers, timeout=10)
        try:
            return json.loads(body)["data"][0]["id"]
        except Exception:
            return "default"

    def mem(self):
        """(VmRSS, VmHWM) in MB from /proc, or (None, None) once the process is gone."""
        rss = hwm = None
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1]) / 1024
                    elif line.startswith("VmHWM:"):
                        hwm = int(line.split()[1]) / 1024
        except OSError:
            pass
        return rss, hwm

    def stderr_tail(self, n=30):
        try:
            with open(self.stderr_file.name, "rb") as f:
                data = f.read()
            return "\n".join(data.decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def stderr_text(self):
        try:
            with open(self.stderr_file.name, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def kill(self, grace=10.0):
        """SIGTERM, wait up to `grace` s, then SIGKILL. Idempotent."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            except Exception:
                try:
                    self.proc.kill()
                except Exception:
                    pass
        if self in _LIVE:
            _LIVE.remove(self)
        return self.proc.returncode

    def cleanup_files(self):
        try:
            os.unlink(self.stderr_file.name)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        return False


# --------------------------------------------------------------------------------------------
# HTTP (always to 127.0.0.1)


def http_json(port, method, path, body=None, headers=None, timeout=60, raw=False):
    """One request to 127.0.0.1:port. body: a dict/list (sent as JSON), bytes/str (sent as is) or
    None. Returns (status, headers dict with lower-case names, body text)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        h = {"Connection": "close"}
        if body is not None:
            if isinstance(body, (dict, list)) and not raw:
                body = json.dumps(body).encode()
            elif isinstance(body, str):
                body = body.encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data.decode("utf-8", "replace")
    finally:
        conn.close()


def open_stream(port, path, payload, headers=None, timeout=120):
    """POST a streaming request; returns (conn, resp). The caller reads SSE with sse_events()."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    h = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    h.update(headers or {})
    conn.request("POST", path, body=json.dumps(payload).encode(), headers=h)
    return conn, conn.getresponse()


def sse_events(resp):
    """Yield (time, data string) per SSE `data:` line as it arrives."""
    while True:
        line = resp.readline()
        if not line:
            return
        line = line.decode("utf-8", "replace").rstrip("\r\n")
        if line.startswith("data:"):
            yield time.perf_counter(), line[5:].strip()


def stream_chat(port, model, messages, max_tokens, headers=None, timeout=120, deadline=None,
                include_usage=True, extra=None):
    """One streaming chat completion. Returns a dict: status, ttft (s), itls (list of s),
    tokens, tokens_source ('usage' or 'chunks'), content chunks, finish_reason, done ([DONE]
    seen), error (None or text), latency (s)."""
    payload = {"model": model, "messages": messages, "max_tokens": max_tokens, "stream": True,
               "temperature": 0, "seed": 1234}
    if include_usage:
        payload["stream_options"] = {"include_usage": True}
    payload.update(extra or {})
    r = {"status": None, "ttft": None, "itls": [], "tokens": 0, "tokens_source": "chunks",
         "chunks": 0, "finish_reason": None, "done": False, "error": None, "latency": None,
         "text": ""}
    t0 = time.perf_counter()
    conn = None
    try:
        conn, resp = open_stream(port, "/v1/chat/completions", payload, headers, timeout)
        r["status"] = resp.status
        if resp.status != 200:
            r["error"] = f"HTTP {resp.status}: {resp.read()[:300].decode('utf-8', 'replace')}"
            return r
        last = None
        usage_tokens = None
        for t, data in sse_events(resp):
            if data == "[DONE]":
                r["done"] = True
                break
            try:
                ev = json.loads(data)
            except ValueError:
                r["error"] = f"bad SSE data: {data[:200]}"
                break
            if "error" in ev:
                r["error"] = f"error event: {json.dumps(ev['error'])[:300]}"
            if ev.get("usage"):
                usage_tokens = ev["usage"].get("completion_tokens")
            for ch in ev.get("choices") or []:
                content = (ch.get("delta") or {}).get("content")
                if content:
                    r["chunks"] += 1
                    r["text"] += content
                    if last is None:
                        r["ttft"] = t - t0
                    else:
                        r["itls"].append(t - last)
                    last = t
                if ch.get("finish_reason"):
                    r["finish_reason"] = ch["finish_reason"]
            if deadline is not None and time.time() > deadline:
                r["error"] = "level time bound reached mid-stream"
                break
        if usage_tokens is not None:
            r["tokens"], r["tokens_source"] = usage_tokens, "usage"
        else:
            r["tokens"] = r["chunks"]
        if not r["done"] and r["error"] is None:
            r["error"] = "stream ended without [DONE]"
    except (OSError, http.client.HTTPException) as e:
        r["error"] = f"{type(e).__name__}: {e}"
    finally:
        r["latency"] = time.perf_counter() - t0
        if conn is not None:
            conn.close()
    return r


# --------------------------------------------------------------------------------------------
# Reporting helpers


def cpu_name():
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    k, v = (x.strip() for x in line.split(":", 1))
                    if k in ("model name", "cpu family", "model", "stepping", "vendor_id") and k not in info:
                        info[k] = v
    except OSError:
        pass
    return (f"{info.get('model name', '?')} (vendor {info.get('vendor_id', '?')}, family "
            f"{info.get('cpu family', '?')}, model {info.get('model', '?')}, stepping "
            f"{info.get('stepping', '?')}), {os.cpu_count()} logical CPUs")


def pct(values, p):
    """Percentile p (0..100) with linear interpolation; None for no values."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def ms(x):
    return None if x is None else round(x * 1000.0, 1)


# --------------------------------------------------------------------------------------------
# The load test


def run_level(server, model_id, clients, n_per_client, max_tokens, prompts, level_timeout,
              include_usage):
    deadline = time.time() + level_timeout
    results = []
    lock = threading.Lock()
    stop_sampling = threading.Event()
    peak_rss = [0.0]
    peak_hwm = [0.0]

    def sampler():
        while not stop_sampling.is_set():
            rss, hwm = server.mem()
            if rss is not None:
                peak_rss[0] = max(peak_rss[0], rss)
            if hwm is not None:
                peak_hwm[0] = max(peak_hwm[0], hwm)
            stop_sampling.wait(0.2)

    def client(ci):
        for i in range(n_per_client):
            if time.time() > deadline:
                return
            prompt = prompts[(ci * n_per_client + i) % len(prompts)]
            r = stream_chat(server.port, model_id, [{"role": "user", "content": prompt}],
                            max_tokens, timeout=min(120, level_timeout), deadline=deadline,
                            include_usage=include_usage)
            r.pop("text", None)
            with lock:
                results.append(r)

    st = threading.Thread(target=sampler, daemon=True)
    st.start()
    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.time()) + 30)  # a stuck socket times out on its own
    wall = time.perf_counter() - t0
    stop_sampling.set()
    st.join()
    rss, hwm = server.mem()
    if hwm is not None:
        peak_hwm[0] = max(peak_hwm[0], hwm)
    with lock:
        res = list(results)
    CUT = "level time bound reached mid-stream"
    ok = [r for r in res if r["error"] is None]
    cut = [r for r in res if r["error"] == CUT]  # abandoned at the bound: not server errors
    errors = [r for r in res if r["error"] is not None and r["error"] != CUT]
    tokens = sum(r["tokens"] for r in res)
    ttfts = [r["ttft"] for r in res if r["ttft"] is not None]
    itls = [x for r in res for x in r["itls"]]
    err_kinds = {}
    for r in errors:
        k = (r["error"] or "")[:80]
        err_kinds[k] = err_kinds.get(k, 0) + 1
    return {
        "clients": clients,
        "requests": len(res),
        "requests_planned": clients * n_per_client,
        "ok": len(ok),
        "errors": len(errors),
        "cut_at_time_bound": len(cut),
        "error_kinds": err_kinds,
        "timed_out": time.time() > deadline,
        "tokens": tokens,
        "tokens_source": sorted({r["tokens_source"] for r in res}),
        "wall_s": round(wall, 3),
        "agg_tok_s": round(tokens / wall, 2) if wall > 0 else None,
        "ttft_p50_ms": ms(pct(ttfts, 50)),
        "ttft_p99_ms": ms(pct(ttfts, 99)),
        "itl_p50_ms": ms(pct(itls, 50)),
        "itl_p99_ms": ms(pct(itls, 99)),
        "latency_p50_ms": ms(pct([r["latency"] for r in res], 50)),
        "finish_reasons": {fr: sum(1 for r in res if r["finish_reason"] == fr)
                           for fr in sorted({str(r["finish_reason"]) for r in res})},
        "peak_rss_mb": round(peak_rss[0], 1),
        "vm_hwm_mb": round(peak_hwm[0], 1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", choices=["slm", "llamacpp"], required=True)
    ap.add_argument("--model", required=True, help="GGUF file")
    ap.add_argument("--slm-bin", default="target/release/slm")
    ap.add_argument("--type", default="q4_0", help="slm --type (weight storage while decoding)")
    ap.add_argument("--threads", type=int, default=2,
                    help="slm --threads / llama.cpp --n_threads and --n_threads_batch")
    ap.add_argument("--clients", default="1,8,32,64", help="comma-separated client counts")
    ap.add_argument("--requests-per-client", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt-file", help="one prompt per line (default: 16 built-in prompts)")
    ap.add_argument("--out", default="results.jsonl", help="JSON lines, appended, one per level")
    ap.add_argument("--level-timeout", type=float, default=300.0,
                    help="seconds per level; past it no new requests start and open streams stop")
    ap.add_argument("--max-batch", type=int, default=64, help="slm --max-batch")
    ap.add_argument("--queue", type=int, default=256, help="slm --queue")
    ap.add_argument("--ctx", type=int, default=2048, help="context per sequence (both servers)")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra argument passed to the server (repeatable)")
    args = ap.parse_args()
    install_signal_handlers()

    levels = [int(x) for x in args.clients.split(",") if x.strip()]
    if any(c < 1 or c > 512 for c in levels):
        sys.exit("client counts must be within 1..512")
    if args.requests_per_client < 1 or args.requests_per_client > 1000:
        sys.exit("--requests-per-client must be within 1..1000")
    prompts = PROMPTS
    if args.prompt_file:
        with open(args.prompt_file) as f:
            prompts = [l.strip() for l in f if l.strip()]
        if not prompts:
            sys.exit("empty --prompt-file")

    extra = list(args.server_arg)
    if args.server == "slm":
        extra = ["--max-batch", str(args.max_batch), "--queue", str(args.queue)] + extra
    else:
        # llama-cpp-python interrupts a running stream when a new request arrives unless told not to.
        extra = ["--interrupt_requests", "False"] + extra
    include_usage = args.server == "slm"  # llama-cpp-python ignores stream_options: count chunks

    cpu = cpu_name()
    print(f"# CPU: {cpu}")
    print(f"# load average at start: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    print(f"# server: {args.server}, model {os.path.basename(args.model)}, threads {args.threads}, "
          f"ctx {args.ctx}, max_tokens {args.max_tokens}, {args.requests_per_client} requests/client, "
          f"level bound {args.level_timeout:.0f} s")
    server = ServerProcess(args.server, args.model, slm_bin=args.slm_bin, wtype=args.type,
                           threads=args.threads, extra=extra, ctx=args.ctx)
    rc = 0
    try:
        print(f"# command: {' '.join(server.cmd)}")
        print(f"# ready after {server.ready_s:.1f} s on 127.0.0.1:{server.port} (pid {server.pid})")
        model_id = server.model_id()
        if not args.no_warmup:
            w = stream_chat(server.port, model_id, [{"role": "user", "content": "Hello"}], 8,
                            include_usage=include_usage)
            if w["error"]:
                print(f"# warm-up failed: {w['error']}")
        hdr = (f"{'clients':>7} {'requests':>8} {'tokens':>7} {'wall s':>8} {'agg tok/s':>9} "
               f"{'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8} {'peak RSS MB':>11} "
               f"{'HWM MB':>7} {'errors':>6}")
        print(hdr)
        print("-" * len(hdr))
        with open(args.out, "a") as out:
            for c in levels:
                row = run_level(server, model_id, c, args.requests_per_client, args.max_tokens,
                                prompts, args.level_timeout, include_usage)
                f = lambda x, w, d=1: f"{x:>{w}.{d}f}" if isinstance(x, (int, float)) else f"{'-':>{w}}"
                print(f"{row['clients']:>7} {row['requests']:>8} {row['tokens']:>7} "
                      f"{f(row['wall_s'], 8, 2)} {f(row['agg_tok_s'], 9)} {f(row['ttft_p50_ms'], 9)} "
                      f"{f(row['ttft_p99_ms'], 9)} {f(row['itl_p50_ms'], 8)} {f(row['itl_p99_ms'], 8)} "
                      f"{f(row['peak_rss_mb'], 11)} {f(row['vm_hwm_mb'], 7)} {row['errors']:>6}"
                      + (f"  (level time bound hit: {row['cut_at_time_bound']} streams cut)"
                         if row["timed_out"] else ""), flush=True)
                if row["error_kinds"]:
                    for k, n in row["error_kinds"].items():
                        print(f"#   {n} x {k}")
                    rc = 1
                rec = {"server": args.server, "model": os.path.basename(args.model),
                       "type": args.type if args.server == "slm" else "gguf", "threads": args.threads,
                       "ctx": args.ctx, "max_tokens": args.max_tokens,
                       "requests_per_client": args.requests_per_client, "cpu": cpu,
                       "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **row}
                out.write(json.dumps(rec) + "\n")
                out.flush()
                if server.proc.poll() is not None:
                    print(f"# server exited with {server.proc.returncode}:\n{server.stderr_tail()}")
                    rc = 1
                    break
        print("# TTFT: first non-empty content chunk; ITL: gaps between content chunks; tokens: "
              + ("usage chunk" if include_usage else "content chunks (no usage in stream)")
              + "; peak RSS: highest VmRSS sampled every 0.2 s in the level; HWM: VmHWM since start")
    finally:
        code = server.kill()
        tail = server.stderr_text()
        if "panic" in tail.lower():
            print("# server stderr mentions a panic:\n" + server.stderr_tail())
            rc = 1
        server.cleanup_files()
        print(f"# server stopped (exit code {code})")
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:
        _kill_all()
        print(f"# interrupted ({e}); server killed", file=sys.stderr)
        sys.exit(130)
