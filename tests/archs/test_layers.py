"""The shared pieces: the ST-LSTM memory's zigzag through a stack, scheduled sampling, padding."""

from __future__ import annotations

import torch

from hpo_vidpred.archs._layers import CellStack, crop, feed_back, pad_to_multiple
from hpo_vidpred.cells import adapt_memory


def test_memory_zigzags_up_the_stack_and_from_the_top_back_to_the_bottom() -> None:
    torch.manual_seed(0)
    stack = CellStack("stlstm", 2, (4, 6, 1), kernel=3, peephole="none")
    bottom, middle, top = stack.cells
    x1, x2 = torch.rand(1, 2, 5, 5), torch.rand(1, 2, 5, 5)
    state = stack.init_state(1, 5, 5, x1.device)
    _, state = stack(x1, state)
    states, memory = state
    torch.testing.assert_close(memory, states[2][2])  # what leaves t is the top layer's M
    _, (new_states, _) = stack(x2, state)
    # At t+1 the bottom layer takes the top layer's M from t (1 channel -> 4, no parameters) ...
    h0, c0, _ = states[0]
    expected_bottom = bottom.step(x2, (h0, c0, adapt_memory(memory, 4, 5, 5)))
    torch.testing.assert_close(new_states[0][2], expected_bottom["m"])
    # ... and the middle layer takes the bottom layer's fresh M from t+1.
    h1, c1, _ = states[1]
    m_in = adapt_memory(expected_bottom["m"], 6, 5, 5)
    expected_middle = middle.step(expected_bottom["h"], (h1, c1, m_in))
    torch.testing.assert_close(new_states[1][2], expected_middle["m"])


def test_convlstm_stack_passes_no_memory() -> None:
    stack = CellStack("convlstm", 1, (3, 1), kernel=3, peephole="hadamard")
    out, (states, memory) = stack(torch.rand(2, 1, 4, 4), stack.init_state(2, 4, 4, None))
    assert out.shape == (2, 1, 4, 4) and memory is None and len(states[0]) == 2


def test_feed_back_mixes_per_sequence() -> None:
    prediction, targets = torch.zeros(64, 1, 2, 2), torch.ones(64, 3, 1, 2, 2)
    assert feed_back(prediction, None, 0, 1.0) is prediction
    assert feed_back(prediction, targets, 0, 0.0) is prediction
    torch.testing.assert_close(feed_back(prediction, targets, 2, 1.0), targets[:, 2])
    torch.manual_seed(0)
    mixed = feed_back(prediction, targets, 1, 0.5)
    per_sequence = mixed.flatten(1)
    assert (per_sequence.min(1).values == per_sequence.max(1).values).all()  # whole frames
    assert 16 < mixed[:, 0, 0, 0].sum() < 48  # about half of the 64 sequences see the truth


def test_pad_and_crop_round_trip() -> None:
    frames = torch.rand(2, 3, 1, 30, 45)
    padded = pad_to_multiple(frames, 8)
    assert padded.shape == (2, 3, 1, 32, 48)
    torch.testing.assert_close(padded[..., -1, :45], padded[..., 29, :45])  # replicated edge
    torch.testing.assert_close(crop(padded, 30, 45), frames)
    assert pad_to_multiple(frames, 1) is frames
