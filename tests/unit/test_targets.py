import pytest
import torch.nn as nn

from bertcompress.core.errors import BertCompressError
from bertcompress.core.targets import select_modules


def test_select_by_class_name_exact_name_and_regex(model):
    by_class = select_modules(model, ["Linear"], kinds=(nn.Linear,))
    assert "classifier" in by_class and "bert.encoder.layer.0.attention.self.query" in by_class
    exact = select_modules(model, ["bert.encoder.layer.1.output.dense"])
    assert list(exact) == ["bert.encoder.layer.1.output.dense"]
    regex = select_modules(model, [r"re:.*\.query"], kinds=(nn.Linear,))
    assert sorted(regex) == [f"bert.encoder.layer.{i}.attention.self.query" for i in range(2)]


def test_ignore_list_excludes(model):
    chosen = select_modules(model, ["Linear"], ignore=["re:.*classifier.*", "re:.*pooler.*"], kinds=(nn.Linear,))
    assert not any("classifier" in n or "pooler" in n for n in chosen)
    assert len(chosen) == 12


def test_no_match_is_a_clear_error(model):
    with pytest.raises(BertCompressError, match="targets: patterns.*match no Linear"):
        select_modules(model, ["re:.*nothing.*"], kinds=(nn.Linear,))


def test_invalid_regex_is_a_clear_error(model):
    with pytest.raises(BertCompressError, match="invalid regex"):
        select_modules(model, ["re:(("])
