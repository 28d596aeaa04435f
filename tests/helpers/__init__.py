"""Helpers shared by the test modules (builders of tiny repos, stores, scenes, damage)."""
