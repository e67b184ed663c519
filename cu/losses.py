r"""The contrastive unlearning loss of Lee et al., "Contrastive Unlearning: A Contrastive Approach
to Machine Unlearning", Eq. 5 (sample unlearning) and Eq. 6 (single-class unlearning).

For a forget batch X^u (embeddings z_i, labels y_i) and a retain batch X^r (z_j, y_j), with
s_ij = z_i . z_j / tau, each anchor i has positives P_i = {j : y_j = y_i} and negatives
N_i = {j : y_j != y_i} in the retain batch. Per anchor:

  Eq. 5 (sample):  l_i = -(1/|N_i|) sum_{a in N_i} [ s_ia - log sum_{p in P_i} exp(s_ip) ]
  Eq. 6 (class):   l_i = -(1/|N_i|) sum_{a in N_i} [ s_ia - log |N_i| ]

Minimising l_i pulls z_i toward other classes (s_ia up) and pushes it away from its own class
(the log-sum-exp over positives down). Implemented as printed, with three choices the equations
leave open, all stated here:
  * an anchor whose P_i is empty in sample mode uses the Eq. 6 term (the authors' code takes
    log 0 there);
  * an anchor with empty N_i contributes nothing;
  * the loss is the MEAN of l_i over contributing anchors (the paper writes a sum; the authors'
    code takes the mean, which keeps lambda_UL independent of the batch size), and 0 (still
    attached to the graph) when no anchor contributes.
The authors' code (Loss_v1) also adds the -log(denominator) term for every same-label column
(`log_prob.sum(1)`), weighting the push term by B/|N_i|; that slip is not reproduced.
"""
from __future__ import annotations

import torch

_MASKED = -1e4  # stands for -inf in log-sum-exp; |s| <= 1/tau, so exp(_MASKED - max) == 0 exactly


def contrastive_unlearning_loss(z_u: torch.Tensor, y_u: torch.Tensor, z_r: torch.Tensor, y_r: torch.Tensor,
                                tau: float = 0.7, single_class: bool = False) -> torch.Tensor:
    """Eq. 5 (single_class=False) or Eq. 6 (single_class=True), averaged over contributing anchors.

    z_u: (B_u, d) L2-normalised forget embeddings, y_u: (B_u,) labels
    z_r: (B_r, d) L2-normalised retain embeddings, y_r: (B_r,) labels
    """
    if z_u.ndim != 2 or z_r.ndim != 2 or z_u.shape[1] != z_r.shape[1]:
        raise ValueError(f"expected (B_u, d) and (B_r, d) embeddings, got {tuple(z_u.shape)} and {tuple(z_r.shape)}")
    if len(y_u) != len(z_u) or len(y_r) != len(z_r):
        raise ValueError("each embedding needs one label")
    if tau <= 0:
        raise ValueError(f"tau={tau} must be > 0")
    s = z_u @ z_r.T / tau                                   # (B_u, B_r)
    pos = y_u[:, None] == y_r[None, :]
    neg = ~pos
    n_neg = neg.sum(1)
    mean_neg = (s * neg).sum(1) / n_neg.clamp(min=1)        # (1/|N_i|) sum_a s_ia
    log_n_neg = torch.log(n_neg.clamp(min=1).to(s.dtype))   # Eq. 6 denominator
    if single_class:
        log_den = log_n_neg
    else:
        lse_pos = torch.logsumexp(s.masked_fill(neg, _MASKED), dim=1)
        log_den = torch.where(pos.any(1), lse_pos, log_n_neg)
    per_anchor = -(mean_neg - log_den)
    valid = n_neg > 0
    if not bool(valid.any()):
        return s.sum() * 0.0
    return per_anchor[valid].mean()
