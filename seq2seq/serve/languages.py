"""`GET /languages` in LibreTranslate's shape: the languages of the served models' pairs.

A model's pair is its recipe's `data.src_lang` -> `data.tgt_lang`; every language that appears on either
side is listed once, in the order the models were given, with the targets it translates into (empty for a
language that is only ever a target). LibreTranslate clients fill their language menus from this list.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

NAMES: dict[str, str] = {
    "ar": "Arabic", "az": "Azerbaijani", "bg": "Bulgarian", "bn": "Bengali", "ca": "Catalan", "cs": "Czech",
    "da": "Danish", "de": "German", "el": "Greek", "en": "English", "eo": "Esperanto", "es": "Spanish",
    "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French", "ga": "Irish",
    "gl": "Galician", "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian",
    "ja": "Japanese", "ko": "Korean", "lt": "Lithuanian", "lv": "Latvian", "ms": "Malay",
    "nb": "Norwegian Bokmål", "nl": "Dutch", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian",
    "ru": "Russian", "sk": "Slovak", "sl": "Slovenian", "sq": "Albanian", "sv": "Swedish", "th": "Thai",
    "tl": "Tagalog", "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu", "vi": "Vietnamese", "zh": "Chinese",
}  # fmt: skip
"""English names of the ISO 639-1 codes LibreTranslate serves; any other code is its own name."""


def language_list(pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """`[{"code", "name", "targets"}]` for (source, target) language pairs, each language once."""
    targets: dict[str, list[str]] = {}
    for src, tgt in pairs:
        for code in (src, tgt):
            targets.setdefault(code, [])
        if tgt not in targets[src]:
            targets[src].append(tgt)
    return [{"code": code, "name": NAMES.get(code, code), "targets": t} for code, t in targets.items()]
