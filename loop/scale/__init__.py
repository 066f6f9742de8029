"""Scale-out scoring: the pool scored as a Ray Data pipeline (engine.py), stages wrapping the HF backends
(stages.py) and, on GPUs, vLLM through ray.data.llm (vllm_stages.py). Ray is imported inside functions only."""
