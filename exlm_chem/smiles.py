"""SMILES text: the atom-level regex, what is not a SMILES, and RDKit parsing.

`tokenize_smiles` uses the standard SMILES regex (Schwaller et al., 2019, as in DeepChem's
`BasicSmilesTokenizer`) but never drops a character: text the regex does not cover is an
error that names the character and its position.

RDKit is imported inside the functions that use it, so that importing the package stays fast.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np

from .errors import InputError

SMILES_REGEX = (
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>>?|\*|\$"
    r"|\%[0-9]{2}|[0-9])"
)
_SMILES_RE = re.compile(SMILES_REGEX)


def regex_tokens(text: str, pattern: re.Pattern, kind: str) -> list[str]:
    tokens = pattern.findall(text)
    if len("".join(tokens)) == len(text):
        return tokens
    # Matches are ordered and disjoint, so a length mismatch means a gap: find its start.
    position = 0
    for match in pattern.finditer(text):
        if match.start() != position:
            break
        position = match.end()
    shown = text if len(text) <= 60 else text[:57] + "..."
    raise ValueError(
        f"cannot tokenize {kind} {shown!r}: unexpected character {text[position]!r} at "
        f"position {position}"
    )


def tokenize_smiles(smiles: str) -> list[str]:
    """Split a SMILES string into atom-level tokens; ``"".join(tokens) == smiles`` always holds.

    Raises ValueError naming the first character the SMILES regex does not cover.
    """
    return regex_tokens(smiles, _SMILES_RE, "SMILES")


# What to do with an invalid molecule, one word everywhere: keep its row (NaN vector, empty
# prediction, a record with its error), skip the row, or raise an InputError naming it. Each
# function takes the policies that make sense for it (a vector-per-input array cannot skip).
INVALID_POLICIES = ("keep", "skip", "raise")


def check_invalid_policy(policy: str, allowed=INVALID_POLICIES) -> str:
    if policy not in allowed:
        raise InputError(f"invalid must be {' or '.join(repr(p) for p in allowed)}, not {policy!r}")
    return policy


def smiles_problem(text) -> str | None:
    """Why a text cannot be a SMILES before RDKit looks at it, or None."""
    if not isinstance(text, str):
        return f"not a string but {type(text).__name__}"
    stripped = text.strip()
    if not stripped:
        return "empty SMILES"
    if any(c.isspace() for c in stripped):
        # RDKit would read the text after a space as the molecule's name and drop it.
        return "whitespace inside the SMILES"
    return None


@contextlib.contextmanager
def quiet_rdkit():
    """RDKit's messages (a line per molecule it cannot parse) silenced for a while; its
    logging is as it was afterwards. Wrap loops, not single calls: entering costs a little."""
    from rdkit import rdBase

    with rdBase.BlockLogs():
        yield


def parse_smiles(smiles: str):
    """RDKit molecule for a SMILES, or None when RDKit cannot parse it or it is not a SMILES to
    begin with (see `smiles_problem`). RDKit says why on stderr unless in `quiet_rdkit`."""
    from rdkit import Chem

    if smiles_problem(smiles) is not None:
        return None
    return Chem.MolFromSmiles(smiles.strip())


def as_molecule(molecule):
    """An RDKit molecule as it is, or a SMILES parsed (`parse_smiles`: None when RDKit cannot):
    for functions that take either."""
    from rdkit import Chem

    return molecule if isinstance(molecule, Chem.Mol) else parse_smiles(molecule)


def canonicalize_smiles(smiles: str) -> str:
    """RDKit canonical SMILES; ValueError when RDKit cannot parse the input."""
    from rdkit import Chem

    with quiet_rdkit():
        mol = parse_smiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit cannot parse SMILES {smiles!r}")
    return Chem.MolToSmiles(mol)


def randomize_smiles(smiles: str, seed: int = -1) -> str:
    """A random valid SMILES of the same molecule (augmentation); seed -1 means unseeded."""
    from rdkit import Chem

    with quiet_rdkit():
        mol = parse_smiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit cannot parse SMILES {smiles!r}")
    return Chem.MolToRandomSmilesVect(mol, 1, randomSeed=seed)[0]


def standardization(stereo: bool) -> dict[str, str]:
    """The one policy for what a model reads, stored in every model folder.

    The whole molecule as RDKit's canonical SMILES, every fragment and charge kept: salts,
    counterions and protonation states are part of what was measured and of what users
    submit, the broad pretraining corpus is written this way, and stripping them would give a
    salt and its parent one vector. Stereochemistry is kept where the vocabulary has stereo
    tokens. Largest-fragment, neutralized parents serve only to keep evaluation molecules out
    of pretraining corpora (benchmarks/checks/corpus_overlap.py).
    """
    return {
        "smiles": "RDKit canonical SMILES of the whole molecule (corpus: --canonicalize)",
        "fragments": "all kept (salts, counterions, mixtures)",
        "charges": "kept as written",
        "stereochemistry": "kept" if stereo else "dropped: the vocabulary has no stereo tokens",
    }


# -- bracket atoms and their fallbacks ---------------------------------------------------------

ELEMENTS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se "
    "Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb "
    "Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm "
    "Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
).split()
ELEMENT_TOKENS = tuple(f"[{symbol}]" for symbol in ELEMENTS)
_BRACKET_PARTS = ("isotope", "symbol", "chirality", "hydrogens", "charge", "atom_class")
ORGANIC_SUBSET = {"B", "C", "N", "O", "P", "S", "F", "Cl", "Br", "I", "b", "c", "n", "o", "p", "s"}
_BRACKET_ATOM = re.compile(
    r"\[(?P<isotope>\d+)?(?P<symbol>[A-Z][a-z]?|[a-z][a-z]?)(?P<chirality>@@?(?:TH|AL|SP|TB|OH)?\d*)?"
    r"(?P<hydrogens>H\d*)?(?P<charge>[+-]+\d*)?(?P<atom_class>:\d+)?\]"
)


def atom_fallbacks(token: str) -> list[str]:
    """Known-ish stand-ins for an atom token, nearest first; [] for a token that is not an atom.

    A bracket atom sheds, one at a time and cumulatively: its atom class and isotope (no
    chemistry), its chirality (a refinement of the same atom), its hydrogen count (implied in
    part by the charge and the bonds), then its charge; what is left is the element alone,
    ``[Sn]``, then its organic-subset symbol (``N`` for ``[N]``), and for aromatic symbols the
    aliphatic element. So ``[13CH3-]`` tries ``[CH3-]``, ``[C-]``, ``[C]``, ``C``; ``[Gd+3]``
    tries ``[Gd]``. An organic-subset atom (``P``) falls back to its element token (``[P]``).
    """
    if token in ORGANIC_SUBSET:
        return [f"[{token.capitalize()}]"] if token.islower() else [f"[{token}]"]
    match = _BRACKET_ATOM.fullmatch(token)
    if match is None:
        return []
    parts = match.groupdict(default="")
    symbol = parts["symbol"]
    element = symbol.capitalize() if symbol.islower() else symbol
    if element not in ELEMENTS:
        return []
    candidates = []
    for drop in ("atom_class", "isotope", "chirality", "hydrogens", "charge"):
        parts[drop] = ""
        candidates.append("[" + "".join(parts[k] for k in _BRACKET_PARTS) + "]")
    candidates.append(f"[{element}]")
    candidates += [s for s in (symbol, element) if s in ORGANIC_SUBSET]
    return [c for c in dict.fromkeys(candidates) if c != token]


def smiles_column(X) -> list:
    """The SMILES a scikit-learn estimator was given: a sequence, a pandas Series, a one-column
    DataFrame or array, or one SMILES string (one row). Anything but a string in it is kept,
    to be reported as invalid with its row."""
    if isinstance(X, str):
        return [X]
    if hasattr(X, "columns"):  # DataFrame
        if X.shape[1] != 1:
            raise ValueError(f"expected one column of SMILES, got {X.shape[1]} columns")
        X = X.iloc[:, 0]
    array = np.asarray(X, dtype=object)
    if array.ndim == 2:
        if array.shape[1] != 1:
            raise ValueError(f"expected one column of SMILES, got shape {array.shape}")
        array = array[:, 0]
    return list(array)
