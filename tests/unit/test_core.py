"""core/ pieces that every method leans on: one-line errors, byte snapshots, reports, the replacement
protocol and the registry's own checks (written from the mutants that survived the contract tests)."""
import types

import pydantic
import pytest
import torch
import torch.nn as nn

from bertcompress.core import modules, registry, task_types
from bertcompress.core.api import compress
from bertcompress.core.bytes import ByteSnapshot, stored_bytes
from bertcompress.core.config import MethodConfig
from bertcompress.core.errors import BertCompressError, describe_validation_error, first_line
from bertcompress.core.modules import ExportOptions, rebuild, replacement
from bertcompress.core.registry import config_type, register, registration_for
from bertcompress.core.report import StepReport
from bertcompress.core.targets import select_modules
from bertcompress.core.context import Context


# --- errors -------------------------------------------------------------------------------------------


def test_first_line_is_the_first_non_empty_line_or_the_type_name():
    assert first_line(ValueError("\n  first\nsecond\n")) == "first"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(ValueError("   ")) == "ValueError"
    assert first_line(ValueError("x" * 400)) == "x" * 300


class Shape(MethodConfig):
    method_name = "shape_for_errors"
    keep: list[int] = [1]
    ratio: float = 0.5

    @pydantic.model_validator(mode="after")
    def _not_both_empty(self):
        if not self.keep and self.ratio == 0:
            raise ValueError("keep something")
        return self


def _message(**fields) -> str:
    with pytest.raises(BertCompressError) as error:
        Shape(**fields)
    return str(error.value)


def test_a_validation_error_names_owner_field_path_and_value():
    assert _message(bogus=3) == "Shape.bogus: unknown field (got 3)"
    assert _message(keep=[1, "two"]).startswith("Shape.keep.1: Input should be a valid integer")
    assert _message(keep=[1, "two"]).endswith("(got 'two')")


def test_a_model_level_error_is_named_root_and_shows_no_dict():
    message = _message(keep=[], ratio=0)
    assert message.startswith("Shape.<root>: Value error, keep something")
    assert "got" not in message  # the input there is the whole dict: not worth a line


def test_several_problems_share_one_line():
    message = _message(keep=["a"], ratio="b")
    assert "\n" not in message
    assert message.count("; ") == 1 and message.index("Shape.keep.0") < message.index("; Shape.ratio")


def test_an_error_without_input_shows_none():
    class Fake:
        def errors(self):
            return [{"loc": ("a",), "msg": "missing", "type": "missing"}]

    assert describe_validation_error("Owner", Fake()) == "Owner.a: missing"


# --- bytes --------------------------------------------------------------------------------------------


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.Linear(8, 8), nn.ReLU()), nn.Linear(8, 2))


def test_replaced_names_the_outermost_new_modules_only():
    model = _net()
    snapshot = ByteSnapshot(model)
    assert snapshot.replaced(model) == []
    model[0] = nn.Sequential(nn.Linear(4, 8, bias=False))  # brings a child name the snapshot never saw
    model[1][0] = nn.Linear(8, 8)
    model[1] = nn.Sequential(model[1][0], nn.ReLU())  # outer and inner replaced: the outer counts
    assert snapshot.replaced(model) == ["0", "1"]


def test_replaced_bytes_compare_old_modules_with_their_replacements():
    model = _net()
    before = stored_bytes(model)
    snapshot = ByteSnapshot(model)
    assert snapshot.total == before
    model[2] = nn.Linear(8, 1)
    assert snapshot.replaced_bytes(model) == ((8 * 2 + 2) * 4, (8 + 1) * 4)


# --- report -------------------------------------------------------------------------------------------


def test_a_report_is_a_plain_dict_of_its_fields():
    report = StepReport(method="m", modules_changed=3, notes=["n"])
    found = report.to_dict()
    assert found["method"] == "m" and found["modules_changed"] == 3 and found["notes"] == ["n"]
    assert set(found) == {"method", "config", "seconds", "modules_changed", "bytes_before", "bytes_after",
                          "notes", "metrics"}
    found["notes"].append("later")
    assert report.notes == ["n"]  # a copy: writing the dict does not change the report


# --- registry -----------------------------------------------------------------------------------------


def test_a_config_without_a_name_cannot_register(scratch_registry):
    class Nameless(MethodConfig):
        pass

    with pytest.raises(TypeError, match="Nameless must set method_name"):
        register(Nameless)


def test_bytes_of_is_kept_and_checked(scratch_registry):
    class Counted(MethodConfig):
        method_name = "counted_by_replacement"

    def handler(model, config, ctx):
        return StepReport()

    with pytest.raises(ValueError, match="bytes_of: 'modules' is not 'model' or 'replaced_modules'"):
        register(Counted, bytes_of="modules")
    assert register(Counted, bytes_of="replaced_modules")(handler) is handler
    assert registration_for(Counted()).bytes_of == "replaced_modules"
    assert registration_for(Counted()).handler is handler
    assert config_type("counted_by_replacement") is Counted


# --- replacement protocol -----------------------------------------------------------------------------


@pytest.fixture
def scratch_replacements(monkeypatch):
    monkeypatch.setattr(modules, "_REPLACEMENTS", dict(modules._REPLACEMENTS))


def test_a_new_replacement_gets_the_default_protocol_and_loads_by_name(scratch_replacements):
    @replacement
    class Doubler(nn.Module):
        def forward(self, x):
            return 2 * x

        @classmethod
        def from_manifest(cls, entry):
            return cls()

    module = Doubler()
    assert module.export_standin(ExportOptions()) is module
    assert module.standin_is_exact(ExportOptions()) is True
    with pytest.raises(BertCompressError, match="Doubler has no stock torch equivalent"):
        module.export_standin(ExportOptions(plain=True))
    assert modules.is_replacement(module)
    assert isinstance(rebuild({"class": "Doubler"}), Doubler)
    assert replacement(Doubler) is Doubler  # the same class again is not a clash


def test_a_replacement_keeps_its_own_stand_in(scratch_replacements):
    stand_in = nn.Identity()

    @replacement
    class Own(nn.Module):
        def export_standin(self, options):
            return stand_in

        def standin_is_exact(self, options):
            return False

    assert Own().export_standin(ExportOptions()) is stand_in
    assert Own().standin_is_exact(ExportOptions()) is False


def test_exactness_follows_what_the_export_traces(scratch_replacements):
    """A container that stands in as itself leaves its children to their own stand-ins (and their
    exactness); a container swapped whole hides its children."""
    @replacement
    class Rounded(nn.Module):
        def export_standin(self, options):
            return nn.Identity()

        def standin_is_exact(self, options):
            return False

    @replacement
    class Container(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Rounded()

    @replacement
    class Whole(Container):
        def export_standin(self, options):
            return nn.Identity()

    options = ExportOptions()
    assert list(modules.standins(nn.Sequential(Container()), options)) == ["0.inner"]
    assert modules.standins_are_exact(nn.Sequential(Container()), options) is False
    assert list(modules.standins(nn.Sequential(Whole()), options)) == ["0"]
    assert modules.standins_are_exact(nn.Sequential(Whole()), options) is True
    assert modules.standins_are_exact(nn.Sequential(nn.Linear(2, 2)), options) is True


def test_a_stand_in_that_cannot_be_made_names_the_module(scratch_replacements):
    @replacement
    class Stubborn(nn.Module):
        def export_standin(self, options):
            raise BertCompressError("has no stand-in here")

    with pytest.raises(BertCompressError, match=r"^1\.0: has no stand-in here$"):
        modules.standins(nn.Sequential(nn.Linear(2, 2), nn.Sequential(Stubborn())), ExportOptions())


def test_a_runtime_model_declares_its_task_type():
    """ONNX Runtime and OpenVINO wrappers have no Transformers class name: their own `task_type` decides, and
    it wins over a class name too."""
    class OrtLikeModel(nn.Module):
        task_type = "token_classification"

    class BertForSequenceClassification(nn.Module):
        task_type = "embedding"

    assert task_types.task_type_of(OrtLikeModel()) == "token_classification"
    assert task_types.task_type_of(BertForSequenceClassification()) == "embedding"
    with pytest.raises(BertCompressError, match=r"^Mystery is not a model of a known task type \(classification, "):
        task_types.task_type_of(type("Mystery", (nn.Module,), {})())


def test_a_byte_snapshot_counts_every_enclosing_module():
    model = _net()
    snapshot = ByteSnapshot(model)
    assert snapshot.by_module[""] == snapshot.total == stored_bytes(model)
    for name, module in model.named_modules():
        assert snapshot.by_module[name] == stored_bytes(module), name


def test_a_linear_entry_rebuilds_the_same_shell():
    for bias in (True, False):
        entry = modules.linear_entry(nn.Linear(3, 5, bias=bias))
        assert entry == {"class": "Linear", "in_features": 3, "out_features": 5, "bias": bias}
        shell = rebuild(entry)
        assert type(shell) is nn.Linear and shell.weight.shape == (5, 3) and (shell.bias is not None) == bias


def test_an_unknown_module_class_or_task_type_is_named_with_what_is_offered():
    with pytest.raises(BertCompressError) as unknown_class:
        rebuild({"class": "Mystery"})
    assert str(unknown_class.value) == "manifest names module class 'Mystery', which this bertcompress does not know"
    with pytest.raises(BertCompressError) as unknown_type:
        task_types.check_task_type("bogus")
    assert str(unknown_type.value) == ("task type 'bogus' is not offered; use one of classification, "
                                       "question_answering, token_classification, embedding")
    assert task_types.check_task_type("embedding") == "embedding"


def test_frozen_stand_ins_copy_values_and_do_not_train():
    weight, bias = torch.randn(4, 3), torch.randn(4)
    linear = modules.frozen_linear(weight, bias)
    assert torch.equal(linear.weight, weight) and torch.equal(linear.bias, bias)
    assert not linear.weight.requires_grad and modules.frozen_linear(weight, None).bias is None
    table = torch.randn(6, 3, dtype=torch.float16)
    embedding = modules.frozen_embedding(table, padding_idx=2)
    assert embedding.weight.dtype == torch.float32 and not embedding.weight.requires_grad
    assert embedding.padding_idx == 2 and torch.equal(embedding.weight, table.float())


def test_an_unregistered_config_is_named(scratch_registry):
    class Stray(MethodConfig):
        method_name = "stray"

    with pytest.raises(BertCompressError, match="^no handler registered for Stray$"):
        registration_for(Stray())


def test_an_unknown_method_lists_the_known_ones_or_none(monkeypatch):
    monkeypatch.setattr(registry, "_BY_NAME", {"b": MethodConfig, "a": MethodConfig})
    with pytest.raises(BertCompressError, match=r"^unknown method 'c'; known methods: a, b$"):
        config_type("c")
    monkeypatch.setattr(registry, "_BY_NAME", {})
    with pytest.raises(BertCompressError, match=r"known methods: none$"):
        config_type("c")


def test_compress_fills_seconds_bytes_and_history(scratch_registry):
    class Halve(MethodConfig):
        method_name = "halve_for_core"

    @register(Halve)
    def halve(model, config, ctx):
        model[2] = nn.Linear(8, 1)
        return StepReport(modules_changed=1)

    model = _net()
    before = stored_bytes(model)
    report = compress(model, Halve())
    assert report.method == "halve_for_core" and report.config == {"method": "halve_for_core"}
    assert (report.bytes_before, report.bytes_after) == (before, stored_bytes(model))
    assert isinstance(report.seconds, float) and 0 <= report.seconds < 60
    assert report.seconds == round(report.seconds, 3)
    compress(model, Halve())
    assert model._bertcompress_history == [{"method": "halve_for_core"}] * 2


def test_a_quantizer_reports_the_bytes_of_the_modules_it_replaced(scratch_registry):
    class Swap(MethodConfig):
        method_name = "swap_for_core"

    @register(Swap, bytes_of="replaced_modules")
    def swap(model, config, ctx):
        model[0] = nn.Linear(4, 8, bias=False)
        return StepReport()

    report = compress(_net(), Swap())
    assert (report.bytes_before, report.bytes_after) == ((4 * 8 + 8) * 4, 4 * 8 * 4)


def test_checkpoints_live_under_the_workdir(tmp_path):
    assert Context().checkpoint_dir("step") is None
    assert Context(workdir=tmp_path).checkpoint_dir("step") == tmp_path / "step"


def test_mean_pool_averages_real_tokens_and_normalises():
    hidden = torch.tensor([[[3.0, 0.0], [1.0, 2.0], [100.0, 100.0]]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0]])
    pooled = task_types.mean_pool(hidden, mask)
    expected = torch.tensor([[2.0, 1.0]], dtype=torch.float64) / 5 ** 0.5
    assert pooled.dtype == torch.float64
    torch.testing.assert_close(pooled, expected)
    batch = task_types.mean_pool(torch.randn(3, 4, 5), torch.ones(3, 4, dtype=torch.long))
    torch.testing.assert_close(batch.norm(dim=-1), torch.ones(3))


def test_task_types_read_from_architectures():
    assert task_types.checkpoint_type(None) is None
    assert task_types.checkpoint_type(["BertModel"]) is None  # an encoder names no head
    assert task_types.checkpoint_type(["BertModel", "BertForQuestionAnswering"]) == "question_answering"
    config = types.SimpleNamespace(architectures=["BertForTokenClassification"])
    assert task_types.config_task_type(config) == "token_classification"
    assert task_types.config_task_type(types.SimpleNamespace()) == "classification"
    assert task_types.output_name("embedding") == "sentence_embedding"
    assert task_types.output_name("classification") == "logits"


def test_a_target_error_names_field_patterns_kinds_and_model():
    model = _net()
    with pytest.raises(BertCompressError, match=r"^keep: pattern\(s\) \['3'\] match no Linear/ReLU module in "
                                                r"Sequential$"):
        select_modules(model, ["3"], kinds=(nn.Linear, nn.ReLU), field="keep")
    with pytest.raises(BertCompressError, match=r"^skip: pattern\(s\) \['9'\] match no Linear module"):
        select_modules(model, ["0"], ["9"], kinds=(nn.Linear,), ignore_field="skip")
    with pytest.raises(BertCompressError, match=r"^keep: invalid regex 're:\('"):
        select_modules(model, ["re:("], field="keep")
    with pytest.raises(BertCompressError, match=r"^keep: patterns \['Linear'\] \(ignoring \['Linear'\]\) match "
                                                r"no Linear module in Sequential$"):
        select_modules(model, ["Linear"], ["Linear"], kinds=(nn.Linear,), field="keep")
    assert list(select_modules(model, ["Linear"], ["re:1\\..*"], kinds=(nn.Linear,))) == ["0", "2"]


def test_a_config_dict_is_plain_json():
    class Pair(MethodConfig):
        method_name = "pair_for_core"
        pair: tuple[int, int] = (1, 2)

    assert Pair().to_dict() == {"method": "pair_for_core", "pair": [1, 2]}  # a list, as JSON and YAML write it
