"""The ``exlm-chem`` command line: a thin typer layer over the library functions, one module
per concern (chemprop-style); this package registers every command on `app`.

The commands import the library inside their bodies: ``exlm-chem --help`` should not wait for
torch, RDKit or DeepChem to load."""

from .app import app, info, main, tokenize
from .benchmark import benchmark
from .embed import embed
from .finetune import finetune, predict
from .infill import infill
from .pretrain import export, prepare_corpus, pretrain

# In the order `exlm-chem --help` lists them.
for command in (
    info,
    tokenize,
    embed,
    infill,
    prepare_corpus,
    pretrain,
    export,
    finetune,
    predict,
    benchmark,
):
    app.command()(command)

__all__ = ["app", "main"]
