"""Preparing molecules for a model, once, for every path (embedding, fine-tuning, prediction,
the benchmark's rows): parse with RDKit, choose the SMILES to read (canonical unless asked
otherwise), tokenize, and say why a molecule cannot be read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from .smiles import parse_smiles, quiet_rdkit, smiles_problem


class PreparedSmiles(NamedTuple):
    """What the model reads for each input molecule, or why it cannot read it."""

    smiles: list[str | None]  # the SMILES read; None where the molecule is invalid
    tokens: list[list[str] | None]  # its tokens, so that nothing is tokenized twice
    errors: list[str | None]  # the reason, None where valid


def prepare_smiles(molecules: Sequence, tokenizer, canonicalize: bool = True) -> PreparedSmiles:
    """The SMILES (and tokens) the model reads for each input, or the reason it is invalid.

    molecules: SMILES strings or RDKit molecules. Each string is parsed by RDKit once and each
    chosen SMILES tokenized once. Invalid: not a string, empty, whitespace inside (``C C`` is
    not methane), not parsed by RDKit, or not tokenizable.

    canonicalize: write RDKit's canonical SMILES, the form the pretraining corpus is in, so
    that every way of writing a molecule gets the same vector; stereochemistry is kept only
    when the model's vocabulary has stereo tokens (a model that never saw ``@``, ``/`` or
    ``\\`` would read them as unknown tokens and lose the atom). Otherwise, or where the
    canonical SMILES cannot be tokenized (RDKit writes dative bonds as ``->``), the SMILES is
    used as given, without surrounding whitespace.
    """
    stereo = tokenizer.reads_stereo
    prepared = PreparedSmiles([], [], [])
    with quiet_rdkit():
        for molecule in molecules:
            for column, value in zip(
                prepared, _prepare_one(molecule, tokenizer, canonicalize, stereo)
            ):
                column.append(value)
    return prepared


def _prepare_one(
    molecule, tokenizer, canonicalize: bool, stereo: bool
) -> tuple[str | None, list[str] | None, str | None]:
    from rdkit import Chem

    if isinstance(molecule, Chem.Mol):
        mol, text = molecule, Chem.MolToSmiles(molecule, isomericSmiles=stereo)
    else:
        problem = smiles_problem(molecule)
        if problem is not None:
            return None, None, problem
        text = molecule.strip()
        mol = parse_smiles(text)
        if mol is None:
            return None, None, "RDKit cannot parse it"
    candidates = [Chem.MolToSmiles(mol, isomericSmiles=stereo), text] if canonicalize else [text]
    for candidate in dict.fromkeys(candidates):
        try:
            return candidate, tokenizer.tokenize(candidate), None
        except ValueError:
            continue
    return None, None, "cannot be tokenized"


def prepare_job(job: tuple) -> PreparedSmiles:
    """In a worker: `prepare_smiles` of (molecules, tokenizer, canonicalize)."""
    return prepare_smiles(*job)
