"""The transformers engine, in three parts: `loading` (the embedded model, folders, hub ids),
`sampling` (the exact temperature / top-p sampler) and `scoring` (batched forward passes with KV
caches and a shared prompt prefix), put together by `engine.HFEngine`.

Names are imported on first use, so ``market.engines.hf.loading`` (torch-free until it loads a
model) can be imported without torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "HFEngine": "market.engines.hf.engine",
    "sample_tokens": "market.engines.hf.sampling",
    "embedded_model_folder": "market.engines.hf.loading",
    "EMBEDDED_DISTRIBUTION": "market.engines.hf.loading",
    "EMBEDDED_VERSION": "market.engines.hf.loading",
    "EMBEDDED_INSTALL": "market.engines.hf.loading",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
