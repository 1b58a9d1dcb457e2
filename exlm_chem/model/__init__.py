"""The ExLM model: config, states expansion, 2D-RoPE encoder, transition head and DAG loss."""

from .config import PRESETS, ExLMConfig
from .dag import dag_best_path, dag_log_likelihood
from .exlm import ExLMModel, pool_states
from .io import load_model, load_model_directory, save_model

__all__ = [
    "PRESETS",
    "ExLMConfig",
    "ExLMModel",
    "dag_best_path",
    "dag_log_likelihood",
    "load_model",
    "load_model_directory",
    "pool_states",
    "save_model",
]
