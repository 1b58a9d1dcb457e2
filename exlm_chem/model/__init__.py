"""The ExLM model: config, states expansion, 2D-RoPE encoder, transition head and DAG loss."""

from .config import PRESETS, ExLMConfig
from .dag import dag_best_path, dag_log_likelihood
from .exlm import (
    POOLINGS,
    ExLMModel,
    check_pooling,
    pool_states,
    pooled_size,
    vector_names,
)
from .storage import (
    load_model,
    load_model_directory,
    model_fingerprint,
    model_label,
    model_tokenizer_path,
    save_model,
)

__all__ = [
    "PRESETS",
    "ExLMConfig",
    "ExLMModel",
    "dag_best_path",
    "dag_log_likelihood",
    "load_model",
    "load_model_directory",
    "model_tokenizer_path",
    "model_fingerprint",
    "model_label",
    "POOLINGS",
    "check_pooling",
    "pool_states",
    "pooled_size",
    "vector_names",
    "save_model",
]
