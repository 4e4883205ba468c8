import json
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

import bertcompress as bc
from bertcompress.io import write_atomically
from tests.conftest import random_batch, tiny_model


def test_plain_model_saves_and_reloads_to_identical_logits(model, tokenizer, tmp_path):
    batch = random_batch()
    path = bc.save(model, tmp_path / "m", tokenizer)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["model_type"] == "bert" and manifest["modules"]["classifier"]["class"] == "Linear"
    reloaded = bc.load(path)
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, model(**batch).logits)
    assert bc.load_tokenizer(path)("good movie")["input_ids"] == tokenizer("good movie")["input_ids"]


def test_hugging_face_directory_loads_with_new_head(tmp_path):
    tiny_model(num_labels=2).bert.save_pretrained(tmp_path / "hf")
    model = bc.load(tmp_path / "hf", num_labels=3)
    assert model.classifier.out_features == 3


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(bc.BertCompressError, match="not found"):
        bc.load(tmp_path / "nowhere")


def test_model_outside_the_family_is_a_clear_error(tmp_path):
    GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32)).save_pretrained(
        tmp_path / "gpt2")
    with pytest.raises(bc.BertCompressError, match="'gpt2' is not a supported"):
        bc.load(tmp_path / "gpt2")


def test_label_count_mismatch_is_a_clear_error(model, tmp_path):
    bc.save(model, tmp_path / "m")
    with pytest.raises(bc.BertCompressError, match="head has 2 labels but the task has 3"):
        bc.load(tmp_path / "m", num_labels=3)


def test_failed_write_leaves_nothing_behind(tmp_path):
    def fill(directory):
        (directory / "half.txt").write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "out", fill)
    assert list(tmp_path.iterdir()) == []


def test_weights_file_and_config_follow_what_plain_transformers_can_hold(tokenizer, tmp_path):
    from bertcompress.io import COMPRESSED_WEIGHTS, MANIFEST, WEIGHTS
    from bertcompress.surgery.ffn import prune_ffn_neurons

    plain = tiny_model()
    plain._bertcompress_history = [{"method": "ffn_pruning"}]
    prune_ffn_neurons(plain, {0: list(range(8)), 1: list(range(8))})  # uniform: 48 -> 40 neurons in both layers
    saved = bc.save(plain, tmp_path / "plain", tokenizer)
    assert (saved / WEIGHTS).exists() and not (saved / COMPRESSED_WEIGHTS).exists()
    assert not (saved / "README.md").exists()
    assert json.loads((saved / "config.json").read_text())["intermediate_size"] == 40
    manifest = json.loads((saved / MANIFEST).read_text())
    assert manifest["architecture"] == "BertForSequenceClassification"
    assert manifest["history"] == [{"method": "ffn_pruning"}] and manifest["attributes"]
    assert bc.load(saved)._bertcompress_history == [{"method": "ffn_pruning"}]

    int8 = tiny_model()
    bc.compress(int8, bc.DynamicInt8())
    saved = bc.save(int8, tmp_path / "int8", tokenizer)
    assert (saved / COMPRESSED_WEIGHTS).exists() and not (saved / WEIGHTS).exists()
    assert "is a bertcompress Int8" in (saved / "README.md").read_text()
    entries = json.loads((saved / MANIFEST).read_text())["modules"]
    assert entries["bert.encoder.layer.0.attention.self.query"]["class"] == "DynamicInt8Linear"


def test_directory_bytes_can_leave_out_the_tokenizer_and_notes(tokenizer, tmp_path):
    from bertcompress.io import directory_bytes_of

    model = tiny_model()
    bc.compress(model, bc.DynamicInt8())
    saved = bc.save(model, tmp_path / "m", tokenizer)
    files = {f.name: f.stat().st_size for f in saved.iterdir() if f.is_file()}
    assert directory_bytes_of(saved) == sum(files.values())
    kept = {"bertcompress.safetensors", "manifest.json", "config.json"}
    assert directory_bytes_of(saved, exclude_tokenizer=True) == sum(v for k, v in files.items() if k in kept)
    assert directory_bytes_of(saved, exclude_tokenizer=True) < directory_bytes_of(saved)


# --- pinned behaviour of each function in bertcompress.io ------------------------------------------------

def _saved(tmp_path, model=None, tokenizer=None, name="m"):
    return bc.save(model if model is not None else tiny_model(), tmp_path / name, tokenizer)


def test_manifest_has_exactly_the_documented_keys_and_values(tmp_path):
    from bertcompress.core.modules import linear_entry

    model = tiny_model()
    saved = bc.save(model, tmp_path / "m", extra={"task": "sst2", "seed": 7})
    manifest = json.loads((saved / "manifest.json").read_text())
    assert set(manifest) == {"format", "architecture", "model_type", "modules", "attributes", "history", "task", "seed"}
    assert manifest["format"] == 1 and manifest["architecture"] == "BertForSequenceClassification"
    assert manifest["model_type"] == "bert" and manifest["history"] == []
    assert manifest["task"] == "sst2" and manifest["seed"] == 7
    # every Linear and only Linears (no LayerNorm, Embedding, ...): 6 per layer, the pooler and the classifier
    linears = {n: m for n, m in model.named_modules() if type(m) is torch.nn.Linear}
    assert len(linears) == 2 * 6 + 2
    assert manifest["modules"] == {n: linear_entry(m) for n, m in linears.items()}
    assert manifest["modules"]["classifier"] == {"class": "Linear", "in_features": 32, "out_features": 2, "bias": True}
    assert manifest["attributes"] == {f"bert.encoder.layer.{i}.attention.self": {"num_attention_heads": 4,
                                                                                   "all_head_size": 32}
                                      for i in range(2)}
    config = json.loads((saved / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    marker = json.loads((saved / ".bertcompress-output").read_text())
    assert marker == {"kind": "model"}


def test_manifest_entries_of_replacement_modules_come_from_the_module(tmp_path):
    from bertcompress.core.modules import is_replacement, linear_entry

    model = tiny_model()
    bc.compress(model, bc.DynamicInt8())
    modules = json.loads((bc.save(model, tmp_path / "m") / "manifest.json").read_text())["modules"]
    replaced = {n: m for n, m in model.named_modules() if is_replacement(m)}
    plain = {n: m for n, m in model.named_modules() if type(m) is torch.nn.Linear}
    assert replaced and set(modules) == set(replaced) | set(plain)
    for name, module in replaced.items():
        assert modules[name] == json.loads(json.dumps(module.manifest_entry()))
        assert modules[name]["class"] == type(module).__name__
    assert modules["bert.encoder.layer.0.attention.self.query"]["class"] == "DynamicInt8Linear"
    for name, module in plain.items():
        assert modules[name] == linear_entry(module)


def test_not_plain_readme_text(tmp_path):
    model = tiny_model()
    bc.compress(model, bc.DynamicInt8())
    saved = bc.save(model, tmp_path / "m")
    assert (saved / "README.md").read_text() == (
        "# A bertcompress model\n\n"
        "Plain Transformers cannot load this directory: bert.embeddings.word_embeddings is a "
        "bertcompress Int8Embedding, which plain Transformers does not have.\n"
        "Load it with `bertcompress.load(path)`, or export it with\n"
        "`bertcompress export PATH --to onnx|openvino|transformers --out DIR`.\n")


def test_head_attributes_of_uneven_heads_and_of_distilbert():
    from bertcompress.io import _head_attributes
    from bertcompress.surgery import prune_heads

    model = tiny_model()
    prune_heads(model, {0: [0, 1, 2], 1: [1]})
    assert _head_attributes(model) == {
        "bert.encoder.layer.0.attention.self": {"num_attention_heads": 1, "all_head_size": 8},
        "bert.encoder.layer.1.attention.self": {"num_attention_heads": 3, "all_head_size": 24}}
    assert _head_attributes(tiny_model("distilbert")) == {
        "distilbert.transformer.layer.0.attention": {"n_heads": 4},
        "distilbert.transformer.layer.1.attention": {"n_heads": 4}}
    assert _head_attributes(tiny_model(task_type="embedding")) == {
        f"encoder.layer.{i}.attention.self": {"num_attention_heads": 4, "all_head_size": 32} for i in range(2)}


def test_uneven_heads_reload_with_their_counts_and_identical_logits(tokenizer, tmp_path):
    from bertcompress.surgery import head_count, prune_heads

    model = tiny_model()
    prune_heads(model, {0: [0, 1, 2], 1: [1]})
    batch = random_batch()
    saved = bc.save(model, tmp_path / "m", tokenizer)
    assert (saved / "bertcompress.safetensors").exists()
    assert "cannot load this directory: its layers keep 1, 3 attention heads" in (saved / "README.md").read_text()
    reloaded = bc.load(saved)
    assert [head_count(reloaded, 0), head_count(reloaded, 1)] == [1, 3]
    attention = reloaded.bert.encoder.layer[0].attention.self
    assert attention.all_head_size == 8 and attention.query.out_features == 8
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, model(**batch).logits)
    assert not reloaded.training and reloaded._bertcompress_source == str(saved)


def test_heads_pruned_by_the_method_reload_identically(tokenizer, tmp_path):
    from tests.conftest import assert_finite_and_reloads_identically

    model = tiny_model()
    bc.compress(model, bc.HeadPruning(fraction=0.5, importance="magnitude", scope="global"), bc.Context())
    assert_finite_and_reloads_identically(model, tokenizer, tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    heads = [v["num_attention_heads"] for v in manifest["attributes"].values()]
    assert sum(heads) == 4 and all(v["all_head_size"] == 8 * v["num_attention_heads"]
                                   for v in manifest["attributes"].values())
    assert manifest["history"] and manifest["history"][0]["method"] == "head_pruning"


def test_save_refuses_to_replace_unless_overwrite(tmp_path):
    bc.save(tiny_model(seed=0), tmp_path / "m")
    with pytest.raises(bc.BertCompressError, match="already exists; pass --overwrite"):
        bc.save(tiny_model(seed=1), tmp_path / "m")
    bc.save(tiny_model(seed=1), tmp_path / "m", overwrite=True)
    reloaded = bc.load(tmp_path / "m")
    assert torch.equal(reloaded.classifier.weight, tiny_model(seed=1).classifier.weight)


def test_tokenizer_is_saved_only_when_given(tokenizer, tmp_path):
    without = _saved(tmp_path, name="without")
    assert not (without / "tokenizer.json").exists() and not (without / "tokenizer_config.json").exists()
    bc.load(without)  # a model without its tokenizer still loads
    with pytest.raises(bc.BertCompressError, match="no tokenizer files"):
        bc.load_tokenizer(without)
    with_ = _saved(tmp_path, tokenizer=tokenizer, name="with")
    assert (with_ / "tokenizer.json").exists()
    loaded = bc.load_tokenizer(with_)
    assert loaded("good movie")["input_ids"] == tokenizer("good movie")["input_ids"]
    assert loaded.convert_ids_to_tokens(tokenizer("great plot")["input_ids"]) == ["[CLS]", "great", "plot", "[SEP]"]


SENTENCE_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]
POOLING = {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
           "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}


def test_embedding_model_gets_the_sentence_transformers_layout(tokenizer, tmp_path):
    model = tiny_model(task_type="embedding")
    saved = bc.save(model, tmp_path / "m", tokenizer)
    assert json.loads((saved / "modules.json").read_text()) == SENTENCE_MODULES
    assert json.loads((saved / "sentence_bert_config.json").read_text()) == {"max_seq_length": 256,
                                                                             "do_lower_case": False}
    assert json.loads((saved / "1_Pooling" / "config.json").read_text()) == POOLING
    assert (saved / "2_Normalize").is_dir() and not any((saved / "2_Normalize").iterdir())
    assert json.loads((saved / "config.json").read_text())["architectures"] == ["BertModel"]
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["architecture"] == "BertModel" and "pooler.dense" in manifest["modules"]
    reloaded = bc.load(saved)  # keeps its type without being asked
    assert type(reloaded).__name__ == "BertModel"
    batch = random_batch()
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).last_hidden_state, model(**batch).last_hidden_state)


def test_distilbert_embedding_layout_reads_its_own_hidden_key(tmp_path):
    saved = bc.save(tiny_model("distilbert", task_type="embedding"), tmp_path / "m")
    assert json.loads((saved / "1_Pooling" / "config.json").read_text())["word_embedding_dimension"] == 32


def test_classifier_gets_no_sentence_transformers_layout(tmp_path):
    saved = _saved(tmp_path)
    for name in ("modules.json", "sentence_bert_config.json", "1_Pooling", "2_Normalize"):
        assert not (saved / name).exists()


def test_sentence_transformers_layout_defaults_and_rewrites(tmp_path):
    from bertcompress.io import write_sentence_transformers_layout

    write_sentence_transformers_layout(tmp_path, 48)
    write_sentence_transformers_layout(tmp_path, 48)  # the folders may already exist
    assert json.loads((tmp_path / "sentence_bert_config.json").read_text())["max_seq_length"] == 256
    assert json.loads((tmp_path / "1_Pooling" / "config.json").read_text()) == {**POOLING,
                                                                                "word_embedding_dimension": 48}
    write_sentence_transformers_layout(tmp_path, 16, max_seq_length=128)
    assert json.loads((tmp_path / "sentence_bert_config.json").read_text()) == {"max_seq_length": 128,
                                                                                "do_lower_case": False}
    assert json.loads((tmp_path / "modules.json").read_text()) == SENTENCE_MODULES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1_Pooling", "2_Normalize", "modules.json",
                                                          "sentence_bert_config.json"]


def test_check_source_accepts_directories_names_and_hub_ids(tmp_path, monkeypatch):
    from bertcompress.io import check_source

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "mine").mkdir()
    for good in ("minilm", tmp_path / "mine", "mine", "~/mine", "org/name"):
        assert check_source(good) is None
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(bc.BertCompressError) as error:
        check_source(tmp_path / "file.txt")
    assert str(error.value) == f"{tmp_path / 'file.txt'}: expected a model directory, got a file"
    for missing in ("nowhere", "a/b/c", "./org", "/org", "~/org", ".hidden/x"):
        with pytest.raises(bc.BertCompressError) as error:
            check_source(missing)
        assert str(error.value) == (f"model path {missing!r} not found (use 'minilm', a local directory or a "
                                    "hub id)")


def test_load_of_a_missing_relative_path_names_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(bc.BertCompressError, match=r"^model path 'nowhere' not found \(use 'minilm'"):
        bc.load("nowhere")
    with pytest.raises(bc.BertCompressError, match="model path 'nowhere' not found"):
        bc.load_tokenizer("nowhere")


def test_resolve_directory_home_packaged_name_and_hub_id(tmp_path, monkeypatch):
    import huggingface_hub

    from bertcompress.data import assets
    from bertcompress.io import resolve

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "mine").mkdir()
    assert resolve(tmp_path / "mine") == tmp_path / "mine"
    assert resolve(str(tmp_path / "mine")) == tmp_path / "mine"
    assert resolve("~/mine") == tmp_path / "mine"

    asked = []
    monkeypatch.setattr(assets, "model_dir", lambda name: asked.append(name) or tmp_path / "packaged")
    assert resolve("minilm") == tmp_path / "packaged" and asked == ["minilm"]

    calls = []

    def snapshot(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(tmp_path / "snap")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    found = resolve("org/name")
    assert found == tmp_path / "snap" and isinstance(found, Path)
    assert calls == [("org/name", {"allow_patterns": ["*.json", "*.txt", "*.safetensors", "*.model"]})]


def test_unreachable_hub_id_is_one_clear_error(monkeypatch):
    import huggingface_hub

    from bertcompress.io import resolve

    def offline(repo_id, **kwargs):
        raise OSError("no network\nsecond line")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(bc.BertCompressError) as error:
        resolve("org/name")
    assert str(error.value) == "could not fetch hub model 'org/name': OSError"
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_default_source_is_the_packaged_minilm(tokenizer, tmp_path, monkeypatch):
    from bertcompress.data import assets

    saved = _saved(tmp_path, tokenizer=tokenizer)
    asked = []
    monkeypatch.setattr(assets, "model_dir", lambda name: asked.append(name) or saved)
    assert type(bc.load()).__name__ == "BertForSequenceClassification"
    assert bc.load_tokenizer()("good")["input_ids"] == tokenizer("good")["input_ids"]
    assert asked == ["minilm", "minilm"]


def _sequence_model(tmp_path, **config) -> Path:
    path = tmp_path / "seq"
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("config, limit", [
    ({"model_type": "bert", "max_position_embeddings": 64}, 64),
    ({"model_type": "distilbert", "max_position_embeddings": 512}, 512),
    ({"model_type": "roberta", "max_position_embeddings": 70, "pad_token_id": 1}, 68),
    ({"model_type": "roberta", "max_position_embeddings": 70, "pad_token_id": 3}, 66),
    ({"model_type": "roberta", "max_position_embeddings": 70}, 68),
    ({"model_type": "roberta", "max_position_embeddings": 70, "pad_token_id": None}, 68),
    ({"model_type": "roberta", "max_position_embeddings": 70, "pad_token_id": 0}, 69),  # 0 is an id, not "unset"
])
def test_sequence_length_limit_is_exact(config, limit, tmp_path):
    from bertcompress.io import check_sequence_length

    path = _sequence_model(tmp_path, **config)
    check_sequence_length(path, limit)
    check_sequence_length(path, 1)
    with pytest.raises(bc.BertCompressError) as error:
        check_sequence_length(path, limit + 1)
    assert str(error.value) == f"--max-length {limit + 1} is longer than the model's {limit} positions"
    with pytest.raises(bc.BertCompressError) as error:
        check_sequence_length(path, limit + 100, option="--seq-len")
    assert str(error.value) == f"--seq-len {limit + 100} is longer than the model's {limit} positions"


def test_sequence_length_without_a_position_count_is_not_limited(tmp_path):
    from bertcompress.io import check_sequence_length

    check_sequence_length(_sequence_model(tmp_path, model_type="bert"), 10**6)
    check_sequence_length(_sequence_model(tmp_path, model_type="bert", max_position_embeddings="64"), 10**6)
    check_sequence_length(_sequence_model(tmp_path, model_type="roberta"), 10**6)


def test_sequence_length_of_saved_models(tmp_path):
    from bertcompress.io import check_sequence_length

    bert, roberta = _saved(tmp_path, name="bert"), _saved(tmp_path, tiny_model("roberta"), name="roberta")
    check_sequence_length(bert, 64)
    check_sequence_length(roberta, 68)
    with pytest.raises(bc.BertCompressError, match="65 is longer than the model's 64 positions"):
        check_sequence_length(bert, 65)
    with pytest.raises(bc.BertCompressError, match="69 is longer than the model's 68 positions"):
        check_sequence_length(roberta, 69)
    with pytest.raises(bc.BertCompressError, match="not found"):
        check_sequence_length(tmp_path / "nowhere", 8)


def test_first_line_of_an_error():
    from bertcompress.core.errors import first_line

    assert first_line(ValueError("\n  first line  \nsecond line\n")) == "first line  "
    assert first_line(OSError("only")) == "only"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(ValueError("   \n ")) == "ValueError"
    assert first_line(ValueError("x" * 400 + "\nmore")) == "x" * 300


def test_article():
    from bertcompress.io import _article

    assert [_article(w) for w in ("embedding", "classification", "question_answering", "token_classification",
                                  "apple", "item", "owl", "umbrella")] == ["an", "a", "a", "a", "an", "an", "an", "an"]


def test_manifest_type_reads_the_architecture_and_ignores_malformed_manifests(tmp_path):
    from bertcompress.io import _manifest_type

    manifest = tmp_path / "manifest.json"
    for architecture, expected in [("BertModel", "embedding"), ("BertForSequenceClassification", "classification"),
                                   ("RobertaForQuestionAnswering", "question_answering"),
                                   ("ElectraForTokenClassification", "token_classification"),
                                   ("BertForMaskedLM", None)]:
        manifest.write_text(json.dumps({"architecture": architecture}))
        assert _manifest_type(manifest) == expected
    for content in ("{oops", "[1, 2]", '"text"', json.dumps({"architecture": 3}), "{}"):
        manifest.write_text(content)
        assert _manifest_type(manifest) is None
    manifest.write_bytes(b'{"architecture": "\xff"}')
    assert _manifest_type(manifest) is None
    manifest.write_text(json.dumps({"architecture": "BertModel"}), encoding="utf-8")
    assert _manifest_type(manifest) == "embedding"


def test_task_type_from_the_checkpoint_or_the_request(tmp_path):
    from types import SimpleNamespace

    from bertcompress.io import _task_type

    bare = SimpleNamespace(architectures=["BertModel"])
    head = SimpleNamespace(architectures=["BertForQuestionAnswering"])
    unnamed = SimpleNamespace(architectures=None)
    assert _task_type(tmp_path, bare, None) == "classification"
    assert _task_type(tmp_path, unnamed, None) == "classification"
    assert _task_type(tmp_path, head, None) == "question_answering"
    assert _task_type(tmp_path, bare, "embedding") == "embedding"
    assert _task_type(tmp_path, bare, "token_classification") == "token_classification"
    assert _task_type(tmp_path, head, "question_answering") == "question_answering"
    with pytest.raises(bc.BertCompressError) as error:
        _task_type(tmp_path, head, "embedding")
    assert str(error.value) == (f"{tmp_path}: holds a question_answering model (BertForQuestionAnswering), not an "
                                "embedding model; use an embedding checkpoint or the base encoder")
    with pytest.raises(bc.BertCompressError, match="task type 'bogus' is not offered"):
        _task_type(tmp_path, bare, "bogus")
    with pytest.raises(bc.BertCompressError, match="task type 'bogus' is not offered"):
        _task_type(tmp_path, head, "bogus")

    # with a manifest, its architecture decides, not the config's
    (tmp_path / "manifest.json").write_text(json.dumps({"architecture": "BertModel"}))
    assert _task_type(tmp_path, head, None) == "embedding"
    assert _task_type(tmp_path, head, "embedding") == "embedding"
    with pytest.raises(bc.BertCompressError) as error:
        _task_type(tmp_path, unnamed, "classification")
    assert str(error.value) == (f"{tmp_path}: holds an embedding model (?), not a classification model; "
                                "use a classification checkpoint or the base encoder")
    (tmp_path / "manifest.json").write_text("{oops")
    assert _task_type(tmp_path, head, None) == "classification"
    assert _task_type(tmp_path, head, "embedding") == "embedding"


def test_load_with_a_requested_task_type(tmp_path):
    classifier = _saved(tmp_path, name="classifier")
    assert type(bc.load(classifier, task_type="classification")).__name__ == "BertForSequenceClassification"
    with pytest.raises(bc.BertCompressError) as error:
        bc.load(classifier, task_type="embedding")
    assert str(error.value) == (f"{classifier}: holds a classification model (BertForSequenceClassification), "
                                "not an embedding model; use an embedding checkpoint or the base encoder")
    embedder = _saved(tmp_path, tiny_model(task_type="embedding"), name="embedder")
    with pytest.raises(bc.BertCompressError) as error:
        bc.load(embedder, task_type="question_answering")
    assert str(error.value) == (f"{embedder}: holds an embedding model (BertModel), not a question_answering "
                                "model; use a question_answering checkpoint or the base encoder")

    tiny_model(task_type="embedding").save_pretrained(tmp_path / "hf")  # a bare encoder takes any type
    assert type(bc.load(tmp_path / "hf")).__name__ == "BertForSequenceClassification"
    assert type(bc.load(tmp_path / "hf", task_type="embedding")).__name__ == "BertModel"
    assert type(bc.load(tmp_path / "hf", task_type="question_answering")).__name__ == "BertForQuestionAnswering"


def test_fresh_head_follows_num_labels_and_seed(tmp_path):
    tiny_model(task_type="embedding").save_pretrained(tmp_path / "hf")
    default = bc.load(tmp_path / "hf")
    assert default.classifier.out_features == 2 and default._bertcompress_source == str(tmp_path / "hf")
    assert not default.training
    again, other = bc.load(tmp_path / "hf", seed=0), bc.load(tmp_path / "hf", seed=1)
    assert torch.equal(again.classifier.weight, default.classifier.weight)
    assert not torch.equal(other.classifier.weight, default.classifier.weight)
    assert bc.load(tmp_path / "hf", num_labels=5).classifier.out_features == 5
    embedder = bc.load(tmp_path / "hf", num_labels=5, task_type="embedding")
    assert type(embedder).__name__ == "BertModel" and embedder.config.num_labels == 2
    assert bc.load(tmp_path / "hf", num_labels=4, task_type="token_classification").classifier.out_features == 4


def test_label_count_is_checked_against_a_classifier_or_tagger_head(tmp_path):
    saved = _saved(tmp_path)
    assert bc.load(saved, num_labels=2).classifier.out_features == 2
    assert bc.load(saved).classifier.out_features == 2
    with pytest.raises(bc.BertCompressError) as error:
        bc.load(saved, num_labels=5)
    assert str(error.value) == f"{saved}: the model's classification head has 2 labels but the task has 5"
    tiny_model(num_labels=3).save_pretrained(tmp_path / "hf")
    with pytest.raises(bc.BertCompressError, match="head has 3 labels but the task has 2"):
        bc.load(tmp_path / "hf", num_labels=2)
    assert bc.load(tmp_path / "hf", num_labels=3).classifier.out_features == 3
    tagger = bc.save(tiny_model(task_type="token_classification", num_labels=3), tmp_path / "tagger")
    with pytest.raises(bc.BertCompressError) as error:
        bc.load(tagger, num_labels=5)
    assert str(error.value) == f"{tagger}: the model's token classification head has 3 labels but the task has 5"
    assert bc.load(tagger, num_labels=3).classifier.out_features == 3
    assert bc.load(bc.save(tiny_model(task_type="embedding"), tmp_path / "embedder"), num_labels=5) is not None


def test_hugging_face_load_failure_is_one_line(tmp_path, monkeypatch):
    from bertcompress import io

    tiny_model().save_pretrained(tmp_path / "hf")

    class Broken:
        @staticmethod
        def from_pretrained(path, **kwargs):
            raise ValueError("weights are broken\nsecond line")

    monkeypatch.setattr(io, "auto_class", lambda task_type: Broken)
    with pytest.raises(bc.BertCompressError) as error:
        bc.load(tmp_path / "hf")
    assert str(error.value) == f"{tmp_path / 'hf'}: cannot load the model (weights are broken)"


def test_config_errors_name_the_config_file(tmp_path):
    saved = _saved(tmp_path)
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "model_type": "nosuchmodel"}))
    with pytest.raises(bc.BertCompressError) as error:
        bc.load(saved)
    assert str(error.value).startswith(f"{saved / 'config.json'}: not a usable model config (")
    assert "nosuchmodel" in str(error.value) and "\n" not in str(error.value)

    GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32)).save_pretrained(
        tmp_path / "gpt2")
    with pytest.raises(bc.BertCompressError) as error:
        bc.load(tmp_path / "gpt2")
    assert str(error.value).startswith(f"{tmp_path / 'gpt2' / 'config.json'}: model type 'gpt2' is not a supported "
                                      "BERT-family encoder; supported: bert, distilbert, electra, roberta")


@pytest.mark.parametrize("version", [0, 2, 99])
def test_unsupported_manifest_format(version, tmp_path):
    saved = _saved(tmp_path)
    manifest = json.loads((saved / "manifest.json").read_text())
    (saved / "manifest.json").write_text(json.dumps({**manifest, "format": version}))
    with pytest.raises(bc.BertCompressError) as error:
        bc.load(saved)
    assert str(error.value) == f"{saved / 'manifest.json'}: unsupported format {version}"


@pytest.mark.parametrize("content", ["{oops", "[1, 2]"])
def test_malformed_manifest_is_reported_by_its_checks(content, tmp_path):
    saved = _saved(tmp_path)
    (saved / "manifest.json").write_text(content)
    with pytest.raises(bc.BertCompressError, match="manifest.json"):
        bc.load(saved)


@pytest.mark.parametrize("missing, unexpected", [(["a", "b", "c", "d"], ["x"]), ([], ["x"]), (["a"], [])])
def test_weights_not_matching_the_manifest(missing, unexpected, tmp_path, monkeypatch):
    from bertcompress import io

    model = tiny_model()
    bc.compress(model, bc.DynamicInt8())
    saved = _saved(tmp_path, model)
    monkeypatch.setattr(io, "load_model", lambda model, filename, strict: (missing, unexpected))
    with pytest.raises(bc.BertCompressError) as error:
        bc.load(saved)
    assert str(error.value) == (f"{saved / 'bertcompress.safetensors'}: weights do not match the manifest "
                                f"(missing {missing[:3]}, unexpected {unexpected[:3]})")


def test_load_passes_non_strict_loading_the_weights_file(tmp_path, monkeypatch):
    from bertcompress import io

    seen = []
    real = io.load_model

    def spy(model, filename, strict=True):
        seen.append((Path(filename).name, strict))
        return real(model, filename, strict=strict)

    monkeypatch.setattr(io, "load_model", spy)
    bc.load(_saved(tmp_path))
    assert seen == [("model.safetensors", False)]


def test_tokenizer_load_failure_is_one_line(tokenizer, tmp_path):
    saved = _saved(tmp_path, tokenizer=tokenizer)
    (saved / "tokenizer.json").write_text("{oops")
    with pytest.raises(bc.BertCompressError) as error:
        bc.load_tokenizer(saved)
    assert str(error.value).startswith(f"{saved}: cannot load the tokenizer (")
    assert "\n" not in str(error.value)
