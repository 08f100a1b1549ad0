"""dynamic_llava's cached generation through paperzoo_shared's Triton decode kernel (under TRITON_INTERPRET=1
on the CPU) gives the tokens and caches of the torch path."""

from __future__ import annotations

import pytest
import torch

from paperzoo_shared.kernels import MIN_TRITON, triton_version, use

pytestmark = pytest.mark.skipif(
    (triton_version() or (0,)) < MIN_TRITON, reason=f"needs Triton {'.'.join(map(str, MIN_TRITON))} or newer"
)


def test_decoding_through_the_kernel(tiny, triton_interpreter):
    """The tiny test model with GQA (2 key/value heads) and unequal cache lengths."""
    model = tiny.make_model(0, kv_heads=2)
    prompts = tiny.make_prompts([30, 26, 22], seed=1)
    with use("torch"):
        ref = model.sparse_generate(**prompts, max_new_tokens=6)
    with use("triton", op="gated_decode_attention"):
        tri = model.sparse_generate(**prompts, max_new_tokens=6)
    lengths = ref["cache"].cached_tokens()[-1]
    assert len(set(lengths.tolist())) > 1  # ragged
    assert torch.equal(tri["sequences"], ref["sequences"])
    assert torch.equal(tri["cache"].cached_tokens(), ref["cache"].cached_tokens())
    for a, b, n in zip(tri["cache"].keys, ref["cache"].keys, ref["cache"].longest):
        torch.testing.assert_close(a[:, :, :n], b[:, :, :n], rtol=1e-5, atol=1e-5)
