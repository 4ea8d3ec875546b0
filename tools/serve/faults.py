"""Fault checks for an OpenAI-compatible server: `slm serve` (default) or llama.cpp's server
(llama-cpp-python, for comparison where a check means something there).

Loopback only: every server is started here on 127.0.0.1 (a free port), every request goes to
it, each check is bounded in requests and time, and each server is killed at the end (also on an
error or Ctrl-C). Each check prints PASS/FAIL (or SKIP) with what was observed; after every
check GET /health must be 200 (llama-cpp-python has no /health: GET /v1/models stands in).
Exit code 1 if any check failed.

Usage (from the repository root):
  tools/reference/.venv/bin/python tools/serve/faults.py \
      --model /work/shared/data/models/SmolLM2-135M-Instruct.Q4_1.gguf
  tools/reference/.venv/bin/python tools/serve/faults.py --server llamacpp --model ...
  ... --only burst,sigterm        # a subset (names: see --list)
"""
import argparse
import http.client
import json
import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import (HOST, ServerProcess, _kill_all, http_json, install_signal_handlers,  # noqa: E402
                  open_stream, sse_events, stream_chat)

RESULTS = []  # (name, PASS/FAIL/SKIP, detail)


def report(name, ok, detail):
    status = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
    RESULTS.append((name, status, detail))
    print(f"{status}  {name}: {detail}", flush=True)
    return ok


def short(text, n=160):
    text = text.replace("\n", " ")
    return text if len(text) <= n else text[:n] + "..."


def health_after(srv, name, api_key=None):
    st = srv.health()
    alive = srv.proc.poll() is None
    ok = st == 200 and alive
    if not ok:
        report(f"health after {name}", False,
               f"GET health -> {st}, process {'alive' if alive else 'exited ' + str(srv.proc.returncode)}"
               f"\n--- server stderr tail ---\n{srv.stderr_tail()}")
    else:
        print(f"      health after {name}: 200")
    return ok


def chat_body(model, content, **kw):
    b = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 8,
         "temperature": 0}
    b.update(kw)
    return b


def metric(port, name, headers=None):
    st, _, body = http_json(port, "GET", "/metrics", headers=headers, timeout=10)
    if st != 200:
        return None
    m = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$", body, re.M)
    return float(m.group(1)) if m else None


# --------------------------------------------------------------------------------------------
# Checks on the main server (small --ctx, small queue)


def check_malformed(srv, model):
    cases = [("malformed JSON", b'{"messages": [{"role": "user", "content": "hi"}'),
             ("not JSON at all", b"hello there"),
             ("empty body", b"")]
    for label, body in cases:
        st, _, text = http_json(srv.port, "POST", "/v1/chat/completions", body=body, timeout=30)
        report(f"{label} -> 400", st == 400, f"status {st}, body {short(text)}")
    health_after(srv, "malformed")


def check_wrong_types(srv, model):
    base = chat_body(model, "Hi")
    cases = [
        ("temperature 'hot'", {**base, "temperature": "hot"}),
        ("messages 3", {**base, "messages": 3}),
        ("max_tokens 'ten'", {**base, "max_tokens": "ten"}),
        ("messages missing", {k: v for k, v in base.items() if k != "messages"}),
        ("message content 5", {**base, "messages": [{"role": "user", "content": 5}]}),
        ("top_p [1]", {**base, "top_p": [1]}),
        ("body is a list", [base]),
    ]
    for label, body in cases:
        st, _, text = http_json(srv.port, "POST", "/v1/chat/completions", body=body, timeout=30)
        report(f"wrong type: {label} -> 400", st == 400, f"status {st}, body {short(text)}")
    st, _, text = http_json(srv.port, "POST", "/v1/completions",
                            body={"model": model, "prompt": 3.5, "max_tokens": 4}, timeout=30)
    report("wrong type: /v1/completions prompt 3.5 -> 400", st == 400, f"status {st}, body {short(text)}")
    health_after(srv, "wrong types")


def check_huge_prompt(srv, model):
    content = ("All work and no play makes Jack a dull boy. " * 24000)[:1_000_000]
    t0 = time.time()
    try:
        st, _, text = http_json(srv.port, "POST", "/v1/chat/completions",
                                body=chat_body(model, content), timeout=120)
        dt = time.time() - t0
        ok = 400 <= st < 500
        report("1 MB prompt -> clean 4xx", ok, f"status {st} in {dt:.1f} s, body {short(text)}")
    except (OSError, http.client.HTTPException) as e:
        report("1 MB prompt -> clean 4xx", False, f"{type(e).__name__}: {e} after {time.time() - t0:.1f} s")
    health_after(srv, "1 MB prompt")


def check_over_context(srv, model, ctx):
    content = " ".join(f"word{i}" for i in range(ctx * 2))  # well over ctx tokens, ~20 KB
    st, _, text = http_json(srv.port, "POST", "/v1/chat/completions", body=chat_body(model, content),
                            timeout=120)
    report(f"prompt longer than the context ({ctx}) -> 400", st == 400, f"status {st}, body {short(text)}")
    st, _, text = http_json(srv.port, "POST", "/v1/completions",
                            body={"model": model, "prompt": content, "max_tokens": 4}, timeout=120)
    report(f"/v1/completions prompt longer than the context -> 400", st == 400,
           f"status {st}, body {short(text)}")
    health_after(srv, "over context")


def check_huge_max_tokens(srv, model, ctx):
    body = chat_body(model, "Count from 1 to 1000, separated by commas.", max_tokens=10 ** 9)
    t0 = time.time()
    try:
        st, _, text = http_json(srv.port, "POST", "/v1/chat/completions", body=body, timeout=180)
        dt = time.time() - t0
        fr, usage = None, None
        try:
            j = json.loads(text)
            fr = j["choices"][0]["finish_reason"]
            usage = j.get("usage")
        except Exception:
            pass
        report("max_tokens 10**9 -> 200, finish_reason length", st == 200 and fr == "length",
               f"status {st}, finish_reason {fr}, usage {usage}, {dt:.1f} s"
               + ("" if st == 200 else f", body {short(text)}"))
    except (OSError, http.client.HTTPException) as e:
        report("max_tokens 10**9 -> 200, finish_reason length", False, f"{type(e).__name__}: {e}")
    health_after(srv, "max_tokens 10**9")


def check_burst(srv, model, n, expect_429):
    """n requests at once (max_tokens 4); each must be 200, or 429 with Retry-After."""
    results = [None] * n
    barrier = threading.Barrier(n, timeout=120)
    deadline = time.time() + 240

    def one(i):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        if time.time() > deadline:
            results[i] = ("skipped", None, "")
            return
        try:
            st, h, text = http_json(srv.port, "POST", "/v1/chat/completions",
                                    body=chat_body(model, f"Say the number {i}.", max_tokens=4),
                                    timeout=max(5, deadline - time.time()))
            results[i] = (st, h.get("retry-after"), text[:200])
        except (OSError, http.client.HTTPException) as e:
            results[i] = (f"{type(e).__name__}: {e}", None, "")

    old_stack = threading.stack_size()
    threading.stack_size(256 * 1024)
    try:
        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    finally:
        threading.stack_size(old_stack)
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.1, deadline + 30 - time.time()))
    dt = time.time() - t0
    counts = {}
    for r in results:
        k = "no answer (still running)" if r is None else str(r[0])
        counts[k] = counts.get(k, 0) + 1
    bad = [r for r in results if r is None or r[0] not in (200, 429)]
    no_retry = [r for r in results if r is not None and r[0] == 429 and not r[1]]
    n429 = counts.get("429", 0)
    ok = not bad and not no_retry
    detail = f"{n} requests in {dt:.1f} s: {counts}"
    if n429:
        ras = sorted({r[1] for r in results if r and r[0] == 429})
        detail += f", Retry-After values {ras[:5]}"
    if no_retry:
        detail += f"; {len(no_retry)} x 429 without Retry-After"
    if bad:
        detail += f"; first bad: {bad[0]}"
    report(f"burst of {n} (max_tokens 4) -> only 200/429+Retry-After", ok, detail)
    if expect_429:
        report(f"burst of {n} with a small queue -> some 429", n429 > 0, f"{n429} x 429")
    health_after(srv, "burst")


def check_capacity(srv, model, max_batch, queue):
    """Documented: up to --max-batch run, --queue more wait, only beyond that 429. So on an idle
    server max_batch + queue requests arriving at once must all get 200."""
    n = max_batch + queue
    res = [None] * n
    barrier = threading.Barrier(n, timeout=60)

    def one(i):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        try:
            st, _, _ = http_json(srv.port, "POST", "/v1/chat/completions",
                                 body=chat_body(model, f"Tell me about the number {i}.", max_tokens=16),
                                 timeout=120)
            res[i] = st
        except (OSError, http.client.HTTPException) as e:
            res[i] = f"{type(e).__name__}"

    time.sleep(0.5)
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    counts = {}
    for r in res:
        counts[str(r)] = counts.get(str(r), 0) + 1
    report(f"idle server, max-batch {max_batch} + queue {queue} = {n} requests at once -> all 200",
           counts.get("200", 0) == n, f"{counts}")
    health_after(srv, "capacity")


def check_vanishing_clients(srv, model, n=20):
    before = metric(srv.port, "slm_cancelled_total") if srv.kind == "slm" else None
    got = [0] * n
    errs = []

    retried = [0]

    def one(i):
        try:
            for attempt in range(6):  # a 429 (queue full) is retried after its Retry-After
                conn, resp = open_stream(srv.port, "/v1/chat/completions",
                                         {"model": model, "stream": True, "max_tokens": 200,
                                          "temperature": 0,
                                          "messages": [{"role": "user",
                                                        "content": f"Tell me a long story number {i}."}]},
                                         timeout=60)
                if resp.status == 429 and attempt < 5:
                    wait = float(resp.getheader("Retry-After") or 1)
                    resp.read()
                    conn.close()
                    retried[0] += 1
                    time.sleep(min(wait, 5))
                    continue
                break
            if resp.status != 200:
                errs.append(f"HTTP {resp.status}")
                conn.close()
                return
            for _t, data in sse_events(resp):
                got[i] += 1
                if got[i] >= 2:
                    break
            # Vanish: hard close of the socket, mid-stream.
            try:
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except Exception:
                pass
            conn.close()
            resp.close()
        except (OSError, http.client.HTTPException) as e:
            errs.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    closed = sum(1 for g in got if g >= 2)
    report(f"{n} clients vanish mid-stream (after 2 chunks)", closed == n and not errs,
           f"{closed}/{n} streams read 2 chunks then closed ({retried[0]} x 429 retried), "
           f"errors {errs[:3]}")
    # The server must keep serving.
    r = stream_chat(srv.port, model, [{"role": "user", "content": "Hi"}], 8,
                    include_usage=srv.kind == "slm")
    report("serves a stream after the vanished clients", r["error"] is None and r["status"] == 200,
           f"status {r['status']}, {r['tokens']} tokens, error {r['error']}")
    if srv.kind == "slm":
        after, active = before, None
        for _ in range(50):  # up to 10 s for the engine to notice
            after = metric(srv.port, "slm_cancelled_total")
            active = metric(srv.port, "slm_active_sequences")
            if after is not None and before is not None and after - before >= n and active == 0:
                break
            time.sleep(0.2)
        ok = after is not None and before is not None and after > before
        report("slm_cancelled_total rises", ok,
               f"{before} -> {after} (+{(after or 0) - (before or 0):g} for {n} vanished streams), "
               f"slm_active_sequences {active}")
        report("no sequences left active after the vanished clients", active == 0,
               f"slm_active_sequences {active}")
    else:
        report("slm_cancelled_total rises", None, "no such metric on llama.cpp")
    health_after(srv, "vanishing clients")


def check_unknown_route(srv, model):
    for method, path in (("GET", "/v1/nope"), ("POST", "/v2/chat/completions"), ("GET", "/")):
        st, _, text = http_json(srv.port, method, path, body={} if method == "POST" else None, timeout=30)
        report(f"unknown route {method} {path} -> 404", st == 404, f"status {st}, body {short(text)}")
    health_after(srv, "unknown route")


# --------------------------------------------------------------------------------------------
# Checks that need their own server


def check_api_key(args, model_path):
    key = "sk-fault-check-K"
    extra = ["--api-key", key] if args.server == "slm" else ["--api_key", key]
    srv = ServerProcess(args.server, model_path, slm_bin=args.slm_bin, wtype=args.type,
                        threads=args.threads, extra=extra, ctx=args.ctx)
    try:
        model = srv.model_id(api_key=key)
        body = chat_body(model, "Hi", max_tokens=2)
        cases = [
            ("no key -> 401", {}, 401),
            ("wrong key -> 401", {"Authorization": "Bearer wrong"}, 401),
            ("key without Bearer -> 401", {"Authorization": key}, 401),
            ("right key -> 200", {"Authorization": f"Bearer {key}"}, 200),
        ]
        for label, h, want in cases:
            st, hdrs, text = http_json(srv.port, "POST", "/v1/chat/completions", body=body,
                                       headers=h, timeout=60)
            extra_info = f", WWW-Authenticate {hdrs.get('www-authenticate')}" if st == 401 else ""
            report(f"api key: {label}", st == want, f"status {st}{extra_info}, body {short(text, 100)}")
        st, _, _ = http_json(srv.port, "GET", "/v1/models", timeout=30)
        report("api key: GET /v1/models without key -> 401", st == 401, f"status {st}")
        if srv.kind == "slm":
            st, _, _ = http_json(srv.port, "GET", "/metrics", timeout=30)
            report("api key: GET /metrics without key -> 401", st == 401, f"status {st}")
            st, _, _ = http_json(srv.port, "GET", "/health", timeout=30)
            report("api key: GET /health without key -> 200", st == 200, f"status {st}")
        else:
            report("api key: GET /health without key -> 200", None, "llama-cpp-python has no /health")
        if srv.kind == "slm":
            health_after(srv, "api key")
    finally:
        srv.kill()
        srv.cleanup_files()


def check_sigterm(args, model_path, n=10):
    drain = args.drain
    extra = ["--drain", str(drain), "--max-batch", "16", "--queue", "16"] if args.server == "slm" else []
    srv = ServerProcess(args.server, model_path, slm_bin=args.slm_bin, wtype=args.type,
                        threads=args.threads, extra=extra, ctx=args.ctx)
    try:
        model = srv.model_id()
        first = threading.Semaphore(0)
        out = [None] * n

        def one(i):
            r = {"status": None, "chunks": 0, "finish": None, "error_event": None, "done": False,
                 "exc": None, "content_after_term": 0}
            try:
                conn, resp = open_stream(srv.port, "/v1/chat/completions",
                                         {"model": model, "stream": True, "max_tokens": 150,
                                          "temperature": 0,
                                          "messages": [{"role": "user",
                                                        "content": f"Write a long story about dragon {i}."}]},
                                         timeout=drain + 30)
                r["status"] = resp.status
                signalled = False
                for _t, data in sse_events(resp):
                    if data == "[DONE]":
                        r["done"] = True
                        break
                    try:
                        ev = json.loads(data)
                    except ValueError:
                        continue
                    if "error" in ev:
                        r["error_event"] = short(json.dumps(ev["error"]), 120)
                    for ch in ev.get("choices") or []:
                        if (ch.get("delta") or {}).get("content"):
                            r["chunks"] += 1
                            if sigterm_sent.is_set():
                                r["content_after_term"] += 1
                        if ch.get("finish_reason"):
                            r["finish"] = ch["finish_reason"]
                    if r["chunks"] >= 1 and not signalled:
                        signalled = True
                        first.release()
                conn.close()
            except (OSError, http.client.HTTPException) as e:
                r["exc"] = f"{type(e).__name__}: {e}"
            finally:
                out[i] = r
                if not locals().get("signalled", False):
                    first.release()

        sigterm_sent = threading.Event()
        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        t_wait = time.time() + 60
        for _ in range(n):  # all streams producing tokens
            if not first.acquire(timeout=max(0.1, t_wait - time.time())):
                break
        active = metric(srv.port, "slm_active_sequences") if srv.kind == "slm" else None
        t_term = time.time()
        srv.proc.send_signal(signal.SIGTERM)
        sigterm_sent.set()
        # A new request while draining: slm says 503.
        try:
            st, _, text = http_json(srv.port, "POST", "/v1/chat/completions",
                                    body=chat_body(model, "Hi", max_tokens=2), timeout=10)
            late = f"status {st}"
        except (OSError, http.client.HTTPException) as e:
            st, late = None, f"{type(e).__name__}: {e}"
        if srv.kind == "slm":
            report("SIGTERM: a new request while draining -> 503 (or refused)",
                   st == 503 or st is None, late)
        try:
            code = srv.proc.wait(timeout=drain + 15)
        except Exception:
            code = None
        exit_s = time.time() - t_term
        for t in threads:
            t.join(10)
        clean = [r for r in out if r and r["status"] == 200 and r["exc"] is None
                 and (r["finish"] is not None or r["error_event"] is not None)]
        finishes = {}
        for r in out:
            k = "none" if r is None else (r["finish"] or ("error event" if r["error_event"] else
                                                          (r["exc"] or "no finish_reason")))
            finishes[k] = finishes.get(k, 0) + 1
        done = sum(1 for r in out if r and r["done"])
        after = sum(r["content_after_term"] for r in out if r)
        report(f"SIGTERM under load: {n} in-flight streams end cleanly", len(clean) == n,
               f"{len(clean)}/{n} clean (active before SIGTERM: {active}); endings {finishes}; "
               f"[DONE] in {done}; {after} content chunks after SIGTERM")
        if code is None:
            report(f"SIGTERM: exits with 0 within the drain time ({drain} s)", False,
                   f"still running {exit_s:.1f} s after SIGTERM; killed"
                   f"\n--- server stderr tail ---\n{srv.stderr_tail()}")
        else:
            ok = code == 0 and exit_s <= drain + 5
            report(f"SIGTERM: exits with 0 within the drain time ({drain} s)", ok,
                   f"exit code {code} after {exit_s:.1f} s")
        err = srv.stderr_text()
        panicky = [l for l in err.splitlines() if re.search(r"panic|RUST_BACKTRACE", l, re.I)]
        report("SIGTERM: no panic text in stderr", not panicky,
               f"{len(err.splitlines())} stderr lines" + (f"; {panicky[:3]}" if panicky else "")
               + (f"; tail: {short(srv.stderr_tail(5), 400)}" if err.strip() else ""))
    finally:
        srv.kill()
        srv.cleanup_files()


# --------------------------------------------------------------------------------------------

MAIN_CHECKS = ["malformed", "types", "huge", "context", "max_tokens", "burst", "capacity", "vanish",
               "route"]
OWN_CHECKS = ["apikey", "sigterm"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", choices=["slm", "llamacpp"], default="slm")
    ap.add_argument("--model", required=True, help="GGUF file")
    ap.add_argument("--slm-bin", default="target/release/slm")
    ap.add_argument("--type", default="q4_0")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=256, help="context per sequence (small: quick ends)")
    ap.add_argument("--max-batch", type=int, default=8, help="slm --max-batch on the main server")
    ap.add_argument("--queue", type=int, default=16, help="slm --queue on the main server")
    ap.add_argument("--burst", type=int, default=None,
                    help="requests in the burst (default: 1000 for slm, 50 for llama.cpp, which "
                         "answers one at a time)")
    ap.add_argument("--drain", type=int, default=20, help="slm --drain for the SIGTERM check")
    ap.add_argument("--only", help="comma-separated subset of: " + ",".join(MAIN_CHECKS + OWN_CHECKS))
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--timeout", type=float, default=1200, help="bound on the whole run, seconds")
    args = ap.parse_args()
    if args.list:
        print("\n".join(MAIN_CHECKS + OWN_CHECKS))
        return 0
    install_signal_handlers()

    def on_alarm(_s, _f):
        raise KeyboardInterrupt(f"--timeout {args.timeout:.0f} s reached")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.timeout))

    only = set((args.only or ",".join(MAIN_CHECKS + OWN_CHECKS)).split(","))
    unknown = only - set(MAIN_CHECKS + OWN_CHECKS)
    if unknown:
        sys.exit(f"unknown checks: {sorted(unknown)}")
    burst = args.burst if args.burst is not None else (1000 if args.server == "slm" else 50)
    burst = max(1, min(burst, 2000))

    print(f"# faults against {args.server} ({os.path.basename(args.model)}), threads {args.threads}, "
          f"ctx {args.ctx}; only 127.0.0.1")
    if only & set(MAIN_CHECKS):
        extra = (["--max-batch", str(args.max_batch), "--queue", str(args.queue)]
                 if args.server == "slm" else ["--interrupt_requests", "False"])
        srv = ServerProcess(args.server, args.model, slm_bin=args.slm_bin, wtype=args.type,
                            threads=args.threads, extra=extra, ctx=args.ctx)
        print(f"# main server: {' '.join(srv.cmd)} (port {srv.port})")
        try:
            model = srv.model_id()
            steps = {
                "malformed": lambda: check_malformed(srv, model),
                "types": lambda: check_wrong_types(srv, model),
                "huge": lambda: check_huge_prompt(srv, model),
                "context": lambda: check_over_context(srv, model, args.ctx),
                "max_tokens": lambda: check_huge_max_tokens(srv, model, args.ctx),
                "burst": lambda: check_burst(srv, model, burst, expect_429=args.server == "slm"),
                "capacity": lambda: (check_capacity(srv, model, args.max_batch, args.queue)
                                     if args.server == "slm" else
                                     report("capacity", None, "no --max-batch/--queue on llama.cpp")),
                "vanish": lambda: check_vanishing_clients(srv, model),
                "route": lambda: check_unknown_route(srv, model),
            }
            for name in MAIN_CHECKS:
                if name in only:
                    if srv.proc.poll() is not None:
                        report(name, False, f"server exited ({srv.proc.returncode}) before this check")
                        continue
                    try:
                        steps[name]()
                    except (OSError, http.client.HTTPException) as e:
                        report(name, False, f"{type(e).__name__}: {e}\n--- server stderr tail ---\n"
                               + srv.stderr_tail())
            err = srv.stderr_text()
            panicky = [l for l in err.splitlines() if re.search(r"panicked|panic", l, re.I)]
            report("main server: no panic text in stderr", not panicky,
                   f"{len(err.splitlines())} stderr lines" + (f"; {panicky[:3]}" if panicky else ""))
        finally:
            srv.kill()
            srv.cleanup_files()
    if "apikey" in only:
        check_api_key(args, args.model)
    if "sigterm" in only:
        check_sigterm(args, args.model)
    signal.alarm(0)

    fails = [r for r in RESULTS if r[1] == "FAIL"]
    print(f"# {sum(1 for r in RESULTS if r[1] == 'PASS')} PASS, {len(fails)} FAIL, "
          f"{sum(1 for r in RESULTS if r[1] == 'SKIP')} SKIP")
    for name, _, detail in fails:
        print(f"#   FAIL {name}: {short(detail, 300)}")
    return 1 if fails else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:
        _kill_all()
        print(f"# interrupted ({e}); servers killed", file=sys.stderr)
        sys.exit(130)
