"""Proxy training: domains -> tokenised corpus -> mixture batches -> a small GPT -> losses.

Knows nothing of BO: the local runner hands it a mixture, a model size, a token budget and a
seed, and gets back per-domain validation losses, their curve, and what the run cost.
"""
