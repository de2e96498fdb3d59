"""Metrics against hand-computed cases."""
import math

import numpy as np
import pytest
import torch

from audiossl.score.metrics import (
    average_precision,
    compute_metrics,
    confusion_matrix,
    d_prime,
    per_class_ap,
    roc_auc,
    topk_accuracy,
)


def ap(scores, pos):
    return average_precision(np.array(scores, dtype=float), np.array(pos, dtype=bool))


def auc(scores, pos):
    return roc_auc(np.array(scores, dtype=float), np.array(pos, dtype=bool))


def test_ap_hand_computed():
    # ranking: + - + -  -> precision at the positives 1/1 and 2/3 -> AP = (1 + 2/3) / 2
    assert ap([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == pytest.approx((1 + 2 / 3) / 2)
    # ranking: - + - + -> (1/2 + 2/4) / 2
    assert ap([0.9, 0.8, 0.7, 0.1], [0, 1, 0, 1]) == pytest.approx(0.5)


def test_ap_perfect_and_reversed():
    assert ap([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 1.0
    # reversed: positives last of 4 -> (1/3 + 2/4) / 2
    assert ap([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_ap_ties_share_one_threshold():
    # The positive ties with a negative at the top: one threshold holding both -> precision 1/2.
    assert ap([0.5, 0.5, 0.1], [1, 0, 0]) == pytest.approx(0.5)
    assert ap([0.5, 0.5, 0.1], [0, 1, 0]) == pytest.approx(0.5)  # order of tied clips does not matter
    # Thresholds: 0.9 -> (tp 1, k 1); 0.8 tie of three -> (tp 2, k 4). AP = 0.5 * 1 + 0.5 * 2/4.
    assert ap([0.9, 0.8, 0.8, 0.8, 0.1], [1, 0, 1, 0, 0]) == pytest.approx(0.75)
    # All scores equal: AP = prevalence.
    assert ap([0.3] * 5, [1, 0, 0, 1, 0]) == pytest.approx(0.4)


def test_ap_without_positives_is_nan_and_left_out_of_map():
    assert math.isnan(ap([0.2, 0.1], [0, 0]))
    scores = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.4], [0.1, 0.7, 0.6]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]])  # class 2 has no positives
    per_class = per_class_ap(scores, targets)
    assert math.isnan(per_class[2])
    # class 0: positive ranked first -> 1; class 1: positive (0.8) ranked first -> 1
    m = compute_metrics(scores, targets, multi_label=True)
    assert m["mAP"] == pytest.approx(1.0)
    assert m["num_classes_scored"] == 2


def test_auc_hand_computed_with_ties():
    # pos {0.9, 0.8}, neg {0.8, 0.1}: pairs 1 + 1 + 0.5 + 1 = 3.5 of 4
    assert auc([0.9, 0.8, 0.8, 0.1], [1, 0, 1, 0]) == pytest.approx(0.875)
    assert auc([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 1.0
    assert auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert auc([0.4] * 4, [1, 0, 1, 0]) == 0.5
    assert math.isnan(auc([0.1, 0.2], [1, 1]))  # no negatives
    assert math.isnan(auc([0.1, 0.2], [0, 0]))  # no positives


def test_auc_matches_pairwise_count_on_random_data():
    rng = np.random.default_rng(0)
    s = np.round(rng.random(200), 2)  # many ties
    p = rng.random(200) < 0.3
    pos, neg = s[p], s[~p]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert auc(s, p) == pytest.approx(pairwise)


def test_d_prime():
    assert d_prime(0.5) == 0.0
    assert d_prime(0.75) == pytest.approx(math.sqrt(2) * 0.6744897501960817)
    assert d_prime(0.25) == pytest.approx(-d_prime(0.75))
    assert d_prime(1.0) == math.inf
    assert math.isnan(d_prime(math.nan))


def test_single_label_accuracy_and_top5():
    scores = np.array([
        [0.1, 0.6, 0.1, 0.1, 0.05, 0.05],  # true 1, top-1 right
        [0.5, 0.1, 0.1, 0.1, 0.1, 0.1],  # true 5: wrong, and ties go to lower indices
        [0.9, 0.02, 0.02, 0.02, 0.02, 0.02],  # true 2
        [0.3, 0.3, 0.1, 0.1, 0.1, 0.1],  # true 1: tie at the top goes to class 0 -> wrong
    ])
    targets = np.eye(6)[[1, 5, 2, 1]]
    m = compute_metrics(scores, targets, multi_label=False)
    assert m["acc"] == pytest.approx(0.25)
    # top-5 of clip 1: 0 then the tied 1..5 by index -> 0,1,2,3,4 -> misses 5.
    assert topk_accuracy(scores, targets, k=5) == pytest.approx(0.75)
    assert m["top5_acc"] == pytest.approx(0.75)
    assert "acc" not in compute_metrics(scores, targets, multi_label=True)


def test_multi_label_top1_counts_any_positive_and_skips_unlabelled_rows():
    scores = np.array([[0.1, 0.9, 0.2], [0.8, 0.1, 0.3], [0.5, 0.4, 0.1]])
    targets = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]])
    assert topk_accuracy(scores, targets, k=1) == pytest.approx(0.5)


def test_torch_input_and_perfect_multilabel():
    targets = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.float32)
    scores = targets * 0.5 + 0.25  # positives 0.75, negatives 0.25
    m = compute_metrics(scores, targets, multi_label=True)
    assert m["mAP"] == 1.0 and m["mAUC"] == 1.0 and m["d_prime"] == math.inf
    m = compute_metrics(1 - scores, targets, multi_label=True)
    assert m["mAUC"] == 0.0


def test_confusion_matrix():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    targets = np.array([[1, 0], [0, 1], [0, 1]])
    assert confusion_matrix(scores, targets).tolist() == [[1, 0], [1, 1]]
