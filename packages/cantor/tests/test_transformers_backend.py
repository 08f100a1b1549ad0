"""TransformersBackend plumbing with stand-in processor and model objects (no weights): one user turn with
the image first, the processor gets the PIL image, greedy generate, only the new tokens are decoded."""

from __future__ import annotations

import asyncio

import pytest

torch = pytest.importorskip("torch")

from paperzoo_cantor.backends import TransformersBackend  # noqa: E402
from paperzoo_cantor.fixtures import encode_image  # noqa: E402


class _Batch(dict):
    def to(self, device):
        return self


class FakeProcessor:
    def __init__(self):
        self.seen = {}

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        self.seen["messages"] = messages
        assert add_generation_prompt and not tokenize
        return "<templated>"

    def __call__(self, text, images, return_tensors):
        self.seen["images"] = images
        return _Batch(input_ids=torch.tensor([[5, 6, 7]]))

    def batch_decode(self, tokens, skip_special_tokens):
        return [" ".join(str(int(t)) for t in tokens[0])]


class FakeModel:
    def __init__(self):
        self.kwargs = None

    def to(self, device):
        return self

    def eval(self):
        return self

    def generate(self, input_ids, **kwargs):
        self.kwargs = kwargs
        return torch.cat([input_ids, torch.tensor([[41, 42]])], dim=1)


def test_generate_builds_one_turn_and_decodes_new_tokens():
    processor, model = FakeProcessor(), FakeModel()
    backend = TransformersBackend("", model=model, processor=processor, device="cpu", max_new_tokens=9)
    out = asyncio.run(backend.generate("Describe.", encode_image("7")))
    assert out == "41 42"
    assert processor.seen["messages"] == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}
    ]
    assert processor.seen["images"][0].mode == "RGB" and processor.seen["images"][0].size == (96, 64)
    assert model.kwargs == {"max_new_tokens": 9, "do_sample": False}
    assert asyncio.run(backend.generate("Text only.", None)) == "41 42"
    assert processor.seen["images"] is None
    assert processor.seen["messages"][0]["content"] == [{"type": "text", "text": "Text only."}]
