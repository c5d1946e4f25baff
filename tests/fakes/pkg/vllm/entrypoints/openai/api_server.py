"""`python -m vllm.entrypoints.openai.api_server` for tests: runs tests/fakes/fake_vllm.py."""

import runpy
import sys
from pathlib import Path

FAKE = Path(__file__).resolve().parents[4] / "fake_vllm.py"

if __name__ == "__main__":
    sys.argv[0] = str(FAKE)
    runpy.run_path(str(FAKE), run_name="__main__")
