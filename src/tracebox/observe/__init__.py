"""The observer: traces → prioritized observations that the next agents can learn from.

- ``rules.py`` — one session → observations (deterministic rules, evidence quotes);
- ``merge.py`` — observations of many sessions (and earlier generations) merged by
  fingerprint, with counts, first/last seen and evidence links; ``observations.jsonl``;
- ``render.py`` — ``observations.md``: most important first, grouped, within a size
  budget so it fits in a prompt;
- ``llm.py`` — the optional pass through an OpenAI-compatible model that may re-rank and
  summarize, never add evidence.
"""
