"""labcore: a hands-on teaching lab for efficient LLM alignment (RRHF, RAFT, core-set selection)."""
__version__ = "0.1.0"
