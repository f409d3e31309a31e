"""dlkit: helpers for the open deep-learning course."""

__version__ = "0.1.0"
