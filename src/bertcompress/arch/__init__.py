"""Where each part of a BERT-family model lives; methods ask here instead of hard-coding module paths."""
from bertcompress.arch.spec import ArchSpec, get_spec

__all__ = ["ArchSpec", "get_spec"]
