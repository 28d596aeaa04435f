"""DeepFlash pipeline: flash selfie -> studio portrait (Capece et al. 2019)."""

__version__ = "0.1.0"
