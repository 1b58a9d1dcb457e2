import gzip
import json
import re

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from exlm_chem import InputError, SmilesTokenizer, tokenize_smiles
from exlm_chem.smiles import SMILES_REGEX, canonicalize_smiles, randomize_smiles

EXAMPLES = {
    "CCO": ["C", "C", "O"],
    "c1ccccc1Br": ["c", "1", "c", "c", "c", "c", "c", "1", "Br"],
    "C[C@@H](Cl)N": ["C", "[C@@H]", "(", "Cl", ")", "N"],
    "[NH3+]CC(=O)[O-]": ["[NH3+]", "C", "C", "(", "=", "O", ")", "[O-]"],
    "C%12CC%12": ["C", "%12", "C", "C", "%12"],
    "F/C=C\\F": ["F", "/", "C", "=", "C", "\\", "F"],
    "CC.O": ["C", "C", ".", "O"],
    "*C#N": ["*", "C", "#", "N"],
    "B1OB(O)O1": ["B", "1", "O", "B", "(", "O", ")", "O", "1"],
}


@pytest.mark.parametrize("smiles,tokens", EXAMPLES.items())
def test_tokenize_examples(smiles, tokens):
    assert tokenize_smiles(smiles) == tokens


def test_same_tokens_as_deepchem(drug_smiles):
    from deepchem.feat.smiles_tokenizer import BasicSmilesTokenizer

    theirs = BasicSmilesTokenizer()
    for smiles in drug_smiles + list(EXAMPLES):
        assert tokenize_smiles(smiles) == theirs.tokenize(smiles)


def test_same_tokens_as_deepchem_on_zinc(shared_data):
    from deepchem.feat.smiles_tokenizer import BasicSmilesTokenizer

    theirs = BasicSmilesTokenizer()
    with gzip.open(shared_data / "zinc" / "moses_test.csv.gz", "rt") as handle:
        next(handle)
        smiles = [next(handle).strip() for _ in range(5000)]
    assert [tokenize_smiles(s) for s in smiles] == [theirs.tokenize(s) for s in smiles]


def test_error_names_character_and_position():
    with pytest.raises(ValueError, match=r"'X' at position 2"):
        tokenize_smiles("CCXC")
    with pytest.raises(ValueError, match=r"'\[' at position 1"):
        tokenize_smiles("C[NH4")  # unclosed bracket atom


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("CNOSPFIBrclnosp()[]=#@+-\\/%0123456789.*:~?$>aXZ !")),
        max_size=40,
    )
)
def test_tokens_rejoin_or_error(text):
    try:
        tokens = tokenize_smiles(text)
    except ValueError as exc:
        position = int(re.search(r"at position (\d+)", str(exc)).group(1))
        # The reported position is the first character the regex leaves uncovered.
        covered = "".join(re.findall(SMILES_REGEX, text[:position]))
        assert covered == text[:position]
        assert position < len(text)
    else:
        assert "".join(tokens) == text


@pytest.fixture
def vocab(drug_smiles):
    return SmilesTokenizer.from_corpus(drug_smiles, max_length=64)


def test_vocabulary_specials_and_min_count(drug_smiles):
    tok = SmilesTokenizer.from_corpus(drug_smiles)
    assert tok.id_to_token[:5] == ["<pad>", "<s>", "</s>", "<mask>", "<unk>"]
    assert "[S+]" in tok.token_to_id  # seen once
    assert "[S+]" not in SmilesTokenizer.from_corpus(drug_smiles, min_count=2).token_to_id
    # Every element has a token, after the corpus's own: [Hg] though no drug here has mercury.
    assert "[Hg]" in tok.token_to_id and tok.token_to_id["[Hg]"] > tok.token_to_id["[S+]"]
    with pytest.raises(InputError, match="minimum token count must be at least 1"):
        SmilesTokenizer.from_corpus(drug_smiles, min_count=0)


def test_atoms_outside_the_vocabulary_fall_back_to_their_nearest_known_form():
    counts = {t: 9 for t in ["C", "N", "[N+]", "[nH]", "c", "1", "O", "(", ")"]}
    tok = SmilesTokenizer.from_counts(counts)
    assert tok.fallback_of("[NH+]") == "[N+]"  # the hydrogen count goes before the charge
    assert tok.fallback_of("[NH2+]") == "[N+]" and tok.fallback_of("[15NH+]") == "[N+]"
    assert tok.fallback_of("[O-]") == "[O]"  # the element's own token
    assert tok.fallback_of("[Gd+3]") == "[Gd]" and tok.fallback_of("[se]") == "[Se]"
    assert tok.fallback_of("C") is None and tok.fallback_of("[Uuo]") is None  # known; unknown
    ids, report = tok.encode_batch_with_report(["C[NH+](C)C", "[Gd+3]", "CC[Uuo]", "CCO"])
    assert report.fallback_tokens.tolist() == [1, 1, 0, 0]
    assert report.unknown_tokens.tolist() == [0, 0, 1, 0]
    assert ids[0, 2] == tok.token_to_id["[N+]"] and ids[1, 1] == tok.token_to_id["[Gd]"]
    # The token-list path agrees with the one-regex batch path.
    tokens = [tok.tokenize(s) for s in ["C[NH+](C)C", "[Gd+3]", "CC[Uuo]", "CCO"]]
    same_ids, same_report = tok.encode_tokens_with_report(tokens)
    assert torch.equal(ids, same_ids)
    assert all(np.array_equal(a, b) for a, b in zip(report, same_report))


def test_encode_batch_pads_and_counts_unknowns(vocab):
    ids = vocab.encode_batch(["CCO", "c1ccccc1", "CC[Uuo]C"])
    assert ids.dtype == torch.long and ids.shape == (3, 10)
    assert ids[0].tolist()[:5] == [
        vocab.bos_id,
        vocab.token_to_id["C"],
        vocab.token_to_id["C"],
        vocab.token_to_id["O"],
        vocab.eos_id,
    ]
    assert (ids[0, 5:] == vocab.pad_id).all()
    assert ids[2].tolist().count(vocab.unk_id) == 1
    assert vocab.unknown_count == 1


def test_truncation_is_counted(vocab):
    ids = vocab.encode_batch(["C" * 100, "CC"], max_length=10)
    assert ids.shape == (2, 10)
    assert ids[0, -1] == vocab.eos_id and ids[0, 0] == vocab.bos_id
    assert vocab.truncated_count == 1


def test_decode_round_trip(vocab, drug_smiles):
    ids = vocab.encode_batch(drug_smiles, max_length=128)
    assert [vocab.decode(row) for row in ids] == drug_smiles


def test_bad_smiles_in_batch_raises(vocab):
    with pytest.raises(ValueError, match="position 2"):
        vocab.encode_batch(["CCO", "CCXO"])


def test_save_load_round_trip(vocab, tmp_path, drug_smiles):
    path = tmp_path / "tokenizer.json"
    vocab.save(path)
    loaded = SmilesTokenizer.load(path)
    assert loaded.id_to_token == vocab.id_to_token and loaded.max_length == 64
    assert torch.equal(loaded.encode_batch(drug_smiles), vocab.encode_batch(drug_smiles))


def test_hugging_face_tokenizers_reads_our_file(vocab, tmp_path, drug_smiles):
    tokenizers = pytest.importorskip("tokenizers")
    path = tmp_path / "tokenizer.json"
    vocab.save(path)
    theirs = tokenizers.Tokenizer.from_file(str(path))
    for smiles in drug_smiles + ["CC[Se]C"]:
        assert theirs.encode(smiles).ids == vocab.encode(smiles)


def test_load_rejects_bad_files(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(InputError, match="not found"):
        SmilesTokenizer.load(missing)
    broken = tmp_path / "broken.json"
    broken.write_text('{"model": ')
    with pytest.raises(InputError, match="broken.json"):
        SmilesTokenizer.load(broken)
    shuffled = tmp_path / "shuffled.json"
    data = SmilesTokenizer(["C"]).to_dict()
    data["model"]["vocab"] = {"C": 0, "<pad>": 1, "<s>": 2, "</s>": 3, "<mask>": 4, "<unk>": 5}
    shuffled.write_text(json.dumps(data))
    with pytest.raises(InputError, match="ids 0..n-1"):
        SmilesTokenizer.load(shuffled)


def test_canonical_and_randomized_smiles():
    assert canonicalize_smiles("OCC") == "CCO"
    variants = {randomize_smiles("c1ccccc1CCN", seed=s) for s in range(10)}
    assert len(variants) > 1
    assert {canonicalize_smiles(v) for v in variants} == {"NCCc1ccccc1"}
    with pytest.raises(ValueError):
        canonicalize_smiles("C1CC")
    tok = SmilesTokenizer(["C", "O"], canonicalize=True)
    assert tok.tokenize("OCC") == ["C", "C", "O"]


def test_selfies_mode_round_trip(drug_smiles, tmp_path):
    tok = SmilesTokenizer.from_corpus(drug_smiles[:8], mode="selfies")
    assert all(t.startswith("[") for t in tok.id_to_token[5:])
    ids = tok.encode_batch(drug_smiles[:8])
    for row, smiles in zip(ids, drug_smiles[:8]):
        assert canonicalize_smiles(tok.decode(row)) == canonicalize_smiles(smiles)
    tok.save(tmp_path / "t.json")
    assert SmilesTokenizer.load(tmp_path / "t.json").mode == "selfies"


@settings(max_examples=200, deadline=None)
@example(["[B]", "C[NH4+]", "[c]"])  # atoms read through their fallbacks
@given(
    st.lists(
        st.text(alphabet=st.sampled_from(list("CNOBrcln()[]=#@+-\\/%0123456789.H")), max_size=20),
        min_size=1,
        max_size=6,
    )
)
def test_batch_encoding_matches_one_by_one(batch):
    tok = SmilesTokenizer(
        list("CNOBrcln()=#@+-\\/%0123456789.H") + ["Br", "Cl", "[C@@H]", "[NH3+]"]
    )
    try:
        singles = [tokenize_smiles(s) for s in batch]
    except ValueError:
        with pytest.raises(ValueError):
            tok.encode_batch(batch)
        return
    ids = tok.encode_batch(batch)
    for row, tokens in zip(ids, singles):
        # Each token as the tokenizer reads it: itself, its fallback ([B] as B) or <unk>.
        read = [tok.token_to_id[tok.reading(t)] for t in tokens]
        expected = [tok.bos_id] + read[:126] + [tok.eos_id]
        assert row[row != tok.pad_id].tolist() == expected
