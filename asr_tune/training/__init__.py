"""One training run (``run``) and checkpoint evaluation — no Ray involved."""
