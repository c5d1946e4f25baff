"""The Textual supervisor screen: renders state from the core and dispatches actions to it.

Only `mmops tui` imports this package; nothing in the core imports it back.
"""
