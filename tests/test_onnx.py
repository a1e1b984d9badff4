"""ONNX export (issue #35): every model, written as standard ONNX by mlpmix.export.onnx, runs
in onnxruntime (and the S models in OpenVINO) like the PyTorch model, at batch sizes other
than the exported one; int8 through onnxruntime's dynamic quantization; the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import openvino
import pytest
import torch
from PIL import Image

import mlpmix
from mlpmix import export, onnx_export
from mlpmix.images import Preprocessing

PUBLISHED = ["raftmlp_s", "raftmlp_m", "raftmlp_l", "dynamixer_s", "dynamixer_m", "dynamixer_l"]
TINY = ["raftmlp_tiny", "dynamixer_tiny"]
SMALL = ["raftmlp_s", "dynamixer_s"]
EXPORTED_BATCH = 2
#: Compared with PyTorch at these batch sizes, neither of them the exported one.
COMPARED_BATCHES = (1, 3)


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """max |got - expected| over max |expected|."""
    return ((got - expected).abs().max() / expected.abs().max()).item()


def images(model: torch.nn.Module, batch: int) -> torch.Tensor:
    size = model.config.img_size
    return torch.randn(batch, model.in_chans, size, size)


class Exports:
    """A model per name (seeded) and its ONNX file, exported on first use, once per module."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.models = {}
        self.files = {}

    def model(self, name: str) -> torch.nn.Module:
        if name not in self.models:
            torch.manual_seed(0)
            self.models[name] = mlpmix.create_model(name).eval()
        return self.models[name]

    def onnx(self, name: str) -> Path:
        if name not in self.files:
            model = self.model(name)
            self.files[name] = export.save(model, self.directory / f"{name}.onnx", "onnx",
                                           images(model, EXPORTED_BATCH),
                                           metadata={"model": name})
        return self.files[name]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Exports:
    return Exports(tmp_path_factory.mktemp("onnx"))


def pytorch_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)


@pytest.mark.slow
@pytest.mark.parametrize("name", TINY + PUBLISHED)
def test_onnxruntime_matches_pytorch(exports, name):
    model = exports.model(name)
    session, _ = export.load(exports.onnx(name))
    for batch in COMPARED_BATCHES:
        x = images(model, batch)
        assert relative_error(session(x), pytorch_logits(model, x)) < 1e-4, batch


@pytest.mark.parametrize("name", TINY + SMALL)
def test_file_is_standard_onnx_with_named_batch_and_metadata(exports, name):
    path = exports.onnx(name)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert {node.domain for node in model.graph.node} == {""}
    assert not model.functions
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    metadata = json.loads({p.key: p.value for p in model.metadata_props}[export.METADATA_KEY])
    size = exports.model(name).config.img_size
    assert metadata == {"model": name, "input_shape": [-1, 3, size, size], "precision": "fp32"}


@pytest.mark.slow
@pytest.mark.parametrize("name", SMALL)
def test_openvino_matches_pytorch(exports, name):
    """OpenVINO's CPU plugin computes in bf16 on CPUs that have it unless told f32."""
    model = exports.model(name)
    compiled = openvino.Core().compile_model(str(exports.onnx(name)), "CPU",
                                             {"INFERENCE_PRECISION_HINT": "f32"})
    for batch in COMPARED_BATCHES:
        x = images(model, batch)
        got = torch.from_numpy(compiled(x.numpy())[0])
        assert relative_error(got, pytorch_logits(model, x)) < 1e-4, batch


def test_reference_implementation_exports_the_same_function(exports, tmp_path):
    """Exported under mlpmix.implementation.use("reference"), the program holds no mlpmix op
    to decompose; its file computes what the fused model's file does. DynaMixer's, whose
    fused block runs another formula (folded) than the reference's."""
    name = "dynamixer_tiny"
    model = exports.model(name)
    with mlpmix.implementation.use("reference"):
        path = export.onnx(model, images(model, EXPORTED_BATCH), tmp_path / "reference.onnx")
    reference_session, _ = export.load(path)
    fused_session, _ = export.load(exports.onnx(name))
    x = images(model, 3)
    assert relative_error(reference_session(x), fused_session(x)) < 1e-5


def graph_structure(model: onnx.ModelProto) -> list:
    """The graph's nodes in order as (op type, domain, attributes, inputs), each input named
    by what it is: a graph input, an initializer's value, or a node's output by position.
    Equal for the same graph under other value names."""
    origin = {value.name: ("input", i) for i, value in enumerate(model.graph.input)}
    for tensor in model.graph.initializer:
        origin[tensor.name] = ("initializer", tensor.data_type, tuple(tensor.dims),
                               onnx.numpy_helper.to_array(tensor).tobytes())
    nodes = []
    for index, node in enumerate(model.graph.node):
        inputs = tuple(origin[name] if name else None for name in node.input)
        origin.update({name: ("node", index, k) for k, name in enumerate(node.output)})
        attributes = sorted((a.name, a.SerializeToString()) for a in node.attribute)
        nodes.append((node.op_type, node.domain, attributes, inputs))
    return nodes


def test_export_writes_what_the_public_torch_onnx_route_writes(exports):
    """For speed, export.onnx decomposes the mlpmix ops inside torch.onnx's own decomposition
    pass and optimizes without a rule that cannot match (onnx_export's two shortcuts through
    torch.onnx's private parts). Its file holds the graph of the public route: the ops
    decomposed into their references, torch.onnx.export, ONNXProgram.optimize."""
    name = "raftmlp_tiny"
    model = exports.model(name)
    program = export.exported_program(model, images(model, EXPORTED_BATCH), dynamic_batch=True)
    program = program.run_decompositions(onnx_export.reference_decompositions())
    public = torch.onnx.export(program, dynamo=True, opset_version=20,
                               dynamic_shapes=export.batch_shapes(True))
    assert graph_structure(onnx.load(exports.onnx(name))) == graph_structure(public.model_proto)


def test_onnxruntime_session_threads(exports):
    path = exports.onnx("raftmlp_tiny")
    session = onnx_export.OnnxRuntimeModel(path, threads=3).session
    assert session.get_session_options().intra_op_num_threads == 3
    with pytest.raises(ValueError, match="threads must be at least 1, got 0"):
        onnx_export.OnnxRuntimeModel(path, threads=0)


def test_int8_file_is_quantized_smaller_and_close(exports, tmp_path):
    name = "raftmlp_s"
    path = export.quantize_int8(exports.onnx(name), tmp_path / "int8.onnx")
    assert path.stat().st_size < 0.3 * exports.onnx(name).stat().st_size
    model = onnx.load(path)
    assert "MatMulInteger" in {node.op_type for node in model.graph.node}
    session, metadata = export.load(path)
    assert metadata["precision"] == "int8" and metadata["model"] == name
    x = images(exports.model(name), 2)
    assert relative_error(session(x), pytorch_logits(exports.model(name), x)) < 0.1


def test_onnx_file_must_be_float32(exports, tmp_path):
    model = exports.model("raftmlp_tiny")
    with pytest.raises(ValueError, match="format 'onnx' takes precision 'fp32', got 'bf16'"):
        export.save(model, tmp_path / "m.onnx", "onnx", images(model, 2), precision="bf16")


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # torch.ao's
@pytest.mark.parametrize("name", TINY)
def test_torch_dynamic_quantization_points_to_onnx_int8(exports, name):
    quantized = torch.ao.quantization.quantize_dynamic(exports.model(name), {torch.nn.Linear})
    with pytest.raises(RuntimeError, match=r"must be a Tensor, got method.*--format onnx --int8"):
        quantized(images(quantized, 1))


def mlpmix_cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlpmix", *map(str, args)],
                          capture_output=True, text=True)


@pytest.mark.slow
def test_cli_exports_int8_onnx_and_predicts_with_it(tmp_path):
    torch.manual_seed(0)
    model = mlpmix.create_model("raftmlp_tiny", num_classes=10, in_chans=1)
    torch.save(model.state_dict(), tmp_path / "checkpoint.pth")
    result = mlpmix_cli("export", tmp_path / "checkpoint.pth", "--model", "raftmlp_tiny",
                        "--format", "onnx", "--int8", "--out", tmp_path / "m.onnx")
    assert result.returncode == 0, result.stderr
    assert "(onnx, int8, raftmlp_tiny, 1x8x8 images)" in result.stdout
    session, metadata = export.load(tmp_path / "m.onnx")
    assert metadata["precision"] == "int8" and metadata["num_classes"] == 10

    pngs = [tmp_path / f"image{i}.png" for i in range(3)]
    for seed, path in enumerate(pngs):
        pixels = torch.Generator().manual_seed(seed)
        image = torch.randint(0, 256, (16, 16), generator=pixels, dtype=torch.uint8)
        Image.frombytes("L", (16, 16), bytes(image.flatten().tolist())).save(path)
    preprocessing = Preprocessing.from_dict(metadata["preprocessing"])
    expected = session(torch.stack([preprocessing(p) for p in pngs])).argmax(1).tolist()
    result = mlpmix_cli("predict", tmp_path / "m.onnx", *pngs)
    assert result.returncode == 0, result.stderr
    assert [int(line.split(": ")[1].split()[0]) for line in result.stdout.splitlines()] == expected


def test_cli_int8_needs_onnx_format():
    result = mlpmix_cli("export", "raftmlp_tiny", "--format", "torchscript", "--int8",
                        "--out", "m.pt")
    assert result.returncode == 1
    assert "--int8 quantizes a float32 ONNX export" in result.stderr
