"""X-Transformer training in stages, for a GPU on another machine (``xmc stage export|run|import``).

The CPU stages and the GPU stage are the methods :meth:`XTransformer.fit` itself calls, run in
three steps with files in between:

1. ``export`` (CPU): TF-IDF, the fit / validation split, token ids of every text, label trees of
   the members indexed on TF-IDF (pifa-tfidf), written as a *bundle*: token ids (uint16), labels Y
   and trees C as integer arrays (M = binarize(Y C) is one sparse product on either side), the
   pre-trained encoder's weights (fp16 safetensors by default) and a JSON manifest.
2. ``run`` (GPU, or CPU): for each member, the trees of neural label representations
   (pifa-neural, text-emb: they need the pre-trained encoder), matcher fine-tuning and the encoding
   of every document; writes a *result*: fine-tuned embeddings E (fp16 by default), the matcher's
   top-b clusters of every training document (the MAN negatives), the cluster heads and, unless
   left out, the fine-tuned encoders' weights, in shards of at most 16 MiB.
3. ``import`` (CPU): TF-IDF again from the same training file (checked against the bundle's
   fingerprint), the linear rankers on [TF-IDF || E] with TFN+MAN negatives, and an ordinary
   xtransformer model directory that ``xmc predict`` loads.

With ``precision`` and ``embeddings`` set to ``float32`` the three steps give the model an
in-process ``xmc train`` gives (same token ids, weights, seeds and functions); fp16 rounds the
weights that travel, so the fine-tuning starts from slightly different weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
import uuid
from typing import Literal

import numpy as np

from ...config import Config, check, check_device
from ...data.dataset import XMCDataset
from ...errors import ConfigError, ModelFormatError
from ...io import Marker, atomic_directory, check_replaceable
from ...neural import bundle as B
from ...neural.budget import resolve
from .config import XTransformerConfig
from .model import XTransformer, _Member, _Prepared

logger = logging.getLogger(__name__)

BUNDLE_FORMAT, RESULT_FORMAT, VERSION = "xmc-stage-bundle", "xmc-stage-result", 1
BUNDLE_MARKER = Marker(B.MANIFEST, format=BUNDLE_FORMAT)  # what --overwrite may replace: a bundle, never a result
RESULT_MARKER = Marker(B.MANIFEST, format=RESULT_FORMAT)
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".h5", ".msgpack")


@dataclasses.dataclass
class StageOptions(Config):
    """What travels, and in which precision.

    Attributes:
        precision: dtype of the encoder weights sent and brought back (``float16`` halves them;
            ``float32`` makes the staged model equal the in-process one).
        embeddings: dtype of the fine-tuned embeddings brought back (``int8``: one float32 scale per
            row, for ensembles whose float16 embeddings would not fit).
        return_encoders: bring the fine-tuned encoders back, so the imported model predicts from raw
            text; without them only the embeddings of the training and ``--encode`` documents return
            (enough to score those, as the benchmarks do).
        limits: refuse bundles and results over the transfer limits (64 MiB sent; 8 files of at most
            16 MiB, 64 MiB in all, back).
    """

    precision: Literal["float16", "float32"] = "float16"
    embeddings: Literal["float16", "float32", "int8"] = "float16"
    return_encoders: bool = True
    limits: bool = True

    def validate(self) -> None:
        check(self.precision in ("float16", "float32"), f"precision must be float16 or float32, got {self.precision!r}")
        check(self.embeddings in ("float16", "float32", "int8"),
              f"embeddings must be float16, float32 or int8, got {self.embeddings!r}")

    def transfer_limits(self) -> B.Limits:
        return B.Limits() if self.limits else B.Limits.none()


def _fingerprint(prep: _Prepared) -> str:
    """Identifies the training data: the labels, the encoder texts and the validation texts."""
    from ...neural.cache import texts_fingerprint

    h = hashlib.sha1()
    for a in (prep.Y.indptr, prep.Y.indices, np.asarray(prep.Y.shape), prep.fit_rows):
        h.update(np.ascontiguousarray(a).astype(np.int64).tobytes())
    h.update(texts_fingerprint(prep.texts).encode())
    h.update(texts_fingerprint(prep.valid_texts).encode())
    return h.hexdigest()


def _label_texts_fingerprint(prep: _Prepared) -> str:
    """Identifies the label texts (or names) the label representations and the ranker read."""
    from ...neural.cache import texts_fingerprint

    return texts_fingerprint(prep.label_texts or [])


def _unstaged(cfg: XTransformerConfig) -> tuple[str, str] | None:
    """(why, what to do) when a resolved config has no GPU stage, else None: export refuses such a
    config, and a bundle holding one was not written by export."""
    if cfg.matcher.kind != "transformer":
        return (f"matcher.kind {cfg.matcher.kind!r}: only the fine-tuned transformer matcher has a GPU stage",
                "train this config with 'xmc train'")
    if any(m.recluster for m in cfg.members):
        return "members[].recluster is not staged yet", "set it to false or train with 'xmc train'"
    return None


def _stage_config(config: XTransformerConfig) -> XTransformerConfig:
    """The config resolved for a GPU machine, refused in one line where there is no GPU stage."""
    cfg, _ = resolve(config, kind="cuda")
    unstaged = _unstaged(cfg)
    if unstaged:
        raise ConfigError("; ".join(unstaged))
    return cfg


def _member_specs(k: int, n: int, n_extra: int, dim: int, n_clusters: int, top_b: int, n_labels: int,
                  levels: int, device_indexed: bool, encoder_shapes: dict | None, opts: StageOptions) -> list:
    specs = B.quantized_specs(f"m{k}.E", n, dim, opts.embeddings)
    specs.append((f"m{k}.matcher_ids", (n, min(top_b, n_clusters)), _ids_dtype(n_clusters)))
    specs += [(f"m{k}.head.weight", (n_clusters, dim), "float32"), (f"m{k}.head.bias", (n_clusters,), "float32")]
    if n_extra:
        specs += B.quantized_specs(f"m{k}.extra_E", n_extra, dim, opts.embeddings)
    if device_indexed:
        specs += [(f"m{k}.chain{i}", (n_labels,), "int32") for i in range(levels)]  # upper bound per level
    for name, (shape, dtype) in (encoder_shapes or {}).items():
        specs.append((f"m{k}.encoder.{name}", tuple(shape) if shape else (1,), dtype))
    return specs


def _ids_dtype(n_clusters: int) -> str:
    return "uint16" if n_clusters <= np.iinfo(np.uint16).max else "int32"


def _encoder_shapes(encoder, precision: str) -> dict:
    return {name: (list(t.shape), precision if t.is_floating_point() else str(t.dtype).replace("torch.", ""))
            for name, t in encoder.backbone.state_dict().items()}


def _save_encoder(encoder, directory: str, precision: str) -> None:
    """The pre-trained encoder as safetensors in ``precision`` plus its tokenizer files."""
    import copy

    import torch

    backbone = copy.deepcopy(encoder.backbone).to(getattr(torch, precision))
    backbone.save_pretrained(directory, safe_serialization=True)
    encoder.tokenizer.save_pretrained(directory)


# ---- export -----------------------------------------------------------------------------------------
def export_bundle(config: XTransformerConfig, data: XMCDataset, out: str | os.PathLike, *,
                  valid: XMCDataset | None = None, extra: XMCDataset | None = None,
                  options: StageOptions | None = None, overwrite: bool = False, progress: bool = True) -> dict:
    """Write the bundle of ``config`` trained on ``data`` to ``out``; return its summary (sizes, counts).

    Args:
        valid: documents for the matcher's early stopping (as ``fit``'s ``valid``).
        extra: documents to encode with each fine-tuned encoder too (e.g. the test set of a benchmark).
        options: precision and limits (:class:`StageOptions`).
    """
    from ...neural.encoder import TextEncoder

    opts = options or StageOptions()
    out = os.fspath(out)
    check_replaceable(out, overwrite=overwrite, marker=BUNDLE_MARKER, what="stage bundle")
    cfg = _stage_config(config)
    limits = opts.transfer_limits()
    model = XTransformer(cfg)
    prep = model._prepare(data, valid, None)
    encoder = TextEncoder.from_pretrained(cfg.encoder)  # on the CPU: here it only tokenises and is copied
    model._tokenize(prep, encoder)
    vocab = len(encoder.tokenizer)
    arrays: dict[str, np.ndarray] = {}

    def tokens(name, toks):
        for key, a in B.token_arrays(toks, vocab).items():
            arrays[f"{name}.{key}"] = a

    tokens("train", prep.tokens)
    tokens("valid", prep.valid_tokens)
    if any(m.label_repr == "text-emb" for m in cfg.members):
        if prep.label_tokens is None:
            raise ConfigError("label_repr 'text-emb' needs label texts (or label names)")
        tokens("labels", prep.label_tokens)
    n_extra = 0
    if extra is not None:
        n_extra = len(extra)
        tokens("extra", encoder.tokenized(extra.input_texts(cfg.text_fields)))
    for name, M in (("Y", prep.Y), ("valid_Y", prep.valid_Y)):
        for key, a in B.binary_csr_arrays(M).items():
            arrays[f"{name}.{key}"] = a
    arrays["fit_rows"] = prep.fit_rows.astype(np.int64)
    members, n_labels = [], prep.Y.shape[1]
    for k, m in enumerate(cfg.members):
        if m.label_repr == "pifa-tfidf":  # indexed here; the neural representations need the encoder
            chain = model._index_member(k, m, prep, None, None, progress)
            for i in range(len(chain)):
                arrays[f"m{k}.chain{i}"] = chain.parents(i).astype(np.int32)
            members.append({"label_repr": m.label_repr, "indexed": "cpu", "levels": len(chain),
                            "n_clusters": int(chain[len(chain) - 1].shape[1])})
        else:
            levels = max(1, int(np.ceil(np.log(max(2, n_labels / m.max_leaf_size)) / np.log(m.branching))) + 1)
            members.append({"label_repr": m.label_repr, "indexed": "device", "levels": levels,
                            "n_clusters": int(min(n_labels, m.branching ** (levels - 1)))})

    # Sizes first: nothing is written when either way would not fit.
    specs = [(name, a.shape, a.dtype.name) for name, a in arrays.items()]
    enc_shapes = _encoder_shapes(encoder, opts.precision)
    enc_bytes = B.spec_bytes((n, tuple(s), d) for n, (s, d) in enc_shapes.items())
    tokenizer_bytes = 1 * B.MIB  # tokenizer.json, vocabulary, configs (measured below)
    send = B.spec_bytes(specs) + enc_bytes + tokenizer_bytes
    B.check_transfer("the bundle", send, 0, limits, "send")
    dim = encoder.dim
    result_specs = []
    for k, info in enumerate(members):
        result_specs += _member_specs(k, len(prep.Y.indptr) - 1, n_extra, dim, info["n_clusters"],
                                      cfg.matcher.top_b, n_labels, info["levels"], info["indexed"] == "device",
                                      enc_shapes if opts.return_encoders else None, opts)
    back = B.spec_bytes(result_specs)
    back_files = B.n_shards(result_specs, limits.file_bytes) + 1
    B.check_transfer(f"the result of {len(members)} member(s) (embeddings {opts.embeddings}"
                     f"{', encoders ' + opts.precision if opts.return_encoders else ', no encoders'})",
                     back, back_files, limits, "back")

    bundle_id = uuid.uuid4().hex
    with atomic_directory(out, overwrite=overwrite, marker=BUNDLE_MARKER, what="stage bundle") as tmp:
        index = B.write_arrays(tmp, arrays, None)
        _save_encoder(encoder, os.path.join(tmp, "encoder"), opts.precision)
        summary = {"documents": len(prep.Y.indptr) - 1, "fit_documents": int(len(prep.fit_rows)),
                   "valid_documents": len(prep.valid_tokens), "extra_documents": n_extra, "labels": n_labels,
                   "vocab_size": vocab, "dim": dim, "max_length": cfg.encoder.max_length,
                   "mean_tokens": float(np.diff(arrays["train.offsets"]).mean()) if len(prep.tokens) else 0.0,
                   "estimated_result_bytes": back, "estimated_result_files": back_files}
        B.write_manifest(tmp, {
            "format": BUNDLE_FORMAT, "version": VERSION, "model": XTransformer.name, "bundle_id": bundle_id,
            "config": cfg.to_dict(), "options": opts.to_dict(), "members": members,
            "training": {"fingerprint": _fingerprint(prep), "texts_key": prep.tokens.key,
                         "valid_key": prep.valid_tokens.key, "label_texts": _label_texts_fingerprint(prep)},
            "summary": summary, "index": index})
        summary["bundle_bytes"], summary["bundle_files"] = B.directory_bytes(tmp)
    B.check_transfer("the bundle", summary["bundle_bytes"], 0, limits, "send")  # the estimate's tokenizer share
    logger.info("bundle %s: %s", out, summary)
    return summary


# ---- reading a bundle -------------------------------------------------------------------------------
@dataclasses.dataclass
class Bundle:
    """A checked bundle: manifest, config, arrays and where its encoder lies."""

    path: str
    manifest: dict
    config: XTransformerConfig
    options: StageOptions
    arrays: dict

    @property
    def summary(self) -> dict:
        return self.manifest["summary"]

    def tokens(self, name: str):
        from ...neural.encoder import Tokenized

        s = self.summary
        ids = B.require(self.arrays, f"{name}.ids", self.path, ("uint16", "int32"), (None,))
        offsets = B.require(self.arrays, f"{name}.offsets", self.path, "int64", (None,))
        key = {"train": self.manifest["training"]["texts_key"], "valid": self.manifest["training"]["valid_key"]}
        return Tokenized(B.token_lists(ids, offsets, s["vocab_size"], int(s["max_length"]), f"{self.path}: {name}"),
                         key=key.get(name, f"{self.manifest['bundle_id']}:{name}"))

    def matrix(self, name: str, n_rows: int):
        indptr = B.require(self.arrays, f"{name}.indptr", self.path, "int64", (n_rows + 1,))
        indices = B.require(self.arrays, f"{name}.indices", self.path, "int32", (None,))
        return B.binary_csr(indptr, indices, (n_rows, self.summary["labels"]), f"{self.path}: {name}")

    def prepared(self) -> _Prepared:
        s = self.summary
        valid_tokens = self.tokens("valid")
        fit_rows = B.require(self.arrays, "fit_rows", self.path, "int64", (s["fit_documents"],))
        if len(fit_rows) and (fit_rows.min() < 0 or fit_rows.max() >= s["documents"]):
            raise ModelFormatError(f"{self.path}: fit_rows outside the {s['documents']} documents")
        prep = _Prepared(X=None, Y=self.matrix("Y", s["documents"]), fit_rows=fit_rows,
                         valid_Y=self.matrix("valid_Y", len(valid_tokens)), tokens=self.tokens("train"),
                         valid_tokens=valid_tokens)
        if len(prep.tokens) != s["documents"]:
            raise ModelFormatError(f"{self.path}: {len(prep.tokens)} tokenised documents, the manifest says "
                                   f"{s['documents']}")
        if "labels.ids" in self.arrays:
            prep.label_tokens = self.tokens("labels")
        return prep

    def chain(self, k: int, source: dict, where: str):
        from ...indexing.tree import ClusterChain

        levels = self.manifest["members"][k]["levels"] if source is self.arrays else None
        parents = []
        i = 0
        while f"m{k}.chain{i}" in source and (levels is None or i < levels):
            parents.append(B.require(source, f"m{k}.chain{i}", where, "int32", (None,)).astype(np.int64))
            i += 1
        try:
            chain = ClusterChain.from_assignments(parents)
        except ValueError as exc:
            raise ModelFormatError(f"{where}: member {k}'s label tree is not valid ({exc})") from None
        if chain.n_labels != self.summary["labels"]:
            raise ModelFormatError(f"{where}: member {k}'s label tree has {chain.n_labels} labels, expected "
                                   f"{self.summary['labels']}")
        return chain


def read_bundle(path: str | os.PathLike) -> Bundle:
    """A bundle written by :func:`export_bundle`, checked (format, version, arrays, encoder files)."""
    path = os.fspath(path)
    manifest = B.read_manifest(path, BUNDLE_FORMAT, VERSION, "stage bundle")
    where = os.path.join(path, B.MANIFEST)
    try:
        if manifest["model"] != XTransformer.name:
            raise ModelFormatError(f"{where}: a bundle of model {manifest['model']!r}; only xtransformer is staged")
        config = XTransformerConfig.from_dict(manifest["config"], where=f"{where}:config")
        options = StageOptions.from_dict(manifest["options"], where=f"{where}:options")
        members = manifest["members"]
        if len(members) != len(config.members) or any(m["indexed"] not in ("cpu", "device") for m in members):
            raise ModelFormatError(f"{where}: members do not match the config's {len(config.members)} member(s)")
        for key in ("documents", "fit_documents", "labels", "vocab_size", "dim", "max_length", "extra_documents"):
            if not isinstance(manifest["summary"][key], int):
                raise ModelFormatError(f"{where}: summary.{key} must be an integer")
        manifest["training"]["fingerprint"], manifest["bundle_id"], manifest["index"]  # noqa: B018 (present)
    except (KeyError, TypeError) as exc:
        raise ModelFormatError(f"{where}: incomplete bundle manifest (missing {exc})") from None
    unstaged = _unstaged(config)
    if unstaged:
        raise ModelFormatError(f"{where}: config: {unstaged[0]}; this bundle was not written by 'xmc stage export'")
    enc_dir = os.path.join(path, "encoder")
    if not os.path.isfile(os.path.join(enc_dir, "model.safetensors")):
        raise ModelFormatError(f"{path}: encoder/model.safetensors is missing (bundles carry safetensors weights only)")
    unsafe = [f for f in os.listdir(enc_dir) if f.endswith(_PICKLE_SUFFIXES)]
    if unsafe:
        raise ModelFormatError(f"{path}: encoder/{unsafe[0]} is not safetensors; bundles never carry pickled weights")
    arrays = B.read_arrays(path, manifest["index"], path)
    return Bundle(path, manifest, config, options, arrays)


# ---- run ------------------------------------------------------------------------------------------
def run_bundle(bundle_path: str | os.PathLike, out: str | os.PathLike, *, device: str = "auto",
               overwrite: bool = False, progress: bool = True) -> dict:
    """The GPU stage: fine-tune and encode every member of the bundle; write the result to ``out``.

    Returns the result's summary (device, seconds per stage, sizes).
    """
    import torch

    from ...neural.encoder import TextEncoder

    started = time.perf_counter()
    check_device(device)
    out = os.fspath(out)
    check_replaceable(out, overwrite=overwrite, marker=RESULT_MARKER, what="stage result")
    bundle = read_bundle(bundle_path)
    opts, s = bundle.options, bundle.summary
    # The exporting machine's cache and checkpoint folders mean nothing here.
    cfg = bundle.config.replace(matcher=bundle.config.matcher.replace(device=device), cache_dir=None, work_dir=None)
    model = XTransformer(cfg)
    dev = model._device()
    pretrained = TextEncoder.from_pretrained(cfg.encoder, os.path.join(bundle.path, "encoder")).to(dev).eval()
    if len(pretrained.tokenizer) != s["vocab_size"] or pretrained.dim != s["dim"]:
        raise ModelFormatError(f"{bundle.path}: the encoder has vocabulary {len(pretrained.tokenizer)} and width "
                               f"{pretrained.dim}; the manifest says {s['vocab_size']} and {s['dim']}")
    prep = bundle.prepared()
    extra = bundle.tokens("extra") if s["extra_documents"] else None
    model.timings_ = {}
    E_pre = None
    if any(m.label_repr == "pifa-neural" for m in cfg.members):
        t = time.perf_counter()
        E_pre = model.cache.encode(pretrained, prep.tokens, progress=progress, desc="encoding train (pre-trained)")
        model._timed("encode_pretrained", t)
    arrays: dict[str, np.ndarray] = {}
    histories = []
    for k, m in enumerate(cfg.members):
        info = bundle.manifest["members"][k]
        if info["indexed"] == "cpu":
            chain = bundle.chain(k, bundle.arrays, bundle.path)
        else:
            chain = model._index_member(k, m, prep, E_pre, pretrained, progress)
            for i in range(len(chain)):
                arrays[f"m{k}.chain{i}"] = chain.parents(i).astype(np.int32)
        member, history, E, matcher_ids, chain = model._fit_matcher(k, m, chain, prep, pretrained, E_pre, progress)
        histories.append(history)
        for key, a in B.quantize(E, opts.embeddings).items():
            arrays[f"m{k}.E.{key}"] = a
        K = chain[len(chain) - 1].shape[1]
        arrays[f"m{k}.matcher_ids"] = matcher_ids.astype(_ids_dtype(K))
        for name in ("weight", "bias"):
            arrays[f"m{k}.head.{name}"] = getattr(member.head.linear, name).detach().float().cpu().numpy()
        if extra is not None:
            t0 = time.perf_counter()
            E_extra = model.cache.encode(member.encoder, extra, progress=progress, desc="encoding extra documents")
            for key, a in B.quantize(E_extra, opts.embeddings).items():
                arrays[f"m{k}.extra_E.{key}"] = a
            model._timed(model._prefix(k) + "encode_extra", t0)
        if opts.return_encoders:
            for name, t in member.encoder.backbone.state_dict().items():
                t = t.detach().cpu()
                arrays[f"m{k}.encoder.{name}"] = (t.to(getattr(torch, opts.precision)) if t.is_floating_point()
                                                  else t).numpy()
        del member, E  # one fine-tuned encoder at a time in memory
    limits = opts.transfer_limits()
    specs = [(name, a.shape, a.dtype.name) for name, a in arrays.items()]
    n_bytes, n_files = B.spec_bytes(specs), B.n_shards(specs, limits.file_bytes) + 1
    B.check_transfer("the result", n_bytes, n_files, limits, "back")
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    summary = {"device": gpu, "seconds": round(time.perf_counter() - started, 1), "timings": model.timings_,
               "result_bytes": n_bytes, "result_files": n_files}
    with atomic_directory(out, overwrite=overwrite, marker=RESULT_MARKER, what="stage result") as tmp:
        index = B.write_arrays(tmp, arrays, limits.file_bytes)
        B.write_manifest(tmp, {"format": RESULT_FORMAT, "version": VERSION, "bundle_id": bundle.manifest["bundle_id"],
                               "histories": histories, "summary": summary, "index": index})
    return summary


# ---- import -----------------------------------------------------------------------------------------
def import_result(bundle_path: str | os.PathLike, result_path: str | os.PathLike, data: XMCDataset, *,
                  valid: XMCDataset | None = None, require_encoders: bool = True,
                  progress: bool = True) -> XTransformer:
    """The trained model: the bundle's CPU stages redone from ``data`` (checked to be the exported
    training data), each member's fine-tuned parts from the result, and the rankers trained here.

    Without encoders in the result (``return_encoders=False``) the model predicts only through
    :meth:`XTransformer.predict_embedded`, from the embeddings in ``model.extra_embeddings_``;
    ``require_encoders`` refuses such a result instead.
    """
    import torch

    from ...neural.encoder import TextEncoder
    from ...neural.matcher import ClusterHead

    bundle = read_bundle(bundle_path)
    if require_encoders and not bundle.options.return_encoders:
        raise ConfigError(f"{bundle.path}: exported without encoders, so its result cannot make a model that "
                          "predicts from text; export again without --no-encoders")
    result_path = os.fspath(result_path)
    rman = B.read_manifest(result_path, RESULT_FORMAT, VERSION, "stage result")
    if rman.get("bundle_id") != bundle.manifest["bundle_id"]:
        raise ModelFormatError(f"{result_path}: a result of another bundle than {bundle.path} (bundle ids differ)")
    rarrays = B.read_arrays(result_path, rman.get("index", {}), result_path)
    cfg, s = bundle.config, bundle.summary
    model = XTransformer(cfg)
    prep = model._prepare(data, valid, None)
    if _fingerprint(prep) != bundle.manifest["training"]["fingerprint"]:
        source = getattr(data, "source", None) or "the training data"
        raise ConfigError(f"{source}: not the training (and validation) data {bundle.path} was exported from")
    exported = bundle.manifest["training"].get("label_texts")  # absent from bundles of earlier versions
    if exported is not None and exported != _label_texts_fingerprint(prep):
        raise ConfigError(f"label texts (--label-text): not the ones {bundle.path} was exported with; give the "
                          "same file (or none, if export had none)")
    n, dim = s["documents"], s["dim"]
    extra = []
    for k, m in enumerate(cfg.members):
        chain = bundle.chain(k, bundle.arrays if bundle.manifest["members"][k]["indexed"] == "cpu" else rarrays,
                             bundle.path if bundle.manifest["members"][k]["indexed"] == "cpu" else result_path)
        K = chain[len(chain) - 1].shape[1]
        E = _embeddings(rarrays, f"m{k}.E", n, dim, result_path)
        ids = B.require(rarrays, f"m{k}.matcher_ids", result_path, _ids_dtype(K), (n, min(cfg.matcher.top_b, K)))
        if len(ids) and (ids.min() < 0 or ids.max() >= K):
            raise ModelFormatError(f"{result_path}: member {k}'s matcher clusters lie outside its {K} clusters")
        head = ClusterHead(dim, K)
        head.load_state_dict({f"linear.{name}": torch.from_numpy(B.require(rarrays, f"m{k}.head.{name}", result_path, "float32",
                                                               shape))
                              for name, shape in (("weight", (K, dim)), ("bias", (K,)))})
        head.eval()
        member = _Member(m, ranker=None, head=head)
        if bundle.options.return_encoders:
            member.encoder = TextEncoder.from_pretrained(cfg.encoder, os.path.join(bundle.path, "encoder")).eval()
            expected = member.encoder.backbone.state_dict()
            state = {}
            for name, ref in expected.items():
                a = B.require(rarrays, f"m{k}.encoder.{name}", result_path, None, tuple(ref.shape) or (1,))
                state[name] = torch.from_numpy(np.array(a)).reshape(ref.shape).to(ref.dtype)
            member.encoder.backbone.load_state_dict(state)
        model._fit_ranker(k, member, prep, E, chain, ids.astype(np.int64), progress)
        model.members_.append(member)
        if s["extra_documents"]:
            extra.append(_embeddings(rarrays, f"m{k}.extra_E", s["extra_documents"], dim, result_path))
    model.encoder_ = None  # every member has its own fine-tuned encoder, as after fit
    model.histories_ = rman.get("histories", [])
    model.timings_ = {**rman.get("summary", {}).get("timings", {}), **model.timings_}
    model.extra_embeddings_ = extra
    return model


def _embeddings(arrays: dict, name: str, n: int, dim: int, where: str) -> np.ndarray:
    q = B.require(arrays, f"{name}.q", where, ("float16", "float32", "int8"), (n, dim))
    scale = B.require(arrays, f"{name}.scale", where, "float32", (n,)) if q.dtype == np.int8 else None
    return B.dequantize(q, scale)
