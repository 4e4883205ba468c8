import pytest

import bertcompress as bc
from bertcompress.core.registry import config_type, handler_for


def test_unknown_field_names_the_config_and_field():
    with pytest.raises(bc.BertCompressError, match=r"DynamicInt8\.bogus: unknown field"):
        bc.DynamicInt8(bogus=1)


def test_wrong_type_names_the_field():
    with pytest.raises(bc.BertCompressError, match=r"DynamicInt8\.embeddings"):
        bc.DynamicInt8(embeddings="maybe")


def test_registry_maps_names_and_types():
    assert config_type("dynamic_int8") is bc.DynamicInt8
    assert callable(handler_for(bc.DynamicInt8()))
    assert "dynamic_int8" in bc.registered()


def test_unknown_method_lists_known_ones():
    with pytest.raises(bc.BertCompressError, match="unknown method 'nope'.*dynamic_int8"):
        config_type("nope")


def test_configs_are_frozen_and_serialise():
    config = bc.DynamicInt8(embeddings=False)
    assert config.to_dict()["method"] == "dynamic_int8"
    assert config.to_dict()["embeddings"] is False
    with pytest.raises(Exception):
        config.embeddings = True
