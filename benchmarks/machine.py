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


def describe(device: str = "cpu") -> Dict[str, str]:
    facts = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": device,
        "cpu": f"{cpu_model()}, {os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()}",
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if device == "cuda":
        facts["gpu"] = f"{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}"
    return facts
