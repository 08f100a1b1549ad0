"""VITA's processor: dynamic tiling of images, 1 fps frames of videos, the Kaldi fbank of audio, the
``mixtral_two`` prompt and placeholder expansion, left-padded batching.

    processor = VitaProcessor.from_model(model, tokenizer)
    inputs = processor(text=["<image>\\nWhat is this?"], images=[image])          # a user turn, prompt added
    inputs = processor(text=["<audio>"], audios=[(wave, 16000)])                   # a spoken question
    out = model.generate(**inputs, max_new_tokens=32, streamer=TextIteratorStreamer(tokenizer))

``text`` holds one user message per sample (the prompt asks it and ends at ``bot:``) or, with ``raw=True``, the
full prompt. ``<video>`` becomes ``<image>`` x frames + ``\\n`` (no tiling for frames); ``<image>`` expands to its
tiles' placeholders; ``<audio>`` to its token count.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import AutoImageProcessor, AutoProcessor, BatchFeature
from transformers.image_processing_utils import BaseImageProcessor
from transformers.processing_utils import ProcessorMixin

from paperzoo_vita.audio import SAMPLE_RATE, audio_token_count, waveform_to_fbank
from paperzoo_vita.configuration import AUDIO_TOKEN, IMAGE_TOKEN, VIDEO_TOKEN, VitaConfig
from paperzoo_vita.data import MixtralTwoTemplate, dynamic_tiles, load_video_frames, select_modality

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_pil(image: Any):
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"an image must be a PIL image or an HxWx3 array, got shape {array.shape}")
    return Image.fromarray(array.astype(np.uint8))


class VitaImageProcessor(BaseImageProcessor):
    """Bicubic tiles of ``image_size`` (1..``max_dynamic_patch`` + thumbnail for images, one per video frame),
    scaled to [0, 1] and normalized with the ImageNet mean / std (InternViT's CLIPImageProcessor config)."""

    model_input_names = ["pixel_values"]

    def __init__(
        self, image_size: int = 448, max_dynamic_patch: int = 12, use_thumbnail: bool = True, **kwargs
    ):
        super().__init__()
        self.image_size = image_size
        self.max_dynamic_patch = max_dynamic_patch
        self.use_thumbnail = use_thumbnail

    def to_tensor(self, tile: Any) -> torch.Tensor:
        from PIL import Image

        tile = _to_pil(tile)
        if tile.size != (self.image_size, self.image_size):
            tile = tile.resize((self.image_size, self.image_size), Image.BICUBIC)
        x = torch.from_numpy(np.asarray(tile, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
        return (x - mean) / std

    def tile(self, image: Any) -> torch.Tensor:
        tiles = dynamic_tiles(_to_pil(image), self.image_size, self.max_dynamic_patch, self.use_thumbnail)
        return torch.stack([self.to_tensor(t) for t in tiles])

    def frames(self, frames: Sequence[Any]) -> torch.Tensor:
        if len(frames) == 0:
            raise ValueError("a video needs at least one frame")
        return torch.stack([self.to_tensor(f) for f in frames])

    def preprocess(self, images: Any, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        images = images if isinstance(images, (list, tuple)) else [images]
        return BatchFeature(
            {"pixel_values": torch.cat([self.tile(i) for i in images])}, tensor_type=return_tensors
        )


class VitaProcessor(ProcessorMixin):
    """Image processor + tokenizer + the audio frontend + the ``mixtral_two`` layout.

    Args:
        image_processor: a :class:`VitaImageProcessor`.
        tokenizer: a tokenizer with ``<image>``, ``<audio>``, ``<video>``, ``<1>``, ``<2>``, ``<3>`` as single tokens
            (:func:`paperzoo_vita.tokenization.extend_vocabulary` adds them).
        image_seq_length: placeholders per tile (256 for the release).
        system_prompts: modality -> system prompt; ``None`` keeps the release's three.
        dither: fbank dither (the release's inference config has 1.0; 0 is deterministic).
        max_frames: frames sampled from a video file (16 as released; 32 for Video-MME).
    """

    def __init__(self, image_processor: VitaImageProcessor, tokenizer: Any, image_seq_length: int = 256,
                 system_prompts: dict[str, str] | None = None, dither: float = 0.0, max_frames: int = 16,
                 **kwargs):  # fmt: skip
        self.image_seq_length = image_seq_length
        self.system_prompts = system_prompts
        self.dither = dither
        self.max_frames = max_frames
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def from_model(
        cls, model_or_config: Any, tokenizer: Any, max_dynamic_patch: int = 12, **kwargs
    ) -> VitaProcessor:
        config: VitaConfig = getattr(model_or_config, "config", model_or_config)
        for token, expected in ((IMAGE_TOKEN, config.image_token_id), (AUDIO_TOKEN, config.audio_token_id)):
            got = tokenizer.convert_tokens_to_ids(token)
            if got != expected:
                raise ValueError(f"the tokenizer's {token} has id {got}, the model expects {expected}")
        size = config.vision_config.image_size
        size = size[0] if isinstance(size, (list, tuple)) else size
        return cls(VitaImageProcessor(size, max_dynamic_patch), tokenizer, config.image_seq_length, **kwargs)

    def audio_features(self, audio: Any) -> torch.Tensor:
        """``wave`` (16 kHz) or ``(wave, sample_rate)`` -> fbank ``[T, 80]``; a clip shorter than 25 ms is refused."""
        wave, rate = audio if isinstance(audio, tuple) else (audio, SAMPLE_RATE)
        fbank = waveform_to_fbank(torch.as_tensor(wave, dtype=torch.float32), int(rate), dither=self.dither)
        if audio_token_count(fbank.shape[0]) == 0:
            raise ValueError(
                f"an audio clip of {torch.as_tensor(wave).shape[-1] / rate * 1000:.0f} ms is too short: at least "
                "about 0.1 s gives one LLM token"
            )
        return fbank

    def __call__(self, text: str | Sequence[str], images: Sequence[Any] | None = None,
                 videos: Sequence[Sequence[Any]] | None = None, audios: Sequence[Any] | None = None,
                 raw: bool = False, return_tensors: str = "pt", **kwargs) -> BatchFeature:  # fmt: skip
        """Media are listed in placeholder order over the whole batch (sample by sample)."""
        texts = [text] if isinstance(text, str) else list(text)
        images, videos, audios = list(images or []), list(videos or []), list(audios or [])
        template = MixtralTwoTemplate(self.system_prompts)
        pixel, fbanks, ids_list = [], [], []
        i_img = i_vid = i_aud = 0
        for t in texts:
            n_vid = t.count(VIDEO_TOKEN)
            frame_counts = []
            for _ in range(n_vid):
                if i_vid >= len(videos):
                    raise ValueError("more <video> placeholders than videos")
                video = videos[i_vid]
                if isinstance(
                    video, (str, os.PathLike)
                ):  # a file: 1 fps, 4..max_frames frames (decord / OpenCV)
                    video = list(load_video_frames(video, max_frames=self.max_frames))
                frames = self.image_processor.frames(video)
                frame_counts.append(frames.shape[0])
                i_vid += 1
                pixel.append(frames)
            modality = select_modality([(t, None)], has_video=n_vid > 0)
            for n in frame_counts:
                t = t.replace(VIDEO_TOKEN, IMAGE_TOKEN * n + "\n", 1)
            tiles = [1] * sum(frame_counts)
            n_img = t.count(IMAGE_TOKEN) - sum(frame_counts)
            # a sample holds still images or a video (as the release's loader), so the pixel order is the text's
            if n_img and n_vid:
                raise ValueError("a sample holds either images or a video, not both (the release's loader)")
            for _ in range(n_img):
                if i_img >= len(images):
                    raise ValueError(f"more {IMAGE_TOKEN} placeholders than images")
                tiled = self.image_processor.tile(images[i_img])
                tiles.append(tiled.shape[0])
                pixel.append(tiled)
                i_img += 1
            counts = []
            for _ in range(t.count(AUDIO_TOKEN)):
                if i_aud >= len(audios):
                    raise ValueError(f"more {AUDIO_TOKEN} placeholders than audio clips")
                fb = self.audio_features(audios[i_aud])
                counts.append(audio_token_count(fb.shape[0]))
                fbanks.append(fb)
                i_aud += 1
            t = self._expand_images(t, tiles)
            t = _expand_audio(t, counts)
            prompt = t if raw else template.render([(t, None)], modality)
            ids_list.append(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        unused = [(n, k) for n, k in (("images", len(images) - i_img), ("videos", len(videos) - i_vid), ("audios", len(audios) - i_aud)) if k]  # fmt: skip
        if unused:
            raise ValueError(f"{unused[0][1]} {unused[0][0]} have no placeholder in the text")
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        width = max(len(x) for x in ids_list)
        input_ids = torch.full((len(ids_list), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids_list), width), dtype=torch.long)
        for row, ids in enumerate(ids_list):  # left padding: the last position is every row's last token
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
        data: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask}
        if pixel:
            data["pixel_values"] = torch.cat(pixel)
        if fbanks:
            data.update(pad_fbanks(fbanks))
        return BatchFeature(data, tensor_type=return_tensors)

    def _expand_images(self, text: str, tiles: Sequence[int]) -> str:
        """The k-th ``<image>`` (a still image of ``tiles[k]`` tiles, or a frame) -> its placeholders."""
        parts = text.split(IMAGE_TOKEN)
        if len(parts) - 1 != len(tiles):
            raise ValueError(f"{len(parts) - 1} {IMAGE_TOKEN} placeholders but {len(tiles)} images / frames")
        out = [parts[0]]
        for n, rest in zip(tiles, parts[1:]):
            out.append(IMAGE_TOKEN * (self.image_seq_length * n) + rest)
        return "".join(out)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)


def _expand_audio(text: str, counts: Sequence[int]) -> str:
    parts = text.split(AUDIO_TOKEN)
    out = [parts[0]]
    for n, rest in zip(counts, parts[1:]):
        out.append(AUDIO_TOKEN * n + rest)
    return "".join(out)


def pad_fbanks(fbanks: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """``input_features [A, T_max, bins]`` (zero padded) and ``input_features_mask [A, T_max]``."""
    t_max = max(f.shape[0] for f in fbanks)
    feats = torch.zeros(len(fbanks), t_max, fbanks[0].shape[1])
    mask = torch.zeros(len(fbanks), t_max, dtype=torch.long)
    for k, f in enumerate(fbanks):
        feats[k, : f.shape[0]] = f
        mask[k, : f.shape[0]] = 1
    return {"input_features": feats, "input_features_mask": mask}


AutoImageProcessor.register(VitaConfig, VitaImageProcessor, exist_ok=True)
AutoProcessor.register(VitaConfig, VitaProcessor, exist_ok=True)
