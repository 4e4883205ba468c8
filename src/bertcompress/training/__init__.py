"""One training loop shared by every training-based method."""
