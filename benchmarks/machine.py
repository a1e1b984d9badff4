"""What the numbers were measured on."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from typing import Dict

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
