"""What is served: model directory facts, safetensors headers, memory estimates."""
