"""The Hugging Face ``tokenizer.json`` format of our vocabularies (a WordLevel model behind a
regex Split pre-tokenizer), so that `tokenizers.Tokenizer.from_file` reads our files."""

from __future__ import annotations

from .smiles import SMILES_REGEX

PAD, BOS, EOS, MASK, UNK = "<pad>", "<s>", "</s>", "<mask>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, MASK, UNK)
# Their ids, fixed by their order: every vocabulary starts with them.
PAD_ID, BOS_ID, EOS_ID, MASK_ID, UNK_ID = range(len(SPECIAL_TOKENS))
SELFIES_REGEX = r"(\[[^\]]*\]|\.)"


def tokenizer_json(tokens: list[str], max_length: int, mode: str) -> dict:
    """The Hugging Face ``tokenizer.json`` representation of a WordLevel vocabulary (``tokens``
    in id order, the special tokens first) behind the SMILES or SELFIES regex."""
    pattern = SMILES_REGEX if mode == "smiles" else SELFIES_REGEX
    vocab = {token: i for i, token in enumerate(tokens)}

    def template_piece(name, kind):
        return {kind: {"id": name, "type_id": 0}}

    return {
        "version": "1.0",
        "truncation": {
            "direction": "Right",
            "max_length": max_length,
            "strategy": "LongestFirst",
            "stride": 0,
        },
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i, t in enumerate(SPECIAL_TOKENS)
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Split",
            "pattern": {"Regex": pattern},
            "behavior": "Isolated",
            "invert": False,
        },
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                template_piece(BOS, "SpecialToken"),
                template_piece("A", "Sequence"),
                template_piece(EOS, "SpecialToken"),
            ],
            "pair": [
                template_piece(BOS, "SpecialToken"),
                template_piece("A", "Sequence"),
                template_piece(EOS, "SpecialToken"),
                {"Sequence": {"id": "B", "type_id": 1}},
                {"SpecialToken": {"id": EOS, "type_id": 1}},
            ],
            "special_tokens": {t: {"id": t, "ids": [vocab[t]], "tokens": [t]} for t in (BOS, EOS)},
        },
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": UNK},
    }
