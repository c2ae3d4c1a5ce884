"""In situ: the LSTM inside a user's whole model, run on the user's own data.

- `captured`: what reaches one LSTM in a run (input, lengths, initial state, outputs) and where
  it was captured, the one shape every source below returns and every command takes;
- `onnx_graph`: an ONNX model run whole by onnxruntime with one LSTM node's inputs and outputs
  added as graph outputs;
- `torch_hooks`: forward hooks on nn.LSTM and nn.LSTMCell modules of a PyTorch model
  (`lstm_cli.watch`), and `torch_module` for whole modules named on the command line.
"""
