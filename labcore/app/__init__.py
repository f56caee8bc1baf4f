"""labcore's Gradio app: the front door of the lab (``python app.py`` or ``make app``).

One module per part; none of them defines an algorithm, they import labcore's:

- ``config.py``    — ``AppConfig``, the app's options;
- ``models.py``    — ONE base model in memory with every RAFT / RRHF LoRA adapter attached by name (peft
  ``load_adapter`` / ``set_adapter``), a lock that every model call takes, lazy loading in a background thread;
- ``selection.py`` — the "Data selection" tab: core-set selection of Chen et al. 2023 ("Maybe Only 0.5% Data is
  Needed", arXiv 2305.09246) through ``labcore.coreset.select_coreset``, embeddings / K-means / UMAP cached;
- ``compare.py``   — the "Before / after" tab: base vs RAFT (arXiv 2304.06767) vs RRHF (arXiv 2304.05302) on
  held-out prompts, with rewards, galleries cached on disk;
- ``chat.py``      — the "Chat" tab: unaligned and aligned panes streaming side by side from the one base model,
  server-side limits, votes;
- ``worker.py``    — the generation worker: one thread decodes every user's panes in one batch (continuous
  batching, ``labcore.batching``);
- ``votes.py``     — votes as TRL preference records appended to ``OUT/votes.jsonl``;
- ``ui.py``        — the Gradio Blocks layout, the queue (serving several users), the command line.

Importing this package is cheap (no torch, no gradio): heavy imports happen on first use.
"""
from __future__ import annotations

from labcore.app.config import AppConfig

__all__ = ["AppConfig"]
