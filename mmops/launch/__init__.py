"""What to run: vLLM flags, profiles, the launch spec, the plan (argv + env) and the preflight."""
