"""What a ``/predict`` request may hold, and the checks that turn a bad one into a 4xx answer.

Torch-free except :class:`VocabularyCheck`, which tokenizes class names exactly as the model does, so a
name the model would refuse is refused before the request reaches the model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["FIELDS", "RequestError", "ServeLimits", "VocabularyCheck", "parse_class_names", "parse_top_k"]

#: the form fields of ``POST /predict``; anything else is refused (the server reads uploads only)
FIELDS = ("video", "class_names", "top_k")


class RequestError(ValueError):
    """A request the server refuses: ``status`` (4xx) and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ServeLimits:
    """Bounds on one request (``tc-clip serve --max_upload_mb ...``)."""

    max_upload_mb: float = 200.0
    max_duration_s: float = 600.0
    max_classes: int = 1000
    max_name_chars: int = 200
    default_top_k: int = 5

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * (1 << 20))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_top_k(values: Sequence[str], limits: ServeLimits) -> int:
    """The ``top_k`` field (at most one, a positive integer); the default when absent."""
    if not values:
        return limits.default_top_k
    if len(values) > 1:
        raise RequestError(400, "top_k was given more than once")
    text = str(values[0]).strip()
    if not text.isdigit() or int(text) < 1:
        raise RequestError(400, f"top_k must be a positive integer, got {values[0]!r}")
    return int(text)


def parse_class_names(values: Sequence[str], limits: ServeLimits) -> list[str] | None:
    """The ``class_names`` field: repeated (one name each) or one JSON list; None when absent.

    Refused with 400: an empty list, a blank, duplicate or over-long name, more names than allowed."""
    if not values:
        return None
    names: Any = list(values)
    if len(values) == 1 and str(values[0]).lstrip().startswith("["):
        try:
            names = json.loads(values[0])
        except json.JSONDecodeError as err:
            raise RequestError(400, f"class_names is not a valid JSON list ({err.msg} at column {err.colno})") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise RequestError(400, "class_names must be a JSON list of strings")
    if not names:
        raise RequestError(400, "class_names is empty: give at least one name")
    if len(names) > limits.max_classes:
        raise RequestError(400, f"too many classes: {len(names)}, the limit is {limits.max_classes}")
    blank = [i for i, n in enumerate(names) if not n.strip()]
    if blank:
        raise RequestError(400, f"class_names holds blank names at positions {blank[:10]}")
    long = [i for i, n in enumerate(names) if len(n) > limits.max_name_chars]
    if long:
        raise RequestError(400, f"class names longer than {limits.max_name_chars} characters at positions {long[:10]}")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        key = " ".join(name.split())
        if key in seen:
            raise RequestError(400, f"duplicate class name {name!r} at positions {seen[key]} and {i}")
        seen[key] = i
    return [str(n) for n in names]


class VocabularyCheck:
    """Refuses names whose prompts the model could not encode (too many tokens for its context length)
    or could not tell apart (identical prompts), with the model's own messages."""

    def __init__(self, n_ctx: int, prompt_template: str | None, context_length: int) -> None:
        self.n_ctx, self.template, self.context_length = n_ctx, prompt_template, context_length

    def __call__(self, names: Sequence[str]) -> None:
        from tc_clip.model import text as T

        try:
            tokens = T.tokenize(T.build_prompts(names, self.n_ctx, self.template), self.context_length)
            T.check_class_names(names, tokens)
        except ValueError as err:
            raise RequestError(400, f"class_names: {err}") from None
