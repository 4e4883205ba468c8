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
    with pytest.raises(BertCompressError, match=r"targets: pattern\(s\) \['re:\.\*nothing\.\*'\] match no Linear"):
        select_modules(model, ["re:.*nothing.*"], kinds=(nn.Linear,))


def test_a_target_that_matches_nothing_is_named_even_when_others_match(model):
    with pytest.raises(BertCompressError, match=r"targets: pattern\(s\) \['re:.*\.qurey'\] match no Linear"):
        select_modules(model, [r"re:.*\.query", r"re:.*\.qurey"], kinds=(nn.Linear,))


def test_an_ignore_pattern_that_matches_nothing_is_named_unless_it_may_miss(model):
    with pytest.raises(BertCompressError, match=r"ignore: pattern\(s\) \['poolr'\] match no Linear"):
        select_modules(model, ["Linear"], ignore=["classifier", "poolr"], kinds=(nn.Linear,))
    chosen = select_modules(model, ["Linear"], ignore=["classifier", "poolr"], kinds=(nn.Linear,), may_miss=["poolr"])
    assert "classifier" not in chosen and "bert.pooler.dense" in chosen


def test_a_pattern_matching_only_other_kinds_counts_as_unmatched(model):
    with pytest.raises(BertCompressError, match=r"\['BertLayer'\] match no Linear"):
        select_modules(model, ["BertLayer", "Linear"], kinds=(nn.Linear,))


def test_invalid_regex_is_a_clear_error(model):
    with pytest.raises(BertCompressError, match="invalid regex"):
        select_modules(model, ["re:(("])


def test_methods_name_their_unmatched_patterns_but_not_the_default_ignore(model):
    import bertcompress as bc
    from bertcompress.methods.common import chosen_linears

    assert len(chosen_linears(model, bc.DynamicInt8())) == 12
    with pytest.raises(BertCompressError, match=r"dynamic_int8\.targets: pattern\(s\) \['re:.*\.vaule'\]"):
        chosen_linears(model, bc.DynamicInt8(targets=[r"re:.*\.query", r"re:.*\.vaule"]))
    with pytest.raises(BertCompressError, match=r"dynamic_int8\.ignore: pattern\(s\) \['classifer'\]"):
        chosen_linears(model, bc.DynamicInt8(targets=["Linear"], ignore=["re:.*classifier.*", "classifer"]))
    headless = nn.ModuleDict({"bert": model.bert})  # no classifier: the default ignore pattern matches nothing
    headless.config = model.config
    assert len(chosen_linears(headless, bc.DynamicInt8())) == 12
