"""Things we train: each task builds a training model; the trainer knows only the task interface."""
