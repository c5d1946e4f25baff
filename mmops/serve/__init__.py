"""Run it: states, events, the supervisor and its parts, run folders, log store, replay."""
