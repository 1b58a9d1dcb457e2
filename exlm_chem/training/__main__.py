"""``python -m exlm_chem.training`` / ``torchrun -m exlm_chem.training``: the pretrain command."""

import sys

from ..cli import main

main(["pretrain", *sys.argv[1:]])
