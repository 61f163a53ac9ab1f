"""Label texts from richer sources than a names file: EUROVOC descriptors, attribute descriptions.

Each function returns one text per label of a :class:`LabelVocabulary`, in vocabulary order
(as :func:`xmc.data.readers.read_label_texts`), so the result can be set as
``dataset.label_texts`` or written to a ``{label: text}`` JSON file for ``--label-text``.
"""

from __future__ import annotations

import json
import logging
import os

from ..errors import DataFormatError
from ..io import JSON_ERRORS, json_problem
from .dataset import LabelVocabulary
from .readers import _read_all_text

logger = logging.getLogger(__name__)


def _load_json(path) -> object:
    try:
        return json.loads(_read_all_text(path))
    except JSON_ERRORS as exc:
        raise DataFormatError(path, getattr(exc, "lineno", None), json_problem(exc)) from None


def eurovoc_label_texts(descriptors: str | os.PathLike, vocabulary: LabelVocabulary, *,
                        label_ids: str | os.PathLike | None = None, alt_labels: bool = True,
                        separator: str = "; ") -> list[str]:
    """EUROVOC descriptor names (and alternative names) of the labels.

    Args:
        descriptors: JSON (optionally gzipped) ``{concept_id: {"label": str, "alt_labels": [str]}}``,
            e.g. ``eurlex57k/eurovoc_descriptors.json.gz``.
        vocabulary: the labels; a label name is a concept id, or (with ``label_ids``) a line number.
        label_ids: optional file whose line i is the concept id of the label named ``str(i)``
            (EURLEX57K's ``label_ids.txt``).
        alt_labels: append the alternative names after the preferred one.
        separator: joins the names.

    Returns:
        L texts; a label without a descriptor keeps its name (counted in a warning).
    """
    table = _load_json(descriptors)
    if not isinstance(table, dict):
        raise DataFormatError(descriptors, 1, "expected a JSON object {concept_id: descriptor}")
    ids = None
    if label_ids is not None:
        ids = {str(i): line.strip() for i, line in enumerate(_read_all_text(label_ids).splitlines())}
    texts, missing = [], 0
    for name in vocabulary.names:
        entry = table.get(ids.get(name, "") if ids is not None else name)
        if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
            missing += 1
            texts.append(name)
            continue
        names = [entry["label"]] + ([a for a in entry.get("alt_labels") or [] if isinstance(a, str)] if alt_labels else [])
        texts.append(separator.join(names))
    if missing:
        logger.warning("%s: no descriptor for %d of %d labels; using their names", os.fspath(descriptors), missing,
                       len(vocabulary))
    return texts


def attribute_value_label_texts(descriptions: str | os.PathLike, vocabulary: LabelVocabulary, *,
                                with_description: bool = True) -> list[str]:
    """Texts of ``Attribute=Value`` labels: "Attribute: Value", plus the attribute's description.

    Args:
        descriptions: JSON ``{"attributes": {category: {attribute: {"description": str}}}}``
            (``ave-wdc_pave/label_descriptions.json``); the first description of an attribute wins.
        vocabulary: labels named ``Attribute=Value`` (others keep their name).
    """
    table = _load_json(descriptions)
    described: dict[str, str] = {}
    for attributes in (table.get("attributes", {}) if isinstance(table, dict) else {}).values():
        for attribute, info in (attributes or {}).items():
            if isinstance(info, dict) and isinstance(info.get("description"), str):
                described.setdefault(attribute, info["description"])
    texts = []
    for name in vocabulary.names:
        attribute, sep, value = name.partition("=")
        if not sep:
            texts.append(name)
            continue
        text = f"{attribute}: {value}"
        if with_description and attribute in described:
            text += f". {described[attribute]}"
        texts.append(text)
    return texts
