"""What the numbers were measured on."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from typing import Dict, List, Optional

import torch

# The /proc/cpuinfo flags of native bfloat16 arithmetic, which oneDNN runs bf16 matrix
# products with: AVX512-BF16 (AMD Zen 4, Intel Cooper Lake and later), AMX (Intel Sapphire
# Rapids and later); "bf16" among an Arm CPU's Features. Without them the bf16 products
# are emulated (converted to float32) and the bf16 targets do not apply.
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_model(cpuinfo_path: str = "/proc/cpuinfo") -> str:
    """The CPU's name with its family and model numbers where Linux gives them: one name
    ("AMD EPYC") covers generations whose results differ (Zen 3 has no AVX-512, Zen 4 has)."""
    fields: Dict[str, str] = {}
    try:
        with open(cpuinfo_path) as cpuinfo:
            for line in cpuinfo:
                if not line.strip() and fields:
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "cpu family", "model"):
                    fields[key.strip()] = value.strip()
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']} model {fields['model']})"
    return name


def bf16_flags(cpuinfo_path: str = "/proc/cpuinfo") -> Optional[List[str]]:
    """The native-bf16 flags of the first CPU, or None where Linux does not list its flags."""
    try:
        with open(cpuinfo_path) as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return sorted(set(value.split()) & set(BF16_FLAGS))
    except OSError:
        pass
    return None


def native_bf16(cpuinfo_path: str = "/proc/cpuinfo") -> Optional[bool]:
    """Whether the CPU has native bf16 arithmetic (None: unknown)."""
    flags = bf16_flags(cpuinfo_path)
    return None if flags is None else bool(flags)


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def allocator() -> str:
    """The settings of the process's malloc: on glibc's defaults, freed tensors of several MiB
    go back to the OS and every call page-faults them in again (see benchmarks/results)."""
    settings = [f"{k}={v}" for k, v in sorted(os.environ.items())
                if k.startswith("MALLOC_") or k == "LD_PRELOAD"]
    return ", ".join(settings) or "glibc malloc, default settings"


def describe(device: str = "cpu") -> Dict[str, object]:
    flags = bf16_flags()
    facts = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": device,
        "cpu": f"{cpu_model()}, {os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()}",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "allocator": allocator(),
        # the bf16 targets apply only where this is true (see benchmarks/targets.py)
        "native bf16": None if flags is None else bool(flags),
        "bf16 flags": "not known" if flags is None else " ".join(flags) or "none",
    }
    if device == "cuda":
        facts["gpu"] = f"{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}"
    return facts
