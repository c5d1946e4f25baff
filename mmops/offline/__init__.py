"""`mmops offline`: vLLM's vision_language.py offline inference without editing a script.

- models: each model type's prompt format and stop tokens, as data;
- inputs: media files, questions, and which request gets which;
- job: the LLM() arguments and SamplingParams of a run, and its preflight;
- child: the program run in vLLM's interpreter (stdlib at import time, no mmops imports);
- runner: that program under the reaper `serve` uses, its marker lines read from its log;
- report: the outputs, stage timings and throughput, as text or JSON;
- session: the steps in order.
"""
