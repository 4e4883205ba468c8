"""Distillation: layer maps, the intermediate losses, students cut from the teacher, and training."""
import copy

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

import bertcompress as bc
from bertcompress.core.errors import BertCompressError
from bertcompress.training import distill_losses as losses
from bertcompress.methods.distillation.mapping import layer_map
from bertcompress.surgery import prune_heads
from tests.conftest import TINY, random_batch, tiny_model, toy_task


def bert(layers: int = 4, hidden: int = 32, heads: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    config = BertConfig(num_labels=2, **{**TINY, "num_hidden_layers": layers, "hidden_size": hidden,
                                         "num_attention_heads": heads})
    return BertForSequenceClassification(config).eval()


def context(teacher, tokenizer) -> bc.Context:
    return bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=teacher,
                      train=bc.TrainConfig(batch_size=8, max_length=16))


# ---- layer maps -----------------------------------------------------------------------------------------

def test_layer_maps():
    assert layer_map("uniform", 3, 6) == [2, 4, 6]
    assert layer_map("uniform", 4, 12) == [3, 6, 9, 12]
    assert layer_map("last", 3, 6) == [4, 5, 6]
    assert layer_map([1, 3, 6], 3, 6) == [1, 3, 6]


@pytest.mark.parametrize("mapping,student,teacher,message", [
    ([1, 2], 3, 6, "exactly one per student layer"), ([1, 2, 7], 3, 6, r"\[7\] do not exist; allowed 1..6"),
    ([0, 2, 4], 3, 6, r"\[0\] do not exist"), ("middle", 3, 6, "not one of uniform, last"),
    ("uniform", 7, 6, "more than the teacher's 6")])
def test_bad_layer_maps_name_the_problem(mapping, student, teacher, message):
    with pytest.raises(BertCompressError, match=message):
        layer_map(mapping, student, teacher)


# ---- losses ---------------------------------------------------------------------------------------------

def test_hidden_losses_ignore_padding_and_cosine_ignores_scale():
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(2, 5, 8, generator=generator), torch.randn(2, 5, 8, generator=generator)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    changed = student.clone()
    changed[0, 3:] += 100  # padded positions
    for loss in (losses.hidden_mse, losses.hidden_cosine):
        assert torch.allclose(loss(student, teacher, mask), loss(changed, teacher, mask))
        assert loss(teacher, teacher, mask) < 1e-6 < loss(student, teacher, mask)
    assert torch.allclose(losses.hidden_cosine(3 * student, teacher, mask), losses.hidden_cosine(student, teacher, mask))
    assert torch.allclose(losses.patient_kd(5 * student[:, 0], teacher[:, 0]), losses.patient_kd(student[:, 0], teacher[:, 0]))


def test_attention_loss_compares_head_means_when_head_counts_differ():
    generator = torch.Generator().manual_seed(0)
    teacher = torch.softmax(torch.randn(2, 4, 5, 5, generator=generator), -1)
    mask = torch.ones(2, 5)
    same_mean = teacher.mean(1, keepdim=True).expand(2, 2, 5, 5)
    assert losses.attention_mse(same_mean, teacher, mask) < 1e-9
    assert losses.attention_mse(teacher.flip(1), teacher, mask) > 1e-4  # same heads, other order: differs


# ---- students and training ------------------------------------------------------------------------------

def test_student_keeps_the_chosen_teacher_layers_with_their_weights(tokenizer):
    teacher = bert(layers=4)
    student = copy.deepcopy(teacher)
    report = bc.compress(student, bc.Distillation(keep=2, max_steps=1, learning_rate=1e-9), context(teacher, tokenizer))
    assert report.metrics["kept_teacher_layers"] == [1, 3]
    assert len(student.bert.encoder.layer) == 2 and report.bytes_after < report.bytes_before
    torch.testing.assert_close(student.bert.encoder.layer[1].output.dense.weight,
                               teacher.bert.encoder.layer[3].output.dense.weight, atol=1e-6, rtol=0)


def test_explicit_student_layers_and_labels_only_need_no_teacher(tokenizer):
    model = bert(layers=4)
    ctx = context(None, tokenizer)
    report = bc.compress(model, bc.Distillation(student_layers=[0, 2], soft_weight=0, hard_weight=1, max_steps=2), ctx)
    assert report.metrics["kept_teacher_layers"] == [0, 2] and report.metrics["losses"] == ["hard"]


def hidden_gap(student, teacher, batch, mapping) -> float:
    with torch.no_grad():
        s = student(**batch, output_hidden_states=True).hidden_states
        t = teacher(**batch, output_hidden_states=True).hidden_states
    return sum(float(losses.hidden_mse(s[j], t[m], batch["attention_mask"])) for j, m in enumerate(mapping, 1))


def test_hidden_and_attention_losses_pull_the_student_towards_the_teacher(tokenizer):
    teacher, student = bert(layers=4, seed=1), bert(layers=2, seed=7)  # unrelated weights: a real gap
    before = copy.deepcopy(student)
    config = bc.Distillation(soft_weight=0.0, hard_weight=1e-6, hidden_mse_weight=1.0, attention_mse_weight=1.0,
                             max_steps=30, learning_rate=1e-3)
    batch = random_batch(4, 12)
    report = bc.compress(student, config, context(teacher, tokenizer))
    assert report.metrics["layer_map"] == [2, 4]
    assert hidden_gap(student, teacher, batch, [2, 4]) < 0.75 * hidden_gap(before, teacher, batch, [2, 4])
    assert student.config._attn_implementation == teacher.config._attn_implementation == "sdpa"  # restored


def test_a_narrower_student_learns_through_a_projection_that_is_dropped_after(tokenizer, tmp_path):
    teacher = bert(layers=2, hidden=32)
    student = bert(layers=2, hidden=16, heads=2, seed=2)
    config = bc.Distillation(hidden_mse_weight=1.0, embedding_mse_weight=1.0, pkd_weight=1.0,
                             hidden_cosine_weight=1.0, attention_mse_weight=1.0, max_steps=3)
    bc.compress(student, config, context(teacher, tokenizer))
    assert not hasattr(student, "distillation_projection")
    batch = random_batch()
    bc.save(student, tmp_path / "s")
    with torch.no_grad():
        assert torch.equal(bc.load(tmp_path / "s")(**batch).logits, student(**batch).logits)
    with pytest.raises(BertCompressError, match="Distillation.projection: the student's hidden size 16"):
        bc.compress(bert(layers=2, hidden=16, heads=2), config.model_copy(update={"projection": False}),
                    context(teacher, tokenizer))


def test_matching_attention_heads_is_checked_per_mapped_layer(tokenizer):
    teacher = tiny_model()
    student = copy.deepcopy(teacher)
    prune_heads(student, {0: [1]})
    config = bc.Distillation(attention_mse_weight=1.0, attention_heads="match", max_steps=1)
    with pytest.raises(BertCompressError, match="attention_heads: student layer 1 has 3 heads and teacher layer 1 has 4"):
        bc.compress(student, config, context(teacher, tokenizer))
    bc.compress(student, config.model_copy(update={"attention_heads": "average"}), context(teacher, tokenizer))


@pytest.mark.parametrize("bad,message", [
    ({"temperature": 0}, "Distillation.temperature"), ({"soft_weight": 0, "hard_weight": 0}, "at least one"),
    ({"hidden_mse_weight": -1}, "Distillation.hidden_mse_weight"), ({"keep": 2, "student_layers": [0]}, "not both"),
    ({"layer_map": "middle"}, "Distillation.layer_map")])
def test_bad_config_names_the_field(bad, message):
    with pytest.raises(BertCompressError, match=message):
        bc.Distillation(**bad)


def test_bad_layer_map_and_missing_teacher_fail_before_training(tokenizer):
    teacher = bert(layers=4)
    with pytest.raises(BertCompressError, match=r"layer_map: teacher layers \[5\] do not exist"):
        bc.compress(copy.deepcopy(teacher), bc.Distillation(keep=2, layer_map=[2, 5], hidden_mse_weight=1),
                    context(teacher, tokenizer))
    with pytest.raises(BertCompressError, match="need a teacher"):
        bc.compress(copy.deepcopy(teacher), bc.Distillation(max_steps=1), context(None, tokenizer))
    with pytest.raises(BertCompressError, match="student_layers"):
        bc.compress(copy.deepcopy(teacher), bc.Distillation(student_layers=[0, 9]), context(teacher, tokenizer))
