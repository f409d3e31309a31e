"""From-scratch implementations whose derivation is the lesson (chapters 05 and 06)."""
