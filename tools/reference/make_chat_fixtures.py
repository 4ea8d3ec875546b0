#!/usr/bin/env python3
"""Make chat-template fixtures: what transformers renders for a few templates and conversations.

What it makes: tools/reference/fixtures_chat/chat_templates.json, a list of cases
{name, template_name, bos_token, eos_token, add_generation_prompt, messages, expected} or,
for a conversation the template refuses, {..., error} instead of expected. `templates` maps
each template name to its Jinja source, except "smollm2", which is read from the GGUF file's
`tokenizer.chat_template` (only its sha256 is stored, so the Rust test notices if the model
file changes).

Rendering is transformers' own (`transformers.utils.chat_template_utils.render_jinja_template`,
the function `PreTrainedTokenizerBase.apply_chat_template(..., tokenize=False)` calls, with the
special tokens passed as keyword arguments as apply_chat_template passes
`tokenizer.special_tokens_map`): a sandboxed Jinja2 environment with trim_blocks and
lstrip_blocks, loop controls, a json.dumps-style `tojson` and `raise_exception`.

The templates besides SmolLM2's are small inline strings written in the spirit of public
ones: Llama-2 chat (`[INST]`, `<<SYS>>`, `.strip()`, raise_exception on roles that do not
alternate), Llama-3 instruct (`<|start_header_id|>`, `| trim`, `<|eot_id|>`), Zephyr (one
statement per line: trim_blocks matters) and a "pycompat" template exercising indented blocks
(lstrip_blocks), `namespace`, `tojson`, `.startswith`, `.upper()`, `loop.last` and `{%- -%}`.

Run from the repository root (data dir defaults to ../shared/data relative to the repo, or
$SLM_SHARED_DATA):

    tools/reference/.venv/bin/python tools/reference/make_chat_fixtures.py

Versions used are recorded in the JSON ("versions"); at creation transformers 5.24.0 and
jinja2 as installed beside it.
"""

import hashlib
import json
import os
from pathlib import Path

import jinja2
import transformers
from gguf import GGUFReader
from transformers.utils.chat_template_utils import render_jinja_template

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DATA = Path(os.environ.get("SLM_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
OUT = HERE / "fixtures_chat"
SMOLLM2 = DATA / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}"
)

ZEPHYR = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>\\n' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>\\n' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\\n'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}
"""

PYCOMPAT = """{%- set ns = namespace(system='', turns=0) -%}
{%- for message in messages %}
    {%- if message.role.startswith('sys') %}
        {%- set ns.system = message.content.strip() %}
    {%- else %}
        {%- set ns.turns = ns.turns + 1 %}
    {%- endif %}
{%- endfor %}
{{ bos_token }}
{% if ns.system %}
    SYSTEM: {{ ns.system.upper() }}
{% endif %}
{% for message in messages if not message.role.startswith('sys') %}
    {{ loop.index }}/{{ ns.turns }} {{ message.role | upper }}: {{ message | tojson }}
    {% if message.content.endswith('?') %}(a question){% endif %}

{% endfor %}
{%- if add_generation_prompt %}ASSISTANT:{% endif %}
"""

TEMPLATES = {"llama2": LLAMA2, "llama3": LLAMA3, "zephyr": ZEPHYR, "pycompat": PYCOMPAT}

TOKENS = {
    "smollm2": ("<|im_start|>", "<|im_end|>"),
    "llama2": ("<s>", "</s>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "zephyr": ("<s>", "</s>"),
    "pycompat": ("<s>", "</s>"),
}

CONVERSATIONS = {
    "user": [{"role": "user", "content": "What is the capital of France?"}],
    "system_user": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Name a colour."},
    ],
    "multi_turn": [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Hi there!"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "  Spaces around, \"quotes\", <tags> & é中 \n"},
    ],
    "two_users": [
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second"},
    ],
}


def gguf_template(path):
    reader = GGUFReader(str(path))
    field = reader.fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def main():
    templates = dict(TEMPLATES)
    templates["smollm2"] = gguf_template(SMOLLM2)
    cases = []
    for tname, source in templates.items():
        bos, eos = TOKENS[tname]
        for cname, messages in CONVERSATIONS.items():
            for agp in (False, True):
                case = {
                    "name": f"{tname}/{cname}/{'gen' if agp else 'nogen'}",
                    "template_name": tname,
                    "bos_token": bos,
                    "eos_token": eos,
                    "add_generation_prompt": agp,
                    "messages": messages,
                }
                try:
                    rendered, _ = render_jinja_template(
                        conversations=[messages],
                        chat_template=source,
                        add_generation_prompt=agp,
                        bos_token=bos,
                        eos_token=eos,
                    )
                    case["expected"] = rendered[0]
                except jinja2.exceptions.TemplateError as e:
                    case["error"] = str(e)
                cases.append(case)
    out = {
        "versions": {"transformers": transformers.__version__, "jinja2": jinja2.__version__},
        "smollm2_template_sha256": hashlib.sha256(templates["smollm2"].encode()).hexdigest(),
        "templates": TEMPLATES,
        "cases": cases,
    }
    OUT.mkdir(exist_ok=True)
    path = OUT / "chat_templates.json"
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}: {len(cases)} cases, {sum('error' in c for c in cases)} errors")


if __name__ == "__main__":
    main()
