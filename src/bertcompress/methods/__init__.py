"""Importing this package registers every compression method (explicitly, module by module)."""
from bertcompress.methods.distillation import method as distillation_method  # noqa: F401
from bertcompress.methods.pruning import (fixed_attention, flop, l0_heads, layers, magnitude,  # noqa: F401
                                          movement, rpp, structured, vocabulary)
from bertcompress.methods.quantization import dynamic, mixed_precision, ptq, qat, quant_noise  # noqa: F401
