"""core/ pieces that every method leans on: one-line errors, byte snapshots, reports, the replacement
protocol and the registry's own checks (written from the mutants that survived the contract tests)."""
import pydantic
import pytest
import torch.nn as nn

from bertcompress.core import modules
from bertcompress.core.bytes import ByteSnapshot, stored_bytes
from bertcompress.core.config import MethodConfig
from bertcompress.core.errors import BertCompressError, describe_validation_error, first_line
from bertcompress.core.modules import ExportOptions, rebuild, replacement
from bertcompress.core.registry import config_type, register, registration_for
from bertcompress.core.report import StepReport


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
