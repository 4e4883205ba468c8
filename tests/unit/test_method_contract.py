"""Every registered method passes the same contract on every tiny model family, one test per property
(applies, outputs finite, smaller, saves, reloads identically, config round-trips), so that a failure
names what broke. Each method runs once per family; the property tests share that run."""
import copy
import json
from functools import cached_property
from pathlib import Path

import pytest
import torch

import bertcompress as bc
from bertcompress.core.errors import BertCompressError
from bertcompress.core.registry import config_from_dict
from bertcompress.core.task_types import auto_class, prediction
from bertcompress.export import ExportSettings, export_model
from bertcompress.model_dir import COMPRESSED_WEIGHTS, WEIGHTS
from bertcompress.evaluation.size import size_on_disk, stored_bytes
from tests.conftest import FAMILIES, random_batch, tiny_model, toy_task

# One entry per registered method: the config the contract runs. A new method must add itself here.
CONTRACT = {
    "dynamic_int8": bc.DynamicInt8(),
    "distillation": bc.Distillation(keep=1, max_steps=3, hidden_mse_weight=1, attention_mse_weight=1, pkd_weight=1),
    "head_pruning": bc.HeadPruning(fraction=0.5, recovery_epochs=0.2),
    "layerdrop": bc.LayerDrop(max_steps=3, keep=1),
    "magnitude_pruning": bc.MagnitudePruning(sparsity=0.9, schedule="gradual", max_steps=3),
    "movement_pruning": bc.MovementPruning(sparsity=0.9, max_steps=4, prune_every=1),
    "rpp": bc.ReweightedProximalPruning(sparsity=0.8, max_steps=3),
    "l0_heads": bc.L0HeadGates(target_heads=4, max_steps=3),
    "flop": bc.FLOP(target_density=0.4, max_steps=3),
    "fixed_attention": bc.FixedAttention(learnable_heads=1, max_steps=3),
    "layer_removal": bc.LayerRemoval(keep=1),
    "ffn_pruning": bc.FFNPruning(fraction=0.5, importance="magnitude", iterations=2),
    "naive_ptq": bc.NaivePTQ(weight_bits=4, granularity="group", group_size=16, embeddings=True),
    "q8bert_qat": bc.Q8BertQAT(max_steps=3),
    "qbert_mixed_precision": bc.QBertMixedPrecision(group_size=16, batches=1, batch_size=8, iterations=3),
    "quant_noise": bc.QuantNoise(scheme="int4", max_steps=3, block_size=4),  # iPQ: test_quant_noise.py
    "vocabulary_pruning": bc.VocabularyPruning(),
}
METHODS = sorted(CONTRACT)


class Outcome:
    """One method applied to one tiny model, with what the property tests compare against."""

    def __init__(self, method: str, family: str, tokenizer, directory: Path):
        family, _, task_type = family.partition(":")
        self.task_type = task_type or "classification"
        task = toy_task(self.task_type)
        self.model = tiny_model(family, num_labels=max(task.num_labels, 2), task_type=self.task_type)
        self.batch, self.directory = random_batch(), directory
        self.tokenizer, self.method = tokenizer, method
        self.plain_class = auto_class(self.task_type)
        ctx = bc.Context(task=task, tokenizer=tokenizer, teacher=copy.deepcopy(self.model),
                         train=bc.TrainConfig(batch_size=8, max_length=16))
        self.bytes_before, self.disk_before = stored_bytes(self.model), size_on_disk(self.model)["weights"]
        self.report = bc.compress(self.model, CONTRACT[method], ctx)

    @cached_property
    def logits(self) -> torch.Tensor:
        return self.predict(self.model)

    def predict(self, model) -> torch.Tensor:
        """The model's prediction tensor (logits; sentence vectors for embedders) on the batch."""
        with torch.no_grad():
            return prediction(self.task_type, model(**self.batch), self.batch["attention_mask"])

    @cached_property
    def saved(self) -> Path:
        return bc.save(self.model, self.directory / "m", self.tokenizer)


@pytest.fixture(scope="module")
def outcomes() -> dict:
    return {}


@pytest.fixture
def outcome(method, family, outcomes, tokenizer, tmp_path_factory) -> Outcome:
    if (method, family) not in outcomes:
        outcomes[method, family] = Outcome(method, family, tokenizer, tmp_path_factory.mktemp(f"{method}-{family}"))
    return outcomes[method, family]


# every family as a classifier, and the other task types on BERT ("family:task_type")
SUBJECTS = (*FAMILIES, "bert:embedding", "bert:question_answering", "bert:token_classification")


def each_method_and_family(test):
    """Run a property test for every method on every subject (ids read `method-family[:task type]`)."""
    return pytest.mark.parametrize("family", SUBJECTS)(pytest.mark.parametrize("method", METHODS)(test))


def test_every_registered_method_is_in_the_contract_table():
    assert set(CONTRACT) == set(bc.registered())


@pytest.mark.parametrize("method", METHODS)
def test_config_round_trips_through_its_dict(method):
    config = CONTRACT[method]
    data = config.to_dict()
    again = config_from_dict(data)
    assert type(again) is type(config) and again == config and again.to_dict() == data


@each_method_and_family
def test_applies(outcome, method):
    report = outcome.report
    assert report.method == method and report.config == CONTRACT[method].to_dict()
    assert report.modules_changed > 0
    assert outcome.model._bertcompress_history[-1]["method"] == method


@each_method_and_family
def test_outputs_stay_finite(outcome):
    assert torch.isfinite(outcome.logits).all()


@each_method_and_family
def test_is_smaller(outcome):
    assert outcome.report.bytes_after < outcome.report.bytes_before
    assert stored_bytes(outcome.model) < outcome.bytes_before
    assert size_on_disk(outcome.model)["weights"] < outcome.disk_before


@each_method_and_family
def test_saves(outcome):
    names = {p.name for p in outcome.saved.iterdir()}
    assert {"manifest.json", "config.json"} <= names and len(names & {WEIGHTS, COMPRESSED_WEIGHTS}) == 1


@each_method_and_family
def test_plain_transformers_loads_it_exactly_or_refuses(outcome):
    """Under the standard weights name only what the stock class holds exactly; anything else is refused
    (no file it reads) instead of loading with random layers."""
    if (outcome.saved / WEIGHTS).exists():
        plain = outcome.plain_class.from_pretrained(outcome.saved).eval()
        torch.testing.assert_close(outcome.predict(plain), outcome.logits)
    else:
        with pytest.raises(OSError, match="model.safetensors"):
            outcome.plain_class.from_pretrained(outcome.saved)


@each_method_and_family
def test_reloads_identically(outcome, method):
    reloaded = bc.load(outcome.saved)
    assert torch.equal(outcome.predict(reloaded), outcome.logits)
    assert reloaded._bertcompress_history[-1]["method"] == method


# head counts that differ from the config's (or replaced attention) have no plain Transformers equivalent
NOT_PLAIN = {"head_pruning", "l0_heads", "fixed_attention"}
EXPORT = ExportSettings(max_length=16)


@each_method_and_family
def test_exports_to_plain_transformers_exactly_or_names_the_formats_that_can(outcome, method, tmp_path):
    examples = toy_task(outcome.task_type).split("test")
    if method in NOT_PLAIN:
        with pytest.raises(BertCompressError, match="--to onnx or --to openvino"):
            export_model(outcome.saved, "transformers", tmp_path / "plain", examples, EXPORT)
        assert not (tmp_path / "plain").exists()
        return
    record = export_model(outcome.saved, "transformers", tmp_path / "plain", examples, EXPORT)
    assert record["verified"] and record["examples"] == len(examples)
    got = outcome.predict(outcome.plain_class.from_pretrained(tmp_path / "plain").eval())
    if record["exact"]:
        torch.testing.assert_close(got, outcome.logits, atol=1e-4, rtol=0)
    else:  # dequantized weights without run-time activation rounding: close, not equal
        assert (got - outcome.logits).abs().max() < 0.05


# every method as a classifier; for the other task types the methods whose graphs differ in kind (int8
# operators, removed heads, packed weights, a smaller vocabulary): the graph's head is the only other change
ONNX_BY_TYPE = [("bert", m) for m in METHODS] + [
    (f"bert:{task_type}", m) for task_type in ("embedding", "question_answering", "token_classification")
    for m in ("dynamic_int8", "head_pruning", "naive_ptq", "vocabulary_pruning")]


@pytest.mark.slow
@pytest.mark.parametrize("family, method", ONNX_BY_TYPE)
def test_exports_to_onnx_and_verifies(outcome, tmp_path):
    record = export_model(outcome.saved, "onnx", tmp_path / "onnx", toy_task(outcome.task_type).split("test"),
                          EXPORT)
    assert record["verified"] and (tmp_path / "onnx" / "model.onnx").exists()
    assert json.loads((tmp_path / "onnx" / "export.json").read_text())["max_abs_logit_diff"] == \
        record["max_abs_logit_diff"]
