"""BEATs: backbone, acoustic tokenizers, masked-label-prediction pre-training, official checkpoints.

Modules, in the order the data flows: ``config`` (the official cfg as a dataclass), ``backbone``
(the encoder, an AbsEncoder), ``quantizer`` (EMA cosine VQ), ``tokenizer`` (round-1 random projection,
self-distilled tokenizer and its training model), ``ssl`` (the pre-training model), ``checkpoint``
(official files <-> model.pt, loading encoders from any model.pt), ``extract`` (embeddings and labels
of a feature dump, for ``audiossl.bin.extract``), ``bpe`` (label sequences -> "acoustic words").
"""
