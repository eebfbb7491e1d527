"""The console's message catalogue: zh-CN (the default) and English, one key per string.

The messages are data, one JSON file a language in `locales/` (package data), read once here.
Templates say t("key"); no user-facing text is written in a template. `{name}` in a message is
filled by `t(..., name=...)`, or in the browser (the job key's messages, static/jobkey.js).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

DEFAULT = "zh-CN"
LANGUAGES = ("zh-CN", "en")


def _load(lang: str) -> dict[str, str]:
    path = resources.files("gateway.console") / "locales" / f"{lang}.json"
    messages: dict[str, str] = json.loads(path.read_text("utf-8"))
    return messages


_CATALOGUES = {lang: _load(lang) for lang in LANGUAGES}


def t(lang: str, key: str, **values: Any) -> str:
    """The message in `lang` (zh-CN if unknown); the key itself if it is missing."""
    text = _CATALOGUES.get(lang, _CATALOGUES[DEFAULT]).get(key)
    if text is None:
        return key
    return text.format(**values) if values else text


def keys() -> frozenset[str]:
    return frozenset(_CATALOGUES[DEFAULT])
