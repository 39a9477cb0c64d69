"""Which CPU this is, in the terms that decide which engine and precision run fastest on it."""

from __future__ import annotations

import os
from pathlib import Path

# cpuinfo flag -> what it gives reduced precision, best first
INSTRUCTIONS = (
    ("amx_int8", "AMX (int8 and bf16 tiles)"),
    ("avx512_vnni", "AVX-512 VNNI (u8 x s8 summed straight into int32)"),
    ("avx_vnni", "AVX-VNNI (u8 x s8 summed straight into int32)"),
    ("avx512bw", "AVX-512BW without VNNI (u8 x s8 pairs summed in saturating int16)"),
    ("avx2", "AVX2 without VNNI (u8 x s8 pairs summed in saturating int16)"),
)  # fmt: skip


def cpu_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU model, its core count, its best int8 dot product, and whether it has native bf16 (Linux)."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return "unknown CPU (no /proc/cpuinfo)"
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = set(fields.get("flags", "").split())
    int8 = next((name for flag, name in INSTRUCTIONS if flag in flags), "no AVX2: scalar or SSE int8")
    bf16 = "bf16: " + ("AMX" if "amx_bf16" in flags else "AVX-512 BF16" if "avx512_bf16" in flags else "none native")
    return f"{fields.get('model name', 'unknown CPU')}, {os.cpu_count()} cores; int8: {int8}; {bf16}"
