"""ONNX export: fp32 and int8 graphs checked against PyTorch and run in onnxruntime."""
import copy
from collections import Counter

import pytest
import torch
import torch.nn as nn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")  # the torch.export-based exporter needs it

from transformers import BertConfig, BertForSequenceClassification  # noqa: E402

import bertcompress as bc  # noqa: E402
from bertcompress.core.modules import ExportOptions  # noqa: E402
from bertcompress.core.targets import set_submodule  # noqa: E402
from bertcompress.data.batching import Encoded  # noqa: E402
from bertcompress.evaluation import onnx_export as ox  # noqa: E402
from bertcompress.evaluation.latency import benchmark_many  # noqa: E402
from bertcompress.evaluation.metrics import predict  # noqa: E402
from bertcompress.methods.pruning.sparse_linear import SparseLinear  # noqa: E402
from bertcompress.methods.quantization.int8_modules import DynamicInt8Linear, Int8Embedding  # noqa: E402
from bertcompress.methods.quantization.pq import PQEmbedding, PQLinear  # noqa: E402
from bertcompress.surgery.linear import LowRankLinear, factorize  # noqa: E402
from tests.conftest import FAMILIES, random_batch, tiny_model, toy_task  # noqa: E402

pytestmark = pytest.mark.slow  # every export takes a few seconds


def weight_heavy_bert() -> nn.Module:
    """Big enough that weights, not graph structure, dominate the file size."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=500, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=256, max_position_embeddings=64, num_labels=2)
    return BertForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """fp32 and DynamicInt8 versions of the same model, each exported once for the tests below."""
    directory = tmp_path_factory.mktemp("onnx")
    fp32 = weight_heavy_bert()
    int8 = copy.deepcopy(fp32)
    bc.compress(int8, bc.DynamicInt8(), bc.Context())
    return {"fp32": fp32, "int8": int8, "batch": random_batch(8, 16, vocab=500, seed=3),
            "fp32_path": ox.export_onnx(fp32, directory / "fp32.onnx", seq_len=16),
            "int8_path": ox.export_onnx(int8, directory / "int8.onnx", seq_len=16)}


def int8_linears(model: nn.Module) -> dict[str, DynamicInt8Linear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, DynamicInt8Linear)}


def initializers(path) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in onnx.load(str(path)).graph.initializer}


def logits(model: nn.Module, batch: dict) -> torch.Tensor:
    with torch.inference_mode():
        return model(**batch).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_fp32_export_matches_pytorch_at_other_shapes(family, tmp_path):
    model = tiny_model(family)
    path = ox.export_onnx(model, tmp_path / "model.onnx", seq_len=16)
    takes_types = family != "distilbert"
    assert ("token_type_ids" in ox.OrtModel(path, model.config).names) == takes_types
    # other batch sizes and a longer sequence than traced: the axes really are dynamic
    for batch in (random_batch(), random_batch(batch_size=5, length=23, seed=2)):
        if takes_types:
            batch["token_type_ids"] = torch.randint(0, 2, batch["input_ids"].shape)
        assert ox.max_logit_difference(model, path, batch) <= 1e-4
    assert not [p for p in tmp_path.iterdir() if p.name != "model.onnx"]  # no temporary file left


def test_int8_export_stores_int8_weights_and_is_smaller(exported):
    tensors = initializers(exported["int8_path"])
    for name, module in int8_linears(exported["int8"]).items():
        weight = tensors[f"model.{name}.weight_t"]  # the transposed [in, out] matrix MatMulInteger takes
        assert weight.data_type == onnx.TensorProto.UINT8
        assert list(weight.dims) == [module.in_features, module.out_features]
    table = tensors["model.bert.embeddings.word_embeddings.weight_int8"]
    assert isinstance(exported["int8"].bert.embeddings.word_embeddings, Int8Embedding)
    assert table.data_type == onnx.TensorProto.INT8
    ops = Counter(node.op_type for node in onnx.load(str(exported["int8_path"])).graph.node)
    assert ops["MatMulInteger"] == len(int8_linears(exported["int8"])) == 12
    fp32_bytes, int8_bytes = exported["fp32_path"].stat().st_size, exported["int8_path"].stat().st_size
    # measured 0.34: int8 encoder weights and embeddings; pooler, head, positions and LayerNorms stay fp32
    assert int8_bytes < 0.4 * fp32_bytes


def test_onnxruntime_runs_int8_gemm_kernels(exported, tmp_path):
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(exported["int8_path"]), options, providers=["CPUExecutionProvider"])
    ops = Counter(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node)
    # each int8 Linear becomes one of ORT's fused int8 GEMM ops; none is left as an unfused MatMulInteger
    assert ops["DynamicQuantizeMatMul"] + ops["MatMulIntegerToFloat"] == len(int8_linears(exported["int8"]))
    assert ops["MatMulInteger"] == 0


def test_int8_onnx_logits_match_the_int8_arithmetic_and_pytorch(exported):
    model, batch = exported["int8"], exported["batch"]
    onnx_logits = ox.OrtModel(exported["int8_path"], model.config)(**batch).logits
    with ox.onnx_view(model) as view:
        emulated = logits(view, batch)  # the graph's integer arithmetic, in float64 PyTorch
    # Same integers, same scales: only the fp32 ops around them may round differently (measured 2e-8),
    # while a wrong scale, zero point or transpose moves these logits (scale ~0.08) by 1e-3 or more.
    assert (onnx_logits - emulated).abs().max() <= 1e-5
    # PyTorch's FBGEMM kernel quantizes activations to 7 bits, ORT to 8, from the same int8 weights: each
    # is a noisy copy of the fp32 model, so their gap must stay within PyTorch int8's own error vs fp32
    # (measured: gap 1.2e-4, error 5.4e-4).
    torch_int8, fp32 = logits(model, batch), logits(exported["fp32"], batch)
    assert (onnx_logits - torch_int8).abs().max() <= (torch_int8 - fp32).abs().max()
    assert isinstance(model.bert.encoder.layer[0].attention.self.query, DynamicInt8Linear)  # restored


def test_int8_graph_is_exact_where_signed_int8_kernels_would_saturate(tmp_path):
    torch.manual_seed(0)
    int8 = DynamicInt8Linear.from_linear(nn.Linear(64, 96))  # uniform init: many weights near +-127
    module = int8.export_standin(ExportOptions()).eval()  # what the exporter traces in its place
    x = torch.randn(3, 7, 64) * 3
    x[..., ::2] += 6  # activation codes far above 127 in adjacent pairs: where AVX2 u8s8 int16 sums saturate
    path = tmp_path / "linear.onnx"
    with ox._quiet_exporter():
        torch.onnx.export(module, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=True,
                          external_data=False, verbose=False)
    session = ox.ort_session(path)
    expected = module(x)
    got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()  # measured: 0; saturated: ~25%
    # and the arithmetic is int8 dynamic quantization of the same layer (8-bit vs PyTorch's 7-bit activations)
    assert (expected - int8(x)).abs().max() <= 0.05 * expected.abs().max()


def test_ort_dynamic_int8_baseline_is_smaller_and_runs(exported, tmp_path):
    path = ox.ort_dynamic_int8(exported["fp32_path"], tmp_path / "ort_int8.onnx")
    assert path.stat().st_size < 0.4 * exported["fp32_path"].stat().st_size  # measured 0.28
    assert Counter(n.op_type for n in onnx.load(str(path)).graph.node)["MatMulInteger"] >= 12
    batch = exported["batch"]
    got = ox.OrtModel(path, exported["fp32"].config)(**batch).logits
    fp32 = logits(exported["fp32"], batch)
    assert got.shape == fp32.shape and torch.isfinite(got).all()
    # loose: ORT also quantizes attention products and may saturate u8s8 on AVX2 (measured 2% of the range)
    assert (got - fp32).abs().max() <= 0.1 * fp32.abs().max()


def test_packed_modules_export_as_dequantized_fp32(tmp_path, tokenizer):
    model = tiny_model()
    ctx = bc.Context(task=toy_task(), tokenizer=tokenizer)
    config = bc.NaivePTQ(weight_bits=4, activation_bits=8, granularity="group", group_size=16, embeddings=True,
                         calibration_examples=16)
    bc.compress(model, config, ctx)
    path = ox.export_onnx(model, tmp_path / "packed.onnx", seq_len=16)
    # fixed-range input fake quantization and dequantized weights: the same fp32 arithmetic as PyTorch
    assert ox.max_logit_difference(model, path, random_batch()) <= 1e-4


def test_every_replacement_exports_through_its_stand_in_or_as_itself(tmp_path):
    model = tiny_model()
    layer = "bert.encoder.layer.0"
    query = model.get_submodule(f"{layer}.attention.self.query")
    with torch.no_grad():
        query.weight[query.weight.abs() < 0.05] = 0  # some zeros for the sparse storage
    replacements = {
        f"{layer}.attention.self.query": SparseLinear.from_linear(query),  # stand-in: dense Linear
        f"{layer}.attention.self.key": PQLinear.from_linear(model.get_submodule(f"{layer}.attention.self.key"), 4, 8),
        f"{layer}.intermediate.dense": factorize(model.get_submodule(f"{layer}.intermediate.dense"), 8),  # itself
        "bert.embeddings.word_embeddings": PQEmbedding.from_embedding(model.bert.embeddings.word_embeddings, 4, 8),
    }
    for name, module in replacements.items():
        set_submodule(model, name, module)
    with ox.onnx_view(model) as view:
        traced = {name: type(view.get_submodule(name)) for name in replacements}
    assert traced[f"{layer}.intermediate.dense"] is LowRankLinear  # no stand-in of its own: the default
    assert traced[f"{layer}.attention.self.query"] is nn.Linear and traced["bert.embeddings.word_embeddings"] is nn.Embedding
    assert all(type(model.get_submodule(name)) is type(module) for name, module in replacements.items())  # restored
    path = ox.export_onnx(model, tmp_path / "replaced.onnx", seq_len=16)
    assert ox.max_logit_difference(model, path, random_batch()) <= 1e-4


def test_ort_model_works_with_predict_and_benchmark(exported):
    fp32 = exported["fp32"]
    wrapped = ox.OrtModel(exported["fp32_path"], fp32.config, threads=1)
    generator = torch.Generator().manual_seed(0)
    lengths = [3, 9, 5, 12, 7, 4]
    data = Encoded(ids=[torch.randint(5, 500, (n,), generator=generator).tolist() for n in lengths],
                   type_ids=[[0] * (n // 2) + [1] * (n - n // 2) for n in lengths], labels=[0, 1] * 3, pad_id=0)
    assert predict(wrapped, data, batch_size=4) == predict(fp32, data, batch_size=4)
    results = benchmark_many({"torch": fp32, "onnx": wrapped}, batch_sizes=(1, 2), seq_len=8, repeats=2, warmup=1)
    for batch_size in (1, 2):
        assert results["onnx"][f"batch_{batch_size}"]["median_ms"] > 0


def test_failed_export_leaves_no_file_and_restores_the_model(tmp_path, monkeypatch):
    model = tiny_model()
    bc.compress(model, bc.DynamicInt8(), bc.Context())

    def broken_export(*args, **kwargs):
        assert not int8_linears(model)  # stand-ins are in place during export
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with pytest.raises(RuntimeError, match="exporter failed"):
        ox.export_onnx(model, tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []
    assert len(int8_linears(model)) == 12 and not model.training


def test_ort_sessions_do_not_spin_idle_threads(exported):
    # spinning ORT workers slowed PyTorch models timed in the same process 2.5x at batch 1
    options = ox.ort_session(exported["fp32_path"], threads=2).get_session_options()
    for pool in ("intra_op", "inter_op"):
        assert options.get_session_config_entry(f"session.{pool}.allow_spinning") == "0"
