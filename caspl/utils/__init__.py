from caspl.utils.checkpoint import atomic_save, atomic_write_text, safe_load
from caspl.utils.seed import get_rng_state, set_random_seed, set_rng_state

__all__ = [
    "atomic_save",
    "atomic_write_text",
    "safe_load",
    "get_rng_state",
    "set_random_seed",
    "set_rng_state",
]
