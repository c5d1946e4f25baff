"""Hostile inputs against the real `mmops` CLI (issue 16); see conftest.py for what each case asserts."""
