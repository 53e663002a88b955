"""The transformers engine: the embedded SmolLM2-135M-Instruct, or any Hugging Face causal LM.

Every call is one batched pass over the model (vLLM offline style):

- ``generate``: all prompts × n sequences in one sampling loop over the model's forward with a KV
  cache. The prompts are prefilled once (their shared prefix once for all, `scoring.ForwardPasses`)
  and each prompt's cache repeated n times. Every sampled token's log-probability is taken from
  the very distribution it was drawn from (`sampling.sample_tokens`), so ``proposal_logprob`` is
  exact for the sampler used (the π_gen(y|x) in MOSAIC's allocation, Algorithm 1 line 3, and
  utility, eq. 4); ``model_logprob`` sums the untempered log_softmax(logits), i.e. log π(y|x).
- ``score``: log π(reply | prompt) for every prompt × reply pair, reply tokens only, each prompt
  prefilled once (`scoring.ForwardPasses.score_pairs`). Pairs already known from generation (a
  candidate under the prompt that generated it) are not recomputed.
- ``next_token_logprobs``: the next-token log-distribution after prompt + reply prefix.

Prompts are structured (`market.prompts.Prompt`) and rendered through the model's chat template
(`market.engines.chat`) in the engine's ``prompt_style``, identically for generation and scoring;
a reply is every token after the templated prompt. A reply that ends at EOS includes the EOS token
(in ``token_ids`` and in both log-probabilities).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch

from market.engines.base import Candidate, EngineError, EngineInfo, Prompt, SamplingParams
from market.engines.chat import default_prompt_style, render_chat
from market.engines.checks import (
    check_generate_args,
    check_positive_int,
    check_prefixes,
    check_prompt_style,
    check_prompts,
    check_replies,
)
from market.engines.hf.loading import load_model, resolve_device
from market.engines.hf.sampling import sample_tokens
from market.engines.hf.scoring import ForwardPasses

_MEMO_LIMIT = 65_536
_PROMPT_IDS_LIMIT = 4_096


EMBEDDED_CPU_THREADS = 1
"""Torch threads for the embedded 135M model on a CPU when ``threads`` is unset. Its batches are
small, and on 2 cores shared with anything else two threads wait on each other: `make run`'s demo
(20 rounds, cold cache) at torch's default ran 12 rounds in 10 minutes at load average 3-4, and
with one thread all 20 rounds, the model's conversion and the report took 123 s at the same load."""


class HFEngine:
    """A transformers causal LM behind the engine protocol (see the module docstring).

    ``model``: None for the embedded SmolLM2-135M-Instruct, else a local folder or a hub id (hub
    ids load offline when already in the Hugging Face cache); ``device``: "auto" (CUDA when
    available, else CPU), "cpu", "cuda", "cuda:N"; ``dtype``: "auto" (float32, but bfloat16 for
    a model other than the embedded one on CUDA: `resolve_device`), "float32", "bfloat16", "float16"; ``threads``: torch CPU threads (if None: torch's default,
    but `EMBEDDED_CPU_THREADS` for the embedded model on a CPU);
    ``max_batch_tokens``: token budget of one forward pass when scoring (bounds memory);
    ``local_files_only``: never reach the hub; ``prompt_style``: how the auction's prompts place
    their instruction (`market.prompts.PROMPT_STYLES`; unset: the measured best for the embedded
    model, `market.engines.chat.EMBEDDED_PROMPT_STYLE`, else "system"); ``share_prefix``: compute
    the KV cache of the prompts' shared prefix once per call (same numbers to float tolerance in
    float32); unset: on a CPU, where it pays, and not on a GPU, where it saved nothing and made
    bfloat16 scores depend on the batching (docs/gpu.md).
    """

    renders_prompts = True  # its numbers depend on a prompt only through the rendered chat

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        threads: int | None = None,
        max_batch_tokens: int = 2048,
        local_files_only: bool | None = None,
        prompt_style: str | None = None,
        share_prefix: bool | None = None,
    ) -> None:
        check_positive_int(threads, "threads", optional=True)
        check_positive_int(max_batch_tokens, "max_batch_tokens")
        style = check_prompt_style(prompt_style, default_prompt_style(embedded=model is None))
        if not isinstance(share_prefix, bool | None):
            raise EngineError(
                f"share_prefix must be true or false, got {share_prefix!r}", field="share_prefix"
            )
        self.device, self.dtype = resolve_device(device, dtype, embedded=model is None)
        if share_prefix is None:
            share_prefix = self.device.type == "cpu"
        if threads is None and model is None and self.device.type == "cpu":
            threads = EMBEDDED_CPU_THREADS
        if threads is not None:
            torch.set_num_threads(threads)
        loaded, tokenizer, label = load_model(model, self.dtype, local_files_only)
        self.model = loaded.to(self.device).eval()
        self.tokenizer = tokenizer
        self.info = EngineInfo(
            engine="hf",
            model=label,
            device=str(self.device),
            dtype=str(self.dtype).split(".")[-1],
            extra={"prompt_style": style},
        )
        self._stop_ids = self._find_stop_ids()
        pad_id = self._stop_ids[0] if tokenizer.pad_token_id is None else tokenizer.pad_token_id
        self.passes = ForwardPasses(self.model, self.device, pad_id, max_batch_tokens, share_prefix)
        self._prompt_ids: OrderedDict[Prompt, tuple[int, ...]] = OrderedDict()
        self._memo: OrderedDict[tuple[Prompt, tuple[int, ...]], float] = OrderedDict()

    @property
    def max_batch_tokens(self) -> int:
        return self.passes.max_batch_tokens

    @max_batch_tokens.setter
    def max_batch_tokens(self, value: int) -> None:
        check_positive_int(value, "max_batch_tokens")
        self.passes.max_batch_tokens = value

    @property
    def share_prefix(self) -> bool:
        return self.passes.share_prefix

    @share_prefix.setter
    def share_prefix(self, value: bool) -> None:
        self.passes.share_prefix = bool(value)

    # -- the Engine protocol -----------------------------------------------------------------

    @property
    def eos_token_id(self) -> int | None:
        return self.tokenizer.eos_token_id

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def prompt_token_ids(self, prompt: Prompt) -> tuple[int, ...]:
        """The templated prompt's token ids (the reply starts right after them)."""
        ids = self._prompt_ids.get(prompt)
        if ids is None:
            ids = tuple(render_chat(self.tokenizer, prompt))
            self._prompt_ids[prompt] = ids
            if len(self._prompt_ids) > _PROMPT_IDS_LIMIT:
                self._prompt_ids.popitem(last=False)
        return ids

    def reply_token_ids(self, reply: Candidate | str) -> tuple[int, ...]:
        """A Candidate's own token ids; a str is tokenized as is (no EOS appended)."""
        if isinstance(reply, Candidate):
            return tuple(int(t) for t in reply.token_ids)
        return tuple(self.tokenizer(reply, add_special_tokens=False)["input_ids"])

    def clear_generation_memo(self) -> None:
        """Forget the log-probs known from generation, so that score() recomputes every pair."""
        self._memo.clear()

    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[Prompt], n: int, params: SamplingParams, seed: int
    ) -> list[list[Candidate]]:
        prompts = check_prompts(prompts)
        check_generate_args(n, params, seed)
        n = int(n)
        prefill = self.passes.prefill([self.prompt_token_ids(p) for p in prompts])
        cache = prefill.cache
        cache.batch_repeat_interleave(n)
        logits = prefill.logits.repeat_interleave(n, dim=0)
        mask = prefill.mask.repeat_interleave(n, dim=0)
        next_position = prefill.next_position.repeat_interleave(n, dim=0)
        rows = len(prompts) * n
        alive = torch.arange(rows, device=self.device)
        tokens: list[list[int]] = [[] for _ in range(rows)]
        proposal = np.zeros(rows)
        model_lp = np.zeros(rows)
        stop_ids = torch.tensor(self._stop_ids, device=self.device)
        generator = torch.Generator().manual_seed(int(seed))
        for step in range(params.max_new_tokens):
            uniforms = torch.rand(rows, generator=generator, dtype=torch.float64)
            drawn, drawn_proposal, drawn_model = sample_tokens(
                logits, params, uniforms[alive.cpu()]
            )
            for row, token, lp_prop, lp_model in zip(
                alive.tolist(),
                drawn.tolist(),
                drawn_proposal.tolist(),
                drawn_model.tolist(),
                strict=True,
            ):
                tokens[row].append(token)
                proposal[row] += lp_prop
                model_lp[row] += lp_model
            going = ~torch.isin(drawn, stop_ids)
            if step == params.max_new_tokens - 1 or not bool(going.any()):
                break
            if not bool(going.all()):
                keep = torch.nonzero(going)[:, 0]
                cache.batch_select_indices(keep)
                alive, drawn, mask, next_position = (
                    alive[keep],
                    drawn[keep],
                    mask[keep],
                    next_position[keep],
                )
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            logits, cache = self.passes.forward(
                cache,
                input_ids=drawn[:, None],
                attention_mask=mask,
                position_ids=next_position[:, None],
            )
            logits = logits[:, -1]
            next_position = next_position + 1
        result = []
        for k, prompt in enumerate(prompts):
            candidates = []
            for row in range(k * n, (k + 1) * n):
                token_ids = tuple(tokens[row])
                candidates.append(
                    Candidate(
                        text=self.decode(token_ids),
                        token_ids=token_ids,
                        proposal_logprob=float(proposal[row]),
                        model_logprob=float(model_lp[row]),
                    )
                )
                self._remember(prompt, token_ids, float(model_lp[row]))
            result.append(candidates)
        return result

    @torch.inference_mode()
    def score(self, prompts: Sequence[Prompt], replies: Sequence[Candidate | str]) -> np.ndarray:
        prompts = check_prompts(prompts)
        replies = check_replies(replies)
        out = np.zeros((len(prompts), len(replies)))
        reply_ids = [self.reply_token_ids(r) for r in replies]
        for k, ids in enumerate(reply_ids):
            self._check_token_ids(ids, f"replies[{k}]")
        pairs = []
        for i, prompt in enumerate(prompts):
            for j, ids in enumerate(reply_ids):
                known = self._memo.get((prompt, ids))
                if known is not None:
                    out[i, j] = known
                elif ids:  # an empty reply has log-probability 0
                    pairs.append((i, j))
        if pairs:
            values = self.passes.score_pairs(
                [self.prompt_token_ids(p) for p in prompts], reply_ids, pairs
            )
            for (i, j), value in zip(pairs, values, strict=True):
                out[i, j] = value
        return out

    @torch.inference_mode()
    def next_token_logprobs(
        self, prompts: Sequence[Prompt], prefixes: Sequence[Sequence[int]]
    ) -> np.ndarray:
        prompts = check_prompts(prompts)
        prefixes = check_prefixes(prompts, prefixes)
        for k, prefix in enumerate(prefixes):
            self._check_token_ids(prefix, f"prefixes[{k}]")
        return self.passes.last_logprobs(
            [self.prompt_token_ids(p) + tuple(x) for p, x in zip(prompts, prefixes, strict=True)]
        )

    # -- internals ---------------------------------------------------------------------------

    def _find_stop_ids(self) -> list[int]:
        stop = [] if self.tokenizer.eos_token_id is None else [self.tokenizer.eos_token_id]
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for token in [configured] if isinstance(configured, int) else (configured or []):
            if token not in stop:
                stop.append(int(token))
        if not stop:
            raise EngineError(
                f"model {self.info.model} defines no EOS token (tokenizer.eos_token_id): set one "
                "in its tokenizer or generation config"
            )
        return stop

    def _check_token_ids(self, token_ids: Sequence[int], argument: str) -> None:
        vocab = self.model.config.vocab_size
        bad = [t for t in token_ids if not 0 <= t < vocab]
        if bad:
            raise EngineError(
                f"{argument} holds token id {bad[0]} outside this model's vocabulary "
                f"(0..{vocab - 1}): pass token ids from this engine's own generate()"
            )

    def _remember(self, prompt: Prompt, token_ids: tuple[int, ...], value: float) -> None:
        self._memo[(prompt, token_ids)] = value
        if len(self._memo) > _MEMO_LIMIT:
            self._memo.popitem(last=False)
