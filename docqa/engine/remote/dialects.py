"""The remote dialects by the kind a server says it is (remote.py's `Server.probe`): vLLM, SGLang, and
any other OpenAI-compatible server. llama-server is remote.py's own."""

from __future__ import annotations

from docqa.engine.remote.openai_compat import GENERIC, OpenAICompatible
from docqa.engine.remote.sglang import SGLANG, SGLangDialect
from docqa.engine.remote.vllm import VLLM, VLLMDialect

DIALECTS: dict[str, type[OpenAICompatible]] = {VLLM: VLLMDialect, SGLANG: SGLangDialect, GENERIC: OpenAICompatible}
