import torch

from bertcompress.data.batching import encode
from bertcompress.data.tasks import Example
from bertcompress.evaluation.metrics import accuracy, macro_f1, predict


def test_dynamic_padding_pads_to_the_longest_in_batch(tokenizer):
    data = encode([Example("good", 1), Example("a very very boring movie", 0)], tokenizer, max_length=64)
    batch = data.batch([0, 1])
    assert batch["input_ids"].shape == (2, len(data.ids[1]))
    assert batch["attention_mask"][0].sum() == len(data.ids[0])
    assert batch["input_ids"][0, len(data.ids[0]):].eq(tokenizer.pad_token_id).all()
    assert batch["labels"].tolist() == [1, 0]


def test_pairs_get_segment_ids_and_truncation_applies(tokenizer):
    data = encode([Example("evidence " * 40, 0, text_pair="claim true")], tokenizer, max_length=16)
    batch = data.batch([0])
    assert batch["input_ids"].shape[1] == 16
    assert batch["token_type_ids"][0].max() == 1


def test_accuracy_and_macro_f1():
    assert accuracy([1, 0, 1, 1], [1, 0, 0, 1]) == 0.75
    # class 0: tp=1 fp=0 fn=1 -> 2/3; class 1: tp=2 fp=1 fn=0 -> 4/5
    assert abs(macro_f1([1, 0, 1, 1], [1, 0, 0, 1], 2) - (2 / 3 + 4 / 5) / 2) < 1e-12
    assert macro_f1([0, 0], [0, 0], 2) == 0.5  # an absent class scores 0


def test_predict_restores_original_order(model, tokenizer):
    examples = [Example("good " * n, 0) for n in (5, 1, 9, 3)]
    data = encode(examples, tokenizer, 64)
    predictions = predict(model, data, batch_size=2)
    with torch.no_grad():
        one_by_one = [model(**{k: v for k, v in data.batch([i]).items() if k != "labels"}).logits.argmax().item()
                      for i in range(4)]
    assert predictions == one_by_one
