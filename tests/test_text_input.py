"""--text, --text-file, --vocab, --embedding: text through a character model's own vocabulary and
embedding (or one-hot), checked against rows looked up here independently; and the shipped
character model examples/char_lstm.pt, whose recorded held-out bits per character are
recomputed from the checkpoint."""

import hashlib
import importlib.util
import json
import sysconfig
from pathlib import Path

import pytest
import torch
from torch import nn

from lstm_cli.cli import spec_from_flags
from lstm_cli.model import prepare, run_lstm
from lstm_cli.spec import LSTMSpec

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "examples" / "char_lstm.pt"
VOCAB = ["\n", " ", "(", ")", "a", "b", "c", "d", "é"]
TEXT = "ab (cd)\n dé\nba"


def flags(**changes):
    defaults = {name: field.default for name, field in LSTMSpec.__dataclass_fields__.items()}
    return {**defaults, "lengths": None, **changes}


def char_model(folder: Path, *, embed: int = 4, vocab: list[str] | None = VOCAB, extra: dict | None = None,
               name: str = "char.pt", seed: int = 0) -> tuple[Path, dict]:
    """An embedding -> LSTM -> linear character model saved weights-only, vocabulary inside."""
    torch.manual_seed(seed)
    size = len(VOCAB)
    modules = nn.ModuleDict({"emb": nn.Embedding(size, embed), "rnn": nn.LSTM(embed, 6, num_layers=2), "out": nn.Linear(6, size)})
    state = {k: v.detach().clone() for k, v in modules.state_dict().items()}
    saved = dict(state, **(extra or {}))
    if vocab is not None:
        saved["vocab"] = list(vocab)
    path = folder / name
    torch.save(saved, path)
    return path, state


def rows_of(text: str, vocab: list[str]) -> list[int]:
    return [vocab.index(c) for c in text]


def test_checkpoint_with_a_vocab_list_loads_weights_only(tmp_path):
    path, _ = char_model(tmp_path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["vocab"] == VOCAB


def test_text_runs_as_the_embedding_rows_of_its_characters(tmp_path):
    path, state = char_model(tmp_path)
    spec = spec_from_flags(flags(weights=str(path), key="rnn", text=TEXT), {"weights", "key", "text"})
    assert (spec.seq_len, spec.batch_size, spec.unbatched, spec.input_size) == (len(TEXT), 1, False, 4)
    assert spec.embedding == "emb.weight"
    assert spec.input_source() == f"text of {len(TEXT)} characters from --text through embedding 'emb.weight'"
    prepared = prepare(spec)
    expected = state["emb.weight"][torch.tensor(rows_of(TEXT, VOCAB))].unsqueeze(1)
    assert prepared.x.shape == (len(TEXT), 1, 4)
    assert torch.equal(prepared.x, expected)
    # and the LSTM that ran is the file's, on that input
    reference = nn.LSTM(4, 6, num_layers=2)
    reference.load_state_dict({k.removeprefix("rnn."): v for k, v in state.items() if k.startswith("rnn.")})
    with torch.no_grad():
        out, _ = reference(expected)
    assert torch.allclose(run_lstm(prepared.lstm, prepared.x, spec).output, out, atol=1e-6)


def test_text_file_and_batch_first(tmp_path):
    path, state = char_model(tmp_path)
    text_file = tmp_path / "in.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    spec = spec_from_flags(flags(weights=str(path), text_file=str(text_file), batch_first=True), {"weights", "text_file", "batch_first"})
    assert spec.input_source() == f"text of {len(TEXT)} characters from {text_file} through embedding 'emb.weight'"
    x = prepare(spec).x
    assert torch.equal(x, state["emb.weight"][torch.tensor(rows_of(TEXT, VOCAB))].unsqueeze(0))


def test_one_hot_when_input_size_is_the_vocabulary_size(tmp_path):
    torch.manual_seed(1)
    lstm = nn.LSTM(len(VOCAB), 5)
    path = tmp_path / "onehot.pt"
    torch.save({**lstm.state_dict(), "vocab": VOCAB}, path)
    spec = spec_from_flags(flags(weights=str(path), text=TEXT), {"weights", "text"})
    assert spec.embedding is None
    assert spec.input_source() == f"text of {len(TEXT)} characters from --text as one-hot vectors of {len(VOCAB)}"
    x = prepare(spec).x
    expected = torch.zeros(len(TEXT), 1, len(VOCAB))
    for t, c in enumerate(TEXT):
        expected[t, 0, VOCAB.index(c)] = 1.0
    assert torch.equal(x, expected)


def test_vocab_file_sets_the_rows(tmp_path, run_cli):
    path, state = char_model(tmp_path, vocab=None)
    reordered = list(reversed(VOCAB))
    vocab_file = tmp_path / "vocab.json"
    vocab_file.write_text(json.dumps(reordered), encoding="utf-8")
    spec = spec_from_flags(flags(weights=str(path), text=TEXT, vocab=str(vocab_file)), {"weights", "text", "vocab"})
    assert torch.equal(prepare(spec).x, state["emb.weight"][torch.tensor(rows_of(TEXT, reordered))].unsqueeze(1))
    assert spec.input_source().endswith(f"(vocabulary from {vocab_file})")
    # without --vocab, a checkpoint without one is refused, pointing at --vocab
    result = run_cli("inspect", "--weights", str(path), "--text", TEXT)
    assert result.code == 2 and "no top-level \"vocab\" list" in result.stderr and "--vocab FILE" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    vocab_file.write_text(json.dumps(["a", "bc"]), encoding="utf-8")
    result = run_cli("inspect", "--weights", str(path), "--text", "a", "--vocab", str(vocab_file))
    assert result.code == 2 and "entry 1 is 'bc', not a single character" in result.stderr


def test_unknown_character_is_refused_with_its_position(tmp_path, run_cli):
    path, _ = char_model(tmp_path)
    result = run_cli("gates", "--weights", str(path), "--text", "ab\ncdQ(")
    assert result.code == 2
    assert result.stderr.strip() == (
        f"lstm-cli: error: --text: character 'Q' at 2:3 is not in the vocabulary (9 characters, from --weights {path})"
    )
    text_file = tmp_path / "t.txt"
    text_file.write_text("abc\n\n  \t", encoding="utf-8")
    result = run_cli("inspect", "--weights", str(path), "--text-file", str(text_file))
    assert result.code == 2 and "character '\\t' at 3:3 is not in the vocabulary" in result.stderr


def test_several_or_no_embedding_matrices_are_refused_with_the_candidates(tmp_path, run_cli):
    other = torch.randn(len(VOCAB), 4)
    path, _ = char_model(tmp_path, extra={"decoder.tied": other})
    result = run_cli("inspect", "--weights", str(path), "--text", "abc")
    assert result.code == 2
    assert "2 matrices of shape (9, 4) that could be the embedding: emb.weight, decoder.tied; pick one with --embedding KEY" in result.stderr
    spec = spec_from_flags(flags(weights=str(path), text="abc", embedding="decoder.tied"), {"weights", "text", "embedding"})
    assert torch.equal(prepare(spec).x, other[torch.tensor(rows_of("abc", VOCAB))].unsqueeze(1))
    result = run_cli("inspect", "--weights", str(path), "--text", "abc", "--embedding", "out.weight")
    assert result.code == 2 and "--embedding 'out.weight' is (9, 6) float32; it must be a float matrix (9, 4)" in result.stderr
    result = run_cli("inspect", "--weights", str(path), "--text", "abc", "--embedding", "nope")
    assert result.code == 2 and "no tensor of that name" in result.stderr and "emb.weight (9, 4)" in result.stderr

    lstm = nn.LSTM(3, 5)
    bare = tmp_path / "bare.pt"
    torch.save({**{f"rnn.{k}": v for k, v in lstm.state_dict().items()}, "proj.weight": torch.randn(9, 7), "vocab": VOCAB}, bare)
    result = run_cli("inspect", "--weights", str(bare), "--text", "abc")
    assert result.code == 2
    assert "no embedding matrix of shape (9, 3)" in result.stderr and "proj.weight (9, 7)" in result.stderr
    assert "--embedding KEY" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--text", "ab", "--text-file", "x.txt"], "--text and --text-file are two inputs"),
        (["--text", "ab", "--input", "x.npy"], "--text and --input are two inputs"),
        (["--vocab", "v.json"], "--vocab applies to --text or --text-file"),
        (["--text", ""], "--text is empty"),
        (["--text", "ab", "--unbatched"], "--unbatched on contradicts --text (one sequence of batch 1)"),
        (["--text", "ab", "--seq-len", "5"], "--seq-len 5 contradicts --text (one step per character), which has seq len 2"),
    ],
)
def test_text_flag_combinations_are_refused(tmp_path, run_cli, args, message):
    path, _ = char_model(tmp_path)
    result = run_cli("inspect", "--weights", str(path), *args)
    assert result.code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_text_needs_weights(run_cli):
    result = run_cli("inspect", "--text-file", "x.txt")
    assert result.code == 2 and "--text-file runs a character model's vocabulary and embedding: give --weights too" in result.stderr


def test_gates_json_on_text(tmp_path, run_cli):
    path, _ = char_model(tmp_path)
    result = run_cli("gates", "--weights", str(path), "--key", "rnn", "--text", TEXT, "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["passed"] is True
    assert doc["config"]["text"] == TEXT and doc["config"]["embedding"] == "emb.weight"
    assert doc["config"]["input_source"].startswith(f"text of {len(TEXT)} characters")


# -- the shipped character model ---------------------------------------------------------------


def load_training_script():
    spec = importlib.util.spec_from_file_location("train_char_model", ROOT / "examples" / "train_char_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_checkpoint_is_weights_only_with_its_vocabulary():
    assert SHIPPED.stat().st_size < 3_000_000
    state = torch.load(SHIPPED, weights_only=True)
    vocab = state["vocab"]
    assert all(isinstance(c, str) and len(c) == 1 for c in vocab) and len(set(vocab)) == len(vocab)
    assert state["embedding.weight"].shape[0] == len(vocab) == state["head.weight"].shape[0]
    assert state["lstm.weight_ih_l0"].shape[1] == state["embedding.weight"].shape[1]
    assert all(t.dtype == torch.float32 for k, t in state.items() if k != "vocab")


def test_shipped_checkpoint_runs_gates_on_stdlib_text(tmp_path, run_cli):
    source = Path(sysconfig.get_paths()["stdlib"]) / "bisect.py"
    text_file = tmp_path / "bisect_head.py"
    text_file.write_text(source.read_text(encoding="utf-8")[:200], encoding="utf-8")
    result = run_cli("gates", "--weights", str(SHIPPED), "--key", "lstm", "--text-file", str(text_file), "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["passed"] is True
    assert doc["config"]["seq_len"] == 200 and doc["config"]["batch_size"] == 1
    assert doc["config"]["input_source"] == f"text of 200 characters from {text_file} through embedding 'embedding.weight'"


def test_training_script_records_bits_per_char_the_checkpoint_reproduces():
    script = load_training_script()
    results = script.RESULTS
    held_out = script.held_out_text()
    if hashlib.sha256(held_out.encode("utf-8")).hexdigest() != results["held_out_sha256"]:
        pytest.skip("this Python's held-out stdlib files differ from those the checkpoint was evaluated on")
    assert len(held_out) == results["held_out_characters"]
    bpc = script.evaluate(SHIPPED)
    assert abs(bpc - results["held_out_bpc"]) <= 0.02
    assert f"{results['held_out_bpc']:.2f}" in script.__doc__ and f"{results['unigram_bpc']:.2f}" in script.__doc__
    # the model learned something a character count cannot: at least 1 bit/char under unigram
    assert bpc < results["unigram_bpc"] - 1.0
    # an untrained model of the same shape is far worse (the evaluation can tell them apart)
    model, vocab = script.load_model(SHIPPED)
    fresh = script.CharLSTM(len(vocab))
    assert script.bits_per_char(fresh.eval(), script.encode(held_out[:5000], vocab)) > results["unigram_bpc"]


def test_every_command_runs_text(tmp_path, run_cli):
    path, _ = char_model(tmp_path)
    for command in (["inspect"], ["compare-cell"], ["gradients"], ["bench", "--repeat", "2"]):
        result = run_cli(*command, "--weights", str(path), "--text", "abc d", "--json")
        assert result.code == 0, (command, result.stderr)
        assert result.json()["config"]["input_source"] == "text of 5 characters from --text through embedding 'emb.weight'"
    result = run_cli("bench", "--weights", str(path), "--text", "abc", "--sweep", "seq-len=4,8")
    assert result.code == 2 and "--text fixes seq-len and batch size" in result.stderr


def test_unreadable_text_files_are_refused(tmp_path, run_cli):
    path, _ = char_model(tmp_path)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("ab\xe9".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    for file, message in ((latin1, "not UTF-8 text (byte 2 cannot be decoded)"), (empty, "the file is empty"),
                          (tmp_path / "missing.txt", "no such file")):
        result = run_cli("inspect", "--weights", str(path), "--text-file", str(file))
        assert result.code == 2 and result.stderr.strip() == f"lstm-cli: error: --text-file {file}: {message}"
