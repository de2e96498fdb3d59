"""audiossl: self-supervised audio pre-training and fine-tuning recipes.

``audiossl.load_model(path)`` loads any model.pt for audio in, embeddings, tokens or class scores
out (``audiossl.api``).
"""


def load_model(path, device="cpu", bf16=False):
    """``audiossl.api.load_model``: imported on first use, so that ``import audiossl.<module>``
    stays light."""
    from audiossl.api import load_model as _load_model

    return _load_model(path, device=device, bf16=bf16)
