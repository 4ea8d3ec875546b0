"""llama.cpp on CPUs with AMX: keep it from crashing.

llama-cpp-python 0.3.36's llama.cpp segfaults on the first evaluation on CPUs with Intel AMX
(seen on a Xeon with amx_int8/amx_tile, 2026-12-05): its AMX buffer type repacks the Q4_1
weights of SmolLM2-135M-Instruct.Q4_1.gguf at load, then the process dies in the first
`eval`. On such CPUs (only) `apply()` turns off llama.cpp's extra buffer types
(`llama_model_params.use_extra_bufts = False`, what `--no-repack` does in llama.cpp's own
tools), so the weights stay in their GGUF layout. Elsewhere nothing changes. Import this
module and call `apply()` before creating a `Llama`; `tools/reference/llama_cpp_server.py`
does so for llama.cpp's OpenAI server.
"""

from pathlib import Path


def cpu_has_amx() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return "amx_int8" in line.split() or "amx_tile" in line.split()
    return False


def apply() -> bool:
    """Turns off llama.cpp's extra buffer types on AMX CPUs; says whether it did."""
    if not cpu_has_amx():
        return False
    import llama_cpp.llama_cpp as lib

    original = lib.llama_model_default_params
    if getattr(original, "_slm_no_extra_bufts", False):
        return True

    def params():
        p = original()
        p.use_extra_bufts = False
        return p

    params._slm_no_extra_bufts = True
    lib.llama_model_default_params = params
    return True
