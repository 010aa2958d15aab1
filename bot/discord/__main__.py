"""``python -m bot.discord``: what ``mer bot`` runs (see :mod:`bot.discord.main`)."""

from bot.discord.main import main

raise SystemExit(main())
