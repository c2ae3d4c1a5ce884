"""Does select-and-match find the units behind a pattern? Measured on a character model reading
Python source (docs/units.md: What it finds on textwrap.py).

For every string literal and every indented block of the text (found by Python's own tokenize
and ast, not by the model), the script selects the literal's inside (the characters between its
quotes) or the block's inside (from its first statement to the end of its last) exactly as
`lstm-cli units --select START:END` does, and then matches as `--match` does. For each kind it
reports:

- how many selections select at least one unit;
- recall: the share of the other literals (blocks) of the same kind that a match overlaps, over
  all matches and over the best K (K = the number of the others, ranked as --match ranks them);
- precision: the share of matched characters that lie inside any string literal (for blocks:
  inside a block as deep as the selected one or deeper), against that share of the whole text.
  A selection FOUND its pattern when its matches overlap most (> 50%) of the others and the
  matched characters lie inside 1.5 times as often as the text's characters do (matches
  everywhere overlap everything).

One-line literals ('...', "...") and triple-quoted ones (docstrings) are counted apart: a
docstring's inside is prose. Blocks are counted by their indentation.

    cp "$(python3 -c 'import textwrap; print(textwrap.__file__)')" .   # held out in training
    .venv/bin/python benchmarks/select_study.py --sign both --threshold 0.5   # about 15 s
    .venv/bin/python benchmarks/select_study.py --sign positive   # LSTMVis' units only
    .venv/bin/python benchmarks/select_study.py --text "x = 'ab' + 'cd'" --show 1   # a smoke run
"""

from __future__ import annotations

import argparse
import ast
import io
import statistics
import tokenize
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lstm_cli.text import select as S

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LIFT = 1.5  # a match set that is inside no more often than the text at large has found nothing


class Span(NamedTuple):
    start: int
    end: int  # exclusive
    kind: str  # "one-line literal", "docstring-like literal", "block at column N"
    depth: int = 0  # a block's column


def line_offsets(text: str) -> list[int]:
    offsets = [0]
    for line in text.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    return offsets


def literal_insides(text: str) -> list[Span]:
    """The inside of every string literal with at least one character between its quotes."""
    offsets, spans = line_offsets(text), []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type != tokenize.STRING:
            continue
        a = offsets[token.start[0] - 1] + token.start[1]
        b = offsets[token.end[0] - 1] + token.end[1]
        prefix = 0
        while text[a + prefix] not in "'\"":
            prefix += 1
        triple = text[a + prefix : a + prefix + 3] in ('"""', "'''")
        quote = 3 if triple else 1
        if b - quote > a + prefix + quote:
            spans.append(Span(a + prefix + quote, b - quote, "triple-quoted literal" if triple else "one-line literal"))
    return spans


def block_insides(text: str) -> list[Span]:
    """Every indented block: from its first statement's first character to its last's end."""
    offsets, found = line_offsets(text), set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module):
            continue
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                a = offsets[body[0].lineno - 1] + body[0].col_offset
                b = offsets[body[-1].end_lineno - 1] + body[-1].end_col_offset
                found.add((a, b, body[0].col_offset))
    return [Span(a, b, "block", depth) for a, b, depth in sorted(found)]


def study(on: np.ndarray, spans: list[Span], inside_of, same, margin: int, min_length: int) -> dict:
    """Select each span, match, and measure recall over the others with same(span, other) and
    precision against inside_of(span), a boolean per character."""
    rows = []
    for span in spans:
        chosen = S.select_units(on, span.start, span.end, margin)
        others = [o for o in spans if o is not span and same(span, o)]
        if not len(chosen) or not others:
            rows.append(None if others else "alone")
            continue
        runs, _ = S.match_runs(on, chosen, (span.start, span.end), min_length, None)

        def overlapped(found):
            return sum(any(r.start < o.end and r.end > o.start for r in found) for o in others) / len(others)

        matched = np.zeros(on.shape[0], dtype=bool)
        for run in runs:
            matched[run.start : run.end] = True
        inside = inside_of(span)
        rows.append({"units": len(chosen), "runs": len(runs), "recall": overlapped(runs),
                     "recall_k": overlapped(runs[: len(others)]),
                     "precision": float(inside[matched].mean()) if matched.any() else float("nan"),
                     "base": float(inside.mean()), "span": span})
    return {"rows": rows}


def summary(name: str, result: dict, count: int) -> None:
    rows = [r for r in result["rows"] if isinstance(r, dict)]
    alone = sum(r == "alone" for r in result["rows"])
    considered = count - alone
    print(f"{name}: {count} ({alone} without another of their kind); {len(rows)} of {considered} select a unit")
    if not rows:
        return
    for key, words in (("units", "units selected"), ("recall", "others overlapped by a match (all matches)"),
                       ("recall_k", "others overlapped by the best K matches"),
                       ("precision", "matched characters inside"), ("base", "the whole text inside")):
        values = [r[key] for r in rows]
        print(f"  {words}: median {statistics.median(values):.2f}, mean {statistics.fmean(values):.2f}")
    found = sum(r["recall"] > 0.5 and r["precision"] >= LIFT * r["base"] for r in rows)
    print(f"  found (matches overlap most of the others, and matched characters are inside "
          f"{LIFT:g}x as often as the text): {found} of {considered}")
    result["found"] = found


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--text-file", default="textwrap.py", help="default: textwrap.py (a copy, see above)")
    source.add_argument("--text")
    parser.add_argument("--weights", default=str(EXAMPLES / "char_lstm.pt"))
    parser.add_argument("--state", choices=tuple(S.STATES), default=S.DEFAULT_STATE)
    parser.add_argument("--threshold", type=float, default=S.DEFAULT_THRESHOLD)
    parser.add_argument("--margin", type=int, default=S.DEFAULT_MARGIN)
    parser.add_argument("--sign", choices=tuple(S.SIGNS), default=S.DEFAULT_SIGN)
    parser.add_argument("--min-length", type=int, default=S.DEFAULT_MIN_LENGTH)
    parser.add_argument("--show", type=int, default=0, help="print the first N selections of each kind")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)

    from lstm_cli.cli import SHARED_FLAGS, _default, spec_from_flags
    from lstm_cli.text.unit_states import unit_states

    if args.text is None and not Path(args.text_file).is_file():
        raise SystemExit(f"select_study.py: --text-file {args.text_file}: no such file")
    text = Path(args.text_file).read_text(encoding="utf-8") if args.text is None else args.text
    flags = {name: _default(name) for name, _ in SHARED_FLAGS}
    flags.update(weights=args.weights, key="lstm", text=text, device="cpu")
    spec = spec_from_flags(flags, {"weights", "key", "text", "device"})
    values = S.state_matrix(unit_states(spec, sequence=0).values, spec, args.state)
    on = S.on_steps(S.quantize(values), S.threshold_steps(args.threshold), args.sign)
    n = values.shape[1]
    source = args.text_file if args.text is None else "the --text"
    print(f"{Path(args.weights).name} reading {source} ({len(text):,} characters); "
          f"{S.STATES[args.state]}, threshold {args.threshold:g}, margin {args.margin}, sign {args.sign}")

    literals = literal_insides(text)
    in_literal = np.zeros(len(text), dtype=bool)
    for span in literals:
        in_literal[span.start : span.end] = True
    blocks = block_insides(text)
    depth = np.zeros(len(text), dtype=int)
    for span in blocks:
        depth[span.start : span.end] = np.maximum(depth[span.start : span.end], span.depth)
    results = {}
    for kind in ("one-line literal", "triple-quoted literal"):
        spans = [s for s in literals if s.kind == kind]
        results[kind] = study(on, spans, lambda span: in_literal, lambda a, b: True, args.margin, args.min_length)
        summary(f"{kind}s", results[kind], len(spans))
    results["block"] = study(on, blocks, lambda span: depth >= span.depth, lambda a, b: b.depth >= a.depth,
                             args.margin, args.min_length)
    summary("blocks (others: as deep or deeper)", results["block"], len(blocks))
    for kind, result in results.items():
        for row in [r for r in result["rows"] if isinstance(r, dict)][: args.show]:
            span = row["span"]
            print(f"  {kind} {span.start}:{span.end} {S.shown_span(text[span.start:span.end])}: {row['units']} "
                  f"unit side(s) of {on.shape[1]}, recall {row['recall']:.2f}, precision {row['precision']:.2f}")
    results["units"] = n
    return results



if __name__ == "__main__":
    main()
