"""Helpers for the console's browser tests: a real ``huddle serve``, headless Chromium, a writer process."""
