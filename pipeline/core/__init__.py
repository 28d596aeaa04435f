"""The method itself (paper Sec. 3): bilateral filter, encodings A/B/C, losses, metrics."""
