"""EAT's inverse block multi-mask: which patches each student clone sees.

The official algorithm (``compute_block_mask_2d`` of cwx-worst-one/EAT ``utils/data_utils.py`` with
``inverse_mask: true``, ``require_same_masks: true``) builds the set of *kept* (visible) patches on the
(time patches x frequency patches) grid, independently for every clone of every clip:

1. draw ``S`` seed patches uniformly with replacement, where
   ``S = floor(N * (1 - mask_prob + mask_prob_adjust) / mask_length**2)``;
2. keep the ``mask_length x mask_length`` square centred on each seed (offsets ``-(m // 2)`` ..
   ``m - 1 - m // 2``), its coordinates clamped to the grid, so squares at an edge are squashed
   against it rather than shifted;
3. randomly drop kept patches, or add non-kept ones, uniformly until exactly
   ``K = floor(N * (1 - mask_prob))`` are kept. Every clone therefore has the same number of
   visible tokens and the batch needs no padding.

With the paper's values (N = 64 x 8 = 512 patches, ``mask_prob`` 0.8, ``mask_prob_adjust`` 0.07,
``mask_length`` 5): S = floor(512 * 0.27 / 25) = 5 seeds (at most 125 patches before trimming) and
K = floor(102.4) = 102 kept patches, so the student sees 102 patches + CLS = 103 tokens. Both counts
are computed as the official code computes them, in floating point then truncated, so an exact
product such as 40 x 0.2 comes out one lower (7, not 8) just as it does there. On small grids S can
be 0 (e.g. 8 x 8 patches: 64 * 0.27 / 25 = 0.69): the kept set is then uniformly random.

Our version is one batched tensor program on the input's device (no loop over clips or clones).
Step 3 gives every patch a uniform random score, adds 1 to the kept ones and takes the top K: that
keeps a uniform random K-subset of the kept patches when there are too many, or all of them plus a
uniform random subset of the others when there are too few, the same distribution as the official
one-by-one sampling without replacement.
"""
from __future__ import annotations

import torch


def num_kept_patches(num_patches: int, mask_prob: float) -> int:
    """Patches each clone keeps visible: ``floor(num_patches * (1 - mask_prob))`` (102 of 512)."""
    return int(num_patches * (1 - mask_prob))


def num_seed_patches(num_patches: int, mask_prob: float, mask_prob_adjust: float, mask_length: int) -> int:
    """Block centres per clone: ``floor(num_patches * (1 - mask_prob + adjust) / length**2)`` (5 of 512)."""
    return int(num_patches * ((1 - mask_prob + mask_prob_adjust) / mask_length**2))


def inverse_block_mask(
    num_masks: int,
    grid: tuple[int, int],
    mask_prob: float = 0.8,
    mask_prob_adjust: float = 0.07,
    mask_length: int = 5,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw ``num_masks`` independent inverse block masks over a (time, frequency) patch grid.

    Args:
        num_masks: how many masks (clips x clones), one per row.
        grid: (H, W) = (time patches, frequency patches); tokens are numbered ``h * W + w``.
        mask_prob: fraction of patches hidden from the student (0.8).
        mask_prob_adjust: extra seed density (0.07), see the module docstring.
        mask_length: side of each square block in patches (5).
        generator: source of randomness; the random numbers are drawn on its device, so one CPU
            generator gives the same masks whatever ``device`` is. None: the default generator of
            ``device``.
        device: where the mask is built and returned (default: the generator's device, else CPU).

    Returns:
        (num_masks, H * W) bool, True on masked (hidden) patches; every row has exactly
        ``num_kept_patches(H * W, mask_prob)`` False entries.
    """
    H, W = grid
    N = H * W
    assert 0.0 <= mask_prob < 1.0, f"mask_prob must be in [0, 1), got {mask_prob}"
    assert mask_length >= 1, f"mask_length must be >= 1, got {mask_length}"
    num_keep = num_kept_patches(N, mask_prob)
    assert num_keep >= 1, f"mask_prob {mask_prob} keeps no patch of a {H}x{W} grid"
    num_seeds = num_seed_patches(N, mask_prob, mask_prob_adjust, mask_length)
    draw_device = generator.device if generator is not None else torch.device(device or "cpu")
    device = torch.device(device) if device is not None else draw_device

    seeds = torch.randint(0, N, (num_masks, num_seeds), generator=generator, device=draw_device).to(device)
    scores = torch.rand(num_masks, N, generator=generator, device=draw_device).to(device)

    kept = torch.zeros(num_masks, N, dtype=torch.bool, device=device)
    if num_seeds > 0:
        offsets = torch.arange(mask_length, device=device) - mask_length // 2  # (m,)
        rows = (seeds // W)[:, :, None, None] + offsets[None, None, :, None]  # (B, S, m, 1)
        cols = (seeds % W)[:, :, None, None] + offsets[None, None, None, :]  # (B, S, 1, m)
        square = rows.clamp(0, H - 1) * W + cols.clamp(0, W - 1)  # (B, S, m, m) token index
        kept.scatter_(1, square.reshape(num_masks, -1), True)

    # Exactly num_keep per row: kept patches (score in [1, 2)) before the others (score in [0, 1)).
    top = (scores + kept.to(scores.dtype)).topk(num_keep, dim=1).indices  # (B, K)
    masked = torch.ones(num_masks, N, dtype=torch.bool, device=device)
    masked.scatter_(1, top, False)
    return masked


def kept_indices(mask: torch.Tensor, num_keep: int | None = None) -> torch.Tensor:
    """(B, N) bool mask with the same count of False per row -> (B, K) indices of the False
    (visible) entries in ascending order, the student's token order.

    ``num_keep``: K when the caller knows it (no device-to-host sync); None counts and checks it.
    """
    if num_keep is None:
        counts = (~mask).sum(dim=1)
        num_keep = int(counts[0])
        assert bool((counts == num_keep).all()), "every row of the mask must keep the same number of patches"
    # A stable sort of the mask puts the False entries first, in their original order.
    return torch.sort(mask.to(torch.uint8), dim=1, stable=True).indices[:, :num_keep]


def masked_indices(mask: torch.Tensor, num_masked: int | None = None) -> torch.Tensor:
    """(B, N) bool mask -> (B, N - K) indices of the True (masked) entries in ascending order."""
    return kept_indices(~mask, num_masked)
