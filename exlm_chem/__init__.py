"""exlm-chem: SMILES representation learning with ExLM (states-expanded masked language models).

Importing the package is cheap: each public name is loaded from its module on first use
(PEP 562), so torch, RDKit and DeepChem load only when the code that needs them runs.
"""

from importlib import import_module

__version__ = "0.1.0"

_PUBLIC = {
    "InputError": "errors",
    "tokenize_smiles": "smiles",
    "SmilesTokenizer": "tokenizer",
    "read_molecules": "molecule_files",
    "read_molecule_chunks": "molecule_files",
    "read_smiles": "molecule_files",
    "ExLMConfig": "model",
    "ExLMModel": "model",
    "dag_log_likelihood": "model",
    "load_model": "model.storage",
    "embed": "embedding",
    "embed_file": "embedding_files",
    "ExLMFeaturizer": "featurizer",
    "ExLMTransformer": "estimators",
    "DescriptorTransformer": "descriptor_transformer",
    "ExLMClassifier": "estimators",
    "ExLMRegressor": "estimators",
    "finetune": "finetuning",
    "infill": "infill",
    "load_predictor": "finetuning",
    "load_finetuned": "finetuning",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'exlm_chem' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
