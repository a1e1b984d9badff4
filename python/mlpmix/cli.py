"""The ``mlpmix`` command: info, demo, convert, export, predict, bench (``mlpmix COMMAND --help``)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

import torch

import mlpmix
from . import convert, export, flops
from .demo import DEMO_MODELS, run_demo
from .images import Preprocessing


def model_info(name: str) -> dict:
    """What ``mlpmix info NAME`` reports: the model's parameter count, its MACs at its input
    size and batch 1 (:func:`mlpmix.flops.count_macs`), that input size and its
    ``pretrained_cfg``. The model is built on the meta device: no memory, no initialisation."""
    with torch.device("meta"):
        model = mlpmix.create_model(name)
    return {
        "model": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "macs": flops.count_macs(model),
        "input_size": list(model.pretrained_cfg["input_size"]),
        "pretrained_cfg": model.pretrained_cfg,
    }


def installation_info() -> dict:
    """What ``mlpmix info`` reports: versions, backends, threads and paths."""
    build = mlpmix.build_info()
    return {
        "mlpmix": build["mlpmix"],
        "torch": f"{build['torch_running']} (built against {build['torch_built_against']})",
        "backends": ", ".join(build["backends"]),
        "compiler": f"{build['compiler']} ({build['build_type']})",
        "threads": torch.get_num_threads(),
        "cuda available": torch.cuda.is_available(),
        "ops library": build["library"],
        "cmake prefix path": build["cmake_prefix_path"],
        "runner": build["runner"],
    }


def print_rows(rows: dict, indent: str = "") -> None:
    for key, value in rows.items():
        print(f"{indent}{key + ':':<19}{value}")


def print_model_info(facts: dict) -> None:
    print_rows({
        "model": facts["model"],
        "parameters": f"{facts['parameters']:,}",
        "MACs": f"{facts['macs']:,} ({facts['macs'] / 1e9:.3f} G, batch 1)",
        "input size": "x".join(map(str, facts["input_size"])),
    })
    print("pretrained_cfg:")
    print_rows(facts["pretrained_cfg"], indent="  ")


def info(args: argparse.Namespace) -> int:
    """Without NAME: :func:`installation_info`; with NAME: the model's :func:`model_info`.
    ``--json`` prints either as JSON."""
    if args.name is None:
        facts, show = installation_info(), print_rows
    else:
        try:
            facts, show = model_info(args.name), print_model_info
        except ValueError as e:  # an unknown name: the registry's message lists the known ones
            return fail("info", e)
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        show(facts)
    return 0


def demo(args: argparse.Namespace) -> int:
    run_demo(args.model, args.epochs, Path(args.output), args.seed, args.threads, args.precision)
    return 0


def fail(command: str, error: Exception) -> int:
    """Reports a user's error (a checkpoint that does not fit, a missing file) without a
    traceback: ``mlpmix COMMAND: message`` on stderr, exit status 1."""
    print(f"mlpmix {command}: {error}", file=sys.stderr)
    return 1


def convert_checkpoint(args: argparse.Namespace) -> int:
    """Any checkpoint ``load_checkpoint`` accepts -> mlpmix's layout, checked against the
    architecture, written as ``--out`` (default ``<stem>.mlpmix.safetensors`` beside it)."""
    source = Path(args.checkpoint)
    out = Path(args.out) if args.out else source.with_name(f"{source.stem}.mlpmix.safetensors")
    try:
        state = convert.load_checkpoint(args.model, source)
        convert.save_state_dict(state, out)
    except (ValueError, OSError) as e:  # CheckpointError is a ValueError
        return fail("convert", e)
    kwargs = {**convert.checkpoint_kwargs(args.model, state), "checkpoint_path": str(out)}
    call = ", ".join([repr(args.model), *(f"{k}={v!r}" for k, v in kwargs.items())])
    print(f"wrote {out}: {args.model}, {len(state)} tensors, {kwargs.get('num_classes', 1000)} "
          f"classes; load it with mlpmix.create_model({call})")
    return 0


def export_model(args: argparse.Namespace) -> int:
    """A model name, or a checkpoint with ``--model`` naming its architecture; a
    checkpoint's classes, channels and image size are the defaults of the size options.
    ``--int8`` writes the float32 ONNX export quantized to int8 (``export.quantize_int8``)."""
    if args.int8 and (args.format != "onnx" or args.precision != "fp32"):
        sys.exit("mlpmix export: --int8 quantizes a float32 ONNX export: use it with "
                 f"--format onnx and --precision fp32, not --format {args.format} "
                 f"--precision {args.precision}")
    if args.model_or_checkpoint in mlpmix.list_models():
        name, checkpoint = args.model_or_checkpoint, None
    elif args.model is None:
        sys.exit(f"mlpmix export: {args.model_or_checkpoint!r} is not a model name "
                 f"({', '.join(mlpmix.list_models())}); for a checkpoint, say --model NAME")
    else:
        name, checkpoint = args.model, args.model_or_checkpoint
    given = {"num_classes": args.num_classes, "in_chans": args.in_chans, "img_size": args.img_size}
    try:
        state = convert.load_checkpoint(name, checkpoint) if checkpoint is not None else None
        found = convert.checkpoint_kwargs(name, state) if state is not None else {}
        options = {"in_chans": 3, **found, **{k: v for k, v in given.items() if v is not None}}
        model = mlpmix.create_model(name, **options)
        if state is not None:
            convert.check_fits(name, state, model.state_dict())
            model.load_state_dict(state)
    except (ValueError, OSError) as e:  # CheckpointError is a ValueError
        return fail("export", e)
    size, in_chans = model.config.img_size, options["in_chans"]
    preprocessing = Preprocessing(size=(size, size), channels=in_chans,
                                  invert_light_background=args.invert_light_background)
    metadata = {"model": name, "num_classes": model.num_classes,
                "preprocessing": preprocessing.to_dict()}
    example = torch.randn(args.batch_size, in_chans, size, size)
    dynamic_batch = args.batch_dynamic or args.format == "onnx"
    try:
        if args.int8:
            with tempfile.TemporaryDirectory() as tmp:
                float32 = export.save(model, Path(tmp) / "float32.onnx", "onnx", example,
                                      dynamic_batch, metadata)
                path = export.quantize_int8(float32, args.out)
        else:
            path = export.save(model, args.out, args.format, example, dynamic_batch, metadata,
                               precision=args.precision)
    except (ValueError, ImportError) as e:  # a precision the format lacks, a missing extra
        return fail("export", e)
    precision = "int8" if args.int8 else args.precision
    print(f"wrote {path} ({args.format}, {precision}, {name}, {in_chans}x{size}x{size} images)")
    return 0


def predict(args: argparse.Namespace) -> int:
    try:
        model, metadata = export.load(args.model_file)
    except ImportError as e:  # an .onnx file without the onnx extra
        return fail("predict", e)
    if "preprocessing" not in metadata:
        sys.exit(f"mlpmix predict: {args.model_file} has no mlpmix preprocessing metadata; "
                 "export it with `mlpmix export` or mlpmix.export.save")
    preprocessing = Preprocessing.from_dict(metadata["preprocessing"])
    images = torch.stack([preprocessing(path) for path in args.images])
    fixed_batch = metadata["input_shape"][0]
    if fixed_batch > 0 and len(images) % fixed_batch:
        sys.exit(f"mlpmix predict: {args.model_file} takes batches of exactly {fixed_batch} "
                 f"images; got {len(images)}")
    with torch.inference_mode():
        chunks = images.split(fixed_batch) if fixed_batch > 0 else [images]
        probabilities = torch.cat([model(chunk) for chunk in chunks]).softmax(1)
    scores, classes = probabilities.topk(min(args.topk, probabilities.shape[1]), dim=1)
    for path, row_scores, row_classes in zip(args.images, scores, classes):
        best = ", ".join(f"{c} ({s:.3f})" for c, s in zip(row_classes.tolist(), row_scores.tolist()))
        print(f"{path}: {best}")
    return 0


def find_benchmarks() -> Optional[Path]:
    """The source checkout holding ``benchmarks/``: the current directory, or the one the
    package was imported from (``python/mlpmix`` in the checkout)."""
    for root in (Path.cwd(), Path(mlpmix.__file__).resolve().parents[2]):
        if (root / "benchmarks" / "run.py").is_file():
            return root
    return None


def bench(args: argparse.Namespace) -> int:
    root = find_benchmarks()
    if root is None:
        print("mlpmix bench: the benchmark suite is not installed with the package; run it from "
              "a source checkout of mlpmix (the folder holding benchmarks/run.py)", file=sys.stderr)
        return 2
    return subprocess.run([sys.executable, "-m", "benchmarks.run", *args.bench_args], cwd=root).returncode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlpmix", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mlpmix {mlpmix.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("info", help="versions, backends, threads, paths; or a model's "
                            "parameters, MACs, input size and pretrained_cfg")
    p.add_argument("name", nargs="?", metavar="NAME",
                   help=f"a model: {', '.join(mlpmix.list_models())}")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(run=info)

    p = commands.add_parser("demo", help="train on scikit-learn digits, export, check in C++")
    p.add_argument("--model", default="raftmlp_tiny", choices=DEMO_MODELS)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--output", default="mlpmix-demo", help="directory for models, summary, plot")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for training")
    p.add_argument("--precision", default="fp32", choices=tuple(export.PRECISIONS),
                   help="bf16: also train under CPU bfloat16 autocast (same seed) and report "
                        "its test accuracy beside float32's (default: fp32)")
    p.set_defaults(run=demo)

    p = commands.add_parser("convert", help="convert a checkpoint (authors' or mlpmix's layout) "
                            "to mlpmix's, as safetensors or a torch file")
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a torch file or .safetensors: a state dict, possibly under model, "
                        "state_dict, model_ema or state_dict_ema, with or without DDP's "
                        "'module.' prefix")
    p.add_argument("--model", required=True, choices=mlpmix.list_models(), metavar="NAME",
                   help=f"architecture of the checkpoint: {', '.join(mlpmix.list_models())}")
    p.add_argument("--out", help="output file: .safetensors (default: <stem>.mlpmix.safetensors "
                                 "beside CHECKPOINT), .pt, .pth or .bin")
    p.set_defaults(run=convert_checkpoint)

    p = commands.add_parser("export", help="export a model or checkpoint to TorchScript, AOTI "
                            "or ONNX")
    p.add_argument("model_or_checkpoint", metavar="NAME_OR_CHECKPOINT",
                   help="a model name (mlpmix.list_models()) or a checkpoint file with --model")
    p.add_argument("--model", help="architecture of the checkpoint")
    p.add_argument("--format", required=True, choices=tuple(export.FORMATS))
    p.add_argument("--out", required=True,
                   help="output file (.pt for torchscript, .pt2 for aoti, .onnx for onnx)")
    p.add_argument("--batch-dynamic", action="store_true",
                   help="aoti: accept any batch size (torchscript and onnx always do)")
    p.add_argument("--batch-size", type=int, default=1, help="aoti: the fixed batch size")
    p.add_argument("--precision", default="fp32", choices=tuple(export.PRECISIONS),
                   help="bf16 (torchscript, aoti): bfloat16 weights and computation; the file "
                        "still takes and returns float32 (default: fp32)")
    p.add_argument("--int8", action="store_true",
                   help="onnx: quantize the file with onnxruntime's dynamic quantization (linear "
                        "layers' weights int8 per channel, activations quantized at run time)")
    p.add_argument("--num-classes", type=int, help="default: the checkpoint's, or 1000")
    p.add_argument("--in-chans", type=int,
                   help="1 for grayscale, 3 for RGB (default: the checkpoint's, or 3)")
    p.add_argument("--img-size", type=int, help="default: the checkpoint's, or the model's")
    p.add_argument("--invert-light-background", action="store_true",
                   help="predict: invert light-background images (for models trained light on dark)")
    p.set_defaults(run=export_model)

    p = commands.add_parser("predict", help="classify image files with an exported model")
    p.add_argument("model_file", metavar="MODEL_FILE",
                   help=".pt (TorchScript), .pt2 (AOTI) or .onnx (run by onnxruntime)")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="PNG or JPEG files")
    p.add_argument("--topk", type=int, default=1)
    p.set_defaults(run=predict)

    # its arguments (--help included) go to benchmarks.run: see main()
    commands.add_parser("bench", help="run the benchmark suite (benchmarks/ of a checkout)",
                        add_help=False).set_defaults(run=bench)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        args.bench_args = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args.run(args)
