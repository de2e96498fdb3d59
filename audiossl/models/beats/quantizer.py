"""Cosine vector quantiser with an EMA codebook (the BEATs tokenizer's ``quantize`` module).

BEATs (arXiv:2212.09058, section 3.2) quantises L2-normalised tokenizer outputs to the nearest of K
L2-normalised codes; codes follow the data by an exponential moving average instead of gradients
(VQ-VAE-2 style EMA, BEiT v2's "norm EMA" variant: the new centroid of code k is the normalised mean
of the vectors assigned to it, and the EMA result is renormalised). Official reference:
microsoft/unilm ``beats/quantizer.py`` (NormEMAVectorQuantizer).

What we add to the official recipe, all needed once more than one process trains:

* the codebook is a set of *buffers*: never in the optimiser, never touched by autocast (every
  computation here runs in fp32 with autocast off: a bf16 codebook collapsed in ESPnet's runs);
* k-means initialisation (cosine, ``kmeans_iters`` iterations) on the first batch's non-padded
  vectors, then broadcast from rank 0 (the official code initialises per rank);
* per-code counts and sums are all-reduced across ranks before the EMA step;
* optional dead-code restarts: a code whose EMA usage falls below ``dead_code_threshold`` (expected
  assignments per batch) is moved onto a random input vector of rank 0's batch (0 disables this; the
  official code keeps unused codes where they are);
* padded tokens never vote.

State-dict keys match the official ones: ``embedding.{weight, cluster_size, embed_avg, initted}`` and
``cluster_size``. ``embedding.cluster_size`` (the k-means counts) and ``embedding.embed_avg`` are
kept for the layout only; the EMA usage statistics live in ``cluster_size``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)


def _ddp() -> bool:
    return dist.is_available() and dist.is_initialized()


def l2norm(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, p=2, dim=-1)


def spherical_kmeans(
    samples: torch.Tensor, num_clusters: int, num_iters: int = 10, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """K-means with cosine similarity on unit vectors (M, d).

    Starts from ``num_clusters`` random samples (with replacement when M < K); a cluster that loses
    all its members keeps its previous centre. Returns unit-norm centres (K, d) and counts (K,).
    """
    M, d = samples.shape
    device = samples.device
    if M >= num_clusters:
        idx = torch.randperm(M, generator=generator, device="cpu")[:num_clusters].to(device)
    else:
        idx = torch.randint(0, M, (num_clusters,), generator=generator, device="cpu").to(device)
    means = samples[idx]
    counts = torch.zeros(num_clusters, device=device)
    for _ in range(num_iters):
        assign = (samples @ means.t()).argmax(dim=-1)  # (M,)
        counts = torch.bincount(assign, minlength=num_clusters).to(samples.dtype)  # (K,)
        sums = torch.zeros_like(means).index_add_(0, assign, samples)  # (K, d)
        new_means = l2norm(sums / counts.clamp(min=1)[:, None])
        means = torch.where((counts == 0)[:, None], means, new_means)
    return means, counts


@dataclass
class QuantizerOutput:
    """z_q: (B, N, d) quantised vectors with straight-through gradients to z; codes: (B, N) long;
    commit_loss: beta * mean squared distance of non-padded z to their (detached) codes;
    z: (B, N, d) the L2-normalised inputs."""

    z_q: torch.Tensor
    codes: torch.Tensor
    commit_loss: torch.Tensor
    z: torch.Tensor


class CodebookEMA(nn.Module):
    """The codebook buffers, under the official names (``quantize.embedding.*``)."""

    def __init__(self, num_codes: int, dim: int, kmeans_init: bool) -> None:
        super().__init__()
        if kmeans_init:
            weight = torch.zeros(num_codes, dim)  # filled by k-means on the first batch
        else:
            weight = l2norm(torch.randn(num_codes, dim))
        self.register_buffer("weight", weight)
        self.register_buffer("cluster_size", torch.zeros(num_codes))
        self.register_buffer("embed_avg", weight.clone())
        self.register_buffer("initted", torch.tensor([float(not kmeans_init)]))


class NormEMAQuantizer(nn.Module):
    """Nearest-code (cosine) quantiser with an EMA-updated unit-norm codebook.

    Args:
        num_codes: codebook size K (1024 in BEATs).
        dim: code dimension d (256 in BEATs).
        beta: weight of the commitment loss (1.0 in BEATs).
        decay: EMA decay of codes and usage counts (0.99).
        kmeans_init: initialise the codebook by k-means on the first batch (else random unit vectors).
        kmeans_iters: k-means iterations (10).
        dead_code_threshold: restart codes whose EMA usage (assignments per batch) falls below this;
            0 disables restarts.
    """

    def __init__(
        self,
        num_codes: int = 1024,
        dim: int = 256,
        beta: float = 1.0,
        decay: float = 0.99,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.0,
    ) -> None:
        super().__init__()
        assert 0.0 < decay < 1.0, f"decay must be in (0, 1), got {decay}"
        self.num_codes = num_codes
        self.dim = dim
        self.beta = beta
        self.decay = decay
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        self.embedding = CodebookEMA(num_codes, dim, kmeans_init)
        self.register_buffer("cluster_size", torch.zeros(num_codes))  # EMA of assignments per batch
        # Once the codebook is seen initialised it stays so: remember it on the host, so that the
        # frozen tokenizer of an SSL step does not read a device flag (a host sync) every batch.
        self._seen_initialised = False
        self.register_load_state_dict_pre_hook(lambda module, *args: setattr(module, "_seen_initialised", False))

    @property
    def codebook(self) -> torch.Tensor:
        """(K, d) unit-norm codes."""
        return self.embedding.weight

    @property
    def initialised(self) -> bool:
        if not self._seen_initialised:
            self._seen_initialised = bool(self.embedding.initted.item())
        return self._seen_initialised

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for unit vectors z (..., d) (the official squared-distance form)."""
        flat = z.reshape(-1, self.dim).float()
        w = self.codebook.float()
        dist2 = flat.pow(2).sum(1, keepdim=True) + w.pow(2).sum(1) - 2 * flat @ w.t()  # (M, K)
        return dist2.argmin(dim=1).view(z.shape[:-1])

    @torch.no_grad()
    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """Codes (B, N) of raw vectors (B, N, d); no state is touched."""
        if not self.initialised:
            raise RuntimeError(
                "the tokenizer codebook was never initialised: this tokenizer has not seen a training "
                "batch (train it, or load a trained tokenizer's model.pt)"
            )
        with torch.autocast(device_type=z.device.type, enabled=False):
            return self.nearest(l2norm(z.float()))

    def forward(self, z: torch.Tensor, padding_mask: torch.Tensor | None = None) -> QuantizerOutput:
        """Quantise (B, N, d) vectors; in training mode also update the codebook (once per call)."""
        B, N, d = z.shape
        assert d == self.dim, f"quantiser expects {self.dim}-dim vectors, got {d}"
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = l2norm(z.float())  # (B, N, d)
            valid = torch.ones(B, N, dtype=torch.bool, device=z.device) if padding_mask is None else ~padding_mask
            flat = z.detach()[valid]  # (M, d) non-padded vectors
            if not self.initialised:
                self._kmeans_init(flat)
            codes = self.nearest(z.detach())  # (B, N)
            z_q = F.embedding(codes, self.codebook)  # (B, N, d), codes as they were before this update
            if self.training:
                self._ema_update(flat, codes[valid])
            per_token = (z_q.detach() - z).pow(2).mean(-1)  # (B, N)
            commit = self.beta * (per_token * valid).sum() / valid.sum().clamp(min=1)
            z_q = z + (z_q - z).detach()  # straight-through
        return QuantizerOutput(z_q=z_q, codes=codes, commit_loss=commit, z=z)

    @torch.no_grad()
    def _kmeans_init(self, flat: torch.Tensor) -> None:
        assert flat.shape[0] > 0, "k-means initialisation got no non-padded vectors"
        means, counts = spherical_kmeans(flat, self.num_codes, self.kmeans_iters)
        self.embedding.weight.copy_(means)
        self.embedding.cluster_size.copy_(counts)
        if _ddp():
            dist.broadcast(self.embedding.weight, src=0)
            dist.broadcast(self.embedding.cluster_size, src=0)
        self.embedding.initted.fill_(1.0)
        used = int((self.embedding.cluster_size > 0).sum())
        logger.info("codebook initialised by k-means on %d vectors: %d of %d codes used", flat.shape[0], used, self.num_codes)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        counts = torch.bincount(codes, minlength=self.num_codes).float()  # (K,)
        sums = torch.zeros(self.num_codes, self.dim, device=flat.device).index_add_(0, codes, flat)  # (K, d)
        if _ddp():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        unused = counts == 0
        centroid = l2norm(sums / counts.clamp(min=1)[:, None])
        centroid = torch.where(unused[:, None], self.codebook, centroid)  # unused codes keep theirs
        weight = l2norm(self.codebook * self.decay + centroid * (1 - self.decay))
        self.embedding.weight.copy_(weight)
        if self.dead_code_threshold > 0:
            self._restart_dead_codes(flat)

    @torch.no_grad()
    def _restart_dead_codes(self, flat: torch.Tensor) -> None:
        dead = self.cluster_size < self.dead_code_threshold  # identical on every rank (all-reduced counts)
        num_dead = int(dead.sum())
        if num_dead == 0 or flat.shape[0] == 0:
            return
        pick = torch.randint(0, flat.shape[0], (num_dead,), device="cpu").to(flat.device)
        weight = self.embedding.weight.clone()
        weight[dead] = flat[pick]
        if _ddp():
            dist.broadcast(weight, src=0)
        self.embedding.weight.copy_(weight)
        # a restarted code gets a typical usage, so it has time to attract vectors before it counts as dead
        self.cluster_size[dead] = self.cluster_size.mean().clamp(min=self.dead_code_threshold * 2)
        logger.debug("restarted %d dead codes", num_dead)
