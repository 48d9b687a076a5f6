"""What llama.cpp sees of this CPU, and whether its extra buffer types are safe to use here.

llama.cpp's CPU backend offers "extra buffer types": weights repacked at load into layouts its
matrix kernels read faster (CPU_REPACK: Q4_0, Q4_K, IQ4_NL… on AVX2/AVX-512/NEON) and, on CPUs with
AMX, tiles for the AMX kernels. On AMX CPUs (Sapphire Rapids and later) the AMX path of the ggml
that llama-cpp-python 0.3.36 vendors segfaults at the first decode (`ggml_backend_amx_mul_mat`,
llama.cpp issue #20824), and `use_extra_bufts` switches both off together: there is no switch for
AMX alone short of rebuilding the wheel.

The policy (`DOCQA_EXTRA_BUFFERS`): `auto` uses them except where the CPU has AMX, `on` and `off`
force them. The runner process makes the choice safe either way: if a runner started with extra
buffers dies of a native fault at its first evaluation, `auto` starts the next one without them
(runtime.py), so an unknown CPU fault costs one question, not the model.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import psutil

EXTRA_BUFFER_CHOICES = ("auto", "on", "off")


@functools.cache
def system_info() -> str:
    """llama.cpp's own system info line ("CPU : SSE3 = 1 | AVX2 = 1 | … | REPACK = 1 |"): the features
    its CPU backend was built with and found on this CPU. Safe in any process: it runs no kernel."""
    import llama_cpp

    raw = llama_cpp.llama_print_system_info()
    return (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip()


def features(info: str) -> dict[str, bool]:
    """{"AVX2": True, "AMX_INT8": False, …} from a system info line."""
    return {name: value == "1" for name, value in re.findall(r"([A-Z][A-Z0-9_]*) = (\d)", info)}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def has_amx(info: str | None = None, flags: set[str] | None = None) -> bool:
    """True when llama.cpp would run AMX kernels here: its build reports AMX, or the CPU has AMX tiles
    (a wheel built elsewhere without AMX reports none; the CPU flag is the safer of the two signals)."""
    feats = features(system_info() if info is None else info)
    if any(v for k, v in feats.items() if k.startswith("AMX")):
        return True
    return bool({"amx_int8", "amx_tile", "amx_bf16"} & (cpu_flags() if flags is None else flags))


def use_extra_buffers(choice: str, *, amx: bool | None = None) -> tuple[bool, str]:
    """(use them?, why) for a DOCQA_EXTRA_BUFFERS choice on this CPU."""
    if choice == "on":
        return True, "DOCQA_EXTRA_BUFFERS=on"
    if choice == "off":
        return False, "DOCQA_EXTRA_BUFFERS=off"
    if has_amx() if amx is None else amx:
        return False, "this CPU has AMX, whose ggml kernels crash in this llama.cpp; weight repacking is off too"
    return True, "no AMX on this CPU: weights are repacked for its SIMD kernels"


def default_threads() -> int:
    """Generation threads when DOCQA_N_THREADS is unset: every physical core.

    llama-cpp-python's own default is half the logical CPUs, meant for SMT machines; on a machine
    without SMT that leaves half the cores idle while answering (2 cores: 9.5 vs 20 tokens/s at a
    4,000-token depth, bench/results/llamabench.json). Prompt processing already uses every CPU."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1
