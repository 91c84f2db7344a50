"""Find OpenAI CLIP weights for a backbone name: local file, local cache, OpenAI's URL, Hugging Face Hub.

load_clip_state_dict() returns a state dict in OpenAI's key layout, ready for clip.model.build_model.
Places, in order (the first that yields a readable state dict wins):
1. `path` (MODEL.BACKBONE.PATH): an OpenAI JIT archive (.pt), a state dict (.pt/.pth/.bin, optionally
   under "state_dict"), or .safetensors. Given explicitly, it must work: failures raise at once.
2. the local cache folder, $CASPL_CLIP_CACHE or ~/.cache/clip, under OpenAI's file name (ViT-B-16.pt, ...)
   (the folder OpenAI's `clip.load` uses, so weights it already downloaded are found).
3. OpenAI's original URL, downloaded into that cache folder with the sha256 in the URL verified.
4. the Hugging Face Hub mirror of the same weights (timm/*.openai, open_clip format = OpenAI's keys),
   through the hub cache ($HF_HUB_CACHE, else $HF_HOME/hub): a pre-filled cache works offline.
Steps 3-4 use no network when CASPL_OFFLINE=1 or HF_HUB_OFFLINE=1 (step 4 then reads the hub cache only).
The demo's pretrained micro-CLIPs (`micro-student`, `micro-teacher`, caspl/vlm/micro.py) ship with the package
and are read from it.
"""

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

# urllib timeout in seconds (connect and each read): fail fast on machines without internet
DOWNLOAD_TIMEOUT_S = 15
HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class ClipSource:
    """Where the weights of one OpenAI CLIP live, and the architecture they must have."""

    url: str  # OpenAI's URL; its second-to-last path segment is the file's sha256
    hf_repo: str
    arch: tuple  # ("vit", width, patch, resolution) or ("rn", width, resolution)

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def sha256(self) -> str:
        return self.url.rsplit("/", 2)[-2]


_OPENAI = "https://openaipublic.azureedge.net/clip/models"
# the URLs are those of OpenAI's clip package (clip.clip._MODELS), kept here so no import of it is needed
CLIP_SOURCES: dict[str, ClipSource] = {
    "RN50": ClipSource(
        f"{_OPENAI}/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
        "timm/resnet50_clip.openai",
        ("rn", 64, 224),
    ),
    # RN101 has RN50's stem width and resolution (the arch tuple); they differ in depth (layer3: 23 vs 6)
    "RN101": ClipSource(
        f"{_OPENAI}/8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599/RN101.pt",
        "timm/resnet101_clip.openai",
        ("rn", 64, 224),
    ),
    "ViT-B/32": ClipSource(
        f"{_OPENAI}/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
        "timm/vit_base_patch32_clip_224.openai",
        ("vit", 768, 32, 224),
    ),
    "ViT-B/16": ClipSource(
        f"{_OPENAI}/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
        "timm/vit_base_patch16_clip_224.openai",
        ("vit", 768, 16, 224),
    ),
    "ViT-L/14": ClipSource(
        f"{_OPENAI}/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
        "timm/vit_large_patch14_clip_224.openai",
        ("vit", 1024, 14, 224),
    ),
    "ViT-L/14@336px": ClipSource(
        f"{_OPENAI}/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
        "timm/vit_large_patch14_clip_336.openai",
        ("vit", 1024, 14, 336),
    ),
}


class CLIPWeightsNotFound(RuntimeError):
    """No place yielded weights for a CLIP backbone; the message lists each place and why it failed."""


class StateDictShapeError(RuntimeError):
    """Tensors in a state dict do not have the shapes the model expects."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def is_offline() -> bool:
    """True when CASPL_OFFLINE or HF_HUB_OFFLINE is set: no downloads, local caches only."""
    return _env_flag("CASPL_OFFLINE") or _env_flag("HF_HUB_OFFLINE")


def clip_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The local CLIP cache folder: `cache_dir`, else $CASPL_CLIP_CACHE, else ~/.cache/clip."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("CASPL_CLIP_CACHE") or "~/.cache/clip").expanduser()


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (HF_HUB_CACHE, HF_HOME/hub, default)."""
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if hub:
        return Path(hub).expanduser()
    home = os.environ.get("HF_HOME")
    if not home:
        home = os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def known_backbones() -> list[str]:
    """Backbone names whose weights can be looked up (OpenAI's, then the shipped micro-CLIPs)."""
    from caspl.vlm.micro import MICRO_SPECS  # noqa: PLC0415

    return list(CLIP_SOURCES) + list(MICRO_SPECS)


def check_backbone_name(name: str) -> None:
    """Raise CLIPWeightsNotFound unless `name` is a known OpenAI CLIP, a shipped micro-CLIP or a tiny model."""
    from caspl.vlm.micro import MICRO_SPECS  # noqa: PLC0415
    from caspl.vlm.tiny import TINY_SPECS  # noqa: PLC0415

    if name not in CLIP_SOURCES and name not in TINY_SPECS and name not in MICRO_SPECS:
        raise CLIPWeightsNotFound(
            f"unknown CLIP backbone {name!r}. Known: {', '.join(CLIP_SOURCES)}; built-in micro-CLIPs: "
            f"{', '.join(MICRO_SPECS)}; random tiny models: {', '.join(TINY_SPECS)}; or set "
            "MODEL.BACKBONE.PATH to a local OpenAI CLIP file"
        )


# ---------------------------------------------------------------- reading one file


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zips with a code/ folder and constants.pkl; torch.save zips have neither."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any("/code/" in n or n.endswith("constants.pkl") for n in zf.namelist())


def _normalise(obj: object, source: str) -> dict[str, torch.Tensor]:
    """Unwrap {"state_dict": ...}, drop DataParallel prefixes and attention-mask buffers."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{source} does not hold a state dict (got {type(obj).__name__})")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    # causal masks are rebuilt by the model; some exporters keep them as buffers
    return {k: v for k, v in sd.items() if not k.endswith("attn_mask")}


def read_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: OpenAI JIT archive, torch.save state dict (weights_only), .safetensors."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # noqa: PLC0415 (only needed for this format)

        return _normalise(load_file(str(path), device="cpu"), str(path))
    if _is_torchscript(path):
        # OpenAI's own .pt files are TorchScript archives: their tensors are read through torch.jit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, the files remain
            module = torch.jit.load(str(path), map_location="cpu")
        return _normalise(module.state_dict(), str(path))
    return _normalise(torch.load(path, map_location="cpu", weights_only=True), str(path))


def _check_clip_keys(sd: dict[str, torch.Tensor], source: str) -> None:
    """Fail with the missing keys when a file is not an OpenAI-layout CLIP state dict."""
    needed = ["token_embedding.weight", "positional_embedding", "text_projection", "ln_final.weight"]
    if "visual.proj" in sd:
        needed += ["visual.conv1.weight", "visual.positional_embedding"]
    else:
        needed += ["visual.layer1.0.conv1.weight", "visual.attnpool.positional_embedding"]
    missing = [k for k in needed if k not in sd]
    if missing or not any(k.startswith("transformer.resblocks.") for k in sd):
        raise ValueError(
            f"{source} is not a CLIP state dict in OpenAI's layout: missing {missing or ['transformer.resblocks.*']}"
            f" (found {len(sd)} tensors, e.g. {sorted(sd)[:3]})"
        )


def _describe_arch(sd: dict[str, torch.Tensor]) -> tuple:
    if "visual.proj" in sd:
        conv = sd["visual.conv1.weight"]
        grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        return ("vit", conv.shape[0], conv.shape[-1], conv.shape[-1] * grid)
    side = round((sd["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
    return ("rn", sd["visual.layer1.0.conv1.weight"].shape[0], side * 32)


def _warn_if_other_arch(name: str, sd: dict[str, torch.Tensor], source: str) -> None:
    """A file of another architecture still builds a CLIP, but probably not the one the config names."""
    if name in CLIP_SOURCES and _describe_arch(sd) != CLIP_SOURCES[name].arch:
        warnings.warn(
            f"weights from {source} have architecture {_describe_arch(sd)}, not {CLIP_SOURCES[name].arch} "
            f"expected for {name!r}; building the model the file describes",
            stacklevel=3,
        )


# ---------------------------------------------------------------- the places


def _download(url: str, target: Path, sha256: str) -> None:
    """Stream `url` to `target` atomically, verifying its sha256; raises on network or checksum errors."""
    from tqdm import tqdm  # noqa: PLC0415

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as src, os.fdopen(fd, "wb") as out:
            size = int(src.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, desc=target.name, leave=False) as bar:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise ValueError(f"sha256 mismatch: got {digest.hexdigest()}, the URL says {sha256}")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _hub_reachable() -> bool:
    """One quick request to the hub endpoint: without it, each hub file would wait through ~20 s of retries."""
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=5).close()
    except urllib.error.HTTPError:
        return True  # it answered
    except (OSError, ValueError):
        return False
    return True


def _from_hub(repo: str, filename: str, local_only: bool) -> Path:
    """A file of a Hub repo through the local hub cache (and only from it when `local_only`)."""
    from huggingface_hub import hf_hub_download  # noqa: PLC0415 (optional network stack)

    # cache dir and offline flag are passed now: huggingface_hub reads its env vars once, at import
    return Path(hf_hub_download(repo, filename, cache_dir=str(hf_cache_dir()), local_files_only=local_only))


def _reason(err: BaseException) -> str:
    if type(err) is FileNotFoundError:  # ours, from read_state_dict_file (hub errors subclass it)
        return "file not found"
    if type(err).__name__ == "LocalEntryNotFoundError":  # its own text talks about local_files_only
        return "not in the local hub cache"
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}"[:300]


def load_clip_state_dict(
    name: str, path: str = "", cache_dir: str | os.PathLike | None = None
) -> dict[str, torch.Tensor]:
    """OpenAI CLIP weights for backbone `name` as a state dict for clip.model.build_model (see module doc)."""
    if path:
        try:
            sd = read_state_dict_file(path)
            _check_clip_keys(sd, str(path))
        except Exception as e:
            raise CLIPWeightsNotFound(
                f"cannot use MODEL.BACKBONE.PATH={path!r} for {name!r}: {_reason(e)}. Expected an OpenAI CLIP "
                "file: the .pt JIT archive, a state dict (.pt/.pth/.bin) or .safetensors with OpenAI's keys"
            ) from e
        _warn_if_other_arch(name, sd, str(path))
        return sd

    from caspl.vlm.micro import MICRO_SPECS, micro_state_dict  # noqa: PLC0415

    if name in MICRO_SPECS:  # pretrained micro-CLIPs of the demo, shipped with the package
        return micro_state_dict(name)
    check_backbone_name(name)
    if name not in CLIP_SOURCES:
        raise CLIPWeightsNotFound(
            f"{name!r} is a built-in random model: build_clip makes it, no weights to load"
        )
    src = CLIP_SOURCES[name]
    cache_file = clip_cache_dir(cache_dir) / src.file_name
    tried: list[str] = []

    def attempt(where: str, get_file) -> dict[str, torch.Tensor] | None:
        try:
            file = get_file()
            sd = read_state_dict_file(file)
            _check_clip_keys(sd, str(file))
        except Exception as e:
            tried.append(f"{where}: {_reason(e)}")
            return None
        _warn_if_other_arch(name, sd, str(file))
        return sd

    sd = attempt(f"local cache file {cache_file}", lambda: cache_file)
    if sd is not None:
        return sd

    if is_offline():
        tried.append(f"OpenAI URL {src.url}: skipped (offline: CASPL_OFFLINE / HF_HUB_OFFLINE is set)")
    else:

        def fetch() -> Path:
            print(f"Downloading CLIP {name} from {src.url} to {cache_file}")
            _download(src.url, cache_file, src.sha256)
            return cache_file

        sd = attempt(f"OpenAI URL {src.url}", fetch)
        if sd is not None:
            return sd

    hub = hf_cache_dir()
    if is_offline():
        local_only, mode = True, f"offline: local hub cache {hub} only"
    elif not _hub_reachable():
        local_only, mode = True, f"hub unreachable: local hub cache {hub} only"
    else:
        local_only, mode = False, f"hub, then local hub cache {hub}"
    for filename in HF_FILES:
        sd = attempt(
            f"Hugging Face Hub {src.hf_repo} / {filename} ({mode})",
            lambda f=filename: _from_hub(src.hf_repo, f, local_only),
        )
        if sd is not None:
            return sd

    places = "\n".join(f"  {i}. {t}" for i, t in enumerate(tried, 1))
    raise CLIPWeightsNotFound(
        f"no weights found for CLIP backbone {name!r}. Tried, in order:\n{places}\n"
        "To provide them by hand, do one of:\n"
        f"  - download {src.url}\n    and save it as {cache_file}\n"
        "    (the folder is $CASPL_CLIP_CACHE, default ~/.cache/clip; OpenAI's clip.load uses the same file)\n"
        f"  - fill the Hugging Face cache on a machine with network: `hf download {src.hf_repo} {HF_FILES[0]}`,\n"
        f"    then copy its hub cache folder ({hub}; set HF_HOME or HF_HUB_CACHE to point elsewhere)\n"
        "  - set MODEL.BACKBONE.PATH to a local file (OpenAI .pt, a state dict .pt/.pth, or .safetensors)"
    )


# ---------------------------------------------------------------- shape checks


def check_state_dict_shapes(
    model: nn.Module | dict[str, torch.Tensor],
    state_dict: dict[str, torch.Tensor],
    source: str = "state dict",
) -> None:
    """Raise StateDictShapeError naming every tensor whose shape differs from the model's."""
    expected = model.state_dict() if isinstance(model, nn.Module) else model
    bad = [
        f"  {k}: {tuple(v.shape)} in {source}, model expects {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and isinstance(v, torch.Tensor) and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if bad:
        raise StateDictShapeError(
            f"{len(bad)} tensor(s) in {source} have the wrong shape (e.g. weights of another backbone):\n"
            + "\n".join(bad)
        )


def load_state_dict_checked(
    model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "state dict", strict: bool = True
) -> None:
    """model.load_state_dict after a shape check; missing/unexpected keys are named with `source`."""
    check_state_dict_shapes(model, state_dict, source)
    result = model.load_state_dict(state_dict, strict=False)
    if strict and (result.missing_keys or result.unexpected_keys):
        raise KeyError(
            f"{source} does not match the model: missing {result.missing_keys[:10]}"
            f"{' ...' if len(result.missing_keys) > 10 else ''}, unexpected {result.unexpected_keys[:10]}"
            f"{' ...' if len(result.unexpected_keys) > 10 else ''}"
        )
