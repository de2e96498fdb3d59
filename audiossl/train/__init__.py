"""The training engine: config, loop, distributed set-up, checkpoints, optimiser, EMA, logging."""
