"""Claims 5-7 and 12: what attention heads do and how many a fine-tuned model needs (Kovaleva, Michel,
Voita, Raganato)."""
from __future__ import annotations

import math
from collections import Counter

import bertcompress as bc
from bertcompress.evaluation.significance import compare
from bertcompress.reproduce.evidence import Evidence
from bertcompress.reproduce.spec import DOES_NOT_HOLD, HOLDS, NOT_TESTABLE, PARTLY, Budget, Claim, Finding, Spec

HARMLESS_SHARE = 0.9  # "not harmful": at most 10% of single-head removals really hurt


def ablation_outcomes(e: Evidence) -> dict[str, int]:
    """How many single-head removals really hurt, really help, or stay within noise (first seed)."""
    heads = e.probe("heads")
    found = Counter()
    for scores in heads["without_head"].values():
        difference = compare(heads["base"], scores)
        found["worse" if difference.worse else "better" if difference.better else "noise"] += 1
    return found


def kovaleva_judge(e: Evidence) -> Finding:
    heads, layers = e.probe("heads"), e.probe("layer_change")
    patterns = Counter(heads["patterns"])
    repeated = 1 - patterns["heterogeneous"] / len(heads["patterns"])
    outcomes = ablation_outcomes(e)
    total = sum(outcomes.values())
    change = layers["relative_change"]
    top_two = sorted(range(len(change)), key=lambda i: -change[i])[:2]
    last_two = set(top_two) == {len(change) - 2, len(change) - 1}
    restored = [100 * sum(s) / len(s) for s in layers["restored"]]
    parts = {"patterns repeat": repeated >= 0.5, "single removals harmless": outcomes["worse"] <= (1 - HARMLESS_SHARE) * total,
             "some removals help": outcomes["better"] > 0, "last two layers change most": last_two}
    figure = (f"{100 * repeated:.0f}% of heads show one of 4 recurring patterns ({dict(patterns)}); single-head "
              f"removals: {outcomes['worse']} really worse, {outcomes['better']} really better, {outcomes['noise']} "
              f"within noise of {total}; relative weight change per layer {[round(c, 4) for c in change]} "
              f"(largest: layers {sorted(top_two)}); test score with one layer put back to pre-trained "
              f"{[round(r, 1) for r in restored]}")
    held = sum(parts.values())
    verdict = HOLDS if held == len(parts) else DOES_NOT_HOLD if held == 0 else PARTLY
    return Finding(figure, verdict, tuple(f"{k}: {'yes' if v else 'no'}" for k, v in parts.items()))


HEADS_PRUNED = {share: f"heads -{share}% one-shot" for share in (20, 40)}


def michel_specs(budget: Budget) -> list[Spec]:
    return [Spec(name, (bc.HeadPruning(fraction=share / 100),)) for share, name in HEADS_PRUNED.items()]


def michel_judge(e: Evidence) -> Finding:
    heads = e.probe("heads")
    outcomes = ablation_outcomes(e)
    total = sum(outcomes.values())
    lone = [compare(heads["base"], layer["scores"]) for layer in heads["lone_head"]]
    lone_ok = sum(not d.worse for d in lone)
    pruned = {share: e.diff(name) for share, name in HEADS_PRUNED.items()}
    parts = {"most single heads removable": (outcomes["noise"] + outcomes["better"]) / total > 0.5,
             "one head per layer enough": lone_ok > len(lone) / 2,
             "20% pruned without loss": not pruned[20].worse, "40% pruned without loss": not pruned[40].worse}
    figure = (f"{outcomes['noise'] + outcomes['better']} of {total} heads removable alone (not really worse); "
              f"one head kept in a layer: no real loss in {lone_ok} of {len(lone)} layers "
              f"({', '.join(f'L{i} {d.delta:+.1f}' for i, d in enumerate(lone))}); "
              + "; ".join(e.line(name) for name in HEADS_PRUNED.values()))
    held = sum(parts.values())
    verdict = HOLDS if held == len(parts) else DOES_NOT_HOLD if held == 0 else PARTLY
    return Finding(figure, verdict, tuple(f"{k}: {'yes' if v else 'no'}" for k, v in parts.items()))


L0 = "L0 head gates (penalty 0.05)"


def voita_specs(budget: Budget) -> list[Spec]:
    return [Spec(L0, (bc.L0HeadGates(epochs=budget.epochs(1.0)),))]


def hypergeometric_tail(population: int, marked: int, drawn: int, hits: int) -> float:
    """P(at least `hits` marked among `drawn` taken without replacement): are role heads over-represented?"""
    total = math.comb(population, drawn)
    return sum(math.comb(marked, k) * math.comb(population - marked, drawn - k)
               for k in range(hits, min(marked, drawn) + 1)) / total


def voita_judge(e: Evidence) -> Finding:
    heads = e.probe("heads")
    counts, roles = heads["heads_per_layer"], heads["roles"]
    offsets = [sum(counts[:layer]) for layer in range(len(counts))]
    role_heads = {i for i, role in enumerate(roles) if role != "none"}
    surviving = {offsets[layer] + head for layer, kept in enumerate(e.metrics(L0)["surviving_heads"])
                 for head in kept}
    if not role_heads:
        return Finding("no positional or rare-word heads found in the teacher", NOT_TESTABLE)
    hits = len(role_heads & surviving)
    p = hypergeometric_tail(len(roles), len(role_heads), len(surviving), hits)
    figure = (f"{len(role_heads)} of {len(roles)} heads are positional or rare-word ({Counter(r for r in roles if r != 'none')}); "
              f"L0 gates kept {len(surviving)}, of which {hits} role heads (chance: "
              f"{len(role_heads) * len(surviving) / len(roles):.1f}; hypergeometric p={p:.3g}); {e.line(L0)}")
    return Finding(figure, HOLDS if p < 0.05 else DOES_NOT_HOLD,
                   ("syntactic heads need a parser: not identified here",))


FIXED = "fixed positional patterns, 1 learnable head per layer"


def raganato_specs(budget: Budget) -> list[Spec]:
    return [Spec(FIXED, (bc.FixedAttention(learnable_heads=1, epochs=budget.epochs(1.0)),))]


def raganato_judge(e: Evidence) -> Finding:
    return Finding(e.line(FIXED), DOES_NOT_HOLD if e.diff(FIXED).worse else HOLDS)


CLAIMS = [
    Claim("5", "Attention patterns repeat across heads; disabling heads is not harmful and sometimes helps; the "
               "last two layers change most in fine-tuning and carry the task.",
          "Kovaleva et al. 2019: BERT-base on GLUE; 5 pattern classes; disabling some heads raised accuracy by "
          "up to 3.2%; last two layers changed most",
          "four parts, each yes/no: ≥50% of heads in a recurring (non-heterogeneous) pattern; ≤10% of single "
          "removals really worse; ≥1 really better; the two layers with the largest relative weight change are "
          "the last two. holds if all, partly if some",
          "MiniLM-L6 (6 layers x 12 heads); patterns by attention-mass rules, not a trained CNN classifier; "
          "ablations on the analysis examples",
          lambda budget: [], kovaleva_judge, probes=("heads", "layer_change")),
    Claim("6", "Most heads can be removed one at a time; one head per layer is enough at test time; 20-40% of "
               "heads can be pruned without noticeable loss.",
          "Michel et al. 2019: BERT-base MNLI, most layers reducible to one head; 20-40% pruned heads "
          "with no noticeable loss",
          "four parts: >50% of single removals not really worse; one head per layer not really worse in a "
          "majority of layers (head chosen on validation); 20% and 40% one-shot pruning not really worse. "
          "holds if all, partly if some",
          "MiniLM-L6; gradient importance (Michel's proxy) with global ranking; no retraining after pruning",
          michel_specs, michel_judge, probes=("heads",)),
    Claim("7", "The important heads are positional, syntactic or rare-word heads, and are the last that L0 "
               "gates close.",
          "Voita et al. 2019: Transformer NMT encoder, 48 heads; positional/syntactic/rare-word heads survive "
          "L0 pruning to ~10 heads",
          "holds if role heads are over-represented among the heads L0 gates keep (hypergeometric p < 0.05)",
          "a BERT-family classifier, not NMT; no parser, so syntactic heads are not identified; L0 penalty "
          "0.05, 1 epoch (x budget)",
          voita_specs, voita_judge, probes=("heads",)),
    Claim("12", "Fixed positional attention patterns in place of learnable heads cost nothing.",
          "Raganato et al. 2020: NMT encoder, 7 of 8 heads per layer fixed, within ~1 BLEU or better",
          "holds unless the model is really worse than the teacher",
          "a classifier, not NMT; 11 of 12 heads per layer fixed; distilled from the teacher",
          raganato_specs, raganato_judge),
]
