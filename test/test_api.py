"""audiossl.load_model: audio in (paths, arrays, tensors; any rate, channels, length), embeddings,
tokens and class scores out, equal to what the dump-based tools give for the same audio."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
import yaml

import audiossl
from audiossl.data.fbank import FeatureNorm, compute_fbank, normalize
from audiossl.tasks.encoder import load_encoder
from audiossl.score.inference import score_dump_dir
from audiossl.data.dataset import DataInfo
from audiossl.tasks.abs_task import get_task
from audiossl.tasks.beats_ssl import BeatsSSLTask
from audiossl.tasks.beats_tokenizer import BeatsTokenizerTask, load_tokenizer
from audiossl.tasks.finetune import FinetuneConfig, load_finetuned
from audiossl.models.checkpoint import save_model

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
BEATS_NORM = FeatureNorm(15.0, 3.0)
EAT_NORM = FeatureNorm(-6.0, 3.0)


def cpu_encoder(task: str) -> dict:
    conf = {"beats_ssl": "egs/spc2/conf/cpu/beats_ssl.yaml", "eat_pretrain": "egs/spc2/conf/cpu/eat_pretrain.yaml"}[task]
    return yaml.safe_load((REPO / conf).read_text())["model"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """model.pt files of a random BEATs tokenizer, a BEATs SSL model, an EAT pre-training and a
    fine-tuned EAT classifier, at the CPU configs' sizes, each with the normalisation in its config."""
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    tok_cfg = BeatsTokenizerTask.ModelConfig(kind="random", codebook_size=40, codebook_dim=16)
    tok = BeatsTokenizerTask.build_model(tok_cfg, DataInfo())
    data = {"norm_mean": BEATS_NORM.mean, "norm_std": BEATS_NORM.std}
    save_model(d / "tok.pt", "beats_tokenizer", {"model": dataclasses.asdict(tok_cfg), "data": data}, tok.state_dict())
    enc = cpu_encoder("beats_ssl")
    enc.update(tokenizer=str(d / "tok.pt"))
    ssl_cfg = BeatsSSLTask.ModelConfig(**{k: v for k, v in enc.items() if k != "encoder"}, encoder=enc["encoder"])
    ssl = BeatsSSLTask.build_model(ssl_cfg, DataInfo())
    save_model(d / "beats.pt", "beats_ssl", {"model": dataclasses.asdict(ssl_cfg), "data": data}, ssl.state_dict())
    eat_cfg = get_task("eat_pretrain").ModelConfig(**cpu_encoder("eat_pretrain"))
    eat = get_task("eat_pretrain").build_model(eat_cfg, DataInfo())
    data = {"norm_mean": EAT_NORM.mean, "norm_std": EAT_NORM.std}
    save_model(d / "eat.pt", "eat_pretrain", {"model": dataclasses.asdict(eat_cfg), "data": data}, eat.state_dict())
    ft_cfg = FinetuneConfig(init=str(d / "eat.pt"), pooling="cls", head_norm=True, head_init_std=0.5, loss="ce")
    ft = get_task("finetune").build_model(ft_cfg, DataInfo(num_classes=3, label_names=["dog", "rain", "bell"]))
    save_model(d / "ft.pt", "finetune", {"model": dataclasses.asdict(ft_cfg), "data": {**data, "target_frames": 96}},
               ft.state_dict(), ft.export())
    return {"tok": d / "tok.pt", "beats": d / "beats.pt", "eat": d / "eat.pt", "ft": d / "ft.pt"}


def noise(seconds: float, seed: int, rate: int = 16000, channels: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (int(seconds * rate),) if not channels else (channels, int(seconds * rate))
    return (rng.standard_normal(shape) * 0.1).astype(np.float32)


@pytest.mark.parametrize("name, kind, norm", [("beats", "beats", BEATS_NORM), ("eat", "eat", EAT_NORM)])
def test_embeddings_are_the_encoders_on_the_models_own_front_end(models, tmp_path, name, kind, norm):
    wave = noise(1.3, 1)
    sf.write(tmp_path / "a.wav", wave, 16000, subtype="FLOAT")
    model = audiossl.load_model(models[name])
    emb = model.embed(tmp_path / "a.wav")
    feats = normalize(compute_fbank(torch.from_numpy(wave), kind), norm)  # (128, 128): 8 time steps
    with torch.no_grad():
        ref = load_encoder(models[name])(feats[None], None)
    torch.testing.assert_close(emb.tokens, ref.tokens[0], rtol=0, atol=1e-5)
    steps = feats.shape[0] // 16
    assert emb.frames.shape == (steps, ref.tokens.shape[-1]) and emb.times.shape == (steps,)
    torch.testing.assert_close(emb.frames, ref.tokens[0].reshape(steps, -1, ref.tokens.shape[-1]).mean(1))
    assert emb.times[0].item() == pytest.approx((7.5 * 0.010) + 0.0125) and emb.times[1] - emb.times[0] == pytest.approx(0.16)
    torch.testing.assert_close(emb.clip, ref.tokens[0].mean(0))
    # the same audio as an array, as a tensor, and the middle layer on request
    torch.testing.assert_close(model.embed(wave, sample_rate=16000).tokens, emb.tokens, rtol=0, atol=0)
    torch.testing.assert_close(model.embed(torch.from_numpy(wave), sample_rate=16000).clip, emb.clip, rtol=0, atol=0)
    assert not torch.equal(model.embed(wave, sample_rate=16000, layer=1).tokens, emb.tokens)


def test_other_rates_and_channels_are_resampled_and_averaged(models):
    model = audiossl.load_model(models["eat"])
    stereo = noise(1.0, 2, rate=44100, channels=2)
    mono16 = torchaudio.functional.resample(torch.from_numpy(stereo).mean(0), 44100, 16000)
    got = model.embed(stereo, sample_rate=44100)
    torch.testing.assert_close(got.tokens, model.embed(mono16, sample_rate=16000).tokens, rtol=0, atol=0)


def test_a_list_gives_each_clip_what_it_gets_alone(models):
    model = audiossl.load_model(models["beats"])
    clips = [noise(s, i) for i, s in enumerate([1.0, 0.7, 1.0, 2.1, 0.7])]
    together = model.embed(clips, sample_rate=16000)
    assert len(together) == len(clips)
    for clip, out in zip(clips, together):
        alone = model.embed(clip, sample_rate=16000)
        torch.testing.assert_close(out.tokens, alone.tokens, rtol=0, atol=0)
    assert together[0].frames.shape[0] != together[3].frames.shape[0]


def test_eat_takes_clips_longer_than_its_positions_in_pieces(models):
    model = audiossl.load_model(models["eat"])
    max_frames = model._get_encoder().cfg.max_time_patches * 16
    wave = noise((2 * max_frames + 40) / 100, 3)  # 2 full pieces and a short rest
    emb = model.embed(wave, sample_rate=16000)
    feats = normalize(compute_fbank(torch.from_numpy(wave), "eat"), EAT_NORM)
    with torch.no_grad():
        enc = load_encoder(models["eat"])
        first = enc(feats[None, :max_frames], None).tokens[0]
    steps = feats.shape[0] // 16
    assert emb.frames.shape[0] == steps  # every 16-frame step, the rest's two included
    torch.testing.assert_close(emb.tokens[: first.shape[0]], first, rtol=0, atol=1e-5)


def test_classify_scores_as_the_scorer_does(models, tmp_path):
    model = audiossl.load_model(models["ft"])
    clips = [noise(s, 10 + i) for i, s in enumerate([0.6, 2.4, 1.0])]  # shorter, longer, about the window
    got = model.classify(clips, sample_rate=16000)
    dump = tmp_path / "dump"
    dump.mkdir()
    with kaldiio.WriteHelper(f"ark,scp:{dump / 'feats.ark'},{dump / 'feats.scp'}") as w:
        for i, c in enumerate(clips):
            w(f"utt{i}", compute_fbank(torch.from_numpy(c), "eat").numpy())
    ref = score_dump_dir(load_finetuned(models["ft"]), dump, ["dog", "rain", "bell"], EAT_NORM, window_frames=96)
    for g, r in zip(got, ref.scores):
        assert g.labels == ["dog", "rain", "bell"]
        np.testing.assert_allclose(g.probs.numpy(), r, rtol=0, atol=1e-6)
    assert abs(float(got[0].probs.sum()) - 1) < 1e-5  # softmax: a single-label model
    top = got[1].top(2)
    assert len(top) == 2 and top[0][1] >= top[1][1] and top[0][0] in ("dog", "rain", "bell")
    # the fine-tuned model's encoder embeds too
    assert model.embed(clips[0], sample_rate=16000).clip.shape == (cpu_encoder("eat_pretrain")["embed_dim"],)


def test_tokens_are_the_tokenizers(models):
    model = audiossl.load_model(models["tok"])
    wave = noise(1.0, 4)
    feats = normalize(compute_fbank(torch.from_numpy(wave), "beats"), BEATS_NORM)
    with torch.no_grad():
        ref = load_tokenizer(models["tok"]).tokenize(feats[None], None)[0]
    got = model.tokens(wave, sample_rate=16000)
    assert got.dtype == torch.int64 and torch.equal(got, ref.long())


def test_bad_input_says_what_is_wrong(models, tmp_path):
    model = audiossl.load_model(models["eat"])
    with pytest.raises(ValueError, match="sample_rate"):
        model.embed(noise(1.0, 0))
    with pytest.raises(ValueError, match=r"looks like \(samples, channels\)"):
        model.embed(noise(1.0, 0, channels=2).T, sample_rate=16000)
    with pytest.raises(ValueError, match="shorter than one 25 ms frame"):
        model.embed(noise(0.01, 0), sample_rate=16000)
    with pytest.raises(Exception, match="missing.wav"):
        model.embed(tmp_path / "missing.wav")
    with pytest.raises(ValueError, match="tokens come from a beats_tokenizer"):
        model.tokens(noise(1.0, 0), sample_rate=16000)
    with pytest.raises(ValueError, match="class scores come from a fine-tuned"):
        model.classify(noise(1.0, 0), sample_rate=16000)
    with pytest.raises(FileNotFoundError, match="no such model.pt"):
        audiossl.load_model(tmp_path / "nothing.pt")


# --- the HEAR 2021 API (audiossl.hear): the rules of its common API, checked on random audio -------
@pytest.mark.parametrize("name", ["beats", "eat"])
def test_hear_module_follows_the_hear_rules(models, name):
    from audiossl import hear

    model = hear.load_model(models[name])
    assert isinstance(model, torch.nn.Module) and model.sample_rate == 16000
    assert isinstance(model.scene_embedding_size, int) and isinstance(model.timestamp_embedding_size, int)
    model.to("cpu")
    for n, seconds in [(2, 1.07), (1, 1.98), (3, 4.0)]:
        audio = torch.rand(n, int(seconds * 16000)) * 2 - 1
        emb, ts = hear.get_timestamp_embeddings(audio, model)
        assert emb.dtype == torch.float32 and ts.dtype == torch.float32
        assert emb.dim() == 3 and emb.shape[0] == n and emb.shape[2] == model.timestamp_embedding_size
        assert ts.shape == emb.shape[:2]
        gaps = ts.diff(dim=1)
        assert float((gaps - 40.0).abs().max()) < 1e-3, "timestamps every hop_ms, evenly"
        length_ms = 1000 * seconds
        assert float(ts.max()) <= length_ms and float(ts.max()) >= length_ms - 2 * 40, (ts.max(), length_ms)
        assert float(ts.min()) == pytest.approx(87.5)  # the centre of the first patch row
        # shift 0's rows are the API's frames of the whole clip (its last, partial row completed)
        frames = audiossl.load_model(models[name]).embed(audio[0], sample_rate=16000, cover_end=True).frames
        m = min(frames.shape[0], (emb.shape[1] + 3) // 4)
        torch.testing.assert_close(emb[0, ::4][:m], frames[:m], rtol=0, atol=1e-5)
    audio = torch.rand(4, int(2.74 * 16000)) * 2 - 1
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.dtype == torch.float32 and scene.shape == (4, model.scene_embedding_size)
    torch.testing.assert_close(scene[1], audiossl.load_model(models[name]).embed(audio[1], sample_rate=16000).clip)
    with pytest.raises(ValueError, match="hop_ms"):
        hear.load_model(models[name], hop_ms=30)


# --- audiossl.bin.extract from audio ---------------------------------------------------------------
def test_extract_from_a_directory_or_a_wav_scp_gives_the_apis_embeddings(models, tmp_path, monkeypatch):
    from audiossl.bin.extract import main as extract_main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "audio" / "sub").mkdir(parents=True)
    waves = {"a": noise(1.0, 20), "sub-b": noise(0.8, 21), "sub-c": noise(1.0, 22)}
    for utt, w in waves.items():
        sf.write(tmp_path / "audio" / (utt.replace("-", "/") + ".wav"), w, 16000, subtype="FLOAT")
    assert extract_main(["--model", str(models["eat"]), "--audio", "audio", "--output-dir", "out_dir",
                         "--outputs", "frames,clip"]) == 0
    (tmp_path / "wav.scp").write_text("".join(f"{u} audio/{u.replace('-', '/')}.wav\n" for u in waves))
    assert extract_main(["--model", str(models["eat"]), "--audio", "wav.scp", "--output-dir", "out_scp"]) == 0
    api = audiossl.load_model(models["eat"])
    for out in ("out_dir", "out_scp"):
        frames = kaldiio.load_scp(f"{out}/frames.scp")
        assert sorted(frames.keys()) == sorted(waves)
        for utt, w in waves.items():
            np.testing.assert_allclose(frames[utt], api.embed(w, sample_rate=16000).tokens.numpy(), rtol=0, atol=1e-5)


def test_extract_logits_of_a_fine_tuned_model(models, tmp_path, monkeypatch):
    from audiossl.bin.extract import main as extract_main

    monkeypatch.chdir(tmp_path)
    waves = [noise(0.9, 30), noise(0.5, 31)]  # within the 96-frame window: one window each
    for i, w in enumerate(waves):
        sf.write(tmp_path / f"c{i}.wav", w, 16000, subtype="FLOAT")
    (tmp_path / "list.txt").write_text("c0.wav\nc1.wav\n")
    assert extract_main(["--model", str(models["ft"]), "--audio", "list.txt", "--output-dir", "out",
                         "--outputs", "logits"]) == 0
    logits = kaldiio.load_scp("out/logits.scp")
    api = audiossl.load_model(models["ft"])
    for i, w in enumerate(waves):
        assert logits[f"c{i}"].shape == (3,)
        probs = torch.softmax(torch.tensor(logits[f"c{i}"]), dim=-1)
        torch.testing.assert_close(probs, api.classify(w, sample_rate=16000).probs, rtol=0, atol=1e-5)


def test_extract_from_audio_refuses_bad_lists(models, tmp_path, monkeypatch, capsys):
    from audiossl.bin.extract import main as extract_main

    monkeypatch.chdir(tmp_path)
    assert extract_main(["--model", str(models["eat"]), "--audio", "nowhere", "--output-dir", "o"]) == 2
    assert "nowhere: no such file or directory" in capsys.readouterr().err
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    for d in ("x", "y"):
        sf.write(tmp_path / d / "same.wav", noise(0.5, 0), 16000)
    (tmp_path / "list.txt").write_text("x/same.wav\ny/same.wav\n")
    assert extract_main(["--model", str(models["eat"]), "--audio", "list.txt", "--output-dir", "o"]) == 2
    assert "both give the utterance id 'same'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="logits come from a fine-tuned"):
        extract_main(["--model", str(models["eat"]), "--audio", "x", "--output-dir", "o", "--outputs", "logits"])
