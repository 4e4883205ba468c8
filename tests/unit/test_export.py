"""`export` and `predict`: verified exports to ONNX Runtime, OpenVINO and plain Transformers, and labelled
predictions from each runtime. (Every method's output exporting is in test_method_contract.py.)"""
import copy
from types import SimpleNamespace
import csv
import json
from collections import Counter

import pytest
import torch
from torch import nn

import bertcompress as bc
from bertcompress import export as export_module
from bertcompress.cli import main
from bertcompress.core.errors import BertCompressError
from bertcompress.data.tasks import Example
from bertcompress.export import ExportSettings, export_model
from bertcompress.predict import PredictSettings, predict_file
from bertcompress.surgery.heads import prune_heads
from tests.conftest import WORDS, tiny_model, tiny_tokenizer

pytestmark = pytest.mark.slow  # each export traces and compiles a graph: seconds

SETTINGS = ExportSettings(max_length=24)


def texts(count: int = 40, seed: int = 0) -> list[Example]:
    generator = torch.Generator().manual_seed(seed)
    words = list(WORDS)
    lengths = torch.randint(1, 14, (count,), generator=generator).tolist()
    return [Example(" ".join(words[int(i)] for i in torch.randint(len(words), (n,), generator=generator)), -1)
            for n in lengths]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A plain fp32 model with named labels, its int8 version and an uneven head-pruned version, saved."""
    root = tmp_path_factory.mktemp("models")
    tokenizer = tiny_tokenizer()
    fp32 = tiny_model(seed=3)
    fp32.config.id2label, fp32.config.label2id = {0: "rotten", 1: "fresh"}, {"rotten": 0, "fresh": 1}
    int8 = copy.deepcopy(fp32)
    bc.compress(int8, bc.DynamicInt8())
    pruned = copy.deepcopy(fp32)
    prune_heads(pruned, {0: [0, 1, 2], 1: [1]})
    return {name: bc.save(model, root / name, tokenizer) for name, model in
            {"fp32": fp32, "int8": int8, "pruned": pruned}.items()}


def torch_logits(directory, examples):
    from bertcompress.data.batching import encode
    from bertcompress.evaluation.metrics import logits

    return logits(bc.load(directory), encode(examples, bc.load_tokenizer(directory), 24))


@pytest.mark.parametrize("to", ["onnx", "openvino", "transformers"])
def test_fp32_exports_match_pytorch_to_1e_4(models, to, tmp_path):
    record = export_model(models["fp32"], to, tmp_path / "out", texts(), SETTINGS)
    assert record["exact"] and record["verified"] and record["max_abs_logit_diff"] <= 1e-4
    saved = json.loads((tmp_path / "out" / "export.json").read_text())
    assert saved["format"] == to and saved["cpu"]["name"] and saved["examples"] == 40


@pytest.mark.parametrize("to", ["onnx", "openvino"])
def test_int8_exports_keep_int8_weights_and_predictions(models, to, tmp_path):
    record = export_model(models["int8"], to, tmp_path / "out", texts(), SETTINGS)
    assert not record["exact"] and record["verified"] and record["agreement"] >= export_module.MIN_AGREEMENT
    assert int8_weight_count(tmp_path / "out", to) >= 12  # q, k, v, out, ffn in/out of 2 layers


def int8_weight_count(directory, to: str) -> int:
    """2-D 8-bit weight tensors: int8, or uint8 on CPUs without int8 dot products (u8u8 kernels)."""
    if to == "onnx":
        import onnx

        graph = onnx.load(str(directory / "model.onnx")).graph
        eight_bit = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
        return sum(t.data_type in eight_bit and len(t.dims) == 2 for t in graph.initializer)
    import openvino as ov

    model = ov.Core().read_model(str(directory / "openvino_model.xml"))
    return sum(op.get_type_name() == "Constant" and str(op.get_element_type()) in ("<Type: 'int8_t'>", "i8", "<Type: 'uint8_t'>", "u8")
               and len(op.get_output_shape(0)) == 2 for op in model.get_ops())


@pytest.mark.parametrize("to", ["onnx", "openvino"])
def test_static_int8_quantizes_activations_with_calibrated_ranges(models, to, tmp_path):
    settings = ExportSettings(max_length=24, int8="static")
    record = export_model(models["fp32"], to, tmp_path / "out", texts(), settings, calibration=texts(50, seed=8))
    assert record["verified"] and record["agreement"] >= export_module.MIN_AGREEMENT and record["quantizer"]
    assert static_quantizer_count(tmp_path / "out", to) >= 12  # an input quantizer per Linear at least


def static_quantizer_count(directory, to: str) -> int:
    if to == "onnx":
        import onnx

        return sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(directory / "model.onnx")).graph.node)
    import openvino as ov

    model = ov.Core().read_model(str(directory / "openvino_model.xml"))
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def test_uneven_heads_export_to_onnx_but_not_to_plain_transformers(models, tmp_path):
    assert export_model(models["pruned"], "onnx", tmp_path / "onnx", texts(), SETTINGS)["verified"]
    with pytest.raises(BertCompressError, match="attention heads.*--to onnx or --to openvino"):
        export_model(models["pruned"], "transformers", tmp_path / "plain", texts(), SETTINGS)
    assert not (tmp_path / "plain").exists()


def test_an_export_that_does_not_verify_writes_nothing(models, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "FP32_TOLERANCE", -1.0)
    with pytest.raises(BertCompressError, match="does not match the PyTorch model.*nothing was written"):
        export_model(models["fp32"], "onnx", tmp_path / "out", texts(), SETTINGS)
    assert list(tmp_path.iterdir()) == []


def test_fusions_that_change_the_outputs_are_not_kept(models, tmp_path, monkeypatch):
    """The fused graph is kept only if it verifies: here the 'fusion' swaps in another model's graph."""
    other = tmp_path / "other"
    bc.save(tiny_model(seed=11), tmp_path / "unrelated", tiny_tokenizer())
    export_model(tmp_path / "unrelated", "onnx", other, texts(), ExportSettings(max_length=24, optimize=False))

    def wrong_fusion(path, out):
        out.write_bytes((other / "model.onnx").read_bytes())
        return {"Attention": 2}

    monkeypatch.setattr(export_module, "_fuse", wrong_fusion)
    record = export_model(models["fp32"], "onnx", tmp_path / "out", texts(), SETTINGS)
    assert record["verified"] and not record["optimized"] and record["max_abs_logit_diff"] <= 1e-4
    assert "differs" in record["not_optimized_because"]
    assert not (tmp_path / "out" / "fused-model.onnx").exists()


def test_real_fusions_are_kept_when_they_verify(models, tmp_path):
    record = export_model(models["fp32"], "onnx", tmp_path / "out", texts(), SETTINGS)
    assert record["optimized"] and record["fusions"].get("SkipLayerNormalization", 0) > 0


def write_inputs(path, examples):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows((i, e.text) for i, e in enumerate(examples))


@pytest.mark.parametrize("to", ["onnx", "openvino", "transformers"])
def test_predict_in_each_runtime_labels_rows_by_name_in_input_order(models, to, tmp_path):
    examples = texts(30, seed=5)
    write_inputs(tmp_path / "in.csv", examples)
    export_model(models["fp32"], to, tmp_path / "exported", examples, SETTINGS)
    count = predict_file(str(tmp_path / "exported"), tmp_path / "in.csv", tmp_path / "out.jsonl",
                         PredictSettings(batch_size=7, max_length=24))
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    expected = torch_logits(models["fp32"], examples).softmax(-1)
    assert count == len(rows) == 30 and [r["id"] for r in rows] == [str(i) for i in range(30)]
    assert [r["prediction"] for r in rows] == [["rotten", "fresh"][i] for i in expected.argmax(-1).tolist()]
    torch.testing.assert_close(torch.tensor([r["score"] for r in rows]), expected.max(-1).values,
                               atol=1e-5, rtol=0)


def test_cli_export_then_predict(models, tmp_path, capsys):
    write_inputs(tmp_path / "in.csv", texts(12))
    for args in (["export", models["int8"], "--to", "onnx", "--out", tmp_path / "onnx", "--data",
                  tmp_path / "in.csv", "--max-length", 24],
                 ["predict", tmp_path / "onnx", "-i", tmp_path / "in.csv", "-o", tmp_path / "out.tsv",
                  "--max-length", 24]):
        with pytest.raises(SystemExit) as done:
            main([str(a) for a in args])
        assert done.value.code == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "verified onnx" in err and "wrote 12 predictions" in err
    with open(tmp_path / "out.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert len(rows) == 12 and Counter(r["prediction"] for r in rows).keys() <= {"rotten", "fresh"}


def test_saved_compressed_model_explains_how_to_load_it(models):
    note = (models["int8"] / "README.md").read_text()
    assert "is a bertcompress Int8" in note and "bertcompress export" in note
    assert not (models["fp32"] / "README.md").exists()


def test_eval_and_bench_run_an_export_in_its_runtime(models, tmp_path, capsys):
    rows = "".join(f"{e.text},{i % 2}\n" for i, e in enumerate(texts(30, seed=4)))
    (tmp_path / "data.csv").write_text("text,label\n" + rows)
    export_model(models["fp32"], "openvino", tmp_path / "ov", texts(), SETTINGS)
    accuracies = []
    for model in (models["fp32"], tmp_path / "ov"):
        with pytest.raises(SystemExit) as done:
            main(["eval", "--model", str(model), "--train", str(tmp_path / "data.csv"), "--max-length", "24"])
        assert done.value.code == 0
        accuracies.append(capsys.readouterr().out.split("accuracy")[1].split()[0])
    assert accuracies[0] == accuracies[1]
    with pytest.raises(SystemExit) as done:
        main(["bench", str(models["fp32"]), str(tmp_path / "ov"), "--repeats", "1", "--seq-len", "16", "-b", "2"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "median of 1" in out and out.count("1.00x") >= 1


def test_a_runtime_that_is_not_installed_is_named_with_its_install_command(models, tmp_path, monkeypatch):
    import importlib.util

    import bertcompress.runtimes as runtimes

    real = importlib.util.find_spec
    monkeypatch.setattr(runtimes.importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(BertCompressError, match="'openvino' is not installed; install it with: pip install openvino"):
        export_model(models["fp32"], "openvino", tmp_path / "out", texts(), SETTINGS)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("granularity, group", [("group", 16), ("channel", 128), ("tensor", 128)])
def test_4_bit_weights_as_matmul_nbits_compute_exactly_what_the_packed_linear_does(granularity, group):
    from bertcompress.methods.quantization.nbits_export import NBitsLinear, nbits_block
    from bertcompress.methods.quantization.packed import PackedLinear
    from bertcompress.methods.quantization.quantizers import QuantSpec

    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 24)
    packed = PackedLinear.from_linear(linear, QuantSpec(4, True, granularity, group))
    block = nbits_block(packed)
    assert block is not None and 64 % block == 0
    x = torch.randn(3, 5, 64)
    torch.testing.assert_close(NBitsLinear(packed, block)(x), packed(x), atol=1e-5, rtol=0)
    asymmetric = PackedLinear.from_linear(linear, QuantSpec(4, False, "channel"))
    assert nbits_block(asymmetric) is None  # zero points other than 8: left dequantized


def test_4_bit_export_keeps_the_faster_graph_and_verifies_exactly(tmp_path):
    import onnx

    model = tiny_model(seed=2)
    bc.compress(model, bc.NaivePTQ(weight_bits=4, granularity="group", group_size=16))
    source = bc.save(model, tmp_path / "w4", tiny_tokenizer())
    record = export_model(source, "onnx", tmp_path / "out", texts(), SETTINGS)
    assert record["verified"] and record["exact"] and record["max_abs_logit_diff"] <= 1e-4
    choice = record["sub_8_bit_weights"]
    score = {name: ms["b1"] * ms["b32"] for name, ms in choice["latency_ms"].items()}
    assert choice["kept"] == min(score, key=score.get)
    assert choice["size_mb"]["packed"] < choice["size_mb"]["dequantized"]
    ops = {node.op_type for node in onnx.load(str(tmp_path / "out" / "model.onnx")).graph.node}
    assert ("MatMulNBits" in ops) == (choice["kept"] == "packed")
    assert not (tmp_path / "out" / "packed-model.onnx").exists()


def w8a8_model(models) -> nn.Module:
    """naive_ptq with 8-bit activations: static int8 Linears with calibrated input ranges."""
    from tests.conftest import toy_task

    model = bc.load(models["fp32"])
    ctx = bc.Context(task=toy_task(), tokenizer=tiny_tokenizer())
    bc.compress(model, bc.NaivePTQ(weight_bits=8, activation_bits=8, calibration_examples=16), ctx)
    return model


@pytest.mark.parametrize("to", ["onnx", "openvino"])
def test_static_8_bit_models_export_as_qdq_int8(models, to, tmp_path):
    """Their calibrated ranges become QuantizeLinear/DequantizeLinear pairs."""
    from bertcompress.methods.quantization.packed import PackedLinear
    from bertcompress.methods.quantization.qdq_export import QdqLinear

    model = w8a8_model(models)
    packed = next(m for m in model.modules() if isinstance(m, PackedLinear))
    x = torch.randn(2, 7, packed.in_features)
    torch.testing.assert_close(QdqLinear(packed)(x), packed(x), atol=1e-5, rtol=0)
    source = bc.save(model, tmp_path / "w8a8", tiny_tokenizer())
    record = export_model(source, to, tmp_path / "out", texts(), SETTINGS)
    assert record["verified"] and not record["exact"]
    assert static_quantizer_count(tmp_path / "out", to) >= 8  # q, k, v share their input's quantizer


def our_input_ranges(model: nn.Module) -> set[tuple[float, float]]:
    """(low, high) of every static int8 Linear's input grid, rounded: what a FakeQuantize would hold."""
    from bertcompress.methods.quantization.packed import PackedLinear
    from bertcompress.methods.quantization.qdq_export import QdqLinear

    ranges = set()
    for module in model.modules():
        if isinstance(module, PackedLinear):
            qdq = QdqLinear(module)
            zero, scale, grid = float(qdq.input_zero), float(qdq.input_scale), torch.iinfo(torch.uint8)
            ranges.add((round((grid.min - zero) * scale, 4), round((grid.max - zero) * scale, 4)))
    return ranges


def test_static_int8_on_a_static_model_keeps_its_ranges_and_nncf_quantizes_the_attention(models, tmp_path):
    """`--int8 static` on a model whose Linears already have input ranges (PTQ, Q8BERT QAT): NNCF leaves those
    MatMuls as they are and quantizes what is left, the attention products among them."""
    import openvino as ov

    model = w8a8_model(models)
    source = bc.save(model, tmp_path / "w8a8", tiny_tokenizer())
    settings = ExportSettings(max_length=24, int8="static")
    record = export_model(source, "openvino", tmp_path / "out", texts(), settings, calibration=texts(50, seed=8))
    layers = model.config.num_hidden_layers
    assert record["verified"] and record["matmuls_with_own_ranges"] == 6 * layers  # q k v out in out
    assert record["quantizer"].startswith("ours on 12 MatMuls")
    ir = ov.Core().read_model(str(tmp_path / "out" / "openvino_model.xml"))
    quantizers = [op for op in ir.get_ops() if op.get_type_name() == "FakeQuantize"]
    found = {(round(float(op.input_value(1).get_node().get_data().min()), 4),
              round(float(op.input_value(2).get_node().get_data().max()), 4)) for op in quantizers}
    assert our_input_ranges(model) <= found
    assert not [op for op in quantizers if op.input_value(0).get_node().get_type_name() == "FakeQuantize"]
    products = [op for op in ir.get_ops() if op.get_type_name() == "MatMul" and
                all(_quantized_input(port) for port in op.inputs())]
    assert len(products) >= 2 * layers  # query x key and weights x value, both inputs int8


def _quantized_input(port) -> bool:
    """Whether a FakeQuantize feeds this input, directly or through reshapes."""
    node = port.get_source_output().get_node()
    while node.get_type_name() in ("Reshape", "Transpose"):
        node = node.input_value(0).get_node()
    return node.get_type_name() == "FakeQuantize"


def test_static_int8_to_onnx_keeps_our_quantizers(models, tmp_path):
    """ONNX Runtime's quantize_static touches only float MatMuls with weights; in a static int8 model none is
    left (pooler and classifier are Gemms), so the graph keeps exactly our quantizers."""
    model = w8a8_model(models)
    source = bc.save(model, tmp_path / "w8a8", tiny_tokenizer())
    plain = export_model(source, "onnx", tmp_path / "plain", texts(), SETTINGS)
    settings = ExportSettings(max_length=24, int8="static")
    record = export_model(source, "onnx", tmp_path / "out", texts(), settings, calibration=texts(50, seed=8))
    assert record["verified"] and plain["verified"] and record["quantizer"].startswith("ours only")
    ours = quantizer_scales(tmp_path / "plain" / "model.onnx")
    assert len(ours) >= 4 * model.config.num_hidden_layers - 2  # each Linear input has its own range
    assert quantizer_scales(tmp_path / "out" / "model.onnx") == ours


def quantizer_scales(path) -> set[float]:
    """The scale of every QuantizeLinear of an ONNX graph, rounded."""
    import onnx

    graph = onnx.load(str(path)).graph
    values = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    return {round(float(values[n.input[1]]), 7) for n in graph.node if n.op_type == "QuantizeLinear"}


def test_an_approximate_export_that_loses_accuracy_on_labelled_inputs_is_refused():
    """98% agreement passes alone, but not when the 2% it changed were right: 2 points of accuracy lost."""
    from bertcompress.data.batching import Encoded
    from bertcompress.export import Reference

    labels = [i % 2 for i in range(100)]
    reference_logits = torch.nn.functional.one_hot(torch.tensor(labels), 2).float()
    flipped = reference_logits.clone()
    flipped[:2] = flipped[:2].flip(-1)

    class Fixed(torch.nn.Module):
        """Logits looked up by the first token id: a model whose predictions the test chooses."""
        task_type = "classification"

        def __init__(self, table):
            super().__init__()
            self.anchor, self.table = torch.nn.Parameter(torch.zeros(0)), table
            self.config = SimpleNamespace(num_labels=2)

        def forward(self, input_ids, **_):
            from transformers.modeling_outputs import SequenceClassifierOutput
            return SequenceClassifierOutput(logits=self.table[input_ids[:, 0] - 5])

    data = Encoded([[5 + i] for i in range(100)], None, labels, 0)
    labelled = Reference.of(Fixed(reference_logits), data, exact=False).check(Fixed(flipped))
    assert labelled["agreement"] == pytest.approx(0.98) and labelled["accuracy"] == pytest.approx(0.98)
    assert labelled["reference_accuracy"] == 1.0 and not labelled["verified"]
    unlabelled_data = Encoded(data.ids, None, [-1] * 100, 0)
    unlabelled = Reference.of(Fixed(reference_logits), unlabelled_data, exact=False).check(Fixed(flipped))
    assert unlabelled["verified"] and "accuracy" not in unlabelled


def test_a_caller_that_judges_accuracy_itself_can_keep_an_unverified_export(models, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "FP32_TOLERANCE", -1.0)
    settings = ExportSettings(max_length=24, enforce=False)
    record = export_model(models["fp32"], "onnx", tmp_path / "out", texts(), settings)
    assert not record["verified"]
    assert json.loads((tmp_path / "out" / "export.json").read_text())["verified"] is False


def test_static_int8_leaves_the_softmax_product_in_float_when_quantizing_it_does_not_verify(models, tmp_path,
                                                                                         monkeypatch):
    """The fallback: the first IR (both attention products int8) is made to fail verification; the export
    then quantizes query x key only, verifies, and says why."""
    import openvino as ov

    from bertcompress.runtimes.static_int8 import softmax_matmuls

    real_check = export_module.Reference.check
    seen = []

    def strict_about_softmax(self, candidate):
        found = real_check(self, candidate)
        if not hasattr(candidate, "compiled"):  # the PyTorch side of a check
            return found
        ir = ov.Core().read_model(str(candidate.path))
        quantized = [name for name in softmax_matmuls(ir) if any(
            _quantized_input(port) for op in ir.get_ops() if op.get_friendly_name() == name for port in op.inputs())]
        seen.append(len(quantized))
        return {**found, "verified": found["verified"] and not quantized}

    monkeypatch.setattr(export_module.Reference, "check", strict_about_softmax)
    source = bc.save(w8a8_model(models), tmp_path / "w8a8", tiny_tokenizer())
    settings = ExportSettings(max_length=24, int8="static")
    record = export_model(source, "openvino", tmp_path / "out", texts(), settings, calibration=texts(50, seed=8))
    layers = 2
    assert seen[0] == layers and seen[-1] == 0  # first every softmax product int8, in the end none
    assert record["verified"] and "query x key only" in record["quantizer"]
    assert record["not_all_attention_products_because"].startswith("with them it agreed on")
    ir = ov.Core().read_model(str(tmp_path / "out" / "openvino_model.xml"))
    products = [op for op in ir.get_ops() if op.get_type_name() == "MatMul" and
                all(_quantized_input(port) for port in op.inputs())]
    assert len(products) >= layers  # query x key still int8


def products_model(models) -> nn.Module:
    """Q8BERT QAT with EMA ranges on the Linears' inputs and on both attention products' inputs."""
    from tests.conftest import toy_task

    teacher = bc.load(models["fp32"])
    model = copy.deepcopy(teacher)
    ctx = bc.Context(task=toy_task(), tokenizer=tiny_tokenizer(), teacher=teacher,
                     train=bc.TrainConfig(batch_size=8, max_length=16))
    bc.compress(model, bc.Q8BertQAT(activation_ranges="ema", attention_products=True, max_steps=3), ctx)
    return model


def zero_points(graph) -> dict[str, tuple[int, int]]:
    """Every 8-bit integer initializer of one element (the QDQ zero points): name -> (ONNX data type, value)."""
    import onnx
    from onnx import numpy_helper

    eight_bit = (onnx.TensorProto.UINT8, onnx.TensorProto.INT8)
    return {t.name: (t.data_type, int(numpy_helper.to_array(t).reshape(-1)[0])) for t in graph.initializer
            if t.data_type in eight_bit and numpy_helper.to_array(t).size == 1}


def integer_matmuls(path) -> dict[str, int]:
    """MatMuls left in float and MatMuls fused into integer kernels once ONNX Runtime has optimized the graph."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(path.with_name("optimized.onnx"))
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    kinds = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    return {"MatMul": kinds.count("MatMul"),
            "integer": sum(kinds.count(k) for k in ("MatMulIntegerToFloat", "QLinearMatMul", "MatMulInteger"))}


def test_trained_attention_product_ranges_export_as_qdq_at_the_products(models, tmp_path):
    """Both inputs of query x key and of weights x value come straight from a DequantizeLinear (uint8: zero
    point 128 for the symmetric grids, 0 for the softmax weights), as NNCF places its own, and OpenVINO reads
    them as FakeQuantize there; ONNX Runtime fuses every MatMul into an integer kernel."""
    import onnx
    import openvino as ov

    model = products_model(models)
    source = bc.save(model, tmp_path / "qat", tiny_tokenizer())
    record = export_model(source, "onnx", tmp_path / "onnx", texts(), ExportSettings(max_length=24, optimize=False))
    assert record["verified"] and not record["exact"]
    graph = onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph
    made_by = {output: node for node in graph.node for output in node.output}
    weights = {t.name for t in graph.initializer}
    products = [n for n in graph.node if n.op_type == "MatMul" and all(
        made_by[i].op_type == "DequantizeLinear" and made_by[i].input[0] not in weights for i in n.input)]
    layers = model.config.num_hidden_layers
    assert len(products) == 2 * layers
    zeros = zero_points(graph)
    assert {zeros[made_by[i].input[2]] for n in products for i in n.input} == {(onnx.TensorProto.UINT8, 0),
                                                                               (onnx.TensorProto.UINT8, 128)}
    unsigned = [n for n in products if any(zeros[made_by[i].input[2]][1] == 0 for i in n.input)]
    assert len(unsigned) == layers  # the softmax weights, one product per layer
    assert integer_matmuls(tmp_path / "onnx" / "model.onnx") == {"MatMul": 0, "integer": 8 * layers}
    export_model(source, "openvino", tmp_path / "ov", texts(), SETTINGS)
    ir = ov.Core().read_model(str(tmp_path / "ov" / "openvino_model.xml"))
    fed = [op for op in ir.get_ops() if op.get_type_name() == "MatMul" and not any(
        port.get_source_output().get_node().get_type_name() == "Constant" for port in op.inputs())
        and all(_quantized_input(port) for port in op.inputs())]
    assert len(fed) >= 2 * layers


def test_static_int8_leaves_trained_attention_products_to_their_own_ranges(models, tmp_path):
    """With every MatMul already quantized by us, NNCF adds no quantizer of its own on top of ours."""
    import openvino as ov

    model = products_model(models)
    source = bc.save(model, tmp_path / "qat", tiny_tokenizer())
    settings = ExportSettings(max_length=24, int8="static")
    record = export_model(source, "openvino", tmp_path / "out", texts(), settings, calibration=texts(50, seed=8))
    layers = model.config.num_hidden_layers
    assert record["verified"] and record["matmuls_with_own_ranges"] == 8 * layers  # 6 Linears, 2 products
    ir = ov.Core().read_model(str(tmp_path / "out" / "openvino_model.xml"))
    quantizers = [op for op in ir.get_ops() if op.get_type_name() == "FakeQuantize"]
    assert not [op for op in quantizers if op.input_value(0).get_node().get_type_name() == "FakeQuantize"]


def test_trained_attention_products_cannot_be_a_plain_checkpoint(models, tmp_path):
    source = bc.save(products_model(models), tmp_path / "qat", tiny_tokenizer())
    with pytest.raises(BertCompressError, match="cannot be a plain Transformers checkpoint: .*attention"):
        export_model(source, "transformers", tmp_path / "out", texts(), SETTINGS)
    assert not (tmp_path / "out").exists()


def test_an_untrained_product_quantizer_exports_as_nothing(models, tmp_path):
    """A range never trained (here: the softmax weights' reset) leaves that input in float, in torch and in
    the graph alike."""
    import onnx

    from bertcompress.methods.quantization.ranges import EmaRangeQuantizer

    model = products_model(models)
    for name, module in model.named_modules():
        if isinstance(module, EmaRangeQuantizer) and name.endswith("weights"):
            module.seen.fill_(False)
    source = bc.save(model, tmp_path / "qat", tiny_tokenizer())
    record = export_model(source, "onnx", tmp_path / "onnx", texts(), ExportSettings(max_length=24, optimize=False))
    graph = onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph
    zeros = zero_points(graph)
    unsigned = [n for n in graph.node if n.op_type == "QuantizeLinear" and zeros[n.input[2]][1] == 0]
    assert record["verified"] and not unsigned
