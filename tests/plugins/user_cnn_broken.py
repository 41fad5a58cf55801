"""A user module that fails as it is imported."""

RATIO = 1 / 0
