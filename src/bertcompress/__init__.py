"""bertcompress: make BERT-family encoders smaller and faster while keeping their accuracy."""
from bertcompress import methods  # noqa: F401  (registers every method)
from bertcompress.core.api import compress
from bertcompress.core.config import MethodConfig
from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError
from bertcompress.core.registry import registered
from bertcompress.core.report import StepReport
from bertcompress.data import tasks
from bertcompress.evaluation.api import benchmark, evaluate
from bertcompress.io import load, load_tokenizer, save
from bertcompress.training.loop import TrainConfig
from bertcompress.methods.pruning.fixed_attention import FixedAttention
from bertcompress.methods.pruning.l0_heads import L0HeadGates
from bertcompress.methods.pruning.layers import LayerDrop, LayerRemoval
from bertcompress.methods.distillation.method import Distillation
from bertcompress.methods.pruning.flop import FLOP
from bertcompress.methods.pruning.magnitude import MagnitudePruning
from bertcompress.methods.pruning.movement import MovementPruning
from bertcompress.methods.pruning.rpp import ReweightedProximalPruning
from bertcompress.methods.pruning.structured import FFNPruning, HeadPruning
from bertcompress.methods.pruning.vocabulary import VocabularyPruning
from bertcompress.methods.quantization.dynamic import DynamicInt8
from bertcompress.methods.quantization.mixed_precision import QBertMixedPrecision
from bertcompress.methods.quantization.ptq import NaivePTQ
from bertcompress.methods.quantization.qat import Q8BertQAT
from bertcompress.methods.quantization.quant_noise import QuantNoise

__version__ = "0.1.0"
__all__ = ["compress", "Context", "MethodConfig", "BertCompressError", "StepReport", "registered", "tasks",
           "load", "load_tokenizer", "save", "TrainConfig", "DynamicInt8", "HeadPruning", "FFNPruning", "LayerDrop", "LayerRemoval", "FixedAttention", "L0HeadGates", "Distillation", "MagnitudePruning", "FLOP", "MovementPruning", "ReweightedProximalPruning", "NaivePTQ", "QBertMixedPrecision", "Q8BertQAT", "QuantNoise", "VocabularyPruning", "evaluate", "benchmark"]
