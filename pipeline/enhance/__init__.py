"""Applying a trained model to a real photo: crop, relight, blend back, export."""
