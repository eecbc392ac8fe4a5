"""The chain: one orchestrator runs a recipe (data → teacher → distill → quantize + export → evaluate and
benchmark → checks → report → results store); the demo is a built-in recipe."""
