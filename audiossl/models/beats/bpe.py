"""Acoustic words: byte-pair encoding over BEATs token sequences (sentencepiece).

Each label k of a K-code tokenizer becomes one character, ``chr(0xE000 + k)`` from Unicode's
private-use block (U+E000..U+F8FF, 6400 code points, so K <= 6400), and a clip's label sequence (in
the backbone's time-major token order) becomes a string without spaces. A sentencepiece BPE model
trained on those strings merges frequent label n-grams into "acoustic words"; encode/decode are exact
inverses (identity normalisation, no dummy prefix, no whitespace handling).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

logger = logging.getLogger(__name__)

PUA_START = 0xE000
PUA_SIZE = 0xF8FF - 0xE000 + 1  # 6400 code points


def codes_to_text(codes: Sequence[int]) -> str:
    """Labels -> one private-use character each."""
    out = []
    for c in codes:
        c = int(c)
        assert 0 <= c < PUA_SIZE, f"label {c} does not fit the private-use block (0..{PUA_SIZE - 1})"
        out.append(chr(PUA_START + c))
    return "".join(out)


def text_to_codes(text: str) -> list[int]:
    """The inverse of :func:`codes_to_text`."""
    codes = [ord(ch) - PUA_START for ch in text]
    bad = [c for c in codes if not 0 <= c < PUA_SIZE]
    assert not bad, f"characters outside the private-use block in {text!r}"
    return codes


def train_bpe(sequences: Iterable[Sequence[int]], model_prefix: str | os.PathLike, vocab_size: int) -> Path:
    """Train a BPE model over label sequences; writes ``<model_prefix>.model`` and ``.vocab``.

    ``vocab_size`` counts the distinct labels seen (each is a piece of its own) plus ``<unk>``; it
    must be larger than that, the rest are merges. Returns the ``.model`` path.
    """
    import sentencepiece as spm

    texts = [codes_to_text(s) for s in sequences]
    texts = [t for t in texts if t]
    assert texts, "no label sequence to train a BPE model on"
    num_chars = len(set("".join(texts)))
    if vocab_size <= num_chars + 1:
        raise ValueError(
            f"--bpe-vocab {vocab_size} leaves no room for merges: the data use {num_chars} distinct labels "
            f"(+1 for <unk>); pick a vocabulary larger than {num_chars + 1}"
        )
    prefix = Path(model_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        split_by_whitespace=False,
        split_by_unicode_script=False,
        max_sentence_length=max(4192, 4 * max(len(t) for t in texts) * 3),
        max_sentencepiece_length=16,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    logger.info("trained a BPE model of %d pieces over %d sequences (%d labels): %s.model", vocab_size, len(texts), num_chars, prefix)
    return Path(f"{prefix}.model")


class AcousticWords:
    """A trained BPE model over labels: labels <-> piece ids."""

    def __init__(self, model_path: str | os.PathLike) -> None:
        import sentencepiece as spm

        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such sentencepiece model")
        self.sp = spm.SentencePieceProcessor(model_file=str(path))

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, codes: Sequence[int]) -> list[int]:
        """Labels -> piece ids."""
        return list(self.sp.encode(codes_to_text(codes), out_type=int))

    def decode(self, ids: Sequence[int]) -> list[int]:
        """Piece ids -> labels (exact inverse of :meth:`encode`)."""
        return text_to_codes(self.sp.decode([int(i) for i in ids]))

    def piece_codes(self, piece_id: int) -> list[int]:
        """The label n-gram a piece stands for ([] for <unk>)."""
        if self.sp.is_unknown(int(piece_id)) or self.sp.is_control(int(piece_id)):
            return []
        return text_to_codes(self.sp.id_to_piece(int(piece_id)))
