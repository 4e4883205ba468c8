"""Claims 13-15: depth (LayerDrop against cutting a normally trained model), FLOP against truncated SVD at
the same size, and a half-depth distilled student."""
from __future__ import annotations

import bertcompress as bc
from bertcompress.evaluation.significance import compare
from bertcompress.reproduce.evidence import TEACHER, Evidence
from bertcompress.reproduce.spec import DOES_NOT_HOLD, HOLDS, PARTLY, Budget, Claim, Finding, Spec

DEPTHS = (3, 4)
LAYERDROP = "LayerDrop p=0.2"
LAYERDROP_CUT = {k: f"LayerDrop p=0.2, cut to {k} layers" for k in DEPTHS}
TEACHER_CUT = {k: f"teacher cut to {k} layers" for k in DEPTHS}


def layerdrop_specs(budget: Budget) -> list[Spec]:
    trained = Spec(LAYERDROP, (bc.LayerDrop(p=0.2, epochs=budget.epochs(1.0), distill=True),))
    return [trained,
            *[Spec(LAYERDROP_CUT[k], (bc.LayerRemoval(keep=k),), after=LAYERDROP) for k in DEPTHS],
            *[Spec(TEACHER_CUT[k], (bc.LayerRemoval(keep=k),)) for k in DEPTHS]]


def layerdrop_judge(e: Evidence) -> Finding:
    better = {k: e.diff(LAYERDROP_CUT[k], TEACHER_CUT[k]) for k in DEPTHS}
    figure = "; ".join(f"{k} layers: LayerDrop {e.shown(LAYERDROP_CUT[k])} vs cut teacher {e.shown(TEACHER_CUT[k])} "
                       f"({better[k].describe()})" for k in DEPTHS) + f"; full depth after LayerDrop {e.line(LAYERDROP)}"
    held = sum(d.better for d in better.values())
    return Finding(figure, HOLDS if held == len(DEPTHS) else PARTLY if held else DOES_NOT_HOLD)


FLOP = "FLOP 50%"


def flop_specs(budget: Budget) -> list[Spec]:
    return [Spec(FLOP, (bc.FLOP(target_density=0.5, epochs=budget.epochs(1.0)),))]


def flop_judge(e: Evidence) -> Finding:
    density = e.metrics(FLOP)["density"]
    svd = e.probe("svd")
    seeds = e.seeds
    flop_scores = [x for s in seeds for x in e.scores(FLOP, s)]
    svd_scores = [x for s in seeds for x in e.probe("svd", s)["scores"]]
    versus = compare(svd_scores, flop_scores)
    on_target = abs(density - 0.5) <= 0.02
    figure = (f"{e.line(FLOP)}, stored density {100 * density:.1f}% (target 50%); truncated SVD at FLOP's ranks + "
              f"the same fine-tuning {100 * sum(svd_scores) / len(svd_scores):.2f}; FLOP - SVD {versus.describe()}")
    return Finding(figure, HOLDS if on_target and versus.better else PARTLY if on_target or versus.better
                   else DOES_NOT_HOLD, (f"SVD model {svd['parameters']:,} vs FLOP {svd['flop_parameters']:,} parameters",))


STUDENT = "distilled student, 3 of 6 layers"


def distillation_specs(budget: Budget) -> list[Spec]:
    return [Spec(STUDENT, (bc.Distillation(keep=3, epochs=budget.epochs(2.0)),))]


def distillation_judge(e: Evidence) -> Finding:
    kept = e.retained(STUDENT)
    figure = f"{e.line(STUDENT)}: {100 * kept:.1f}% of the teacher ({e.shown(TEACHER)})"
    return Finding(figure, HOLDS if kept >= 0.97 else PARTLY if kept >= 0.9 else DOES_NOT_HOLD)


CLAIMS = [
    Claim("13", "LayerDrop: any depth at test time without retraining, better than cutting a normally trained "
                "model.",
          "Fan et al. 2019: RoBERTa/Transformer, pruned to half depth at inference beats training a small model "
          "from scratch and cutting a normal one",
          "holds if, at 3 and at 4 of 6 layers, the LayerDrop model cut (every other layer kept, no retraining) "
          "is really better than the teacher cut the same way; partly at one depth",
          "LayerDrop applied in fine-tuning (1 epoch x budget, distilled), not in pre-training",
          layerdrop_specs, layerdrop_judge),
    Claim("14", "FLOP reaches a chosen size on any matrix multiply with less loss than plain truncated SVD at "
                "the same size.",
          "Wang et al. 2019: low-rank with L0 gates on ranks, better than SVD and AGP at equal parameter count",
          "holds if FLOP's stored density is within 2 points of its 50% target and FLOP is really better than "
          "truncated SVD at FLOP's own ranks with the same fine-tuning; partly if one",
          "MiniLM-L6 encoder Linears, 1 epoch (x budget); the SVD baseline gets the same distilled fine-tuning",
          flop_specs, flop_judge, probes=("svd",)),
    Claim("15", "A half-depth distilled student keeps about 97% of its teacher.",
          "Sanh et al. 2019 (DistilBERT): 6 of 12 layers, 97% of BERT-base on GLUE",
          "holds if ≥97% of the teacher's score; partly if ≥90%",
          "3 of MiniLM-L6's 6 layers, task distillation only (DistilBERT also distilled in pre-training), "
          "2 epochs (x budget)",
          distillation_specs, distillation_judge),
]
