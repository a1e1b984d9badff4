"""``mlpmix demo``: train a tiny model on scikit-learn's handwritten digits, export it
(TorchScript and AOTInductor), run both files in the C++ runner and compare with Python;
export it to ONNX, float32 and int8, and run both in onnxruntime. With precision ``"bf16"``
it also trains the model under CPU bfloat16 autocast and reports that accuracy beside
float32's.

Needs the ``demo`` extra (scikit-learn, tqdm, matplotlib, pillow, onnx, onnxscript,
onnxruntime).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn

from . import create_model, export
from .images import Preprocessing
from .runner import run_file

DEMO_MODELS = ("raftmlp_tiny", "dynamixer_tiny")
#: The export formats the C++ runner runs.
CPP_FORMATS = ("torchscript", "aoti")
NUM_CLASSES = 10
#: The digits are 8x8 grayscale, 0 (background) to 16 (ink); the model sees them / 16.
DIGITS_PREPROCESSING = Preprocessing(size=(8, 8), channels=1, invert_light_background=True)

Split = Tuple[Tensor, Tensor, Tensor, Tensor]
History = List[Dict[str, float]]


def load_digits(seed: int, test_fraction: float = 0.2) -> Split:
    """Train and test images ``(N, 1, 8, 8)`` in [0, 1] and labels, stratified by class."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    labels = torch.tensor(digits.target)
    train, test = train_test_split(torch.arange(len(labels)), test_size=test_fraction,
                                   random_state=seed, stratify=labels)
    return images[train], labels[train], images[test], labels[test]


def accuracy(logits: Tensor, labels: Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def agreement(logits: Tensor, python_logits: Tensor) -> float:
    """The fraction of images where ``logits`` and ``python_logits`` pick the same class."""
    return accuracy(logits, python_logits.argmax(1))


def autocast(dtype: torch.dtype) -> torch.autocast:
    """CPU autocast to ``dtype``; off for float32."""
    return torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32)


def train(model: nn.Module, data: Split, epochs: int, batch_size: int = 64,
          lr: float = 5e-3, dtype: torch.dtype = torch.float32) -> History:
    """AdamW with a cosine schedule; returns one record per epoch (train loss, train and
    test accuracy). The forward passes run under CPU autocast to ``dtype`` (none for
    float32); parameters, gradients and the optimizer's state stay float32."""
    from tqdm import tqdm

    x_train, y_train, x_test, y_test = data
    steps_per_epoch = math.ceil(len(y_train) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15)
    history = []
    with tqdm(total=epochs * steps_per_epoch, unit="step", dynamic_ncols=True) as bar:
        for epoch in range(1, epochs + 1):
            model.train()
            bar.set_description(f"epoch {epoch}/{epochs}")
            loss_sum = correct = 0.0
            for batch in torch.randperm(len(y_train)).split(batch_size):
                with autocast(dtype):
                    logits = model(x_train[batch])
                loss = nn.functional.cross_entropy(logits.float(), y_train[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                loss_sum += loss.item() * len(batch)
                correct += (logits.argmax(1) == y_train[batch]).sum().item()
                bar.update()
            record = {"epoch": epoch, "loss": loss_sum / len(y_train),
                      "train_accuracy": correct / len(y_train),
                      "test_accuracy": accuracy(predict(model, x_test, dtype), y_test)}
            bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['train_accuracy']:.3f}",
                            test_acc=f"{record['test_accuracy']:.3f}")
            history.append(record)
    return history


def train_new_model(model_name: str, data: Split, epochs: int, seed: int,
                    dtype: torch.dtype = torch.float32) -> Tuple[nn.Module, History, float]:
    """A model made and trained from ``seed`` (the same initial weights and batches for
    every ``dtype``): ``(model, history, training seconds)``."""
    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=NUM_CLASSES, in_chans=1)
    start = time.perf_counter()
    history = train(model, data, epochs, dtype=dtype)
    return model, history, time.perf_counter() - start


def predict(model: nn.Module, images: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Float32 logits, the model run under CPU autocast to ``dtype``."""
    model.eval()
    with torch.inference_mode(), autocast(dtype):
        return model(images).float()


def plot_curves(histories: Dict[str, History], title: str, path: Path) -> None:
    """Train loss and train and test accuracy per epoch; one line style per history,
    labelled with its key."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    for (label, history), style in zip(histories.items(), ("-", "--")):
        epochs = [r["epoch"] for r in history]
        loss_ax.plot(epochs, [r["loss"] for r in history], style, color="C0", label=label)
        acc_ax.plot(epochs, [r["train_accuracy"] for r in history], style, color="C0",
                    label=f"train, {label}")
        acc_ax.plot(epochs, [r["test_accuracy"] for r in history], style, color="C1",
                    label=f"test, {label}")
    loss_ax.set(xlabel="epoch", ylabel="train loss (cross entropy)", yscale="log")
    loss_ax.legend()
    acc_ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1))
    acc_ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def compare_in_cpp(model_path: Path, images: Tensor, python_logits: Tensor) -> Tuple[float, float]:
    """(fraction of images where C++ and Python predict the same class, max |logit diff|)."""
    cpp_logits = run_file(model_path, images, "--batch", "128")
    return agreement(cpp_logits, python_logits), (cpp_logits - python_logits).abs().max().item()


def compare_in_onnxruntime(model: nn.Module, path: Path, metadata: Dict[str, object],
                           data: Split, python_logits: Tensor) -> Dict[str, float]:
    """Exports ``model`` to the ONNX file ``path`` and quantizes it to int8 beside it, runs
    both in onnxruntime on the test images, prints how they compare with Python and returns
    the summary's ``onnx_agreement``, ``onnx_max_abs_logit_diff``, ``onnx_int8_agreement``
    and ``onnx_int8_test_accuracy``."""
    _, _, x_test, y_test = data
    start = time.perf_counter()
    export.save(model, path, "onnx", x_test[:2], metadata=metadata)
    seconds = time.perf_counter() - start
    int8_path = export.quantize_int8(path, path.with_suffix(".int8.onnx"))
    logits, int8_logits = (export.load(p)[0](x_test) for p in (path, int8_path))
    results = {"onnx_agreement": agreement(logits, python_logits),
               "onnx_max_abs_logit_diff": (logits - python_logits).abs().max().item(),
               "onnx_int8_agreement": agreement(int8_logits, python_logits),
               "onnx_int8_test_accuracy": accuracy(int8_logits, y_test)}
    print(f"onnx: exported to {path} in {seconds:.1f} s; onnxruntime agrees with Python on "
          f"{results['onnx_agreement']:.2%} of test images "
          f"(max |logit diff| {results['onnx_max_abs_logit_diff']:.2e})")
    print(f"onnx int8: {int8_path}, {int8_path.stat().st_size / 1e3:.0f} kB (float32 "
          f"{path.stat().st_size / 1e3:.0f} kB); agrees with Python on "
          f"{results['onnx_int8_agreement']:.2%}, test accuracy "
          f"{results['onnx_int8_test_accuracy']:.4f}")
    return results


def train_in_precision(model_name: str, data: Split, epochs: int, seed: int, precision: str,
                       float32_accuracy: float) -> Dict[str, object]:
    """Trains a model from ``seed`` under CPU autocast to ``precision`` (a key of
    ``export.PRECISIONS``), prints its test accuracy beside ``float32_accuracy`` and returns
    the summary's ``test_accuracy_<precision>``, ``train_seconds_<precision>`` and
    ``history_<precision>``."""
    dtype = export.PRECISIONS[precision]
    model, history, seconds = train_new_model(model_name, data, epochs, seed, dtype)
    _, _, x_test, y_test = data
    test_accuracy = accuracy(predict(model, x_test, dtype), y_test)
    print(f"test accuracy under {precision} autocast: {test_accuracy:.4f} ({seconds:.1f} s "
          f"training), {100 * (test_accuracy - float32_accuracy):+.2f} points from float32")
    return {f"test_accuracy_{precision}": test_accuracy, f"train_seconds_{precision}": seconds,
            f"history_{precision}": history}


def run_demo(model_name: str, epochs: int, output: Path, seed: int = 0,
             threads: int = 1, precision: str = "fp32") -> Dict[str, object]:
    """The whole job; writes models, ``summary.json`` and ``training_curves.png`` into
    ``output`` and returns the summary. Training uses ``threads`` intra-op threads: for
    these tiny models more threads mostly add synchronisation (4x slower with 2 on a busy
    2-core machine).

    With ``precision`` ``"bf16"`` a second model, from the same seed, trains under CPU
    bfloat16 autocast; the summary gains its ``test_accuracy_bf16``, ``train_seconds_bf16``
    and ``history_bf16``, and the plot its curves. The exported files are the float32
    model's either way.
    """
    if model_name not in DEMO_MODELS:
        raise ValueError(f"the demo trains one of {', '.join(DEMO_MODELS)}, not {model_name!r}")
    if precision not in export.PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from "
                         f"{', '.join(export.PRECISIONS)}")
    output.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    data = load_digits(seed)
    x_train, _, x_test, y_test = data
    print(f"digits: {len(x_train)} train / {len(x_test)} test images, 8x8; training {model_name}")
    model, history, train_seconds = train_new_model(model_name, data, epochs, seed)
    python_logits = predict(model, x_test)
    test_accuracy = accuracy(python_logits, y_test)
    print(f"test accuracy: {test_accuracy:.4f} ({train_seconds:.1f} s training)")

    metadata = {"model": model_name, "num_classes": NUM_CLASSES,
                "preprocessing": DIGITS_PREPROCESSING.to_dict()}
    summary: Dict[str, object] = {"model": model_name, "epochs": epochs, "seed": seed,
                                  "threads": threads,
                                  "train_images": len(x_train), "test_images": len(x_test),
                                  "test_accuracy": test_accuracy, "train_seconds": train_seconds}
    histories = {"float32": history}
    if precision != "fp32":
        summary.update(train_in_precision(model_name, data, epochs, seed, precision, test_accuracy))
        histories[f"{precision} autocast"] = summary[f"history_{precision}"]
    max_diff = 0.0
    torch.save(x_test, output / "test_images.pt")
    for format in CPP_FORMATS:
        path = output / f"{model_name}_digits{export.FORMATS[format]}"
        start = time.perf_counter()
        export.save(model, path, format, x_test[:2], metadata=metadata)
        cpp_agreement, diff = compare_in_cpp(path, x_test, python_logits)
        print(f"{format}: exported to {path} in {time.perf_counter() - start:.1f} s; "
              f"C++ runner agrees with Python on {cpp_agreement:.2%} of test images "
              f"(max |logit diff| {diff:.2e})")
        summary[f"{format}_cpp_agreement"] = cpp_agreement
        max_diff = max(max_diff, diff)
    summary["max_abs_logit_diff"] = max_diff
    summary.update(compare_in_onnxruntime(model, output / f"{model_name}_digits.onnx", metadata,
                                          data, python_logits))
    summary["history"] = history

    plot_curves(histories, f"{model_name} on scikit-learn digits", output / "training_curves.png")
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {output / 'summary.json'} and {output / 'training_curves.png'}")
    return summary
