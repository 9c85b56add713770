"""LLM providers: one async streaming interface, breakers, a router with fallback."""
