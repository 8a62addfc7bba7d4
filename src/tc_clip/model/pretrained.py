"""Model folders, the way models are shared on the Hugging Face Hub: ``config.json`` + ``model.safetensors``
(+ a ``README.md`` model card).

``config.json`` holds every :class:`TCCLIPConfig` switch, the open_clip architecture (``clip``), the class
names and where the weights came from (``provenance``: run, checkpoint, WiSE-FT ratio, release file,
evaluation figures). Reading a folder never unpickles anything: the config is JSON checked key by key
(only known architecture keys, checked types and values; nothing in it can make the loader reach the
network, e.g. a ``timm_model_name`` of ``"hf-hub:..."`` is refused), the weights are safetensors.

    model.save_pretrained("exported/demo")
    model = TCCLIP.from_pretrained("exported/demo")            # or "owner/name" on the Hub
    model.push_to_hub("owner/name")

A Hub id is fetched with ``huggingface_hub`` (only the three files above). Offline (``HF_HUB_OFFLINE=1``,
or the Hub does not answer within a few seconds) the cached snapshot is used; without one the error says
so at once.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tc_clip.model.serialization import CheckpointError

if TYPE_CHECKING:
    from torch import nn

    TCCLIP = nn.Module  # the model class is passed in (HubMixin): this module never imports it

__all__ = [
    "CARD_FILE",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "HubMixin",
    "from_pretrained",
    "is_pretrained_folder",
    "push_folder",
    "push_to_hub",
    "read_config",
    "resolve_folder",
    "save_pretrained",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
FORMAT = "tc-clip"
FORMAT_VERSION = 1
#: the files a Hub download fetches (nothing else: no pickles, no code)
HUB_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE)
#: seconds to wait for the Hub before falling back to the cached snapshot
HUB_TIMEOUT = 5.0
_MAX_CONFIG_BYTES = 16 << 20
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")

_POS_INT, _INT, _NUM, _BOOL = "positive int", "int", "number", "bool"
#: the open_clip architecture keys a folder may set (a standard ViT + text transformer, built locally)
_CLIP_TOP = {"embed_dim": _POS_INT, "quick_gelu": _BOOL, "init_logit_scale": _NUM,
             "vision_cfg": "vision", "text_cfg": "text"}
_CLIP_VISION = {"layers": _POS_INT, "width": _POS_INT, "head_width": _POS_INT, "mlp_ratio": _NUM,
                "patch_size": _POS_INT, "image_size": _POS_INT, "ls_init_value": "number or null",
                "patch_dropout": _NUM}
_CLIP_TEXT = {"context_length": _POS_INT, "vocab_size": _POS_INT, "width": _POS_INT, "heads": _POS_INT,
              "layers": _POS_INT, "mlp_ratio": _NUM, "ls_init_value": "number or null"}
#: keys that would make open_clip fetch code or weights from elsewhere
_REMOTE_KEYS = ("timm_model_name", "timm_model_pretrained", "hf_model_name", "hf_tokenizer_name",
                "hf_model_pretrained")
_TOP_KEYS = {"format", "format_version", "tc_clip_version", "config", "clip", "class_names", "provenance", "onnx"}


# ------------------------------------------------------------------------------------------- writing
def config_dict(model: TCCLIP, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``config.json`` holds for ``model`` (``provenance`` defaults to ``model.provenance``)."""
    from tc_clip._version import __version__

    if model.clip_cfg is None:
        raise ValueError("the model does not record its CLIP architecture (clip_cfg); it cannot be saved as a folder")
    prov = provenance if provenance is not None else getattr(model, "provenance", None)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tc_clip_version": __version__,
        "config": model.config.to_dict(),
        "clip": json.loads(json.dumps(model.clip_cfg)),
        "class_names": model.class_names,
        "provenance": json.loads(json.dumps(prov or {}, default=str)),
    }


def _distinct_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory: copy every tensor after the first on a storage."""
    seen: set[int] = set()
    out = {}
    for key, value in state.items():
        value = value.detach()
        ptr = value.untyped_storage().data_ptr()
        out[key] = value.clone().contiguous() if ptr in seen else value.contiguous()
        seen.add(ptr)
    return out


def save_pretrained(
    model: TCCLIP,
    save_directory: str | os.PathLike,
    provenance: dict[str, Any] | None = None,
    card: bool = True,
) -> Path:
    """Write ``config.json``, ``model.safetensors`` and (``card``) the ``README.md`` model card into
    ``save_directory`` (created; files of the same names are replaced). Returns the folder."""
    from safetensors.torch import save_file

    from tc_clip.model.card import model_card

    folder = Path(save_directory).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    config = config_dict(model, provenance)
    state = {k: v.cpu() for k, v in _distinct_tensors(model.state_dict()).items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt", "library": "tc-clip"})
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if card:
        (folder / CARD_FILE).write_text(model_card(config), encoding="utf-8")
    return folder


# ------------------------------------------------------------------------------------------- reading
def _fail(path: Path, key: str, problem: str) -> CheckpointError:
    return CheckpointError(path, f"key {key!r}: {problem}")


def _check_value(path: Path, key: str, value: Any, kind: str) -> None:
    ok = {
        _POS_INT: isinstance(value, int) and not isinstance(value, bool) and value > 0,
        _INT: isinstance(value, int) and not isinstance(value, bool),
        _NUM: isinstance(value, (int, float)) and not isinstance(value, bool),
        _BOOL: isinstance(value, bool),
        "number or null": value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)),
    }[kind]
    if not ok:
        raise _fail(path, key, f"expected a {kind}, got {value!r}")


def _check_section(path: Path, prefix: str, section: Any, allowed: dict[str, str]) -> None:
    if not isinstance(section, dict):
        raise _fail(path, prefix, f"expected an object, got {type(section).__name__}")
    for key, value in section.items():
        name = f"{prefix}.{key}"
        if key in _REMOTE_KEYS:
            raise _fail(path, name, f"{value!r} is refused: it would make open_clip load code or weights from "
                                    "outside the folder (tc-clip folders hold a standard ViT built locally)")
        if key not in allowed:
            raise _fail(path, name, f"not an architecture key tc-clip knows (known: {', '.join(sorted(allowed))})")
        kind = allowed[key]
        if kind == "vision":
            _check_section(path, name, value, _CLIP_VISION)
        elif kind == "text":
            _check_section(path, name, value, _CLIP_TEXT)
        else:
            _check_value(path, name, value, kind)


def _field_ok(value: Any, hint: Any) -> bool:
    """``value`` (from JSON) fits the type hint of a :class:`TCCLIPConfig` field."""
    import types
    import typing

    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return any(_field_ok(value, h) for h in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_field_ok(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return False


def _check_switches(path: Path, section: Any) -> dict[str, Any]:
    import dataclasses
    import typing

    from tc_clip.model.config import TCCLIPConfig

    if not isinstance(section, dict):
        raise _fail(path, "config", f"expected an object of switches, got {type(section).__name__}")
    hints = typing.get_type_hints(TCCLIPConfig)
    names = [f.name for f in dataclasses.fields(TCCLIPConfig)]
    unknown = sorted(set(section) - set(names))
    if unknown:
        raise _fail(path, f"config.{unknown[0]}", f"not a TCCLIPConfig switch (switches: {', '.join(names)})")
    missing = [n for n in names if n not in section]
    if missing:
        raise _fail(path, "config", f"misses the switches {', '.join(missing)}")
    for name in names:
        if not _field_ok(section[name], hints[name]):
            raise _fail(path, f"config.{name}", f"{section[name]!r} does not fit {hints[name]}")
    template = section["prompt_template"]
    if template is not None and (template.count("{}") != 1 or template.replace("{}", "").count("{")
                                 or template.replace("{}", "").count("}")):
        raise _fail(path, "config.prompt_template", f"{template!r} must hold one '{{}}' and no other braces")
    return {n: list(section[n]) if isinstance(section[n], list) else section[n] for n in names}


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"duplicate keys {dupes}")
    return dict(pairs)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """``<folder>/config.json``, checked key by key (a :class:`CheckpointError` names the file and key)."""
    path = Path(folder).expanduser() / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(path, "missing: a tc-clip model folder holds config.json and model.safetensors")
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise CheckpointError(path, f"larger than {_MAX_CONFIG_BYTES >> 20} MB: not a model config")
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicates,
                          parse_constant=_refuse_constant)
    except UnicodeDecodeError as err:
        raise CheckpointError(path, f"not UTF-8 text ({err})") from err
    except json.JSONDecodeError as err:
        raise CheckpointError(path, f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from err
    except ValueError as err:
        raise CheckpointError(path, str(err)) from err
    if not isinstance(data, dict):
        raise CheckpointError(path, f"expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise _fail(path, unknown[0], f"not a key of a tc-clip config.json (keys: {', '.join(sorted(_TOP_KEYS))})")
    if data.get("format") != FORMAT:
        raise _fail(path, "format", f"expected {FORMAT!r}, got {data.get('format')!r}: not a tc-clip model folder")
    if data.get("format_version") != FORMAT_VERSION:
        raise _fail(path, "format_version", f"this tc-clip reads version {FORMAT_VERSION}, "
                                            f"got {data.get('format_version')!r}")
    for key in ("config", "clip", "class_names"):
        if key not in data:
            raise _fail(path, key, "missing")
    data["config"] = _check_switches(path, data["config"])
    _check_section(path, "clip", data["clip"], _CLIP_TOP)
    for key in ("vision_cfg", "text_cfg", "embed_dim"):
        if key not in data["clip"]:
            raise _fail(path, f"clip.{key}", "missing")
    names = data["class_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _fail(path, "class_names", "expected a list of strings")
    for key in ("provenance", "onnx"):
        if not isinstance(data.get(key) or {}, dict):
            raise _fail(path, key, f"expected an object, got {type(data[key]).__name__}")
    if not isinstance(data.get("tc_clip_version", ""), str):
        raise _fail(path, "tc_clip_version", "expected a string")
    return data


def is_pretrained_folder(path: str | os.PathLike) -> bool:
    """True for a folder holding ``config.json`` (whether it is valid is :func:`read_config`'s business)."""
    p = Path(path).expanduser()
    return p.is_dir() and (p / CONFIG_FILE).is_file()


def load_folder(folder: str | os.PathLike, model_cls: type[TCCLIP], map_location: str | torch.device = "cpu") -> TCCLIP:
    """Build the ``model_cls`` (:class:`TCCLIP` or a subclass) a local folder describes and load its safetensors
    weights (eval mode). The class is passed in, so this module never imports the model it describes."""
    import open_clip
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from tc_clip.model.config import TCCLIPConfig
    from tc_clip.model.factory import check_state_dict

    folder = Path(folder).expanduser()
    data = read_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(weights, "missing: a tc-clip model folder holds config.json and model.safetensors")
    try:
        clip = open_clip.CLIP(**data["clip"])
        model = model_cls(clip, data["class_names"] or None, TCCLIPConfig(**data["config"]), data["clip"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(folder / CONFIG_FILE, f"does not build a model ({err})") from err
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(weights, f"not a readable safetensors file ({err})") from err
    try:
        check_state_dict(model, state, str(weights))
    except ValueError as err:
        raise CheckpointError(weights, str(err)) from err
    model.load_state_dict(state)
    model.provenance = dict(data.get("provenance") or {})
    return model.to(map_location).eval()


# ----------------------------------------------------------------------------------------------- Hub
def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or _truthy(os.environ.get("HF_HUB_OFFLINE"))


def _hub_reachable(timeout: float) -> bool:
    from urllib.parse import urlparse

    from huggingface_hub import constants

    from tc_clip.model.factory import HubSource

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    return HubSource(url.hostname or "huggingface.co", port, False, None).reachable(timeout)


def resolve_folder(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    timeout: float = HUB_TIMEOUT,
) -> Path:
    """The local folder of ``name_or_path``: itself if it is a folder, else the snapshot of a Hub repo id
    (``owner/name``) at ``revision``, downloaded or taken from the cache."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        if revision is not None:
            raise ValueError(f"revision={revision!r} applies to Hub ids, not to the local folder {path}")
        return path
    if path.exists():
        raise CheckpointError(path, "is a file, not a model folder (config.json + model.safetensors)")
    if not _REPO_ID.fullmatch(text) or text.startswith((".", "~")):
        raise FileNotFoundError(f"model folder not found: {path} (and it is not a Hub repo id 'owner/name')")
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub import errors as hub_errors

    cache = str(cache_dir) if cache_dir is not None else constants.HF_HUB_CACHE
    offline = local_files_only or _hub_offline()
    why = "HF_HUB_OFFLINE is set" if offline else ""
    if not offline and not _hub_reachable(timeout):
        offline, why = True, f"{constants.ENDPOINT} cannot be reached within {timeout:g} s"
    kwargs = dict(revision=revision, cache_dir=cache, token=token, allow_patterns=list(HUB_FILES),
                  library_name="tc-clip")
    where = text + (f"@{revision}" if revision else "")
    refused = (hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError, hub_errors.HFValidationError)
    try:
        if not offline:  # snapshot_download's first request has no timeout: ask once with one
            try:
                huggingface_hub.HfApi(token=token).model_info(text, revision=revision, timeout=timeout)
            except refused:
                raise
            except Exception as err:  # noqa: BLE001 - timeouts and connection errors come in many types
                offline, why = True, f"the Hub did not answer within {timeout:g} s ({type(err).__name__})"
        if not offline:
            try:
                return Path(huggingface_hub.snapshot_download(text, etag_timeout=timeout, **kwargs))
            except refused:
                raise
            except (OSError, hub_errors.HfHubHTTPError) as err:
                first = str(err).splitlines()[0] if str(err) else ""
                why = f"the download failed ({type(err).__name__}: {first})"
        return Path(huggingface_hub.snapshot_download(text, local_files_only=True, **kwargs))
    except hub_errors.GatedRepoError as err:
        raise CheckpointError(where, "a gated repository: accept its terms on the Hub and pass token=...") from err
    except hub_errors.RepositoryNotFoundError as err:
        raise CheckpointError(where, "no such model repository on the Hub (or it is private: pass token=...)") from err
    except hub_errors.RevisionNotFoundError as err:
        raise CheckpointError(where, f"the repository has no revision {revision!r}") from err
    except hub_errors.HFValidationError as err:
        raise CheckpointError(where, f"not a valid Hub repo id or revision ({err})") from err
    except (OSError, hub_errors.HfHubHTTPError) as err:
        raise CheckpointError(
            where, f"no local folder of that name, no cached snapshot in {cache}, and the Hub cannot be used "
                   f"({why or err}). Download it on a "
                   f"connected machine (`hf download {text}` fills the same cache) or pass a local folder",
        ) from err


def from_pretrained(
    model_cls: type[TCCLIP],
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    map_location: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> TCCLIP:
    """A model folder or Hub repo id -> a ``model_cls`` (:class:`TCCLIP`) in eval mode (see the module
    docstring)."""
    folder = resolve_folder(name_or_path, revision, cache_dir, token, local_files_only)
    return load_folder(folder, model_cls, map_location)


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload a tc-clip model",
) -> str:
    """Upload a model folder (checked first; only its ``config.json``, ``model.safetensors``, ``README.md``
    and ``model.onnx``) to the Hub repo ``repo_id``, created if needed; returns the commit URL."""
    from huggingface_hub import HfApi

    if not _REPO_ID.fullmatch(repo_id):
        raise ValueError(f"{repo_id!r} is not a Hub repo id 'owner/name'")
    read_config(folder)
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, token=token)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision, token=token,
                             commit_message=commit_message, allow_patterns=[*HUB_FILES, "model.onnx"])
    return str(getattr(info, "commit_url", info))


def push_to_hub(model: TCCLIP, repo_id: str, provenance: dict[str, Any] | None = None, **kwargs: Any) -> str:
    """:func:`save_pretrained` into a temporary folder and :func:`push_folder` it (``kwargs``: ``private``,
    ``token``, ``revision``, ``commit_message``); returns the commit URL."""
    with tempfile.TemporaryDirectory(prefix="tc-clip-push-") as tmp:
        save_pretrained(model, tmp, provenance)
        return push_folder(tmp, repo_id, **kwargs)


class HubMixin:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` on the model class (the Hugging Face idiom).
    ``from_pretrained`` builds the class it is called on, so this module never imports the model."""

    def save_pretrained(self, save_directory: str | os.PathLike, provenance: dict[str, Any] | None = None) -> Path:
        """Write a model folder: ``config.json``, ``model.safetensors``, ``README.md``. Returns the folder."""
        return save_pretrained(self, save_directory, provenance)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, revision: str | None = None, **kwargs: Any):
        """Load a model folder or a Hub repo id (``owner/name``); no file runs code (see
        :func:`from_pretrained` for ``map_location``, ``cache_dir``, ``token``, ``local_files_only``)."""
        return from_pretrained(cls, name_or_path, revision, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload the model folder to the Hub repo ``repo_id`` (created if needed); returns the commit URL."""
        return push_to_hub(self, repo_id, **kwargs)
