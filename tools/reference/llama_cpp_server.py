"""llama.cpp's OpenAI-compatible server (`python -m llama_cpp.server`), with the AMX
workaround of `llamacpp_compat.py` applied first. Same arguments as `python -m llama_cpp.server`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llamacpp_compat  # noqa: E402

if llamacpp_compat.apply():
    print("llama_cpp_server.py: AMX CPU: llama.cpp's extra buffer types (weight repacking) are off",
          file=sys.stderr)

from llama_cpp.server.__main__ import main  # noqa: E402

if __name__ == "__main__":
    main()
