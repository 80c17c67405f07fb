"""reflow's benchmark suite: Nexmark-style queries, each beside a plain-Python loop."""
