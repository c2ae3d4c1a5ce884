"""Hypothesis strategies for small LSTM configurations, shared by the test modules."""

from hypothesis import strategies as st

from lstm_cli.spec import LSTMSpec


@st.composite
def small_specs(draw, allow_lengths: bool = True, allow_unbatched: bool = True) -> LSTMSpec:
    hidden = draw(st.integers(1, 7))
    batch = draw(st.integers(1, 4))
    seq_len = draw(st.integers(1, 6))
    unbatched = allow_unbatched and draw(st.booleans())
    lengths = None
    if allow_lengths and not unbatched and draw(st.booleans()):
        lengths = tuple(draw(st.lists(st.integers(1, seq_len), min_size=batch, max_size=batch)))
    return LSTMSpec(
        input_size=draw(st.integers(1, 6)),
        hidden_size=hidden,
        num_layers=draw(st.integers(1, 3)),
        seq_len=seq_len,
        batch_size=batch,
        bidirectional=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        proj_size=draw(st.integers(0, hidden - 1)),
        bias=draw(st.booleans()),
        dtype=draw(st.sampled_from(["float32", "float64"])),
        device="cpu",
        seed=draw(st.integers(0, 2**32)),
        lengths=lengths,
        unbatched=unbatched,
    )
