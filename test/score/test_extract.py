"""audiossl.bin.extract and acoustic words: embeddings, clip means, labels, BPE round trip."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import kaldiio
import numpy as np
import pytest
import torch

from audiossl.bin.extract import main as extract_main
from audiossl.data.fbank import FeatureNorm, normalize
from audiossl.models.beats.bpe import AcousticWords, codes_to_text, text_to_codes, train_bpe
from audiossl.tasks.encoder import load_encoder
from audiossl.data.dataset import DataInfo
from audiossl.tasks.beats_ssl import BeatsSSLTask
from audiossl.tasks.beats_tokenizer import BeatsTokenizerTask, load_tokenizer
from audiossl.models.checkpoint import save_model

torch.set_num_threads(1)

TINY = dict(
    encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128, encoder_attention_heads=4, embed_dim=32,
    conv_pos=16, conv_pos_groups=4, num_buckets=32, max_distance=64, encoder_layerdrop=0.0,
    dropout=0.0, attention_dropout=0.0,
)
LENGTHS = {"utt_a": 48, "utt_b": 64, "utt_c": 48, "utt_d": 40}


@pytest.fixture()
def recipe(tmp_path, monkeypatch):
    """A recipe dir with a dump (feats.scp + stats.json), a random tokenizer and a tiny SSL model."""
    monkeypatch.chdir(tmp_path)
    dump = tmp_path / "dump/fbank_beats/train"
    dump.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with kaldiio.WriteHelper(f"ark,scp:{dump}/feats.ark,{dump}/feats.scp") as w:
        for utt, T in LENGTHS.items():
            w(utt, (rng.standard_normal((T, 128)) * 3 + 5).astype(np.float32))
    (dump / "stats.json").write_text(json.dumps({"mean": 5.0, "std": 3.0}))
    torch.manual_seed(0)
    rt = BeatsTokenizerTask.ModelConfig(kind="random", codebook_size=40, codebook_dim=16)
    rmodel = BeatsTokenizerTask.build_model(rt, DataInfo())
    config = {"task": "beats_tokenizer", "model": dataclasses.asdict(rt), "data": {"train": "dump/fbank_beats/train"}}
    save_model("exp/tok/model.pt", "beats_tokenizer", config, rmodel.state_dict())
    cfg = BeatsSSLTask.ModelConfig(encoder=dict(TINY), tokenizer="exp/tok/model.pt", predictor_layers=1)
    ssl = BeatsSSLTask.build_model(cfg, DataInfo())
    config = {"task": "beats_ssl", "model": dataclasses.asdict(cfg), "data": {"train": "dump/fbank_beats/train", "norm_mean": None}}
    save_model("exp/ssl/model.pt", "beats_ssl", config, ssl.state_dict())
    return dump


def test_frames_and_clip_embeddings(recipe):
    rc = extract_main(["--model", "exp/ssl/model.pt", "--feats", str(recipe), "--output-dir", "out",
                       "--outputs", "frames,clip", "--layer", "1", "--batch-size", "2"])
    assert rc == 0
    frames = kaldiio.load_scp("out/frames.scp")
    clips = kaldiio.load_scp("out/clip.scp")
    assert list(frames) == sorted(LENGTHS)
    encoder = load_encoder("exp/ssl/model.pt")
    norm = FeatureNorm(5.0, 3.0)  # from the training dump's stats.json
    feats = kaldiio.load_scp(f"{recipe}/feats.scp")
    for utt, T in LENGTHS.items():
        assert frames[utt].shape == ((T // 16) * 8, 64)
        x = normalize(torch.from_numpy(np.array(feats[utt])), norm)[None]
        with torch.no_grad():
            want = encoder(x, output_hidden_states=True).hidden_states[0][0]  # layer 1, the clip alone
        np.testing.assert_allclose(frames[utt], want.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(clips[utt], frames[utt].mean(0), rtol=1e-5, atol=1e-6)


def test_tokens_and_acoustic_words(recipe):
    rc = extract_main(["--model", "exp/tok/model.pt", "--feats", str(recipe), "--output-dir", "tok",
                       "--outputs", "tokens", "--bpe-vocab", "60"])
    assert rc == 0
    tokens = kaldiio.load_scp("tok/tokens.scp")
    tok = load_tokenizer("exp/tok/model.pt")
    feats = kaldiio.load_scp(f"{recipe}/feats.scp")
    for utt in LENGTHS:
        x = normalize(torch.from_numpy(np.array(feats[utt])), FeatureNorm(5.0, 3.0))[None]
        assert tokens[utt].dtype == np.int32
        np.testing.assert_array_equal(tokens[utt], tok.tokenize(x)[0].numpy())
    words = {l.split()[0]: [int(i) for i in l.split()[1:]] for l in open("tok/words.txt")}
    aw = AcousticWords("tok/bpe.model")
    for utt in LENGTHS:
        assert aw.decode(words[utt]) == tokens[utt].tolist()


def test_errors_name_the_problem(recipe, tmp_path):
    with pytest.raises(ValueError, match="beats_tokenizer"):
        extract_main(["--model", "exp/ssl/model.pt", "--feats", str(recipe), "--output-dir", "x", "--outputs", "tokens"])
    with pytest.raises(ValueError, match="layer 5 does not exist"):
        extract_main(["--model", "exp/ssl/model.pt", "--feats", str(recipe), "--output-dir", "x", "--layer", "5"])
    (tmp_path / "dump/fbank_beats/train/stats.json").unlink()
    with pytest.raises(ValueError, match="cannot tell how to normalise the features"):
        extract_main(["--model", "exp/ssl/model.pt", "--feats", str(recipe), "--output-dir", "x"])
    assert extract_main(["--model", "exp/ssl/model.pt", "--feats", str(recipe), "--output-dir", "x",
                         "--outputs", "clip", "--norm-mean", "5", "--norm-std", "3"]) == 0


def test_bpe_round_trip_and_merges(tmp_path):
    rng = np.random.default_rng(0)
    motifs = [[7, 3, 900], [12, 12, 5, 1023], [0, 44]]
    seqs = [[c for _ in range(40) for c in motifs[rng.integers(3)]] for _ in range(60)]
    assert text_to_codes(codes_to_text([0, 5, 1023])) == [0, 5, 1023]
    model = train_bpe(seqs, tmp_path / "bpe", vocab_size=20)
    aw = AcousticWords(model)
    for s in seqs[:10]:
        ids = aw.encode(s)
        assert aw.decode(ids) == s
        assert len(ids) < len(s)  # frequent label n-grams became single words
    pieces = [aw.piece_codes(i) for i in range(aw.vocab_size)]
    assert [7, 3, 900] in pieces or [12, 12, 5, 1023] in pieces
    with pytest.raises(ValueError, match="leaves no room for merges"):
        train_bpe(seqs, tmp_path / "small", vocab_size=5)


def test_help(repo_root):
    out = subprocess.run([sys.executable, "-m", "audiossl.bin.extract", "--help"], capture_output=True, text=True,
                         cwd=repo_root, check=True)
    assert "--bpe-vocab" in out.stdout and "--layer" in out.stdout
