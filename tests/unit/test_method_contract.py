"""Every registered method passes the same contract on every tiny model family."""
import pytest
import torch

import bertcompress as bc
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
}


def test_every_registered_method_is_in_the_contract_table():
    assert set(CONTRACT) == set(bc.registered())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", sorted(CONTRACT))
def test_method_contract(method, family, tmp_path, tokenizer):
    import copy

    model = tiny_model(family)
    ctx = bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=copy.deepcopy(model),
                     train=bc.TrainConfig(batch_size=8, max_length=16))
    batch = random_batch()
    before_bytes, before_disk = stored_bytes(model), size_on_disk(model)["weights"]
    report = bc.compress(model, CONTRACT[method], ctx)
    assert report.method == method and report.modules_changed > 0
    assert report.bytes_after < report.bytes_before
    with torch.no_grad():
        logits = model(**batch).logits
    assert torch.isfinite(logits).all()
    assert stored_bytes(model) < before_bytes
    assert size_on_disk(model)["weights"] < before_disk
    bc.save(model, tmp_path / "m")
    reloaded = bc.load(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, logits)
    assert reloaded._bertcompress_history[-1]["method"] == method
