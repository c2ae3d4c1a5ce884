"""Text through a character model, and single units over it.

- `input`: the characters of --text/--text-file as the model's input (vocabulary, embedding);
- `features`: per-character features of a text (inside a string, indentation depth, ...);
- `unit_states`: every unit's c, h and gates over one sequence, in float64;
- `units`: which units track which features (`lstm-cli units`);
- `trace`: the text coloured by one unit (`lstm-cli trace`);
- `select`: LSTMVis's select-and-match: the units on over a chosen span, and where else they
  are on together (`lstm-cli units --select ... --match`).
"""
