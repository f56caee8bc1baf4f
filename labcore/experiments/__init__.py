"""Experiments that combine methods: the tiny-world comparison (``labcore compare``) and the core-set 0.5%
experiment (``labcore coreset-experiment``). They import the methods; no method imports them."""
