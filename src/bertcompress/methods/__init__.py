"""Importing this package registers every compression method (explicitly, module by module)."""
from bertcompress.methods.quantization import dynamic, ptq, qat, quant_noise  # noqa: F401
