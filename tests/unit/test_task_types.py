"""Task types: the type read from the model class, one prediction tensor per type, the per-type losses,
embedding scores, and embedders that save, reload and load in sentence-transformers."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import bertcompress as bc
from bertcompress.core.errors import BertCompressError
from bertcompress.core.task_types import TASK_TYPES, mean_pool, prediction, task_type_of
from bertcompress.data import tasks
from bertcompress.data.batching import encode
from bertcompress.evaluation.embedding import knn_accuracy, mean_cosine, nearest, neighbour_recall
from bertcompress.evaluation.metrics import logits, score
from bertcompress.training.objectives import (distillation_losses, importance_loss, label_losses,
                                              similarity_losses)
from tests.conftest import FAMILIES, random_batch, tiny_model, tiny_tokenizer, toy_task


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_type_is_read_from_the_model_class_and_the_prediction_has_its_shape(family, task_type):
    model, batch = tiny_model(family, task_type=task_type), random_batch(batch_size=3, length=10)
    assert task_type_of(model) == task_type
    with torch.no_grad():
        got = prediction(task_type, model(**batch), batch["attention_mask"])
    expected = {"classification": (3, 2), "token_classification": (3, 10, 2), "question_answering": (3, 10, 2),
                "embedding": (3, 32)}[task_type]
    assert tuple(got.shape) == expected


def test_mean_pool_ignores_padding_and_is_unit_length():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]])
    pooled = mean_pool(hidden, torch.tensor([[1, 1, 0]]))
    torch.testing.assert_close(pooled, torch.tensor([[1.0, 0.0]]))
    assert mean_pool(torch.randn(4, 5, 8), torch.ones(4, 5)).norm(dim=-1).allclose(torch.ones(4))


def test_token_label_loss_averages_only_tagged_tokens():
    logits_ = torch.randn(2, 4, 3)
    labels = torch.tensor([[-100, 1, 2, -100], [0, -100, -100, -100]])
    got = label_losses("token_classification", SimpleNamespace(logits=logits_), {"labels": labels})
    first = (F.cross_entropy(logits_[0, 1:3], labels[0, 1:3]))
    torch.testing.assert_close(got, torch.stack([first, F.cross_entropy(logits_[1, :1], labels[1, :1])]))


def test_qa_label_loss_is_the_mean_of_start_and_end_cross_entropy_and_skips_unlabelled():
    start, end = torch.randn(2, 5), torch.randn(2, 5)
    outputs = SimpleNamespace(start_logits=start, end_logits=end)
    batch = {"labels": torch.tensor([[1, 3], [-1, -1]]), "attention_mask": torch.ones(2, 5)}
    got = label_losses("question_answering", outputs, batch)
    expected = (F.cross_entropy(start[:1], torch.tensor([1])) + F.cross_entropy(end[:1], torch.tensor([3]))) / 2
    torch.testing.assert_close(got[0], expected)
    assert got[1] == 0


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_distillation_loss_is_zero_against_itself_and_positive_against_another_model(task_type):
    batch = random_batch(batch_size=3, length=10)
    student, other = tiny_model(task_type=task_type), tiny_model(task_type=task_type, seed=5)
    with torch.no_grad():
        own, foreign = student(**batch), other(**batch)
    assert distillation_losses(task_type, own, own, batch, 2.0).abs().max() < 1e-5
    assert (distillation_losses(task_type, own, foreign, batch, 2.0) > 1e-6).all()


def test_embedding_importance_has_gradients_where_a_distance_to_itself_has_none():
    model, batch = tiny_model(task_type="embedding"), random_batch()
    loss = importance_loss("embedding", model(**batch), batch, torch.Generator().manual_seed(0))
    grad = torch.autograd.grad(loss, model.encoder.layer[0].output.dense.weight)[0]
    assert grad.abs().sum() > 0


def test_neighbour_recall_is_one_for_the_same_vectors_and_low_for_unrelated_ones():
    vectors = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    assert neighbour_recall(vectors, vectors * 3) == 1.0
    unrelated = torch.randn(200, 16, generator=torch.Generator().manual_seed(1))
    assert neighbour_recall(unrelated, vectors) < 0.2
    assert mean_cosine(vectors, vectors) == pytest.approx(1.0)


def test_nearest_never_returns_the_text_itself():
    vectors = torch.randn(30, 4)
    found = nearest(vectors, 5)
    assert not (found == torch.arange(30)[:, None]).any()


def test_knn_accuracy_reads_labels_off_clusters_and_is_none_without_labels():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=generator) * 10
    labels = [i % 3 for i in range(60)]
    vectors = centres[labels] + torch.randn(60, 16, generator=generator)
    assert knn_accuracy(vectors, labels) == 1.0
    shuffled = [labels[i] for i in torch.randperm(60, generator=generator).tolist()]
    assert knn_accuracy(vectors, shuffled) < 0.5
    assert knn_accuracy(vectors, [-1] * 60) is None


def test_score_of_an_embedder_compares_vectors_with_the_reference():
    tokenizer, teacher = tiny_tokenizer(), tiny_model(task_type="embedding")
    data = encode(toy_task("embedding").split("train"), tokenizer, 16)
    own, vectors = score(teacher, data, 2)
    assert "agreement" not in own and own["knn_accuracy"] is not None
    again, _ = score(teacher, data, 2, vectors)
    assert again["mean_cosine"] == pytest.approx(1.0) and again["neighbour_recall_at_10"] == 1.0
    other, _ = score(tiny_model(task_type="embedding", seed=3), data, 2, vectors)
    assert other["mean_cosine"] < 0.99


def embedder_student():
    """A 2-layer embedder teacher, an unrelated 1-layer student, its context and encoded test texts."""
    tokenizer, teacher = tiny_tokenizer(), tiny_model(task_type="embedding", layers=2)
    task = toy_task("embedding")
    ctx = bc.Context(task=task, tokenizer=tokenizer, teacher=teacher, train=bc.TrainConfig(batch_size=8, max_length=16))
    return teacher, tiny_model(task_type="embedding", layers=1, seed=7), ctx, encode(task.split("test"), tokenizer, 16)


def test_distilling_a_shallower_embedder_brings_its_vectors_to_the_teachers():
    teacher, student, ctx, data = embedder_student()
    before = 1 - mean_cosine(logits(student, data), logits(teacher, data))
    bc.compress(student, bc.Distillation(max_steps=40, learning_rate=1e-3), ctx)
    assert 1 - mean_cosine(logits(student, data), logits(teacher, data)) < before / 2


def test_the_similarity_loss_compares_neighbourhoods_not_positions():
    one_hot, same = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    # orthogonal vs identical directions: each row differs in one of its two similarities, by 1
    assert torch.allclose(similarity_losses(one_hot, same), torch.tensor([0.5, 0.5]))
    vectors = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    rotation, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(1)))
    assert similarity_losses(3 * vectors @ rotation, vectors).abs().max() < 1e-6  # scale and rotation free
    other = torch.randn(6, 8, generator=torch.Generator().manual_seed(2))
    assert similarity_losses(other, vectors).min() > 1e-3


def test_similarity_distillation_brings_the_students_neighbourhoods_to_the_teachers():
    teacher, student, ctx, data = embedder_student()

    def gap():
        return float(similarity_losses(logits(student, data), logits(teacher, data)).mean())

    before = gap()
    report = bc.compress(student, bc.Distillation(soft_weight=0, hard_weight=1, similarity_weight=1.0, max_steps=40,
                                                  learning_rate=1e-3), ctx)
    assert "similarity" in report.metrics["losses"] and gap() < before / 2


def test_similarity_distillation_is_refused_for_a_classifier_before_any_change():
    model, teacher = tiny_model(layers=2), tiny_model(layers=2)
    ctx = bc.Context(task=toy_task(), tokenizer=tiny_tokenizer(), teacher=teacher, train=bc.TrainConfig(batch_size=8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(BertCompressError, match="similarity_weight is for embedding models; this one is a "
                                                "classification model"):
        bc.compress(model, bc.Distillation(keep=1, similarity_weight=1.0, max_steps=1), ctx)
    assert model.state_dict().keys() == before.keys()


def test_embedders_train_only_from_a_teacher():
    ctx = bc.Context(task=toy_task("embedding"), tokenizer=tiny_tokenizer(), train=bc.TrainConfig(batch_size=8))
    with pytest.raises(BertCompressError, match="needs a teacher"):
        bc.compress(tiny_model(task_type="embedding"), bc.Distillation(soft_weight=0, max_steps=1), ctx)


def test_an_embedder_saves_reloads_as_an_embedder_and_refuses_another_type(tmp_path):
    model, batch = tiny_model(task_type="embedding"), random_batch()
    path = bc.save(model, tmp_path / "embedder", tiny_tokenizer())
    for name in ("modules.json", "sentence_bert_config.json", "1_Pooling/config.json"):
        assert (path / name).exists()
    reloaded = bc.load(path)
    assert task_type_of(reloaded) == "embedding"
    with torch.no_grad():
        assert torch.equal(prediction("embedding", reloaded(**batch), batch["attention_mask"]),
                           prediction("embedding", model(**batch), batch["attention_mask"]))
    with pytest.raises(BertCompressError, match="holds an embedding model"):
        bc.load(path, task_type="classification")
    classifier = bc.save(tiny_model(), tmp_path / "classifier")
    with pytest.raises(BertCompressError, match="holds a classification model"):
        bc.load(classifier, task_type="embedding")


def test_sentence_transformers_loads_a_saved_embedder_and_computes_the_same_vectors(tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    tokenizer, model = tiny_tokenizer(), tiny_model(task_type="embedding")
    path = bc.save(model, tmp_path / "embedder", tokenizer)
    texts = ["good movie", "the plot was very dull and boring", "superb actor"]
    loaded = sentence_transformers.SentenceTransformer(str(path), device="cpu")
    theirs = torch.from_numpy(loaded.encode(texts))
    ours = logits(model, encode([tasks.Example(t, -1) for t in texts], tokenizer, 64))
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)


def test_a_classification_task_of_single_texts_becomes_an_embedding_task_and_pairs_refuse():
    task = tasks.as_type(toy_task(), "embedding")
    assert task.type == "embedding" and task.fingerprint() != toy_task().fingerprint()
    pairs = toy_task()
    pairs.splits["train"] = [tasks.Example("a", 0, "b")]
    with pytest.raises(BertCompressError, match="text pairs"):
        tasks.as_type(pairs, "embedding")
    with pytest.raises(BertCompressError, match="not offered"):
        tasks.as_type(toy_task(), "regression")


def test_embedding_files_read_text_lines_and_labelled_tables(tmp_path):
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(f"text number {i}" for i in range(30)) + "\n\n")
    task = tasks.from_files(lines, task_type="embedding")
    assert task.type == "embedding" and sum(task.counts().values()) == 30 and task.label_names == []
    table = tmp_path / "texts.csv"
    table.write_text("text,label\n" + "".join(f"review {i},{'pos' if i % 2 else 'neg'}\n" for i in range(30)))
    labelled = tasks.from_files(table, task_type="embedding")
    assert labelled.label_names == ["neg", "pos"]
    few = tmp_path / "few.txt"
    few.write_text("one\ntwo\n")
    with pytest.raises(BertCompressError, match="few.txt: 2 texts"):
        tasks.from_files(few, task_type="embedding")


def test_spearman_ranks_with_ties_and_is_sign_and_scale_free():
    from bertcompress.evaluation.embedding import ranks, spearman

    assert ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    x = torch.randn(50, generator=torch.Generator().manual_seed(0))
    assert spearman(x, x.exp() * 7) == pytest.approx(1.0)  # monotone maps keep the ranks
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert spearman(x, torch.ones(50)) == 0.0
    # against a closed form: no ties, rho = 1 - 6 sum d^2 / (n (n^2 - 1))
    a, b = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), torch.tensor([2.0, 1.0, 4.0, 3.0, 5.0])
    assert spearman(a, b) == pytest.approx(1 - 6 * 4 / (5 * 24))


def _scored_pairs_file(path, count=60):
    rows = [("good movie", "a great film", 4.5), ("dull plot", "boring story", 4.0),
            ("good movie", "boring story", 0.5), ("superb actor", "dull plot", 1.0)]
    lines = ["first\tsecond\tsimilarity"] + [f"{a} {i}\t{b} {i}\t{s}" for i in range(count)
                                              for a, b, s in [rows[i % 4]]]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_scored_pairs_embed_each_text_alone_and_score_by_spearman(tmp_path):
    columns = tasks.Columns(text="first", text_pair="second", label="similarity")
    task = tasks.from_files(_scored_pairs_file(tmp_path / "sts.tsv"), columns=columns, task_type="embedding")
    assert task.type == "embedding" and sum(task.counts().values()) == 60
    test = task.split("test")
    tokenizer, model = tiny_tokenizer(), tiny_model(task_type="embedding")
    data = encode(test, tokenizer, 16)
    assert len(data) == 2 * len(test)
    assert data.type_ids is None or all(set(t) == {0} for t in data.type_ids)  # single texts, not pairs
    vectors = logits(model, encode([tasks.Example(e.text, -1) for e in test] +
                                   [tasks.Example(e.text_pair, -1) for e in test], tokenizer, 16))
    result, found = score(model, data, 0)
    torch.testing.assert_close(found, vectors)
    cosines = F.cosine_similarity(vectors[: len(test)], vectors[len(test):], dim=-1)
    from bertcompress.evaluation.embedding import spearman

    assert result["accuracy"] == result["spearman"] == pytest.approx(
        spearman(cosines, torch.tensor([e.score for e in test])))
    assert result["pairs"] == len(test)
    again, _ = score(model, data, 0, found)
    assert again["mean_cosine"] == pytest.approx(1.0)
    changed = _scored_pairs_file(tmp_path / "changed.tsv")
    changed.write_text(changed.read_text().replace("\t4.5", "\t4.4"))
    assert tasks.from_files(changed, columns=columns, task_type="embedding").fingerprint() != task.fingerprint()


@pytest.mark.parametrize("cell, message", [("high", "column 'similarity' must be a similarity score"),
                                           ("nan", "must be a similarity score"), ("", "is empty")])
def test_a_pair_without_a_numeric_score_names_its_line(tmp_path, cell, message):
    path = _scored_pairs_file(tmp_path / "sts.tsv")
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit("\t", 1)[0] + "\t" + cell
    path.write_text("\n".join(lines) + "\n")
    columns = tasks.Columns(text="first", text_pair="second", label="similarity")
    with pytest.raises(BertCompressError, match=f"sts.tsv:4: .*{message}"):
        tasks.from_files(path, columns=columns, task_type="embedding")
    with pytest.raises(BertCompressError, match="missing column"):
        tasks.from_files(path, columns=tasks.Columns(text="first", text_pair="second"), task_type="embedding")


def test_eval_of_an_embedder_on_scored_pairs_prints_spearman_and_agreement(tmp_path, capsys):
    from bertcompress.cli import main

    data = _scored_pairs_file(tmp_path / "sts.tsv")
    model = bc.save(tiny_model(task_type="embedding"), tmp_path / "embedder", tiny_tokenizer())
    with pytest.raises(SystemExit) as done:
        main(["eval", "--model", str(model), "--train", str(data), "--task-type", "embedding",
              "--text-column", "first", "--text-pair-column", "second", "--label-column", "similarity",
              "--reference", str(model), "--max-length", "16"])
    out = capsys.readouterr().out
    assert done.value.code == 0, out
    assert "Spearman" in out and "over 6 pairs" in out and "mean cosine 1.0000" in out and "n=12 texts" in out


def test_an_embedder_distils_on_scored_pairs_from_both_texts(tmp_path):
    columns = tasks.Columns(text="first", text_pair="second", label="similarity")
    task = tasks.from_files(_scored_pairs_file(tmp_path / "sts.tsv"), columns=columns, task_type="embedding")
    tokenizer, teacher = tiny_tokenizer(), tiny_model(task_type="embedding", layers=2)
    student = tiny_model(task_type="embedding", layers=1, seed=7)
    ctx = bc.Context(task=task, tokenizer=tokenizer, teacher=teacher, train=bc.TrainConfig(batch_size=8, max_length=16))
    data = encode(task.split("test"), tokenizer, 16)
    before = 1 - mean_cosine(logits(student, data), logits(teacher, data))
    bc.compress(student, bc.Distillation(max_steps=40, learning_rate=1e-3), ctx)
    assert 1 - mean_cosine(logits(student, data), logits(teacher, data)) < before / 2


def test_scored_pairs_too_few_or_all_alike_are_refused(tmp_path):
    columns = tasks.Columns(text="first", text_pair="second", label="similarity")
    with pytest.raises(BertCompressError, match="few.tsv: 30 pairs; an embedding task needs at least 50"):
        tasks.from_files(_scored_pairs_file(tmp_path / "few.tsv", 30), columns=columns, task_type="embedding")
    same = _scored_pairs_file(tmp_path / "same.tsv", 60)
    same.write_text("\n".join(line.rsplit("\t", 1)[0] + ("\tsimilarity" if i == 0 else "\t3")
                              for i, line in enumerate(same.read_text().splitlines())) + "\n")
    with pytest.raises(BertCompressError, match="same.tsv: column 'similarity' holds one value for every pair"):
        tasks.from_files(same, columns=columns, task_type="embedding")
    train, texts = _scored_pairs_file(tmp_path / "train.tsv", 30), tmp_path / "eval.txt"
    texts.write_text("a text\nanother text\n" * 5)
    with pytest.raises(BertCompressError, match="eval.txt: 0 pairs to evaluate on; give at least 5"):
        tasks.from_files(train, texts, columns=columns, task_type="embedding")
    held_out = _scored_pairs_file(tmp_path / "held.tsv", 8)
    assert len(tasks.from_files(train, held_out, columns=columns, task_type="embedding").split("test")) == 8
