"""Widgets of the mmops screen, one per module."""
