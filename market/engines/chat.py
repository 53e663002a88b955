"""Structured prompts to token ids through a tokenizer's chat template, shared by hf and vLLM.

Torch-free: it needs only a tokenizer (``apply_chat_template`` and ``__call__``). A `Prompt`'s
turns (`Prompt.messages`) go through the model's chat template with ``add_generation_prompt=True``,
identically for generation and scoring; a reply is every token after the templated prompt. A base
model without a template gets the turns as plain text, the reply after a newline.
"""

from __future__ import annotations

from collections.abc import Sequence

from market.prompts import Prompt

EMBEDDED_PROMPT_STYLE = "named"
"""The prompt style of the embedded SmolLM2-135M-Instruct when ``prompt_style`` is unset: the one
with the highest measured mention rate. `admarket probe --style named,user --seeds 3 --replies 8`
on an H200 (float32; 10 queries × 3 listing seeds × 8 replies = 240 replies a row; T 0.8, top-p
0.95, 48 tokens, seed 0; docs/gpu.md): π_con naming its lone entrant, and π_i naming brand i:

=====================================================  ========  =====
style                                                  π_con k=1  π_i
=====================================================  ========  =====
user ("<query> In your answer, mention X, who ...")    46%       57%
named (user + "Write the name X in your answer.")      60%       68%
=====================================================  ========  =====

The system-turn instruction is followed far less (5% on the CPU, docs/prompts.md); ``both``
confuses the small model (3/16 on the CPU).
"""

OTHER_MODELS_PROMPT_STYLE = "system"
"""The prompt style of any other model when ``prompt_style`` is unset: the paper's placement."""


def default_prompt_style(embedded: bool) -> str:
    """The style used when ``prompt_style`` is unset: measured for the embedded model."""
    return EMBEDDED_PROMPT_STYLE if embedded else OTHER_MODELS_PROMPT_STYLE


def chat_text(tokenizer, prompt: Prompt) -> str:
    """The templated prompt as text, ready for the reply."""
    messages = [{"role": role, "content": content} for role, content in prompt.messages]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in messages) + "\n"


def render_chat(tokenizer, prompt: Prompt) -> list[int]:
    """The token ids of a prompt through the model's chat template, ready for the reply."""
    return list(tokenizer(chat_text(tokenizer, prompt), add_special_tokens=False)["input_ids"])


def shared_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """The length of the longest common prefix of token-id sequences (0 for fewer than two).

    Prompts of one round in a user-turn style share the chat header, the system turn and the
    query: an engine computes that prefix's KV cache once for all of them.
    """
    if len(sequences) < 2:
        return 0
    first = sequences[0]
    length = min(len(s) for s in sequences)
    for other in sequences[1:]:
        k = 0
        while k < length and other[k] == first[k]:
            k += 1
        length = k
        if length == 0:
            break
    return length
