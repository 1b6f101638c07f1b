"""Training engine: the loop, schedules, optimizer, precision, distributed, checkpoints, logs.

Import the trainer from ``attmask.engine.trainer`` (kept out of this package's import so the
schedules can be used without the data stack).
"""
