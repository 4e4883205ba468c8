"""`reproduce`: paired significance tests, claim selection, and every claim gathered and judged end to end on a
tiny model and a toy task, resumed from the cache, and written as a report."""
import json
import random

import pytest
from rich.console import Console

import bertcompress as bc
from bertcompress.core.errors import BertCompressError
from bertcompress.evaluation.significance import compare, mcnemar_p, paired_bootstrap_p
from bertcompress.reproduce import runner
from bertcompress.reproduce.evidence import Evidence
from bertcompress.reproduce.head_claims import hypergeometric_tail
from bertcompress.reproduce.spec import HOLDS, NOT_TESTABLE, PARTLY, Budget
from bertcompress.training.teacher import Teacher
from tests.conftest import tiny_model, tiny_tokenizer, toy_task

TINY_BUDGET = Budget("test", (0,), 0.2, 8, 8, 1)
TRAIN = {"batch_size": 8, "max_length": 16, "checkpoint_every": 1000}


def test_mcnemar_matches_the_binomial_tail():
    base = [1] * 10 + [0] * 10
    other = [0] * 10 + [0] * 10  # 10 discordant pairs, all against `other`
    assert mcnemar_p(base, other) == pytest.approx(2 / 2 ** 10)
    assert mcnemar_p(base, base) == 1.0
    # 6 vs 4 discordant: p = 2 * P(X <= 4 | n=10) = 0.754
    mixed_base, mixed_other = [1] * 6 + [0] * 4, [0] * 6 + [1] * 4
    assert mcnemar_p(mixed_base, mixed_other) == pytest.approx(0.75390625)


def test_paired_bootstrap_sees_a_consistent_shift_and_not_noise():
    generator = random.Random(0)
    base = [generator.random() for _ in range(200)]
    assert paired_bootstrap_p(base, [b + 0.05 for b in base]) < 0.01
    noisy = [b + generator.gauss(0, 0.2) for b in base]
    assert paired_bootstrap_p(base, noisy) > 0.05


def test_a_difference_is_real_only_beyond_the_seed_spread():
    base, other = [1] * 100, [1] * 80 + [0] * 20
    assert compare(base, other).worse and compare(base, other).test == "McNemar"
    assert not compare(base, other, spread=25.0).real  # -20 points is inside a 25-point spread
    assert compare([0.5] * 10, [0.6] * 10).test == "paired bootstrap"
    with pytest.raises(ValueError, match="same examples"):
        compare([1, 0], [1])


def test_hypergeometric_tail():
    assert hypergeometric_tail(10, 5, 5, 0) == pytest.approx(1.0)
    assert hypergeometric_tail(10, 5, 5, 5) == pytest.approx(1 / 252)


def test_claim_selection_names_the_allowed_ids():
    assert [c.id for c in runner.select_claims(["all"])] == [str(i) for i in range(1, 16)]
    assert [c.id for c in runner.select_claims(["9", "2"])] == ["2", "9"]
    with pytest.raises(BertCompressError, match="unknown claim.*16.*allowed: all or 1, 2"):
        runner.select_claims(["16"])


def test_specs_are_unique_and_cuts_come_after_their_start():
    specs = runner.needed_specs(runner.CLAIMS, TINY_BUDGET)
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    for index, spec in enumerate(specs):
        if spec.after:
            assert names.index(spec.after) < index


@pytest.fixture
def toy_teacher(tmp_path, cache):
    """A tiny 6-layer classifier saved as the pre-trained start and again as the cached teacher."""
    tokenizer, task = tiny_tokenizer(), toy_task()
    start = tmp_path / "pretrained"
    bc.save(tiny_model(layers=6), start, tokenizer)
    path = cache / "teachers" / "toy"  # the random start is the teacher: claims only need a fixed reference
    bc.save(bc.load(start), path, tokenizer)
    return task, tokenizer, start, lambda train: Teacher(bc.load(path), path, cached=True)


def gathered(toy_teacher, claims, console=None):
    task, tokenizer, start, teacher_for = toy_teacher
    options = runner.ReproduceOptions(claims, [task.name], TINY_BUDGET, str(start), train=TRAIN)
    return runner.gather(task, claims, options, console or Console(quiet=True), tokenizer, teacher_for)


@pytest.mark.slow
def test_every_claim_is_gathered_and_judged_then_resumed_from_the_cache(toy_teacher, monkeypatch):
    evidence = gathered(toy_teacher, runner.CLAIMS)
    for name, by_seed in evidence.results.items():
        assert len(by_seed[0]["scores"]) == 8, name
    findings = {c.id: runner.judge(c, evidence) for c in runner.CLAIMS}
    for claim_id, finding in findings.items():
        assert not finding.figure.startswith("could not be judged"), (claim_id, finding.figure)
        assert finding.verdict in ("holds", "holds partly", "does not hold", "not testable here")
    # the cut LayerDrop variants really have fewer layers than the one they were cut from
    assert len(evidence.metrics("LayerDrop p=0.2, cut to 3 layers")["kept_layers"]) == 3
    # a second gather measures nothing again: every variant and probe result comes from the cache
    monkeypatch.setattr(runner, "_scored", lambda *a: pytest.fail("re-measured a cached variant"))
    for name in runner.PROBES:
        monkeypatch.setitem(runner.PROBES, name, lambda inputs: pytest.fail("re-ran a cached probe"))
    again = gathered(toy_teacher, runner.CLAIMS)
    assert again.results.keys() == evidence.results.keys()
    assert again.scores("FLOP 50%", 0) == evidence.scores("FLOP 50%", 0)


def evidence_with(scores: dict[str, list[float]], seeds=(0,)) -> Evidence:
    evidence = Evidence(TINY_BUDGET, "toy", "classification")
    for name, values in scores.items():
        evidence.results[name] = {s: {"scores": values, "bytes": 100, "reports": []} for s in seeds}
    return evidence


def test_distillation_verdict_follows_the_share_of_the_teacher_kept():
    from bertcompress.reproduce.depth_claims import CLAIMS, STUDENT

    claim = CLAIMS[-1]
    teacher = [1.0] * 100
    assert claim.judge(evidence_with({"teacher": teacher, STUDENT: [1.0] * 98 + [0.0] * 2})).verdict == HOLDS
    assert claim.judge(evidence_with({"teacher": teacher, STUDENT: [1.0] * 93 + [0.0] * 7})).verdict == PARTLY


def test_a_judge_missing_its_evidence_reports_not_testable():
    claim = runner.select_claims(["9"])[0]
    finding = runner.judge(claim, evidence_with({"teacher": [1.0] * 10}))
    assert finding.verdict == NOT_TESTABLE and "could not be judged" in finding.figure


@pytest.mark.slow
def test_report_has_a_row_per_claim_and_its_plots(toy_teacher, tmp_path):
    claims = runner.select_claims(["6", "8", "15"])
    evidence = gathered(toy_teacher, claims)
    findings = {c.id: runner.judge(c, evidence) for c in claims}
    out = tmp_path / "reproduction"
    from bertcompress.files import write_atomically
    from bertcompress.reproduce.report import write_report

    write_atomically(out, lambda d: write_report(d, claims, [(evidence, findings)], {
        "environment": {"cpu": "test", "threads": 1}, "wall_seconds": 1.0, "model": "tiny"}), kind="reproduce")
    text = (out / "REPRODUCTION.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| ID")]
    assert [row.split(" | ")[0] for row in rows] == ["| 6", "| 8", "| 15"]
    assert all("(test)" in row for row in rows)  # the budget's name is on every verdict
    for png in ("toy-gordon.png", "toy-head-ablation.png", "toy-depth.png"):
        assert (out / png).exists() and f"]({png})" in text
    record = json.loads((out / "reproduction.json").read_text())
    assert [c["id"] for c in record["tasks"][0]["claims"]] == ["6", "8", "15"]


@pytest.mark.parametrize("args, fragment", [
    (["--claims", "3,99"], "unknown claim(s) 99; allowed: all or 1, 2"),
    (["--task", "imdb"], "unknown task(s) imdb; allowed: rotten_tomatoes, vitaminc, squad"),
    (["--seeds", "0"], "--seeds"),
    (["--model", "no/such/dir"], "model path 'no/such/dir' not found"),
])
def test_bad_reproduce_options_are_one_line(args, fragment, tmp_path):
    from tests.unit.test_cli import assert_clean_error, bertcompress

    result = bertcompress("reproduce", "--quick", "--out", tmp_path / "out", *args)
    assert_clean_error(result, fragment)
    assert not (tmp_path / "out").exists()


def test_reproduce_refuses_an_output_it_did_not_write(tmp_path):
    from tests.unit.test_cli import assert_clean_error, bertcompress

    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    assert_clean_error(bertcompress("reproduce", "--quick", "--out", mine), str(mine))
    assert (mine / "keep.txt").read_text() == "mine"


@pytest.fixture
def toy_qa_teacher(tmp_path, cache):
    """A tiny 6-layer extractive-QA model as the pre-trained start and the cached teacher."""
    from tests.conftest import toy_qa_task

    tokenizer, task = tiny_tokenizer(), toy_qa_task()
    start = tmp_path / "pretrained-qa"
    bc.save(tiny_model(layers=6, task_type="question_answering"), start, tokenizer)
    path = cache / "teachers" / "toy-qa"
    bc.save(bc.load(start), path, tokenizer)
    return task, tokenizer, start, lambda train: Teacher(bc.load(path), path, cached=True)


@pytest.mark.slow
def test_every_claim_is_judged_on_a_question_answering_task(toy_qa_teacher):
    evidence = gathered(toy_qa_teacher, runner.CLAIMS)
    assert evidence.task_type == "question_answering"
    for name, by_seed in evidence.results.items():  # one F1 per question, in [0, 1]
        assert len(by_seed[0]["scores"]) == 8 and all(0 <= s <= 1 for s in by_seed[0]["scores"]), name
    for claim in runner.CLAIMS:
        finding = runner.judge(claim, evidence)
        assert not finding.figure.startswith("could not be judged"), (claim.id, finding.figure)
