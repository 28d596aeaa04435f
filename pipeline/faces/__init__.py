"""Face detection and the square face crop (paper Sec. 3.1)."""
