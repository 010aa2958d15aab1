"""The mood companion application: CLI, and (later) the Discord bot, sources and storage."""
