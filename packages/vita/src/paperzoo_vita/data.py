"""VITA's data side: the released JSON schema, the ``mixtral_two`` template, state tokens and label masking,
dynamic tiling, video frame sampling (notes §1.3, §1.5).

JSON schema of the released training data (one list of records)::

    {"set": "sharegpt4", "id": "...", "image": "a.jpg" | ["a.jpg", ...], "video": "v.mp4", "audio": "q.wav" | [...],
     "inserted_id": 3, "end_tag": true,
     "conversations": [{"from": "human", "value": "<image>\\n<audio>"}, {"from": "gpt", "value": "..."}]}

Every path is joined to its folder with :func:`paperzoo_shared.data.safe_join`, so a record cannot point outside it.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paperzoo_shared.data import safe_join
from paperzoo_shared.data.errors import DataError
from paperzoo_vita.configuration import AUDIO_TOKEN, IGNORE_INDEX, IMAGE_TOKEN, STATE_TOKENS, VIDEO_TOKEN

# ----------------------------------------------------------------------------------------------------
# mixtral_two: template and system prompts (vita/conversation.py of the release)
# ----------------------------------------------------------------------------------------------------

_PERSONA = (
    "You are an AI robot and your name is VITA. \n- You are a multimodal large language model developed by the open "
    "source community. Your aim is to be helpful, honest and harmless. \n- You support the ability to communicate "
    "fluently and answer user questions in multiple languages of the user's choice. \n- If the user corrects the "
    "wrong answer you generated, you will apologize and discuss the correct answer with the user."
)
SYSTEM_PROMPTS = {
    "image": _PERSONA
    + " \n- You must answer the question strictly according to the content of the image given by the user, and it is "
    "strictly forbidden to answer the question without the content of the image. Please note that you are seeing the "
    "image, not the video.",
    "video": _PERSONA
    + " \n- You must answer the question strictly according to the content of the video given by the user, and it is "
    "strictly forbidden to answer the question without the content of the video. Please note that you are seeing the "
    "video, not the image.",
    "lang": _PERSONA,
}
SEP = "</s>"
ROLES = ("user", "bot")


def select_modality(turns: Sequence[tuple[str, str | None]], has_video: bool = False) -> str:
    """``image`` / ``video`` when a visual placeholder occurs, else ``lang`` (audio-only prompts included)."""
    visual = any(IMAGE_TOKEN in u or VIDEO_TOKEN in u for u, _ in turns)
    if not visual:
        return "lang"
    return "video" if has_video or any(VIDEO_TOKEN in u for u, _ in turns) else "image"


@dataclass
class MixtralTwoTemplate:
    """``system:{SYS}</s>\\nuser:{q1}</s>\\nbot:{a1}</s>\\nuser:{q2}</s>\\nbot:`` (roles ``user`` / ``bot``,
    both separators ``</s>``). ``system_prompts`` maps modality -> prompt; ``None`` keeps the release's three."""

    system_prompts: dict[str, str] | None = None

    def system(self, modality: str) -> str:
        prompts = self.system_prompts if self.system_prompts is not None else SYSTEM_PROMPTS
        if modality not in prompts:
            raise ValueError(f"modality must be one of {sorted(prompts)}, got {modality!r}")
        return prompts[modality]

    def pieces(self, turns: Sequence[tuple[str, str | None]], modality: str) -> list[tuple[str, bool]]:
        """The prompt as ``(text, supervised)`` pieces: the system prompt and every user part (through ``bot:``)
        unsupervised, every answer with its ``</s>`` supervised. ``answer=None`` on the last turn ends the prompt
        at ``bot:`` (generation)."""
        out = [(f"system:{self.system(modality)}{SEP}", False)]
        for index, (user, answer) in enumerate(turns):
            out.append((f"\n{ROLES[0]}:{user}{SEP}\n{ROLES[1]}:", False))
            if answer is None:
                if index != len(turns) - 1:
                    raise ValueError("only the last turn may have no answer")
                break
            out.append((f"{answer}{SEP}", True))
        return out

    def render(self, turns: Sequence[tuple[str, str | None]], modality: str) -> str:
        return "".join(text for text, _ in self.pieces(turns, modality))


# ----------------------------------------------------------------------------------------------------
# State tokens (preprocess_multimodal of the released neg_patch loader)
# ----------------------------------------------------------------------------------------------------


def assign_state_tokens(
    turns: Sequence[tuple[str, str | None]],
    inserted_id: int | None = None,
    has_media: bool = True,
    text_gets_state_token: bool = False,
) -> list[tuple[str, str | None]]:
    """Prepends the state token to every answer: ``<2>`` after the noisy turn (``inserted_id`` counts the records
    of ``conversations``, so human turn ``k`` has index ``2k``), ``<1>`` after a user turn holding ``<audio>``,
    ``<3>`` otherwise. Samples without media get none, as in the release (``text_gets_state_token`` adds ``<3>``).
    A ``<2>`` answer keeps only the token (the model should stay silent)."""
    if not has_media and not text_gets_state_token:
        return list(turns)
    out = []
    for k, (user, answer) in enumerate(turns):
        if answer is None:
            out.append((user, None))
            continue
        if inserted_id is not None and 2 * k == inserted_id:
            state, answer = STATE_TOKENS[1], ""
        elif AUDIO_TOKEN in user:
            state = STATE_TOKENS[0]
        else:
            state = STATE_TOKENS[2]
        out.append((user, state + answer))
    return out


# ----------------------------------------------------------------------------------------------------
# Tokenization with label masking (preprocess_mixtral_two)
# ----------------------------------------------------------------------------------------------------


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    mismatch: bool = False


def expand_placeholders(
    text: str, image_tiles: Sequence[int], audio_tokens: Sequence[int], tokens_per_tile: int
) -> str:
    """Replaces the i-th ``<image>`` by ``tokens_per_tile * image_tiles[i]`` copies and the j-th ``<audio>`` by
    ``audio_tokens[j]`` copies (the prompt layout the model splices into); raises when counts differ."""
    n_img, n_aud = text.count(IMAGE_TOKEN), text.count(AUDIO_TOKEN)
    if n_img != len(image_tiles):
        raise ValueError(
            f"the text has {n_img} {IMAGE_TOKEN} placeholders but {len(image_tiles)} images were given"
        )
    if n_aud != len(audio_tokens):
        raise ValueError(
            f"the text has {n_aud} {AUDIO_TOKEN} placeholders but {len(audio_tokens)} audio clips were given"
        )
    out, i, j, pos = [], 0, 0, 0
    while True:
        a, b = text.find(IMAGE_TOKEN, pos), text.find(AUDIO_TOKEN, pos)
        nxt = min(x for x in (a, b, len(text)) if x >= 0)
        out.append(text[pos:nxt])
        if nxt == len(text):
            break
        if nxt == a:
            out.append(IMAGE_TOKEN * (tokens_per_tile * image_tiles[i]))
            i, pos = i + 1, a + len(IMAGE_TOKEN)
        else:
            out.append(AUDIO_TOKEN * audio_tokens[j])
            j, pos = j + 1, b + len(AUDIO_TOKEN)
    return "".join(out)


def encode_pieces(pieces: Sequence[tuple[str, bool]], tokenizer: Any) -> Encoded:
    """Token ids and labels (``-100`` outside the supervised pieces). As the release, the ids come from the whole
    prompt and the masks from the pieces; when the two tokenizations disagree the whole sample is masked with a
    warning (``preprocess_mixtral_two``'s mismatch guard)."""
    ids, labels = [], []
    for text, supervised in pieces:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(piece)
        labels.extend(piece if supervised else [IGNORE_INDEX] * len(piece))
    whole = tokenizer("".join(t for t, _ in pieces), add_special_tokens=False)["input_ids"]
    if whole != ids:
        warnings.warn(
            "tokenization mismatch between the prompt and its turns: the sample is masked", stacklevel=2
        )
        return Encoded(whole, [IGNORE_INDEX] * len(whole), mismatch=True)
    return Encoded(ids, labels)


# ----------------------------------------------------------------------------------------------------
# Dynamic tiling (InternVL's dynamic_preprocess) and video frame sampling
# ----------------------------------------------------------------------------------------------------


def candidate_grids(min_num: int = 1, max_num: int = 12) -> list[tuple[int, int]]:
    """All (columns, rows) with ``min_num <= columns * rows <= max_num``, by area (ties in a fixed order)."""
    grids = {
        (i, j)
        for n in range(min_num, max_num + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_num <= i * j <= max_num
    }
    return sorted(grids, key=lambda g: (g[0] * g[1], g))


def closest_grid(
    width: int, height: int, image_size: int = 448, min_num: int = 1, max_num: int = 12
) -> tuple[int, int]:
    """The grid whose aspect ratio is closest to the image's; on a tie the larger grid wins only when the image
    area exceeds half the grid's pixel area (InternVL's ``find_closest_aspect_ratio``)."""
    aspect = width / height
    best, best_diff = (1, 1), float("inf")
    for cols, rows in candidate_grids(min_num, max_num):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and width * height > 0.5 * image_size * image_size * cols * rows:
            best = (cols, rows)
    return best


def num_tiles(
    width: int, height: int, max_num: int = 12, image_size: int = 448, use_thumbnail: bool = True
) -> int:
    cols, rows = closest_grid(width, height, image_size, 1, max_num)
    n = cols * rows
    return n + 1 if use_thumbnail and n > 1 else n


def dynamic_tiles(
    image: Any, image_size: int = 448, max_num: int = 12, use_thumbnail: bool = True
) -> list[Any]:
    """PIL image -> tiles (row-major), then the whole-image thumbnail last when there is more than one tile."""
    from PIL import Image

    width, height = image.size
    cols, rows = closest_grid(width, height, image_size, 1, max_num)
    resized = image.resize((image_size * cols, image_size * rows), Image.BICUBIC)
    tiles = []
    for k in range(cols * rows):
        x, y = (k % cols) * image_size, (k // cols) * image_size
        tiles.append(resized.crop((x, y, x + image_size, y + image_size)))
    if use_thumbnail and len(tiles) > 1:
        tiles.append(image.resize((image_size, image_size), Image.BICUBIC))
    return tiles


def sample_frame_indices(
    num_frames: int, fps: float, max_frames: int = 16, min_frames: int = 4, framerate: float = 1.0
) -> list[int]:
    """Frame indices as the release's ``_get_rawvideo_dec``: one every ``round(fps / framerate)`` frames, then
    ``linspace`` down to ``max_frames`` or up to ``min_frames`` (duplicates allowed). 32 for Video-MME."""
    if num_frames <= 0:
        raise ValueError("the video has no frames (empty or unreadable)")
    step = max(1, round(fps / framerate))
    grid = list(range(0, num_frames, step))
    if len(grid) > max_frames:
        pick = np.linspace(0, len(grid) - 1, max_frames).astype(int)
    elif len(grid) < min_frames:
        pick = np.linspace(0, len(grid) - 1, min_frames).astype(int)
    else:
        return grid
    return [grid[i] for i in pick]


# ----------------------------------------------------------------------------------------------------
# The released JSON schema
# ----------------------------------------------------------------------------------------------------


@dataclass
class VitaRecord:
    id: str
    turns: list[tuple[str, str]]
    images: list[Path] = field(default_factory=list)
    video: Path | None = None
    audios: list[Path] = field(default_factory=list)
    inserted_id: int | None = None
    end_tag: bool = True
    set: str = ""


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def read_vita_json(
    path: str | Path,
    image_folder: str | Path = ".",
    audio_folder: str | Path = ".",
    video_folder: str | Path = ".",
) -> list[VitaRecord]:
    """Reads a released-format JSON list; raises :class:`DataError` naming the file and record on a bad entry."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records")
    records = []
    for index, raw in enumerate(data):
        entry = raw.get("id", index) if isinstance(raw, dict) else index
        conv = raw.get("conversations") if isinstance(raw, dict) else None
        if not isinstance(conv, list) or not conv:
            raise DataError(f"{path} (entry {entry}): missing 'conversations'")
        turns = []
        for k in range(0, len(conv), 2):
            human = conv[k]
            gpt = conv[k + 1] if k + 1 < len(conv) else None
            if human.get("from") != "human" or gpt is None or gpt.get("from") != "gpt":
                raise DataError(
                    f"{path} (entry {entry}): conversations must alternate human / gpt, starting with human"
                )
            turns.append((str(human.get("value", "")), str(gpt.get("value", ""))))
        record = VitaRecord(
            id=str(raw.get("id", index)),
            turns=turns,
            images=[safe_join(image_folder, p, source=path, entry=entry) for p in _as_list(raw.get("image"))],
            video=safe_join(video_folder, raw["video"], source=path, entry=entry)
            if raw.get("video")
            else None,
            audios=[safe_join(audio_folder, p, source=path, entry=entry) for p in _as_list(raw.get("audio"))],
            inserted_id=raw.get("inserted_id"),
            end_tag=bool(raw.get("end_tag", True)),
            set=str(raw.get("set", "")),
        )
        n_audio = sum(u.count(AUDIO_TOKEN) for u, _ in turns)
        if n_audio != len(record.audios):
            raise DataError(
                f"{path} (entry {entry}): {len(record.audios)} audio files but {n_audio} {AUDIO_TOKEN} placeholders "
                "(the release's issue #45); add the placeholder to the human turn"
            )
        if not record.end_tag and not record.audios:
            raise DataError(f"{path} (entry {entry}): end_tag=false is allowed only for samples with audio")
        records.append(record)
    return records


def record_turns(
    record: VitaRecord, text_gets_state_token: bool = False
) -> tuple[list[tuple[str, str]], str]:
    """A record's turns with state tokens, and its modality (for the system prompt)."""
    has_media = bool(record.images or record.video or record.audios)
    turns = assign_state_tokens(record.turns, record.inserted_id, has_media, text_gets_state_token)
    return turns, select_modality(turns, record.video is not None)


def load_video_frames(
    path: str | Path, max_frames: int = 16, min_frames: int = 4, framerate: float = 1.0, backend: str = "auto"
) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 RGB frames of a video sampled as the release (decord when installed, else OpenCV,
    through :mod:`paperzoo_shared.data.video_io`; decord refuses tiny frames such as 16x16); an unreadable or empty file raises :class:`DataError`."""
    from paperzoo_shared.data.video_io import probe_video, read_frames

    info = probe_video(path, backend=backend)
    if info.num_frames <= 0 or info.fps <= 0:
        raise DataError(f"{path}: the video has no frames or no frame rate (corrupt or empty file?)")
    return read_frames(
        path, sample_frame_indices(info.num_frames, info.fps, max_frames, min_frames, framerate)
    )


# ----------------------------------------------------------------------------------------------------
# Multi-turn packing (data_tools/concat_data*.py of the release)
# ----------------------------------------------------------------------------------------------------


def estimate_tokens(text_tokens: int, image_tiles: int = 0, audio_seconds: Sequence[float] = ()) -> int:
    """The release's cost model: text tokens + 256 per tile + 12.5 per second of audio, each duration rounded up
    to an even number of seconds."""
    audio = sum(12.5 * (2 * math.ceil(d / 2)) for d in audio_seconds)
    return int(text_tokens + 256 * image_tiles + audio)


def pack_records(
    records: Sequence[VitaRecord], costs: Sequence[int], concat_size: int = 6000, seed: int = 0
) -> list[VitaRecord]:
    """Shuffles single-turn records (seeded) and concatenates them, in that order, into multi-turn records of at
    most ``concat_size`` estimated tokens (a record larger than that stays alone). Media lists are concatenated in
    turn order and ``inserted_id`` is shifted by the records already in the pack."""
    if len(records) != len(costs):
        raise ValueError("records and costs must have the same length")
    order = np.random.default_rng(seed).permutation(len(records)).tolist()
    packs: list[list[int]] = []
    total = 0
    for index in order:
        if packs and total + costs[index] <= concat_size:
            packs[-1].append(index)
            total += costs[index]
        else:
            packs.append([index])
            total = costs[index]
    out = []
    for pack in packs:
        merged = VitaRecord(id="+".join(records[i].id for i in pack), turns=[])
        for i in pack:
            r = records[i]
            if r.inserted_id is not None:
                if merged.inserted_id is not None:
                    raise ValueError("a pack may hold one noisy (inserted_id) record; pack those separately")
                merged.inserted_id = r.inserted_id + 2 * len(merged.turns)
            merged.turns.extend(r.turns)
            merged.images.extend(r.images)
            merged.audios.extend(r.audios)
            if r.video is not None:
                if merged.video is not None:
                    raise ValueError("a pack may hold one video")
                merged.video = r.video
            merged.end_tag = r.end_tag
        out.append(merged)
    return out
