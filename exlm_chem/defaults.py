"""Defaults shared by the library and the command line: one home each.

Nothing heavy is imported here, so that the command line can show them in its help without
loading torch. Pretraining's own settings live in `exlm_chem.training.config.PretrainConfig`.
"""

MAX_LENGTH = 128  # longest token sequence a model reads, <s> and </s> included
K = 4  # states per <mask>, <s> and </s> in ExLM (the method's default); the plain MLM is k = 1
# Read-out of a molecule vector: every layer's mean over the real-token states, averaged over the
# layers; chosen on validation splits over `mean` and `cls` (benchmarks/results/recipe_study).
POOLING = "layers"
BATCH_SIZE = 128  # molecules per forward pass when embedding on a CPU
GPU_BATCH_SIZE = 1024  # on a GPU: large batches keep it busy (per-batch overhead dominates)
PRECISION = "fp32"  # embedding precision: fp32 (reproducible) or bf16
