"""Fake vLLM package for tests: see tests/fakes/fake_vllm.py."""
