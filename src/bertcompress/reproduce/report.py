"""REPRODUCTION.md, reproduction.json and the plots, from judged claims; reads evidence, knows no method."""
from __future__ import annotations

import json
from pathlib import Path

from bertcompress.analysis.plots import value_heatmap
from bertcompress.evaluation.significance import ALPHA, BOOTSTRAP_ROUNDS, compare
from bertcompress.reports.plots import curves
from bertcompress.reports.tables import markdown_table
from bertcompress.reproduce.evidence import TEACHER, Evidence
from bertcompress.reproduce.spec import Claim, Finding

RULES = (f"A difference is **real** only when a paired test on the same examples gives p < {ALPHA} (exact "
         f"McNemar for right/wrong outcomes; a paired bootstrap with {BOOTSTRAP_ROUNDS} resamples for per-question "
         "F1) **and** it exceeds the standard deviation of the per-seed differences (zero with one seed); "
         "otherwise it is *within noise*. 'Really worse' and 'really better' below mean a real difference of that "
         "sign. Each claim's own rule is in its row.")


def _series(e: Evidence, names: dict[float, str]) -> list[tuple[float, float]]:
    return [(x, e.mean(n) / 100) for x, n in names.items() if n in e.results]


def _plots(e: Evidence, directory: Path) -> list[tuple[str, str]]:
    """(title, file) of each plot whose evidence exists."""
    from bertcompress.reproduce import depth_claims as depth, quantization_claims as quant, weight_claims as weight
    made, prefix, teacher = [], e.task, e.mean(TEACHER) / 100

    def curve(name: str, title: str, series: dict, x_label: str) -> None:
        if any(series.values()):
            path = directory / f"{prefix}-{name}.png"
            curves(series, x_label, path, f"{e.task}: {title}", reference=teacher)
            made.append((title, path.name))

    curve("gordon", "magnitude pruning (Gordon curve)",
          {"magnitude one-shot": [(0, teacher), *_series(e, {s: n for s, n in weight.GORDON.items()})]},
          "% of encoder weights pruned")
    curve("movement-vs-magnitude", "movement vs magnitude",
          {"movement": _series(e, weight.MOVEMENT), "magnitude gradual": _series(e, weight.MAGNITUDE)},
          "% of encoder weights left")
    curve("bits", "bits vs accuracy",
          {"truncation (round to nearest)": _series(e, {b: n for b, n in quant.TRUNCATED.items()}),
           "QAT int8": _series(e, {8: quant.QAT}), "Q-BERT mixed, 3 avg": _series(e, {3: quant.MIXED}),
           quant.UNIFORM: _series(e, {3: quant.UNIFORM})}, "weight bits")
    curve("depth", "depth vs accuracy",
          {"teacher cut": [*_series(e, depth.TEACHER_CUT), (6, teacher)],
           "LayerDrop, cut": _series(e, {**depth.LAYERDROP_CUT, 6: depth.LAYERDROP}),
           "distilled student": _series(e, {3: depth.STUDENT})}, "layers")
    if "heads" in e.probes:
        heads = e.probe("heads")
        deltas = [[compare(heads["base"], heads["without_head"][f"{layer}.{h}"]).delta for h in range(n)]
                  for layer, n in enumerate(heads["heads_per_layer"])]
        path = directory / f"{prefix}-head-ablation.png"
        value_heatmap(deltas, path, f"{e.task}: Δ score when one head is removed", "Δ (points)", diverging=True,
                      fmt="{:+.1f}")
        made.append(("head importance (single-head ablation)", path.name))
    return made


def _section(e: Evidence, claims: list[Claim], findings: dict[str, Finding], plots: list) -> list[str]:
    quick = f" ({e.budget.name})" if e.budget.name != "full" else ""
    body = [[c.id, c.claim, c.paper, findings[c.id].figure
             + "".join(f"<br>{n}" for n in findings[c.id].notes), f"**{findings[c.id].verdict}**{quick}",
             c.rule, c.differs] for c in claims]
    n = len(e.scores(TEACHER, e.seeds[0]))
    lines = [f"## {e.task}", "",
             f"Teacher: {e.shown(TEACHER)} ({'F1' if e.task_type == 'question_answering' else 'accuracy'}, "
             f"{n} test examples, seeds {e.seeds}). Budget: {e.budget.describe()}.", "",
             markdown_table(["ID", "claim", "paper (figure, setting)", "ours", "verdict", "rule", "differs here"],
                            body), ""]
    lines += [f"![{title}]({name})" for title, name in plots]
    return [*lines, ""]


def write_report(directory: Path, claims: list[Claim], sections: list[tuple[Evidence, dict[str, Finding]]],
                 context: dict) -> None:
    env = context["environment"]
    minutes = context["wall_seconds"] / 60
    lines = ["# Reproducing the survey's claims", "",
             f"`bertcompress reproduce` on {context['model']}; CPU {env.get('cpu', '?')} "
             f"({', '.join(env.get('cpu_features') or ['no AVX-512/VNNI/AMX'])}), {env.get('threads')} "
             f"thread(s); wall time {minutes:.1f} min for this run (cached variants and results reused).", "",
             "## How verdicts are decided", "", RULES, ""]
    record = {"context": context, "rules": RULES, "tasks": []}
    for evidence, findings in sections:
        plots = _plots(evidence, directory)
        lines += _section(evidence, claims, findings, plots)
        record["tasks"].append({"evidence": evidence.to_dict(), "plots": [p for _, p in plots], "claims": [
            {"id": c.id, "claim": c.claim, "paper": c.paper, "rule": c.rule, "differs": c.differs,
             "figure": findings[c.id].figure, "verdict": findings[c.id].verdict, "notes": list(findings[c.id].notes)}
            for c in claims]})
    (directory / "REPRODUCTION.md").write_text("\n".join(lines), encoding="utf-8")
    (directory / "reproduction.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
