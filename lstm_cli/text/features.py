"""Simple features of a text, one value per character, for `units` to correlate with every unit.

No tokenizer: one left-to-right pass of a small state machine (outside / string / comment) that
reads Python-like text. The value at position t describes character t itself, as the model has
just read it (c_t and h_t come after input t):

- in_string: 1 from an opening quote through its closing quote, both included. Outside a string
  and a comment, ''' or \"\"\" opens a triple-quoted string that only the same three quotes close
  (newlines included); ' or " opens a one-line string that the same quote closes or, left
  unclosed, the end of the line ends (the newline itself is outside). Inside either, a
  backslash escapes the next character (both are inside: 'a\\'b' is one string). String
  prefixes (r, b, f) are ordinary letters: they are outside; raw strings are read as if not raw.
- in_comment: 1 from a # outside a string up to the end of its line (the newline is outside);
  quotes in a comment open nothing.
- bracket_depth: how many of (, [, { are open after this character, counting only brackets
  outside strings and comments; an opening bracket carries the depth it opens, a closing one
  the depth it returns to; a closing bracket at depth 0 leaves it at 0 (clamped, never
  negative). The kind of bracket is not matched: ( closed by ] still closes one.
- column: the character's position in its line, from 0; a newline has the column it stands at
  (it ends its line).
- indent: the number of leading spaces of the character's line (tabs are not spaces), the same
  for every character of the line, its newline included.
- is_letter, is_digit, is_space, is_upper: str.isalpha, isdigit, isspace, isupper of the
  character; is_punct: the character is in string.punctuation (ASCII punctuation).
"""

from __future__ import annotations

import string

import numpy as np

FEATURES = (
    "in_string", "bracket_depth", "column", "indent", "in_comment",
    "is_letter", "is_digit", "is_space", "is_upper", "is_punct",
)

OPEN, CLOSE = "([{", ")]}"


def _syntax(text: str) -> tuple[list[int], list[int], list[int]]:
    """in_string, in_comment and bracket_depth, one pass."""
    n = len(text)
    in_string, in_comment, depth_series = [0] * n, [0] * n, [0] * n
    depth = 0
    quote = ""  # the open string's delimiter: ', ", ''' or \"\"\"; "" when outside
    comment = False
    t = 0
    while t < n:
        char = text[t]
        if comment:
            if char == "\n":
                comment = False
            else:
                in_comment[t] = 1
        elif quote:
            in_string[t] = 1
            if char == "\\" and t + 1 < n and not (len(quote) == 1 and text[t + 1] == "\n"):
                in_string[t + 1] = 1  # the escaped character
                depth_series[t + 1] = depth
                depth_series[t] = depth
                t += 2
                continue
            if len(quote) == 3 and text.startswith(quote, t):
                in_string[t : t + 3] = [1, 1, 1]
                depth_series[t : t + 3] = [depth] * 3
                quote = ""
                t += 3
                continue
            if len(quote) == 1 and char == quote:
                quote = ""
            elif len(quote) == 1 and char == "\n":  # an unclosed one-line string ends here
                in_string[t] = 0
                quote = ""
        elif char == "#":
            comment = True
            in_comment[t] = 1
        elif char in "'\"":
            if text.startswith(char * 3, t):
                quote = char * 3
                in_string[t : t + 3] = [1, 1, 1]
                depth_series[t : t + 3] = [depth] * 3
                t += 3
                continue
            quote = char
            in_string[t] = 1
        elif char in OPEN:
            depth += 1
        elif char in CLOSE:
            depth = max(0, depth - 1)
        depth_series[t] = depth
        t += 1
    return in_string, in_comment, depth_series


def _lines(text: str) -> tuple[list[int], list[int]]:
    """column and indent; lines end at \n only (not at \r or the other breaks splitlines knows)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    column, indent = [], []
    for line in lines:
        body = line.removesuffix("\n")
        spaces = len(body) - len(body.lstrip(" "))
        column.extend(range(len(line)))
        indent.extend([spaces] * len(line))
    return column, indent


def text_features(text: str) -> dict[str, np.ndarray]:
    """Every feature of FEATURES as a float64 array of len(text) values, in FEATURES' order."""
    column, indent = _lines(text)
    in_string, in_comment, depth = _syntax(text)
    series = {
        "in_string": in_string,
        "bracket_depth": depth,
        "column": column,
        "indent": indent,
        "in_comment": in_comment,
        "is_letter": [c.isalpha() for c in text],
        "is_digit": [c.isdigit() for c in text],
        "is_space": [c.isspace() for c in text],
        "is_upper": [c.isupper() for c in text],
        "is_punct": [c in string.punctuation for c in text],
    }
    return {name: np.asarray(series[name], dtype=np.float64) for name in FEATURES}
