"""What the numbers were measured on."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from typing import Dict

import torch


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


def describe(device: str = "cpu") -> Dict[str, str]:
    facts = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": device,
        "cpu": f"{cpu_model()}, {os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()}",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "allocator": allocator(),
    }
    if device == "cuda":
        facts["gpu"] = f"{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}"
    return facts
