"""EAT inverse block multi-mask: counts, block structure, independence, seeding, devices."""
from __future__ import annotations

import pytest
import torch

from audiossl.models.eat.masking import (
    inverse_block_mask,
    kept_indices,
    masked_indices,
    num_kept_patches,
    num_seed_patches,
)

PAPER_GRID = (64, 8)  # 1024 frames x 128 bins in 16 x 16 patches


def _gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _kept_with_kept_neighbour(mask: torch.Tensor, grid: tuple[int, int]) -> float:
    """Fraction of kept patches that have at least one kept 4-neighbour on the grid."""
    H, W = grid
    kept = (~mask).view(-1, H, W)
    pad = torch.nn.functional.pad(kept.float(), (1, 1, 1, 1))
    neighbours = pad[:, :-2, 1:-1] + pad[:, 2:, 1:-1] + pad[:, 1:-1, :-2] + pad[:, 1:-1, 2:]
    return ((neighbours > 0) & kept).sum().item() / kept.sum().item()


def test_paper_counts():
    # Design notes: 512 patches, 5 seeds, exactly 102 kept -> the student sees 103 tokens with CLS.
    assert num_kept_patches(512, 0.8) == 102
    assert num_seed_patches(512, 0.8, 0.07, 5) == 5


@pytest.mark.parametrize("grid", [PAPER_GRID, (8, 8), (13, 8)])
def test_exact_kept_count_per_clone(grid):
    mask = inverse_block_mask(64, grid, generator=_gen(0))
    N = grid[0] * grid[1]
    assert mask.shape == (64, N) and mask.dtype == torch.bool
    kept = (~mask).sum(dim=1)
    assert torch.all(kept == num_kept_patches(N, 0.8)), kept


def test_kept_patches_form_blocks_not_scatter():
    mask = inverse_block_mask(256, PAPER_GRID, generator=_gen(1))
    # A uniformly random mask with the same kept count is the baseline.
    scores = torch.rand(256, 512, generator=_gen(2))
    random_mask = torch.ones(256, 512, dtype=torch.bool)
    random_mask.scatter_(1, scores.topk(102, dim=1).indices, False)
    block = _kept_with_kept_neighbour(mask, PAPER_GRID)
    baseline = _kept_with_kept_neighbour(random_mask, PAPER_GRID)
    assert block > 0.85, block
    assert block > baseline + 0.2, (block, baseline)


def _has_full_window(mask: torch.Tensor, grid: tuple[int, int], k: int) -> torch.Tensor:
    """(B,) whether each mask keeps some whole k x k window of the grid."""
    H, W = grid
    kept = (~mask).view(-1, 1, H, W).float()
    counts = torch.nn.functional.conv2d(kept, torch.ones(1, 1, k, k))  # kept patches per window
    return (counts == k * k).flatten(1).any(dim=1)


def test_one_seed_gives_one_square_clamped_at_the_edges():
    """One seed (mask_prob 0.9: 51 kept, adjust -0.03: floor(512 * 0.07 / 25) = 1) and no trimming:
    the kept set is the seed's 5 x 5 square clamped to the grid plus ~30 random patches. Clamping
    squashes squares at an edge (never shifts them), so a whole 5 x 5 block survives only for seeds
    in rows 2..61 and columns 2..5 (about 47% of them) while every mask keeps a whole 3 x 3 block;
    random additions alone (density ~6%) essentially never fill one, nor grow a square to 6 x 6."""
    assert num_seed_patches(512, 0.9, -0.03, 5) == 1
    mask = inverse_block_mask(400, PAPER_GRID, mask_prob=0.9, mask_prob_adjust=-0.03, generator=_gen(3))
    assert _has_full_window(mask, PAPER_GRID, 3).all()
    assert not _has_full_window(mask, PAPER_GRID, 6).any()
    full5 = _has_full_window(mask, PAPER_GRID, 5).float().mean().item()
    assert 0.35 < full5 < 0.6, full5
    # Baseline: the same number of uniformly random patches has no whole 3 x 3 block.
    scores = torch.rand(400, 512, generator=_gen(10))
    random_mask = torch.ones(400, 512, dtype=torch.bool)
    random_mask.scatter_(1, scores.topk(51, dim=1).indices, False)
    assert _has_full_window(random_mask, PAPER_GRID, 3).float().mean() < 0.02


def test_clones_are_independent():
    mask = inverse_block_mask(16, PAPER_GRID, generator=_gen(4))
    same = (mask[:, None, :] == mask[None, :, :]).all(dim=-1)
    assert same.sum() == 16  # only the diagonal: no two clones share a mask


def test_reproducible_with_a_seed():
    a = inverse_block_mask(8, PAPER_GRID, generator=_gen(5))
    b = inverse_block_mask(8, PAPER_GRID, generator=_gen(5))
    c = inverse_block_mask(8, PAPER_GRID, generator=_gen(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_device_agnostic(device):
    """A CPU generator gives the same masks whatever device they are built on; the default
    generator of the device works too."""
    on_cpu = inverse_block_mask(8, PAPER_GRID, generator=_gen(7))
    here = inverse_block_mask(8, PAPER_GRID, generator=_gen(7), device=device)
    assert here.device.type == device
    assert torch.equal(here.cpu(), on_cpu)
    default = inverse_block_mask(4, PAPER_GRID, device=device)
    assert default.device.type == device
    assert torch.all((~default).sum(1) == 102)


def test_no_seeds_on_a_small_grid_is_uniform():
    """8 x 8 patches: 64 * 0.27 / 25 < 1 seed, so the kept set is uniformly random."""
    assert num_seed_patches(64, 0.8, 0.07, 5) == 0
    mask = inverse_block_mask(4000, (8, 8), generator=_gen(8))
    freq = (~mask).float().mean(dim=0)  # each patch kept with probability 12 / 64
    assert torch.allclose(freq, torch.full_like(freq, 12 / 64), atol=0.03), freq


def test_kept_and_masked_indices():
    mask = inverse_block_mask(6, (8, 8), generator=_gen(9))
    keep, hide = kept_indices(mask), masked_indices(mask)
    assert keep.shape == (6, 12) and hide.shape == (6, 52)
    assert torch.equal(kept_indices(mask, 12), keep) and torch.equal(masked_indices(mask, 52), hide)
    assert torch.all(keep[:, 1:] > keep[:, :-1]) and torch.all(hide[:, 1:] > hide[:, :-1])
    assert not mask.gather(1, keep).any() and mask.gather(1, hide).all()
    with pytest.raises(AssertionError, match="same number"):
        kept_indices(torch.tensor([[True, False], [True, True]]))
