"""The exact synthetic engine: `world` (vocabulary and model), `normaliser` (the model's
next-token normalisers), `engine` (sampling and scoring), `sampler` (a prompt's temperature /
top-p sampler), `scored` (scores read back), `oracle` (the exact support and π_r), `phrases` (its
sentences)."""

from market.engines.synthetic.engine import MODEL_NAME, SyntheticEngine
from market.engines.synthetic.oracle import MAX_SUPPORT, GeometricMixture, Support
from market.engines.synthetic.phrases import GENERIC_PHRASES, TOPIC_PHRASES, TOPIC_TEMPLATES
from market.engines.synthetic.sampler import sampler_logprobs

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
