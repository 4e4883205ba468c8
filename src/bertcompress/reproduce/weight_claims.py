"""Claims 8-11: weight-level sparsity (Gordon's magnitude curve, Sanh's movement pruning, RPP) and whether
sparsity buys time."""
from __future__ import annotations

import bertcompress as bc
from bertcompress.reproduce.evidence import Evidence
from bertcompress.reproduce.spec import DOES_NOT_HOLD, HOLDS, PARTLY, Budget, Claim, Finding, Spec

GORDON = {share: f"magnitude one-shot {share}%" for share in (30, 40, 50, 60, 70, 80, 90)}


def gordon_specs(budget: Budget) -> list[Spec]:
    return [Spec(name, (bc.MagnitudePruning(sparsity=share / 100),), timed=share == 90)
            for share, name in GORDON.items()]


def gordon_judge(e: Evidence) -> Finding:
    worse = {share: e.diff(name).worse for share, name in GORDON.items()}
    lossless = not worse[30] and not worse[40]
    degrades = all(worse[share] for share in GORDON if share >= 60)
    figure = "; ".join(f"{share}%: {e.shown(name)} ({e.diff(name).delta:+.2f}{'' if e.diff(name).real else ', noise'})"
                       for share, name in GORDON.items())
    return Finding(f"teacher {e.shown('teacher')}; {figure}",
                   HOLDS if lossless and degrades else PARTLY if lossless or degrades else DOES_NOT_HOLD)


LEFT = (10, 3)  # % of encoder weights left, as Sanh et al.'s table
MOVEMENT = {left: f"movement {left}% left" for left in LEFT}
MAGNITUDE = {left: f"magnitude gradual {left}% left" for left in LEFT}


def sanh_specs(budget: Budget) -> list[Spec]:
    common = dict(epochs=budget.epochs(2.0), warmup=0.1, cooldown=0.25, distill=True, learning_rate=1e-4)
    return [spec for left in LEFT for spec in (
        Spec(MOVEMENT[left], (bc.MovementPruning(sparsity=1 - left / 100, score_init="magnitude", **common),)),
        Spec(MAGNITUDE[left], (bc.MagnitudePruning(sparsity=1 - left / 100, schedule="gradual", **common),)))]


def sanh_judge(e: Evidence) -> Finding:
    retained = {left: e.retained(MOVEMENT[left]) for left in LEFT}
    ahead = {left: e.diff(MOVEMENT[left], MAGNITUDE[left]) for left in LEFT}
    keeps = retained[min(LEFT)] >= 0.95
    beats = ahead[min(LEFT)].better
    figure = "; ".join(f"{left}% left: movement {e.shown(MOVEMENT[left])} ({100 * retained[left]:.1f}% of the "
                       f"teacher), magnitude {e.shown(MAGNITUDE[left])}, movement - magnitude "
                       f"{ahead[left].describe()}" for left in LEFT)
    return Finding(figure, HOLDS if keeps and beats else PARTLY if keeps or beats else DOES_NOT_HOLD,
                   (f"95% judged at {min(LEFT)}% left, stricter than the paper's 5%",))


SPARSE = GORDON[90]
FASTER = 1.1


def sparse_speed_specs(budget: Budget) -> list[Spec]:
    return [spec for spec in gordon_specs(budget) if spec.name == SPARSE]


def sparse_speed_judge(e: Evidence) -> Finding:
    smaller, speed = e.smaller(SPARSE), e.speed[SPARSE]
    figure = (f"{SPARSE}: {smaller:.2f}x smaller on disk (stored sparse), {speed['b32']:.2f}x (b32) / "
              f"{speed['b1']:.2f}x (b1) vs fp32")
    cuts_size, no_time = smaller >= 2, speed["b32"] < FASTER
    return Finding(figure, HOLDS if cuts_size and no_time else PARTLY if cuts_size or no_time else DOES_NOT_HOLD)


RPP = "RPP 59%"


def rpp_specs(budget: Budget) -> list[Spec]:
    return [Spec(RPP, (bc.ReweightedProximalPruning(sparsity=0.59, epochs=budget.epochs(2.0), distill=True),))]


def rpp_judge(e: Evidence) -> Finding:
    return Finding(f"{e.line(RPP)}, sparsity {100 * e.metrics(RPP)['sparsity']:.1f}%",
                   DOES_NOT_HOLD if e.diff(RPP).worse else HOLDS)


CLAIMS = [
    Claim("8", "30-40% of weights can be pruned by magnitude without loss; accuracy degrades beyond.",
          "Gordon et al. 2020: BERT-base, pruned during pre-training, GLUE unchanged to 30-40%, then falls",
          "holds if 30% and 40% are not really worse than the teacher and every level ≥60% is; partly if one "
          "half holds",
          "pruned after fine-tuning, one-shot, no recovery training (Gordon pruned during pre-training); "
          "encoder Linears only, global ranking",
          gordon_specs, gordon_judge),
    Claim("9", "Movement pruning keeps about 95% of the performance with 5% of the encoder's weights, and "
               "beats magnitude pruning at high sparsity.",
          "Sanh et al. 2020: BERT-base, SQuAD/MNLI/QQP; at 3% left movement ≫ magnitude; ~95% retained at 5%",
          "holds if movement at 3% left keeps ≥95% of the teacher's score and is really better than gradual "
          "magnitude with the same budget; partly if one",
          "MiniLM-L6; 2 epochs (x budget) at lr 1e-4, distilled, hard movement with magnitude-initialised scores",
          sanh_specs, sanh_judge),
    Claim("10", "Element-wise sparsity cuts size but not time without special hardware.",
          "the survey's own view, no figure",
          f"holds if 90% sparsity is ≥2x smaller on disk and <{FASTER}x faster at batch 32 (interleaved with "
          "the teacher); partly if one",
          "PyTorch dense kernels on this CPU (sparse kernels are measured in bench/sparse_kernels.py)",
          sparse_speed_specs, sparse_speed_judge),
    Claim("11", "Reweighted proximal pruning reaches about 59% sparsity without loss.",
          "Guo et al. 2019 (RPP): BERT-base, 59% sparsity on GLUE/SQuAD without loss",
          "holds unless RPP at 59% is really worse than the teacher",
          "MiniLM-L6, RPP after fine-tuning for 2 epochs (x budget), distilled; Guo pruned during pre-training too",
          rpp_specs, rpp_judge),
]
