"""Importing this package registers every compression method (explicitly, module by module)."""
from bertcompress.methods.distillation import method as distillation_method  # noqa: F401
from bertcompress.methods.pruning import (fixed_attention, l0_heads, layers, magnitude, movement,  # noqa: F401
                                          rpp, structured)
from bertcompress.methods.quantization import dynamic, mixed_precision, ptq, qat, quant_noise  # noqa: F401
