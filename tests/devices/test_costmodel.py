"""The ONNX cost model on tiny hand-built graphs: MACs by formula, op classes, fusion, QDQ folding, batch."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgestill.devices.costmodel import OP_CLASSES, cost_summary, graph_cost
from edgestill.errors import InputError

F32 = TensorProto.FLOAT


def _init(name: str, shape: tuple[int, ...], dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.zeros(shape, dtype=dtype), name)


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def _conv_net(batch_dim="N") -> onnx.ModelProto:
    """x(1,8,16,16) -> 3x3 conv 16 (+bias) -> Relu -> depthwise 3x3 stride 2 -> 1x1 conv 32 -> GAP -> Flatten -> Gemm 10."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv3x3", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("Conv", ["r1", "wd"], ["c2"], name="dw", group=16, pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Conv", ["c2", "wp"], ["c3"], name="pw"),
        helper.make_node("GlobalAveragePool", ["c3"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    inits = [_init("w1", (16, 8, 3, 3)), _init("b1", (16,)), _init("wd", (16, 1, 3, 3)), _init("wp", (32, 16, 1, 1)),
             _init("wf", (10, 32)), _init("bf", (10,))]
    x = helper.make_tensor_value_info("x", F32, [batch_dim, 8, 16, 16])
    y = helper.make_tensor_value_info("y", F32, [batch_dim, 10])
    return _model(nodes, [x], [y], inits)


def test_macs_by_formula_and_classes():
    cost = graph_cost(_conv_net())
    by_name = {n.name: n for n in cost.nodes}
    assert by_name["conv3x3"].macs == 16 * 16 * 16 * 8 * 3 * 3  # Cout·Hout·Wout·Cin·kh·kw
    assert by_name["conv3x3"].op_class == "conv"
    assert by_name["dw"].macs == 16 * 8 * 8 * 1 * 3 * 3  # group == Cin: C·Hout·Wout·k²
    assert by_name["dw"].op_class == "depthwise"
    assert by_name["pw"].macs == 32 * 8 * 8 * 16
    assert by_name["pw"].op_class == "conv1x1"
    assert by_name["fc"].macs == 1 * 10 * 32 and by_name["fc"].op_class == "matmul"
    assert by_name["gap"].op_class == "pool" and by_name["gap"].macs == 0
    assert cost.total_macs == sum(n.macs for n in cost.nodes)
    # parameters: every initializer once, float32
    assert cost.total_params == 16 * 8 * 9 + 16 + 16 * 9 + 32 * 16 + 320 + 10
    assert cost.total_param_bytes == 4 * cost.total_params
    assert by_name["conv3x3"].param_bytes == 4 * (16 * 8 * 9 + 16)
    assert by_name["pw"].act_bytes == 4 * (16 * 8 * 8 + 32 * 8 * 8)  # input + output, no parameters


def test_relu_fuses_into_its_conv_and_makes_no_memory_pass():
    cost = graph_cost(_conv_net())
    names = [n.name for n in cost.nodes]
    assert "relu" not in names
    conv = next(n for n in cost.nodes if n.name == "conv3x3")
    assert conv.fused == ("Relu",)
    # the conv's output tensor is not counted separately: input + the Relu's output only
    assert conv.act_bytes == 4 * (8 * 16 * 16 + 16 * 16 * 16)


def test_no_fusion_when_the_conv_output_has_two_consumers():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Add", ["c", "r"], ["y"], name="add"),
    ]
    m = _model(nodes, [helper.make_tensor_value_info("x", F32, [1, 4, 8, 8])],
               [helper.make_tensor_value_info("y", F32, [1, 4, 8, 8])], [_init("w", (4, 4, 1, 1))])
    cost = graph_cost(m)
    assert {n.name for n in cost.nodes} == {"conv", "relu", "add"}
    assert cost.by_class()["elementwise"]["nodes"] == 2


def test_silu_and_bias_chain_fuse():
    """MatMul -> Add(bias) -> Sigmoid·Mul (SiLU): one node; the bias counts as a parameter."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
        helper.make_node("Add", ["m", "b"], ["a"], name="bias"),
        helper.make_node("Sigmoid", ["a"], ["s"], name="sig"),
        helper.make_node("Mul", ["a", "s"], ["y"], name="mul"),
    ]
    m = _model(nodes, [helper.make_tensor_value_info("x", F32, [1, 5, 6])],
               [helper.make_tensor_value_info("y", F32, [1, 5, 7])], [_init("w", (6, 7)), _init("b", (7,))])
    cost = graph_cost(m)
    assert len(cost.nodes) == 1
    node = cost.nodes[0]
    assert node.fused == ("Add", "Sigmoid", "Mul")
    assert node.macs == 5 * 7 * 6
    assert node.param_bytes == 4 * (6 * 7 + 7)


def test_attention_matmuls_beside_softmax():
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="qk"),
        helper.make_node("Softmax", ["s"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["o"], name="pv"),
    ]
    ins = [helper.make_tensor_value_info(n, F32, [2, 10, 4]) for n in ("q", "k", "v")]
    cost = graph_cost(_model(nodes, ins, [helper.make_tensor_value_info("o", F32, [2, 10, 4])], []))
    by_name = {n.name: n for n in cost.nodes}
    assert by_name["qk"].op_class == by_name["pv"].op_class == "attention"
    assert by_name["qk"].macs == 2 * 10 * 10 * 4 and by_name["pv"].macs == 2 * 10 * 4 * 10
    assert by_name["softmax"].op_class == "softmax"  # a memory-bound class of its own (an exp per element)


def test_qdq_pairs_fold_and_mark_int8():
    """x -> Q -> DQ -> Conv(DQ(int8 weight)) -> Q -> DQ -> y: one int8 conv node with 1-byte weights and activations."""
    s, z = numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.int8(0), "z")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"]),
        helper.make_node("Conv", ["xd", "wd"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["y"]),
    ]
    m = _model(nodes, [helper.make_tensor_value_info("x", F32, [1, 4, 8, 8])],
               [helper.make_tensor_value_info("y", F32, [1, 6, 8, 8])], [_init("wq", (6, 4, 3, 3), np.int8), s, z])
    cost = graph_cost(m)
    assert [n.op_type for n in cost.nodes] == ["Conv"]
    conv = cost.nodes[0]
    assert conv.dtype == "int8"
    assert conv.macs == 6 * 8 * 8 * 4 * 9
    assert conv.param_bytes == 6 * 4 * 9 + 4 + 1  # int8 weight (1 byte each) + its scale and zero point
    assert conv.act_bytes == 4 * 8 * 8 + 6 * 8 * 8  # one byte per element in and out


def test_qdq_around_an_op_without_an_int8_kernel_stays_as_passes():
    """x -> Q -> DQ -> HardSigmoid -> Q -> DQ -> y: onnxruntime has no int8 HardSigmoid, so it runs in fp32 between a
    real DequantizeLinear and QuantizeLinear (three passes); an Add, which has an int8 kernel, folds to one node."""
    s, z = numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.int8(0), "z")

    def graph(op: str, extra: list[str]) -> onnx.ModelProto:
        nodes = [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
            helper.make_node(op, ["xd", *extra], ["h"], name="op"),
            helper.make_node("QuantizeLinear", ["h", "s", "z"], ["hq"]),
            helper.make_node("DequantizeLinear", ["hq", "s", "z"], ["y"]),
        ]
        return _model(nodes, [helper.make_tensor_value_info("x", F32, [1, 4, 8, 8])],
                      [helper.make_tensor_value_info("y", F32, [1, 4, 8, 8])], [s, z])

    cost = graph_cost(graph("HardSigmoid", []))
    assert [(n.op_type, n.dtype) for n in cost.nodes] == [
        ("DequantizeLinear", "int8"), ("QuantizeLinear", "int8"), ("HardSigmoid", "fp32")]
    assert all(n.op_class == "elementwise" for n in cost.nodes)
    by_op = {n.op_type: n for n in cost.nodes}
    assert by_op["HardSigmoid"].act_bytes == 2 * 4 * 256  # fp32 in and out
    assert by_op["DequantizeLinear"].act_bytes == by_op["QuantizeLinear"].act_bytes == 256  # a third of an int8 Add
    cost = graph_cost(graph("Add", ["xd"]))
    assert [(n.op_type, n.dtype) for n in cost.nodes] == [("Add", "int8")]


def test_by_class_and_to_dict_and_batch(tmp_path: Path):
    one = graph_cost(_conv_net())
    four = graph_cost(_conv_net(), batch=4)
    assert four.total_macs == 4 * one.total_macs
    assert four.total_param_bytes == one.total_param_bytes  # weights do not scale with the batch
    classes = one.by_class()
    assert set(classes) == set(OP_CLASSES)
    assert sum(c["macs"] for c in classes.values()) == one.total_macs
    assert sum(c["nodes"] for c in classes.values()) == len(one.nodes)
    path = tmp_path / "net.onnx"
    onnx.save(_conv_net(), str(path))
    d = json.loads(json.dumps(graph_cost(path).to_dict()))
    assert d["total_macs"] == one.total_macs and len(d["nodes"]) == len(one.nodes)
    assert cost_summary(one)["layers"][0][:2] == ["conv", one.nodes[0].macs]


def test_bad_input(tmp_path: Path):
    bad = tmp_path / "not.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match="not an ONNX model"):
        graph_cost(bad)
    with pytest.raises(InputError, match="does not exist"):
        graph_cost(tmp_path / "missing.onnx")
    with pytest.raises(InputError, match="batch"):
        graph_cost(_conv_net(), batch=0)


@pytest.mark.slow
def test_stored_zoo_costs_match_a_fresh_export(tmp_path: Path):
    """perf/zoo_costs.py's entry for the cheapest zoo model, regenerated, equals the committed zoo_costs.json one."""
    import importlib.util

    repo = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("zoo_costs_script", repo / "perf" / "zoo_costs.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    stored = json.loads((repo / "src" / "edgestill" / "devices" / "zoo_costs.json").read_text())["models"]
    fresh = json.loads(json.dumps(script.zoo_entry("mobilenet_v3_small", tmp_path)))
    assert fresh == stored["mobilenet_v3_small"]
    # the zoo documents MACs per model (edgestill.models.zoo): the graph's count agrees within 2% for every one
    for name, entry in stored.items():
        assert abs(entry["total_macs"] / entry["torch_macs"] - 1) < 0.02, name


# ------------------------------------------------------------------------------------------------ .tflite cost model


@functools.lru_cache(maxsize=1)
def build_tiny_tflite_pair(folder: Path) -> dict[str, Path]:
    """One tiny module (conv+ReLU, depthwise, 1×1, x·hardsigmoid(x), mean, FC) as fp32 ONNX and static-int8 .tflite
    (the project's own writers; about 5 s): LiteRT's quantizer leaves the hard-sigmoid in fp32 between a DEQUANTIZE
    and a QUANTIZE, as in mobilenet_v3. Built once per session (test_estimator reuses it)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("ai_edge_litert")
    from torch import nn

    from edgestill.compress.quantize.api import quantize_export
    from edgestill.export.api import get_exporter

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, padding=1)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.pw = nn.Conv2d(8, 16, 1)
            self.hs = nn.Hardsigmoid()
            self.fc = nn.Linear(16, 10)

        def forward(self, x):  # noqa: ANN001, ANN201
            y = self.pw(self.dw(torch.relu(self.c1(x))))
            return self.fc((y * self.hs(y)).mean((2, 3)))

    torch.manual_seed(0)
    model = Tiny().eval()
    x = torch.randn(1, 3, 16, 16)
    folder.mkdir(parents=True, exist_ok=True)
    onnx_art = get_exporter("onnx")(model, (x,), staging_dir=folder, name="t-onnx", precision="fp32")
    from edgestill.compress.quantize.options import QuantOptions

    # integer I/O: the file's only QUANTIZE/DEQUANTIZE pair is the fp32 hard-sigmoid island the tests below find
    int8 = quantize_export(model, (x,), format="tflite", precision="int8-static", staging_dir=folder, name="t-int8",
                           calibration=np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32),
                           options=QuantOptions(integer_io=True))
    int8.hash_files()
    return {"onnx": onnx_art.model_path, "tflite": int8.model_path, "manifest": int8.write_manifest()}


@pytest.fixture
def tiny_tflite_pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tiny_tflite_pair(tmp_path_factory.getbasetemp() / "tiny_tflite")


def test_tflite_cost_matches_the_onnx_macs_and_sees_the_fp32_island(tiny_tflite_pair: dict[str, Path]):
    from edgestill.devices.tflite_cost import tflite_cost

    onnx_cost = graph_cost(tiny_tflite_pair["onnx"])
    cost = tflite_cost(tiny_tflite_pair["tflite"])
    assert cost.total_macs == pytest.approx(onnx_cost.total_macs, rel=0.01)
    assert cost.total_macs == 8 * 16 * 16 * 27 + 8 * 16 * 16 * 9 + 16 * 16 * 16 * 8 + 16 * 10
    by_type = {}
    for n in cost.nodes:
        by_type.setdefault(n.op_type, []).append(n)
    conv, dw = by_type["CONV_2D"][0], by_type["DEPTHWISE_CONV_2D"][0]
    # the first conv reads the 3-channel image: a stem; the tflite op's own activation is fused
    assert (conv.op_class, conv.dtype, conv.fused) == ("stem", "int8", ("RELU",))
    assert by_type["CONV_2D"][1].op_class == "conv1x1" and dw.op_class == "depthwise"
    assert not any(n.builtin for n in by_type["CONV_2D"])  # XNNPACK runs the int8 convs
    assert by_type["FULLY_CONNECTED"][0].op_class == "matmul"
    assert conv.param_bytes == 8 * 27 + 8 * 4  # int8 weights, int32 bias
    # the hard-sigmoid runs in fp32 between a DEQUANTIZE and a QUANTIZE: each a one-byte-per-element int8 pass
    (dq,), (q,) = by_type["DEQUANTIZE"], by_type["QUANTIZE"]
    assert dq.op_class == q.op_class == "elementwise" and dq.dtype == q.dtype == "int8"
    assert dq.act_bytes == q.act_bytes == 16 * 16 * 16
    fp32 = [n for n in cost.nodes if n.dtype == "fp32"]
    assert fp32 and all(n.op_class == "elementwise" for n in fp32)
    assert all(n.act_bytes == 2 * 16 * 16 * 16 * 4 for n in fp32)  # fp32 in and out, at four bytes
    assert cost_summary(cost)["layers"][0][3] == "int8"


def test_tflite_cost_bad_input(tmp_path: Path):
    pytest.importorskip("ai_edge_litert")
    from edgestill.devices.tflite_cost import tflite_cost

    with pytest.raises(InputError, match="does not exist"):
        tflite_cost(tmp_path / "none.tflite")
    (tmp_path / "fake.tflite").write_bytes(b"TFL3 nothing")
    with pytest.raises(InputError, match="not a TFLite model"):
        tflite_cost(tmp_path / "fake.tflite")


def test_outside_xnnpack_names_the_ops_the_delegate_leaves(tiny_tflite_pair: dict[str, Path]):
    from edgestill.devices.tflite_cost import outside_xnnpack

    left = outside_xnnpack(tiny_tflite_pair["tflite"])
    assert left is not None and all(isinstance(v, int) and v > 0 for v in left.values())
    assert "CONV_2D int8" not in left  # XNNPACK runs the int8 convs
    # tflite_cost marks the same ops builtin, one node each
    from edgestill.devices.tflite_cost import tflite_cost

    marked: dict[str, int] = {}
    for n in tflite_cost(tiny_tflite_pair["tflite"]).nodes:
        if n.builtin:
            marked[f"{n.op_type} {n.dtype}"] = marked.get(f"{n.op_type} {n.dtype}", 0) + 1
    assert sum(marked.values()) == sum(left.values())


def test_a_stem_is_a_dense_conv_on_few_channels_with_overlapping_windows():
    """The first conv on an RGB image (kernel > stride) is a ``stem``; a ViT's patch embedding (kernel == stride) and a
    conv on 8 channels are not."""
    def conv(cin: int, k: int, stride: int) -> str:
        nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="c", strides=[stride, stride],
                                  pads=[k // 2 if k > stride else 0] * 4)]
        out = 32 // stride
        g = _model(nodes, [helper.make_tensor_value_info("x", F32, [1, cin, 32, 32])],
                   [helper.make_tensor_value_info("y", F32, [1, 16, out, out])], [_init("w", (16, cin, k, k))])
        (node,) = graph_cost(g).nodes
        return node.op_class

    assert conv(3, 7, 2) == "stem" and conv(3, 3, 2) == "stem" and conv(1, 3, 1) == "stem"
    assert conv(3, 16, 16) == "conv"  # patch embedding: every input pixel read once
    assert conv(8, 3, 2) == "conv"


def test_a_lookup_reads_the_rows_it_gathers_not_the_table():
    """An embedding Gather of 16 tokens from a 1000 × 64 table moves 16 rows: counting the 256 KB table put a text
    model's per-call memory term several times too high."""
    nodes = [helper.make_node("Gather", ["table", "ids"], ["y"], name="embed")]
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 16])
    y = helper.make_tensor_value_info("y", F32, [1, 16, 64])
    (node,) = graph_cost(_model(nodes, [ids], [y], [_init("table", (1000, 64))])).nodes
    assert node.param_bytes == 16 * 64 * 4
    small = graph_cost(_model(nodes, [ids], [y], [_init("table", (4, 64))])).nodes[0]
    assert small.param_bytes == 4 * 64 * 4  # never more than the table


def test_tflite_embedding_lookup_reads_its_rows(tmp_path: Path):
    pytest.importorskip("ai_edge_litert")
    import torch

    from edgestill.devices.tflite_cost import tflite_cost
    from edgestill.export.api import get_exporter

    class Embed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = torch.nn.Embedding(1000, 32)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.table(ids) * 2.0

    art = get_exporter("tflite")(Embed().eval(), (torch.zeros(1, 8, dtype=torch.int64),), staging_dir=tmp_path,
                                 name="embed", precision="fp32")
    lookups = [n for n in tflite_cost(art.model_path).nodes if n.op_type in ("EMBEDDING_LOOKUP", "GATHER")]
    assert lookups and all(n.param_bytes == 8 * 32 * 4 for n in lookups)


def test_summary_marks_table_lookup_kernels_outside_the_delegate():
    """A builtin int8 GELU (a 256-entry table per element in LiteRT) is marked "lut" for the estimator's lut rate; a
    builtin HARD_SWISH stays true."""
    from edgestill.devices.costmodel import GraphCost, NodeCost

    def node(op: str, builtin: bool) -> NodeCost:
        return NodeCost(name=op, op_type=op, op_class="elementwise", macs=0, param_bytes=0, act_bytes=100,
                        dtype="int8", builtin=builtin)

    cost = GraphCost(nodes=[node("GELU", True), node("HARD_SWISH", True), node("GELU", False)], batch=1,
                     total_params=0, total_param_bytes=0, inputs={})
    assert [row[4:] for row in cost_summary(cost)["layers"]] == [["lut"], [True], []]
