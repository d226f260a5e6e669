"""``flywheel adapt``: fit SPLADE to a catalog before the first click (no labels, no traffic).

Generated queries (:mod:`.queries`, or an LLM through :mod:`.llm`), BM25-mined negatives
filtered for false negatives (:mod:`.negatives`), a gentle fine-tune and the same gate as any
candidate, with a forgetting check on a set outside the catalog (:mod:`.forgetting`); the run
itself is :func:`retrainer.adapt.run.adapt_catalog`.
"""
