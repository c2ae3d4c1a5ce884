"""How lstm-cli decides that two computations of the same LSTM agree.

- `rule`: the tolerance: unit roundoff by dtype, the per-element bound formula, --atol/--rtol.
- `step`: the verdict: every checked step recomputed in float64 from the state the checked path
  started it from (errors cannot accumulate or be amplified by the dynamics).
- `shadow`: the report: each path's end-to-end error against a float64 run of the same weights
  and input, and how much the model amplifies a 1e-7 change of its input (chaos).
"""
