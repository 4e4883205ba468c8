import pydantic
import pytest

import bertcompress as bc
from bertcompress.core.config import MethodConfig
from bertcompress.core.modules import replacement
from bertcompress.core.registry import config_from_dict, config_type, handler_for, register
from bertcompress.methods.quantization.dynamic import apply_dynamic_int8


def test_unknown_field_names_the_config_and_field():
    with pytest.raises(bc.BertCompressError, match=r"DynamicInt8\.bogus: unknown field"):
        bc.DynamicInt8(bogus=1)


def test_wrong_type_names_the_field():
    with pytest.raises(bc.BertCompressError, match=r"DynamicInt8\.embeddings"):
        bc.DynamicInt8(embeddings="maybe")


def test_registry_maps_names_and_types():
    assert config_type("dynamic_int8") is bc.DynamicInt8
    assert handler_for(bc.DynamicInt8()) is apply_dynamic_int8
    assert bc.registered()["dynamic_int8"] is bc.DynamicInt8


def test_unknown_method_lists_known_ones():
    with pytest.raises(bc.BertCompressError, match="unknown method 'nope'.*dynamic_int8"):
        config_type("nope")


def test_configs_are_frozen_and_serialise():
    config = bc.DynamicInt8(embeddings=False)
    assert config.to_dict()["method"] == "dynamic_int8"
    assert config.to_dict()["embeddings"] is False
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        config.embeddings = True
    assert config_from_dict(config.to_dict()) == config


def test_a_method_name_registered_twice_is_rejected(scratch_registry):
    class Mine(MethodConfig):
        method_name = "dynamic_int8"

    with pytest.raises(ValueError, match="method name 'dynamic_int8' is already registered by DynamicInt8"):
        register(Mine)


def test_a_config_type_registered_twice_is_rejected(scratch_registry):
    class Once(MethodConfig):
        method_name = "registered_once"

    register(Once)(lambda model, config, ctx: None)
    with pytest.raises(ValueError, match="Once already has a handler"):
        register(Once)


def test_a_replacement_class_name_registered_twice_is_rejected():
    class DynamicInt8Linear:  # same name as the real one: manifests could not tell them apart
        pass

    with pytest.raises(ValueError, match="replacement module named DynamicInt8Linear is already registered"):
        replacement(DynamicInt8Linear)
