"""Claims 1-4: truncation vs QAT (Q8BERT), Quant-Noise, Q-BERT's sensitivity and mixed precision, and
whether quantization buys time."""
from __future__ import annotations

import bertcompress as bc
from bertcompress.reproduce.evidence import Evidence
from bertcompress.reproduce.spec import DOES_NOT_HOLD, HOLDS, PARTLY, Budget, Claim, Finding, Spec

QAT = "Q8BERT QAT int8"
TRUNCATED = {bits: f"truncated w{bits}" for bits in (8, 4, 2)}


def q8bert_specs(budget: Budget) -> list[Spec]:
    truncated = [Spec(name, (bc.NaivePTQ(weight_bits=bits, embeddings=True),)) for bits, name in TRUNCATED.items()]
    return [*truncated, Spec(QAT, (bc.Q8BertQAT(epochs=budget.epochs(0.5), learning_rate=5e-6),))]


def q8bert_judge(e: Evidence) -> Finding:
    low_bits_hurt = any(e.diff(TRUNCATED[b]).worse for b in (4, 2))
    qat = e.diff(QAT)
    qat_close = not qat.worse
    smaller = e.smaller(QAT)
    figure = "; ".join([*(e.line(n) for n in TRUNCATED.values()), e.line(QAT), f"QAT {smaller:.2f}x smaller"])
    parts = [low_bits_hurt, qat_close, smaller >= 3.5]
    return Finding(figure, HOLDS if all(parts) else PARTLY if any(parts) else DOES_NOT_HOLD)


IPQ_AFTER, QUANT_NOISE = "iPQ after training", "Quant-Noise iPQ p=0.1"


def quant_noise_specs(budget: Budget) -> list[Spec]:
    ipq = dict(scheme="ipq", centroid_epochs=budget.epochs(0.25))
    return [Spec(IPQ_AFTER, (bc.QuantNoise(epochs=0, **ipq),)),
            Spec(QUANT_NOISE, (bc.QuantNoise(p=0.1, epochs=budget.epochs(0.5), **ipq),))]


def quant_noise_judge(e: Evidence) -> Finding:
    gain = e.diff(QUANT_NOISE, IPQ_AFTER)
    figure = (f"{e.line(IPQ_AFTER)}; {e.line(QUANT_NOISE)}; Quant-Noise vs after-training {gain.describe()}; "
              f"{e.smaller(QUANT_NOISE):.1f}x smaller")
    return Finding(figure, HOLDS if gain.better else DOES_NOT_HOLD)


LOW_BITS = 3
EMBEDDINGS_ONLY, ENCODER_ONLY = f"embeddings only w{LOW_BITS}", f"encoder Linears only w{LOW_BITS}"
GROUP = 16  # weights per range: divides every hidden and FFN size of the BERT family (and of test models)
MIXED, UNIFORM = "Q-BERT mixed precision, 3 bits average", f"uniform w3 g{GROUP}"


def qbert_specs(budget: Budget) -> list[Spec]:
    return [Spec(EMBEDDINGS_ONLY, (bc.NaivePTQ(weight_bits=LOW_BITS, targets=[], embeddings=True),)),
            Spec(ENCODER_ONLY, (bc.NaivePTQ(weight_bits=LOW_BITS),)),
            Spec(MIXED, (bc.QBertMixedPrecision(average_bits=3.0, group_size=GROUP),)),
            Spec(UNIFORM, (bc.NaivePTQ(weight_bits=3, granularity="group", group_size=GROUP, embeddings=True),))]


def qbert_judge(e: Evidence) -> Finding:
    sensitive = e.diff(EMBEDDINGS_ONLY, ENCODER_ONLY).worse
    mixed = e.diff(MIXED, UNIFORM)
    beats = mixed.better and e.bytes(MIXED) <= 1.02 * e.bytes(UNIFORM)
    figure = (f"{e.line(EMBEDDINGS_ONLY)} vs {e.line(ENCODER_ONLY)}; {e.line(MIXED)} at {e.smaller(MIXED):.2f}x "
              f"smaller vs {e.line(UNIFORM)} at {e.smaller(UNIFORM):.2f}x; mixed vs uniform {mixed.describe()}")
    return Finding(figure, HOLDS if sensitive and beats else PARTLY if sensitive or beats else DOES_NOT_HOLD)


INT8, WEIGHT_ONLY = "dynamic int8 (integer kernels)", f"w4 g{GROUP} weight-only (dequantized)"
FASTER = 1.1  # a speedup below this is "no time saved"


def speed_specs(budget: Budget) -> list[Spec]:
    return [Spec(INT8, (bc.DynamicInt8(),), timed=True),
            Spec(WEIGHT_ONLY, (bc.NaivePTQ(weight_bits=4, granularity="group", group_size=GROUP, embeddings=True),),
                 timed=True)]


def speed_judge(e: Evidence) -> Finding:
    faster = {n: e.speed[n]["b32"] >= FASTER for n in (INT8, WEIGHT_ONLY)}
    figure = "; ".join(f"{n}: {e.smaller(n):.2f}x smaller, {e.speed[n]['b32']:.2f}x (b32) / {e.speed[n]['b1']:.2f}x "
                       "(b1) vs fp32" for n in (INT8, WEIGHT_ONLY))
    verdict = HOLDS if not any(faster.values()) else DOES_NOT_HOLD if all(faster.values()) else PARTLY
    return Finding(figure, verdict, ("int8 GEMM kernels (AVX2/VNNI) are stock CPU hardware here",)
                   if faster[INT8] else ())


CLAIMS = [
    Claim("1", "Truncating weights to low bits costs much accuracy; quantization-aware training recovers it.",
          "Q8BERT (Zafrir et al. 2019): 8-bit QAT within ~0.1 point of BERT-base fp32 on GLUE/SQuAD, 4x smaller",
          "holds if truncation at 4 or 2 bits is really worse than the teacher, QAT int8 is not, and QAT is "
          "≥3.5x smaller; partly if some of these",
          "MiniLM-L6 not BERT-base; QAT trains 0.5 epoch (x budget), distilled from the fp32 teacher",
          q8bert_specs, q8bert_judge),
    Claim("2", "Quant-Noise: noise on a random subset of weights during training makes iPQ work better than "
               "quantizing after training.",
          "Fan et al. 2020: RoBERTa MNLI iPQ 256 centroids, after training vs Quant-Noise (p=0.1): large gap",
          "holds if Quant-Noise iPQ is really better than iPQ after training (both get the same centroid "
          "fine-tuning); otherwise does not hold",
          "MiniLM-L6; 256 centroids of 8-weight blocks per Linear and for the embeddings; 0.5 epoch of noise",
          quant_noise_specs, quant_noise_judge),
    Claim("3", "Q-BERT: the embedding layer is more sensitive to quantization than the encoder weights; "
               "Hessian-guided mixed precision beats uniform bits at the same size.",
          "Shen et al. 2020: BERT-base, 4/8-bit embeddings vs weights on SST-2/MNLI; mixed 2/3-bit beats "
          "uniform at the same size",
          f"holds if embeddings-only at {LOW_BITS} bits is really worse than encoder-only at {LOW_BITS} bits "
          f"and mixed precision is really better than uniform 3-bit in groups of {GROUP} at no larger size; partly "
          "if one",
          "MiniLM-L6 (30k x 384 embeddings, about as many weights as its encoder); no training after quantizing",
          qbert_specs, qbert_judge),
    Claim("4", "Quantization reduces size but not inference time without special hardware.",
          "the survey's own view (Ganesh et al. 2021), no figure",
          f"holds if no quantized variant is ≥{FASTER}x faster at batch 32 (interleaved with the teacher); "
          "partly if only some are; does not hold if all are",
          "a stock CPU of this machine; int8 uses PyTorch's integer GEMMs",
          speed_specs, speed_judge),
]
