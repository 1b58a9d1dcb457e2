"""``python -m exlm_chem``: the exlm-chem command."""

from .cli import main

main()
