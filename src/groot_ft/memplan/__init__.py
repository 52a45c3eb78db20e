"""How much GPU memory a run needs, before it runs: ``groot-ft plan``.

- ``shapes``: the model's parameters by part, built on the meta device from a preset or a checkpoint's config.json
  (never its weights), with the run's tune flags and LoRA adapters applied;
- ``activations``: the tensors autograd keeps for the backward pass, counted per layer type from the architecture;
- ``estimate``: weights, gradients, optimizer states and DeepSpeed's buffers per process, the peak, and the cheapest
  changes that make a run fit a card;
- ``tracker``: live-tensor accounting used to check the estimate against a measured step (``scripts/bench_plan.py``);
- ``cli``: the command.
"""
