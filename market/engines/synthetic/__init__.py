"""The exact synthetic engine: `world` (vocabulary and model), `engine` (sampling and scoring),
`oracle` (the exact support and π_r), `phrases` (its sentences)."""

from market.engines.synthetic.engine import MODEL_NAME, SyntheticEngine, sampler_logprobs
from market.engines.synthetic.oracle import MAX_SUPPORT, GeometricMixture, Support
from market.engines.synthetic.phrases import GENERIC_PHRASES, TOPIC_PHRASES, TOPIC_TEMPLATES

__all__ = [
    "GENERIC_PHRASES",
    "MAX_SUPPORT",
    "MODEL_NAME",
    "TOPIC_PHRASES",
    "TOPIC_TEMPLATES",
    "GeometricMixture",
    "Support",
    "SyntheticEngine",
    "sampler_logprobs",
]
