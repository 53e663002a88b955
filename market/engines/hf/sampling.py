"""The hf sampler: temperature, then top-p, drawn by inverse CDF with exact log-probabilities.

Every sampled token's log-probability is taken from the very distribution it was drawn from, so
the sum over a reply is the exact proposal probability π_gen(y|x) of MOSAIC's allocation
(Algorithm 1 line 3) and utility (eq. 4). `market.engines.synthetic.sampler_logprobs` is the same
sampler over a whole next-token table, in numpy.
"""

from __future__ import annotations

import torch

from market.engines.base import SamplingParams


def sample_tokens(
    logits: torch.Tensor, params: SamplingParams, uniforms: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw one token per row; return (tokens, proposal log-probs, model log-probs).

    The proposal distribution: tempered log_softmax(logits / temperature), then top-p keeps the
    tokens, in descending probability (ties by token id), whose preceding mass is below top_p,
    renormalised. A token is drawn by inverse CDF over that order with the row's uniform in
    [0, 1). The model log-prob is the untempered log_softmax(logits) of the same token.
    """
    logits = logits.to(torch.float64)
    tempered = logits / params.temperature
    tempered_norm = torch.logsumexp(tempered, dim=-1, keepdim=True)
    ordered, order = _top_p_order(tempered, tempered_norm, params.top_p)
    ordered = ordered - tempered_norm  # tempered log-probs, descending
    kept_count = torch.full((logits.shape[0],), ordered.shape[1], device=logits.device)
    if params.top_p < 1.0:
        probs = ordered.exp()
        kept = (probs.cumsum(dim=-1) - probs) < params.top_p
        kept_count = kept.sum(dim=-1)
        ordered = ordered.masked_fill(~kept, float("-inf"))
        ordered = ordered - torch.logsumexp(ordered, dim=-1, keepdim=True)
    cdf = ordered.exp().cumsum(dim=-1)
    targets = uniforms.to(device=logits.device, dtype=torch.float64) * cdf[:, -1]
    index = torch.searchsorted(cdf, targets[:, None], right=True)
    index = torch.minimum(index, (kept_count - 1)[:, None])
    tokens = order.gather(1, index)[:, 0]
    proposal = ordered.gather(1, index)[:, 0]
    model = logits.gather(1, tokens[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)
    return tokens, proposal, model


_TOP_K_FIRST = 256


def _top_p_order(
    tempered: torch.Tensor, norm: torch.Tensor, top_p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tempered logits in descending order (ties by token id), enough of them to hold top-p.

    A full sort of the vocabulary is slow on CPU, so the top 256 are taken first; the full sort
    is used when they might not hold the whole top-p set, or when a tie at their edge could
    change which tokens it holds.
    """
    vocab = tempered.shape[1]
    if top_p < 1.0 and vocab > 2 * _TOP_K_FIRST:
        values, index = torch.topk(tempered, _TOP_K_FIRST, dim=-1, sorted=True)
        # restore the tie order of a stable descending sort: by token id among equal values
        by_id = torch.argsort(index, dim=-1)
        values, index = values.gather(1, by_id), index.gather(1, by_id)
        resort = torch.sort(values, dim=-1, descending=True, stable=True).indices
        values, index = values.gather(1, resort), index.gather(1, resort)
        probs = (values - norm).exp()
        mass_before = probs.cumsum(dim=-1) - probs
        kept_last = ((mass_before < top_p).sum(dim=-1) - 1).clamp(max=_TOP_K_FIRST - 1)
        last_kept_value = values.gather(1, kept_last[:, None])[:, 0]
        enough = (mass_before[:, -1] >= top_p) & (values[:, -1] < last_kept_value)
        if bool(enough.all()):
            return values, index
    return torch.sort(tempered, dim=-1, descending=True, stable=True)
