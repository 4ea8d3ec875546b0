"""The official `openai` Python client against an OpenAI-compatible server (slm serve).

Usage: openai_client_check.py BASE_URL [API_KEY]
Prints one JSON object: what the client parsed from a streamed and a whole chat completion
(with logprobs) and a streamed and a whole text completion, for the Rust test to check.
"""
import json
import sys

from openai import OpenAI

base, key = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "none")
client = OpenAI(base_url=base, api_key=key, max_retries=0, timeout=120)
models = [m.id for m in client.models.list().data]
messages = [{"role": "user", "content": "Name three colours."}]

whole = client.chat.completions.create(
    model=models[0], messages=messages, max_tokens=24, temperature=0,
    logprobs=True, top_logprobs=2)
stream = client.chat.completions.create(
    model=models[0], messages=messages, max_tokens=24, temperature=0, stream=True,
    stream_options={"include_usage": True}, logprobs=True, top_logprobs=2)
streamed, streamed_lp, usage, finish = "", 0, None, None
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage.model_dump()
    for c in chunk.choices:
        streamed += c.delta.content or ""
        if c.logprobs is not None and c.logprobs.content:
            streamed_lp += len(c.logprobs.content)
        finish = c.finish_reason or finish

comp = client.completions.create(
    model=models[0], prompt="Once upon a time", max_tokens=12, temperature=0, logprobs=3)
comp_stream = "".join(
    c.choices[0].text for c in client.completions.create(
        model=models[0], prompt="Once upon a time", max_tokens=12, temperature=0, stream=True)
    if c.choices)

print(json.dumps({
    "models": models,
    "whole": whole.choices[0].message.content,
    "whole_finish": whole.choices[0].finish_reason,
    "whole_logprobs": len(whole.choices[0].logprobs.content),
    "whole_top": len(whole.choices[0].logprobs.content[0].top_logprobs),
    "whole_usage": whole.usage.model_dump(),
    "streamed": streamed,
    "streamed_logprobs": streamed_lp,
    "streamed_usage": usage,
    "streamed_finish": finish,
    "completion": comp.choices[0].text,
    "completion_tokens": len(comp.choices[0].logprobs.tokens),
    "completion_stream": comp_stream,
}))
