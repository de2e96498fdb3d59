"""Corpus data preparation (stage 1): official corpus layouts to Kaldi-style data dirs.

One module per corpus, each with a ``prepare_<corpus>`` function that indexes the audio (it never
decodes it) and writes sorted data dirs (``wav.scp``, ``utt2label``, ``utt2dur``, ``labels.txt``):

* :mod:`audiossl.data.corpora.audioset`: ``balanced_train`` (AS-20K), ``unbalanced_train``,
  ``train_as2m`` (both, AS-2M) and ``eval``, from the official segment CSVs and the clips you fetched.
* :mod:`audiossl.data.corpora.esc50`: ``fold<k>/train`` and ``fold<k>/test`` for k = 1..5, and ``all``.
* :mod:`audiossl.data.corpora.spc2`: ``train``, ``valid``, ``test`` from the official lists, and
  ``background_noise`` (``wav.scp`` and ``utt2dur`` only) for augmentation.

Unreadable audio is indexed anyway: feature extraction is where bad clips are dropped and listed.
"""
