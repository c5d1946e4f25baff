"""mmops: preflight, launch, supervise and probe vLLM multimodal servers on Ascend and NVIDIA."""

__version__ = "0.1.0"
