"""Prompted CLIP encoders: the frozen CLIP towers run layer by layer with injected prompt groups.

A *prompt group* supplies tokens for layer 0 and, when deep, for each layer below its depth; at each such
layer the group's slot in the sequence is overwritten with that layer's tokens, beyond its depth the slot
passes through. Groups are given to the encoders per forward as lists of per-layer tensors, so tokens can
be parameters, frozen tensors or computed on the fly (MaPLe's coupling, CoCoOp's image-conditioned shift).

  text:   [SOS] [group 1] [group 2] ... [text, e.g. "dog."] [EOT]     (EOT found by argmax of token ids)
  vision: [CLS] [patches] [group 1] [group 2] ...                    (after the positional embedding)

With no groups both encoders compute exactly CLIP's encode_text / encode_image.

The text tower is causal: the feature read at EOT depends only on the positions up to it. So the text
encoder runs each pass on the first max(EOT)+1 positions of its prompts (positional embedding and causal
mask cut to match; prompt slots always lie before EOT), which equals the 77-token computation exactly and
costs a fraction of it. Class prompts go through the tower in chunks, optionally with activation
checkpointing per chunk, so memory stops growing with the class count (`TextTowerOptions`).
"""

import contextlib
import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from clip.model import CLIP
from clip.simple_tokenizer import SimpleTokenizer
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

# Per-group tokens: one tensor per prompted layer, [layer 0, layer 1, ...].
LayerTokens = Sequence[Tensor]

_TOKENIZER: SimpleTokenizer | None = None


@dataclass(frozen=True)
class TextTowerOptions:
    """How the text encoders run CLIP's text tower (MODEL.TEXT_TOWER); none of them changes a result.

    truncate:   run on the first max(EOT)+1 positions of each pass instead of CLIP's 77 (exact: causal).
    chunk:      class prompts per pass (0: all in one pass); bounds memory under no_grad.
    checkpoint: recompute each chunk's activations in backward (training memory bounded by one chunk).
    """

    truncate: bool = True
    chunk: int = 256
    checkpoint: bool = False

    def __post_init__(self) -> None:
        if self.chunk < 0:
            raise ValueError(f"MODEL.TEXT_TOWER.CHUNK must be >= 0 (0: no chunking), got {self.chunk}")


_OPTIONS = TextTowerOptions()


def text_tower_options(cfg: Any) -> TextTowerOptions:
    """The options of a run config (its MODEL.TEXT_TOWER node)."""
    node = cfg.MODEL.TEXT_TOWER
    return TextTowerOptions(bool(node.TRUNCATE), int(node.CHUNK), bool(node.CHECKPOINT))


@contextlib.contextmanager
def use_text_tower_options(options: TextTowerOptions) -> Iterator[None]:
    """Text encoders built inside the block take `options` (trainers wrap their model building in it)."""
    global _OPTIONS
    previous, _OPTIONS = _OPTIONS, options
    try:
        yield
    finally:
        _OPTIONS = previous


def tokenizer() -> SimpleTokenizer:
    """CLIP's BPE tokenizer (built once: loading the vocabulary takes a while)."""
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = SimpleTokenizer()
    return _TOKENIZER


class PromptGroup(nn.Module):
    """Prompt tokens of one tower: `depth` layers of `n_tokens` vectors (layer 0 first).

    `leading_shape` adds leading dims to the layer-0 tokens (CoOp's class-specific context: (n_cls,)).
    """

    def __init__(
        self,
        n_tokens: int,
        width: int,
        depth: int = 1,
        init: Tensor | None = None,
        std: float = 0.02,
        leading_shape: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        if n_tokens < 0 or depth < 0:
            raise ValueError(f"a prompt group needs n_tokens >= 0 and depth >= 0, got {n_tokens}, {depth}")
        self.n_tokens, self.width, self.depth = n_tokens, width, depth if n_tokens else 0
        layers = []
        for layer in range(self.depth):
            if layer == 0 and init is not None:
                tokens = init.detach().clone().float()
                if tokens.shape[-2:] != (n_tokens, width):
                    raise ValueError(
                        f"init tokens have shape {tuple(tokens.shape)}, expected (..., {n_tokens}, {width})"
                    )
            else:
                shape = (*leading_shape, n_tokens, width) if layer == 0 else (n_tokens, width)
                tokens = torch.empty(shape)
                nn.init.normal_(tokens, std=std)
            layers.append(nn.Parameter(tokens))
        self.tokens = nn.ParameterList(layers)

    def forward(self) -> list[Tensor]:
        return list(self.tokens)


def build_text_ids(pieces: Sequence[str | int], context_length: int = 77) -> tuple[Tensor, Tensor]:
    """Token ids of [SOS] pieces... [EOT] (an int piece = that many prompt slots) and the slot positions.

    Slot ids are the id of "X" (below EOT, so the EOT position stays the argmax). Raises ValueError naming
    the text when the sequence does not fit CLIP's context.
    """
    tok = tokenizer()
    sot, eot = tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]
    placeholder = tok.encode("X")[0]
    ids, slots = [sot], []
    for piece in pieces:
        if isinstance(piece, int):
            slots.extend(range(len(ids), len(ids) + piece))
            ids.extend([placeholder] * piece)
        else:
            ids.extend(tok.encode(piece))
    ids.append(eot)
    if len(ids) > context_length:
        text = " ".join(p if isinstance(p, str) else "X" * p for p in pieces)
        raise ValueError(
            f"prompt for {text!r} needs {len(ids)} tokens, more than CLIP's context of {context_length}: "
            "shorten the class name or use fewer prompt tokens"
        )
    out = torch.zeros(context_length, dtype=torch.long)
    out[: len(ids)] = torch.tensor(ids)
    return out, torch.tensor(slots, dtype=torch.long)


def text_pieces(text: str, n_slots: int, position: str = "end", name: str | None = None) -> list[str | int]:
    """CoOp's class-token positions: end ([slots] text), front ([name] [slots] rest), middle (half each side)."""
    if position == "end" or n_slots == 0:
        return [n_slots, text] if n_slots else [text]
    if name is None or not text.startswith(name):
        raise ValueError(f"position {position!r} needs the class name at the start of the text, got {text!r}")
    rest = text[len(name) :]
    if position == "front":
        return [name, n_slots, rest]
    if position == "middle":
        half = n_slots // 2
        return [half, name, n_slots - half, rest]
    raise ValueError(f"unknown class token position {position!r}; valid: end, middle, front")


def _write_slots(x: Tensor, slots: Tensor, tokens: Tensor) -> Tensor:
    """Out of place: x[c, slots[c, k]] = tokens[(c,) k] for x (C, L, D), slots (C, n), tokens (n,D)|(C,n,D)."""
    tokens = tokens.to(x.dtype).expand(x.shape[0], *tokens.shape[-2:])
    index = slots.unsqueeze(-1).expand(-1, -1, x.shape[-1])
    return x.scatter(1, index, tokens)


Rows = slice | Tensor  # the classes of one pass: a range, or their indices when passes run length-sorted


def _class_rows(tokens: Tensor, rows: Rows) -> Tensor:
    """Per-class tokens (C, n, D) cut to the classes `rows`; shared tokens (n, D) as they are."""
    return tokens[rows] if tokens.dim() == 3 else tokens


class PromptedTextEncoder(nn.Module):
    """CLIP's text tower over fixed texts, with the slots of each prompt group written at every prompted layer.

    `group_sizes` fixes the slot layout: group g owns the g-th run of slots after [SOS] (for CoOp's
    front/middle positions, see `text_pieces`). `texts[c]` is what follows the slots for class c, or the
    class's whole layout as `build_text_ids` pieces (a method that puts fixed words between groups).
    `options` defaults to the ones set by `use_text_tower_options` when the encoder is built.
    """

    def __init__(
        self,
        clip_model: CLIP,
        texts: Sequence[str | Sequence[str | int]],
        group_sizes: Sequence[int] = (),
        position: str = "end",
        names: Sequence[str] | None = None,
        options: TextTowerOptions | None = None,
    ) -> None:
        super().__init__()
        self.options = options if options is not None else _OPTIONS
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.group_sizes = [int(n) for n in group_sizes]
        n_slots = sum(self.group_sizes)
        ids, slots = [], []
        for c, text in enumerate(texts):
            if isinstance(text, str):
                pieces = text_pieces(text, n_slots, position, None if names is None else names[c])
            else:  # a layout of its own: its slots must be the groups' slots
                pieces = list(text)
                if sum(p for p in pieces if isinstance(p, int)) != n_slots:
                    raise ValueError(
                        f"text layout {pieces!r} does not have the {n_slots} slots of the groups"
                    )
            i, s = build_text_ids(pieces, clip_model.context_length)
            ids.append(i)
            slots.append(s)
        if not ids:
            raise ValueError("a text encoder needs at least one text")
        token_ids = torch.stack(ids)
        self.context_length = token_ids.shape[1]
        self._eot = token_ids.argmax(dim=-1)  # on the CPU: pass lengths never sync a device
        self.passes, self.sorted = self._plan(self.options)
        token_ids = token_ids[:, : max(length for _, _, length in self.passes)]
        device = clip_model.token_embedding.weight.device
        # Not saved in checkpoints: derived from the texts, and large for 1000 classes.
        self.register_buffer("token_ids", token_ids.to(device), persistent=False)
        self.register_buffer("slots", torch.stack(slots).to(device), persistent=False)
        self.register_buffer("eot_index", self._eot.to(device), persistent=False)
        # Chunks of length-sorted classes: each chunk is cut to its own longest prompt, so sorted chunks
        # carry less padding (1000 ImageNet names behind 4 context tokens: 1.28x fewer positions).
        order = torch.argsort(self._eot, stable=True)
        self.register_buffer("sort_order", order.to(device), persistent=False)  # position -> class
        self.register_buffer("sort_inverse", torch.argsort(order).to(device), persistent=False)
        with torch.no_grad():
            embedding = clip_model.token_embedding(self.token_ids)
            pad = clip_model.token_embedding(torch.zeros(1, dtype=torch.long, device=device))[0]
        self.register_buffer("token_embedding", embedding, persistent=False)
        self.register_buffer("pad_embedding", pad, persistent=False)  # id 0, after EOT

    def _plan(self, options: TextTowerOptions) -> tuple[list[tuple[int, int, int]], bool]:
        """(start, stop, length) of each pass, and whether the passes run over the classes sorted by prompt
        length (positions start:stop of `sort_order`) or in their order: chunks of classes, each cut to its
        prompts' max(EOT)+1. Sorted only when truncated prompts go through in more than one chunk."""
        n = len(self._eot)
        chunk = options.chunk or n
        if not options.truncate:
            return [
                (start, min(start + chunk, n), self.context_length) for start in range(0, n, chunk)
            ], False
        sort = n > chunk
        eot = torch.sort(self._eot, stable=True).values if sort else self._eot
        return [
            (start, min(start + chunk, n), int(eot[start : start + chunk].max()) + 1)
            for start in range(0, n, chunk)
        ], sort

    def with_options(self, options: TextTowerOptions) -> "PromptedTextEncoder":
        """The same texts through the same frozen modules under other options (e.g. the 77-token reference
        computation the benchmark compares with); buffers are shared, padded where a pass needs more."""
        other = copy.copy(self)
        other._modules, other._parameters = dict(self._modules), dict(self._parameters)
        other._buffers = dict(self._buffers)
        other.options = options
        other.passes, other.sorted = other._plan(options)
        extra = max(length for _, _, length in other.passes) - self.token_ids.shape[1]
        if extra > 0:  # positions after every EOT: token id 0
            n, _, width = self.token_embedding.shape
            pad = self.pad_embedding.expand(n, extra, width)
            other._buffers["token_embedding"] = torch.cat([self.token_embedding, pad], dim=1)
            other._buffers["token_ids"] = F.pad(self.token_ids, (0, extra))
        return other

    @property
    def dtype(self) -> torch.dtype:
        # The projection follows the blocks' precision (OpenAI's convert_weights halves it); the
        # positional embedding does not, so it cannot tell.
        return self.text_projection.dtype

    def group_slots(self, group: int, slots: Tensor | None = None) -> Tensor:
        start = sum(self.group_sizes[:group])
        slots = self.slots if slots is None else slots
        return slots[:, start : start + self.group_sizes[group]]

    def forward(self, group_tokens: Sequence[LayerTokens] = ()) -> Tensor:
        """Text features (n_texts, embed_dim), not normalized."""
        if len(group_tokens) != len(self.group_sizes):
            raise ValueError(
                f"got tokens for {len(group_tokens)} groups, the layout has {len(self.group_sizes)}"
            )
        features = []
        for start, stop, length in self.passes:
            rows = self.sort_order[start:stop] if self.sorted else slice(start, stop)
            tokens = [[_class_rows(t, rows) for t in layers] for layers in group_tokens]
            x = self.token_embedding[rows, :length].to(self.dtype)
            if self.options.checkpoint and torch.is_grad_enabled():
                features.append(
                    checkpoint(self._tower, x, tokens, rows, use_reentrant=False, preserve_rng_state=False)
                )
            else:
                features.append(self._tower(x, tokens, rows))
        out = features[0] if len(features) == 1 else torch.cat(features)
        return out[self.sort_inverse] if self.sorted else out  # back to the classes' order

    def _tower(self, x: Tensor, group_tokens: Sequence[LayerTokens], rows: Rows) -> Tensor:
        """Features of the classes `rows` from their embedded tokens x (n, length, width)."""
        slots = self.slots[rows]
        for g, layers in enumerate(group_tokens):
            if len(layers):
                x = _write_slots(x, self.group_slots(g, slots), layers[0])
        # CLIP's blocks (clip-anytorch) cut their causal mask to the sequence length themselves.
        x = x + self.positional_embedding[: x.shape[1]].to(self.dtype)
        for depth, block in enumerate(self.transformer.resblocks):
            if depth > 0:
                for g, layers in enumerate(group_tokens):
                    if depth < len(layers):
                        x = _write_slots(x, self.group_slots(g, slots), layers[depth])
            x = block(x.permute(1, 0, 2)).permute(1, 0, 2)  # CLIP's blocks take (L, N, D)
        x = x[torch.arange(x.shape[0], device=x.device), self.eot_index[rows]]
        return self.ln_final(x).to(self.dtype) @ self.text_projection  # LayerNorm is per token


@torch.no_grad()
def encode_texts(clip_model: CLIP, texts: Sequence[str], options: TextTowerOptions | None = None) -> Tensor:
    """CLIP's encode_text of plain texts (unnormalized, on the model's device), short-context and chunked."""
    return PromptedTextEncoder(clip_model, texts, options=options)()


class PromptedImageEncoder(nn.Module):
    """CLIP's ViT with prompt groups appended after [CLS][patches] and rewritten at each prompted layer."""

    def __init__(self, clip_model: CLIP) -> None:
        super().__init__()
        if not hasattr(clip_model.visual, "class_embedding"):
            raise ValueError(
                "prompted image encoders need a ViT CLIP backbone (ResNet towers take no tokens)"
            )
        self.visual = clip_model.visual

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def forward(self, images: Tensor, group_tokens: Sequence[LayerTokens] = ()) -> Tensor:
        """Image features (B, embed_dim), not normalized."""
        v = self.visual
        x = v.conv1(images.to(self.dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        batch, n_base = x.shape[0], x.shape[1]

        def expand(t: Tensor) -> Tensor:
            return t.to(x.dtype).expand(batch, *t.shape[-2:])

        x = torch.cat([x] + [expand(layers[0]) for layers in group_tokens if len(layers)], dim=1)
        x = v.ln_pre(x)
        starts, start = [], n_base
        for layers in group_tokens:
            starts.append(start)
            start += layers[0].shape[-2] if len(layers) else 0
        for depth, block in enumerate(v.transformer.resblocks):
            if depth > 0:
                for layers, s in zip(group_tokens, starts):
                    if depth < len(layers):
                        n = layers[depth].shape[-2]
                        x = torch.cat([x[:, :s], expand(layers[depth]), x[:, s + n :]], dim=1)
            x = block(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = v.ln_post(x[:, 0, :])
        return x @ v.proj if v.proj is not None else x


@torch.no_grad()
def init_tokens_from_text(clip_model: CLIP, text: str) -> Tensor:
    """Word embeddings of `text` (without SOS/EOT): CoOp's CTX_INIT initialisation, shape (n_words, width)."""
    tok = tokenizer()
    ids = torch.tensor(tok.encode(text.replace("_", " ")), dtype=torch.long)
    if len(ids) == 0:
        raise ValueError("CTX_INIT is empty")
    device = clip_model.token_embedding.weight.device
    return clip_model.token_embedding(ids.to(device)).float().cpu()
