"""EAT utterance-frame objective: zero for perfect predictions, both scales by hand."""
from __future__ import annotations

import pytest
import torch

from audiossl.models.eat.targets import eat_loss


def _batch(rows: int = 2, masked: int = 3, dim: int = 4):
    torch.manual_seed(0)
    return (torch.randn(rows, masked, dim), torch.randn(rows, masked, dim), torch.randn(rows, dim), torch.randn(rows, dim))


@pytest.mark.parametrize("scale", ["official", "per_clip"])
def test_each_term_zero_for_perfect_prediction_positive_otherwise(scale):
    fp, ft, cp, ct = _batch()
    loss, frame, utt = eat_loss(ft.clone(), ft, ct.clone(), ct, cls_loss=1.0, loss_scale=scale)
    assert loss.item() == frame.item() == utt.item() == 0.0
    loss, frame, utt = eat_loss(fp, ft, ct.clone(), ct, cls_loss=1.0, loss_scale=scale)
    assert frame.item() > 0 and utt.item() == 0.0 and loss.item() == pytest.approx(frame.item())
    loss, frame, utt = eat_loss(ft.clone(), ft, cp, ct, cls_loss=1.0, loss_scale=scale)
    assert frame.item() == 0.0 and utt.item() > 0


def test_official_and_per_clip_scales_by_hand():
    # 2 clones, 2 masked patches each, D = 4 (sqrt(D) = 2).
    frame_target = torch.zeros(2, 2, 4)
    frame_pred = torch.zeros(2, 2, 4)
    frame_pred[0, 0] = 1.0  # squared error summed over dims: 4 -> 4 / 2 = 2
    frame_pred[1, 1, 0] = 2.0  # 4 -> 2;  the other two patches: 0
    cls_target = torch.zeros(2, 4)
    cls_pred = torch.tensor([[1.0, 1.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]])  # 2 / 2 = 1 and 9 / 2 = 4.5
    # frame term: mean over the 4 masked patches of (2, 0, 0, 2) = 1
    loss, frame, utt = eat_loss(frame_pred, frame_target, cls_pred, cls_target, cls_loss=0.5, loss_scale="official")
    assert frame.item() == pytest.approx(1.0)
    assert utt.item() == pytest.approx(5.5)  # summed over the clones
    assert loss.item() == pytest.approx(1.0 + 0.5 * 5.5)
    loss, frame, utt = eat_loss(frame_pred, frame_target, cls_pred, cls_target, cls_loss=0.5, loss_scale="per_clip")
    assert utt.item() == pytest.approx(2.75)  # averaged over the clones
    assert loss.item() == pytest.approx(1.0 + 0.5 * 2.75)


def test_per_clip_does_not_depend_on_batch_size():
    fp, ft, cp, ct = _batch()
    doubled = [torch.cat([t, t]) for t in (fp, ft, cp, ct)]
    one = eat_loss(fp, ft, cp, ct, cls_loss=1.0, loss_scale="per_clip")[0]
    two = eat_loss(*doubled, cls_loss=1.0, loss_scale="per_clip")[0]
    torch.testing.assert_close(one, two)
    off_one = eat_loss(fp, ft, cp, ct, cls_loss=1.0, loss_scale="official")[2]
    off_two = eat_loss(*doubled, cls_loss=1.0, loss_scale="official")[2]
    torch.testing.assert_close(off_two, 2 * off_one)  # the official utterance term grows with the batch


def test_rejects_unknown_scale():
    with pytest.raises(AssertionError, match="loss_scale"):
        eat_loss(*_batch(), cls_loss=1.0, loss_scale="mean")
