"""MoleculeNet benchmarks: frozen-feature probes and fine-tuning, side by side with baselines.

By concern: the data sets, their featurization and its cache (`datasets`), the feature
kinds compared (`features`), the probes on frozen features (`probes`), the suite that runs
them all and resumes (`suite`) and its tables and plots (`report`). Fine-tuning lives in
`exlm_chem.finetuning`, for users' own data as much as for these sets.
"""

from ..environment import import_deepchem_quietly

import_deepchem_quietly()  # before the modules here import it
