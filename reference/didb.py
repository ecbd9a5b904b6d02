"""Our formulation of DIDB-ViT (arXiv 2507.02222): DIBA, HFSC and the improved RPReLU.

The paper's method section and code are not public (research/binary_vit.md §0), so these
equations are OURS, built from what is known in words; docs/didb.md gives them, every
choice made where the paper is silent, and what they cost.

Token layout (timm's VisionTransformerDistilled): tokens 0 and 1 are cls and dist, tokens
2.. are the patches in row-major order on a g x g grid.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gsbsim.format.model_file import SCORE_SHIFT

from .attention import BinaryAttention
from .config import QuantConfig
from .gsb import GSBAttention, GSBValue
from .layers import unit_codes
from .quantizers import LearnableBias, SignedBinarizer
from .reactnet import RPReLU

PREFIX_TOKENS = 2  # cls + dist: no grid position

__all__ = ["DIDBAttention", "DIDBError", "IRPReLU", "PREFIX_TOKENS", "diba", "grid_side", "haar_split", "laplacian8",
           "score_weight_codes"]


class DIDBError(ValueError):
    """A bad argument or input given to reference/didb.py."""


def grid_side(num_tokens: int) -> int:
    """Side g of the patch grid of num_tokens = 2 + g*g tokens."""
    g = math.isqrt(max(num_tokens - PREFIX_TOKENS, 0))
    if g < 1 or g * g + PREFIX_TOKENS != num_tokens:
        raise DIDBError(f"reference/didb.py: {num_tokens} tokens are not cls + dist + a square patch grid")
    return g


def _split_grid(x: Tensor, where: str) -> tuple[Tensor, Tensor, int]:
    """x [..., N, d] -> (prefix tokens [..., 2, d], patch grid [..., g, g, d], g)."""
    if x.dim() < 2:
        raise DIDBError(f"reference/didb.py: {where}: input needs shape [..., N, d], got {tuple(x.shape)}")
    g = grid_side(x.shape[-2])
    return x[..., :PREFIX_TOKENS, :], x[..., PREFIX_TOKENS:, :].reshape(*x.shape[:-2], g, g, x.shape[-1]), g


def _join_grid(prefix: Tensor, grid: Tensor) -> Tensor:
    return torch.cat([prefix, grid.flatten(-3, -2)], dim=-2)


def haar_split(x: Tensor) -> tuple[Tensor, Tensor]:
    """Undecimated level-1 Haar of tokens x [..., N, d] along the patch grid: (low L, high H = x - L).

    L[h, w] = ((x[h, w] + x[h, w+1]) + (x[h+1, w] + x[h+1, w+1])) / 4, replicate padding past the
    last row and column (so a constant grid has H = 0 exactly); the cls/dist tokens are their own
    low band (L = x, H = 0). Same number of tokens per band (no decimation).
    """
    prefix, grid, _ = _split_grid(x, "haar_split")
    pad = torch.cat([grid, grid[..., -1:, :, :]], dim=-3)
    pad = torch.cat([pad, pad[..., :, -1:, :]], dim=-2)
    low = ((pad[..., :-1, :-1, :] + pad[..., :-1, 1:, :]) + (pad[..., 1:, :-1, :] + pad[..., 1:, 1:, :])) / 4
    low = _join_grid(prefix, low)
    return low, x - low


def laplacian8(v: Tensor) -> Tensor:
    """Local differential term sum_{j in 8-neighbourhood(i)} (v_j - v_i) on the patch grid.

    Zero padding: a neighbour outside the grid counts as v_j = 0 (so this is the 3x3 depthwise
    filter with 1 on the ring and -8 at the centre); cls/dist tokens get 0.
    """
    prefix, grid, g = _split_grid(v, "laplacian8")
    pad = torch.nn.functional.pad(grid, (0, 0, 1, 1, 1, 1))
    ring = sum(pad[..., 1 + dh:1 + dh + g, 1 + dw:1 + dw + g, :]
               for dh in (-1, 0, 1) for dw in (-1, 0, 1) if dh or dw)
    return _join_grid(torch.zeros_like(prefix), ring - 8 * grid)


def diba(a_hat: Tensor, v_hat: Tensor, local_gain: Tensor | float) -> Tensor:
    """DIBA context O = A_hat V_hat - (rowsum(A_hat) - 1) * V_hat + lambda * laplacian8(V_hat).

    A_hat = alpha*B ({0, alpha} binarized attention [..., N, N]), V_hat [..., N, d]: with k_i =
    sum_j B_ij, rowsum(A_hat) = alpha*k, so O = alpha*(B V_hat) - (alpha*k - 1)*V_hat + local term;
    for alpha = 1 the first two terms are V_hat_i + sum_{j: B_ij = 1} (V_hat_j - V_hat_i)
    (research/binary_vit.md §1.2 step 4).
    """
    return a_hat @ v_hat - (a_hat.sum(dim=-1, keepdim=True) - 1) * v_hat + local_gain * laplacian8(v_hat)


class IRPReLU(RPReLU):
    """Improved RPReLU with token-wise shifts (ours): PReLU_{b_c}(x - g_c - g~_n) + z_c + z~_n.

    g~, z~ in R^N (init 0) shift every token n; x is [batch, N, C].
    """

    def __init__(self, channels: int, num_tokens: int):
        super().__init__(channels)
        if not isinstance(num_tokens, int) or num_tokens < 1:
            raise DIDBError(f"reference/didb.py: IRPReLU: num_tokens must be a positive int, got {num_tokens!r}")
        self.gamma_token = nn.Parameter(torch.zeros(num_tokens))
        self.zeta_token = nn.Parameter(torch.zeros(num_tokens))

    def shifts(self) -> tuple[Tensor, Tensor]:
        return self.gamma + self.gamma_token[:, None], self.zeta + self.zeta_token[:, None]

    def out_terms(self) -> tuple[Tensor, ...]:
        return self.zeta, self.zeta_token[:, None]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[-2] != self.gamma_token.numel():
            raise DIDBError(f"reference/didb.py: IRPReLU: expected {self.gamma_token.numel()} tokens in dim -2, "
                            f"got shape {tuple(x.shape)}")
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_tokens={self.gamma_token.numel()}"


def score_weight_codes(attn: "DIDBAttention") -> Tensor:
    """The HFSC score weights on the integer model's grid, as integers [2, H] (float64): the
    exporter's `score.w` = round_half_up(γ_b[h]·α_q,b·α_k,b/√d·2^SCORE_SHIFT) (docs/integer_model.md
    §13.2). The float model uses them too (DIDBAttention.scores), so its scores are the integer
    model's exactly: at 2^-16 the weights keep about 13 bits, and rounded apart from the float
    model's they flipped attention bits on MNIST (issue 11)."""
    # float64 products of the float32 scales, on the model's device (no host round trip per forward)
    alphas = torch.stack([attn.q_bin_low.scales().double() * attn.k_bin_low.scales().double(),
                          attn.q_bin_high.scales().double() * attn.k_bin_high.scales().double()]).reshape(2, 1)
    gain = attn.band_gain.detach().double().reshape(2, -1)
    return torch.floor(gain * alphas / math.sqrt(attn.head_dim) * 2.0 ** SCORE_SHIFT + 0.5)


class DIDBAttention(BinaryAttention):
    """Stage-2 attention of `didb`: HFSC scores, BiT {0, a} attention, DIBA context.

    HFSC (candidate A of research/binary_vit.md §1.3): Q and K (float outputs of the qkv unit)
    are split by haar_split; each band gets its own shift and {-a, a} binarizer, and
    S = (g_L*Q_L K_L^T + g_H*Q_H K_H^T)/sqrt(d) with g = band_gain (per head, init 1).
    Then softmax, the learnable [H, N, N] bias and BiT's {0, a} binarizer (GSB with one group);
    V: shift + BiT's {-a, a}; context: diba() with lambda = local_gain (per head, init 0).
    """

    def _build_core(self, num_tokens: int, cfg: QuantConfig) -> None:
        grid_side(num_tokens)
        h, shape = self.num_heads, (self.num_heads, 1, self.head_dim)
        self.q_move_low, self.q_move_high = LearnableBias(shape), LearnableBias(shape)
        self.k_move_low, self.k_move_high = LearnableBias(shape), LearnableBias(shape)
        self.v_move = LearnableBias(shape)
        self.q_bin_low, self.q_bin_high = SignedBinarizer(), SignedBinarizer()
        self.k_bin_low, self.k_bin_high = SignedBinarizer(), SignedBinarizer()
        self.band_gain = nn.Parameter(torch.ones(2, h, 1, 1))
        self.v_gsb = GSBValue(groups=1, ratios=(), stat=cfg.mask_stat)
        self.att_bias = LearnableBias((h, num_tokens, num_tokens))
        self.a_gsb = GSBAttention(groups=1, ratios=(), stat=cfg.mask_stat)
        self.local_gain = nn.Parameter(torch.zeros(h, 1, 1))

    def scores(self, q: Tensor, k: Tensor) -> Tensor:
        """HFSC similarity S [B, H, N, N] (before softmax) of the float q, k [B, H, N, d].

        S = w_L·(codes of Q_L·K_Lᵀ) + w_H·(…), the codes' products exact integers and the weights
        w = γ·α_q·α_k/√d on the 2^-SCORE_SHIFT grid (score_weight_codes), so S is the integer
        model's S·2^-16 exactly. Gradients as without the grid: straight through the rounding to γ,
        and to Q, K (and their α, by the binarizers' backward) through the codes."""
        q_low, q_high = haar_split(q)
        k_low, k_high = haar_split(k)
        bands = []
        for qb, kb in ((self.q_bin_low(self.q_move_low(q_low)), self.k_bin_low(self.k_move_low(k_low))),
                       (self.q_bin_high(self.q_move_high(q_high)), self.k_bin_high(self.k_move_high(k_high)))):
            (qc, sq), (kc, sk) = unit_codes(qb), unit_codes(kb)
            bands.append((qc @ kc.transpose(-2, -1), sq * sk))
        alpha = torch.stack([a for _, a in bands]).reshape(2, 1, 1, 1)
        w = self.band_gain * alpha * self.scale
        grid = (score_weight_codes(self) * 2.0 ** -SCORE_SHIFT).to(w.dtype).reshape(w.shape)
        w = w + (grid - w).detach()
        return w[0] * bands[0][0] + w[1] * bands[1][0]

    def mix(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        attn = self.a_gsb(self.biased(self.probabilities(self.scores(q, k))))
        return diba(attn, self.v_gsb(self.v_move(v)), self.local_gain)
