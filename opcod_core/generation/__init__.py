"""Generation backends: one protocol, a transformers implementation and (optionally) vLLM."""

from opcod_core.generation.base import Completion, GenerationBackend, SamplingParams

__all__ = ["Completion", "GenerationBackend", "SamplingParams"]
