"""The vLLM engine: the same protocol on vLLM's offline API, for CUDA machines.

Install with ``pip install 'admarket[vllm]'`` (a vLLM with ``logprobs_mode``, 0.10.2 or newer).
Each protocol call is one batched ``LLM.generate`` call:

- ``generate``: one request per prompt with ``SamplingParams(n, temperature, top_p, max_tokens,
  seed, logprobs=0)``. The engine is built with ``logprobs_mode="processed_logprobs"``, so the
  log-probability vLLM returns for each sampled token is taken after temperature and top-p
  (masked tokens removed, the rest renormalised): their sum is ``proposal_logprob``. Exactness
  caveat: this is the distribution of vLLM's own sampler, whose top-p kernel decides ties and the
  boundary token in float32; it is the exact proposal of the tokens vLLM drew, but it need not equal
  the hf engine's proposal for the same reply to the last decimals. ``model_logprob`` is the
  untempered score of the reply under its prompt, from one batched scoring pass.
- ``score``: one request per prompt × reply pair over the prompt + reply tokens with
  ``prompt_logprobs=0`` at temperature 1 and top-p 1 (so processed and raw log-probs agree); the
  reply positions are summed. vLLM's prefix cache shares the prompt's KV blocks across replies.
- ``next_token_logprobs``: one request per row with ``max_tokens=1`` and ``logprobs=-1`` (the full
  vocabulary), at temperature 1 and top-p 1.

Prompts are rendered by the same torch-free chat template code as the hf engine
(`market.engines.chat`), in the engine's ``prompt_style``, so both engines see the same tokens for
the same model. Seeds: request k of a generate call uses a seed derived from
(seed, k), so the same call gives the same candidates.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from market.engines.base import Candidate, EngineError, EngineInfo, Prompt, SamplingParams
from market.engines.chat import default_prompt_style, render_chat
from market.engines.checks import (
    brief,
    check_generate_args,
    check_prefixes,
    check_prompt_style,
    check_prompts,
    check_replies,
)
from market.engines.hf.loading import embedded_model_folder, looks_like_path

VLLM_INSTALL = "install the vllm extra on a CUDA machine: pip install 'admarket[vllm]'"


def _request_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), index]).generate_state(1)[0] & 0x7FFFFFFF)


class VLLMEngine:
    """vLLM behind the engine protocol (see the module docstring).

    ``model``: a local folder or hub id (vLLM loads it); None for the embedded
    SmolLM2-135M-Instruct, converted to safetensors as for the hf engine; ``dtype``: "auto", "bfloat16",
    "float16", "float32"; ``gpu_memory_utilization``: the share of GPU memory vLLM may take;
    ``max_model_len``: context length (None: the model's); ``enforce_eager``: skip CUDA graphs;
    ``prompt_style``: as for the hf engine (unset: the embedded model's measured best, else
    "system").
    """

    renders_prompts = True  # its numbers depend on a prompt only through the rendered chat

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        enforce_eager: bool = False,
        prompt_style: str | None = None,
    ) -> None:
        style = check_prompt_style(prompt_style, default_prompt_style(embedded=model is None))
        if (
            isinstance(gpu_memory_utilization, bool)
            or not isinstance(gpu_memory_utilization, int | float)
            or not 0 < gpu_memory_utilization <= 1
        ):
            raise EngineError(
                f"gpu_memory_utilization must be a number in (0, 1], got "
                f"{gpu_memory_utilization!r}",
                field="gpu_memory_utilization",
            )
        if model is not None and looks_like_path(os.fspath(model)):
            if not os.path.isdir(os.path.expanduser(os.fspath(model))):
                raise EngineError(
                    f"model folder {os.fspath(model)!r} does not exist: pass an existing folder, "
                    "a hub id, or leave model unset for the embedded SmolLM2-135M-Instruct",
                    field="model",
                )
        try:
            import vllm
        except ImportError as exc:
            raise EngineError(f"vllm is not importable ({brief(exc)}): {VLLM_INSTALL}") from exc
        self._vllm = vllm
        name = os.fspath(embedded_model_folder()[0] if model is None else model)
        try:
            self.llm = vllm.LLM(
                model=name,
                dtype=dtype,
                gpu_memory_utilization=gpu_memory_utilization,
                max_model_len=max_model_len,
                enforce_eager=enforce_eager,
                logprobs_mode="processed_logprobs",
                max_logprobs=-1,
                enable_prefix_caching=True,
            )
        except TypeError as exc:
            raise EngineError(
                f"this vllm ({getattr(vllm, '__version__', '?')}) lacks logprobs_mode, needed for "
                f"exact proposal log-probabilities ({brief(exc)}): pip install 'vllm>=0.10.2'"
            ) from exc
        except (OSError, ValueError, RuntimeError) as exc:
            raise EngineError(
                f"vllm could not load model {name!r} ({brief(exc)}): pass a local folder, or a hub id "
                "reachable from this machine"
            ) from exc
        self.tokenizer = self.llm.get_tokenizer()
        model_config = self.llm.llm_engine.model_config
        self.vocab_size = int(model_config.get_vocab_size())
        self.info = EngineInfo(
            engine="vllm",
            model=name,
            device="cuda",
            dtype=str(model_config.dtype).split(".")[-1],
            extra={"vllm": getattr(vllm, "__version__", "unknown"), "prompt_style": style},
        )
        self._prompt_ids: dict[Prompt, list[int]] = {}

    @property
    def eos_token_id(self) -> int | None:
        return self.tokenizer.eos_token_id

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def prompt_token_ids(self, prompt: Prompt) -> list[int]:
        if prompt not in self._prompt_ids:
            self._prompt_ids[prompt] = render_chat(self.tokenizer, prompt)
        return self._prompt_ids[prompt]

    def _run(self, token_lists: list[list[int]], params) -> list:
        requests = [{"prompt_token_ids": ids} for ids in token_lists]
        return self.llm.generate(requests, params, use_tqdm=False)

    def generate(
        self, prompts: Sequence[Prompt], n: int, params: SamplingParams, seed: int
    ) -> list[list[Candidate]]:
        prompts = check_prompts(prompts)
        check_generate_args(n, params, seed)
        sampling = [
            self._vllm.SamplingParams(
                n=int(n),
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=params.max_new_tokens,
                seed=_request_seed(seed, k),
                logprobs=0,
            )
            for k in range(len(prompts))
        ]
        outputs = self._run([self.prompt_token_ids(p) for p in prompts], sampling)
        drawn = []
        for output in outputs:
            row = []
            for completion in sorted(output.outputs, key=lambda c: c.index):
                ids = tuple(int(t) for t in completion.token_ids)
                proposal = sum(
                    float(position[token].logprob)
                    for token, position in zip(ids, completion.logprobs, strict=True)
                )
                row.append((ids, proposal))
            drawn.append(row)
        replies = [[ids for ids, _ in row] for row in drawn]
        model_logprobs = self._score_pairs(
            [
                (self.prompt_token_ids(p), ids)
                for p, row in zip(prompts, replies, strict=True)
                for ids in row
            ]
        )
        result, k = [], 0
        for row in drawn:
            candidates = []
            for ids, proposal in row:
                candidates.append(Candidate(self.decode(ids), ids, proposal, model_logprobs[k]))
                k += 1
            result.append(candidates)
        return result

    def score(self, prompts: Sequence[Prompt], replies: Sequence[Candidate | str]) -> np.ndarray:
        prompts = check_prompts(prompts)
        replies = check_replies(replies)
        reply_ids = [
            tuple(r.token_ids)
            if isinstance(r, Candidate)
            else tuple(self.tokenizer(r, add_special_tokens=False)["input_ids"])
            for r in replies
        ]
        pairs = [(self.prompt_token_ids(p), ids) for p in prompts for ids in reply_ids]
        return np.asarray(self._score_pairs(pairs), dtype=np.float64).reshape(
            len(prompts), len(replies)
        )

    def _score_pairs(self, pairs: list[tuple[list[int], tuple[int, ...]]]) -> list[float]:
        values = [0.0] * len(pairs)
        todo = [k for k, (_, reply) in enumerate(pairs) if reply]
        if not todo:
            return values
        params = self._vllm.SamplingParams(
            max_tokens=1, temperature=1.0, top_p=1.0, prompt_logprobs=0, detokenize=False
        )
        outputs = self._run([list(pairs[k][0]) + list(pairs[k][1]) for k in todo], params)
        for k, output in zip(todo, outputs, strict=True):
            prompt, reply = pairs[k]
            positions = output.prompt_logprobs[len(prompt) : len(prompt) + len(reply)]
            values[k] = sum(
                float(pos[token].logprob) for token, pos in zip(reply, positions, strict=True)
            )
        return values

    def next_token_logprobs(
        self, prompts: Sequence[Prompt], prefixes: Sequence[Sequence[int]]
    ) -> np.ndarray:
        prompts = check_prompts(prompts)
        prefixes = check_prefixes(prompts, prefixes)
        params = self._vllm.SamplingParams(
            max_tokens=1, temperature=1.0, top_p=1.0, logprobs=-1, detokenize=False
        )
        outputs = self._run(
            [
                self.prompt_token_ids(p) + prefix
                for p, prefix in zip(prompts, prefixes, strict=True)
            ],
            params,
        )
        out = np.full((len(prompts), self.vocab_size), -np.inf)
        for row, output in enumerate(outputs):
            for token, logprob in output.outputs[0].logprobs[0].items():
                out[row, int(token)] = float(logprob.logprob)
        return out
